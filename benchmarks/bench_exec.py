"""``workers --exec`` at scale: N real AetherMagic worker processes x M tasks on the emulator.

Prints the wall time of the whole run, its verdict, and the peak memory (RSS summed over the
aetherdiag process and every worker process it started), sampled every 0.2 s with psutil.
Then the same pool against a private Mosquitto on a free loopback port (``--broker``, the
workers' own union, attributed from their replies) in the same invocation, and the ratios.

    python benchmarks/bench_exec.py                      # 50 workers x 10,000 tasks
    python benchmarks/bench_exec.py --workers 10 --tasks 2000 --no-mosquitto

Needs the test extra (``aethermagic[mqtt]``): the workers are tests/workers/am_worker.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import bench_emulator  # a sibling script: python puts the script directory first on sys.path
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


def run_pool(workers: int, tasks: int, timeout: float, broker: list[str],
             env: dict[str, str] | None = None, extra_pid: int | None = None
             ) -> tuple[float, int, int, dict] | str:
    """One ``workers --exec`` run: (wall s, peak RSS bytes, processes, report) or stderr."""
    cmd = [sys.executable, "-m", "aetherdiag", "workers", "--exec",
           f"{shlex.quote(sys.executable)} {shlex.quote(str(WORKER))}", "--profile",
           "aethermagic", "--count", str(workers), "--tasks", str(tasks),
           "--ready-timeout", "120", "--timeout", str(timeout), "--format", "json",
           "--quiet", *broker]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    peak, peak_procs = 0, 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_procs
        while not done.wait(0.2):
            rss = tree_rss(proc.pid) + (tree_rss(extra_pid) if extra_pid else 0)
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
        return wall, peak, peak_procs, json.loads(out)
    except ValueError:
        return err


def show(label: str, workers: int, run: tuple[float, int, int, dict]) -> None:
    wall, peak, procs, doc = run
    unique = sorted(w["unique"] for w in doc["workers"])
    print(f"{label}: {workers} AetherMagic worker processes x {doc['published']:,} tasks "
          f"(QoS 0, MQTT 3.1.1)")
    print(f"  verdict      {doc['verdict']} (exit {doc['exit_code']})")
    print(f"  wall time    {wall:.1f} s (start-up, readiness, publishing, settling, teardown)")
    print(f"  run duration {doc['duration_s']:.1f} s (first publish to settled)")
    print(f"  peak RSS     {peak / 2**20:,.0f} MiB over {procs} processes "
          f"({peak / max(procs, 1) / 2**20:.0f} MiB each on average)")
    print(f"  tasks/worker min {unique[0] if unique else 0}, max {unique[-1] if unique else 0}"
          f" over {len(unique)} workers")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-mosquitto", action="store_true", help="only the emulator")
    args = ap.parse_args()
    emulated = run_pool(args.workers, args.tasks, args.timeout, [])
    if isinstance(emulated, str):
        print(emulated, file=sys.stderr)
        return 1
    show("emulator", args.workers, emulated)
    if args.no_mosquitto:
        return 0
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        print("mosquitto not found: no ratio (install it or pass --no-mosquitto)",
              file=sys.stderr)
        return 2
    broker = bench_emulator.start_mosquitto(binary)
    union = f"bench{uuid.uuid4().hex[:8]}"
    try:
        real = run_pool(args.workers, args.tasks, args.timeout,
                        ["--broker", f"mqtt://127.0.0.1:{broker.port}", "--union", union,
                         "--use-production-topics"],
                        env={**os.environ, "AM_UNION": union}, extra_pid=broker.proc.pid)
    finally:
        broker.stop()
    if isinstance(real, str):
        print(real, file=sys.stderr)
        return 1
    show("mosquitto", args.workers, real)
    print(f"ratios emulator/mosquitto: wall {emulated[0] / real[0]:.2f}, run duration "
          f"{emulated[3]['duration_s'] / max(real[3]['duration_s'], 1e-9):.2f}, peak RSS "
          f"{emulated[1] / max(real[1], 1):.2f} (Mosquitto's RSS included in its run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
