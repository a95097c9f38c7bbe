"""Refusals read as refusals, and causes ranked by evidence (analysis/causes.py), on hand-made
run results: a connection the broker closed right after a packet it would not take, a SUBACK
granting less QoS than asked, nothing arriving with and without a sign of an ACL."""

from __future__ import annotations

from dataclasses import replace

from aetherdiag.analysis import analyse
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import ClosedAfter, FleetEvent, RunResult, WorkerSpec

SHARED = "$share/g/jobs/+"
URL = "mqtt://broker.example:1883"
TASKS = tuple(f"task-{n}" for n in range(1, 4))


def specs(qos: int = 1) -> list[WorkerSpec]:
    return [WorkerSpec(name=f"worker-{i}", subscriptions=(SHARED,), qos=qos) for i in (1, 2, 3)]


def nothing_arrived(**kw: object) -> RunResult:
    """Three workers and a publisher connected to a real broker; no task reached anyone."""
    clients = ("publisher", "worker-1", "worker-2", "worker-3")
    base = RunResult(
        target=URL, workers=("worker-1", "worker-2", "worker-3"), published=TASKS,
        subscribe_results=tuple((w, SHARED, 1) for w in clients[1:]),
        events=tuple(FleetEvent(at=0.0, worker=c, kind="connected") for c in clients))
    return replace(base, **kw)  # type: ignore[arg-type]


QOS2_CLOSED = ClosedAfter(client="publisher", packet="PUBLISH", qos=2, topic="jobs/task-1",
                          unanswered=3)
UNACKED = tuple((t, "not acknowledged: the broker closed the publisher's connection right "
                    "after a QoS 2 PUBLISH") for t in TASKS)


def test_a_connection_closed_after_a_qos2_publish_is_that_refusal_not_a_lost_network() -> None:
    result = nothing_arrived(closed_after=(QOS2_CLOSED,), connection_lost=("publisher",),
                             publish_failures=TASKS, publish_refusals=UNACKED)
    report = analyse(result, specs(2))
    assert report.exit_code == ExitCode.MISSING  # a refusal, not "broker lost" (3)
    assert report.connection_lost == ()
    held = next(c for c in report.checks if c.name == "broker connection held")
    assert held.passed is True and "the publisher's connection as a refusal" in held.detail
    assert report.causes[0] == (
        "nothing arrived: the broker closed the publisher's connection right after a QoS 2 "
        "PUBLISH: it does not support QoS 2 (NATS does this, and Mosquitto with max_qos below "
        "2); use --qos 1")
    text = " ".join(report.causes)
    assert "network" not in text and "never acknowledged" not in text


def test_every_client_gone_is_still_a_lost_broker() -> None:
    """When every connection ended, the broker or the network went: no refusal is read in."""
    result = nothing_arrived(closed_after=(QOS2_CLOSED,), publish_failures=TASKS,
                             publish_refusals=UNACKED,
                             connection_lost=("publisher", "worker-1", "worker-2", "worker-3"))
    report = analyse(result, specs(2))
    assert report.exit_code == ExitCode.UNREACHABLE
    assert "the broker stopped or restarted, or the network dropped" in report.causes[0]


def test_a_subscribe_the_broker_closed_the_connection_after_names_the_workers() -> None:
    """3.1.1 has no DISCONNECT: the close itself is the refusal (the fleet records the SUBACK
    it never got as 0x80)."""
    closed = tuple(ClosedAfter(client=f"worker-{i}", packet="SUBSCRIBE", qos=1, topic=SHARED)
                   for i in (1, 2))
    result = nothing_arrived(closed_after=closed, connection_lost=("worker-1", "worker-2"),
                             subscribe_results=(("worker-1", SHARED, 0x80),
                                                ("worker-2", SHARED, 0x80),
                                                ("worker-3", SHARED, 1)))
    report = analyse(result, specs())
    assert report.exit_code == ExitCode.MISSING and report.connection_lost == ()
    assert report.causes[0].startswith(
        "nothing arrived: the broker closed the connections of worker-1, worker-2 right after "
        "a QoS 1 SUBSCRIBE: it will not take this subscription: an ACL that denies the filter")
    assert "network" not in " ".join(report.causes)


