"""What ``workers --exec`` watches while its worker processes run: a plain observer of the
workers' replies and announcements on a real broker (it never joins the share group), who
announced themselves, which tasks reached an end so far (read incrementally), and the task id
a delivered payload carries."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Set
from typing import TYPE_CHECKING

from ...harness.clients import release
from ...harness.run import OpenBroker
from ...wire.profile import announce_filters, announcement, task_of

if TYPE_CHECKING:
    from .model import ExecPlan

Seen = list[tuple[float, str, bytes]]  # (time.monotonic(), topic, payload)


def emulator_of(broker: OpenBroker) -> object | None:
    handle = broker.emulator
    return getattr(handle, "emulator", None) if handle is not None else None


@contextlib.contextmanager
def observer(broker: OpenBroker, plan: ExecPlan) -> Iterator[Seen]:
    """On a real broker: a plain subscriber to the workers' replies (it never joins the share
    group). On the emulator the journal already has every publish, with its sender."""
    seen: Seen = []
    filters = plan.replies.filters() + announce_filters(plan.profile, plan.layout)
    if broker.emulator is not None or not filters:
        yield seen
        return
    from ...harness.clients import ClientFactory

    lock = threading.Lock()
    subscribed = threading.Event()
    client = ClientFactory(broker.target).make(f"aetherdiag-{plan.run_id}-observer",
                                               plan.protocol)

    def on_message(_c: object, _u: object, msg: object) -> None:
        if msg.retain:  # type: ignore[attr-defined]  # stale state from before the run
            return
        with lock:
            seen.append((time.monotonic(), msg.topic, msg.payload))  # type: ignore[attr-defined]

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.manual_ack_set(False)
    client.connect(broker.target.host, broker.target.port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe([(f, 0) for f in filters])
        subscribed.wait(plan.connect_timeout_s)
        yield seen
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        release(client)


def announced(plan: ExecPlan, seen: Seen) -> dict[str, set[str]]:
    """Who announced itself on a real broker: ``{"idle": {host/client}, "online": {...}}``."""
    out: dict[str, set[str]] = {"idle": set(), "online": set()}
    for _at, topic, payload in list(seen):
        found = announcement(plan.profile, plan.layout, topic, payload)
        if found is not None:
            out[found[0]].add(found[1])
    return out


def task_id(plan: ExecPlan, topic: str, payload: bytes) -> str | None:
    if plan.profile == "aethermagic":
        return task_of(plan.layout, topic)
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if type(data) is dict and data.get("run_id") == plan.run_id:
        task = data.get("task_id")
        return task if isinstance(task, str) else None
    return None


Holder = str  # who holds a task: a process name, "conn:<id>" (owner not known yet) or a
#               real broker's "host/client" reply identity


class Progress:
    """Which tasks reached an end so far, and which are still being worked on, read from the
    journal (emulator) or the observer's list (real broker) where the last read stopped, so
    each poll costs what happened since the last one, not the whole run.

    A task reaches its end when the profile says it was handled: a ``complete`` (AetherMagic)
    or a reply (a ``--reply-topic``); without replies, when its delivery was acknowledged
    (QoS 1/2) or, at QoS 0, when it was delivered (nothing more can be seen). A task is being
    worked on while a holder has it unacknowledged (QoS 1/2) or has answered ``status`` and
    not yet ``complete`` (AetherMagic). ``owner(conn_id)`` names the process of a connection.
    """

    def __init__(self, broker: OpenBroker, plan: ExecPlan, seen: Seen,
                 owner: Callable[[int], str | None] = lambda _conn: None) -> None:
        self.em, self.plan, self.seen, self.owner = emulator_of(broker), plan, seen, owner
        self.done: set[str] = set()
        self.sent = self.published = self.acks = 0  # read so far
        self.unacked: dict[int, tuple[str, int]] = {}  # send index -> (task, conn id)
        self.started: dict[str, set[Holder]] = {}  # task -> who answered status, not complete
        self.finished: dict[str, set[Holder]] = {}  # task -> who completed it

    def activity(self) -> int:
        """Grows with every send, publish and ack (emulator) or observed message."""
        return self.sent + self.published + self.acks

    def _holder(self, conn: int) -> Holder:
        return self.owner(conn) or f"conn:{conn}"

    def _reply(self, task: str, action: str, who: Holder) -> None:
        if action == "complete":
            self.done.add(task)
            self.finished.setdefault(task, set()).add(who)
            # a worker may answer through short-lived helper connections (mosquitto_pub)
            # that no process is seen to own: a complete ends those holders' status too
            started = self.started.get(task, set())
            started -= {w for w in started if w == who or w.startswith("conn:")}
        elif who not in self.finished.get(task, ()):
            self.started.setdefault(task, set()).add(who)

    def update(self) -> set[str]:
        plan, em = self.plan, self.em
        if em is None:
            new_seen = self.seen[self.published:]
            self.published += len(new_seen)
            for at, topic, payload in new_seen:
                r = plan.replies.parse(topic, payload, at)
                if r is not None:
                    self._reply(r.task_id, r.action, r.identity)
            return self.done
        replies = plan.replies.expected
        sends = em.sent(self.sent)  # type: ignore[attr-defined]
        for i, s in enumerate(sends, self.sent):
            task = task_id(plan, s.topic, s.payload)
            if task is None:
                continue
            if s.acked is False:
                self.unacked[i] = (task, s.conn_id)
            elif not replies:
                self.done.add(task)
        self.sent += len(sends)
        acks = em.acks(self.acks)  # type: ignore[attr-defined]
        self.acks += len(acks)
        for i in acks:
            entry = self.unacked.pop(i, None)
            if entry is not None and not replies:
                self.done.add(entry[0])
        if replies:
            new = em.published(self.published)  # type: ignore[attr-defined]
            self.published += len(new)
            for p in new:
                r = plan.replies.parse(p.topic, p.payload, p.at, "x")
                if r is not None:
                    self._reply(r.task_id, r.action, self._holder(p.conn_id))
        return self.done

    def working(self, gone: Set[str] = frozenset()) -> set[tuple[Holder, str]]:
        """``(holder, task)`` still being worked on by a holder not in ``gone`` (the processes
        that ended): unacknowledged deliveries, and AetherMagic tasks with a ``status`` and
        no ``complete`` from the same holder."""
        out = {(self._holder(conn), task) for task, conn in self.unacked.values()}
        for task, who in self.started.items():
            out.update((w, task) for w in who)
        return {(w, t) for w, t in out if w not in gone}
