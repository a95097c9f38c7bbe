#!/usr/bin/env python3
"""A BROKEN AetherMagic process: a worker written with the library whose task subscription is
plain, not shared (``magic.protocol.share_tasks = False``, e.g. a "debug" copy of a worker
someone left running against production).

It subscribes to ``{union}/{job}/{task}/{context}/+/perform`` with no ``$share`` prefix, so
the broker hands it EVERY task, besides the one copy the share group gives one of the real
workers. It replies like a worker (the library's progress-0 ``status``, then ``complete`` from
``am_common.complete``), with its own ``client`` field: every task is processed twice, by two
different clients.

Environment, stdout READY line (its filter has no ``$share``) and signals: as am_worker.py.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import serve


def plain_tasks(magic: Any) -> None:
    """THE BUG: the library's task subscription loses its ``$share/{group}/`` prefix."""
    magic.protocol.share_tasks = False


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(configure=plain_tasks)))  # the handler: am_common.complete()
