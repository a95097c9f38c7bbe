#!/usr/bin/env python3
"""A BROKEN AetherMagic worker whose handler runs twice per task.

The task handler is wrapped by a faulty "retry" decorator that runs it again even when the
first run succeeded. The library itself delivers each task once (and acknowledges it with one
progress-0 ``status``), but the handler body runs twice, so two ``complete`` replies with the
same tid and the same ``client`` go out (``data.run`` is 1, then 2).

Environment, stdout READY line and signals: as am_worker.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aethermagic import AetherMagic, AetherTask

NAME = os.environ.get("AETHERDIAG_WORKER") or f"am-worker-{os.getpid()}"
HOST = os.environ.get("MQTT_HOST") or "127.0.0.1"
PORT = int(os.environ.get("MQTT_PORT") or "1883")
UNION = os.environ.get("AM_UNION") or "production"
JOB = os.environ.get("AM_JOB") or "engine"
TASK = os.environ.get("AM_TASK") or "process-data"
CONTEXT = os.environ.get("AM_CONTEXT") or "batch1"

READY_OUT = sys.stdout
sys.stdout = sys.stderr  # the library print()s a lot; stdout is kept for the READY line

Handler = Callable[[Any, dict[str, Any], int], Awaitable[None]]


def log(text: str) -> None:
    print(f"[{NAME}] {text}", file=sys.stderr, flush=True)


def retried(handler: Handler) -> Callable[[Any, dict[str, Any]], Awaitable[None]]:
    """THE BUG: meant to retry on failure, it runs the handler a second time regardless."""
    async def wrapper(task: Any, data: dict[str, Any]) -> None:
        for run in (1, 2):
            await handler(task, data, run)
    return wrapper


async def handle(task: Any, data: dict[str, Any], run: int) -> None:
    tid = await task.tid()
    log(f"handling {tid} {data} (run {run})")
    await task.complete(True, {"worker": NAME, "pid": os.getpid(), "input": data, "run": run})


async def main() -> int:
    magic = AetherMagic(server=HOST, port=PORT, union=UNION)
    worker = AetherTask(JOB, TASK, CONTEXT, on_perform=retried(handle))
    await worker.idle()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runner = asyncio.create_task(magic.main())
    stopper = asyncio.create_task(stop.wait())
    while not magic.protocol.subscribed_topics and not stop.is_set() and not runner.done():
        await asyncio.wait({runner, stopper}, timeout=0.05)
    if magic.protocol.subscribed_topics and not stop.is_set():
        client = magic._MultiProtocolAetherMagic__identifier  # the "client" field of replies
        filters = ",".join(sorted(magic.protocol.subscribed_topics))
        print(f"READY {NAME} pid={os.getpid()} client={client} "
              f"mqtt_id={magic.protocol.client_id} filter={filters}", file=READY_OUT, flush=True)
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)

    status = 0 if stop.is_set() else 1
    await magic.stop()
    try:
        await asyncio.wait_for(runner, timeout=2)
    except (TimeoutError, asyncio.CancelledError):
        pass
    except Exception as err:
        log(f"main loop failed: {err!r}")
        status = 1
    stopper.cancel()
    await magic.protocol.disconnect()
    log("stopped")
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
