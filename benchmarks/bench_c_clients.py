"""Benchmark: the emulator against Mosquitto with fast C clients (issue 14, item 6).

How this works: for each run a fresh broker starts as a separate process on a free loopback
port (the emulator: ``python -m aetherdiag emulator serve --port 0 --machine``; Mosquitto: a
private config, the same limits as bench_emulator.py). Three ``mosquitto_sub`` members of one
share group subscribe at QoS 0 to ``$share/bench/bench/tasks``; probe messages (one
``mosquitto_pub -m`` each, waited for) go out until every member has printed one, so all three
are subscribed. Then ``mosquitto_pub -l`` reads 200,000 lines from a file and publishes each as
a QoS 0 message, as fast as it can. This process counts the lines the members print (pipes,
read in large chunks) until every message is in or nothing came for ``--idle-timeout``
seconds. The rate is deliveries / (time of the last delivery - start of the publisher).

Brokers take turns (the order alternates between repeats) so that drift on the machine does
not favour one; the summary gives the median, min and max of each and the ratio of the
medians, and the load average before and after. The exit status is 1 when the emulator's
median is below ``--min-ratio`` (0.9) times Mosquitto's, 2 when a run could not be made.

Broker variants: ``mosquitto``, ``emulator`` (``emulator serve --port 0``) and
``emulator-ws`` (the same with ``--ws-port 0``: an idle WebSocket listener must not slow the
MQTT one down). The clients always use plain MQTT: the Mosquitto command-line clients have
no WebSocket transport.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import bench_emulator  # a sibling script: python puts the script directory first on sys.path

TOPIC = "bench/tasks"
FILTER = "$share/bench/bench/tasks"
MOSQUITTO_CONF = bench_emulator.MOSQUITTO_CONF  # the same limits as the emulator's defaults
VARIANTS = ("mosquitto", "emulator", "emulator-ws")
TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The run could not be made (a broker or client did not start)."""


