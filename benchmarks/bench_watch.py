"""Benchmark: ``watch``'s bounded memory on a long watch, with a simulated clock.

A 1-hour watch of a pool doing 1,000 tasks/s (3.6 M tasks; each a perform, a status and a
complete, so 10.8 M messages) is fed through the same path a live watch takes, minus the
socket: ``AetherMagicWatch.event(at, topic, payload)`` -> ``Tracker.observe``, with
``Tracker.tick`` every 0.2 simulated seconds (stalls, forgetting). ``--scale`` shortens the
hour (default 0.1: 6 minutes, 360,000 tasks). Three workers share the tasks round robin; every
1,000th task is answered by two workers, so findings are exercised too.

Printed: messages/s processed (a run without tracemalloc), then, from a second run under
tracemalloc, the memory held by the tracker, the live tasks and the finished-task memory's
entries at 10%, 50% and 100% of the run, and the peak. With ``--forget-after`` 60 s the live
set is ~60 s of tasks; every task forgotten leaves a compact entry in the finished-task memory
(so a late second answer is still recognised), which grows until ``--max-finished`` entries
(default 1,000,000) and then stays there: the held memory is bounded by both limits, not by the
length of the run.

    python benchmarks/bench_watch.py                  # 6 simulated minutes
    python benchmarks/bench_watch.py --scale 1        # the full hour (several minutes)
    python benchmarks/bench_watch.py --rate 5000 --forget-after 10
    python benchmarks/bench_watch.py --max-finished 100000   # see the bound reached
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc

from aetherdiag.watch.events import AetherMagicWatch
from aetherdiag.watch.tracker import Limits, Tracker

BASE = "production/engine/process-data/batch1"
TICK = 0.2


def payload(action: str, client: str, progress: int) -> bytes:
    return json.dumps({"host": "bench", "client": client, "action": action,
                       "status": "progress", "progress": progress, "data": {}}).encode()


PERFORM = payload("perform", "caller", 0)
STATUS = [payload("status", f"w{i}", 0) for i in range(4)]
COMPLETE = [payload("complete", f"w{i}", 100) for i in range(4)]


def run(tasks: int, rate: float, forget_after: float, max_finished: int,
        marks: tuple[float, ...], traced: bool
        ) -> tuple[float, int, list[tuple[float, int, int, int]]]:
    """(seconds, messages, [(fraction, bytes held, live tasks, finished entries)] at each
    mark)."""
    watched = AetherMagicWatch()
    tracker = Tracker(Limits(forget_after=forget_after, max_finished=max_finished))
    samples: list[tuple[float, int, int, int]] = []
    todo = [int(tasks * m) for m in marks]
    messages = 0
    next_tick = 0.0
    gc.collect()
    started = time.perf_counter()
    for n in range(tasks):
        at = n / rate
        tid = f"{n:036x}"  # as long as a UUID
        worker = n % 3
        steps = [(f"{BASE}/{tid}/perform", PERFORM), (f"{BASE}/{tid}/status", STATUS[worker]),
                 (f"{BASE}/{tid}/complete", COMPLETE[worker])]
        if n % 1000 == 999:
            steps.append((f"{BASE}/{tid}/status", STATUS[3]))
        for topic, body in steps:
            event = watched.event(at, topic, body)
            assert event is not None
            tracker.observe(event)
        messages += len(steps)
        if at >= next_tick:
            tracker.tick(at)
            next_tick = at + TICK
        if todo and n + 1 == todo[0]:
            todo.pop(0)
            held = tracemalloc.get_traced_memory()[0] if traced else 0
            samples.append(((n + 1) / tasks, held, len(tracker._tasks),
                            len(tracker._finished)))
    elapsed = time.perf_counter() - started
    summary = tracker.summary(tasks / rate)
    assert summary.counts["multi"] == tasks // 1000, summary.counts
    return elapsed, messages, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1,
                        help="fraction of the 1-hour watch (default 0.1)")
    parser.add_argument("--rate", type=float, default=1000.0, help="tasks per second")
    parser.add_argument("--forget-after", type=float, default=60.0)
    parser.add_argument("--max-finished", type=int, default=Limits().max_finished)
    args = parser.parse_args()
    tasks = int(3600 * args.rate * args.scale)
    marks = (0.1, 0.5, 1.0)
    print(f"simulated watch: {tasks / args.rate:,.0f} s at {args.rate:,.0f} tasks/s = "
          f"{tasks:,} tasks, --forget-after {args.forget_after:g} s, --max-finished "
          f"{args.max_finished:,}")
    elapsed, messages, _ = run(tasks, args.rate, args.forget_after, args.max_finished, marks,
                               traced=False)
    print(f"throughput: {messages:,} messages in {elapsed:.1f} s = "
          f"{messages / elapsed:,.0f} messages/s ({messages / elapsed / 3:,.0f} tasks/s)")
    tracemalloc.start()
    try:
        _, _, samples = run(tasks, args.rate, args.forget_after, args.max_finished, marks,
                            traced=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for fraction, held, live, finished in samples:
        print(f"  at {fraction:4.0%} of the run: {held / 1e6:7.1f} MB held, "
              f"{live:,} live tasks, {finished:,} finished entries")
    print(f"tracemalloc peak: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
