"""The MQTT protocol version a client speaks: one type, one parser for every command and file.

``--mqtt``, a scenario's ``protocol:`` and a worker's ``protocol:`` all accept ``3.1.1``,
``311``, ``5`` and ``5.0`` (a leading ``v`` too) and become ``"3.1.1"`` or ``"5"``.
"""

from __future__ import annotations

from typing import Literal, get_args

from ..exitcodes import UsageError

Protocol = Literal["3.1.1", "5"]
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
_ALIASES: dict[str, Protocol] = {"3.1.1": "3.1.1", "311": "3.1.1", "5": "5", "5.0": "5"}


class UnknownProtocol(UsageError, ValueError):
    """Not a protocol version this tool speaks; the message is one line for the user."""


def parse_protocol(text: object) -> Protocol:
    """``"5.0"`` -> ``"5"``, ``"v311"`` -> ``"3.1.1"``; ``UnknownProtocol`` otherwise."""
    key = str(text).strip().lower().removeprefix("v")
    try:
        return _ALIASES[key]
    except KeyError:
        raise UnknownProtocol(
            f"unknown MQTT protocol version {str(text)!r} (use 3.1.1 or 5)") from None
