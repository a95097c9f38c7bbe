"""Churn steps for replay: disconnect, drop, reconnect, (un)subscribe, slow down a worker.

How this works: each step takes the ``Fleet`` and acts on one named worker in the middle of a
run: it runs its paho calls on the loop thread (``fleet.on_loop``), records a ``FleetEvent``
for the replay timeline (``fleet.rec``), then waits (``fleet.wait_until``, bounded by
``fleet.connect_timeout``) for the broker's answer.
"""

from __future__ import annotations

from .fleet import Fleet
from .member import LIVE


def disconnect(fleet: Fleet, name: str) -> None:
    """Clean DISCONNECT of worker ``name``; a persistent session stays on the broker."""
    w = fleet.worker(name)

    def send() -> None:
        fleet.rec.event(name, "disconnected", "", w.in_flight())
        w.disconnect()

    fleet.on_loop(send)
    if not fleet.wait_until(lambda: w.state not in LIVE, fleet.connect_timeout):
        fleet.rec.note(f"{name}: DISCONNECT did not complete within "
                      f"{fleet.connect_timeout:g} s; connection cut instead")
        fleet.on_loop(w.drop)


def drop(fleet: Fleet, name: str) -> tuple[str, ...]:
    """Cut worker ``name``'s TCP connection without DISCONNECT, even mid-flight.

    Returns the task ids it had received but not yet acknowledged (now in the broker's
    hands again).
    """
    w = fleet.worker(name)

    def cut() -> tuple[str, ...]:
        inflight = w.in_flight()
        if w.state in ("connected", "connecting"):
            fleet.rec.event(name, "dropped", f"{len(inflight)} unacknowledged", inflight)
            w.drop()
        return inflight

    inflight = fleet.on_loop(cut)
    fleet.wait_until(lambda: w.state not in LIVE, fleet.connect_timeout)
    return inflight


def reconnect(fleet: Fleet, name: str) -> bool:
    """Reconnect worker ``name`` with the same client id and session settings.

    Waits for CONNACK; resubscribes its current filters only when the broker has no
    session for it. Returns whether the session was present. Raises ``BrokerUnreachable``
    when the connection fails.
    """
    w = fleet.worker(name)
    if w.state in LIVE:
        fleet.rec.note(f"{name}: reconnect asked while still connected; ignored")
        return w.session_present
    fleet.connect_members([w])
    return w.session_present


def subscribe(fleet: Fleet, name: str, topic_filter: str, qos: int | None = None) -> int | None:
    """Add a subscription to worker ``name``; returns the SUBACK reason code.

    ``None`` when the worker is not connected (the filter is then used at its next
    reconnect) or the broker did not answer in time.
    """
    w = fleet.worker(name)
    level = w.spec.qos if qos is None else qos

    def send() -> int | None:
        w.filters[topic_filter] = level
        fleet.rec.event(name, "subscribed", f"{topic_filter} (QoS {level})")
        return w.subscribe(((topic_filter, level),)) if w.state == "connected" else None

    mid = fleet.on_loop(send)
    if mid is None:
        return None
    if not fleet.wait_until(lambda: mid in w.answers, fleet.connect_timeout):
        fleet.rec.note(f"{name}: no SUBACK for {topic_filter!r} within "
                      f"{fleet.connect_timeout:g} s")
        return None
    codes = w.answers.get(mid, ())
    if codes and codes[0] >= 0x80:
        fleet.on_loop(lambda: w.filters.pop(topic_filter, None))
    return codes[0] if codes else None


def unsubscribe(fleet: Fleet, name: str, topic_filter: str) -> bool:
    """Remove a subscription from worker ``name``; True when the broker confirmed it."""
    w = fleet.worker(name)

    def send() -> int | None:
        w.filters.pop(topic_filter, None)
        fleet.rec.event(name, "unsubscribed", topic_filter)
        return w.unsubscribe(topic_filter) if w.state == "connected" else None

    mid = fleet.on_loop(send)
    if mid is None:
        return False
    return fleet.wait_until(lambda: mid in w.answers, fleet.connect_timeout)


def in_flight(fleet: Fleet, name: str) -> tuple[str, ...]:
    """The task ids worker ``name`` has received and not yet acknowledged."""
    return fleet.on_loop(fleet.worker(name).in_flight)


def set_work_ms(fleet: Fleet, name: str, work_ms: float,
                jitter_ms: float | None = None) -> None:
    """Change worker ``name``'s processing time per task (slow it down or speed it up)."""
    w = fleet.worker(name)

    def change() -> None:
        w.work_ms = max(0.0, work_ms)
        if jitter_ms is not None:
            w.jitter_ms = max(0.0, jitter_ms)
        fleet.rec.event(name, "work_ms", f"{w.work_ms:g} ms (+0..{w.jitter_ms:g})")

    fleet.on_loop(change)
