"""Task topic templates with ``{task_id}`` as one whole level: ``jobs/{task_id}``,
``site/+/jobs/{task_id}/run``. Pure: no I/O.

``TopicTemplate`` says which plain filter an observer subscribes to (the template with
``{task_id}`` as ``+``) and which task id a topic carries. Used by ``watch --task-topic``
(where ``+`` levels are allowed: any value there) and for ``--reply-topic`` levels
(``profile.parse_reply_topic`` validates those).
"""

from __future__ import annotations

from dataclasses import dataclass

TASK_ID = "{task_id}"


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """The levels of a template; ``+`` matches any one level, ``{task_id}`` is the task id."""

    levels: tuple[str, ...]

    @property
    def topic_filter(self) -> str:
        """The plain filter that receives every topic of the template."""
        return "/".join("+" if level == TASK_ID else level for level in self.levels)

    def task_id(self, topic: str) -> str | None:
        """The task id in ``topic``, or None when ``topic`` is not one of the template's."""
        levels = topic.split("/")
        if len(levels) != len(self.levels):
            return None
        found: str | None = None
        for want, got in zip(self.levels, levels, strict=True):
            if want == TASK_ID:
                found = got
            elif want != "+" and want != got:
                return None
        return found


def parse_task_topic(template: str, option: str = "--task-topic") -> TopicTemplate:
    """A task topic template; ``ValueError`` (one line, naming ``option``) when it is not a
    topic with ``{task_id}`` exactly once as a whole level (``+`` levels allowed, no ``#``)."""
    where = f"{option} {template!r}"
    if not template or "\x00" in template:
        raise ValueError(f"{where}: expected a topic such as 'jobs/{{task_id}}'")
    if template.startswith("$"):
        raise ValueError(f"{where}: topics starting with $ are the broker's own")
    if "#" in template:
        raise ValueError(f"{where}: no # wildcard (name every level; + stands for any one)")
    levels = tuple(template.split("/"))
    if levels.count(TASK_ID) != 1:
        raise ValueError(f"{where}: needs {{task_id}} exactly once, as a whole level "
                         "(e.g. jobs/{task_id})")
    for level in levels:
        if level in (TASK_ID, "+"):
            continue
        if "+" in level:
            raise ValueError(f"{where}: + must be a whole level, not part of {level!r}")
        if "{" in level or "}" in level:
            raise ValueError(f"{where}: unknown placeholder in {level!r} (only {{task_id}})")
    return TopicTemplate(levels)


def from_levels(levels: tuple[str, ...]) -> TopicTemplate:
    """A template from levels already validated (``profile.parse_reply_topic``)."""
    return TopicTemplate(levels)
