"""What the AetherMagic test workers (``am_worker*.py``) share: their configuration from the
environment, the stderr log, the stdout READY line and, for the workers written with the
aethermagic library, the main loop (see am_worker.py for the contract).

The workers are run as ``python tests/workers/X.py``, so ``import am_common`` finds this file
in the script's directory; mypy (``mypy_path = "tests"``) knows it as ``workers.am_common``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

NAME = os.environ.get("AETHERDIAG_WORKER") or f"am-worker-{os.getpid()}"
HOST = os.environ.get("MQTT_HOST") or "127.0.0.1"
PORT = int(os.environ.get("MQTT_PORT") or "1883")
UNION = os.environ.get("AM_UNION") or "production"
JOB = os.environ.get("AM_JOB") or "engine"
TASK = os.environ.get("AM_TASK") or "process-data"
CONTEXT = os.environ.get("AM_CONTEXT") or "batch1"

WORK_S = float(os.environ.get("AM_WORK_S") or "0")  # the handler's work time per task

READY_OUT = sys.stdout  # the READY line's stream, even once sys.stdout is sent to stderr


def log(text: str) -> None:
    print(f"[{NAME}] {text}", file=sys.stderr, flush=True)


def announce_ready(client: str, mqtt_id: str, filters: str) -> None:
    """The one stdout line, once the subscription is acknowledged by the broker."""
    print(f"READY {NAME} pid={os.getpid()} client={client} mqtt_id={mqtt_id} filter={filters}",
          file=READY_OUT, flush=True)


async def complete(task: Any, data: dict[str, Any]) -> None:
    """The correct task handler: ``task`` is an AetherTask copy bound to the incoming tid."""
    tid = await task.tid()
    log(f"handling {tid} {data}")
    if WORK_S:
        await asyncio.sleep(WORK_S)
    await task.complete(True, {"worker": NAME, "pid": os.getpid(), "input": data})


async def serve(on_perform: Callable[[Any, dict[str, Any]], Awaitable[None]] = complete,
                extra_filter: str | None = None,
                configure: Callable[[Any], None] | None = None) -> int:
    """Run an aethermagic worker with the handler ``on_perform`` until SIGTERM/SIGINT (0) or
    until the library's loop ends on its own (1). ``extra_filter``: once the library's own
    subscription is acknowledged, also subscribe to this filter on the same connection, and
    announce READY only once the broker has acknowledged that one too. ``configure``: called
    with the AetherMagic instance before its loop starts (a broken variant changes it there)."""
    from aethermagic import AetherMagic, AetherTask  # only the library workers need it

    sys.stdout = sys.stderr  # the library print()s a lot; stdout is kept for the READY line

    magic = AetherMagic(server=HOST, port=PORT, union=UNION)
    if configure is not None:
        configure(magic)
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
    subscribed = bool(magic.protocol.subscribed_topics) and not stop.is_set()
    if extra_filter is not None:
        if subscribed:
            await magic.protocol.subscribe(extra_filter)  # returns after the broker's SUBACK
        subscribed = extra_filter in magic.protocol.subscribed_topics and not stop.is_set()
    if subscribed:
        client = magic._MultiProtocolAetherMagic__identifier  # the "client" field of replies
        filters = ",".join(sorted(magic.protocol.subscribed_topics))
        announce_ready(client, magic.protocol.client_id, filters)
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
