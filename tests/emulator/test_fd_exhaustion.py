"""The emulator out of file descriptors: a flood of connections under a low ``ulimit -n``
costs one warning line, never a traceback, and the emulator serves again once they close."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from aetherdiag.emulator import announce
from aetherdiag.harness.clients import release

LIMIT = 40


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def test_a_connection_flood_under_a_low_fd_limit_is_one_line_and_survivable() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "emulator", "serve", "--port", "0", "--machine"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=_low_limit)
    flood: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        listening = announce.load(line)
        assert isinstance(listening, announce.Listening), line
        port = listening.port
        for _ in range(LIMIT + 10):  # more than the emulator can hold open
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.5)
        for s in flood:
            s.close()
        flood.clear()
        time.sleep(1.5)  # asyncio retries the accept a second after EMFILE
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="after-the-flood")
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        try:
            deadline = time.monotonic() + 10
            while not client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.is_connected(), "the emulator no longer accepts connections"
        finally:
            client.disconnect()
            release(client)
    finally:
        for s in flood:
            s.close()
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "Traceback" not in err, err
    assert "cannot accept a connection" in err
    assert proc.returncode == 0, err