def test_a_subscribe_answered_with_a_disconnect_reason_is_that_suback_refusal() -> None:
    closed = tuple(ClosedAfter(client=f"worker-{i}", packet="SUBSCRIBE", qos=1, topic=SHARED,
                               disconnect=0x9E) for i in (1, 2, 3))
    result = nothing_arrived(closed_after=closed, subscribe_results=tuple(
        (f"worker-{i}", SHARED, 0x9E) for i in (1, 2, 3)))
    causes = analyse(result, specs()).causes
    assert causes[0] == ("nothing arrived: the broker refused the subscriptions (0x9E (shared "
                         "subscriptions not supported))")
    assert not any("closed" in c for c in causes)


def test_a_publish_answered_with_disconnect_0x87_is_blamed_on_the_acl() -> None:
    closed = ClosedAfter(client="publisher", packet="PUBLISH", qos=1, topic="jobs/task-1",
                         disconnect=0x87)
    causes = analyse(nothing_arrived(closed_after=(closed,)), specs()).causes
    assert causes[0] == (
        "nothing arrived: the broker closed the publisher's connection right after a QoS 1 "
        "PUBLISH (DISCONNECT 0x87 (not authorized)): an ACL denies publishing to the task "
        "topics; publish where the ACL allows (--topic-prefix) or grant this client publish "
        "access")


def test_a_suback_granting_less_is_named_per_worker() -> None:
    result = nothing_arrived(subscribe_results=(("worker-1", SHARED, 1), ("worker-2", SHARED, 1),
                                                ("worker-3", SHARED, 2)))
    causes = analyse(result, specs(2)).causes
    granted = [c for c in causes if c.startswith("the broker granted")]
    assert granted == [
        "the broker granted QoS 1 (SUBACK 0x01) where QoS 2 was asked, to worker-1, worker-2: "
        "each task reaches them at least once, not exactly once: a redelivery can repeat a "
        "task, so the workers must be idempotent; --qos 1 matches what the broker does (NATS "
        "has no QoS 2; Mosquitto's max_qos 1 caps it)"]


def test_nothing_arrived_names_no_acl_without_a_sign_and_offers_the_probe() -> None:
    report = analyse(nothing_arrived(), specs())
    assert report.causes == (
        "nothing arrived although every subscription was accepted: the broker takes $share/... "
        "as a literal topic filter (no shared-subscription support), or the filter does not "
        f"match the task topics; `aetherdiag probe --broker {URL}` tells these apart",)


def test_on_a_broker_that_refused_v5_the_literal_reading_says_why() -> None:
    report = analyse(nothing_arrived(mqtt5_refused="the connection closed before any "
                                                   "CONNACK"), specs())
    assert report.causes[0].startswith(
        "nothing arrived although every subscription was accepted: the broker takes $share/... "
        "as a literal topic filter (it speaks only MQTT 3.1.1: it refused MQTT 5.0, and "
        "3.1.1-only brokers such as RabbitMQ and NATS have no shared subscriptions), or the "
        "filter does not match")
    assert "ACL" not in report.causes[0]


def test_a_refusal_code_is_a_sign_of_an_acl() -> None:
    result = nothing_arrived(subscribe_results=tuple((f"worker-{i}", SHARED, 0x87)
                                                     for i in (1, 2, 3)))
    assert "an ACL denies this subscription" in analyse(result, specs()).causes[0]


def test_the_emulator_gets_no_probe_hint() -> None:
    report = analyse(nothing_arrived(target="emulator", emulator_stats={}), specs())
    assert "aetherdiag probe" not in " ".join(report.causes)
