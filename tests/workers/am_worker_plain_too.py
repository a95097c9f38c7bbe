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
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import CONTEXT, JOB, TASK, UNION, serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import CONTEXT, JOB, TASK, UNION, serve

# THE BUG: a second, plain subscription to the task filter on the same MQTT connection.
PLAIN = f"{UNION}/{JOB}/{TASK}/{CONTEXT}/+/perform"

if __name__ == "__main__":
    sys.exit(asyncio.run(serve(extra_filter=PLAIN)))  # the handler: am_common.complete()
