"""Benchmark: the aetherdiag emulator against Mosquitto, same load, one run.

How this works: for every (repeat, QoS, broker) the script starts a fresh broker as a separate
process (``python -m aetherdiag emulator serve --port 0``, or a private ``mosquitto`` on a free
port with a temporary config), connects N shared workers (``$share/bench/...``) and one
publisher with paho-mqtt in THIS process, and publishes the tasks through an end-to-end window:
at most ``--window`` tasks are published but not yet delivered at any moment. The window keeps
both brokers below their queue limits, so the figure is sustained throughput and not "how fast
can a broker drop QoS 0 messages" (see benchmarks/README.md).

All clients are driven by one select() loop on one thread (no paho loop threads fighting for
the GIL), so the client side costs the same for both brokers. Measured per run: delivered
messages/s from the first publish to the last delivery, loss and duplicates (every payload
carries its task number), the split per worker, the broker's CPU time (utime + stime from
/proc/PID/stat) per delivered message, and its peak RSS (VmHWM from /proc/PID/status).

Run ``python benchmarks/bench_emulator.py --help`` for the options; exit status 0 when every
target holds, 1 when one fails, 2 when the benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SHARE_GROUP = "bench"
# AetherMagic layout: {union}/{job}/{task}/{context}/{tid}/{action}, one topic per task.
TOPIC_PREFIX = "bench/job/task/ctx"
TOPIC_ACTION = "run"
SUB_FILTER = f"$share/{SHARE_GROUP}/{TOPIC_PREFIX}/+/{TOPIC_ACTION}"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Mosquitto settings, chosen to match the emulator's defaults (aetherdiag.emulator.session.Limits:
# max_inflight 100, max_queued 200,000, no byte limit) so neither broker is held back by a
# smaller window or drops at a smaller queue.
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 100
max_queued_messages 200000
max_queued_bytes 0
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
"""


class BenchError(Exception):
    """The benchmark could not run (a broker did not start, a client could not connect)."""


# -- brokers ----------------------------------------------------------------------------------


@dataclass
class BrokerProc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def start_mosquitto(binary: str) -> BrokerProc:
    for _ in range(5):  # the free port may be taken between the probe and mosquitto's bind
        workdir = Path(tempfile.mkdtemp(prefix="bench-mosquitto-"))
        port = _free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port))
        log = (workdir / "stderr").open("wb")
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        if _wait_listening(proc, port, 10):
            return BrokerProc("mosquitto", proc, port, workdir)
        err = (workdir / "stderr").read_text(errors="replace").strip()
        BrokerProc("mosquitto", proc, port, workdir).stop()
        if "Address already in use" not in err:
            raise BenchError(f"mosquitto did not start: {err or 'no output'}")
    raise BenchError("mosquitto did not start: no free port after 5 tries")


_LISTENING = re.compile(rb"listening on mqtt://[^:\s]+:(\d+)")


def start_emulator(source: Path | None = None) -> BrokerProc:
    """The emulator as installed, or (``source``) the one in another source tree."""
    name = "emulator" if source is None else "baseline"
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    err = (workdir / "stderr").open("wb")
    env = None
    if source is not None:
        # ``python -m`` puts the working directory first on sys.path: run from the tree itself
        # so that its aetherdiag, not the installed one, is imported.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p
        )}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "emulator", "serve", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=source, env=env,
    )
    err.close()
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    m = _LISTENING.search(line)
    if m is None:
        proc.kill()
        proc.wait()
        msg = (workdir / "stderr").read_text(errors="replace").strip()
        shutil.rmtree(workdir, ignore_errors=True)
        raise BenchError(f"{name} did not start: {line!r} {msg}")
    return BrokerProc(name, proc, int(m.group(1)), workdir)


# -- clients ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    broker: str
    qos: int
    tasks: int
    published: int = 0
    delivered: int = 0  # every delivery, duplicates included
    unique: int = 0
    per_worker: list[int] = field(default_factory=list)
    seconds: float = 0.0
    broker_cpu: float = 0.0
    client_cpu: float = 0.0
    rss_mb: float = 0.0
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.unique / self.seconds if self.seconds > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.published - self.unique

    @property
    def duplicates(self) -> int:
        return self.delivered - self.unique

    @property
    def cpu_us_per_msg(self) -> float:
        return 1e6 * self.broker_cpu / self.unique if self.unique else float("nan")

    @property
    def client_us_per_msg(self) -> float:
        return 1e6 * self.client_cpu / self.unique if self.unique else float("nan")


def _client(client_id: str, protocol: int) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
        protocol=protocol,
    )
    client.max_inflight_messages_set(65535)  # the end-to-end window is the only limit
    client.max_queued_messages_set(0)
    return client


