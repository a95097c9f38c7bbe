"""``aetherdiag workers --broker ws://...`` against ``aetherdiag emulator serve --ws-port``: the
whole path a user takes to test MQTT over WebSocket without a real broker (issue 14).

The emulator runs as its own process on free ports (``--port 0 --ws-port 0``), stops when
its stdin closes, and is reaped by the fixture whatever the test did.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.cli import ROUND_ROBIN, run_json, tasks_of

from aetherdiag.emulator import announce

START_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def ws_emulator() -> Iterator[announce.Listening]:
    """``emulator serve --port 0 --ws-port 0`` in a child process: its listening line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "emulator", "serve", "--port", "0",
         "--ws-port", "0", "--machine", "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        event = announce.load(proc.stdout.readline())
        assert isinstance(event, announce.Listening) and event.ws_ports, event
        yield event
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("mqtt", ["5", "3.1.1"])
def test_workers_over_websocket_against_the_emulator_exit_0(ws_emulator, mqtt):
    url = f"ws://127.0.0.1:{ws_emulator.ws_ports[0]}"
    union = f"ws{mqtt.replace('.', '')}"  # a topic tree per run on the shared emulator
    result, doc = run_json("--broker", url, "--mqtt", mqtt, "--union", union, "--count", "3",
                           "--tasks", "9", "--connect-timeout", "5", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    assert doc["published"] == doc["delivered"] == 9 and doc["missing"] == []
    assert doc["verdict"] == "healthy"
    assert doc["target"] == f"{url}" and doc["emulator"] is None


def test_workers_over_websocket_with_a_path(ws_emulator):
    # the listener serves any path, as Mosquitto's does
    url = f"ws://127.0.0.1:{ws_emulator.ws_ports[0]}/some/path"
    result, doc = run_json("--broker", url, "--union", "wspath", "--count", "2", "--tasks", "4",
                           "--connect-timeout", "5", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert doc["delivered"] == 4
