"""What a run observed: deliveries, events, notes, subscription results and counters.

How this works: the fleet's loop thread appends plain tuples to lists (cheap: 100,000
deliveries cost a few tens of MB and no object construction on the hot path); the caller's
thread reads counters at any time and takes snapshots under a lock. ``Delivery`` and
``FleetEvent`` objects are only built when a snapshot is taken. Each latency also goes into
an HDR histogram as it is recorded (microseconds; ``model.LATENCY_*``), so tail percentiles
come from a structure of fixed size with a known precision, not from a sorted list.
"""

from __future__ import annotations

import threading
import time

from hdrh.histogram import HdrHistogram

from .model import (
    LATENCY_DIGITS,
    LATENCY_HIGHEST_US,
    LATENCY_LOWEST_US,
    ClosedAfter,
    Delivery,
    FleetEvent,
    LatencyRecord,
)

# (worker, task_id, topic, qos, dup, retain, at, latency_ms, publisher, seq, key)
_DeliveryRow = tuple[str, str | None, str, int, bool, bool, float, float | None,
                     str | None, int | None, str | None]


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
        self._closed_after: list[ClosedAfter] = []
        self.last_activity = self.t0  # monotonic time of the last delivery or acknowledgement
        self.pending_acks = 0  # deliveries a worker is still "working on" (loop thread only)
        self._latency = HdrHistogram(LATENCY_LOWEST_US, LATENCY_HIGHEST_US, LATENCY_DIGITS)
        self._below_zero = 0
        self._above_range = 0

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.t0

    @property
    def delivered(self) -> int:
        """Deliveries recorded so far."""
        return len(self._rows)

    def delivery(
        self, worker: str, task_id: str | None, topic: str, qos: int, dup: bool, retain: bool,
        at: float, latency_ms: float | None, publisher: str | None = None,
        seq: int | None = None, key: str | None = None,
    ) -> None:
        """Record one message a worker received (``publisher``, ``seq``, ``key``: what its
        payload says about its sender, for the ordering check)."""
        row = (worker, task_id, topic, qos, dup, retain, at, latency_ms, publisher, seq, key)
        with self._lock:
            self._rows.append(row)
            if latency_ms is not None:
                self._record_latency(latency_ms)

    def _record_latency(self, latency_ms: float) -> None:
        micros = round(latency_ms * 1000.0)
        if micros < 0:
            self._below_zero += 1
            micros = 0
        elif micros > LATENCY_HIGHEST_US:
            self._above_range += 1
            micros = LATENCY_HIGHEST_US
        self._latency.record_value(micros)

    def latency(self) -> LatencyRecord | None:
        """The latency histogram so far (None when no delivery carried a send time)."""
        with self._lock:
            count = int(self._latency.get_total_count())
            if not count:
                return None
            return LatencyRecord(hdr=self._latency.encode(), count=count,
                                 below_zero=self._below_zero, above_range=self._above_range)

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

    def closed_after(self, what: ClosedAfter) -> None:
        """Record that the broker closed a connection right after a packet it had not
        answered (``ClosedAfter``)."""
        with self._lock:
            self._closed_after.append(what)

    def closed_afters(self) -> tuple[ClosedAfter, ...]:
        with self._lock:
            return tuple(self._closed_after)

    def subscribe_result(self, worker: str, topic_filter: str, reason_code: int) -> None:
        """Record the SUBACK reason code one filter got."""
        with self._lock:
            self._subscribe_results.append((worker, topic_filter, reason_code))

    def deliveries(self) -> tuple[Delivery, ...]:
        """Every delivery so far, in arrival order."""
        with self._lock:
            rows = list(self._rows)
        return tuple(
            Delivery(worker=w, task_id=t, topic=tp, qos=q, dup=d, retain=r, at=a, latency_ms=lat,
                     publisher=p, seq=n, key=k)
            for (w, t, tp, q, d, r, a, lat, p, n, k) in rows
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
