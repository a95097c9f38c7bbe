#!/usr/bin/env python3
"""A worker for aetherdiag's generic profile (paho-mqtt), answering each task on a reply topic.

Used by the ``workers --exec --reply-topic`` tests. Configuration from the environment:

    MQTT_HOST, MQTT_PORT    the broker
    AETHERDIAG_WORKER       this worker's name (default generic-worker-<pid>)
    GW_FILTER               the subscription, e.g. $share/pool/jobs/+ (required)
    GW_REPLY                the reply topic template with {task_id}, e.g. results/{task_id}
    GW_MODE                 normal (one reply per task), twice (its handler runs twice),
                            silent (receives and never replies)
    GW_QOS                  the subscription's QoS (default 1)
    GW_WORK_S               seconds of work per task, in the message callback (so a QoS 1
                            PUBACK goes out only after it), default 0
    GW_CRASH_AFTER          exit at once with status 3 when this many tasks have arrived
                            (the last one in hand, never answered); default: never
    GW_CLIENT_ID            the MQTT client id (default gw-<name>-<pid>): give two processes
                            the same one and they keep taking over each other's session

A task is aetherdiag's generic JSON payload (``{"task_id", "run_id", "sent_at"}``); the reply,
published at QoS 1, is ``{"worker": <name>, "task_id": <id>}``. MQTT 5. With ``GW_REPLY`` set
to ``-`` it never replies (a pool without a reply channel).
stdout: ``READY <name>`` once the broker acknowledged the subscription. SIGTERM/SIGINT: exit 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

NAME = os.environ.get("AETHERDIAG_WORKER") or f"generic-worker-{os.getpid()}"
FILTER = os.environ["GW_FILTER"]
REPLY = os.environ.get("GW_REPLY", "results/{task_id}")
MODE = os.environ.get("GW_MODE", "normal")
QOS = int(os.environ.get("GW_QOS", "1"))
WORK_S = float(os.environ.get("GW_WORK_S", "0"))
CRASH_AFTER = int(os.environ.get("GW_CRASH_AFTER", "0"))
CLIENT_ID = os.environ.get("GW_CLIENT_ID")


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=CLIENT_ID or f"gw-{NAME}-{os.getpid()}",
                         protocol=mqtt.MQTTv5)
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    received = 0

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        c.subscribe(FILTER, qos=QOS)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        print(f"READY {NAME} codes={[int(getattr(x, 'value', x)) for x in codes]}", flush=True)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            task = json.loads(msg.payload)["task_id"]
        except (ValueError, KeyError, TypeError):
            return
        nonlocal received
        received += 1
        print(f"[{NAME}] got {task}", file=sys.stderr, flush=True)
        if CRASH_AFTER and received >= CRASH_AFTER:
            print(f"[{NAME}] crashing with {task} in hand", file=sys.stderr, flush=True)
            os._exit(3)
        if WORK_S:
            time.sleep(WORK_S)
            print(f"[{NAME}] done {task}", file=sys.stderr, flush=True)
        if MODE == "silent" or REPLY == "-":
            return
        body = json.dumps({"worker": NAME, "task_id": task})
        for _ in range(2 if MODE == "twice" else 1):
            c.publish(REPLY.replace("{task_id}", task), body, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(os.environ.get("MQTT_HOST", "127.0.0.1"),
                   int(os.environ.get("MQTT_PORT", "1883")))
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
