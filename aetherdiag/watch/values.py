"""What a watch's tracker (``tracker.py``) is told and tells: its knobs and memory bounds
(``Limits``), the live view's ``Snapshot``, the metrics endpoint's ``Totals`` and the judge's
``Summary``, as frozen plain values. Nothing here computes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["multi", "repeat", "stalled", "resent", "collision"]

# One entry of the finished-task memory for a 36-character tid (a UUID) and a 26-character
# scope, the dict slot and the order queue included: 313 bytes measured with tracemalloc over
# 200,000 entries (tests/watch/test_tracker.py keeps it under this). Longer tids and scopes
# cost their extra characters. The default 1,000,000 entries: about 320 MB when full.
FINISHED_ENTRY_BYTES = 320

@dataclass(frozen=True, kw_only=True)
class Limits:
    """The watch's knobs and memory bounds."""

    stall_after: float = 10.0
    forget_after: float = 60.0
    expects_replies: bool = True  # generic without --reply-topic: no one answers, no stalls
    max_tracked: int = 100_000  # live tasks kept at once
    max_finished: int = 1_000_000  # finished tasks remembered (FINISHED_ENTRY_BYTES each)
    max_examples: int = 200  # per finding
    max_tasks_listed: int = 100  # task ids listed per worker
    max_pool: int = 10_000
    recent: int = 6  # findings kept for the live view


@dataclass(frozen=True, kw_only=True)
class WorkerCount:
    name: str
    received: int
    unique: int
    tasks: tuple[str, ...]
    shared: int = 0


@dataclass(frozen=True, kw_only=True)
class Finding:
    at: float
    kind: Kind
    tid: str
    text: str


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """What the live view shows."""

    elapsed: float
    tasks: int
    workers: tuple[tuple[str, int], ...]
    counts: tuple[tuple[Kind, int], ...]
    forgotten: int
    unparsed: int
    recent: tuple[Finding, ...]
    retained: int = 0


@dataclass(frozen=True, kw_only=True)
class WorkerTotals:
    """One worker's running counts (or ``OTHER``: the workers beyond the named ones)."""

    name: str
    tasks: int  # tasks it answered
    received: int  # copies it received, repeats included
    shared: int  # of its tasks, those another worker answered too


OTHER = "other"  # the name the workers beyond ``max_workers`` are counted under
METRICS_MAX_WORKERS = 50  # workers named in the per-worker metrics by default


@dataclass(frozen=True, kw_only=True)
class Totals:
    """The tracker's running counts at one tick, for the metrics endpoint (``metrics.py``):
    counters that only ever grow (per worker too: the first ``max_workers`` workers that
    answered are named, the later ones summed under ``OTHER``, so each series only grows)
    and gauges. Published by the watch thread, read by the HTTP thread: immutable."""

    elapsed: float  # seconds since the watch started
    tasks: int  # distinct tasks whose perform was seen
    answered: int  # ... of those and others, tasks a worker answered (status or complete)
    processed: int  # tasks completed by at least one worker
    counts: tuple[tuple[Kind, int], ...]  # tasks with each finding
    unparsed: int  # messages on the filters the profile could not read
    retained: int  # retained messages ignored
    forgotten: int
    evicted: int
    finished_dropped: int
    in_flight: int  # tasks seen and not finished (neither completed nor stalled)
    tracked: int  # tasks in the live table
    remembered: int  # entries in the finished-task memory
    workers_seen: int  # distinct workers that answered a task
    since_last_task: float  # seconds since the last new task's perform (or the start)
    workers: tuple[WorkerTotals, ...]


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything the judge needs, as plain values (counts are exact; examples capped)."""

    duration_s: float
    limits: Limits
    tasks: int  # distinct tasks whose perform was seen
    handled: int  # ... answered by at least one worker
    performs: int
    workers: tuple[WorkerCount, ...]
    counts: dict[Kind, int]  # tasks with each finding
    examples: dict[Kind, tuple[tuple[str, str], ...]]  # (tid, detail)
    repeats: int  # extra copies on one worker
    resent_performs: int  # performs beyond the first with the same payload
    resent_doubled: int  # resent tasks that were also processed twice
    late: int  # stalled tasks answered later after all
    waiting: int  # performs not answered yet, not stalled yet
    in_progress: int  # answered, not completed when the watch ended
    unperformed: int  # answers about tasks whose perform was not seen
    unparsed: int
    unattributed: int  # answers that name no worker
    forgotten: int
    evicted: int
    pool: tuple[tuple[str, tuple[str, ...]], ...]  # (who, what it announced: online/idle)
    idle_scopes: dict[str, tuple[str, ...]]  # who -> scopes it announced idle for
    task_scopes: tuple[str, ...]  # scopes tasks were seen in (capped)
    retained: int = 0  # retained messages ignored (stale state from before the watch)
    recalled: int = 0  # forgotten tasks brought back by a later message about them
    finished_dropped: int = 0  # finished-task memory entries dropped at max_finished
