"""Events for tracker, judge and record tests: a task performed, answered, completed."""

from __future__ import annotations

from aetherdiag.watch.events import Event
from aetherdiag.watch.tracker import Tracker

SCOPE = "engine/process-data/batch1"


def perform(at: float, tid: str, digest: str = "d1", caller: str = "c1") -> Event:
    return Event(at=at, topic=f"x/{tid}/perform", tid=tid, action="perform", client=caller,
                 host="h", digest=digest, scope=SCOPE)


def status(at: float, tid: str, worker: str, progress: float = 0.0) -> Event:
    return Event(at=at, topic=f"x/{tid}/status", tid=tid, action="status", client=worker,
                 host="h", progress=progress, digest="s", scope=SCOPE)


def complete(at: float, tid: str, worker: str) -> Event:
    return Event(at=at, topic=f"x/{tid}/complete", tid=tid, action="complete", client=worker,
                 host="h", progress=100.0, digest="c", scope=SCOPE)


def feed(tracker: Tracker, *events: Event) -> Tracker:
    for e in events:
        tracker.tick(e.at)
        tracker.observe(e)
    return tracker


def handled(at: float, tid: str, worker: str) -> tuple[Event, Event, Event]:
    return perform(at, tid), status(at + 0.01, tid, worker), complete(at + 0.02, tid, worker)
