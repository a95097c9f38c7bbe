"""Wire profiles: what a task looks like on the wire and how workers answer.

``generic``: aetherdiag's own JSON payload (``{"task_id", "run_id", "sent_at"}``), no replies.
``aethermagic``: the AetherMagic library's format (aethermagic 0.2.23). A caller publishes
``{"action": "perform", "status": "initialized", "progress": 0, "data": {...}, "host": ...,
"client": ..., ...}`` to ``{union}/{job}/{task}/{context}/{tid}/perform``; a worker answers on
``.../{tid}/status`` (progress 0 when the task arrives) and ``.../{tid}/complete``, with its
``host`` and ``client`` (a per-process identifier) in the JSON body. The library speaks MQTT
3.1.1 at QoS 0 with clean sessions.

``Replies`` says where workers answer and who they say they are: AetherMagic's status and
complete messages, or for the generic profile a ``--reply-topic`` template with ``{task_id}``
and a ``--worker-field`` JSON pointer into the reply. Pure: no I/O.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Literal, get_args

from ..exitcodes import UsageError
from .aethermagic import parse
from .layout import Layout
from .pointer import parse_pointer, text_at


class ProfileError(UsageError, ValueError):
    """A profile, reply topic or worker field that cannot work with the layout (exit 2)."""


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


def check_layout(profile: Profile, layout: Layout) -> None:
    """``ValueError`` when ``layout`` cannot carry ``profile`` (AetherMagic needs its own)."""
    if profile == "aethermagic" and "{task_id}" not in layout.topic_template.split("/"):
        raise ProfileError("--profile aethermagic needs the AetherMagic layout (no --topic), "
                         "the task id as a whole topic level")


def task_of(layout: Layout, topic: str) -> str | None:
    """The task id in a task topic of ``layout`` (the ``{task_id}`` level)."""
    _, index = _base(layout)
    levels = topic.split("/")
    return levels[index] if index < len(levels) else None


@dataclass(frozen=True, slots=True)
class Replies:
    """Where workers answer tasks and who they say they are.

    ``kind``: ``none`` (workers do not answer), ``aethermagic`` (``{base}/{tid}/status`` and
    ``.../complete``, the worker is the body's ``host/client``), ``template`` (a generic
    ``--reply-topic``: every reply means the task was handled and completed). ``worker``: the
    JSON pointer naming the worker in a reply (None: the default of the kind; for a template,
    only the broker knows the sender, so only the emulator can attribute).
    """

    kind: Literal["none", "aethermagic", "template"]
    levels: tuple[str, ...] = ()  # the reply topic's levels, "{task_id}" (and "{action}") in it
    worker: tuple[str, ...] | None = None
    worker_text: str = ""  # the pointer as given, for messages

    @property
    def expected(self) -> bool:
        return self.kind != "none"

    @property
    def names_worker(self) -> bool:
        """Whether a reply itself says which worker sent it (else only the emulator knows)."""
        return self.kind == "aethermagic" or self.worker is not None

    def filters(self) -> tuple[str, ...]:
        """Plain filters an observer subscribes to for the answers (none: ``none``)."""
        if self.kind == "none":
            return ()
        base = "/".join("+" if lv == "{task_id}" else lv for lv in self.levels)
        if self.kind == "aethermagic":
            return tuple(base.replace("{action}", action) for action in REPLY_ACTIONS)
        return (base,)

    def parse(self, topic: str, payload: bytes, at: float, identity: str | None = None
              ) -> Reply | None:
        """The answer on ``topic``, or None when it is not one. ``identity`` names the sender
        when the broker told us (the emulator); a ``--worker-field`` still wins."""
        if self.kind == "none":
            return None
        levels = topic.split("/")
        if len(levels) != len(self.levels):
            return None
        task_id, action = None, "complete"
        for want, got in zip(self.levels, levels, strict=True):
            if want == "{task_id}":
                task_id = got
            elif want == "{action}":
                action = got
            elif want != got:
                return None
        if task_id is None or action not in REPLY_ACTIONS:
            return None
        if self.worker is not None or identity is None:
            try:
                body = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                body = None
            if self.worker is not None:
                named = text_at(body, self.worker)
                identity = named if named is not None else f"?{self.worker_text}"
            elif isinstance(body, dict):
                identity = f"{body.get('host', '?')}/{body.get('client', '?')}"
            else:
                identity = "?"
        return Reply(task_id=task_id, action=action, identity=identity, at=at)


def replies_for(profile: Profile, layout: Layout, reply_topic: str | None = None,
                worker_field: str | None = None) -> Replies:
    """The ``Replies`` of a profile and its options; ``ValueError`` (one line) when they do
    not fit together."""
    worker = None
    if worker_field is not None:
        try:
            worker = parse_pointer(worker_field)
        except ValueError as exc:
            raise ProfileError(f"--worker-field: {exc}") from None
    if profile == "aethermagic":
        if reply_topic is not None:
            raise ProfileError("--reply-topic is for --profile generic: AetherMagic workers "
                             "answer on .../{tid}/status and .../{tid}/complete")
        base, _ = _base(layout)
        return Replies("aethermagic", (*base.split("/"), "{task_id}", "{action}"), worker,
                       worker_field or "")
    if reply_topic is None:
        if worker_field is not None:
            raise ProfileError("--worker-field needs --reply-topic (where your workers answer)")
        return Replies("none")
    return Replies("template", parse_reply_topic(reply_topic), worker, worker_field or "")


def parse_reply_topic(template: str) -> tuple[str, ...]:
    """The levels of a ``--reply-topic`` template; ``ValueError`` (one line) when it is not a
    topic with ``{task_id}`` as one whole level."""
    where = f"--reply-topic {template!r}"
    if not template or "\x00" in template:
        raise ProfileError(f"{where}: expected a topic such as 'results/{{task_id}}'")
    levels = tuple(template.split("/"))
    if any(c in template for c in "+#"):
        raise ProfileError(f"{where}: a reply topic names where one reply goes; no + or # "
                         "wildcards (use {task_id} for the task's level)")
    if levels.count("{task_id}") != 1:
        raise ProfileError(f"{where}: needs {{task_id}} exactly once, as a whole level "
                         "(e.g. results/{task_id})")
    for level in levels:
        if level != "{task_id}" and ("{" in level or "}" in level):
            raise ProfileError(f"{where}: unknown placeholder in {level!r} (only {{task_id}})")
    return levels


def announce_filters(profile: Profile, layout: Layout) -> tuple[str, ...]:
    """Plain filters for the workers' announcements: AetherMagic's ``idle`` (a worker waits
    for this job/task/context's tasks) and ``online`` (a process connected)."""
    if profile != "aethermagic":
        return ()
    base, _ = _base(layout)
    union = "/".join(base.split("/")[:-3])
    return f"{base}/+/idle", f"{union}/system/online/+/+/online"


def announcement(profile: Profile, layout: Layout, topic: str, payload: bytes
                 ) -> tuple[str, str] | None:
    """``(kind, host/client)`` when ``topic`` carries an announcement (see
    ``announce_filters``), else None."""
    if profile != "aethermagic":
        return None
    message = parse(topic, payload)
    if message is None or message.action not in ("idle", "online"):
        return None
    base, _ = _base(layout)
    if message.action == "idle" and "/".join(topic.split("/")[:-2]) != base:
        return None
    return message.action, message.who


def _body(action: str, status: str, progress: int, data: dict[str, object], host: str,
          client: str) -> bytes:
    """An AetherMagic JSON body, with the keys of the library's ``AetherMessage``."""
    return json.dumps({
        "action": action, "status": status, "progress": progress, "data": data,
        "host": host, "client": client,
        "job": "", "workgroup": "", "task": "", "context": "", "tid": "",
    }).encode()


def worker_reply(task_topic: str, action: str, host: str, client: str
                 ) -> tuple[str, bytes] | None:
    """What an AetherMagic worker publishes about the task it got on ``task_topic``:
    ``status`` (progress 0, on receipt) or ``complete`` (succeed), on the task's topic with
    its action level replaced. None when the topic has no action level."""
    head, sep, _action = task_topic.rpartition("/")
    if not sep:
        return None
    if action == "status":
        return f"{head}/status", _body("status", "progress", 0, {}, host, client)
    return f"{head}/complete", _body("complete", "succeed", 100, {}, host, client)


def worker_announcements(subscription: str, tid: str, host: str, client: str
                         ) -> tuple[tuple[str, bytes], ...]:
    """The ``idle`` and ``online`` messages an AetherMagic worker sends when it connects,
    for its task subscription (``$share/g/{union}/{job}/{task}/{context}/+/perform``)."""
    levels = subscription.split("/")
    if levels[0] == "$share":
        levels = levels[2:]
    if len(levels) < 6 or levels[-2] != "+":
        return ()
    base = "/".join(levels[:-2])
    union = "/".join(levels[:-5])
    return ((f"{base}/{tid}/idle", _body("idle", "online", 100, {}, host, client)),
            (f"{union}/system/online/{host}/{client}/online",
             _body("online", "connected", 100, {}, host, client)))
