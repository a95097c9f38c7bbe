#!/usr/bin/env python3
"""An AetherMagic caller written with the library (``aethermagic[mqtt]==0.2.23``): it performs
tasks with ``AetherTask.perform()``, one tid per task, and follows their status/complete replies.

    am_caller.py [-n COUNT] [--rate R] [--tid TID ...] [--tag TAG]
                 [--republish-after S] [--max-resends K] [--wait S] [--linger S]

    -n/--count          tasks to perform (default 9); each gets a fresh library tid
    --rate              tasks per second (default 10); performs go out in the library's own
                        send loop (every 0.1 s), after it subscribed to the task's replies
    --tid TID           use this tid (repeatable, in order; overrides --count): two callers
                        given the same tid make a tid collision
    --tag TAG           put ``"caller": TAG`` in each task's data (default: none)
    --republish-after S an at-least-once republisher: a task with no ``status`` S seconds after
                        it was (re)sent is performed again with the identical payload (same
                        tid, client, data), at most --max-resends times (default 3)
    --wait S            give up waiting for the completes after S seconds (default 15)
    --linger S          keep listening S seconds after the last complete (default 0.5)

Broker and topic from the environment like the workers: MQTT_HOST, MQTT_PORT, AM_UNION, AM_JOB,
AM_TASK, AM_CONTEXT. Data of task i is ``{"n": i}`` (plus ``caller``). The workers of this
directory put their name in the complete's data (``data.worker``), which is how a complete is
attributed here.

Everything the library prints goes to stderr. stdout carries one line per resend,
``RESENT <tid> <k>``, and at the end exactly one line:

    RESULT {"client": ..., "tids": [...], "tasks": {tid: {"n": i, "statuses": k,
            "completes": [worker, ...], "resent": k}}}

Exit status: 0 when every task got at least one complete within --wait, else 1 (2: bad usage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

OUT = sys.stdout  # RESULT/RESENT lines, even once sys.stdout is sent to stderr
WORKGROUP = "workgroup"  # what AetherTask passes as the workgroup


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


async def run(args: argparse.Namespace) -> int:
    from aethermagic import AetherMagic, AetherTask

    sys.stdout = sys.stderr  # the library print()s a lot
    host, port = env("MQTT_HOST", "127.0.0.1"), int(env("MQTT_PORT", "1883"))
    union, job = env("AM_UNION", "production"), env("AM_JOB", "engine")
    task_name, context = env("AM_TASK", "process-data"), env("AM_CONTEXT", "batch1")

    magic = AetherMagic(server=host, port=port, union=union)
    client = magic._MultiProtocolAetherMagic__identifier  # the "client" field it sends
    runner = asyncio.create_task(magic.main())

    tids: list[str] = []
    tasks: dict[str, dict[str, Any]] = {}
    last_sent: dict[str, float] = {}

    async def on_status(ae_task: Any, complete: bool, _ok: bool, _progress: Any,
                        _data: Any) -> None:
        if not complete:  # the library calls on_status for a complete too
            tasks[ae_task.tid_()]["statuses"] += 1

    async def on_complete(ae_task: Any, _ok: bool, data: Any) -> None:
        worker = data.get("worker", "?") if isinstance(data, dict) else "?"
        tasks[ae_task.tid_()]["completes"].append(str(worker))

    count = len(args.tid) if args.tid else args.count
    deadline = time.monotonic() + args.wait
    payloads: dict[str, dict[str, Any]] = {}
    for i in range(count):
        data: dict[str, Any] = {"n": i}
        if args.tag:
            data["caller"] = args.tag
        t = AetherTask(job, task_name, context, on_status=on_status, on_complete=on_complete)
        if args.tid:
            t.tid_(args.tid[i])
        tid = t.tid_()
        tids.append(tid)
        tasks[tid] = {"n": i, "statuses": 0, "completes": [], "resent": 0}
        payloads[tid] = data
        await t.perform(data)  # queued; the library's loop subscribes, then sends it
        last_sent[tid] = time.monotonic()
        await asyncio.sleep(1.0 / args.rate)

    done_at: float | None = None
    while time.monotonic() < deadline and not runner.done():
        now = time.monotonic()
        if all(tasks[t]["completes"] for t in tids):
            done_at = done_at or now
            if now - done_at >= args.linger:
                break
        if args.republish_after is not None:
            for tid in tids:
                info = tasks[tid]
                if (info["statuses"] == 0 and info["resent"] < args.max_resends
                        and now - last_sent[tid] >= args.republish_after):
                    # The identical payload: same tid, same client, same data.
                    await magic.perform(job, WORKGROUP, task_name, context, tid, payloads[tid],
                                        None)
                    info["resent"] += 1
                    last_sent[tid] = now
                    print(f"RESENT {tid} {info['resent']}", file=OUT, flush=True)
        await asyncio.sleep(0.05)

    await magic.stop()
    try:
        await asyncio.wait_for(runner, timeout=2)
    except (TimeoutError, asyncio.CancelledError):
        pass
    except Exception as err:
        print(f"main loop failed: {err!r}", file=sys.stderr)
    await magic.protocol.disconnect()
    print("RESULT " + json.dumps({"client": client, "tids": tids, "tasks": tasks}),
          file=OUT, flush=True)
    return 0 if all(tasks[t]["completes"] for t in tids) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", "--count", type=int, default=9)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--tid", action="append", default=[])
    ap.add_argument("--tag", default="")
    ap.add_argument("--republish-after", type=float, default=None)
    ap.add_argument("--max-resends", type=int, default=3)
    ap.add_argument("--wait", type=float, default=15.0)
    ap.add_argument("--linger", type=float, default=0.5)
    args = ap.parse_args(argv)
    if args.count < 0 or args.rate <= 0:
        ap.error("--count must be >= 0 and --rate > 0")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
