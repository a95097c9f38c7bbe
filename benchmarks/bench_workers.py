"""Benchmark: ``aetherdiag workers`` at its two sizes, on the emulator and on Mosquitto.

How this works: every run is a fresh ``python -m aetherdiag workers ... --format json``
process, timed from spawn to exit, so import time and the emulator's start-up are included
(the cold start a user sees). While it runs, the script samples /proc ten times a second for
the whole process tree (the CLI, the embedded emulator's child process when it uses one) and,
for Mosquitto runs, the private broker too; the peak RSS reported is the largest sampled sum,
and the high-water marks (VmHWM) of the processes are reported next to it. The JSON report
says whether the run was correct (delivered, missing, duplicates).

Sizes and targets (issue 3): 3 workers x 9 tasks in < 1.5 s from a cold start; 1,000 workers x
100,000 tasks at QoS 1 in < 60 s with a peak RSS of everything involved < 1.5 GB. Both run
against the embedded emulator (the default target) and a private Mosquitto on a free loopback
port (``--broker mqtt://127.0.0.1:PORT``) in the same invocation.

Exit status 0 when every target holds, 1 when one fails, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bench_emulator  # a sibling script: python puts the script directory first on sys.path

# bench_emulator's Mosquitto settings (matched to the emulator's limits), with no cap on
# connections for the 1,000-worker run.
MOSQUITTO_CONF = bench_emulator.MOSQUITTO_CONF.replace(
    "persistence false\n", "persistence false\nmax_connections -1\n")

SMALL_TARGET_S = 1.5
LARGE_TARGET_S = 60.0
LARGE_TARGET_RSS_MB = 1536.0


class BenchError(Exception):
    """The benchmark could not run."""


@dataclass
class Sample:
    """What /proc said about a set of processes over a run."""

    peak_sum_kb: int = 0
    hwm_kb: dict[int, tuple[str, int]] = field(default_factory=dict)  # pid -> (name, VmHWM)

    @property
    def hwm_sum_mb(self) -> float:
        return sum(kb for _, kb in self.hwm_kb.values()) / 1024


@dataclass
class Run:
    broker: str
    size: str
    wall_s: float
    exit_code: int
    report: dict[str, object] | None
    memory: Sample

    @property
    def peak_mb(self) -> float:
        return self.memory.peak_sum_kb / 1024


# -- /proc sampling ------------------------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _kb(value: str | None) -> int:
    return int(value.split()[0]) if value else 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def sample_into(sample: Sample, roots: list[int]) -> None:
    total = 0
    for root in roots:
        for pid in _tree(root):
            st = _status(pid)
            if not st:
                continue
            total += _kb(st.get("VmRSS"))
            hwm = _kb(st.get("VmHWM"))
            if hwm >= sample.hwm_kb.get(pid, ("", 0))[1]:
                sample.hwm_kb[pid] = (st.get("Name", "?"), hwm)
    sample.peak_sum_kb = max(sample.peak_sum_kb, total)


# -- brokers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_mosquitto(binary: str) -> Iterator[tuple[int, int]]:
    """A mosquitto on a free loopback port; yields (port, pid)."""
    with tempfile.TemporaryDirectory(prefix="aetherdiag-bench-") as tmp:
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port))
        log = (Path(tmp) / "mosquitto.log").open("wb")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    raise BenchError("mosquitto exited: "
                                     + (Path(tmp) / "mosquitto.log").read_text()[-500:])
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                            timeout=0.5):
                    break
                if time.monotonic() > deadline:
                    raise BenchError("mosquitto did not start listening within 10 s")
                time.sleep(0.05)
            yield port, proc.pid
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            log.close()


# -- runs -----------------------------------------------------------------------------------


def run_cli(args: list[str], broker: str, size: str, extra_pids: list[int],
            timeout: float) -> Run:
    cmd = [sys.executable, "-m", "aetherdiag", "workers", *args, "--quiet", "--format", "json"]
    sample = Sample()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # sample /proc while it runs (communicate() on a thread would hide the pid's lifetime)
    out_chunks: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = t0 + timeout
    while proc.poll() is None:
        sample_into(sample, [proc.pid, *extra_pids])
        if time.monotonic() > deadline:
            proc.kill()
            break
        time.sleep(0.1 if size == "large" else 0.01)
    proc.wait()
    wall = time.monotonic() - t0
    reader.join(5)
    err = proc.stderr.read() if proc.stderr else ""
    report = None
    with contextlib.suppress(ValueError):
        report = json.loads("".join(out_chunks)) if out_chunks and out_chunks[0] else None
    if report is None:
        print(f"  ({broker}, {size}) no JSON report; exit {proc.returncode}: {err.strip()[-300:]}",
              file=sys.stderr)
    for pid in extra_pids:
        sample_into(sample, [pid])
    return Run(broker, size, wall, proc.returncode, report, sample)


def correct(run: Run, tasks: int) -> str:
    r = run.report
    if r is None:
        return "no report"
    dups = r.get("duplicates", {})
    missing = r.get("missing", [])
    cross = dups.get("cross_worker", "?") if isinstance(dups, dict) else "?"
    repeats = dups.get("repeats", "?") if isinstance(dups, dict) else "?"
    n_missing = len(missing) if isinstance(missing, list) else missing
    ok = (r.get("published") == tasks and r.get("unique_delivered") == tasks
          and cross == 0 and repeats == 0 and n_missing == 0)
    return (f"{'ok' if ok else 'WRONG'}: published {r.get('published')}, delivered "
            f"{r.get('delivered')}, missing {n_missing}, cross-worker {cross}, repeats {repeats}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default="emulator,mosquitto",
                    help="comma-separated: emulator, mosquitto (default both)")
    ap.add_argument("--small-repeat", type=int, default=5, help="cold starts per broker")
    ap.add_argument("--count", type=int, default=1000, help="workers in the large run")
    ap.add_argument("--tasks", type=int, default=100_000, help="tasks in the large run")
    ap.add_argument("--qos", type=int, default=1, help="QoS of the large run")
    ap.add_argument("--skip-large", action="store_true", help="only the cold-start runs")
    ap.add_argument("--timeout", type=float, default=300.0, help="kill a run after S seconds")
    ap.add_argument("--mosquitto", default=shutil.which("mosquitto"), help="mosquitto binary")
    opts = ap.parse_args()
    brokers = [b.strip() for b in opts.brokers.split(",") if b.strip()]
    if "mosquitto" in brokers and not opts.mosquitto:
        print("mosquitto is not on PATH (use --mosquitto or --brokers emulator)", file=sys.stderr)
        return 2

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 4 * opts.count + 1024)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # children inherit it

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    small_args = ["--count", "3", "--tasks", "9"]
    large_args = ["--count", str(opts.count), "--tasks", str(opts.tasks), "--qos", str(opts.qos),
                  "--timeout", str(opts.timeout), "--connect-timeout", "30"]
    verdicts: list[tuple[str, bool]] = []
    try:
        for broker in brokers:
            ctx = (private_mosquitto(opts.mosquitto) if broker == "mosquitto"
                   else contextlib.nullcontext((0, 0)))
            with ctx as (port, mpid):
                target = ["--broker", f"mqtt://127.0.0.1:{port}"] if broker == "mosquitto" else []
                extra = [mpid] if mpid else []
                print(f"\n== {broker} ==")
                walls = []
                for i in range(opts.small_repeat):
                    run = run_cli(small_args + target, broker, "small", extra, opts.timeout)
                    walls.append(run.wall_s)
                    print(f"  cold start {i + 1}: {run.wall_s:.2f} s, exit {run.exit_code}, "
                          f"{correct(run, 9)}")
                med = statistics.median(walls)
                ok = med < SMALL_TARGET_S
                verdicts.append((f"{broker}: 3 workers x 9 tasks, cold start", ok))
                print(f"  -> median {med:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}); "
                      f"target < {SMALL_TARGET_S} s: {'PASS' if ok else 'FAIL'}")
                if opts.skip_large:
                    continue
                run = run_cli(large_args + target, broker, "large", extra, opts.timeout)
                hwm = ", ".join(f"{name} {kb / 1024:.0f} MB"
                                for name, kb in run.memory.hwm_kb.values() if kb > 1024)
                print(f"  {opts.count} workers x {opts.tasks} tasks QoS {opts.qos}: "
                      f"{run.wall_s:.1f} s, exit {run.exit_code}, {correct(run, opts.tasks)}")
                print(f"  peak RSS of all processes {run.peak_mb:.0f} MB (sampled sum); "
                      f"high-water marks: {hwm} (sum {run.memory.hwm_sum_mb:.0f} MB)")
                ok_t = run.wall_s < LARGE_TARGET_S and run.report is not None
                ok_m = max(run.peak_mb, run.memory.hwm_sum_mb) < LARGE_TARGET_RSS_MB
                verdicts.append((f"{broker}: {opts.count} x {opts.tasks} QoS {opts.qos} "
                                 f"wall < {LARGE_TARGET_S:.0f} s", ok_t))
                verdicts.append((f"{broker}: {opts.count} x {opts.tasks} QoS {opts.qos} "
                                 f"RSS < {LARGE_TARGET_RSS_MB / 1024:.1f} GB", ok_m))
    except BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    print("\nsummary:")
    for what, ok in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