class Loop:
    """One select() loop driving several paho clients (their documented external-loop API)."""

    def __init__(self, clients: Sequence[mqtt.Client]) -> None:
        self.clients = list(clients)
        self._last_misc = time.monotonic()

    def pump(self, timeout: float) -> None:
        socks = {}
        for c in self.clients:
            s = c.socket()
            if s is not None:
                socks[s] = c
        if not socks:
            raise BenchError("every client lost its connection")
        wanted = [s for s, c in socks.items() if c.want_write()]
        readable, writable, _ = select.select(list(socks), wanted, [], timeout)
        for s in writable:
            socks[s].loop_write()
        for s in readable:
            socks[s].loop_read()
        now = time.monotonic()
        if now - self._last_misc > 1.0:
            self._last_misc = now
            for c in self.clients:
                c.loop_misc()

    def until(self, done: dict[str, bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            if time.monotonic() > deadline:
                raise BenchError(f"timed out waiting for {what}")
            self.pump(0.05)


def run_load(
    broker: BrokerProc, *, qos: int, tasks: int, workers: int, window: int,
    payload_size: int, protocol: int, idle_timeout: float,
) -> RunResult:
    result = RunResult(broker=broker.name, qos=qos, tasks=tasks, per_worker=[0] * workers)
    seen = bytearray(tasks)
    state = {"unique": 0, "delivered": 0, "last": 0.0}
    pad = b"x" * max(0, payload_size - 8)

    connected: dict[str, bool] = {}  # client -> CONNACK received
    subscribed: dict[str, bool] = {}  # worker -> SUBACK received
    refused: list[str] = []

    def make_on_connect(name: str) -> Callable[..., None]:
        def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
            connected[name] = True
            if getattr(rc, "is_failure", False):
                refused.append(f"{name}: CONNACK {rc}")

        return on_connect

    def make_on_subscribe(name: str) -> Callable[..., None]:
        def on_subscribe(client: mqtt.Client, userdata: object, mid: int,
                         codes: Sequence[object], props: object = None) -> None:
            subscribed[name] = True
            granted = [getattr(c, "value", c) for c in codes]
            if granted != [qos]:
                refused.append(f"{name}: SUBACK {granted}, asked for QoS {qos}")

        return on_subscribe

    def make_on_message(index: int) -> Callable[..., None]:
        per_worker = result.per_worker

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            task = int(msg.payload[:8])
            per_worker[index] += 1
            state["delivered"] += 1
            if not seen[task]:
                seen[task] = 1
                state["unique"] += 1
                state["last"] = time.perf_counter()

        return on_message

    clients: list[mqtt.Client] = []
    try:
        for i in range(workers):
            w = _client(f"bench-worker-{i}", protocol)
            w.on_connect = make_on_connect(f"bench-worker-{i}")
            w.on_message = make_on_message(i)
            connected[f"bench-worker-{i}"] = False
            clients.append(w)
        pub = _client("bench-publisher", protocol)
        pub.on_connect = make_on_connect("bench-publisher")
        connected["bench-publisher"] = False
        clients.append(pub)
        for c in clients:
            c.connect("127.0.0.1", broker.port, keepalive=60)
        loop = Loop(clients)
        loop.until(connected, 10, "CONNACK")
        for i, w in enumerate(clients[:workers]):
            subscribed[f"bench-worker-{i}"] = False
            w.on_subscribe = make_on_subscribe(f"bench-worker-{i}")
            w.subscribe(SUB_FILTER, qos=qos)
        loop.until(subscribed, 10, "SUBACK")
        if refused:
            raise BenchError("; ".join(refused))

        cpu0 = broker.cpu_seconds()
        client0 = time.process_time()
        published = 0
        t0 = time.perf_counter()
        last_progress = time.monotonic()
        last_unique = 0
        while True:
            unique = state["unique"]
            if unique == tasks:
                break
            # Fill the window, a bounded burst per round so reads keep up.
            budget = min(window - (published - unique), tasks - published, 200)
            for _ in range(max(0, budget)):
                payload = b"%08d" % published + pad
                pub.publish(f"{TOPIC_PREFIX}/{published}/{TOPIC_ACTION}", payload, qos=qos)
                published += 1
            loop.pump(0.02 if budget <= 0 else 0)
            now = time.monotonic()
            if state["unique"] != last_unique:
                last_unique = int(state["unique"])
                last_progress = now
            elif now - last_progress > idle_timeout:
                result.timed_out = True
                break
        # Anything still arriving (duplicates) within a short grace period is counted.
        grace = time.monotonic() + 0.3
        while time.monotonic() < grace:
            loop.pump(0.05)
        result.broker_cpu = broker.cpu_seconds() - cpu0
        result.client_cpu = time.process_time() - client0
        result.published = published
        result.unique = int(state["unique"])
        result.delivered = int(state["delivered"])
        result.seconds = (state["last"] - t0) if state["last"] else 0.0
        result.rss_mb = broker.peak_rss_mb()
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                c.disconnect()
    return result


# -- report -----------------------------------------------------------------------------------


def _fmt_rate(values: Sequence[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    spread = (max(values) - min(values)) / med * 100 if med else 0.0
    return f"{med:,.0f} ({min(values):,.0f}-{max(values):,.0f}, ±{spread / 2:.0f}%)"


def report(
    results: list[RunResult], qoses: Sequence[int], brokers: Sequence[str], args: argparse.Namespace
) -> bool:
    ok = True
    print()
    print(f"{args.tasks:,} tasks, {args.workers} shared workers ({SUB_FILTER}), "
          f"window {args.window}, payload {args.payload_size} B, MQTT "
          f"{'5.0' if args.protocol == '5' else '3.1.1'}, {args.repeat} repeat(s); "
          "rates are median (min-max)")
    header = (f"{'QoS':>3}  {'broker':<10} {'delivered msg/s':<38} {'broker CPU µs/msg':>17} "
              f"{'lost':>5} {'dups':>5} {'peak RSS':>9}  per-worker split (last run)")
    print(header)
    print("-" * len(header))
    for qos in qoses:
        by: dict[str, list[RunResult]] = {b: [r for r in results if r.broker == b and r.qos == qos]
                                          for b in brokers}
        for b in brokers:
            rs = by[b]
            if not rs:
                continue
            rates = [r.rate for r in rs]
            cpu = statistics.median(r.cpu_us_per_msg for r in rs)
            lost = max(r.lost for r in rs)
            dups = max(r.duplicates for r in rs)
            rss = max(r.rss_mb for r in rs)
            split = "/".join(str(n) for n in rs[-1].per_worker)
            print(f"{qos:>3}  {b:<10} {_fmt_rate(rates):<38} {cpu:>17.1f} {lost:>5} {dups:>5} "
                  f"{rss:>7.1f}MB  {split}")
        print()
    print("Targets:")

    def verdict(passed: bool, text: str) -> None:
        nonlocal ok
        ok = ok and passed
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")

    for qos in qoses:
        emu = [r for r in results if r.broker == "emulator" and r.qos == qos]
        base = [r for r in results if r.broker == "baseline" and r.qos == qos]
        if emu and base:  # not a target: what a change did to the emulator's own cost
            e_cpu = statistics.median(r.cpu_us_per_msg for r in emu)
            b_cpu = statistics.median(r.cpu_us_per_msg for r in base)
            e_rate = statistics.median(r.rate for r in emu)
            b_rate = statistics.median(r.rate for r in base)
            print(f"  info  QoS {qos}: emulator {e_cpu:.1f} µs/msg vs baseline {b_cpu:.1f} "
                  f"({(e_cpu / b_cpu - 1) * 100:+.0f}%), rate {e_rate:,.0f} vs {b_rate:,.0f} "
                  f"msg/s (medians of {len(emu)})")
        mos = [r for r in results if r.broker == "mosquitto" and r.qos == qos]
        if emu and mos:
            pick = max if args.stat == "best" else statistics.median
            e = pick([r.rate for r in emu])
            m = pick([r.rate for r in mos])
            ratio = e / m if m else 0.0
            verdict(ratio >= args.min_ratio,
                    f"QoS {qos}: emulator {e:,.0f} msg/s = {ratio:.2f}x mosquitto {m:,.0f} msg/s "
                    f"(target >= {args.min_ratio}x, {args.stat} of {len(emu)} run(s))")
        if emu:
            lost = max(r.lost for r in emu)
            dups = max(r.duplicates for r in emu)
            if qos >= 1:
                verdict(lost == 0, f"QoS {qos}: emulator lost {lost} of {args.tasks:,} tasks "
                        "(target 0, worst run)")
            verdict(dups == 0, f"QoS {qos}: emulator delivered {dups} duplicates (target 0)")
            rss = max(r.rss_mb for r in emu)
            verdict(rss < args.max_rss_mb,
                    f"QoS {qos}: emulator peak RSS {rss:.1f} MB (target < {args.max_rss_mb} MB)")
        for r in results:
            if r.qos == qos and r.timed_out:
                print(f"  note  QoS {qos}: a {r.broker} run stalled for {args.idle_timeout}s "
                      f"with {r.lost} task(s) undelivered")
                break
    return ok


# -- main -------------------------------------------------------------------------------------


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def _parse_qos(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--qos {text!r}: expected e.g. 0,1") from None
    # QoS 2 is left out: Mosquitto drops incoming QoS 2 messages beyond max_inflight_messages
    # from a 3.1.1 publisher, so a windowed QoS 2 run would compare different things.
    if not values or any(v not in (0, 1) for v in values):
        raise argparse.ArgumentTypeError(f"--qos {text!r}: choose from 0 and 1")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Same shared-subscription load against the aetherdiag emulator and a "
        "private Mosquitto; prints both rates, their ratio and PASS/FAIL per target.",
    )
    p.add_argument("--tasks", type=int, default=20_000, help="tasks per run (default 20000)")
    p.add_argument("--workers", type=int, default=3, help="shared workers (default 3)")
    p.add_argument("--qos", type=_parse_qos, default=[0, 1],
                   help="comma-separated QoS levels, publish and subscribe (default 0,1)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per broker and QoS, interleaved; medians are compared (default 3)")
    p.add_argument("--window", type=int, default=1000,
                   help="max tasks published but not yet delivered (default 1000)")
    p.add_argument("--payload-size", type=int, default=64, help="bytes per task (default 64)")
    p.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1",
                   help="MQTT version of every client (default 3.1.1)")
    p.add_argument("--brokers", default="mosquitto,emulator",
                   help="comma-separated subset of mosquitto,emulator,baseline (default "
                   "mosquitto,emulator; baseline is added when --baseline is given)")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="a source tree of aetherdiag (e.g. from git worktree or git archive) "
                   "whose emulator runs as a third broker, 'baseline', interleaved with the "
                   "others: a before/after comparison under the same machine load")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "mosquitto",
                   help="mosquitto binary (default: the one on PATH)")
    p.add_argument("--stat", choices=["median", "best"], default="median",
                   help="which rate over the repeats the ratio target compares: the median "
                   "(default) or the best run, the estimate least affected by other load")
    p.add_argument("--min-ratio", type=float, default=0.8,
                   help="target emulator/mosquitto rate (default 0.8)")
    p.add_argument("--max-rss-mb", type=float, default=200.0,
                   help="target emulator peak RSS in MB (default 200)")
    p.add_argument("--idle-timeout", type=float, default=10.0,
                   help="give up on a run after this many seconds without a delivery")
    return p


def _runs(args: argparse.Namespace, brokers: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    for rep in range(args.repeat):
        for qos in args.qos:
            order = list(brokers) if rep % 2 == 0 else list(reversed(brokers))
            for b in order:
                yield rep, qos, b


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    if args.baseline is not None and "baseline" not in brokers:
        brokers.append("baseline")
    if not brokers or any(b not in ("mosquitto", "emulator", "baseline") for b in brokers):
        print(f"--brokers {args.brokers!r}: choose from mosquitto,emulator,baseline",
              file=sys.stderr)
        return 2
    if "baseline" in brokers and (
        args.baseline is None or not (args.baseline / "aetherdiag" / "__main__.py").is_file()
    ):
        print("baseline: --baseline DIR must name a source tree holding aetherdiag/",
              file=sys.stderr)
        return 2
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
    if args.tasks < 1 or args.workers < 1 or args.repeat < 1 or args.window < 1:
        print("--tasks, --workers, --repeat and --window must be at least 1", file=sys.stderr)
        return 2
    if args.payload_size < 8:
        print("--payload-size must be at least 8 (the task number)", file=sys.stderr)
        return 2
    if "mosquitto" in brokers and shutil.which(args.mosquitto) is None:
        print(f"mosquitto not found ({args.mosquitto}); install it or use --brokers emulator",
              file=sys.stderr)
        return 2
    protocol = mqtt.MQTTv5 if args.protocol == "5" else mqtt.MQTTv311
    results: list[RunResult] = []
    print(f"{os.cpu_count()} CPU(s); load average at start {_loadavg()}", flush=True)
    for rep, qos, name in _runs(args, brokers):
        try:
            if name == "mosquitto":
                broker = start_mosquitto(args.mosquitto)
            else:
                broker = start_emulator(args.baseline if name == "baseline" else None)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            r = run_load(
                broker, qos=qos, tasks=args.tasks, workers=args.workers, window=args.window,
                payload_size=args.payload_size, protocol=protocol,
                idle_timeout=args.idle_timeout,
            )
        except BenchError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        finally:
            broker.stop()
        results.append(r)
        print(f"run {rep + 1}/{args.repeat} QoS {qos} {name:<9}: {r.rate:>9,.0f} msg/s, "
              f"{r.unique:,}/{r.published:,} delivered, {r.duplicates} dups, "
              f"CPU µs/msg broker {r.cpu_us_per_msg:.1f} clients {r.client_us_per_msg:.1f}, "
              f"peak RSS {r.rss_mb:.1f} MB",
              flush=True)
    ok = report(results, args.qos, brokers, args)
    print(f"load average at end {_loadavg()} (other processes on the machine skew the rates; "
          "compare the CPU µs/msg columns too)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
