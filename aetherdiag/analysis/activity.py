"""Deliveries over time per worker, with duplicates and redeliveries marked (the timeline a
report page draws), and per worker how many of its tasks another worker also got.

How this works: deliveries are taken in time order; the first copy of a task in a pool is
plain, a copy on another worker of that pool is a duplicate, a further copy on a worker that
already had it is a redelivery (DUP-flagged or fresh). Copies are counted in fixed time
buckets of a round width (at most ``MAX_BUCKETS``). The result is bounded: at most
``MAX_ROWS`` rows however many workers ran; past that the workers with the most marked
copies (then the most copies) keep their own row, in worker order, and the rest are summed
into one last row. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

from ..harness.model import RunResult
from .report import Activity, ActivityRow

MAX_BUCKETS = 60
MAX_ROWS = 40
_WIDTHS = tuple(m * 10.0 ** e for e in range(-3, 5) for m in (1, 2, 5))


def bucket_width(span_s: float, max_buckets: int = MAX_BUCKETS) -> float:
    """The smallest round width (1, 2 or 5 times a power of ten seconds) that covers
    ``span_s`` in at most ``max_buckets`` buckets."""
    for width in _WIDTHS:
        if span_s / width <= max_buckets:
            return width
    return _WIDTHS[-1] * math.ceil(span_s / (_WIDTHS[-1] * max_buckets))


def activity(result: RunResult, pool_of: Mapping[str, str], published: Iterable[str], *,
             max_rows: int = MAX_ROWS, max_buckets: int = MAX_BUCKETS) -> Activity | None:
    """The timeline of ``result``'s deliveries of ``published`` tasks to the workers in
    ``pool_of`` (worker -> pool); None when there were none."""
    wanted = set(published)
    ours = sorted((d for d in result.deliveries
                   if d.task_id in wanted and d.worker in pool_of), key=lambda d: d.at)
    if not ours:
        return None
    span = max(ours[-1].at, 1e-3)
    width = bucket_width(span, max_buckets)
    n = max(1, min(max_buckets, math.ceil(span / width + 1e-9)))
    index = {name: i for i, name in enumerate(result.workers)}
    got = [[0] * n for _ in result.workers]
    dups = [[0] * n for _ in result.workers]
    again = [[0] * n for _ in result.workers]
    first: dict[tuple[str, str], str] = {}  # (pool, task) -> first worker
    seen: set[tuple[str, str]] = set()  # (worker, task)
    for d in ours:
        assert d.task_id is not None
        w = index[d.worker]
        b = min(n - 1, int(d.at / width))
        got[w][b] += 1
        if (d.worker, d.task_id) in seen:
            again[w][b] += 1
        elif first.setdefault((pool_of[d.worker], d.task_id), d.worker) != d.worker:
            dups[w][b] += 1
        seen.add((d.worker, d.task_id))
    rows = [ActivityRow(name=name, deliveries=tuple(got[i]), duplicates=tuple(dups[i]),
                        redeliveries=tuple(again[i])) for i, name in enumerate(result.workers)]
    if len(rows) <= max_rows:
        return Activity(bucket_s=width, rows=tuple(rows))
    keep = max(1, max_rows - 1)
    ranked = sorted(range(len(rows)), key=lambda i: (
        -(sum(rows[i].duplicates) + sum(rows[i].redeliveries)), -sum(rows[i].deliveries), i))
    kept = sorted(ranked[:keep])
    rest = [rows[i] for i in ranked[keep:]]
    summed = ActivityRow(
        name=f"{len(rest)} other workers", workers=len(rest),
        deliveries=tuple(map(sum, zip(*(r.deliveries for r in rest), strict=True))),
        duplicates=tuple(map(sum, zip(*(r.duplicates for r in rest), strict=True))),
        redeliveries=tuple(map(sum, zip(*(r.redeliveries for r in rest), strict=True))))
    return Activity(bucket_s=width, rows=(*(rows[i] for i in kept), summed), hidden=len(rest))


def shared_tasks(cross_worker: Iterable[tuple[str, tuple[str, ...]]]) -> Counter[str]:
    """Per worker, how many of its tasks also reached another worker of its pool."""
    out: Counter[str] = Counter()
    for _task, workers in cross_worker:
        out.update(workers)
    return out
