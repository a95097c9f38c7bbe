#!/usr/bin/env python3
"""A correct AetherMagic worker (``aethermagic[mqtt]==0.2.23``), written with the library's own API.

Used by the ``aetherdiag workers --exec`` tests as the healthy worker. Configuration comes from
the environment:

    MQTT_HOST, MQTT_PORT    the broker (default 127.0.0.1:1883)
    AETHERDIAG_WORKER       this worker's name (default am-worker-<pid>)
    AM_UNION, AM_JOB, AM_TASK, AM_CONTEXT
                            default production / engine / process-data / batch1

The library subscribes (MQTT 3.1.1, QoS 0, clean session) to
``$share/{union}_{job}_workgroup/{union}/{job}/{task}/{context}/+/perform``. For each task it
replies on ``.../{tid}/status`` (progress 0, sent by the library itself on receipt) and the
handler below replies on ``.../{tid}/complete``.

stdout carries exactly one line, once the subscription is acknowledged by the broker:

    READY <name> pid=<pid> client=<reply "client" field> mqtt_id=<MQTT client id> filter=<filter>

Everything the library prints goes to stderr. SIGTERM or SIGINT ends the worker (exit 0).
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
    """The task handler: ``task`` is an AetherTask copy bound to the incoming tid."""
    tid = await task.tid()
    log(f"handling {tid} {data}")
    await task.complete(True, {"worker": NAME, "pid": os.getpid(), "input": data})


async def main() -> int:
    magic = AetherMagic(server=HOST, port=PORT, union=UNION)
    worker = AetherTask(JOB, TASK, CONTEXT, on_perform=on_perform)
    await worker.idle()  # registers the 'perform' listener (and queues an 'idle' message)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runner = asyncio.create_task(magic.main())
    stopper = asyncio.create_task(stop.wait())
    # Ready = the broker has acknowledged the subscription (aiomqtt awaits the SUBACK).
    while not magic.protocol.subscribed_topics and not stop.is_set() and not runner.done():
        await asyncio.wait({runner, stopper}, timeout=0.05)
    if magic.protocol.subscribed_topics and not stop.is_set():
        client = magic._MultiProtocolAetherMagic__identifier  # the "client" field of replies
        filters = ",".join(sorted(magic.protocol.subscribed_topics))
        print(f"READY {NAME} pid={os.getpid()} client={client} "
              f"mqtt_id={magic.protocol.client_id} filter={filters}", file=READY_OUT, flush=True)
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)

    status = 0 if stop.is_set() else 1  # the library's loop ended on its own: a failure
    await magic.stop()
    try:
        await asyncio.wait_for(runner, timeout=2)
    except (TimeoutError, asyncio.CancelledError):
        pass
    except Exception as err:  # the library's loop died; still disconnect below
        log(f"main loop failed: {err!r}")
        status = 1
    stopper.cancel()
    # MultiProtocolAetherMagic.stop() clears its "connected" flag, so main() never disconnects:
    # close the MQTT connection ourselves (a clean DISCONNECT, not a dropped socket).
    await magic.protocol.disconnect()
    log("stopped")
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
