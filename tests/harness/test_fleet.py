"""The fleet against the emulator (a thread on port 0) and against a private Mosquitto.

Tests taking ``target`` run twice through the shared ``broker`` fixture (tests/conftest.py);
the Mosquitto process is shared by the session, so every test uses its own topic prefix.
Every wait is bounded: settle() and the fleet's own connect/step timeouts.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.brokers import (
    BrokerUnderTest,
    free_port,
    readable_tempdir,
    start_mosquitto,
    stop_process,
    wait_for_port,
)

from aetherdiag.emulator import Emulator
from aetherdiag.harness import churn
from aetherdiag.harness.fleet import BrokerUnreachable, Fleet, FleetError
from aetherdiag.harness.model import BrokerTarget, RunResult, TaskSpec, WorkerSpec
from aetherdiag.mqtt.protocol import Protocol

QUIET = 0.2


def workers(n: int, topic_filter: str, **kwargs: Any) -> list[WorkerSpec]:
    return [WorkerSpec(name=f"worker-{i}", subscriptions=(topic_filter,), **kwargs)
            for i in range(1, n + 1)]


def tasks(n: int, prefix: str, qos: int = 1, start: int = 1) -> list[TaskSpec]:
    return [TaskSpec(task_id=f"task-{i}", topic=f"{prefix}/task-{i}/do", qos=qos)
            for i in range(start, start + n)]


def by_worker(result: RunResult) -> dict[str, list[str | None]]:
    return {w: [d.task_id for d in result.deliveries if d.worker == w] for w in result.workers}


def ids(*numbers: int) -> list[str | None]:
    return [f"task-{n}" for n in numbers]


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def target(broker: BrokerUnderTest) -> BrokerTarget:
    """The conftest ``broker`` (emulator, then Mosquitto) as a BrokerTarget."""
    return BrokerTarget(host=broker.host, port=broker.port)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as em:
        yield em


def emu_target(em: Emulator, **kwargs: Any) -> BrokerTarget:
    return BrokerTarget(host=em.host, port=em.port, **kwargs)


# ----------------------------------------------------------------------------- healthy runs
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_shared_run_delivers_each_task_once_round_robin(
    target: BrokerTarget, topic: str, qos: int, protocol: Protocol
) -> None:
    with Fleet(target) as fleet:
        fleet.start(workers(3, f"$share/g/{topic}/+/do", qos=qos, protocol=protocol))
        assert fleet.publish(tasks(9, topic, qos)) == 9
        assert fleet.settle(expected=9, quiet_s=QUIET, timeout_s=10)
        result = fleet.result()
    assert by_worker(result) == {
        "worker-1": ids(1, 4, 7), "worker-2": ids(2, 5, 8), "worker-3": ids(3, 6, 9)
    }
    assert result.published == tuple(ids(*range(1, 10)))
    assert result.publish_failures == ()
    assert result.settled
    assert {d.qos for d in result.deliveries} == {qos}
    assert not any(d.dup or d.retain for d in result.deliveries)
    assert all(d.latency_ms is not None and 0 <= d.latency_ms < 5000 for d in result.deliveries)
    assert [d.at for d in result.deliveries] == sorted(d.at for d in result.deliveries)
    assert result.subscribe_results == tuple(
        (f"worker-{i}", f"$share/g/{topic}/+/do", qos) for i in (1, 2, 3)
    )
    assert result.workers == ("worker-1", "worker-2", "worker-3")
    assert [e.kind for e in result.events].count("connected") == 3


def test_plain_subscriptions_give_every_worker_every_task(target: BrokerTarget, topic: str
                                                          ) -> None:
    with Fleet(target) as fleet:
        fleet.start(workers(3, f"{topic}/+/do"))
        fleet.publish(tasks(9, topic))
        assert fleet.settle(expected=27, quiet_s=QUIET, timeout_s=10)
        result = fleet.result()
    assert by_worker(result) == {f"worker-{i}": ids(*range(1, 10)) for i in (1, 2, 3)}


def test_two_runs_on_one_broker_keep_apart(target: BrokerTarget, topic: str) -> None:
    """Same worker names, same topic: client ids differ, and each run knows its own tasks."""
    with Fleet(target) as a, Fleet(target) as b:
        assert a.client_id("worker-1") != b.client_id("worker-1")
        a.start(workers(1, f"{topic}/+/do"))
        b.start(workers(1, f"{topic}/+/do"))
        a.publish(tasks(2, topic))
        b.publish(tasks(2, topic, start=3))
        assert a.settle(expected=4, quiet_s=QUIET, timeout_s=10)
        assert b.settle(expected=4, quiet_s=QUIET, timeout_s=10)
        ra, rb = a.result(), b.result()
    # each run sees the other's messages, but as foreign ones (no task id)
    assert sorted(map(str, by_worker(ra)["worker-1"])) == ["None", "None", "task-1", "task-2"]
    assert sorted(map(str, by_worker(rb)["worker-1"])) == ["None", "None", "task-3", "task-4"]


def test_workers_can_be_added_later_and_names_must_be_unique(emulator: Emulator) -> None:
    with Fleet(emu_target(emulator)) as fleet:
        fleet.start(workers(1, "t/+"))
        fleet.start([WorkerSpec(name="late", subscriptions=("t/+",))])
        assert fleet.workers == ("worker-1", "late")
        with pytest.raises(ValueError, match="already in use"):
            fleet.start([WorkerSpec(name="late", subscriptions=("t/+",))])
        with pytest.raises(ValueError, match="unique"):
            fleet.start([WorkerSpec(name="x", subscriptions=()), WorkerSpec(name="x",
                                                                           subscriptions=())])


def test_publish_rate_paces_and_progress_is_reported(emulator: Emulator) -> None:
    seen: list[tuple[int, int]] = []
    with Fleet(emu_target(emulator)) as fleet:
        fleet.start(workers(1, "p/+/do"))
        t0 = time.monotonic()
        fleet.publish(tasks(6, "p"), rate=20, on_progress=lambda p, d: seen.append((p, d)))
        assert time.monotonic() - t0 >= 0.2  # 6 tasks at 20/s: at least 5 gaps of 50 ms
        assert fleet.settle(expected=6, quiet_s=QUIET, timeout_s=5,
                            on_progress=lambda p, d: seen.append((p, d)))
    assert seen[-1] == (6, 6)
    assert seen == sorted(seen)


def test_refused_publish_is_a_publish_failure(target: BrokerTarget, topic: str) -> None:
    """Publishing to a ``$share/...`` topic: v5 PUBACK 0x87 on both brokers."""
    with Fleet(target) as fleet:
        fleet.start(workers(1, f"$share/g/{topic}/+"))
        fleet.publish([TaskSpec(task_id="bad", topic=f"$share/g/{topic}/x"),
                       TaskSpec(task_id="good", topic=f"{topic}/x")])
        assert fleet.settle(expected=1, quiet_s=QUIET, timeout_s=5)
        result = fleet.result()
    assert result.publish_failures == ("bad",)
    assert result.published == ("bad", "good")
    assert any("0x87" in note for note in result.notes)
    assert [d.task_id for d in result.deliveries] == ["good"]


def test_refused_shared_subscription_is_recorded() -> None:
    with Emulator(faults=["share-unsupported"]) as em, Fleet(emu_target(em)) as fleet:
        fleet.start(workers(1, "$share/g/t/+"))
        result = fleet.result()
    assert result.subscribe_results == (("worker-1", "$share/g/t/+", 0x9E),)
    assert any("Shared Subscription Available = 0" in n for n in result.notes)


# ----------------------------------------------------------------------------- unreachable
class FakeServer:
    """A TCP server that accepts and then either stays silent or hangs up at once."""

    def __init__(self, hang_up: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hang_up = hang_up
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.hang_up:
                conn.close()
            else:
                self.conns.append(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self.thread.join(5)
        self.sock.close()
        for c in self.conns:
            c.close()


def unreachable(target: BrokerTarget, timeout: float = 1.0) -> tuple[str, float]:
    t0 = time.monotonic()
    with pytest.raises(BrokerUnreachable) as err, Fleet(target, connect_timeout=timeout) as f:
        f.start(workers(2, "t/+"))
    return str(err.value), time.monotonic() - t0


def test_refused_port_is_unreachable_quickly() -> None:
    port = free_port()
    message, elapsed = unreachable(BrokerTarget(host="127.0.0.1", port=port))
    assert message == f"cannot connect to mqtt://127.0.0.1:{port}: connection refused"
    assert elapsed < 1.0


def test_silent_server_times_out_within_the_connect_timeout() -> None:
    server = FakeServer(hang_up=False)
    try:
        message, elapsed = unreachable(BrokerTarget(host="127.0.0.1", port=server.port), 0.5)
    finally:
        server.close()
    assert message.endswith("no CONNACK within 0.5 s")
    assert 0.4 < elapsed < 1.5


def test_server_hanging_up_is_not_an_mqtt_broker() -> None:
    server = FakeServer(hang_up=True)
    try:
        message, elapsed = unreachable(BrokerTarget(host="127.0.0.1", port=server.port))
    finally:
        server.close()
    assert "before CONNACK (is this an MQTT broker?)" in message
    assert elapsed < 1.0


def test_unresolvable_host_is_unreachable_within_the_timeout() -> None:
    message, elapsed = unreachable(BrokerTarget(host="no-such-host.invalid", port=1883), 1.0)
    assert message.startswith("cannot connect to mqtt://no-such-host.invalid:1883: ")
    assert "cannot resolve host 'no-such-host.invalid'" in message or "within 1 s" in message
    assert elapsed < 2.0
    assert "\n" not in message


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_bad_credentials_are_unreachable_and_good_ones_connect(protocol: Protocol) -> None:
    with Emulator(users={"alice": "secret"}) as em:
        message, _ = unreachable(emu_target(em, username="alice", password="wrong",
                                            protocol=protocol))
        said = "0x86" if protocol == "5" else "return code 4"  # the code as sent
        assert f"broker refused the connection: {said} (bad user name or password)" in message
        assert "wrong" not in message
        with Fleet(emu_target(em, username="alice", password="secret",
                              protocol=protocol)) as fleet:
            fleet.start(workers(1, "t/+", protocol=protocol))
            assert fleet.result().subscribe_results == (("worker-1", "t/+", 1),)


def test_tls_to_a_plain_port_fails_with_a_tls_message(emulator: Emulator) -> None:
    message, elapsed = unreachable(emu_target(emulator, scheme="mqtts", insecure=True))
    assert "TLS handshake failed" in message
    assert elapsed < 1.0


def test_steps_on_unknown_workers_raise(emulator: Emulator) -> None:
    with Fleet(emu_target(emulator)) as fleet:
        fleet.start(workers(1, "t/+"))
        with pytest.raises(FleetError, match="unknown worker 'worker-9'"):
            churn.drop(fleet, "worker-9")
    with Fleet(emu_target(emulator)) as unstarted, pytest.raises(FleetError, match="start"):
        unstarted.publish(tasks(1, "t"))


# ----------------------------------------------------------------------------- churn steps
def test_drop_mid_flight_then_the_broker_decides(target: BrokerTarget, topic: str,
                                                 broker: BrokerUnderTest) -> None:
    """worker-2 is slow and dropped holding 2 unacknowledged tasks (clean session).

    The emulator re-dispatches them to worker-1; Mosquitto discards them (documented
    difference, MQTT-NOTES.md).
    """
    specs = workers(2, f"$share/g/{topic}/+/do")
    specs[1] = WorkerSpec(name="worker-2", subscriptions=specs[1].subscriptions, work_ms=10_000)
    with Fleet(target) as fleet:
        fleet.start(specs)
        fleet.publish(tasks(4, topic))
        wait_for(lambda: fleet.delivered >= 4)
        assert churn.drop(fleet, "worker-2") == ("task-2", "task-4")
        assert fleet.settle(quiet_s=0.3, timeout_s=5)
        result = fleet.result()
    got = by_worker(result)
    assert got["worker-2"] == ids(2, 4)
    if broker.is_emulator:
        assert sorted(map(str, got["worker-1"])) == ids(1, 2, 3, 4)
    else:
        assert got["worker-1"] == ids(1, 3)
    dropped = [e for e in result.events if e.kind == "dropped"]
    assert [(e.worker, e.task_ids) for e in dropped] == [("worker-2", ("task-2", "task-4"))]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_persistent_session_survives_a_drop_and_redelivers_with_dup(
    target: BrokerTarget, topic: str, protocol: Protocol
) -> None:
    spec = WorkerSpec(name="worker-1", subscriptions=(f"{topic}/+/do",), protocol=protocol,
                      clean_start=False, session_expiry=60, work_ms=10_000)
    with Fleet(target) as fleet:
        fleet.start([spec])
        fleet.publish(tasks(2, topic))
        wait_for(lambda: fleet.delivered >= 2)
        assert churn.drop(fleet, "worker-1") == ("task-1", "task-2")
        churn.set_work_ms(fleet, "worker-1", 0)
        assert churn.reconnect(fleet, "worker-1") is True  # session present: no resubscribe
        assert fleet.settle(expected=4, quiet_s=QUIET, timeout_s=5)
        result = fleet.result()
    assert [(d.task_id, d.dup) for d in result.deliveries] == [
        ("task-1", False), ("task-2", False), ("task-1", True), ("task-2", True)
    ]
    assert len(result.subscribe_results) == 1
    kinds = [(e.kind, e.detail) for e in result.events if e.worker == "worker-1"]
    assert ("reconnected", "session present") in kinds
    assert kinds.index(("reconnected", "session present")) > [k for k, _ in kinds].index(
        "dropped")


def test_qos2_on_a_dropped_persistent_member_completes_on_the_same_member(
    target: BrokerTarget, topic: str, broker: BrokerUnderTest
) -> None:
    """The application saw both tasks (PUBREL arrived) but had not sent PUBCOMP yet."""
    specs = [WorkerSpec(name=f"worker-{i}", subscriptions=(f"$share/g/{topic}/+/do",), qos=2,
                        clean_start=False, session_expiry=60, work_ms=10_000 if i == 1 else 0)
             for i in (1, 2)]
    with Fleet(target) as fleet:
        fleet.start(specs)
        fleet.publish(tasks(4, topic, qos=2))
        wait_for(lambda: fleet.delivered >= 4)
        assert churn.drop(fleet, "worker-1") == ("task-1", "task-3")
        churn.set_work_ms(fleet, "worker-1", 0)
        assert churn.reconnect(fleet, "worker-1") is True
        fleet.publish(tasks(2, topic, qos=2, start=5))
        assert fleet.settle(expected=6, quiet_s=QUIET, timeout_s=5)
        result = fleet.result()
        if broker.is_emulator:  # every QoS 2 flow completed (PUBCOMP sent after reconnect)
            em, cid = broker.emulator, fleet.client_id("worker-1")
            assert em is not None
            assert em.call(lambda: len(em.broker.sessions[cid].outflight)) == 0
    got = by_worker(result)
    assert sorted(map(str, got["worker-1"] + got["worker-2"])) == ids(1, 2, 3, 4, 5, 6)
    assert got["worker-1"][:2] == ids(1, 3)  # not moved to worker-2, not delivered twice
    assert len(got["worker-1"]) == 3  # and the session's flow completed: it gets new work


def test_retained_tasks_are_cleared_when_the_fleet_closes(target: BrokerTarget, topic: str
                                                         ) -> None:
    with Fleet(target) as fleet:
        fleet.start(workers(1, f"{topic}/+/do"))
        fleet.publish([TaskSpec(task_id="kept", topic=f"{topic}/kept/do", retain=True)])
        assert fleet.settle(expected=1, quiet_s=QUIET, timeout_s=5)
    with Fleet(target) as later:
        later.start(workers(1, f"{topic}/+/do"))
        later.wait(QUIET)
        assert later.result().deliveries == ()


def test_clean_disconnect_and_reconnect_resubscribes(target: BrokerTarget, topic: str) -> None:
    with Fleet(target) as fleet:
        fleet.start(workers(2, f"$share/g/{topic}/+/do"))
        churn.disconnect(fleet, "worker-2")
        fleet.publish(tasks(2, topic))
        assert fleet.settle(expected=2, quiet_s=QUIET, timeout_s=5)
        assert churn.reconnect(fleet, "worker-2") is False  # clean start: a new session
        fleet.publish(tasks(2, topic, start=3))
        assert fleet.settle(expected=4, quiet_s=QUIET, timeout_s=5)
        result = fleet.result()
    got = by_worker(result)
    assert got["worker-1"][:2] == ids(1, 2)
    assert sorted(map(str, got["worker-1"][2:] + got["worker-2"])) == ids(3, 4)
    assert got["worker-2"]  # back in the group
    assert [w for w, _, _ in result.subscribe_results].count("worker-2") == 2
    kinds = [e.kind for e in result.events if e.worker == "worker-2"]
    assert kinds == ["connected", "disconnected", "reconnected"]


def test_subscribe_and_unsubscribe_steps(target: BrokerTarget, topic: str) -> None:
    with Fleet(target) as fleet:
        fleet.start(workers(1, f"{topic}/a/+/do"))
        assert churn.subscribe(fleet, "worker-1", f"{topic}/b/+/do", qos=2) == 2
        fleet.publish(tasks(1, f"{topic}/b"))
        assert fleet.settle(expected=1, quiet_s=QUIET, timeout_s=5)
        assert churn.unsubscribe(fleet, "worker-1", f"{topic}/b/+/do") is True
        fleet.publish(tasks(1, f"{topic}/b", start=2))
        fleet.publish(tasks(1, f"{topic}/a", start=3))
        assert fleet.settle(expected=2, quiet_s=QUIET, timeout_s=5)
        result = fleet.result()
    assert [(d.task_id, d.qos) for d in result.deliveries] == [("task-1", 1), ("task-3", 1)]
    kinds = [e.kind for e in result.events]
    assert "subscribed" in kinds and "unsubscribed" in kinds


# ----------------------------------------------------------------------------- work time
def test_work_ms_delays_acknowledgements(emulator: Emulator) -> None:
    with Fleet(emu_target(emulator)) as fleet:
        fleet.start(workers(1, "w/+/do", work_ms=100))
        fleet.publish(tasks(4, "w"))
        wait_for(lambda: fleet.delivered >= 1)
        assert fleet.rec.pending_acks > 0
        t0 = time.monotonic()
        assert fleet.settle(expected=4, quiet_s=0.05, timeout_s=5)
        waited = time.monotonic() - t0
    assert waited >= 0.25  # four tasks, one at a time, 100 ms each


def test_settle_reports_being_cut_short(emulator: Emulator) -> None:
    with Fleet(emu_target(emulator)) as fleet:
        fleet.start(workers(1, "w/+/do", work_ms=5_000))
        fleet.publish(tasks(1, "w"))
        t0 = time.monotonic()
        assert fleet.settle(expected=1, quiet_s=QUIET, timeout_s=0.3) is False
        assert time.monotonic() - t0 < 1.0
        assert fleet.result().settled is False


@pytest.mark.parametrize(("strategy", "fast_min", "fast_max"),
                         [("round_robin", 20, 20), ("least_inflight", 27, 40)])
def test_slow_member_round_robin_versus_least_inflight(strategy: str, fast_min: int,
                                                       fast_max: int) -> None:
    specs = [WorkerSpec(name="fast", subscriptions=("$share/g/s/+/do",)),
             WorkerSpec(name="slow", subscriptions=("$share/g/s/+/do",), work_ms=40)]
    with Emulator(strategy=strategy) as em, Fleet(emu_target(em), seed=1) as fleet:
        fleet.start(specs)
        fleet.publish(tasks(40, "s"), rate=100)
        assert fleet.settle(expected=40, quiet_s=0.1, timeout_s=10)
        got = by_worker(fleet.result())
    assert fast_min <= len(got["fast"]) <= fast_max
    assert len(got["fast"]) + len(got["slow"]) == 40


def test_jitter_is_seeded(emulator: Emulator) -> None:
    def latencies(seed: int) -> list[float]:
        with Fleet(emu_target(emulator), seed=seed) as fleet:
            fleet.start(workers(1, "j/+/do", work_jitter_ms=50))
            w = fleet._workers["worker-1"]
            return [w.rng.uniform(0, 1) for _ in range(3)]

    assert latencies(7) == latencies(7) != latencies(8)


# ----------------------------------------------------------------------------- TLS, websockets
def _make_certs(d: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=aetherdiag test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")


@pytest.fixture(scope="module")
def secure_mosquitto() -> Iterator[dict[str, int | str]]:
    """A private Mosquitto with mqtts, ws and wss listeners, and its CA file."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    with readable_tempdir("aetherdiag-tls-") as d:
        _make_certs(d)
        for f in d.iterdir():
            f.chmod(0o644)
        ports = {name: free_port() for name in ("mqtts", "ws", "wss")}
        tls = f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
        secure = f"listener {ports['mqtts']} 127.0.0.1\n{tls}"
        websockets = (f"listener {ports['ws']} 127.0.0.1\nprotocol websockets\n"
                      f"listener {ports['wss']} 127.0.0.1\nprotocol websockets\n{tls}")
        try:
            mosq = start_mosquitto(d, secure + websockets)
        except pytest.fail.Exception:  # websockets are an optional mosquitto build feature
            mosq = start_mosquitto(d, secure)
            del ports["ws"], ports["wss"]
        try:
            for port in ports.values():
                if not wait_for_port("127.0.0.1", port, 10, mosq.proc):
                    pytest.fail(f"mosquitto's TLS/websocket listener did not open:\n"
                                f"{mosq.log_text()}", pytrace=False)
            yield {**ports, "ca": str(d / "ca.pem")}
        finally:
            stop_process(mosq.proc)


