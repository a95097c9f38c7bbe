"""Soak benchmark: a ``watch --duration 0 --metrics-port`` for an hour at 1,000 tasks/s, in
minutes, with its process's RSS.

The pure tracker is fed synthetic events on a compressed clock: task n is performed at
n / rate seconds, answered (a progress-0 status, then a complete) by one of three workers round
robin; every 1,000th task is also answered by a fourth worker, so the duplicate finding and the
per-worker counts are exercised. Every 0.2 simulated seconds the watch's tick runs:
``Tracker.tick(now)`` (stalls, forgetting) and ``Tracker.totals(now)`` published to a
``MetricsServer``-like holder, as the watch does with ``--metrics-port``; every 15 simulated
seconds (``--scrape-every``) the whole Prometheus exposition is generated from it, as a scrape
would. ``--record FILE`` also writes every event through ``RecordFile`` rolled over at
``--record-max-mb`` (keeping ``--record-keep`` files), as ``watch --record`` does.

Printed: the process's RSS at the start, every ``--report-every`` simulated minutes and at the
end, with the live tasks, the finished-task memory's entries and the throughput of that
interval (simulated tasks per wall-clock second), then the totals. Memory is bounded by
``--forget-after`` (the live table: about 60 s of tasks) and ``--max-finished`` (the
finished-task memory, full after ``max_finished / rate`` seconds: 17 minutes at the defaults);
from then on the RSS stays flat however long the watch runs.

    python benchmarks/bench_watch_soak.py                    # 1 simulated hour, 1,000 tasks/s
    python benchmarks/bench_watch_soak.py --hours 0.25 --max-finished 100000
    python benchmarks/bench_watch_soak.py --record /tmp/soak.jsonl --record-max-mb 50
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from aetherdiag.watch.events import Event
from aetherdiag.watch.metrics import TotalsCollector
from aetherdiag.watch.record import RecordFile, Rollover
from aetherdiag.watch.tracker import Limits, Totals, Tracker

SCOPE = "engine/process-data/batch1"
BASE = f"production/{SCOPE}"
TICK = 0.2  # the watch's tick (observe.TICK)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


class Latest:
    """What ``MetricsServer.publish`` keeps: the last ``Totals``."""

    def __init__(self) -> None:
        self.totals: Totals | None = None

    def get(self) -> Totals | None:
        return self.totals


def events(n: int, at: float) -> list[Event]:
    """Task n: its perform, a worker's status (progress 0) and complete; every 1,000th task
    answered by a second worker too."""
    tid = f"{n:036x}"  # as long as a UUID
    worker = f"w{n % 3}"
    out = [Event(at=at, topic=f"{BASE}/{tid}/perform", tid=tid, action="perform",
                 client="caller", host="bench", digest="d", scope=SCOPE),
           Event(at=at, topic=f"{BASE}/{tid}/status", tid=tid, action="status", client=worker,
                 host="bench", progress=0.0, digest="s", scope=SCOPE),
           Event(at=at, topic=f"{BASE}/{tid}/complete", tid=tid, action="complete",
                 client=worker, host="bench", progress=100.0, digest="c", scope=SCOPE)]
    if n % 1000 == 999:
        out.append(Event(at=at, topic=f"{BASE}/{tid}/status", tid=tid, action="status",
                         client="w3", host="bench", progress=0.0, digest="s", scope=SCOPE))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours (1)")
    parser.add_argument("--rate", type=float, default=1000.0, help="tasks per second (1000)")
    parser.add_argument("--forget-after", type=float, default=60.0)
    parser.add_argument("--max-finished", type=int, default=Limits().max_finished)
    parser.add_argument("--report-every", type=float, default=5.0,
                        help="simulated minutes between RSS lines (5)")
    parser.add_argument("--scrape-every", type=float, default=15.0,
                        help="simulated seconds between two full expositions (15)")
    parser.add_argument("--record", type=Path, default=None, help="also record to FILE")
    parser.add_argument("--record-max-mb", type=float, default=10.0)
    parser.add_argument("--record-keep", type=int, default=3)
    args = parser.parse_args()

    tasks = int(args.hours * 3600 * args.rate)
    tracker = Tracker(Limits(forget_after=args.forget_after, max_finished=args.max_finished))
    latest = Latest()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TotalsCollector(latest.get))
    recorder = None
    if args.record is not None:
        recorder = RecordFile(args.record, {"profile": "aethermagic", "filters": [BASE]},
                              Rollover(max_bytes=round(args.record_max_mb * 1e6),
                                       keep=args.record_keep))
    print(f"simulated watch: {tasks / args.rate / 60:,.0f} min at {args.rate:,.0f} tasks/s = "
          f"{tasks:,} tasks ({tasks * 3 + tasks // 1000:,} messages), --forget-after "
          f"{args.forget_after:g} s, --max-finished {args.max_finished:,}"
          + (f", --record-max-mb {args.record_max_mb:g}" if recorder else ""))
    print(f"{'simulated':>9} {'wall':>7} {'RSS':>9} {'live':>8} {'finished':>10} "
          f"{'tasks/s':>8}")
    start_rss = rss_mb()
    print(f"{0:>7.1f} m {0:>6.1f}s {start_rss:>6.1f} MB {0:>8,} {0:>10,} {'':>8}")
    report_every = args.report_every * 60
    next_tick = next_scrape = 0.0
    next_report = report_every
    scrapes = 0
    started = last_wall = time.perf_counter()
    last_n = 0
    peak = start_rss
    for n in range(tasks):
        at = n / args.rate
        if at >= next_tick:  # the watch's tick: stalls, forgetting, the metrics published
            tracker.tick(at)
            latest.totals = tracker.totals(at)
            next_tick = at + TICK
            if at >= next_scrape:
                generate_latest(registry)
                scrapes += 1
                next_scrape = at + args.scrape_every
            if recorder is not None:
                recorder.flush()
        for event in events(n, at):
            tracker.observe(event)
            if recorder is not None:
                recorder.write(event)
        if at >= next_report:
            wall = time.perf_counter()
            rss = rss_mb()
            peak = max(peak, rss)
            print(f"{at / 60:>7.1f} m {wall - started:>6.1f}s {rss:>6.1f} MB "
                  f"{len(tracker._tasks):>8,} {len(tracker._finished):>10,} "
                  f"{(n - last_n) / (wall - last_wall):>8,.0f}", flush=True)
            last_wall, last_n = wall, n
            next_report += report_every
    end = tasks / args.rate
    tracker.tick(end)
    totals = tracker.totals(end)
    if recorder is not None:
        recorder.close(end, "duration")
    wall = time.perf_counter() - started
    rss = rss_mb()
    peak = max(peak, rss)
    print(f"{end / 60:>7.1f} m {wall:>6.1f}s {rss:>6.1f} MB {totals.tracked:>8,} "
          f"{totals.remembered:>10,} {(tasks - last_n) / (time.perf_counter() - last_wall):>8,.0f}")
    print(f"RSS: {start_rss:.1f} MB at the start, {rss:.1f} MB at the end, {peak:.1f} MB peak")
    print(f"throughput: {tasks:,} tasks in {wall:.1f} s = {tasks / wall:,.0f} tasks/s "
          f"({tasks * 3 / wall:,.0f} messages/s; {end / wall:,.0f} simulated seconds per "
          f"second), {scrapes:,} expositions")
    counts = dict(totals.counts)
    print(f"totals: {totals.tasks:,} tasks, {totals.processed:,} processed, "
          f"{counts['multi']:,} by several workers, {totals.forgotten:,} forgotten, "
          f"{totals.finished_dropped:,} finished entries dropped"
          + (f", {recorder.rolled} record files rolled over" if recorder else ""))
    assert counts["multi"] == tasks // 1000, counts
    assert totals.tracked <= tracker.limits.max_tracked
    assert totals.remembered <= tracker.limits.max_finished


if __name__ == "__main__":
    main()
