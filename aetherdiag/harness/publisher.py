"""The publisher client: sends tasks in a bounded window, paced when a rate is given.

How this works: tasks wait in a deque; ``pump()`` (loop thread) hands them to paho while fewer
than ``window`` are unacknowledged (QoS 0 counts until written), so neither paho nor the socket
buffers grow without bound and paho's own in-flight queue (linear per ack) is never used. With
a rate, sends are spaced ``1/rate`` apart by a timer on the loop's heap. PUBACK/PUBCOMP reason
codes >= 0x80 and publishes lost with the connection are recorded as failures. The payload is
a small JSON object: ``{"task_id": ..., "run_id": ..., "sent_at": <unix time>, "publisher":
..., "seq": ...}`` (and ``"key"`` when the task has one): ``seq`` numbers each publisher's tasks
1, 2, ... in the order it sends them, which is what the ordering check compares deliveries
against (docs/ordering.md).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from ..mqtt.protocol import Protocol
from ..mqtt.reasons import reason_text
from ..wire.profile import task_payload as profile_payload
from .loop import Loop
from .member import Member
from .model import TaskSpec
from .recorder import Recorder

DEFAULT_WINDOW = 1000
_UNNUMBERED = ("", 0)


def task_payload(task_id: str, run_id: str, sent_at: float, *, publisher: str | None = None,
                 seq: int = 0, key: str = "") -> bytes:
    """The JSON a task is published with (workers read it back: ``task_id``, ``sent_at``,
    and the ``publisher``, ``seq`` and ``key`` the ordering check needs)."""
    doc: dict[str, object] = {"task_id": task_id, "run_id": run_id,
                              "sent_at": round(sent_at, 6)}
    if publisher is not None and seq > 0:
        doc["publisher"] = publisher
        doc["seq"] = seq
    if key:
        doc["key"] = key
    return json.dumps(doc, separators=(",", ":")).encode()


class Publisher(Member):
    """Publishes ``TaskSpec``s; the loop thread calls everything except the counters."""

    def __init__(
        self, client_id: str, protocol: Protocol, client: mqtt.Client, loop: Loop, rec: Recorder,
        *, run_id: str, window: int = DEFAULT_WINDOW, name: str = "publisher",
        numbered: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        super().__init__(name, client_id, protocol, client, loop, rec)
        self.run_id = run_id
        # task id -> (publisher, its seq): the run's numbering (Publishers.numbered), read when
        # a task is sent; a task it does not number goes out without a seq
        self.numbered: Mapping[str, tuple[str, int]] = numbered if numbered is not None else {}
        self.window = window
        self.queue: deque[TaskSpec] = deque()
        self.outstanding: dict[int, TaskSpec] = {}  # mid -> task, sent and not yet acknowledged
        self.rate: float | None = None
        self.next_at = 0.0
        self.timer_pending = False
        self.sent_ids: list[str] = []
        self.retained_topics: set[str] = set()  # cleared again when the fleet closes
        self.failures: list[tuple[str, str]] = []  # (task id, reason)
        self.last_task: TaskSpec | None = None  # the last task handed to paho
        self.max_qos = 2  # the v5 CONNACK's Maximum QoS (absent: 2)
        self.sent = 0
        self.acked = 0
        self.announce_finish = False
        client.on_publish = self._on_publish

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing awaiting an acknowledgement."""
        return not self.queue and not self.outstanding

    def on_connected(self) -> None:
        receive_max = getattr(self.broker_props, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and receive_max > 0:
            self.window = min(self.window, receive_max)
        max_qos = getattr(self.broker_props, "MaximumQoS", None)
        self.max_qos = max_qos if isinstance(max_qos, int) else 2
        self.pump()

    def enqueue(self, tasks: Iterable[TaskSpec], rate: float | None) -> None:
        """Queue ``tasks`` and start sending (loop thread)."""
        tasks = list(tasks)
        self.queue.extend(tasks)
        self.rate = rate if rate and rate > 0 else None
        self.next_at = time.monotonic()
        self.announce_finish = True
        rate_text = f" at {rate:g}/s" if self.rate else ""
        self.rec.event(self.name, "publish_started", f"{len(tasks)} tasks{rate_text}")
        if self.state == "connected":
            self.pump()
        elif self.state not in ("connecting", "new"):
            self.cancel("not sent: the publisher is not connected")

    def cancel(self, reason: str) -> None:
        """Give up on every queued task, recording ``reason`` (loop thread)."""
        for task in self.queue:
            self.failures.append((task.task_id, reason))
        self.queue.clear()
        self._finished()

    def _finished(self) -> None:
        if self.announce_finish and not self.queue:
            self.announce_finish = False
            self.rec.event(self.name, "publish_finished", f"{self.sent} sent")

    def _tick(self) -> None:
        self.timer_pending = False
        self.pump()

    def pump(self) -> None:
        """Send queued tasks while the window (and the rate) allows (loop thread)."""
        if self.state != "connected":
            return
        queue, outstanding, client, numbered = self.queue, self.outstanding, self.client, \
            self.numbered
        interval = 1.0 / self.rate if self.rate else 0.0
        now = time.monotonic()
        while queue and len(outstanding) < self.window:
            if interval:
                if self.next_at > now:
                    if not self.timer_pending:
                        self.timer_pending = True
                        self.loop.call_at(self.next_at, self._tick)
                    return
                self.next_at = max(self.next_at, now - interval) + interval
            task = queue.popleft()
            if task.qos > self.max_qos:  # said once: the broker will most likely refuse it
                self.rec.note(f"{self.name}: the broker's CONNACK says Maximum QoS "
                              f"{self.max_qos}, and this run publishes at QoS {task.qos}")
                self.max_qos = task.qos
            payload = (task_payload(task.task_id, self.run_id, time.time(), publisher=self.name,
                                    seq=numbered.get(task.task_id, _UNNUMBERED)[1],
                                    key=task.key)
                       if task.profile == "generic"
                       else profile_payload(task.profile, task.task_id, self.run_id, time.time()))
            try:
                info = client.publish(task.topic, payload, task.qos, task.retain)
            except ValueError as exc:
                self.failures.append((task.task_id, f"not sent: {exc}"))
                continue
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.failures.append((task.task_id, f"not sent: {mqtt.error_string(info.rc)}"))
                continue
            self.sent += 1
            self.sent_at = now
            self.last_task = task
            self.sent_ids.append(task.task_id)
            if task.retain:
                self.retained_topics.add(task.topic)
            outstanding[info.mid] = task
        self._finished()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        task = self.outstanding.pop(mid, None)
        if task is None:
            return
        self.acked += 1
        self.rec.last_activity = time.monotonic()
        if rc is not None and rc.is_failure:
            where = " to a $share/... topic" if task.topic.startswith("$share/") else ""
            self.failures.append(
                (task.task_id, f"refused by the broker{where} ({reason_text(rc)})"))
        if self.queue:
            self.pump()

    def unanswered(self) -> tuple[str, int, str, int] | None:
        if self.outstanding:
            first = next(iter(self.outstanding.values()))
            return "PUBLISH", first.qos, first.topic, len(self.outstanding)
        last = self.last_task
        if last is not None and last.qos == 0:  # nothing answers QoS 0: the last one sent
            return "PUBLISH", 0, last.topic, 1
        return None

    def on_disconnected(self) -> None:
        after = self.refused
        why = ("the publisher's connection ended" if after is None else
               f"the broker closed the publisher's connection right after a QoS {after.qos} "
               "PUBLISH")
        for task in self.outstanding.values():
            self.failures.append((task.task_id, f"not acknowledged: {why}"))
        self.outstanding.clear()
        self.cancel(f"not sent: {why}")

    def clear_retained(self) -> None:
        """Publish empty retained messages over every retained task (loop thread), so a real
        broker does not keep serving them to later runs."""
        if self.state != "connected":
            return
        for topic in sorted(self.retained_topics):
            with contextlib.suppress(ValueError):
                self.client.publish(topic, b"", 0, True)
        self.retained_topics.clear()

    def unacknowledged(self) -> list[str]:
        """Task ids still awaiting an acknowledgement."""
        return [task.task_id for task in self.outstanding.values()]
