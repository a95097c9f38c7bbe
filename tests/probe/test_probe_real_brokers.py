"""The probe against real brokers, each a PRIVATE process on free loopback ports.

Mosquitto (the shared ``mosquitto`` fixture from tests/conftest.py) must be described
honestly: what the probe reports is compared with what a plain test client observes directly.
NATS and RabbitMQ (the session's private processes, tests/support/thirdparty.py) have no
``$share`` support and must not look balanced. Brokers that are not installed are skipped
(failed under CI=true); system services on standard ports are never used.
"""

from __future__ import annotations

import time

import pytest
from support import mqttclient
from support.brokers import MosquittoProcess
from support.probe import explain, rows
from support.thirdparty import ThirdPartyBroker

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
def nats_mqtt(nats: ThirdPartyBroker) -> tuple[str, int]:
    """The session's private nats-server (tests/support/thirdparty.py): its MQTT listener."""
    nats.check_alive()
    return nats.host, nats.port


def test_probe_reports_no_share_support_on_nats(nats_mqtt: tuple[str, int]) -> None:
    host, port = nats_mqtt
    report = run_probe(BrokerTarget(host=host, port=port), ProbeOptions(timeout=30.0))
    assert_no_share_support(report)
    assert report.share_behaviour["3.1.1"] == "literal"


@pytest.fixture
def rabbitmq_mqtt(rabbitmq: ThirdPartyBroker) -> tuple[str, int]:
    """The session's private RabbitMQ node (tests/support/thirdparty.py): its MQTT listener."""
    rabbitmq.check_alive()
    return rabbitmq.host, rabbitmq.port


def test_probe_reports_no_share_support_on_rabbitmq(rabbitmq_mqtt: tuple[str, int]) -> None:
    host, port = rabbitmq_mqtt
    report = run_probe(BrokerTarget(host=host, port=port), ProbeOptions(timeout=30.0))
    assert_no_share_support(report)

