"""``aetherdiag workers --broker URL`` through typer's CliRunner: a private Mosquitto (healthy
and ``--plain`` runs, a password-protected one), and targets that cannot be reached.

The Mosquitto processes are private (free loopback ports, throw-away configs) and each run uses
its own AetherMagic union, so tests sharing the session's Mosquitto never see each other's
tasks. Without the binary the Mosquitto tests skip (fail in CI): see tests/support/brokers.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.brokers import (
    MosquittoProcess,
    free_port,
    readable_file,
    readable_tempdir,
    running_mosquitto,
)
from support.cli import ALL, ROUND_ROBIN, failed_checks, one_error_line, run_json, tasks_of, workers
from typer.testing import Result

from aetherdiag.harness.clients import release

USER, PASSWORD = "alice", "s3cret-pw"


def run_on(url: str, *args: str, env: dict[str, str] | None = None
           ) -> tuple[Result, dict[str, Any]]:
    """``workers --format json`` on ``url``: 3 workers, 9 tasks, in a union of their own."""
    union = f"ad{uuid.uuid4().hex[:10]}"  # a topic tree of its own on the shared Mosquitto
    return run_json("--broker", url, "--union", union, "--count", "3", "--tasks", "9",
                    "--connect-timeout", "5", "--timeout", "10", *args, env=env)


# --------------------------------------------------------------------------- Mosquitto


@pytest.mark.mosquitto
@pytest.mark.parametrize("mqtt", ["5", "3.1.1"])
def test_mosquitto_healthy_run_is_round_robin(mosquitto: Any, mqtt: str) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    result, doc = run_on(url, "--mqtt", mqtt)
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    assert doc["published"] == doc["delivered"] == 9 and doc["missing"] == []
    assert doc["duplicates"]["cross_worker"] == 0 and doc["duplicates"]["repeats"] == 0
    assert doc["balance"]["max_over_min"] == 1.0
    assert doc["verdict"] == "healthy" and doc["settled"] is True
    assert doc["target"] == url and doc["emulator"] is None
    assert doc["run"]["mqtt"] == mqtt


@pytest.mark.mosquitto
def test_mosquitto_plain_run_fans_out(mosquitto: Any) -> None:
    result, doc = run_on(f"mqtt://{mosquitto.host}:{mosquitto.port}", "--plain")
    assert result.exit_code == 1, result.output
    assert tasks_of(doc) == [ALL, ALL, ALL]
    assert doc["delivered"] == 27 and doc["duplicates"]["cross_worker"] == 9
    assert doc["verdict"] == "duplicates"
    assert any("subscribed without $share" in c for c in doc["causes"])


@pytest.mark.mosquitto
def test_mosquitto_table_and_qos2(mosquitto: Any) -> None:
    result = workers("--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--qos", "2",
                     "--union", f"ad{uuid.uuid4().hex[:10]}", "--count", "3", "--tasks", "9",
                     "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "verdict: healthy (exit 0)" in result.stdout


@pytest.fixture(scope="module")
def auth_mosquitto() -> Iterator[MosquittoProcess]:
    """A private Mosquitto that wants user ``alice`` and her password."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (needed for the password file)")
    with readable_tempdir("aetherdiag-auth-") as d:
        subprocess.run([passwd, "-c", "-b", str(d / "passwd"), USER, PASSWORD], check=True,
                       capture_output=True, timeout=30)
        pw = readable_file(d, "passwd")
        with running_mosquitto(d, f"allow_anonymous false\npassword_file {pw}\n") as mosq:
            yield mosq


