#!/usr/bin/env python3
"""An AetherMagic worker (the library's API) whose handler BLOCKS the process on its first
task(s): a synchronous ``time.sleep`` inside the async handler, like a CPU-bound step, so the
library's event loop stops for that long.

The library acknowledges a task (progress-0 ``status``) before it runs the handler, so the task
that blocks is acknowledged; every task the broker routes here DURING the block waits in the
socket unacknowledged until the block ends, then is acknowledged and handled. An at-least-once
caller that resends unacknowledged tasks (``am_caller.py --republish-after 1``) therefore gets
those tasks processed twice: by another worker (the resend) and here (the original).

    AM_BLOCK_SECONDS   how long each block lasts (default 3)
    AM_BLOCK_COUNT     how many of the first tasks block (default 1; later ones do not)

Environment otherwise, stdout READY line and signals: as am_worker.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import complete, log, serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import complete, log, serve

BLOCK_SECONDS = float(os.environ.get("AM_BLOCK_SECONDS") or "3")
BLOCK_COUNT = int(os.environ.get("AM_BLOCK_COUNT") or "1")
handled = 0


async def blocking(task: Any, data: dict[str, Any]) -> None:
    global handled
    handled += 1
    if handled <= BLOCK_COUNT:
        log(f"blocking the process for {BLOCK_SECONDS} s on {await task.tid()}")
        time.sleep(BLOCK_SECONDS)  # THE POINT: the whole event loop stops
    await complete(task, data)


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(blocking)))
