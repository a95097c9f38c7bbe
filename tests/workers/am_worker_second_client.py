#!/usr/bin/env python3
"""A BROKEN AetherMagic worker process: besides the library's worker (its ``$share``
subscription), the same process runs a SECOND MQTT client (paho, its own connection and client
id) that subscribes plainly to the task filter (``{union}/{job}/{task}/{context}/+/perform``,
no ``$share``) and runs the same handler: it answers every task with a ``complete`` that
carries the library's ``host`` and ``client`` fields, as a second copy of the handler would.

Effect: this process handles EVERY task once through the second client, and the tasks the share
group routes to it a second time through the library. Each task routed elsewhere is handled by
two processes.

Environment, stdout READY line and signals: as am_worker.py. READY goes out once both clients'
subscriptions are acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import CONTEXT, HOST, JOB, NAME, PORT, TASK, UNION, log, serve
else:  # run as a script: the script's directory is on sys.path
    from am_common import CONTEXT, HOST, JOB, NAME, PORT, TASK, UNION, log, serve

PLAIN = f"{UNION}/{JOB}/{TASK}/{CONTEXT}/+/perform"  # THE BUG: a plain copy of the task filter


def second_client(identity: dict[str, str], subscribed: threading.Event) -> mqtt.Client:
    """The second client: a plain subscription whose handler completes every task it gets."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{NAME}-monitor-{os.getpid()}",
                         protocol=mqtt.MQTTv311)

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe(PLAIN, qos=0)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        head = msg.topic.rsplit("/", 1)[0]
        log(f"second client handling {msg.topic}")
        body = {"action": "complete", "status": "succeed", "progress": 100, "data": {},
                "host": identity["host"], "client": identity["client"], "job": "",
                "workgroup": "", "task": "", "context": "", "tid": ""}
        c.publish(f"{head}/complete", json.dumps(body), qos=0)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(HOST, PORT)
    client.loop_start()
    return client


def main() -> int:
    subscribed = threading.Event()
    identity = {"host": socket.gethostname(), "client": f"monitor-{os.getpid()}"}
    client = second_client(identity, subscribed)
    if not subscribed.wait(20):
        log("second client never subscribed")
        return 1
    try:
        return asyncio.run(serve())
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
