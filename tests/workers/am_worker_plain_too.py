#!/usr/bin/env python3
"""A BROKEN AetherMagic worker: besides the library's ``$share`` subscription, the process also
subscribes plainly to the task filter (``{union}/{job}/{task}/{context}/+/perform``, no
``$share``) on the same connection, e.g. a "monitoring" subscription someone added.

Effect: this process receives EVERY task (plus, once more, the tasks the share group routes to
it). The library feeds both copies to the same listener: it sends the progress-0 ``status``
reply for each copy, but its per-process de-duplication set (``job:task:context:tid``) runs the
handler once per tid. So this worker completes every task, and each task routed to another
member of the group is completed twice in total: once here, once there.

Environment, stdout READY line and signals: as am_worker.py. The READY line lists both filters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
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


def log(text: str) -> None:
    print(f"[{NAME}] {text}", file=sys.stderr, flush=True)


async def on_perform(task: Any, data: dict[str, Any]) -> None:
    tid = await task.tid()
    log(f"handling {tid} {data}")
    await task.complete(True, {"worker": NAME, "pid": os.getpid(), "input": data})


async def main() -> int:
    magic = AetherMagic(server=HOST, port=PORT, union=UNION)
    worker = AetherTask(JOB, TASK, CONTEXT, on_perform=on_perform)
    await worker.idle()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runner = asyncio.create_task(magic.main())
    stopper = asyncio.create_task(stop.wait())
    while not magic.protocol.subscribed_topics and not stop.is_set() and not runner.done():
        await asyncio.wait({runner, stopper}, timeout=0.05)

    # THE BUG: a second, plain subscription to the task filter on the same MQTT connection.
    plain = f"{UNION}/{JOB}/{TASK}/{CONTEXT}/+/perform"
    if magic.protocol.subscribed_topics and not stop.is_set():
        await magic.protocol.subscribe(plain)  # returns after the broker's SUBACK
    if plain in magic.protocol.subscribed_topics and not stop.is_set():
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
