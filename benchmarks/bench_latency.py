"""Benchmark: per-task latency as ``aetherdiag workers`` reports it, next to a raw paho client's
on the same broker, in the same run (issue 21, item 4).

How this works: a private Mosquitto starts on a free loopback port (default settings: the
broker a team runs, Nagle on its side included; ``--nodelay`` adds ``set_tcp_nodelay true``).
Each round, taken in turns so drift on the machine favours neither:

- ``raw``: three paho clients (MQTT 5, QoS 1, their own network threads, TCP_NODELAY as
  paho leaves it) join ``$share/bench/lat/+`` and a fourth publishes TASKS tasks as one burst
  (or at ``--rate``), each payload carrying ``time.time()`` at the publish call; a receiver
  records ``time.time()`` on arrival. The same clock on both ends, as the tool's. Before its
  first task the publisher waits ``--raw-quiet`` seconds (the tool's quiet before its first
  task; ``--raw-quiet 0`` shows the first-packet stall a raw client gets without it).
- ``tool``: ``aetherdiag workers --broker URL --count 3 --tasks TASKS --format json`` (plus
  ``--rate``); its ``latency_ms`` block.

Printed per round and as medians over the rounds: p50, p90, p99 and max in milliseconds for
both, and their ratio. Nothing is asserted: the figures depend on the machine.

    python benchmarks/bench_latency.py                  # 5 rounds of 30 tasks, a burst
    python benchmarks/bench_latency.py --rate 20        # paced: 20 tasks/s
    python benchmarks/bench_latency.py --nodelay        # Mosquitto with set_tcp_nodelay
    python benchmarks/bench_latency.py --raw-quiet 0    # the raw client without the quiet
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from aetherdiag.harness.run import FIRST_PUBLISH_QUIET_S

KEYS = ("p50", "p90", "p99", "max")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(tmp: Path, nodelay: bool) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    + ("set_tcp_nodelay true\n" if nodelay else ""))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": values[-1]}


def raw_round(port: int, tasks: int, rate: float | None, run: int, quiet: float
              ) -> dict[str, float]:
    """Three paho subscribers in one share group, one paho publisher; latencies in ms."""
    got: list[float] = []
    done = threading.Event()
    lock = threading.Lock()
    subs: list[mqtt.Client] = []
    acked = threading.Semaphore(0)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        sent = float(msg.payload.decode())
        with lock:
            got.append((now - sent) * 1000)
            if len(got) >= tasks:
                done.set()

    for n in range(3):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{run}-{n}",
                        protocol=mqtt.MQTTv5)
        c.on_message = on_message
        c.on_subscribe = lambda *_a: acked.release()
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.subscribe(f"$share/bench/lat{run}/+", qos=1)
        subs.append(c)
    for _ in subs:
        acked.acquire(timeout=10)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-pub-{run}",
                      protocol=mqtt.MQTTv5)
    connected = threading.Event()
    pub.on_connect = lambda *_a: connected.set()
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    connected.wait(10)
    time.sleep(quiet)  # as the tool does before its first task (harness/run.py)
    try:
        for n in range(tasks):
            pub.publish(f"lat{run}/{n}", repr(time.time()), qos=1)
            if rate:
                time.sleep(1 / rate)
        done.wait(30)
    finally:
        for c in (*subs, pub):
            c.disconnect()
            c.loop_stop()
    return percentiles(got)


def tool_round(port: int, tasks: int, rate: float | None) -> dict[str, float]:
    cmd = [sys.executable, "-m", "aetherdiag", "workers", "--broker", f"mqtt://127.0.0.1:{port}",
           "--count", "3", "--tasks", str(tasks), "--format", "json", "--quiet"]
    if rate:
        cmd += ["--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    lat = json.loads(out)["latency_ms"]
    return {k: float(lat[k]) for k in KEYS}


def show(name: str, figures: dict[str, float]) -> str:
    return f"{name:5} " + "  ".join(f"{k} {figures[k]:7.2f}" for k in KEYS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--rate", type=float, default=None)
    ap.add_argument("--nodelay", action="store_true", help="Mosquitto with set_tcp_nodelay")
    ap.add_argument("--raw-quiet", type=float, default=FIRST_PUBLISH_QUIET_S,
                    help="seconds the raw publisher waits before its first task (the tool's "
                    "FIRST_PUBLISH_QUIET_S; 0 shows the first-packet stall)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aetherdiag-bench-lat-") as tmp:
        proc, port = start_mosquitto(Path(tmp), args.nodelay)
        try:
            results: dict[str, list[dict[str, float]]] = {"raw": [], "tool": []}
            for r in range(args.rounds):
                order = ("raw", "tool") if r % 2 == 0 else ("tool", "raw")
                for name in order:
                    figures = (raw_round(port, args.tasks, args.rate, r, args.raw_quiet)
                               if name == "raw"
                               else tool_round(port, args.tasks, args.rate))
                    results[name].append(figures)
                    print(f"round {r + 1}  {show(name, figures)}  (ms)", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"\nmedians over {args.rounds} rounds, {args.tasks} tasks"
          f"{f' at {args.rate:g}/s' if args.rate else ' in one burst'}, Mosquitto"
          f"{' with set_tcp_nodelay' if args.nodelay else ' (defaults)'}:")
    med = {name: {k: statistics.median(f[k] for f in runs) for k in KEYS}
           for name, runs in results.items()}
    for name in ("raw", "tool"):
        print(show(name, med[name]) + "  (ms)")
    print("ratio " + "  ".join(f"{k} {med['tool'][k] / max(med['raw'][k], 1e-9):7.2f}"
                               for k in KEYS) + "  (tool / raw)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
