"""Churn steps for replay: disconnect, drop, reconnect, (un)subscribe, slow down a worker.

How this works: ``ChurnSteps`` is the part of ``Fleet`` that acts on one named worker in the
middle of a run. Each step runs its paho calls on the loop thread (``_run``), records a
``FleetEvent`` for the replay timeline, then waits (bounded by ``connect_timeout``) for the
broker's answer. The helpers it relies on live in fleet.py.
"""

from __future__ import annotations

from .fleetbase import FleetBase
from .member import LIVE
from .recorder import Recorder
from .worker import Worker


class ChurnSteps(FleetBase):
    """Mixin for ``Fleet``: the steps a replay scenario applies to one worker."""

    rec: Recorder

    # provided by Fleet
    def _worker(self, name: str) -> Worker:
        raise NotImplementedError

    def disconnect(self, name: str) -> None:
        """Clean DISCONNECT of worker ``name``; a persistent session stays on the broker."""
        w = self._worker(name)

        def send() -> None:
            self.rec.event(name, "disconnected", "", w.in_flight())
            w.disconnect()

        self._run(send)
        if not self._wait(lambda: w.state not in LIVE, self.connect_timeout):
            self.rec.note(f"{name}: DISCONNECT did not complete within "
                          f"{self.connect_timeout:g} s; connection cut instead")
            self._run(w.drop)

    def drop(self, name: str) -> tuple[str, ...]:
        """Cut worker ``name``'s TCP connection without DISCONNECT, even mid-flight.

        Returns the task ids it had received but not yet acknowledged (now in the broker's
        hands again).
        """
        w = self._worker(name)

        def cut() -> tuple[str, ...]:
            inflight = w.in_flight()
            if w.state in ("connected", "connecting"):
                self.rec.event(name, "dropped", f"{len(inflight)} unacknowledged", inflight)
                w.drop()
            return inflight

        inflight = self._run(cut)
        self._wait(lambda: w.state not in LIVE, self.connect_timeout)
        return inflight

    def reconnect(self, name: str) -> bool:
        """Reconnect worker ``name`` with the same client id and session settings.

        Waits for CONNACK; resubscribes its current filters only when the broker has no
        session for it. Returns whether the session was present. Raises ``BrokerUnreachable``
        when the connection fails.
        """
        w = self._worker(name)
        if w.state in LIVE:
            self.rec.note(f"{name}: reconnect asked while still connected; ignored")
            return w.session_present
        self._connect([w])
        return w.session_present

    def subscribe(self, name: str, topic_filter: str, qos: int | None = None) -> int | None:
        """Add a subscription to worker ``name``; returns the SUBACK reason code.

        ``None`` when the worker is not connected (the filter is then used at its next
        reconnect) or the broker did not answer in time.
        """
        w = self._worker(name)
        level = w.spec.qos if qos is None else qos

        def send() -> int | None:
            w.filters[topic_filter] = level
            self.rec.event(name, "subscribed", f"{topic_filter} (QoS {level})")
            return w.subscribe(((topic_filter, level),)) if w.state == "connected" else None

        mid = self._run(send)
        if mid is None:
            return None
        if not self._wait(lambda: mid in w.answers, self.connect_timeout):
            self.rec.note(f"{name}: no SUBACK for {topic_filter!r} within "
                          f"{self.connect_timeout:g} s")
            return None
        codes = w.answers.get(mid, ())
        if codes and codes[0] >= 0x80:
            self._run(lambda: w.filters.pop(topic_filter, None))
        return codes[0] if codes else None

    def unsubscribe(self, name: str, topic_filter: str) -> bool:
        """Remove a subscription from worker ``name``; True when the broker confirmed it."""
        w = self._worker(name)

        def send() -> int | None:
            w.filters.pop(topic_filter, None)
            self.rec.event(name, "unsubscribed", topic_filter)
            return w.unsubscribe(topic_filter) if w.state == "connected" else None

        mid = self._run(send)
        if mid is None:
            return False
        return self._wait(lambda: mid in w.answers, self.connect_timeout)

    def in_flight(self, name: str) -> tuple[str, ...]:
        """The task ids worker ``name`` has received and not yet acknowledged."""
        return self._run(self._worker(name).in_flight)

    def set_work_ms(self, name: str, work_ms: float, jitter_ms: float | None = None) -> None:
        """Change worker ``name``'s processing time per task (slow it down or speed it up)."""
        w = self._worker(name)

        def change() -> None:
            w.work_ms = max(0.0, work_ms)
            if jitter_ms is not None:
                w.jitter_ms = max(0.0, jitter_ms)
            self.rec.event(name, "work_ms", f"{w.work_ms:g} ms (+0..{w.jitter_ms:g})")

        self._run(change)
