"""What a run observed: deliveries, events, notes, subscription results and counters.

How this works: the fleet's loop thread appends plain tuples to lists (cheap: 100,000
deliveries cost a few tens of MB and no object construction on the hot path); the caller's
thread reads counters at any time and takes snapshots under a lock. ``Delivery`` and
``FleetEvent`` objects are only built when a snapshot is taken.
"""

from __future__ import annotations

import threading
import time

from .model import Delivery, FleetEvent

# (worker, task_id, topic, qos, dup, retain, at, latency_ms)
_DeliveryRow = tuple[str, str | None, str, int, bool, bool, float, float | None]


class Recorder:
    """Thread-safe store for one run; written by the loop thread, read by anyone."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._rows: list[_DeliveryRow] = []
        self._events: list[FleetEvent] = []
        self._notes: list[str] = []
        self._subscribe_results: list[tuple[str, str, int]] = []
        self._connection_lost: list[str] = []
        self.last_activity = self.t0  # monotonic time of the last delivery or acknowledgement
        self.pending_acks = 0  # deliveries a worker is still "working on" (loop thread only)

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.t0

    @property
    def delivered(self) -> int:
        """Deliveries recorded so far."""
        return len(self._rows)

    def delivery(
        self, worker: str, task_id: str | None, topic: str, qos: int, dup: bool, retain: bool,
        at: float, latency_ms: float | None,
    ) -> None:
        """Record one message a worker received."""
        row = (worker, task_id, topic, qos, dup, retain, at, latency_ms)
        with self._lock:
            self._rows.append(row)

    def event(
        self, worker: str, kind: str, detail: str = "", task_ids: tuple[str, ...] = ()
    ) -> None:
        """Record a connection-level event for the replay timeline."""
        ev = FleetEvent(at=self.now(), worker=worker, kind=kind, detail=detail,
                        task_ids=task_ids)
        with self._lock:
            self._events.append(ev)

    def note(self, text: str) -> None:
        """Record something the report should mention (once)."""
        with self._lock:
            if text not in self._notes:
                self._notes.append(text)

    def connection_lost(self, client: str) -> None:
        """Record that ``client``'s connection died without a DISCONNECT from the broker."""
        with self._lock:
            self._connection_lost.append(client)

    def connections_lost(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(dict.fromkeys(self._connection_lost))

    def subscribe_result(self, worker: str, topic_filter: str, reason_code: int) -> None:
        """Record the SUBACK reason code one filter got."""
        with self._lock:
            self._subscribe_results.append((worker, topic_filter, reason_code))

    def deliveries(self) -> tuple[Delivery, ...]:
        """Every delivery so far, in arrival order."""
        with self._lock:
            rows = list(self._rows)
        return tuple(
            Delivery(worker=w, task_id=t, topic=tp, qos=q, dup=d, retain=r, at=a, latency_ms=lat)
            for (w, t, tp, q, d, r, a, lat) in rows
        )

    def events(self) -> tuple[FleetEvent, ...]:
        with self._lock:
            return tuple(self._events)

    def notes(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._notes)

    def subscribe_results(self) -> tuple[tuple[str, str, int], ...]:
        with self._lock:
            return tuple(self._subscribe_results)
