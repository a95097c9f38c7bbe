#!/usr/bin/env python3
"""An AetherMagic worker (the library's API) that DIES on its first task, before the library
acknowledges it: as soon as the library reads a ``perform`` message off the connection, the
process SIGKILLs itself (a crash or an OOM kill with the task in hand).

No ``status`` and no ``complete`` ever goes out for that task: a watcher sees a ``perform``
that nobody acknowledged, a stalled task. The broker notices the dropped connection and routes
the following tasks to the workers still alive.

Environment, stdout READY line: as am_worker.py. It never exits on its own but by that kill
(SIGTERM before any task still ends it with status 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import log, serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import log, serve


def die_on_first_task(magic: Any) -> None:
    """Wrap the protocol's receive step: a received ``perform`` kills the process at once."""
    receive = magic.protocol.receive_messages

    async def receive_or_die() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = await receive()
        for m in messages:
            if str(m.get("topic", "")).endswith("/perform"):
                log(f"received {m['topic']}: killing myself before any reply")
                os.kill(os.getpid(), signal.SIGKILL)
        return messages

    magic.protocol.receive_messages = receive_or_die


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(configure=die_on_first_task)))  # handler: am_common.complete()
