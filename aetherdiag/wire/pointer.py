"""RFC 6901 JSON pointers (``/worker``, ``/meta/host``, ``/a~1b`` for the key ``a/b``).

Used by ``--worker-field``: which field of a worker's reply names the worker. Pure.
"""

from __future__ import annotations

from typing import Final

MISSING: Final = object()


def parse_pointer(text: str) -> tuple[str, ...]:
    """The reference tokens of ``text``; ``ValueError`` (one line) when it is not a pointer."""
    if text == "":
        return ()
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not a JSON pointer: it must start with '/' "
                         "(e.g. /worker or /meta/host)")
    tokens = text[1:].split("/")
    for token in tokens:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise ValueError(f"{text!r} is not a JSON pointer: '~' must be followed by 0 or 1 "
                             "(~0 is '~', ~1 is '/')")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


def resolve(document: object, tokens: tuple[str, ...]) -> object:
    """The value ``tokens`` point at in ``document``, or ``MISSING``."""
    node = document
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                return MISSING
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or (token != "0" and token.startswith("0")):
                return MISSING
            index = int(token)
            if index >= len(node):
                return MISSING
            node = node[index]
        else:
            return MISSING
    return node


def text_at(document: object, tokens: tuple[str, ...]) -> str | None:
    """The value at ``tokens`` as text (strings as they are, numbers and booleans printed),
    or None when it is missing, null, or an object or array."""
    value = resolve(document, tokens)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None
