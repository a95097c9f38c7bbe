"""AetherMagic's messages on the wire (aethermagic 0.2.23), every action. Pure.

Topic: ``{union}/{job}/{task}/{context}/{tid}/{action}``. Actions: ``perform`` (a caller asks
for a task), ``status`` (a worker got it: progress 0, or later progress), ``complete`` (done,
``status`` "succeed" or "failed"), ``idle`` (a worker waits for tasks of job/task/context),
``online`` (a process connected: topic ``{union}/system/online/{host}/{client}/online``),
``dismiss``. Body: JSON ``{"host", "client", "action", "status", "progress", "data"}``;
``client`` is one per process (a uuid, not the MQTT client id).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

ACTIONS = ("perform", "status", "complete", "idle", "online", "dismiss")
LEVELS = 5  # job, task, context, tid, action after the union


@dataclass(frozen=True, slots=True)
class Message:
    """One AetherMagic message. ``body`` is None when the payload is not a JSON object."""

    union: str
    job: str
    task: str
    context: str
    tid: str
    action: str
    body: dict[str, object] | None
    digest: str  # of the payload: equal payloads, equal digests

    @property
    def host(self) -> str | None:
        if self.is_online:
            return self.context
        value = self.body.get("host") if self.body is not None else None
        return value if isinstance(value, str) else None

    @property
    def client(self) -> str | None:
        if self.is_online:
            return self.tid
        value = self.body.get("client") if self.body is not None else None
        return value if isinstance(value, str) else None

    @property
    def progress(self) -> float | None:
        value = self.body.get("progress") if self.body is not None else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else None

    @property
    def status(self) -> str | None:
        value = self.body.get("status") if self.body is not None else None
        return value if isinstance(value, str) else None

    @property
    def is_online(self) -> bool:
        return self.job == "system" and self.task == "online" and self.action == "online"

    @property
    def who(self) -> str:
        """The sender as ``host/client`` ("?" for a part the message lacks)."""
        return f"{self.host or '?'}/{self.client or '?'}"


def digest(payload: bytes) -> str:
    """A short digest of a payload (BLAKE2b, 8 bytes, hex)."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def split_topic(topic: str, union: str | None = None
                ) -> tuple[str, str, str, str, str, str] | None:
    """``(union, job, task, context, tid, action)`` of an AetherMagic topic, or None. With
    ``union``, only topics under that union."""
    levels = topic.split("/")
    if len(levels) < LEVELS + 1 or levels[-1] not in ACTIONS:
        return None
    head = "/".join(levels[:-LEVELS])
    if union is not None and head != union:
        return None
    job, task, context, tid, action = levels[-LEVELS:]
    return head, job, task, context, tid, action


def parse(topic: str, payload: bytes, union: str | None = None) -> Message | None:
    """The AetherMagic message on ``topic``, or None when the topic is not one."""
    parts = split_topic(topic, union)
    if parts is None:
        return None
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        body = None
    union_, job, task, context, tid, action = parts
    return Message(union_, job, task, context, tid, action,
                   body if isinstance(body, dict) else None, digest(payload))
