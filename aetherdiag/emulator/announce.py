"""The machine-readable lines ``aetherdiag emulator serve --machine`` prints on stdout.

How this works: one JSON object per line, told apart by its ``event`` key::

    {"event": "listening", "host": "127.0.0.1", "port": 40023}
    {"event": "stopped", "stats": {"connections": 3, "messages_in": 9, ...}}

``listening`` comes once the socket is bound (``port`` is the real one when ``--port 0``),
``stopped`` once at exit with ``Stats.as_dict()``. The serve command writes them and
``harness/embedded.py`` reads them from the child process it starts for large runs; this
module is the one home of that format. No I/O here: events in, lines out, and back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Listening:
    """The emulator accepts connections on ``host``:``port``."""

    host: str
    port: int


@dataclass(frozen=True, kw_only=True)
class Stopped:
    """The emulator has stopped; ``stats`` is its final ``Stats.as_dict()``."""

    stats: dict[str, Any]


Event = Listening | Stopped


def dump(event: Event) -> str:
    """The event as one line of JSON (without the newline)."""
    if isinstance(event, Listening):
        doc: dict[str, Any] = {"event": "listening", "host": event.host, "port": event.port}
    else:
        doc = {"event": "stopped", "stats": event.stats}
    return json.dumps(doc)


def load(line: str) -> Event | None:
    """The event a line carries, or None when it is not one of these lines."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    kind = doc.get("event")
    if kind == "listening":
        host, port = doc.get("host"), doc.get("port")
        if not isinstance(host, str) or type(port) is not int:
            return None
        return Listening(host=host, port=port)
    if kind == "stopped":
        stats = doc.get("stats")
        return Stopped(stats=stats) if isinstance(stats, dict) else None
    return None
