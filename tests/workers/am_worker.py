#!/usr/bin/env python3
"""A correct AetherMagic worker (``aethermagic[mqtt]==0.2.23``), written with the library's own API.

Used by the ``aetherdiag workers --exec`` tests as the healthy worker. Configuration comes from
the environment:

    MQTT_HOST, MQTT_PORT    the broker (default 127.0.0.1:1883)
    AETHERDIAG_WORKER       this worker's name (default am-worker-<pid>)
    AM_UNION, AM_JOB, AM_TASK, AM_CONTEXT
                            default production / engine / process-data / batch1
    AM_WORK_S               seconds the handler works on each task before it completes it
                            (default 0)

The library subscribes (MQTT 3.1.1, QoS 0, clean session) to
``$share/{union}_{job}_workgroup/{union}/{job}/{task}/{context}/+/perform``. For each task it
replies on ``.../{tid}/status`` (progress 0, sent by the library itself on receipt) and the
handler (``am_common.complete``) replies on ``.../{tid}/complete``.

stdout carries exactly one line, once the subscription is acknowledged by the broker:

    READY <name> pid=<pid> client=<reply "client" field> mqtt_id=<MQTT client id> filter=<filter>

Everything the library prints goes to stderr. SIGTERM or SIGINT ends the worker (exit 0).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import serve

if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))  # the handler: am_common.complete()