@pytest.mark.mosquitto
def test_mosquitto_with_the_right_password_from_the_environment(auth_mosquitto: Any) -> None:
    url = f"mqtt://{USER}@{auth_mosquitto.host}:{auth_mosquitto.port}"
    result, doc = run_on(url, env={"AETHERDIAG_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    assert PASSWORD not in result.output
    assert doc["target"] == url


@pytest.mark.mosquitto
@pytest.mark.parametrize("who", ["wrong-password", "anonymous"])
def test_mosquitto_auth_failure_exits_3(auth_mosquitto: Any, who: str) -> None:
    creds = f"{USER}:not-{PASSWORD}@" if who == "wrong-password" else ""
    start = time.monotonic()
    result = workers("--broker", f"mqtt://{creds}{auth_mosquitto.host}:{auth_mosquitto.port}",
                     "--connect-timeout", "2", env={"AETHERDIAG_PASSWORD": ""})
    assert result.exit_code == 3, result.output
    line = one_error_line(result)
    assert "cannot connect to mqtt://" in line and "broker refused the connection" in line
    assert "not authorized" in line or "bad user name or password" in line
    assert PASSWORD not in result.output
    assert time.monotonic() - start < 6


# --------------------------------------------------------------------------- unreachable


def test_closed_port_exits_3_quickly() -> None:
    port = free_port()  # nothing listens there: refused
    start = time.monotonic()
    result = workers("--broker", f"mqtt://127.0.0.1:{port}", "--connect-timeout", "2")
    elapsed = time.monotonic() - start
    assert result.exit_code == 3, result.output
    line = one_error_line(result)
    assert line == f"aetherdiag: error: cannot connect to mqtt://127.0.0.1:{port}: " \
                   "connection refused"
    assert elapsed < 6


def test_silent_listener_exits_3_within_the_connect_timeout() -> None:
    """A port that accepts TCP but never answers CONNECT (not an MQTT broker, or a hung one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        port = s.getsockname()[1]
        start = time.monotonic()
        result = workers("--broker", f"mqtt://127.0.0.1:{port}", "--connect-timeout", "2",
                         "--format", "json")
        elapsed = time.monotonic() - start
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CONNACK within 2 s" in lines[0], result.stderr
    # --format json: the failed run still leaves its document, with the error and exit code
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 3 and doc["error"] in lines[0]
    assert 1.5 < elapsed < 6


# --------------------------------------------------------------------------- broken runs


@pytest.mark.mosquitto
def test_broker_killed_mid_run_is_exit_3_not_healthy(tmp_path: Path) -> None:
    with running_mosquitto(tmp_path) as mosq:
        killer = threading.Timer(1.5, mosq.proc.kill)
        try:
            killer.start()
            result = workers("--broker", f"mqtt://{mosq.host}:{mosq.port}", "--rate", "50",
                             "--tasks", "200", "--timeout", "20", "--format", "json")
        finally:
            killer.cancel()
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "broker lost" and doc["exit_code"] == 3
    assert "publisher" in doc["connection_lost"]
    assert 0 < doc["published"] < 200 and sum(u["count"] for u in doc["unsent"]) == (
        200 - doc["published"])
    assert {"broker connection held", "every task sent"} <= failed_checks(doc)


# --------------------------------------------------------------------------- production safety


class LivePool:
    """A stand-in for a team's live worker: a paho client in the production share group that
    counts what it receives, and optionally a live publisher feeding the production topics."""

    def __init__(self, host: str, port: int, union: str) -> None:
        self.received: list[str] = []
        self.union = union
        self.sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"live-{union}",
                               protocol=mqtt.MQTTv5)
        self.sub.on_message = lambda c, u, msg: self.received.append(msg.topic)
        self.sub.connect(host, port)
        self.sub.loop_start()
        info = self.sub.subscribe(
            f"$share/{union}_engine_workers/{union}/engine/process-data/batch1/+/perform", 1)
        assert info[0] == mqtt.MQTT_ERR_SUCCESS
        self.pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"livepub-{union}",
                               protocol=mqtt.MQTTv5)
        self.pub.connect(host, port)
        self.pub.loop_start()
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        time.sleep(0.3)  # SUBACK in

    def feed(self, per_second: float = 100.0) -> None:
        def run() -> None:
            n = 0
            while not self._stop.wait(1.0 / per_second):
                n += 1
                self.pub.publish(f"{self.union}/engine/process-data/batch1/live-{n}/perform",
                                 b'{"live": true}', qos=1)
        self._feeder = threading.Thread(target=run, daemon=True)
        self._feeder.start()

    def close(self) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join(5)
        for client in (self.sub, self.pub):
            client.disconnect()
            release(client)


@pytest.mark.mosquitto
def test_default_run_on_a_real_broker_never_meets_the_live_pool(mosquitto: Any) -> None:
    union = f"prod{uuid.uuid4().hex[:8]}"
    live = LivePool(mosquitto.host, mosquitto.port, union)
    try:
        result = workers("--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--union",
                         union, "--format", "json", "--timeout", "10")
        time.sleep(0.3)
    finally:
        live.close()
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert live.received == []  # the live worker got none of the fake tasks
    assert doc["run"]["subscription"].startswith(f"$share/{union}_engine_workers-")
    assert doc["run"]["subscription"].split("/", 2)[2].startswith("aetherdiag/")
    assert doc["run"]["tasks"].split(" to ")[1].startswith("aetherdiag/")
    assert "warning" not in result.stderr


@pytest.mark.mosquitto
def test_production_topics_are_an_explicit_choice_with_a_warning(mosquitto: Any) -> None:
    union = f"prod{uuid.uuid4().hex[:8]}"
    live = LivePool(mosquitto.host, mosquitto.port, union)
    try:
        live.feed()
        result = workers("--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--union",
                         union, "--use-production-topics", "--tasks", "30", "--rate", "30",
                         "--format", "json", "--timeout", "15")
        time.sleep(0.3)
    finally:
        live.close()
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("aetherdiag: warning")]
    assert len(warnings) == 1 and "--use-production-topics" in warnings[0], result.stderr
    doc = json.loads(result.stdout)
    ours = [t for t in live.received if "/task-" in t]
    assert ours, "the live member is in the group, so it takes some of the fake tasks"
    assert result.exit_code != 0  # those tasks never reached the run's own workers
    assert doc["foreign_messages"] > 0  # and the run's workers took live tasks
    assert any("not published by this run" in c for c in doc["causes"])


# --------------------------------------------------------------------------- ACLs


@pytest.fixture(scope="module")
def acl_mosquitto() -> Iterator[MosquittoProcess]:
    """A private Mosquitto whose ACL allows aetherdiag/# and only reading under denied/#."""
    with readable_tempdir("aetherdiag-acl-") as d:
        acl = readable_file(d, "acl", "topic readwrite aetherdiag/#\ntopic read denied/#\n")
        with running_mosquitto(d, f"acl_file {acl}\n") as mosq:
            yield mosq


@pytest.mark.mosquitto
def test_publishes_denied_by_an_acl_are_blamed_on_authorization(acl_mosquitto: Any) -> None:
    url = f"mqtt://{acl_mosquitto.host}:{acl_mosquitto.port}"
    result = workers("--broker", url, "--topic-prefix", "denied", "--format", "json",
                     "--timeout", "5")
    assert result.exit_code == 4, result.output
    doc = json.loads(result.stdout)
    text = " ".join(doc["causes"])
    assert "not authorized (0x87)" in text and "ACL" in text
    assert "$share/... topic" not in text and "literal" not in text
    # the prefix the ACL allows works on the same broker
    ok = workers("--broker", url, "--format", "json", "--timeout", "5")
    assert ok.exit_code == 0, ok.output


@pytest.mark.mosquitto
def test_builtin_workers_answer_like_aethermagic_workers(mosquitto: MosquittoProcess) -> None:
    """With --profile aethermagic the built-in workers announce themselves (idle, online) and
    answer every task (status on receipt, complete when done), as the library's workers do:
    a plain observer sees one status and one complete per task, from the worker that got it."""
    from aetherdiag.wire.aethermagic import parse

    seen: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            seen.append((msg.topic, bytes(msg.payload)))

    observer.on_message = on_message
    observer.connect(mosquitto.host, mosquitto.port)
    observer.subscribe("aetherdiag/#")
    observer.loop_start()
    try:
        time.sleep(0.3)
        result, doc = run_on(f"mqtt://{mosquitto.host}:{mosquitto.port}", "--profile",
                             "aethermagic", "--work-ms", "20")
        time.sleep(0.3)
    finally:
        release(observer)
        observer.disconnect()
    assert result.exit_code == 0, result.output
    got = {tid: w["name"] for w in doc["workers"] for tid in w["tasks"]}
    with lock:
        messages = [m for m in (parse(t, p) for t, p in seen) if m is not None]
    statuses = {m.tid: m.client for m in messages if m.action == "status"}
    completes = [m for m in messages if m.action == "complete"]
    assert len(completes) == 9 and set(statuses) == set(got)
    for m in completes:  # answered by the worker that got it
        assert m.client is not None and m.client.startswith(got[m.tid] + "-")
    assert len({m.who for m in messages if m.action == "idle"}) == 3
    assert len({m.who for m in messages if m.is_online}) == 3
