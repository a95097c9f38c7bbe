"""Benchmark: the emulator's own CPU cost per task, in process, without sockets.

How this works: the same path a TCP read takes in ``aetherdiag emulator serve`` (the server's
protocol object, the decoder, the broker, the encoder), driven with bytes through fake
transports that only collect what is written. One publisher and N shared workers, one topic
per task (the bench_emulator.py layout); the publisher's PUBLISH packets arrive ``--pub-batch``
per read, and at QoS 1 each worker acknowledges its deliveries ``--ack-batch`` per read.
The figure is CPU time per task (``time.process_time``), the best of ``--repeat`` runs: no
client, no kernel, no scheduler in it, so it moves little with other load on the machine and
shows what a change to the emulator's code did. The end-to-end figures (with real clients
and Mosquitto) come from bench_emulator.py.

``--baseline DIR`` compares with another source tree of aetherdiag (``git worktree add`` or
``git archive`` of an older commit): every run then happens in a fresh child process, the two
trees taking turns, so that both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aetherdiag
from aetherdiag.emulator import packets as c
from aetherdiag.emulator.broker import Broker
from aetherdiag.emulator.encoding import encode
from aetherdiag.emulator.server import EmulatorServer, _Connection

SUB_FILTER = "$share/bench/bench/job/task/ctx/+/run"


class _Sink(asyncio.Transport):
    """A transport that keeps nothing: the cost of writing is the kernel's, not ours."""

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _feed(conn: _Connection, data: bytes) -> None:
    n = len(data)
    conn.get_buffer(n)[:n] = data
    conn.buffer_updated(n)


def run(qos: int, tasks: int, workers: int, pub_batch: int, ack_batch: int) -> float:
    """CPU µs per task for one run."""
    server = EmulatorServer(Broker())
    conns: list[_Connection] = []
    for i in range(workers + 1):
        conn = _Connection(server)
        conn.connection_made(_Sink())
        _feed(conn, encode(c.Connect(client_id=f"c{i}")))
        conns.append(conn)
    publisher, members = conns[0], conns[1:]
    for conn in members:
        req = c.SubscriptionRequest(topic_filter=SUB_FILTER, qos=qos)
        _feed(conn, encode(c.Subscribe(packet_id=1, subscriptions=(req,))))
    payload = bytes(64)
    publishes = [
        encode(c.Publish(topic=f"bench/job/task/ctx/{n}/run", payload=payload, qos=qos,
                           packet_id=n % 65535 + 1 if qos else None))
        for n in range(tasks)
    ]
    acks = [encode(c.PubAck(packet_id=pid)) for pid in range(65536)]
    # Round robin in subscription order; each worker's packet ids count up from 1.
    next_pid = [1] * workers
    pending: list[list[int]] = [[] for _ in range(workers)]
    turn = 0
    gc.collect()
    start = time.process_time()
    for first in range(0, tasks, pub_batch):
        batch = publishes[first:first + pub_batch]
        _feed(publisher, b"".join(batch))
        if not qos:
            continue
        for _ in batch:
            pending[turn].append(next_pid[turn])
            next_pid[turn] = next_pid[turn] % 65535 + 1
            turn = (turn + 1) % workers
        for conn, pids in zip(members, pending, strict=True):
            for i in range(0, len(pids), ack_batch):
                _feed(conn, b"".join(acks[pid] for pid in pids[i:i + ack_batch]))
            pids.clear()
    seconds = time.process_time() - start
    stats = server.broker.stats
    if stats.deliveries != tasks or (qos and stats.acked != tasks):
        raise SystemExit(f"bench_core: expected {tasks} deliveries, got {stats.as_dict()}")
    return seconds / tasks * 1e6


def _child(tree: Path, qos: int, args: argparse.Namespace, pub_batch: int, ack_batch: int) -> float:
    """One run in a fresh interpreter that imports aetherdiag from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--one", f"{qos}:{pub_batch}:{ack_batch}",
           "--tasks", str(args.tasks), "--workers", str(args.workers)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The emulator's CPU µs per task, in process.")
    p.add_argument("--tasks", type=int, default=20_000, help="tasks per run (default 20000)")
    p.add_argument("--workers", type=int, default=3, help="shared workers (default 3)")
    p.add_argument("--repeat", type=int, default=5, help="runs per case; best kept (default 5)")
    p.add_argument("--batches", default="1:1,5:2",
                   help="PUB:ACK packets per read, comma-separated cases (default 1:1,5:2)")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="another aetherdiag source tree to compare with, run for run")
    p.add_argument("--one", help=argparse.SUPPRESS)  # QOS:PUB:ACK, one run (child process)
    args = p.parse_args(argv)
    if args.one:
        qos, pub_batch, ack_batch = (int(v) for v in args.one.split(":"))
        print(f"{run(qos, args.tasks, args.workers, pub_batch, ack_batch):.3f}")
        return 0
    cases = [tuple(int(v) for v in case.split(":")) for case in args.batches.split(",")]
    here = Path(aetherdiag.__file__).resolve().parent.parent
    print(f"aetherdiag from {here}" + (f", baseline from {args.baseline}" if args.baseline else ""))
    print(f"{args.tasks:,} tasks, {args.workers} shared workers, best of {args.repeat}; "
          "CPU µs per task")
    for qos in (0, 1):
        for pub_batch, ack_batch in cases:
            label = f"{pub_batch} PUBLISH per read" + (f", {ack_batch} PUBACK per read"
                                                       if qos else "")
            if args.baseline is None:
                best = min(run(qos, args.tasks, args.workers, pub_batch, ack_batch)
                           for _ in range(args.repeat))
                print(f"QoS {qos}  {label:<40} {best:6.1f}")
                continue
            mine: list[float] = []
            base: list[float] = []
            for _ in range(args.repeat):
                mine.append(_child(here, qos, args, pub_batch, ack_batch))
                base.append(_child(args.baseline.resolve(), qos, args, pub_batch, ack_batch))
            print(f"QoS {qos}  {label:<40} {min(mine):6.1f}  baseline {min(base):6.1f}  "
                  f"({(min(mine) / min(base) - 1) * 100:+.0f}%; medians "
                  f"{statistics.median(mine):.1f} / {statistics.median(base):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
