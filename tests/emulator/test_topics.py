"""Topic names, filters and share names: tables from MQTT 5.0 4.7 and 4.8.2."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aetherdiag.emulator.topics import (
    InvalidFilter,
    ParsedFilter,
    has_wildcard,
    literal_filter,
    matches,
    parse_filter,
    valid_topic_name,
    validate_plain_filter,
)

VALID_FILTERS = [
    "a", "a/b", "#", "+", "a/#", "a/+/b", "+/+", "+/#", "/", "//", "/finance", "/#",
    "$SYS/#", "$SYS/+/x", "a/+", "+/a/#", " ", "a b/c d", "\u00fc/\u2603", "$", "a//b",
    "$sharefoo/t", "$SHARE/g/t",  # not the (case-sensitive) $share/ prefix: plain filters
    "x" * 65535,
]

INVALID_FILTERS = [
    "", "a#", "#a", "a/#/b", "#/a", "##", "a/##", "a+", "+a", "a/b+", "a/+b/c", "++",
    "a/\x00", "\x00",
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS)
def test_valid_filter(topic_filter: str) -> None:
    validate_plain_filter(topic_filter)
    parsed = parse_filter(topic_filter)
    assert parsed == ParsedFilter(raw=topic_filter, topic_filter=topic_filter)
    assert not parsed.shared


@pytest.mark.parametrize("topic_filter", INVALID_FILTERS)
def test_invalid_filter(topic_filter: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(topic_filter)
    assert not info.value.shared


SHARES = [
    ("$share/g/t", "g", "t"),
    ("$share/g//finance", "g", "/finance"),  # 4.8.2 example: matches "/finance"
    ("$share/1/a/#", "1", "a/#"),  # wildcards in the filter part are fine
    ("$share/g/+", "g", "+"),
    ("$share/g/#", "g", "#"),
    ("$share/g/+/b/#", "g", "+/b/#"),
    ("$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+"),
    ("$share/$queue/t", "$queue", "t"),
    ("$share/g/$SYS/x", "g", "$SYS/x"),
    ("$share/g/$share/t", "g", "$share/t"),
    ("$share/a_b-c.d/t", "a_b-c.d", "t"),
    ("$share/\u00fc/t", "\u00fc", "t"),
    ("$share/g//", "g", "/"),
]


@pytest.mark.parametrize(("raw", "name", "topic_filter"), SHARES)
def test_share_names(raw: str, name: str, topic_filter: str) -> None:
    parsed = parse_filter(raw)
    assert parsed == ParsedFilter(raw=raw, topic_filter=topic_filter, share_name=name)
    assert parsed.shared


MALFORMED_SHARES = [
    "$share//t",  # empty share name
    "$share/a+/t",  # wildcard in the share name
    "$share/a#/t",
    "$share/+/t",
    "$share/#/t",
    "$share/a",  # no filter at all
    "$share/a/",  # empty filter
    "$share/",
    "$share//",
    "$share/g/a#",  # the filter part must itself be valid
    "$share/g/#/a",
    "$share/g/a+",
    "$share/g/\x00",
]


@pytest.mark.parametrize("raw", MALFORMED_SHARES)
def test_malformed_share(raw: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(raw)
    assert info.value.shared  # the broker answers 0x8F in v5


def test_queue_prefix_is_a_share_when_enabled() -> None:
    assert parse_filter("$queue/t", queue_prefix=True) == ParsedFilter(
        raw="$queue/t", topic_filter="t", share_name="$queue"
    )
    assert parse_filter("$queue/a/+/#", queue_prefix=True).topic_filter == "a/+/#"
    # $queue/t and $share/$queue/t name the same group.
    assert parse_filter("$share/$queue/t").share_name == "$queue"


def test_queue_prefix_is_plain_when_disabled() -> None:
    assert parse_filter("$queue/t") == ParsedFilter(raw="$queue/t", topic_filter="$queue/t")


@pytest.mark.parametrize("raw", ["$queue/", "$queue/a#", "$queue/#/a"])
def test_queue_prefix_needs_a_valid_filter(raw: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_filter(raw, queue_prefix=True)


def test_queue_prefix_only_with_the_slash() -> None:
    assert not parse_filter("$queuex/t", queue_prefix=True).shared


@pytest.mark.parametrize("raw", ["$share/g/t", "$share/g/a/+"])
def test_literal_filter_ignores_share_syntax(raw: str) -> None:
    assert literal_filter(raw) == ParsedFilter(raw=raw, topic_filter=raw)


def test_literal_filter_still_validates() -> None:
    with pytest.raises(InvalidFilter):
        literal_filter("$share/a#/t")


TOPIC_NAMES = [
    ("a", True), ("a/b", True), ("/", True), ("/finance", True), ("a//b", True),
    ("$SYS/x", True), ("$share/g/t", True),  # a name; the broker refuses publishing to it
    ("a b", True), ("\u00fc", True), ("x" * 65535, True),
    ("", False), ("+", False), ("#", False), ("a/+", False), ("a/#", False), ("a+b", False),
    ("a#", False), ("a\x00b", False), ("x" * 65536, False),
    ("\u00fc" * 32768, False),  # 65,536 bytes in UTF-8
]


@pytest.mark.parametrize(("topic", "valid"), TOPIC_NAMES,
                         ids=[repr(t[:12]) for t, _ in TOPIC_NAMES])
def test_valid_topic_name(topic: str, valid: bool) -> None:
    assert valid_topic_name(topic) is valid


MATCHES = [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/b", "a/b/c", False),
    ("a/b", "a", False),
    ("a/b", "a/b/", False),
    ("a/b/", "a/b/", True),
    ("A", "a", False),
    ("a/+", "a/b", True),
    ("a/+", "a", False),
    ("a/+", "a/", True),
    ("a/+", "a/b/c", False),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/b/c", True),
    ("+", "a", True),
    ("+", "/a", False),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/", False),
    ("+/+", "/", True),
    ("a/#", "a", True),  # '#' also matches the parent level
    ("a/#", "a/", True),
    ("a/#", "a/b/c", True),
    ("a/#", "ab", False),
    ("a/#", "b/a", False),
    ("a/+/#", "a/b", True),
    ("a/+/#", "a", False),
    ("+/+/#", "a", False),
    ("#", "a/b", True),
    ("#", "/", True),
    ("#", "/finance", True),
    ("/#", "/finance", True),
    ("/#", "finance", False),
    # $-topics are not matched by filters starting with a wildcard (4.7.2).
    ("#", "$SYS/x", False),
    ("#", "$", False),
    ("+/x", "$SYS/x", False),
    ("+/#", "$SYS", False),
    ("+", "$SYS", False),
    ("$SYS/#", "$SYS/x", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/+", "$SYS/x", True),
    ("$SYS/x", "$SYS/x", True),
    ("a/#", "a/$x", True),  # only the first level counts
    ("a/+", "a/$x", True),
    ("$share/g/t", "$share/g/t", True),  # a literal filter (share-literal fault)
    ("$share/g/t", "t", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "expected"),
                         [("a", False), ("a/+", True), ("#", True), ("a/b/#", True)])
def test_has_wildcard(topic_filter: str, expected: bool) -> None:
    assert has_wildcard(topic_filter) is expected


# -- Properties: matching against an independent regular-expression reference --------------

_level = st.sampled_from(["a", "b", "", "$x", "c"])
_topics = st.lists(_level, min_size=1, max_size=4).map("/".join).filter(bool)
_filter_level = st.sampled_from(["a", "b", "", "+", "$x"])


@st.composite
def _filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(_filter_level, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "+"


def _reference(topic_filter: str, topic: str) -> bool:
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts: list[str] = []
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            # "a/#" matches "a" and everything below it; a lone "#" matches everything.
            return re.fullmatch("".join(parts)[:-1] + "(/.*)?" if parts else ".*", topic) \
                is not None
        parts.append("[^/]*" if level == "+" else re.escape(level))
        parts.append("/" if i < len(levels) - 1 else "")
    return re.fullmatch("".join(parts), topic) is not None


@settings(max_examples=400, deadline=None)
@given(topic_filter=_filters(), topic=_topics)
def test_matches_agrees_with_a_regex_reference(topic_filter: str, topic: str) -> None:
    validate_plain_filter(topic_filter)
    assert matches(topic_filter, topic) is _reference(topic_filter, topic)


@settings(max_examples=200, deadline=None)
@given(topic=_topics)
def test_a_topic_name_matches_itself_and_hash(topic: str) -> None:
    assert matches(topic, topic)
    assert matches("#", topic) is not topic.startswith("$")
