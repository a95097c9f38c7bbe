"""The machine-readable lines ``aetherdiag emulator serve --machine`` prints on stdout.

How this works: one JSON object per line, told apart by its ``event`` key::

    {"event": "listening", "host": "127.0.0.1", "port": 40023, "ports": [40023]}
    {"event": "node", "node": 2, "up": false}
    {"event": "backlog", "id": 7, "messages": 1200}
    {"event": "stopped", "stats": {"connections": 3, "messages_in": 9, ...}}

``listening`` comes once the sockets are bound (``port`` is the real one when ``--port 0``;
``ports`` every node's of an emulated cluster, node 1 first; ``ws_ports`` the WebSocket
listeners', when there are any), ``node`` once a command below was
carried out, ``backlog`` in answer to a backlog query (messages queued or in flight for
connected clients), ``stopped`` once at exit with ``Stats.as_dict()``. The serve command writes them
and ``harness/embedded.py`` reads them from the child process it starts for large runs.

The other way, on the child's stdin (``--machine --exit-on-stdin-eof``), one command a line:
``{"command": "node_down", "node": 2}``, ``{"command": "node_up", "node": 2}`` or
``{"command": "backlog", "id": 7}``.
This module is the one home of both formats. No I/O here: events in, lines out, and back.
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
    ports: tuple[int, ...] = ()  # every node's, node 1 first (empty: only ``port``)
    ws_ports: tuple[int, ...] = ()  # every node's WebSocket listener (empty: none)


@dataclass(frozen=True, kw_only=True)
class NodeChanged:
    """A cluster node went down (``up`` False) or came back, as commanded."""

    node: int
    up: bool


@dataclass(frozen=True, kw_only=True)
class NodeCommand:
    """A command on the child's stdin: take ``node`` down or bring it up."""

    node: int
    up: bool


@dataclass(frozen=True, kw_only=True)
class BacklogQuery:
    """A command on the child's stdin: how many messages it still owes its clients."""

    id: int


@dataclass(frozen=True, kw_only=True)
class Backlog:
    """The answer to ``BacklogQuery`` ``id``."""

    id: int
    messages: int


@dataclass(frozen=True, kw_only=True)
class Stopped:
    """The emulator has stopped; ``stats`` is its final ``Stats.as_dict()``."""

    stats: dict[str, Any]


Event = Listening | NodeChanged | Backlog | Stopped


def dump(event: Event) -> str:
    """The event as one line of JSON (without the newline)."""
    if isinstance(event, Listening):
        doc: dict[str, Any] = {"event": "listening", "host": event.host, "port": event.port}
        if event.ports:
            doc["ports"] = list(event.ports)
        if event.ws_ports:
            doc["ws_ports"] = list(event.ws_ports)
    elif isinstance(event, NodeChanged):
        doc = {"event": "node", "node": event.node, "up": event.up}
    elif isinstance(event, Backlog):
        doc = {"event": "backlog", "id": event.id, "messages": event.messages}
    else:
        doc = {"event": "stopped", "stats": event.stats}
    return json.dumps(doc)


Command = NodeCommand | BacklogQuery


def dump_command(command: Command) -> str:
    """The command as one line of JSON (without the newline)."""
    if isinstance(command, BacklogQuery):
        return json.dumps({"command": "backlog", "id": command.id})
    return json.dumps({"command": "node_up" if command.up else "node_down",
                       "node": command.node})


def load_command(line: str) -> Command | None:
    """The command a stdin line carries, or None when it is not one."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    kind = doc.get("command")
    if kind == "backlog":
        return BacklogQuery(id=doc["id"]) if type(doc.get("id")) is int else None
    if kind not in ("node_down", "node_up") or type(doc.get("node")) is not int:
        return None
    return NodeCommand(node=doc["node"], up=kind == "node_up")


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
        ports, ws_ports = doc.get("ports", []), doc.get("ws_ports", [])
        for numbers in (ports, ws_ports):
            if not isinstance(numbers, list) or not all(type(p) is int for p in numbers):
                return None
        return Listening(host=host, port=port, ports=tuple(ports), ws_ports=tuple(ws_ports))
    if kind == "node":
        node, up = doc.get("node"), doc.get("up")
        if type(node) is not int or not isinstance(up, bool):
            return None
        return NodeChanged(node=node, up=up)
    if kind == "backlog":
        ident, messages = doc.get("id"), doc.get("messages")
        if type(ident) is not int or type(messages) is not int:
            return None
        return Backlog(id=ident, messages=messages)
    if kind == "stopped":
        stats = doc.get("stats")
        return Stopped(stats=stats) if isinstance(stats, dict) else None
    return None
