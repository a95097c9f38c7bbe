"""Wire profiles: what a task looks like on the wire and how workers answer.

``generic``: aetherdiag's own JSON payload (``{"task_id", "run_id", "sent_at"}``), no replies.
``aethermagic``: the AetherMagic library's format (aethermagic 0.2.23). A caller publishes
``{"action": "perform", "status": "initialized", "progress": 0, "data": {...}, "host": ...,
"client": ..., ...}`` to ``{union}/{job}/{task}/{context}/{tid}/perform``; a worker answers on
``.../{tid}/status`` (progress 0 when the task arrives) and ``.../{tid}/complete``, with its
``host`` and ``client`` (a per-process identifier) in the JSON body. The library speaks MQTT
3.1.1 at QoS 0 with clean sessions. Pure: no I/O.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Literal, get_args

from ..layout import Layout

Profile = Literal["generic", "aethermagic"]
PROFILES: tuple[Profile, ...] = get_args(Profile)
REPLY_ACTIONS = ("status", "complete")


@dataclass(frozen=True, slots=True)
class Reply:
    """A worker's answer about one task (``status`` on receipt, ``complete`` when done)."""

    task_id: str
    action: str  # "status" or "complete"
    identity: str  # who says so: the process name when known, else "host/client"
    at: float


def task_payload(profile: str, task_id: str, run_id: str, sent_at: float) -> bytes:
    """The payload of one task in a profile other than generic (whose payload the publisher
    builds itself)."""
    return json.dumps({
        "action": "perform", "status": "initialized", "progress": 0,
        "data": {"task_id": task_id, "run_id": run_id, "sent_at": round(sent_at, 6)},
        "host": socket.gethostname(), "client": f"aetherdiag-{run_id}",
        "job": "", "workgroup": "", "task": "", "context": "", "tid": "",
    }, separators=(",", ":")).encode()


def _base(layout: Layout) -> tuple[str, int]:
    """The topic before the task id level, and that level's index."""
    levels = layout.topic_template.split("/")
    index = levels.index("{task_id}")
    return "/".join(levels[:index]), index


def reply_filters(profile: Profile, layout: Layout) -> tuple[str, ...]:
    """Plain filters an observer subscribes to for the workers' answers (none: generic)."""
    if profile == "generic":
        return ()
    base, _ = _base(layout)
    return tuple(f"{base}/+/{action}" for action in REPLY_ACTIONS)


def check_layout(profile: Profile, layout: Layout) -> None:
    """``ValueError`` when ``layout`` cannot carry ``profile`` (AetherMagic needs its own)."""
    if profile == "aethermagic" and "{task_id}" not in layout.topic_template.split("/"):
        raise ValueError("--profile aethermagic needs the AetherMagic layout (no --topic), "
                         "the task id as a whole topic level")


def task_of(layout: Layout, topic: str) -> str | None:
    """The task id in a task topic of ``layout`` (the ``{task_id}`` level)."""
    _, index = _base(layout)
    levels = topic.split("/")
    return levels[index] if index < len(levels) else None


def parse_reply(profile: Profile, layout: Layout, topic: str, payload: bytes, at: float,
                identity: str | None = None) -> Reply | None:
    """A worker's answer seen on ``topic``, or None when it is not one. ``identity`` names
    the process when the broker told us who published (the emulator); otherwise the body's
    ``host``/``client`` do."""
    if profile == "generic":
        return None
    base, index = _base(layout)
    levels = topic.split("/")
    if len(levels) != index + 2 or "/".join(levels[:index]) != base:
        return None
    action = levels[index + 1]
    if action not in REPLY_ACTIONS:
        return None
    if identity is None:
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return None
        identity = f"{body.get('host', '?')}/{body.get('client', '?')}"
    return Reply(task_id=levels[index], action=action, identity=identity, at=at)
