"""Topic names, topic filters and shared-subscription names (MQTT 3.1.1 4.7, 5.0 4.7 / 4.8.2).

How this works: pure functions over strings. ``parse_filter`` validates a filter and splits a
``$share/{name}/{filter}`` into its share name and the filter it covers; ``matches`` decides
whether a topic name matches a filter, honouring the rule that filters starting with a
wildcard do not match topics starting with ``$``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHARE_PREFIX = "$share/"
QUEUE_PREFIX = "$queue/"
MAX_TOPIC_BYTES = 65535


class InvalidFilter(ValueError):
    """A topic filter breaks the spec's rules; ``shared`` says it was a malformed share."""

    def __init__(self, message: str, shared: bool = False) -> None:
        super().__init__(message)
        self.shared = shared


@dataclass(frozen=True, slots=True)
class ParsedFilter:
    """A validated subscription filter: ``share_name`` is None for a plain subscription."""

    raw: str
    topic_filter: str
    share_name: str | None = None

    @property
    def shared(self) -> bool:
        return self.share_name is not None


def valid_topic_name(topic: str) -> bool:
    """True when ``topic`` may be published to: non-empty, no wildcards, no NUL."""
    return (
        bool(topic)
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        # ASCII: one byte per character, no need to encode it to count the bytes.
        and ((topic.isascii() and len(topic) <= MAX_TOPIC_BYTES)
             or len(topic.encode("utf-8")) <= MAX_TOPIC_BYTES)
    )


def validate_plain_filter(topic_filter: str) -> None:
    """Raise InvalidFilter unless ``topic_filter`` is a valid (non-shared) filter."""
    if not topic_filter:
        raise InvalidFilter("empty topic filter")
    if "\x00" in topic_filter:
        raise InvalidFilter("U+0000 in topic filter")
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise InvalidFilter(f"'#' must be a whole last level in {topic_filter!r}")
        if "+" in level and level != "+":
            raise InvalidFilter(f"'+' must be a whole level in {topic_filter!r}")


def parse_filter(raw: str, *, queue_prefix: bool = False) -> ParsedFilter:
    """Validate ``raw`` and split off a ``$share/{name}/`` prefix.

    With ``queue_prefix`` (EMQX style) ``$queue/t`` is read as ``$share/$queue/t``.
    """
    if queue_prefix and raw.startswith(QUEUE_PREFIX):
        rest = raw[len(QUEUE_PREFIX):]
        validate_plain_filter(rest)
        return ParsedFilter(raw=raw, topic_filter=rest, share_name="$queue")
    if raw.startswith(SHARE_PREFIX) or raw == "$share":
        rest = raw[len(SHARE_PREFIX):]
        name, sep, topic_filter = rest.partition("/")
        if not name:
            raise InvalidFilter(f"empty share name in {raw!r}", shared=True)
        if "+" in name or "#" in name:
            raise InvalidFilter(f"wildcard in share name in {raw!r}", shared=True)
        if not sep or not topic_filter:
            raise InvalidFilter(f"no topic filter after the share name in {raw!r}", shared=True)
        try:
            validate_plain_filter(topic_filter)
        except InvalidFilter as exc:
            raise InvalidFilter(str(exc), shared=True) from None
        return ParsedFilter(raw=raw, topic_filter=topic_filter, share_name=name)
    validate_plain_filter(raw)
    return ParsedFilter(raw=raw, topic_filter=raw)


def literal_filter(raw: str) -> ParsedFilter:
    """Treat ``raw`` as a plain filter even if it starts with ``$share`` (broken brokers)."""
    validate_plain_filter(raw)
    return ParsedFilter(raw=raw, topic_filter=raw)


def matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` (a topic name) matches ``topic_filter``."""
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    n = len(t_levels)
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= n:
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == n


def filter_pattern(topic_filter: str) -> re.Pattern[str]:
    """A regular expression whose ``fullmatch`` says what ``matches`` says for a topic that is
    not the filter's own text, leaving out the ``$`` rule (the caller applies it).

    ``+`` is one level of any text, ``#`` the parent level and anything below it (``a/#``
    matches ``a``); every other level matches itself only.
    """
    pattern = ""
    for i, level in enumerate(topic_filter.split("/")):
        if level == "#":
            pattern += "(?:/.*)?" if i else ".*"
            break
        if i:
            pattern += "/"
        pattern += "[^/]*" if level == "+" else re.escape(level)
    return re.compile(pattern, re.DOTALL)


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter
