"""Synthetic AetherMagic traffic for watch tests: one paho connection (MQTT 3.1.1, QoS 0)
publishes performs, statuses, completes and online messages the way the library does, with
the sender's identity in the JSON body."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from aetherdiag.emulator import Emulator
from aetherdiag.harness.clients import release

BASE = "production/engine/process-data/batch1"


def body(action: str, client: str, host: str = "h1", progress: int = 0,
         data: dict[str, Any] | None = None, status: str = "progress") -> bytes:
    return json.dumps({"host": host, "client": client, "action": action, "status": status,
                       "progress": progress, "data": data or {}}).encode()


class Wire:
    """One connection that speaks for callers and workers alike, in ``union``."""

    def __init__(self, host: str, port: int, union: str = "production") -> None:
        self.union = union
        self.base = BASE.replace("production", union, 1)
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"am-wire-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv311)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Published (QoS 0), or with ``retain`` at QoS 1: acknowledged, so the broker holds
        it before this returns."""
        self.client.publish(topic, payload, qos=1 if retain else 0,
                            retain=retain).wait_for_publish(5)

    def perform(self, tid: str, caller: str = "caller-1", data: dict[str, Any] | None = None,
                retain: bool = False) -> None:
        self.send(f"{self.base}/{tid}/perform",
                  body("perform", caller, data=data or {"n": tid}, status="initialized"),
                  retain=retain)

    def handle(self, tid: str, worker: str) -> None:
        """A worker's status (progress 0) and complete for ``tid``."""
        self.send(f"{self.base}/{tid}/status", body("status", worker))
        self.send(f"{self.base}/{tid}/complete", body("complete", worker, progress=100,
                                                       status="succeed"))

    def online(self, client: str, host: str = "h1") -> None:
        self.send(f"{self.union}/system/online/{host}/{client}/online", body("online", client))

    def close(self) -> None:
        self.client.disconnect()
        release(self.client)


def wait_for_watcher(em: Emulator, timeout: float = 10.0) -> None:
    """Until the watch client is connected with its subscriptions on ``em``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.client_id.startswith("aetherdiag-watch-") and c.connected and c.subscriptions
               for c in em.clients()):
            return
        time.sleep(0.02)
    raise AssertionError("the watch never subscribed")
