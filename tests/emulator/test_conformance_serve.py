"""Conformance: ``aetherdiag emulator serve`` as a separate process, used by paho-mqtt clients.

The command prints the address it listens on (``--port 0`` picks a free one; ``--machine``
prints it as a JSON line), serves until SIGINT (Ctrl-C) and then exits cleanly.
"""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from support.mqttclient import SUBACK, V5, V311, PahoClient, RawClient, by_payload

from aetherdiag.emulator import announce

START_TIMEOUT = 15.0  # a cold Python start with typer and rich on a busy machine


@pytest.fixture
def serve() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``serve(*args)``: ``aetherdiag emulator serve ARGS`` with its output piped; every
    process is killed (if still running), reaped and its pipes closed after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aetherdiag", "emulator", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _address(proc: subprocess.Popen[str]) -> tuple[str, int]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    assert ready, "the emulator printed no address in time"
    line = proc.stdout.readline()
    match = re.search(r"mqtt://([\d.]+):(\d+)", line)
    assert match, f"no address in {line!r}"
    return match.group(1), int(match.group(2))


def test_serve_prints_its_address_serves_and_stops_on_ctrl_c(serve, clients):
    proc = serve("--port", "0", "--fault", "share-fanout", "--strategy", "sticky")
    host, port = _address(proc)
    assert host == "127.0.0.1" and port > 0
    members = []
    for v in (V311, V5):
        c = PahoClient(host, port, version=v, client_id=f"w{v}")
        clients.append(c)
        c.connect()
        c.subscribe("$share/g/t", qos=1)
        members.append(c)
    pub = PahoClient(host, port, version=V5, client_id="pub")
    clients.append(pub)
    pub.connect()
    for i in range(3):
        pub.publish("t", str(i), qos=1)
    for c in members:  # --fault share-fanout reached the broker: everyone gets everything
        c.wait_for(3)
        assert by_payload(c.settle(0.1)) == {"0": 1, "1": 1, "2": 1}

    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert members[1].wait_disconnected() == 0x8B  # v5: Server shutting down
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_serve_refuses_an_unknown_fault(serve):
    proc = serve("--port", "0", "--fault", "share-everything")
    assert proc.wait(timeout=START_TIMEOUT) == 2
    err = proc.stderr.read() if proc.stderr else ""
    assert "share-everything" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "needle"), [
    (["--group-strategy", "a/b=random"], "a share group name has no '/', '+' or '#'"),
    (["--group-strategy", "g=random", "--group-strategy", "g=sticky"], "already has strategy"),
    (["--host", ""], "--host '': give an address"),
])
def test_serve_refuses_what_would_silently_do_something_else(serve, args, needle):
    """A group name that can never match, two strategies for one group, and an empty host
    (asyncio would bind every interface) are usage errors, not silently accepted."""
    proc = serve("--port", "0", *args)
    assert proc.wait(timeout=START_TIMEOUT) == 2
    err = proc.stderr.read() if proc.stderr else ""
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_serve_machine_prints_json_lines_on_stdout_and_the_human_lines_on_stderr(serve, clients):
    proc = serve("--port", "0", "--machine")
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    assert ready, "the emulator printed no address in time"
    listening = announce.load(proc.stdout.readline())
    assert isinstance(listening, announce.Listening)
    assert listening.host == "127.0.0.1" and listening.port > 0
    pub = PahoClient(listening.host, listening.port, version=V5, client_id="pub")
    clients.append(pub)
    pub.connect()
    pub.publish("t", "x", qos=1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    stopped = announce.load(lines[0])
    assert isinstance(stopped, announce.Stopped)
    assert stopped.stats["messages_in"] == 1 and stopped.stats["dropped_total"] == 0
    assert "aetherdiag emulator listening on mqtt://127.0.0.1:" in err
    assert "stopped: 1 messages in, 0 deliveries, 0 dropped" in err


def test_serve_summary_counts_what_stalled_members_held_when_it_stopped(serve, clients):
    """Two members that never read their socket: what the emulator queued for them is dropped
    when it stops, and the summary says so (it used to read the stats before the connections'
    losses were settled: '0 dropped', then the drops logged after it); one warning line per
    reason, not one per client."""
    proc = serve("--port", "0")
    host, port = _address(proc)
    stalled = []
    for name in ("stalled-1", "stalled-2"):
        raw = RawClient(host, port, version=V311)
        raw.connect(name)
        raw.send_subscribe(1, "$share/g/t", 0)
        raw.expect(SUBACK)
        stalled.append(raw)
    pub = PahoClient(host, port, version=V5, client_id="pub")
    clients.append(pub)
    pub.connect()
    sent = 20_000
    for _ in range(sent):
        pub.publish("t", b"x" * 1000, qos=0)
    pub.publish("t", b"last", qos=1)  # acknowledged once the broker has read all before it
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    for raw in stalled:
        raw.sock.close()
    summary = err.strip().splitlines()[-1]
    match = re.fullmatch(r"stopped: (\d+) messages in, (\d+) deliveries, (\d+) dropped"
                         r" \((\d+) (\w+)\)", summary)
    assert match, err
    messages_in, deliveries, dropped, by_reason, reason = (*map(int, match.groups()[:4]),
                                                           match.group(5))
    assert messages_in == sent + 1
    assert dropped > 0 and dropped == by_reason == messages_in - deliveries
    assert err.count("WARNING dropped message(s)") == 1, err
    assert reason in err.split("WARNING dropped message(s)")[1].splitlines()[0]
