#!/usr/bin/env python3
"""A BROKEN worker: it receives its share of the tasks but never handles them.

It speaks AetherMagic's wire format with plain paho-mqtt (MQTT 3.1.1, QoS 0, clean session,
the library's share group ``{union}_{job}_workgroup``), and registers its handler with
``message_callback_add()`` on the ``$share/...`` filter it subscribed with. paho matches
callbacks against the message's topic (``production/engine/...``), which never matches a
``$share/g/...`` filter (paho.mqtt.python#472), so the handler never runs: every task the
broker routes here is delivered, and no status or complete reply ever goes out.

Why not with the aethermagic library itself: the library reads every message from aiomqtt's
queue and routes it by the topic it parses (union/job/task/context/tid/action), never by the
subscription filter, so this pitfall cannot happen inside it.

Environment, stdout READY line and signals: as am_worker.py. Unrouted deliveries are logged to
stderr (the fallback ``on_message``), so the log shows the tasks that were dropped.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

if TYPE_CHECKING:  # mypy (mypy_path = "tests") knows this directory as the package `workers`
    from workers.am_common import CONTEXT, HOST, JOB, NAME, PORT, TASK, UNION, announce_ready, log
else:  # run as a script: the script's directory is on sys.path
    from am_common import CONTEXT, HOST, JOB, NAME, PORT, TASK, UNION, announce_ready, log

HOSTNAME = socket.gethostname()
CLIENT = str(uuid.uuid1())  # the "client" field, a uuid1 like the library's
SHARED = f"$share/{UNION}_{JOB}_workgroup/{UNION}/{JOB}/{TASK}/{CONTEXT}/+/perform"


def body(action: str, status: str, progress: int, data: dict[str, Any]) -> str:
    """AetherMessage.to_json(): the keys and order the library puts on the wire."""
    return json.dumps({"action": action, "status": status, "progress": progress, "data": data,
                       "host": HOSTNAME, "client": CLIENT, "job": "", "workgroup": "",
                       "task": "", "context": "", "tid": ""})


def handle(c: Any, _userdata: Any, msg: Any) -> None:
    """The real handler (never called: see the module docstring)."""
    base = msg.topic.rsplit("/", 1)[0]  # {union}/{job}/{task}/{context}/{tid}
    c.publish(f"{base}/status", body("status", "progress", 0, {}))
    c.publish(f"{base}/complete", body("complete", "succeed", 100, {"worker": NAME}))
    log(f"handled {msg.topic}")


def unrouted(_c: Any, _userdata: Any, msg: Any) -> None:
    log(f"received {msg.topic}, no callback matched: dropped")


def main() -> int:
    stop = threading.Event()
    ready = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc != 0:
            log(f"connect refused: {rc}")
            stop.set()
            return
        c.subscribe(SHARED, qos=0)

    def on_subscribe(c: Any, _u: Any, _mid: Any, _rc: Any, _p: Any = None) -> None:
        # Announce like the library does after (re)connecting.
        c.publish(f"{UNION}/system/online/{HOSTNAME}/{CLIENT}/online",
                  body("online", "connected", 100, {}))
        ready.set()

    mqtt_id = str(uuid.uuid1())
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=mqtt_id,
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, unrouted
    c.message_callback_add(SHARED, handle)  # THE BUG: a $share filter never matches a topic
    try:
        c.connect(HOST, PORT, keepalive=60)
    except OSError as err:
        log(f"cannot connect to {HOST}:{PORT}: {err}")
        return 1
    c.loop_start()
    while not ready.is_set() and not stop.is_set():
        ready.wait(0.05)
    if ready.is_set() and not stop.is_set():
        announce_ready(CLIENT, mqtt_id, SHARED)
        while not stop.wait(0.2):
            pass
    c.disconnect()
    c.loop_stop()
    log("stopped")
    return 0 if ready.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
