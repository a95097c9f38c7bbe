"""The README's pytest example: AetherMagic workers against the ``mqtt_emulator`` fixture, the
correct broker the original incident was missing. Kept as a real test so the README's code runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aetherdiag.harness.clients import release

pytest.importorskip("aethermagic", reason="the test extra installs aethermagic[mqtt]")
WORKER = Path(__file__).resolve().parent / "workers" / "readme_worker.py"
BASE = "production/engine/process-data/batch1"


def run_pool(port: int, tasks: int = 9, workers: int = 3) -> list[str]:
    """Start the workers, send ``tasks`` performs, return the tids completed (with repeats)."""
    env = {**os.environ, "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, str(WORKER)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    done: list[str] = []
    caller = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # type: ignore[attr-defined]
    caller.on_message = lambda c, u, m: done.append(m.topic.split("/")[4])
    caller.connect("127.0.0.1", port)
    caller.subscribe(f"{BASE}/+/complete")
    caller.loop_start()
    try:
        time.sleep(2.0)  # the workers connect and subscribe
        for n in range(tasks):
            body = {"action": "perform", "status": "initialized", "progress": 0,
                    "data": {"n": n}, "host": "test", "client": "test"}
            caller.publish(f"{BASE}/t{n}/perform", json.dumps(body))
        deadline = time.monotonic() + 10
        while len(done) < tasks and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # repeats, if any, arrive too
        return sorted(done)
    finally:
        release(caller)
        caller.disconnect()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


@pytest.mark.slow
def test_each_task_is_handled_once(mqtt_emulator: object) -> None:
    assert run_pool(mqtt_emulator.port) == [f"t{n}" for n in range(9)]  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.mqtt_emulator(faults=["share-fanout"])  # the broken broker of the incident
def test_the_seed_bug_makes_every_worker_handle_every_task(mqtt_emulator: object) -> None:
    done = run_pool(mqtt_emulator.port)  # type: ignore[attr-defined]
    assert len(done) == 27 and set(done) == {f"t{n}" for n in range(9)}
