"""The one networked part of ``watch``: a paho client with plain subscriptions, the loop.

How this works: ``observe`` connects one client (TLS and credentials from the target, no
automatic reconnect) within ``connect_timeout``, subscribes at QoS 0 to the profile's plain
filters (never ``$share``: a member would take tasks away from the real workers) and waits
for every SUBACK. paho's network thread only timestamps each message (with its retain flag:
set only on what the broker kept from before and sends because of the new subscription) and
puts it on a queue; this thread takes them off, turns them into events, feeds the tracker and
the recorder, and
every ``TICK`` seconds lets the tracker decide stalls and forget old tasks. The watch ends at
``duration``, once ``tasks`` tasks were seen and each of those completed or stalled (then a
short grace for late answers), on Ctrl-C/SIGTERM (``KeyboardInterrupt`` in this thread), or
when the broker connection is lost. Whatever ends it, the client is disconnected and its
thread stopped before ``observe`` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from ..harness.clients import (
    BrokerUnreachable,
    describe_connect_error,
    new_client,
    release,
    tls_context,
)
from ..harness.model import BrokerTarget
from ..mqtt.protocol import Protocol
from .events import Event, Watched
from .judge import Ended
from .tracker import Tracker

TICK = 0.2  # seconds between stall/forget decisions and live view refreshes
GRACE = 0.3  # --tasks: seconds to wait for late answers once the tasks settled
KEEPALIVE = 30


@dataclass(frozen=True, kw_only=True)
class WatchPlan:
    target: BrokerTarget
    protocol: Protocol
    connect_timeout: float
    duration: float | None = None
    tasks: int | None = None


@dataclass(frozen=True)
class Outcome:
    ended: Ended
    elapsed: float
    lost: str = ""  # why the connection ended, when it was lost


def _code(rc: Any) -> int:
    """A paho reason code (``ReasonCode`` or int) as a number."""
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else 0x80


# a message (at, topic, payload, retained), or why the connection ended
_Item = tuple[float, str, bytes, bool] | str


class _Client:
    """A paho client whose callbacks only queue what happened."""

    def __init__(self, plan: WatchPlan) -> None:
        self.plan = plan
        self.items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.acks: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.t0 = time.monotonic()
        self.closing = False
        self.paho = new_client(plan.target, f"aetherdiag-watch-{uuid.uuid4().hex[:8]}",
                               plan.protocol, tls=tls_context(plan.target))
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message
        self.paho.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.acks.put(("connack", rc))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        self.acks.put(("suback", (mid, codes)))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.items.put((time.monotonic() - self.t0, msg.topic, bytes(msg.payload),
                        bool(msg.retain)))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not self.closing:
            why = f"the broker closed the connection ({rc})"
            self.items.put(why)
            self.acks.put(("closed", why))

    def _wait(self, kind: str, deadline: float, what: str) -> Any:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnreachable(f"no {what} from {self.plan.target.display()} within "
                                        f"{self.plan.connect_timeout:g} s")
            try:
                got, value = self.acks.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            if got == "closed":
                raise BrokerUnreachable(f"{self.plan.target.display()}: {value} before the "
                                        f"{what}")
            if got == kind:
                return value

    def connect(self, filters: tuple[str, ...]) -> None:
        """Connect and subscribe, bounded by the connect timeout; ``BrokerUnreachable``."""
        plan, target = self.plan, self.plan.target
        deadline = time.monotonic() + plan.connect_timeout
        self.paho.connect_timeout = plan.connect_timeout
        try:
            self.paho.connect(target.host, target.port, keepalive=KEEPALIVE)
        except (OSError, ValueError) as exc:
            raise BrokerUnreachable(f"cannot connect to {target.display()}: "
                                    f"{describe_connect_error(exc, target, plan.connect_timeout)}"
                                    ) from None
        self.paho.loop_start()
        rc = self._wait("connack", deadline, "CONNACK")
        if _code(rc) != 0:
            raise BrokerUnreachable(f"{target.display()} refused the connection: {rc}")
        # one SUBSCRIBE for every filter: the watch is subscribed to all of them at once
        result, _mid = self.paho.subscribe([(f, 0) for f in filters])
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnreachable(f"cannot subscribe to {', '.join(filters)}: "
                                    f"{mqtt.error_string(result)}")
        _, codes = self._wait("suback", deadline, f"SUBACK for {', '.join(filters)}")
        answers = codes if isinstance(codes, list | tuple) else [codes]
        for topic_filter, code in zip(filters, answers, strict=False):
            if _code(code) >= 0x80:
                raise BrokerUnreachable(f"{target.display()} refused the subscription to "
                                        f"{topic_filter} ({code}; not authorized?)")
        self.t0 = time.monotonic()

    def close(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            self.paho.disconnect()
        release(self.paho)


def observe(plan: WatchPlan, watched: Watched, tracker: Tracker, *,
            on_event: Callable[[Event], None] | None = None,
            on_tick: Callable[[float], None] | None = None) -> Outcome:
    """Watch until an end condition (see the module docstring). ``BrokerUnreachable`` when
    the broker cannot be reached or refuses the connection or a subscription."""
    client = _Client(plan)
    try:
        client.connect(watched.filters())
        return _loop(plan, client, watched, tracker, on_event, on_tick)
    except KeyboardInterrupt:
        return Outcome("interrupted", time.monotonic() - client.t0)
    finally:
        client.close()


def _loop(plan: WatchPlan, client: _Client, watched: Watched, tracker: Tracker,
          on_event: Callable[[Event], None] | None,
          on_tick: Callable[[float], None] | None) -> Outcome:
    last_tick = 0.0
    watching: frozenset[tuple[str, str]] | None = None  # --tasks: the tasks to see settle
    settle_by = settled_at = None
    try:
        while True:
            now = time.monotonic() - client.t0
            if plan.duration is not None and now >= plan.duration:
                tracker.tick(now)
                return Outcome("duration", now)
            wait = TICK if plan.duration is None else min(TICK, plan.duration - now)
            try:
                item = client.items.get(timeout=max(0.0, wait))
            except queue.Empty:
                item = None
            if isinstance(item, str):
                now = time.monotonic() - client.t0
                tracker.tick(now)
                return Outcome("lost", now, item)
            if item is not None:
                at, topic, payload, retained = item
                event = watched.event(at, topic, payload)
                if event is not None and retained:
                    event = dataclasses.replace(event, retained=True)
                if event is not None:
                    tracker.observe(event)
                    if on_event is not None:
                        on_event(event)
            now = time.monotonic() - client.t0
            if now - last_tick < TICK and item is not None:
                continue
            last_tick = now
            tracker.tick(now)
            if on_tick is not None:
                on_tick(now)
            if plan.tasks is not None:
                if watching is None and tracker.tasks >= plan.tasks:
                    watching = tracker.open_keys()
                    settle_by = now + tracker.limits.stall_after + 1.0
                if watching is not None and settled_at is None and (
                        tracker.settled(watching) or now >= (settle_by or now)):
                    settled_at = now
                if settled_at is not None and now >= settled_at + GRACE:
                    return Outcome("tasks", now)
    except KeyboardInterrupt:
        now = time.monotonic() - client.t0
        tracker.tick(now)
        return Outcome("interrupted", now)
