"""Reading YAML with a position on every value, for one-line ``file:line:column`` errors.

How this works: ``compose`` turns text into PyYAML's node tree (``yaml.compose``, never
``safe_load``, so nothing loses its position) and turns syntax errors into ``ScenarioError``.
``NodeReader`` reads typed values out of nodes and fails at the node that is wrong: unknown
keys (with the closest valid key suggested), duplicate keys, missing keys and wrong types.
Lines and columns are 1-based in messages (PyYAML's marks are 0-based).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .scenario_model import ScenarioError

Fields = dict[str, tuple[Node, Node]]  # key -> (key node, value node)


def compose(text: str, filename: str) -> Node:
    """The document's root node; a syntax error or an empty file is a ``ScenarioError``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
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


class NodeReader:
    """Typed reads from nodes of one file; every failure names the node's position."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: Node, message: str) -> NoReturn:
        mark = node.start_mark
        raise ScenarioError(self.filename, mark.line + 1, mark.column + 1, message)

    def value(self, node: Node) -> Any:
        """A scalar's Python value (str, int, float, bool, None, ...); other nodes as is."""
        if isinstance(node, ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError as exc:
                self.fail(node, f"cannot read this value: {exc.problem}")
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
            return f"the number {value}"
        if isinstance(value, str):
            return f"the text {value!r}"
        return f"{type(value).__name__} {node.value!r}"

    def mapping(self, node: Node, what: str, keys: Sequence[str],
                required: Sequence[str] = ()) -> Fields:
        """Check a mapping's key names (known, unique, required present) and return them."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what}: expected a mapping, got {self.describe(node)}")
        found: Fields = {}
        for key_node, value_node in node.value:
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
        for key_node, value_node in node.value:
            name = self.string(key_node, what)
            if any(name == seen for seen, _, _ in out):
                self.fail(key_node, f"duplicate key {name!r}")
            out.append((name, key_node, value_node))
        return out

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
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.fail(node, f"{what}: must be {bound}, got {value}")
        return value

    def number(self, node: Node, what: str, lo: float, *, above: bool = False) -> float:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"{what}: expected a number, got {self.describe(node)}")
        if value < lo or (above and value == lo):
            self.fail(node, f"{what}: must be {'above' if above else 'at least'} {lo:g}, "
                      f"got {value:g}")
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