def _healthy(target: BrokerTarget) -> RunResult:
    with Fleet(target) as fleet:
        fleet.start(workers(2, "$share/g/sec/+/do"))
        fleet.publish(tasks(4, "sec"))
        assert fleet.settle(expected=4, quiet_s=QUIET, timeout_s=10)
        return fleet.result()


@pytest.mark.mosquitto
@pytest.mark.parametrize("scheme", ["mqtts", "ws", "wss"])
def test_tls_and_websockets(secure_mosquitto: dict[str, Any], scheme: str) -> None:
    if scheme not in secure_mosquitto:
        pytest.skip("this mosquitto was built without websocket support")
    ca = secure_mosquitto["ca"] if scheme != "ws" else None
    target = BrokerTarget(scheme=scheme, host="localhost", port=secure_mosquitto[scheme],
                          ca_file=ca, path="/mqtt")
    got = by_worker(_healthy(target))
    assert got == {"worker-1": ids(1, 3), "worker-2": ids(2, 4)}


@pytest.mark.mosquitto
def test_tls_without_the_ca_is_a_verification_failure(secure_mosquitto: dict[str, Any]) -> None:
    target = BrokerTarget(scheme="mqtts", host="localhost", port=secure_mosquitto["mqtts"])
    message, elapsed = unreachable(target)
    assert "TLS certificate verification failed" in message
    assert elapsed < 1.5
    insecure = BrokerTarget(scheme="mqtts", host="localhost", port=secure_mosquitto["mqtts"],
                            insecure=True)
    assert len(_healthy(insecure).deliveries) == 4


def test_settling_waits_for_what_the_broker_still_owes(emulator: Emulator, topic: str) -> None:
    """A quiet moment is not the end while the broker says it still owes its clients
    messages (a long delivery stream can pause): settle asks the backlog, and only once it
    is 0 does the run settle; a backlog that never empties is a timeout, not a settled run."""
    calls: list[int] = []

    def owing(n: int) -> Callable[[], int | None]:
        def backlog() -> int | None:
            calls.append(1)
            return 3 if len(calls) <= n else 0
        return backlog

    with Fleet(emu_target(emulator), backlog=owing(5)) as fleet:
        fleet.start(workers(2, f"$share/g/{topic}/+/do"))
        fleet.publish(tasks(4, topic, 1))
        assert fleet.settle(expected=4, quiet_s=QUIET, timeout_s=10)
    assert len(calls) == 6  # asked until it said 0, and only once the run was quiet
    calls.clear()
    with Fleet(emu_target(emulator), backlog=owing(10**9)) as fleet:
        fleet.start(workers(1, f"$share/g/{topic}/+/do"))
        fleet.publish(tasks(1, topic, 1))
        assert not fleet.settle(expected=1, quiet_s=QUIET, timeout_s=1.0)
