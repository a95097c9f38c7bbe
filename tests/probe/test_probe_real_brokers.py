"""The probe against real brokers, each a PRIVATE process on free loopback ports.

Mosquitto (the shared ``mosquitto`` fixture from tests/conftest.py) must be described
honestly: what the probe reports is compared with what a plain test client observes directly.
NATS and RabbitMQ, when installed, have no ``$share`` support and must not look balanced.
Brokers that are not installed are skipped; system services on standard ports are never used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import mqttclient
from support.brokers import MosquittoProcess, free_port, stop_process, wait_for_port
from support.probe import explain, rows

from aetherdiag.harness.model import BrokerTarget
from aetherdiag.probe import ProbeOptions, ProbeReport, run_probe


def retained_reaches_shared(host: str, port: int, uid: str) -> bool:
    """Ask the broker directly: does a new shared subscription get a retained message?"""
    topic = f"ad-probe-check/{uid}/ret"
    pub = mqttclient.PahoClient(host, port, client_id=f"rp-{uid}")
    sub = mqttclient.PahoClient(host, port, client_id=f"rs-{uid}")
    try:
        pub.connect()
        pub.publish(topic, b"x", qos=1, retain=True)
        sub.connect()
        sub.subscribe(f"$share/g{uid}/{topic}", qos=1)
        time.sleep(1.0)
        got = bool(sub.messages)
        pub.publish(topic, b"", qos=1, retain=True)
        return got
    finally:
        sub.close()
        pub.close()


@pytest.mark.mosquitto
def test_probe_describes_mosquitto(mosquitto: MosquittoProcess) -> None:
    started = time.monotonic()
    report = run_probe(BrokerTarget(host=mosquitto.host, port=mosquitto.port),
                       ProbeOptions(timeout=30.0))
    assert time.monotonic() - started < 15.0
    got = rows(report)
    assert dict(report.share_behaviour) == {"3.1.1": "balanced", "5": "balanced"}
    assert report.strategy is not None
    assert (report.strategy.name, report.strategy.scope) == ("round_robin", "group"), \
        report.strategy.evidence
    assert report.strategy.confidence >= 0.8
    assert report.exit_code == 0, explain(report)
    assert got["shared_sub_available"] == ("pass", "absent (= available)")
    assert got["duplicates"] == ("pass", "none")
    assert got["publish_to_share"] == ("pass", "refused (PUBACK 0x87 (not authorized))")
    assert got["qos1_drop_clean"] == ("warn", "lost"), explain(report)
    assert got["qos1_drop_persistent"] == ("warn", "held for the member"), explain(report)
    assert got["qos2_drop"] == ("pass", "not moved")
    # Mosquitto keeps an offline persistent member's turn (mosquitto#1747) and never hands
    # a lost member's messages on, whatever the filter
    assert got["offline_member"] == ("warn", "keeps its turn (parked)"), explain(report)
    assert got["redispatch_wildcard"] == ("info", "not redispatched (either)"), explain(report)
    assert got["queue_prefix"] == ("info", "not supported (taken literally)")
    # Whatever this Mosquitto does with retained messages, the probe says the same.
    observed = retained_reaches_shared(mosquitto.host, mosquitto.port, report.run_id)
    assert got["retained"] == (("warn", "sent") if observed else ("pass", "not sent"))
    assert mosquitto.proc.poll() is None


@pytest.mark.mosquitto
def test_probe_leaves_nothing_behind(mosquitto: MosquittoProcess) -> None:
    report = run_probe(BrokerTarget(host=mosquitto.host, port=mosquitto.port),
                       ProbeOptions(timeout=30.0))
    # no retained message under the run's prefix
    watcher = mqttclient.PahoClient(mosquitto.host, mosquitto.port,
                                    client_id=f"watch-{report.run_id}")
    try:
        watcher.connect()
        watcher.subscribe(f"{report.topic_prefix}/#", qos=1)
        time.sleep(0.5)
        assert watcher.messages == []
    finally:
        watcher.close()
    # no persistent session left for the member that dropped (expiry 0: this check leaves
    # nothing behind either)
    back = mqttclient.PahoClient(mosquitto.host, mosquitto.port, version=mqttclient.V5,
                                 client_id=f"adprobe-{report.run_id}-q1p-a", clean=False,
                                 session_expiry=0)
    try:
        assert back.connect().session_present is False
    finally:
        back.close()


# -- brokers without $share --------------------------------------------------------------------


def assert_no_share_support(report: ProbeReport) -> None:
    behaviours = {v: b for v, b in report.share_behaviour.items() if b is not None}
    assert behaviours, explain(report)
    assert all(b in ("literal", "refused") for b in behaviours.values()), behaviours
    assert report.strategy is None
    assert int(report.exit_code) == 1
    assert not report.exactly_once


@pytest.fixture
def nats_mqtt(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A private nats-server with its MQTT listener (needs JetStream) on free ports."""
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed")
    mqtt_port, client_port = free_port(), free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{client_port}\n"
        "server_name: aetherdiag_probe_test\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n")
    log = (tmp_path / "nats.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        if not wait_for_port("127.0.0.1", mqtt_port, 10.0, proc):
            pytest.skip("the private nats-server did not open its MQTT port: "
                        + (tmp_path / "nats.log").read_text(errors="replace")[-300:])
        yield "127.0.0.1", mqtt_port
    finally:
        stop_process(proc)
        log.close()


def test_probe_reports_no_share_support_on_nats(nats_mqtt: tuple[str, int]) -> None:
    host, port = nats_mqtt
    report = run_probe(BrokerTarget(host=host, port=port), ProbeOptions(timeout=30.0))
    assert_no_share_support(report)
    assert report.share_behaviour["3.1.1"] == "literal"


RABBIT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


@pytest.fixture
def rabbitmq_mqtt(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A private RabbitMQ node with the MQTT plugin, its own epmd, cookie and data dir."""
    server = shutil.which("rabbitmq-server", path=str(RABBIT.parent)) or (
        str(RABBIT) if RABBIT.exists() else None)
    epmd = shutil.which("epmd")
    if server is None or epmd is None:
        pytest.skip("RabbitMQ (rabbitmq-server and epmd) is not installed")
    plugins_dir = Path("/usr/lib/rabbitmq/lib")
    if not any(plugins_dir.glob("*/plugins/rabbitmq_mqtt*")):
        pytest.skip("RabbitMQ's MQTT plugin is not installed")
    mqtt_port, amqp_port, dist_port, epmd_port = (free_port() for _ in range(4))
    (tmp_path / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n"
        "mqtt.allow_anonymous = true\n"
        "loopback_users = none\n")
    (tmp_path / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    env = {
        **os.environ, "HOME": str(tmp_path), "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": f"aetherdiag{epmd_port}@localhost",
        "RABBITMQ_CONFIG_FILE": str(tmp_path / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp_path / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(tmp_path / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp_path / "log"), "RABBITMQ_LOGS": "-",
        "RABBITMQ_PID_FILE": str(tmp_path / "rabbit.pid"),
        "RABBITMQ_DIST_PORT": str(dist_port),
    }
    log = (tmp_path / "rabbit.log").open("wb")
    epmd_proc = subprocess.Popen([epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
                                 stdout=log, stderr=log, env=env)
    proc = subprocess.Popen([server], stdout=log, stderr=log, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        if not wait_for_port("127.0.0.1", mqtt_port, 60.0, proc):
            pytest.skip("the private RabbitMQ did not open its MQTT port in 60 s")
        yield "127.0.0.1", mqtt_port
    finally:
        with _suppress():
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        stop_process(epmd_proc)
        log.close()


def _suppress() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(ProcessLookupError, PermissionError)


def test_probe_reports_no_share_support_on_rabbitmq(rabbitmq_mqtt: tuple[str, int]) -> None:
    host, port = rabbitmq_mqtt
    report = run_probe(BrokerTarget(host=host, port=port), ProbeOptions(timeout=30.0))
    assert_no_share_support(report)

