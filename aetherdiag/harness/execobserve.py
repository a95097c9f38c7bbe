"""What ``workers --exec`` watches while its worker processes run: a plain observer of the
workers' replies and announcements on a real broker (it never joins the share group), who
announced themselves, which tasks reached an end so far (read incrementally), and the task id
a delivered payload carries."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..wire.profile import announce_filters, announcement, task_of
from .clients import release
from .run import OpenBroker

if TYPE_CHECKING:
    from .execrun import ExecPlan

Seen = list[tuple[float, str, bytes]]


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
    from .clients import ClientFactory

    t0 = time.monotonic()
    lock = threading.Lock()
    subscribed = threading.Event()
    client = ClientFactory(broker.target).make(f"aetherdiag-{plan.run_id}-observer",
                                               plan.protocol)

    def on_message(_c: object, _u: object, msg: object) -> None:
        with lock:
            seen.append((time.monotonic() - t0, msg.topic, msg.payload))  # type: ignore[attr-defined]

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


class Progress:
    """Which tasks reached an end (acknowledged, or completed by a reply), read from the
    journal (emulator) or the observer's list (real broker) where the last read stopped, so
    each poll costs what happened since the last one, not the whole run."""

    def __init__(self, broker: OpenBroker, plan: ExecPlan,
                 seen: Seen) -> None:
        self.em, self.plan, self.seen = emulator_of(broker), plan, seen
        self.done: set[str] = set()
        self.sent = self.published = self.acks = 0  # read so far
        self.unacked: dict[int, str] = {}  # send index -> task, QoS > 0 and not yet acked

    def activity(self) -> int:
        """Grows with every send, publish and ack (emulator) or observed message."""
        return self.sent + self.published + self.acks

    def update(self) -> set[str]:
        plan, em = self.plan, self.em
        if em is None:
            new_seen = self.seen[self.published:]
            self.published += len(new_seen)
            for at, topic, payload in new_seen:
                r = plan.replies.parse(topic, payload, at)
                if r is not None and r.action == "complete":
                    self.done.add(r.task_id)
            return self.done
        if plan.replies.expected:
            new = em.published(self.published)  # type: ignore[attr-defined]
            self.published += len(new)
            for p in new:
                r = plan.replies.parse(p.topic, p.payload, p.at, "x")
                if r is not None and r.action == "complete":
                    self.done.add(r.task_id)
            self.sent = len(em.sent(self.sent)) + self.sent  # type: ignore[attr-defined]
            return self.done
        sends = em.sent(self.sent)  # type: ignore[attr-defined]
        for i, s in enumerate(sends, self.sent):
            task = task_id(plan, s.topic, s.payload)
            if task is None:
                continue
            if s.acked is False:
                self.unacked[i] = task
            else:
                self.done.add(task)
        self.sent += len(sends)
        acks = em.acks(self.acks)  # type: ignore[attr-defined]
        self.acks += len(acks)
        for i in acks:
            if i in self.unacked:
                self.done.add(self.unacked.pop(i))
        return self.done
