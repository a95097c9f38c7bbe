"""Topic layouts: where tasks are published and what workers subscribe to.

How this works: a ``Layout`` knows the topic of task ``tid`` and the filter a worker of the
pool subscribes to, with or without ``$share/{group}/``. The AetherMagic layout is first
class; the generic layout takes any template with a ``{task_id}`` (or ``{n}``) placeholder.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..emulator.topics import InvalidFilter, matches, valid_topic_name, validate_plain_filter
from ..exitcodes import UsageError

PLACEHOLDERS = ("task_id", "n")


MAX_PAD_WIDTH = 20  # {n:0Wd}: the widest zero-padding an id or topic template may ask for
_NUMBER_SPEC = re.compile(r"(0?)(\d{0,2})d?")


def template_problem(template: str, names: Sequence[str], *, numeric: Sequence[str] = ("n",)
                     ) -> str | None:
    """Why ``template`` is not a plain substitution of ``names``, or None when it is.

    Allowed: literal text, ``{{``/``}}``, ``{name}`` for each of ``names`` and, for the
    ``numeric`` ones, a zero-padding spec such as ``{n:04d}`` (width up to
    ``MAX_PAD_WIDTH``). Everything else ``str.format`` would do is refused before it runs:
    other format specs (``{n:>999999999}`` builds a gigabyte string), conversions
    (``{task_id!r}``), attribute or index access (``{n.__class__}``, ``{n[0]}``), positional
    fields (``{}``, ``{0}``) and unknown names.
    """
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:  # unbalanced braces
        return str(exc)
    braced = [f"{{{name}}}" for name in names]
    known = f"only {braced[0]} is known" if len(braced) == 1 else f"use {' or '.join(braced)}"
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (
            f":{spec}" if spec else "") + "}"
        if field == "" or field.isdigit():
            return f"a positional placeholder {shown} ({known})"
        if field not in names:
            if any(ch in field for ch in ".["):
                return f"{shown}: attribute and index access are not allowed ({known})"
            return f"unknown placeholder {shown} ({known})"
        if conversion:
            return f"{shown}: conversions such as !{conversion} are not allowed ({known})"
        if spec:
            match = _NUMBER_SPEC.fullmatch(spec)
            if field not in numeric or match is None or "{" in spec:
                allowed = (f"only zero-padding such as {{{field}:04d}}" if field in numeric
                           else "no format spec")
                return f"{shown}: format spec {spec!r} is not allowed ({allowed})"
            if match.group(2) and int(match.group(2)) > MAX_PAD_WIDTH:
                return (f"{shown}: a width above {MAX_PAD_WIDTH} is not allowed")
    return None


class LayoutError(UsageError, ValueError):
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

    def scoped(self, prefix: str, run_id: str) -> Layout:
        """The same layout under ``{prefix}/{run_id}/`` with group ``{group}-{run_id}``: what a
        run on a shared broker uses, so it never meets a live pool's topics or group."""
        check_prefix(prefix)
        head = f"{prefix.strip('/')}/{run_id}/" if prefix.strip("/") else f"{run_id}/"
        return replace(self, topic_template=head + self.topic_template,
                       topic_filter=head + self.topic_filter, group=f"{self.group}-{run_id}")


def check_prefix(prefix: str) -> None:
    """``--topic-prefix``: topic levels without wildcards, NUL or placeholders."""
    if any(ch in prefix for ch in "+#\x00{}") or prefix.startswith("$"):
        raise LayoutError(f"--topic-prefix {prefix!r}: must be plain topic levels without "
                          "+ # { } and not start with $")


def check_template(template: str) -> None:
    """``--topic``: a task topic template (``template_problem``) whose topics can be
    published to."""
    problem = template_problem(template, PLACEHOLDERS)
    if problem is not None:
        raise LayoutError(f"--topic {template!r}: {problem}")
    if not any(name for _, name, _, _ in string.Formatter().parse(template)):
        raise LayoutError(f"--topic {template!r}: needs a {{task_id}} or {{n}} placeholder")
    sample = template.format(task_id="task-1", n=1)
    if not valid_topic_name(sample):
        raise LayoutError(f"--topic {template!r}: {sample!r} is not a topic name one can "
                          "publish to (no + or # wildcards, no NUL, at most 65535 bytes)")


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
    check_template(topic_template)
    if topic_filter is None:
        levels = topic_template.split("/")
        if not all(("{" not in lv) or _whole_placeholder(lv) for lv in levels):
            raise LayoutError(f"--topic {topic_template!r}: the placeholder is not a whole "
                              "level; give --filter")
        topic_filter = "/".join("+" if _whole_placeholder(lv) else lv for lv in levels)
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


def _whole_placeholder(level: str) -> bool:
    """``{task_id}`` or ``{n:03d}`` alone: a topic level the default filter makes ``+``."""
    parts = list(string.Formatter().parse(level))
    return len(parts) == 1 and parts[0][0] == "" and parts[0][1] is not None
