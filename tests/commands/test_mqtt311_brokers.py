"""Brokers that speak only MQTT 3.1.1, and refusals read as refusals (issue 21), through the
CLI against real processes: a private RabbitMQ 3.10 (closes an MQTT 5.0 CONNECT without a
CONNACK) and NATS 2.9 (answers it with a 3.1.1 CONNACK, return code 1), both taking
``$share/...`` literally, NATS without QoS 2; and a private Mosquitto with ``max_qos 1``.

The brokers are session fixtures (tests/conftest.py, tests/support/thirdparty.py): missing
binaries skip these tests with the reason, and fail them under ``CI=true``. Each run uses its
own run-scoped topics (``aetherdiag/<run id>/...``), so runs sharing a broker never meet.
"""

from __future__ import annotations

import pytest
from support.brokers import readable_tempdir, running_mosquitto
from support.cli import ALL, causes, invoke, report_of, run_json
from support.thirdparty import ThirdPartyBroker

# how each broker refuses MQTT 5.0, as the fallback line quotes it (the byte on the wire)
REFUSAL = {
    "rabbitmq": "the connection closed before any CONNACK",
    "nats": "a 3.1.1 CONNACK, return code 1 (unacceptable protocol version)",
}


@pytest.fixture(params=["rabbitmq", "nats"])
def v311_only(request: pytest.FixtureRequest) -> ThirdPartyBroker:
    broker: ThirdPartyBroker = request.getfixturevalue(request.param)
    broker.check_alive()
    return broker


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("aetherdiag: warning: ")]


def test_workers_falls_back_to_311_once_and_says_missing_with_the_literal_reading_first(
        v311_only: ThirdPartyBroker) -> None:
    url = v311_only.url
    result, doc = run_json("--broker", url, "--connect-timeout", "5", "--timeout", "10")
    assert result.exit_code == 4, result.output  # missing, not "broker unreachable" (3)
    assert warnings_of(result.stderr) == [
        f"aetherdiag: warning: {url} refused MQTT 5.0 ({REFUSAL[v311_only.kind]}): this run "
        "uses MQTT 3.1.1, which it accepts (--mqtt pins a version)"]
    assert doc["run"]["mqtt"] == "3.1.1 (the broker refused 5.0)"
    assert doc["missing"] == ALL and doc["delivered"] == 0 and doc["connection_lost"] == []
    first = doc["causes"][0]
    assert first.startswith("nothing arrived although every subscription was accepted: the "
                            "broker takes $share/... as a literal topic filter (it speaks only "
                            "MQTT 3.1.1: it refused MQTT 5.0"), first
    assert first.endswith(f"`aetherdiag probe --broker {url}` tells these apart")
    assert "ACL" not in causes(doc)  # no sign of one: no refusal code, no denied publish
    assert any(REFUSAL[v311_only.kind] in n for n in doc["notes"])


def test_workers_pinned_to_5_does_not_fall_back(v311_only: ThirdPartyBroker) -> None:
    result = invoke("workers", "--broker", v311_only.url, "--mqtt", "5",
                    "--connect-timeout", "5", "--timeout", "10")
    assert result.exit_code == 3, result.output
    assert warnings_of(result.stderr) == []
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"aetherdiag: error: cannot connect to {v311_only.url}: ")
    said = {"rabbitmq": "connection closed before CONNACK",
            "nats": "a 3.1.1 CONNACK, return code 1 (unacceptable protocol version)"}
    assert said[v311_only.kind] in error and "try --mqtt 3.1.1" in error


def test_workers_pinned_to_311_needs_no_fallback(v311_only: ThirdPartyBroker) -> None:
    result, doc = run_json("--broker", v311_only.url, "--mqtt", "3.1.1",
                           "--connect-timeout", "5", "--timeout", "10")
    assert result.exit_code == 4, result.output
    assert warnings_of(result.stderr) == [] and doc["run"]["mqtt"] == "3.1.1"
    assert "literal topic filter (no shared-subscription support)" in doc["causes"][0]
    assert "aetherdiag probe --broker" in doc["causes"][0] and "ACL" not in causes(doc)


