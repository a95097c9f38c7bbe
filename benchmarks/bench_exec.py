"""``workers --exec`` at scale: N real AetherMagic worker processes x M tasks on the emulator.

Prints the wall time of the whole run, its verdict, and the peak memory (RSS summed over the
aetherdiag process and every worker process it started), sampled every 0.2 s with psutil.

    python benchmarks/bench_exec.py                      # 50 workers x 10,000 tasks
    python benchmarks/bench_exec.py --workers 10 --tasks 2000

Needs the test extra (``aethermagic[mqtt]``): the workers are tests/workers/am_worker.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

WORKER = Path(__file__).resolve().parents[1] / "tests" / "workers" / "am_worker.py"


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "aetherdiag", "workers", "--exec",
           f"{shlex.quote(sys.executable)} {shlex.quote(str(WORKER))}", "--profile",
           "aethermagic", "--count", str(args.workers), "--tasks", str(args.tasks),
           "--ready-timeout", "120", "--timeout", str(args.timeout), "--format", "json",
           "--quiet"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, peak_procs = 0, 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_procs
        while not done.wait(0.2):
            rss = tree_rss(proc.pid)
            if rss > peak:
                peak = rss
                with contextlib.suppress(psutil.Error):
                    peak_procs = 1 + len(psutil.Process(proc.pid).children(recursive=True))

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    wall = time.monotonic() - start
    try:
        doc = json.loads(out)
    except ValueError:
        print(err, file=sys.stderr)
        return 1
    unique = sorted(w["unique"] for w in doc["workers"])
    print(f"{args.workers} AetherMagic worker processes x {args.tasks:,} tasks (emulator, "
          f"QoS 0, MQTT 3.1.1)")
    print(f"  verdict      {doc['verdict']} (exit {doc['exit_code']})")
    print(f"  wall time    {wall:.1f} s (start-up, readiness, publishing, settling, teardown)")
    print(f"  run duration {doc['duration_s']:.1f} s (first publish to settled)")
    print(f"  peak RSS     {peak / 2**20:,.0f} MiB over {peak_procs} processes "
          f"({peak / max(peak_procs, 1) / 2**20:.0f} MiB each on average)")
    print(f"  tasks/worker min {unique[0]}, max {unique[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
