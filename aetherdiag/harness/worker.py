"""A worker client: subscribes, records every delivery, acknowledges after its "work".

How this works: paho runs with ``manual_ack=True``, so a QoS 1/2 message is acknowledged only
when ``client.ack(mid, qos)`` is called. A worker processes one task at a time: each message
occupies it for ``work_ms`` (plus a seeded random 0..``jitter_ms``), starting when the previous
one is done, and the acknowledgement is a timer on the loop's heap at the end of that time
(immediately when there is no work time). A slow worker therefore keeps messages in flight at
the broker, which is what ``least_inflight``-like brokers react to. Timers remember the
connection generation: an acknowledgement for a connection that has since ended is dropped.

Each payload is the publisher's JSON (``{"task_id", "run_id", "sent_at"}``, with ``publisher``,
``seq`` and ``key`` for the ordering check); a message from another run or not in that format
is recorded with ``task_id=None``.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from ..mqtt.reasons import granted_text, reason_text
from ..wire.profile import worker_announcements, worker_reply
from .loop import Loop
from .member import Member
from .model import WorkerSpec
from .recorder import Recorder


class Worker(Member):
    """One ``WorkerSpec`` connected as a paho client."""

    def __init__(
        self, spec: WorkerSpec, client_id: str, client: mqtt.Client, loop: Loop,
        rec: Recorder, *, run_id: str, seed: int | str | None,
    ) -> None:
        super().__init__(
            spec.name, client_id, spec.protocol, client, loop, rec,
            clean_start=spec.clean_start, session_expiry=spec.session_expiry,
        )
        self.spec = spec
        self.run_id = run_id
        self.filters: dict[str, int] = {f: spec.qos for f in spec.subscriptions}
        self.work_ms = spec.work_ms
        self.jitter_ms = spec.work_jitter_ms
        self.rng = random.Random(f"{seed}:{spec.name}")
        self.busy_until = 0.0
        # (finish time, task id) of the tasks queued on this worker's "work", oldest first;
        # finished ones are pruned as new ones arrive. At any QoS: what it still works on.
        self.working: deque[tuple[float, str | None]] = deque()
        self.unacked: dict[int, tuple[str | None, int]] = {}  # mid -> (task id, QoS)
        # QoS 2 messages the application already had when the connection ended: the broker
        # only resends PUBREL for them, which paho (manual acks) leaves unanswered, so the
        # PUBCOMP is sent right after reconnecting to the same session.
        self.owed_pubcomp: list[int] = []
        self.requests: dict[int, tuple[str, tuple[str, ...]]] = {}  # mid -> (kind, filters)
        self.asked: dict[str, int] = {}  # filter -> the QoS its last SUBSCRIBE asked for
        self.answers: dict[int, tuple[int, ...]] = {}  # mid -> reason codes, once answered
        # --profile aethermagic: (host, client) its answers carry, like the library's
        self.identity = ((socket.gethostname(), f"{spec.name}-{run_id}")
                         if spec.profile == "aethermagic" else None)
        # Subscribing on CONNACK can be held back so the fleet subscribes workers one after
        # the other: brokers rotate a share group in subscription order, and worker-1 should
        # get task-1 on every run.
        self.hold_subscribe = False
        self.needs_subscribe = False
        self.after_subscribe: Callable[[], None] | None = None
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe

    def ready(self) -> bool:
        return self.state == "connected" and not self.requests and not self.needs_subscribe

    def unfinished(self, at: float) -> tuple[str, ...]:
        """Task ids (of this run) the worker was still working on at monotonic time ``at``."""
        return tuple(t for done, t in self.working if done > at and t is not None)

    def busy(self, at: float) -> bool:
        """Still working on something at monotonic time ``at``."""
        return self.busy_until > at

    def in_flight(self) -> tuple[str, ...]:
        return tuple(t if t is not None else "?" for t, _ in self.unacked.values())

    # --- subscriptions (loop thread) ----------------------------------------------------------
    def on_connected(self) -> None:
        if self.connects > 1:
            detail = "session present" if self.session_present else "new session"
            self.rec.event(self.name, "reconnected", detail)
        else:
            self.rec.event(self.name, "connected")
        owed, self.owed_pubcomp = self.owed_pubcomp, []
        if self.session_present:
            for mid in owed:
                self.client.ack(mid, 2)
        self.needs_subscribe = not self.session_present and bool(self.filters)
        if self.identity is not None:
            host, client = self.identity
            for topic_filter in self.filters:
                for topic, payload in worker_announcements(topic_filter, self.name, host, client):
                    self.client.publish(topic, payload, qos=0)
        if not self.hold_subscribe:
            self.subscribe_all()

    def subscribe_all(self, then: Callable[[], None] | None = None) -> None:
        """Subscribe to every current filter if the session needs it; ``then()`` once the
        SUBACK is in (or at once when nothing was sent)."""
        mid = None
        if self.needs_subscribe and self.state == "connected":
            mid = self.subscribe(tuple(self.filters.items()))
        self.needs_subscribe = False
        if mid is not None and then is not None:
            self.after_subscribe = then
        elif then is not None:
            then()

    def _next(self) -> None:
        then, self.after_subscribe = self.after_subscribe, None
        if then is not None:
            then()

    def subscribe(self, items: tuple[tuple[str, int], ...]) -> int | None:
        """Send one SUBSCRIBE for ``items``; returns its mid (None when not connected)."""
        rc, mid = self.client.subscribe(list(items))
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return None
        self.requests[mid] = ("subscribe", tuple(f for f, _ in items))
        self.asked.update(items)
        self.sent_at = time.monotonic()
        return int(mid)

    def unanswered(self) -> tuple[str, int, str, int] | None:
        pending = [filters for kind, filters in self.requests.values()
                   if kind == "subscribe" and filters]
        if not pending:
            return None
        first = pending[0][0]
        return "SUBSCRIBE", self.asked.get(first, self.spec.qos), first, len(pending)

    def unsubscribe(self, topic_filter: str) -> int | None:
        """Send UNSUBSCRIBE; returns its mid (None when not connected)."""
        rc, mid = self.client.unsubscribe(topic_filter)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return None
        self.requests[mid] = ("unsubscribe", (topic_filter,))
        return int(mid)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        _, filters = self.requests.pop(mid, ("subscribe", ()))
        values = tuple(int(getattr(rc, "value", rc)) for rc in codes)
        self.answers[mid] = values
        for topic_filter, rc, value in zip(filters, codes, values, strict=False):
            self.rec.subscribe_result(self.name, topic_filter, value)
            asked = self.asked.get(topic_filter, value)
            if value >= 0x80:
                self.rec.note(f"{self.name}: the broker refused the subscription to "
                              f"{topic_filter!r} ({reason_text(rc)})")
            elif value < asked:  # the filter is named when the worker has several
                which = f" to {topic_filter!r}" if len(self.asked) > 1 else ""
                self.rec.note(f"{self.name}: the broker granted {granted_text(value)} for its "
                              f"QoS {asked} subscription{which}")
        self._next()

    def _on_unsubscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        self.requests.pop(mid, None)
        self.answers[mid] = tuple(int(getattr(rc, "value", rc)) for rc in codes)

    # --- deliveries (loop thread) -------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.state != "connected":  # dropped or closing: the application never saw it
            return
        wall = time.time()
        now = time.monotonic()
        task_id: str | None = None
        latency: float | None = None
        publisher: str | None = None
        seq: int | None = None
        key: str | None = None
        try:
            data = json.loads(msg.payload)
            if type(data) is dict and type(data.get("data")) is dict:  # --profile aethermagic
                data = data["data"]
            if type(data) is dict and data.get("run_id") == self.run_id:
                tid = data.get("task_id")
                task_id = tid if isinstance(tid, str) else None
                sent = data.get("sent_at")
                if isinstance(sent, float | int):
                    latency = (wall - sent) * 1000.0
                if "seq" in data:  # the ordering check's fields (harness/publisher.py)
                    pub, num, k = data.get("publisher"), data["seq"], data.get("key")
                    if isinstance(pub, str) and type(num) is int:
                        publisher, seq = pub, num
                    key = k if isinstance(k, str) else None
        except (ValueError, UnicodeDecodeError):
            pass
        rec = self.rec
        if task_id is not None:  # another publisher's traffic must not keep a run from settling
            rec.last_activity = now
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic is not valid UTF-8>"
        rec.delivery(self.name, task_id, topic, msg.qos, bool(msg.dup), bool(msg.retain),
                     now - rec.t0, latency, publisher, seq, key)
        work = self.work_ms
        if self.jitter_ms > 0:
            work += self.rng.uniform(0.0, self.jitter_ms)
        if work > 0:
            start = self.busy_until if self.busy_until > now else now
            self.busy_until = start + work / 1000.0
            working = self.working
            while working and working[0][0] <= now:
                working.popleft()
            working.append((self.busy_until, task_id))
        if self.identity is not None and task_id is not None:
            self._answer(topic, "status")
            if work <= 0:
                self._answer(topic, "complete")
            else:
                gen = self.gen
                self.loop.call_at(self.busy_until,
                                  lambda: self._answer(topic, "complete", gen))
        if msg.qos == 0:
            return
        if work <= 0:
            client.ack(msg.mid, msg.qos)
            return
        self.unacked[msg.mid] = (task_id, msg.qos)
        rec.pending_acks += 1
        gen, mid, qos = self.gen, msg.mid, msg.qos
        self.loop.call_at(self.busy_until, lambda: self._ack(gen, mid, qos))

    def _answer(self, task_topic: str, action: str, gen: int | None = None) -> None:
        """Publish AetherMagic's ``status`` or ``complete`` for a task (QoS 0, as the
        library); not when the connection the task came on (``gen``) has ended."""
        if self.identity is None or (gen is not None and gen != self.gen):
            return
        reply = worker_reply(task_topic, action, *self.identity)
        if reply is not None and self.state == "connected":
            self.client.publish(reply[0], reply[1], qos=0)

    def _ack(self, gen: int, mid: int, qos: int) -> None:
        if gen != self.gen:
            return  # the connection this message came on has ended
        if mid in self.unacked:
            del self.unacked[mid]
            self.rec.pending_acks -= 1
        if self.state == "connected":
            self.client.ack(mid, qos)
            self.rec.last_activity = time.monotonic()

    def on_disconnected(self) -> None:
        self.rec.pending_acks -= len(self.unacked)
        self.owed_pubcomp = [mid for mid, (_, qos) in self.unacked.items() if qos == 2]
        self.unacked.clear()
        self.busy_until = 0.0
        self.working.clear()
        for mid, (kind, filters) in list(self.requests.items()):
            self.answers[mid] = ()
            if kind == "subscribe":  # e.g. DISCONNECT 0x9E in answer to a $share SUBSCRIBE
                code = self.disconnect_code if self.disconnect_code >= 0x80 else 0x80
                for topic_filter in filters:
                    self.rec.subscribe_result(self.name, topic_filter, code)
        self.requests.clear()
        self.needs_subscribe = False
        self._next()