def test_probe_quotes_the_connacks_as_sent(v311_only: ThirdPartyBroker) -> None:
    result = invoke("probe", "--broker", v311_only.url, "--format", "json", "--timeout", "20")
    doc = report_of(result)
    assert result.exit_code == 1, result.output  # $share is literal here
    rows = {c["id"]: c for c in doc["checks"]}
    v311, v5 = rows["connect_v311"], rows["connect_v5"]
    assert v311["evidence"].startswith("CONNACK return code 0 (connection accepted) in ")
    assert v311["data"]["connack"] == 0 and v311["data"]["connack_protocol"] == "3.1.1"
    if v311_only.kind == "nats":
        assert v5["evidence"] == "a 3.1.1 CONNACK: return code 1 (unacceptable protocol version)"
        assert {k: v5["data"][k] for k in ("connack", "connack_protocol", "connack_meaning")} \
            == {"connack": 1, "connack_protocol": "3.1.1",
                "connack_meaning": "unacceptable protocol version"}
        assert doc["protocols"]["5"]["connack"] == 1  # the byte, not paho's 0x84 (132)
        assert "does not speak it" in v5["meaning"]
    else:
        assert v5["evidence"] == "connection closed before CONNACK"
        assert v5["data"]["connack"] is None and doc["protocols"]["5"]["connack"] is None
    assert doc["share_behaviour"]["3.1.1"] == "literal"
    fallback = [n for n in doc["notes"] if n.startswith("MQTT 5.0 was refused")]
    assert fallback and "the dispatch runs and rule checks used MQTT 3.1.1" in fallback[0]
    assert warnings_of(result.stderr) == [f"aetherdiag: warning: {v311_only.url}: {fallback[0]}"]


def test_replay_falls_back_and_shows_the_version_used(nats: ThirdPartyBroker) -> None:
    result = invoke("replay", "scenarios/problem-task.yaml", "--broker", nats.url,
                    "--format", "json", "--quiet")
    doc = report_of(result)
    assert doc["run"]["mqtt"] == "3.1.1 (the broker refused 5.0)", result.output
    assert warnings_of(result.stderr) == [
        f"aetherdiag: warning: scenarios/problem-task.yaml: {nats.url} refused MQTT 5.0 "
        f"({REFUSAL['nats']}): this run uses MQTT 3.1.1, which it accepts (--mqtt pins a "
        "version)"]


def test_qos2_on_nats_is_a_refusal_of_the_publish_not_a_lost_network(
        nats: ThirdPartyBroker) -> None:
    nats.check_alive()
    result, doc = run_json("--broker", nats.url, "--qos", "2", "--connect-timeout", "5",
                           "--timeout", "10")
    assert result.exit_code == 4, result.output  # missing: refused, not "broker lost" (3)
    assert doc["connection_lost"] == []
    assert doc["causes"][0] == (
        "nothing arrived: the broker closed the publisher's connection right after a QoS 2 "
        "PUBLISH: it does not support QoS 2 (NATS does this, and Mosquitto with max_qos below "
        "2); use --qos 1")
    assert "network dropped" not in causes(doc) and "never acknowledged" not in causes(doc)
    # NATS grants QoS 1 for the QoS 2 subscriptions: shown per worker and explained
    assert any(c.startswith("the broker granted QoS 1 (SUBACK 0x01) where QoS 2 was asked, "
                            "to worker-1, worker-2, worker-3:") for c in doc["causes"])
    for n in (1, 2, 3):
        assert (f"worker-{n}: the broker granted QoS 1 (SUBACK 0x01) for its QoS 2 "
                "subscription") in doc["notes"]


@pytest.mark.mosquitto
def test_a_mosquitto_capped_at_qos1_shows_the_downgrade_per_worker() -> None:
    with readable_tempdir("aetherdiag-maxqos-") as tmp, \
            running_mosquitto(tmp, "max_qos 1\n") as mosq:
        result, doc = run_json("--broker", f"mqtt://{mosq.host}:{mosq.port}", "--qos", "2",
                               "--connect-timeout", "5", "--timeout", "10")
    assert result.exit_code == 4, result.output
    assert doc["run"]["mqtt"] == "5" and warnings_of(result.stderr) == []
    for n in (1, 2, 3):
        assert (f"worker-{n}: the broker granted QoS 1 (SUBACK 0x01) for its QoS 2 "
                "subscription") in doc["notes"]
    granted = [c for c in doc["causes"] if c.startswith("the broker granted")]
    assert granted and granted[0].startswith(
        "the broker granted QoS 1 (SUBACK 0x01) where QoS 2 was asked, to worker-1, worker-2, "
        "worker-3: each task reaches them at least once")
    # Mosquitto closes the publisher's connection after the QoS 2 PUBLISH, and says why first
    assert "publisher: the broker's CONNACK says Maximum QoS 1, and this run publishes at QoS 2" \
        in doc["notes"]
    assert doc["causes"][0].startswith("nothing arrived: the broker closed the publisher's "
                                       "connection right after a QoS 2 PUBLISH")
    assert doc["connection_lost"] == []
