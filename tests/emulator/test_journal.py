"""The send journal (``emulator/journal.py``) and the read-only client view.

The sans-IO broker is driven with packet objects and a fake clock (as in test_broker_core.py);
one test runs a real paho client against ``Emulator(journal=True)`` over TCP.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aetherdiag.emulator import ClientView, Emulator, Journal, SentMessage, SubscriptionView
from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.broker import Broker, Out
from aetherdiag.harness.clients import release

POOL = "$share/pool/jobs/+/run"


class Net:
    """A fake transport around one Broker; time only moves when a test says so."""

    def __init__(self, **kwargs: Any) -> None:
        self.broker = Broker(**kwargs)
        self.now = 1000.0
        self._ids = itertools.count(1)

    def send(self, conn_id: int, packet: pk.Packet) -> list[Out]:
        return self.broker.handle(conn_id, packet, self.now)

    def client(self, client_id: str, *filters: str, qos: int = 1,
               peer: tuple[str, int] | None = None) -> int:
        conn_id = next(self._ids)
        self.broker.open(conn_id, self.now, peer)
        out = self.send(conn_id, pk.Connect(protocol_level=pk.MQTT_5, client_id=client_id))
        assert isinstance(out[0][1], pk.ConnAck) and out[0][1].reason_code == 0, out
        if filters:
            reqs = tuple(pk.SubscriptionRequest(topic_filter=f, qos=qos) for f in filters)
            self.send(conn_id, pk.Subscribe(packet_id=1, subscriptions=reqs))
        return conn_id

    def publish(self, conn_id: int, topic: str, payload: bytes, qos: int = 0) -> list[Out]:
        pid = next(self._ids) % 65535 + 1 if qos else None
        return self.send(conn_id, pk.Publish(topic=topic, payload=payload, qos=qos,
                                             packet_id=pid))


def publishes(out: list[Out], conn_id: int) -> list[pk.Publish]:
    return [p for cid, p in out if cid == conn_id and isinstance(p, pk.Publish)]


def test_sends_are_recorded_with_client_connection_topic_and_time() -> None:
    net = Net(journal=True)
    w1 = net.client("w1", POOL)
    w2 = net.client("w2", POOL)
    pub = net.client("pub")
    for i in range(4):
        net.now += 1
        net.publish(pub, f"jobs/{i}/run", f"task-{i}".encode(), qos=1)
    sent = net.broker.sent()
    assert [(s.client_id, s.conn_id, s.topic, s.payload) for s in sent] == [
        ("w1", w1, "jobs/0/run", b"task-0"), ("w2", w2, "jobs/1/run", b"task-1"),
        ("w1", w1, "jobs/2/run", b"task-2"), ("w2", w2, "jobs/3/run", b"task-3"),
    ]
    assert [s.at for s in sent] == [1001.0, 1002.0, 1003.0, 1004.0]
    assert all(isinstance(s, SentMessage) and s.qos == 1 and not s.dup for s in sent)
    assert all(s.packet_id is not None and s.acked is False for s in sent)
    with pytest.raises(AttributeError):
        sent[0].acked = True  # type: ignore[misc]  # frozen


def test_qos1_puback_marks_the_send_acked() -> None:
    net = Net(journal=True)
    w = net.client("w", POOL)
    pub = net.client("pub")
    first = publishes(net.publish(pub, "jobs/1/run", b"a", qos=1), w)[0]
    net.publish(pub, "jobs/2/run", b"b", qos=1)
    net.send(w, pk.PubAck(packet_id=first.packet_id or 0))
    net.send(w, pk.PubAck(packet_id=first.packet_id or 0))  # a repeat changes nothing
    assert [(s.payload, s.acked) for s in net.broker.sent()] == [(b"a", True), (b"b", False)]


def test_a_reader_keeps_its_place_in_sends_acks_and_publishes() -> None:
    """``sent(start)``, ``acks(start)`` and ``published(start)`` return only what came after
    what a reader already read, so polling a long run costs what is new, not the whole run."""
    net = Net(journal=True)
    w = net.client("w", POOL)
    pub = net.client("pub")
    pids = [publishes(net.publish(pub, f"jobs/{i}/run", b"x", qos=1), w)[0].packet_id or 0
            for i in range(3)]
    assert [s.topic for s in net.broker.sent(2)] == ["jobs/2/run"]
    assert net.broker.sent(2)[0].acked is False
    net.send(w, pk.PubAck(packet_id=pids[2]))
    net.send(w, pk.PubAck(packet_id=pids[0]))
    assert net.broker.acks() == (2, 0)  # in the order the acks came
    assert net.broker.acks(1) == (0,)
    assert net.broker.sent(2)[0].acked is True
    assert [p.topic for p in net.broker.published(1)] == ["jobs/1/run", "jobs/2/run"]
    assert net.broker.sent(3) == () and net.broker.acks(2) == ()


def test_qos2_is_acked_by_pubcomp_not_pubrec() -> None:
    net = Net(journal=True)
    w = net.client("w", POOL, qos=2)
    pub = net.client("pub")
    pid = publishes(net.publish(pub, "jobs/1/run", b"a", qos=2), w)[0].packet_id or 0
    net.send(w, pk.PubRec(packet_id=pid))
    assert net.broker.sent()[0].acked is False
    net.send(w, pk.PubComp(packet_id=pid))
    assert net.broker.sent()[0].acked is True


def test_qos0_sends_have_acked_none() -> None:
    net = Net(journal=True)
    net.client("w", POOL, qos=0)
    pub = net.client("pub")
    net.publish(pub, "jobs/1/run", b"a", qos=1)  # downgraded to the subscription's QoS 0
    (s,) = net.broker.sent()
    assert (s.qos, s.packet_id, s.acked) == (0, None, None)


def test_redeliver_fault_dup_copies_are_recorded_and_the_ack_marks_the_latest() -> None:
    net = Net(journal=True, faults=["redeliver"])
    w = net.client("w", POOL)
    pub = net.client("pub")
    pid = publishes(net.publish(pub, "jobs/1/run", b"a", qos=1), w)[0].packet_id or 0
    net.send(w, pk.PubAck(packet_id=pid))
    assert [(s.dup, s.packet_id, s.acked) for s in net.broker.sent()] == [
        (False, pid, False), (True, pid, True),
    ]


def test_resend_on_resume_is_recorded_on_the_new_connection() -> None:
    net = Net(journal=True)

    def connect(clean: bool) -> int:
        conn_id = next(net._ids)
        net.broker.open(conn_id, net.now)
        net.send(conn_id, pk.Connect(protocol_level=pk.MQTT_5, client_id="w", clean_start=clean,
                                     properties={pk.PROP_SESSION_EXPIRY: 60}))
        return conn_id

    w = connect(True)
    net.send(w, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="jobs/+/run", qos=1),)))
    pub = net.client("pub")
    pid = publishes(net.publish(pub, "jobs/1/run", b"a", qos=1), w)[0].packet_id or 0
    net.broker.lost(w, net.now)
    net.now += 5
    again = connect(False)
    net.send(again, pk.PubAck(packet_id=pid))
    assert [(s.conn_id, s.dup, s.at, s.acked) for s in net.broker.sent()] == [
        (w, False, 1000.0, False), (again, True, 1005.0, True),
    ]


def test_disabled_journal_records_nothing() -> None:
    net = Net()
    w = net.client("w", POOL)
    pub = net.client("pub")
    assert publishes(net.publish(pub, "jobs/1/run", b"a", qos=1), w)
    assert net.broker.journal is None
    with pytest.raises(RuntimeError, match="journal=True"):
        net.broker.sent()


def test_the_journal_is_bounded_and_counts_what_it_could_not_keep() -> None:
    journal = Journal(max_entries=3)
    net = Net(journal=journal)
    w = net.client("w", POOL)
    pub = net.client("pub")
    pids = [publishes(net.publish(pub, f"jobs/{i}/run", b"x", qos=1), w)[0].packet_id
            for i in range(5)]
    assert len(net.broker.sent()) == 3 and journal.dropped == 2
    for pid in pids:
        net.send(w, pk.PubAck(packet_id=pid or 0))
    assert [s.acked for s in net.broker.sent()] == [True, True, True]
    assert net.broker.stats.deliveries == 5  # the broker itself dropped nothing


def test_clients_lists_every_session_with_peer_and_subscriptions() -> None:
    net = Net()
    net.client("w", POOL, "plain/#", qos=1, peer=("127.0.0.1", 50001))
    idle = net.client("idle")
    net.broker.lost(idle, net.now)  # a clean-start v5 session with no expiry ends here
    views = {v.client_id: v for v in net.broker.clients()}
    assert views == {"w": ClientView(
        client_id="w", connected=True, peer=("127.0.0.1", 50001),
        subscriptions=(SubscriptionView("jobs/+/run", "pool", 1),
                       SubscriptionView("plain/#", None, 1)),
        conn_id=views["w"].conn_id,
    )}
    assert views["w"].conn_id is not None


def test_clients_shows_a_disconnected_persistent_session_without_peer() -> None:
    net = Net()
    conn_id = next(net._ids)
    net.broker.open(conn_id, net.now, ("10.0.0.2", 40000))
    net.send(conn_id, pk.Connect(protocol_level=pk.MQTT_5, client_id="p",
                                 properties={pk.PROP_SESSION_EXPIRY: 60}))
    net.broker.lost(conn_id, net.now)
    (view,) = net.broker.clients()
    assert (view.client_id, view.connected, view.peer) == ("p", False, None)


def test_emulator_over_tcp_reports_the_peer_and_the_shared_subscription() -> None:
    client_id = f"journal-{uuid.uuid4().hex[:8]}"
    got = threading.Event()
    subscribed = threading.Event()
    with Emulator(journal=True) as em:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = lambda *a: got.set()
        c.connect(em.host, em.port)
        c.loop_start()
        try:
            deadline = time.monotonic() + 5
            while not c.is_connected() and time.monotonic() < deadline:
                time.sleep(0.01)
            c.subscribe("$share/grp/jt/+", qos=1)
            assert subscribed.wait(5)
            sock = c.socket()
            assert isinstance(sock, socket.socket)
            local = sock.getsockname()[:2]
            c.publish("jt/1", b"hello", qos=1)
            assert got.wait(5)
            deadline = time.monotonic() + 5
            while not em.sent()[0].acked and time.monotonic() < deadline:
                time.sleep(0.01)
            (view,) = [v for v in em.clients() if v.client_id == client_id]
            sent = em.sent()
        finally:
            release(c)
            c.disconnect()
    assert view.connected and view.peer == (local[0], local[1])
    assert view.subscriptions == (SubscriptionView("jt/+", "grp", 1),)
    assert [(s.client_id, s.topic, s.payload, s.acked) for s in sent] == [
        (client_id, "jt/1", b"hello", True),
    ]
    assert em.sent_dropped() == 0


def test_a_takeover_is_journalled_with_both_connections_and_peers() -> None:
    """Two connections with one client id: each CONNECT takes the live session over, and the
    journal names the connection closed and the one that took its place (``--exec`` tells
    processes sharing a client id apart by these)."""
    net = Net(journal=True)

    def connect(port: int) -> int:
        conn_id = next(net._ids)
        net.broker.open(conn_id, net.now, ("127.0.0.1", port))
        out = net.send(conn_id, pk.Connect(protocol_level=pk.MQTT_5, client_id="same"))
        assert any(c == conn_id and isinstance(p, pk.ConnAck) for c, p in out), out
        return conn_id

    first, second, third = connect(50001), connect(50002), connect(50001)
    got = net.broker.takeovers()
    assert [(t.client_id, t.old_conn, t.new_conn) for t in got] == [
        ("same", first, second), ("same", second, third)]
    assert (got[0].old_peer, got[0].new_peer) == (("127.0.0.1", 50001), ("127.0.0.1", 50002))
    assert net.broker.takeovers(1) == got[1:]
    net.client("other")
    assert len(net.broker.takeovers()) == 2  # a new client id takes nothing over
