"""Topic layouts: where tasks are published and what workers subscribe to.

How this works: a ``Layout`` knows the topic of task ``tid`` and the filter a worker of the
pool subscribes to, with or without ``$share/{group}/``. The AetherMagic layout is first
class; the generic layout takes any template with a ``{task_id}`` (or ``{n}``) placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass

from .emulator.topics import InvalidFilter, matches, validate_plain_filter


class LayoutError(ValueError):
    """A topic template, filter or group name that cannot work."""


@dataclass(frozen=True, kw_only=True)
class Layout:
    topic_template: str  # with {task_id} and/or {n}
    topic_filter: str  # what a worker subscribes to, without $share
    group: str

    def topic(self, task_id: str, n: int) -> str:
        return self.topic_template.format(task_id=task_id, n=n)

    def subscription(self, plain: bool = False, group: str | None = None) -> str:
        if plain:
            return self.topic_filter
        return f"$share/{group or self.group}/{self.topic_filter}"


def aethermagic(
    *, union: str = "production", job: str = "engine", task: str = "process-data",
    context: str = "batch1", action: str = "perform", workgroup: str = "workers",
) -> Layout:
    """``{union}/{job}/{task}/{context}/{tid}/{action}``, group ``{union}_{job}_{workgroup}``."""
    for label, value in (("union", union), ("job", job), ("task", task), ("context", context),
                         ("action", action), ("workgroup", workgroup)):
        if not value or any(ch in value for ch in "/+#\x00") or "{" in value or "}" in value:
            raise LayoutError(f"--{label} {value!r}: must be non-empty without / + # {{ }}")
    return Layout(
        topic_template=f"{union}/{job}/{task}/{context}/{{task_id}}/{action}",
        topic_filter=f"{union}/{job}/{task}/{context}/+/{action}",
        group=f"{union}_{job}_{workgroup}",
    )


def generic(topic_template: str, topic_filter: str | None, group: str) -> Layout:
    """Any topic template; the filter defaults to the template with its placeholder as ``+``."""
    if "{task_id}" not in topic_template and "{n}" not in topic_template:
        raise LayoutError(f"--topic {topic_template!r}: needs a {{task_id}} or {{n}} placeholder")
    try:
        topic_template.format(task_id="x", n=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise LayoutError(f"--topic {topic_template!r}: bad placeholder ({exc})") from None
    if topic_filter is None:
        levels = topic_template.split("/")
        if not all(("{" not in lv) or lv in ("{task_id}", "{n}") for lv in levels):
            raise LayoutError(f"--topic {topic_template!r}: the placeholder is not a whole "
                              "level; give --filter")
        topic_filter = "/".join("+" if lv in ("{task_id}", "{n}") else lv for lv in levels)
    try:
        validate_plain_filter(topic_filter)
    except InvalidFilter as exc:
        raise LayoutError(f"--filter {topic_filter!r}: {exc}") from None
    sample = topic_template.format(task_id="task-1", n=1)
    if not matches(topic_filter, sample):
        raise LayoutError(f"--filter {topic_filter!r} does not match the task topics "
                          f"(e.g. {sample!r}): workers would receive nothing")
    if not group or any(ch in group for ch in "/+#"):
        raise LayoutError(f"--group {group!r}: a share name is non-empty without / + #")
    return Layout(topic_template=topic_template, topic_filter=topic_filter, group=group)
