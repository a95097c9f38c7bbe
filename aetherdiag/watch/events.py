"""What ``watch`` sees: one ``(at, topic, payload)`` -> one ``Event``. Pure: no I/O.

How this works: a ``Watched`` profile knows the plain filters an observer subscribes to and
turns each message into an ``Event``: the task id, what happened to it (``perform`` asked for
it, ``status``/``complete`` answered it, ``idle``/``online`` announced a process), who sent it
and a digest of the payload (never the payload itself). ``aethermagic``: the library's topics
``{union}/{job}/{task}/{context}/{tid}/{action}`` and JSON bodies (``wire.aethermagic``).
``generic``: ``--task-topic`` (each message there is a task) and ``--reply-topic`` (each
message there is a worker's answer, the worker named by ``--worker-field`` or the body's
``host``/``client``). A payload that is not what the profile expects becomes an event with
``parsed=False``: it is counted, never raised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, get_args

from ..wire import aethermagic
from ..wire.pointer import parse_pointer, text_at
from ..wire.profile import parse_reply_topic
from ..wire.templates import TopicTemplate, from_levels, parse_task_topic

Action = Literal["perform", "status", "complete", "idle", "online", "dismiss", "other"]
ACTIONS: tuple[Action, ...] = get_args(Action)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One observed message. ``client``/``host``: the sender (the caller of a ``perform``,
    the worker of a ``status``/``complete``); ``scope``: the part of the topic that, with the
    tid, names one task (AetherMagic's ``job/task/context``; empty for generic)."""

    at: float  # seconds since the watch started
    topic: str
    tid: str | None
    action: Action
    client: str | None = None
    host: str | None = None
    progress: float | None = None
    digest: str = ""
    parsed: bool = True
    scope: str = ""
    # delivered with the retain flag: a message the broker kept from before the watch and
    # sent because the watch subscribed (live messages reach a plain subscriber with the flag
    # cleared), so stale state, not a live task
    retained: bool = False

    @property
    def who(self) -> str | None:
        """The sender as ``host/client`` (or the name alone), None when unknown."""
        if self.client is None:
            return None
        return f"{self.host}/{self.client}" if self.host else self.client

    @property
    def key(self) -> tuple[str, str] | None:
        """What identifies the task (None for messages about no task)."""
        return None if self.tid is None else (self.scope, self.tid)


class Watched:
    """A profile: the filters to subscribe to and how to read a message."""

    profile: str = ""

    def filters(self) -> tuple[str, ...]:
        raise NotImplementedError

    def event(self, at: float, topic: str, payload: bytes) -> Event | None:
        """The event of one message (None: a topic this profile does not watch)."""
        raise NotImplementedError


def _level(label: str, value: str | None) -> str:
    if value is None:
        return "+"
    if not value or any(ch in value for ch in "/+#\x00"):
        raise ValueError(f"--{label} {value!r}: must be one non-empty topic level without "
                         "/ + #")
    return value


class AetherMagicWatch(Watched):
    """``{union}/+/+/+/+/+``, narrowed by ``job``/``task``/``context``."""

    profile = "aethermagic"

    def __init__(self, union: str = "production", job: str | None = None,
                 task: str | None = None, context: str | None = None) -> None:
        self.union = union
        for part in union.split("/"):
            if not part or any(ch in part for ch in "+#\x00") or union.startswith("$"):
                raise ValueError(f"--union {union!r}: must be topic levels without + # and "
                                 "not start with $")
        self.levels = (_level("job", job), _level("task", task), _level("context", context))

    def filters(self) -> tuple[str, ...]:
        main = "/".join((self.union, *self.levels, "+", "+"))
        if self.levels[:2] == ("+", "+"):
            return (main,)
        # processes announce themselves on {union}/system/online/{host}/{client}/online
        return (main, f"{self.union}/system/online/+/+/online")

    def event(self, at: float, topic: str, payload: bytes) -> Event | None:
        msg = aethermagic.parse(topic, payload, self.union)
        if msg is None:
            if topic.startswith(self.union + "/"):
                return Event(at=at, topic=topic, tid=None, action="other",
                             digest=aethermagic.digest(payload), parsed=False)
            return None
        action: Action = msg.action if msg.action in ACTIONS else "other"
        task_message = action in ("perform", "status", "complete", "dismiss")
        return Event(
            at=at, topic=topic, tid=msg.tid if task_message else None, action=action,
            client=msg.client, host=msg.host, progress=msg.progress, digest=msg.digest,
            parsed=msg.body is not None, scope=f"{msg.job}/{msg.task}/{msg.context}",
        )


class GenericWatch(Watched):
    """``--task-topic`` templates and, optionally, ``--reply-topic`` / ``--worker-field``."""

    profile = "generic"

    def __init__(self, task_topic: str, reply_topic: str | None = None,
                 worker_field: str | None = None) -> None:
        self.task: TopicTemplate = parse_task_topic(task_topic)
        self.reply: TopicTemplate | None = None
        if reply_topic is not None:
            self.reply = from_levels(parse_reply_topic(reply_topic))
            if self.reply.levels == self.task.levels:
                raise ValueError(f"--reply-topic {reply_topic!r}: the same as --task-topic; "
                                 "answers must go elsewhere to be told apart from tasks")
        self.worker: tuple[str, ...] | None = None
        if worker_field is not None:
            if reply_topic is None:
                raise ValueError("--worker-field needs --reply-topic (where your workers "
                                 "answer)")
            try:
                self.worker = parse_pointer(worker_field)
            except ValueError as exc:
                raise ValueError(f"--worker-field: {exc}") from None

    @property
    def expects_replies(self) -> bool:
        return self.reply is not None

    def filters(self) -> tuple[str, ...]:
        task = self.task.topic_filter
        if self.reply is None or self.reply.topic_filter == task:
            return (task,)
        return (task, self.reply.topic_filter)

    def event(self, at: float, topic: str, payload: bytes) -> Event | None:
        if self.reply is not None and (tid := self.reply.task_id(topic)) is not None:
            return self._reply(at, topic, tid, payload)
        tid = self.task.task_id(topic)
        if tid is None:
            return None
        return Event(at=at, topic=topic, tid=tid, action="perform",
                     digest=aethermagic.digest(payload))

    def _reply(self, at: float, topic: str, tid: str, payload: bytes) -> Event:
        try:
            body: object = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return Event(at=at, topic=topic, tid=tid, action="complete",
                         digest=aethermagic.digest(payload), parsed=False)
        client = host = None
        if self.worker is not None:
            client = text_at(body, self.worker)
        elif isinstance(body, dict):
            named, where = body.get("client"), body.get("host")
            client = named if isinstance(named, str) else None
            host = where if isinstance(where, str) else None
        return Event(at=at, topic=topic, tid=tid, action="complete", client=client, host=host,
                     digest=aethermagic.digest(payload))
