"""Reading YAML with a position on every value, for one-line ``file:line:column`` errors.

How this works: ``compose`` turns text into PyYAML's node tree (``yaml.compose``, never
``safe_load``, so nothing loses its position) and turns syntax errors into ``ScenarioError``.
``NodeReader`` reads typed values out of nodes and fails at the node that is wrong: unknown
keys (with the closest valid key suggested), duplicate keys, missing keys and wrong types.
It also reads the few scenario values that both the top-level reader and the steps reader
resolve (a QoS, a share name, a worker name, a subscription), given what they refer to (the
workers, the layout) as arguments. Lines and columns are 1-based in messages (PyYAML's marks
are 0-based).

Hostile input is bounded while composing (``_BoundedLoader``): nesting deeper than
``MAX_DEPTH`` levels and documents of more than ``MAX_NODES`` values (aliases counted at their
full size, so an alias bomb is stopped early) are errors, as are recursive aliases. Numbers
must be finite and within the bounds each field gives; ``layout.template_problem`` rejects format
templates that could do more than substitute the documented placeholders.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

import yaml
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..emulator.topics import InvalidFilter, parse_filter
from ..wire.layout import Layout
from .model import ScenarioError

Fields = dict[str, tuple[Node, Node]]  # key -> (key node, value node)

MAX_DEPTH = 50  # nesting levels of mappings and lists (a scenario needs about 6)
MAX_NODES = 200_000  # values in one document, aliases counted at their full size
MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2's floats that YAML 1.1 (PyYAML) reads as text: 1e9, 2E-3, .5e1 ...
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


class _TooBig(Exception):
    """Raised while composing; ``compose`` turns it into a ``ScenarioError``."""

    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` whose composer stops at ``MAX_DEPTH`` levels and ``MAX_NODES`` values.

    PyYAML composes recursively (deep nesting is a ``RecursionError``) and shares aliased
    nodes (an alias bomb is a small tree that explodes when walked), so every node's expanded
    size and height are measured as it is composed, aliases included.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None:
                measured = self._measured.get(id(target))
                if measured is None:
                    raise _TooBig(event.start_mark, f"alias *{event.anchor} is used inside "
                                  "its own anchor (recursive aliases are not allowed)")
                if self._depth + measured[1] > MAX_DEPTH:
                    raise _TooBig(event.start_mark, f"nested more than {MAX_DEPTH} levels "
                                  f"deep (through alias *{event.anchor})")
            return self._composed(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _TooBig(self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                          f"nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            node = self._composed(parent, index)
        finally:
            self._depth -= 1
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        size, height = 1, 1
        for child in children:
            child_size, child_height = self._measured[id(child)]
            size += child_size
            height = max(height, child_height + 1)
        if size > MAX_NODES:
            raise _TooBig(node.start_mark, f"the document is too large: more than "
                          f"{MAX_NODES:,} values (aliases counted at their full size)")
        self._measured[id(node)] = (size, height)
        return node

    def _composed(self, parent: Node | None, index: Any) -> Node:
        node = super().compose_node(parent, index)
        assert node is not None  # only at the end of a stream, never inside a document
        return node


def compose(text: str, filename: str) -> Node:
    """The document's root node; a syntax error, an empty file, nesting deeper than
    ``MAX_DEPTH`` or more than ``MAX_NODES`` values is a ``ScenarioError``."""
    try:
        root = yaml.compose(text, Loader=_BoundedLoader)
    except _TooBig as exc:
        raise ScenarioError(filename, exc.mark.line + 1, exc.mark.column + 1,
                            exc.message) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(filename, exc) from None
    except yaml.YAMLError as exc:  # unmarked errors are rare (a bad byte in the stream)
        raise ScenarioError(filename, 1, 1, f"YAML error: {exc}") from None
    if root is None:
        raise ScenarioError(filename, 1, 1, "empty scenario (expected a mapping with name, "
                            "workers and steps)")
    return root


def _syntax_error(filename: str, exc: yaml.MarkedYAMLError) -> ScenarioError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if exc.context == "expected a single document in the stream":
        return ScenarioError(filename, line, column,
                             "a scenario file holds one YAML document; remove this '---'")
    problem = (exc.problem or "invalid YAML").strip()
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return ScenarioError(filename, line, column, f"YAML syntax error: {problem}")


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` or the list of valid choices."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    shown = ", ".join(choices[:8])
    if len(choices) > 8:
        shown += f", ... {len(choices)} in all"
    return f" (expected one of: {shown})"


def placeholder_problem(exc: Exception) -> str:
    """Why ``str.format`` rejected a template, in words."""
    if isinstance(exc, KeyError):
        return f"unknown placeholder {{{exc.args[0]}}}"
    if isinstance(exc, IndexError):
        return "a positional placeholder {}"
    return str(exc)


def _shown_number(value: int | float) -> str:
    """A number for a message: floats with ``:g``, huge integers by their size only."""
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if len(text) <= 24 else f"a {len(text)}-digit number"


class NodeReader:
    """Typed reads from nodes of one file; every failure names the node's position."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: Node, message: str) -> NoReturn:
        mark = node.start_mark
        raise ScenarioError(self.filename, mark.line + 1, mark.column + 1, message)

    def value(self, node: Node) -> Any:
        """A scalar's Python value (str, int, float, bool, None, ...); other nodes as is.
        A plain ``1e9`` is the number YAML 1.2 says it is (PyYAML's YAML 1.1 reads text)."""
        if isinstance(node, ScalarNode):
            if node.style is None and node.tag == "tag:yaml.org,2002:str" and \
                    _YAML12_FLOAT.fullmatch(node.value):
                return float(node.value)
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError as exc:
                self.fail(node, f"cannot read this value: {exc.problem}")
            except (ValueError, OverflowError, TypeError) as exc:
                # e.g. an integer of more than 4300 digits, or the date 2024-13-45
                reason = str(exc).split(";")[0].split(":")[0].strip() or type(exc).__name__
                self.fail(node, f"cannot read this value ({reason})")
        return node

    def is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and self.value(node) is None

    def describe(self, node: Node) -> str:
        """What a node holds, for "expected X, got Y" messages."""
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        value = self.value(node)
        if value is None:
            return "nothing (null)"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return f"the number {_shown_number(value)}"
        if isinstance(value, str):
            return f"the text {value!r}"
        return f"{type(value).__name__} {node.value!r}"

    def mapping(self, node: Node, what: str, keys: Sequence[str],
                required: Sequence[str] = ()) -> Fields:
        """Check a mapping's key names (known, unique, required present) and return them."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what}: expected a mapping, got {self.describe(node)}")
        found: Fields = {}
        for key_node, value_node in self._merged(node):
            key = self.value(key_node)
            if not isinstance(key, str):
                self.fail(key_node, f"{what}: keys are names, got {self.describe(key_node)}")
            if key in found:
                first = found[key][0].start_mark.line + 1
                self.fail(key_node, f"duplicate key {key!r} (first given at line {first})")
            if key not in keys:
                self.fail(key_node, f"unknown key {key!r} in {what}{suggest(key, keys)}")
            found[key] = (key_node, value_node)
        for key in required:
            if key not in found:
                self.fail(node, f"{what}: missing required key {key!r}")
        return found

    def pairs(self, node: Node, what: str) -> list[tuple[str, Node, Node]]:
        """A mapping with free-form names as keys (unique): ``[(name, key node, value)]``."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what}: expected a mapping, got {self.describe(node)}")
        out: list[tuple[str, Node, Node]] = []
        for key_node, value_node in self._merged(node):
            name = self.string(key_node, what)
            if any(name == seen for seen, _, _ in out):
                self.fail(key_node, f"duplicate key {name!r}")
            out.append((name, key_node, value_node))
        return out

    def _merged(self, node: MappingNode) -> list[tuple[Node, Node]]:
        """The mapping's pairs with YAML merge keys (``<<: *defaults``) applied: the merged
        mappings' keys first (the first mapping given wins), then the mapping's own keys,
        which override merged ones."""
        own: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != MERGE_TAG:
                own.append((key_node, value_node))
                continue
            sources = (value_node.value if isinstance(value_node, SequenceNode)
                       else [value_node])
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.fail(key_node, "a merge key (<<) takes a mapping or a list of "
                              f"mappings, got {self.describe(source)}")
                merged.extend(self._merged(source))
        if not merged:
            return own
        given = {self.value(k) for k, _ in own}
        out: list[tuple[Node, Node]] = []
        for key_node, value_node in merged:
            key = self.value(key_node)
            if key not in given:
                given.add(key)
                out.append((key_node, value_node))
        return out + own

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{what}: expected a list, got {self.describe(node)}")
        return list(node.value)

    def string(self, node: Node, what: str, *, empty: bool = False) -> str:
        value = self.value(node)
        if not isinstance(value, str):
            self.fail(node, f"{what}: expected text, got {self.describe(node)}")
        if not value and not empty:
            self.fail(node, f"{what}: must not be empty")
        return value

    def integer(self, node: Node, what: str, lo: int, hi: int | None = None) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, f"{what}: expected a whole number, got {self.describe(node)}")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo:,} and {hi:,}" if hi is not None else f"at least {lo:,}"
            self.fail(node, f"{what}: must be {bound}, got {_shown_number(value)}")
        return value

    def number(self, node: Node, what: str, lo: float, hi: float, *,
               above: bool = False) -> float:
        """A finite number in ``lo..hi`` (``lo`` excluded when ``above``); NaN and the
        infinities (``.nan``, ``.inf``) are refused."""
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"{what}: expected a number, got {self.describe(node)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, f"{what}: expected a finite number, got {node.value!r}")
        if value < lo or (above and value == lo):
            self.fail(node, f"{what}: must be {'above' if above else 'at least'} {lo:g}, "
                      f"got {_shown_number(value)}")
        if value > hi:
            self.fail(node, f"{what}: must be at most {hi:g}, got {_shown_number(value)}")
        return float(value)

    def boolean(self, node: Node, what: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            self.fail(node, f"{what}: expected true or false, got {self.describe(node)}")
        return value

    def choice(self, node: Node, what: str, choices: Sequence[str]) -> str:
        name = self.string(node, what)
        if name not in choices:
            self.fail(node, f"unknown {what} {name!r}{suggest(name, choices)}")
        return name

    # -- scenario values the top-level keys and the steps share ---------------------------------

    def qos_of(self, node: Node) -> int:
        return self.integer(node, "qos", 0, 2)

    def share_name(self, node: Node, what: str) -> str:
        name = self.string(node, what)
        if any(ch in name for ch in "/+#"):
            self.fail(node, f"{what} {name!r}: a share name has no '/', '+' or '#'")
        return name

    def worker_ref(self, node: Node, what: str, workers: Collection[str],
                   replica_groups: Mapping[str, tuple[str, ...]]) -> str:
        """A worker's name, one of ``workers`` (a replica group's name is not one worker)."""
        name = self.string(node, what)
        if name in workers:
            return name
        if name in replica_groups:
            members = replica_groups[name]
            self.fail(node, f"{what}: {name!r} is a replica group; name one worker "
                      f"({members[0]} .. {members[-1]})")
        self.fail(node, f"{what}: unknown worker {name!r}{suggest(name, list(workers))}")

    def subscription(self, node: Node, layout: Layout, group: str) -> str:
        """``shared`` | ``plain`` | ``{shared: GROUP}`` | an explicit filter -> a full filter
        (``shared`` means ``group``)."""
        if isinstance(node, MappingNode):
            fields = self.mapping(node, "a subscription", ("shared",), required=("shared",))
            return layout.subscription(group=self.share_name(fields["shared"][1], "shared"))
        text = self.string(node, "subscription")
        if text == "shared":
            return layout.subscription(group=group)
        if text == "plain":
            return layout.subscription(plain=True)
        close = difflib.get_close_matches(text, ["shared", "plain"], n=1, cutoff=0.6)
        if close and "/" not in text:
            self.fail(node, f"subscription {text!r}: did you mean {close[0]!r}? (an explicit "
                      "one-level filter would be taken literally)")
        try:
            parse_filter(text)
        except InvalidFilter as exc:
            self.fail(node, f"invalid topic filter: {exc}")
        return text