@dataclass
class Broker:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    def cpu(self) -> float:
        """The broker's utime + stime so far, in seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.name != "mosquitto" else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Run:
    broker: str
    delivered: int
    seconds: float
    broker_cpu: float
    clients_cpu: float
    split: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(variant: str, workdir: Path) -> Broker:
    if variant == "mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        for _ in range(5):
            port = free_port()
            conf = workdir / "mosquitto.conf"
            conf.write_text(MOSQUITTO_CONF.format(port=port))
            proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    return Broker(variant, proc, port)
                time.sleep(0.05)
            Broker(variant, proc, port).stop()
        raise BenchError("mosquitto did not start")
    cmd = [sys.executable, "-m", "aetherdiag", "emulator", "serve", "--port", "0", "--machine"]
    if variant == "emulator-ws":
        cmd += ["--ws-port", "0"]  # the WebSocket listener idle beside the MQTT one
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        Broker(variant, proc, 0).stop()
        raise BenchError(f"{' '.join(cmd)} printed {line!r}") from None
    return Broker(variant, proc, port)


def read_lines(subs: list[subprocess.Popen[bytes]], counts: list[int], timeout: float) -> bool:
    """Read what the members printed for up to ``timeout`` s; add the lines to ``counts``.
    False when nothing came."""
    got = False
    with selectors.DefaultSelector() as sel:
        for i, sub in enumerate(subs):
            assert sub.stdout is not None
            sel.register(sub.stdout, selectors.EVENT_READ, i)
        for key, _ in sel.select(timeout):
            chunk = os.read(key.fileobj.fileno(), 1 << 20)  # type: ignore[union-attr]
            counts[key.data] += chunk.count(b"\n")
            got = got or bool(chunk)
    return got


def one_run(variant: str, args: argparse.Namespace, lines: Path, workdir: Path) -> Run:
    broker = start_broker(variant, workdir)
    subs: list[subprocess.Popen[bytes]] = []
    pub: subprocess.Popen[bytes] | None = None
    base = ["-h", "127.0.0.1", "-p", str(broker.port), "-V", args.protocol]
    try:
        for k in range(args.members):
            subs.append(subprocess.Popen(
                ["mosquitto_sub", *base, "-t", FILTER, "-q", "0", "-i", f"bench-member-{k}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        probe_counts = [0] * args.members
        deadline = time.monotonic() + 15
        while not all(probe_counts):
            if time.monotonic() > deadline:
                raise BenchError(f"{variant}: the members did not all subscribe in time")
            subprocess.run(["mosquitto_pub", *base, "-t", TOPIC, "-q", "0", "-m", "probe"],
                           check=True, stdin=subprocess.DEVNULL)
            read_lines(subs, probe_counts, 0.3)
        while read_lines(subs, probe_counts, 0.2):  # late probe copies are not counted below
            pass
        counts = [0] * args.members
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = broker.cpu()
        with lines.open("rb") as stdin:
            start = time.monotonic()
            pub = subprocess.Popen(["mosquitto_pub", *base, "-t", TOPIC, "-q", "0", "-l"],
                                   stdin=stdin, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        last = start
        while sum(counts) < args.messages:
            if read_lines(subs, counts, 0.5):
                last = time.monotonic()
            elif time.monotonic() - last > args.idle_timeout:
                break
        broker_cpu = broker.cpu() - cpu_before
        pub.wait(10)
        for sub in subs:
            sub.terminate()
            sub.wait(5)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        clients_cpu = (children.ru_utime + children.ru_stime
                       - children_before.ru_utime - children_before.ru_stime)
        return Run(variant, sum(counts), last - start, broker_cpu, clients_cpu, counts)
    finally:
        for p in [*subs, *([pub] if pub else [])]:
            if p.poll() is None:
                p.kill()
            p.wait(5)
            if p.stdout is not None:
                p.stdout.close()
        broker.stop()
        if broker.proc.stdout is not None:
            broker.proc.stdout.close()


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--payload-size", type=int, default=32, help="bytes per message")
    parser.add_argument("--brokers", default="mosquitto,emulator",
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--protocol", default="mqttv311", choices=("mqttv311", "mqttv5"))
    parser.add_argument("--min-ratio", type=float, default=0.9)
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = [b for b in brokers if b not in VARIANTS]
    if unknown or not brokers:
        parser.error(f"--brokers: unknown {unknown} (use {', '.join(VARIANTS)})")
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian: apt-get install mosquitto-clients)",
                  file=sys.stderr)
            return 2
    runs: dict[str, list[Run]] = {b: [] for b in brokers}
    load_start = loadavg()
    print(f"{args.messages} QoS 0 messages of {args.payload_size} B, {args.members} members, "
          f"{args.repeat} repeats; load average {load_start}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-c-") as tmp:
        workdir = Path(tmp)
        lines = workdir / "lines"
        width = max(8, args.payload_size)
        with lines.open("w") as f:
            for n in range(args.messages):
                f.write(f"{n:08d}".ljust(width, "x") + "\n")
        for r in range(args.repeat):
            order = brokers if r % 2 == 0 else brokers[::-1]
            for variant in order:
                try:
                    run = one_run(variant, args, lines, workdir)
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                runs[variant].append(run)
                per = 1e6 / max(run.delivered, 1)
                print(f"  run {r + 1} {variant:17} {run.rate:>10,.0f} deliveries/s  "
                      f"{run.delivered}/{args.messages} in {run.seconds:.2f} s  "
                      f"broker {run.broker_cpu * per:5.1f} µs/msg  "
                      f"clients {run.clients_cpu * per:5.1f} µs/msg  split {run.split}  "
                      f"load {loadavg()}", flush=True)
    print(f"\nload average: {load_start} at the start, {loadavg()} at the end")
    print(f"{'broker':17} {'median':>10} {'min':>10} {'max':>10}  lost (worst)  "
          "broker µs/msg (median)")
    medians: dict[str, float] = {}
    for variant, rs in runs.items():
        rates = [r.rate for r in rs]
        medians[variant] = statistics.median(rates)
        lost = max(args.messages - r.delivered for r in rs)
        cpu = statistics.median(r.broker_cpu * 1e6 / max(r.delivered, 1) for r in rs)
        print(f"{variant:17} {medians[variant]:>10,.0f} {min(rates):>10,.0f} "
              f"{max(rates):>10,.0f}  {lost:>12}  {cpu:.1f}")
    status = 0
    if "mosquitto" in medians:
        for variant in (b for b in brokers if b != "mosquitto"):
            ratio = medians[variant] / medians["mosquitto"]
            ok = ratio >= args.min_ratio
            status = status or (0 if ok else 1)
            print(f"{variant} / mosquitto (medians): {ratio:.2f} "
                  f"({'meets' if ok else 'MISSES'} the {args.min_ratio:g}x target)")
    return status


if __name__ == "__main__":
    sys.exit(main())
