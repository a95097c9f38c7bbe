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
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import NAME, log, serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import NAME, log, serve

Handler = Callable[[Any, dict[str, Any], int], Awaitable[None]]


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


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(retried(handle))))
