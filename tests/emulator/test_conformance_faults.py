"""Conformance: every fault mode reproduces the broken behaviour it is named after.

Emulator only, real paho-mqtt clients. Each test also shows the healthy behaviour it departs
from, so a fault that silently did nothing would fail.
"""

from __future__ import annotations

import time

import pytest
from support.mqttclient import (
    PUBACK,
    V5,
    V311,
    PahoClient,
    RawClient,
    by_payload,
    connack_code,
)

from aetherdiag.emulator import FAULTS


def _wait_total(members, n: int) -> None:
    deadline = time.monotonic() + 5
    while sum(len(m.messages) for m in members) < n and time.monotonic() < deadline:
        time.sleep(0.02)


def test_share_fanout_sends_every_message_to_every_member(emu, version):
    em, connect = emu(faults=["share-fanout"])
    members = [connect(f"w{i}") for i in range(3)]
    for m in members:
        m.subscribe("$share/g/tasks/+", qos=1)
    pub = connect("pub")
    for i in range(5):
        pub.publish(f"tasks/{i}", f"problem-task-{i}", qos=1)
    for m in members:
        m.wait_for(5)
        assert by_payload(m.settle(0.1)) == {f"problem-task-{i}": 1 for i in range(5)}
    assert em.stats().deliveries == 15


def test_share_literal_takes_share_filters_literally(emu, version):
    _em, connect = emu(faults=["share-literal"])
    member = connect("member")
    assert member.subscribe("$share/g/tasks", qos=1) == [1]
    pub = connect("pub")
    pub.publish("tasks", b"real", qos=1)
    assert member.settle(0.2) == [], "nothing arrives on the real topic"
    pub.publish("$share/g/tasks", b"literal", qos=1)  # only a literal match gets through
    (msg,) = member.wait_for(1)
    assert (msg.topic, msg.text) == ("$share/g/tasks", "literal")


def test_share_unsupported_refuses_shared_subscriptions(emu, version):
    _em, connect = emu(faults=["share-unsupported"])
    c = connect("c")
    if version == V5:
        assert c.connack.properties.get("SharedSubscriptionAvailable") == 0
    codes = c.subscribe(("$share/g/tasks", 1), ("tasks", 1))
    assert codes == [0x9E if version == V5 else 0x80, 1]
    connect("pub").publish("tasks", b"x", qos=1)
    assert [m.text for m in c.wait_for(1)] == ["x"], "plain subscriptions still work"


def test_redeliver_sends_a_dup_copy_of_qos1(emu, version):
    """QoS 1 arrives twice, the copy flagged DUP; QoS 0 is never re-sent. (A QoS 2 copy
    would carry the same packet id, which paho rightly delivers once.)"""
    em, connect = emu(faults=["redeliver"])
    sub = connect("sub")
    sub.subscribe("$share/g/tasks", qos=2)
    pub = connect("pub")
    pub.publish("tasks", b"q0", qos=0)
    pub.publish("tasks", b"q1", qos=1)
    sub.wait_for(3)
    got = sub.settle(0.2)
    assert sorted((m.text, m.dup) for m in got) == [("q0", False), ("q1", False), ("q1", True)]
    assert em.stats().dup_resends == 1


def test_lose_on_disconnect_drops_the_in_flight_message(emu, version, uid):
    """Mosquitto-like: a vanished clean member's unacknowledged QoS 1 message is lost."""
    em, connect = emu(faults=["lose-on-disconnect"])
    a = RawClient(em.host, em.port, version=version)
    try:
        assert connack_code(a.connect(f"gone-{uid}", clean=True)) == 0
        a.subscribe(1, "$share/g/tasks", 1)
        connect("pub").publish("tasks", b"task", qos=1)
        assert a.read_publish().payload == b"task"
        other = connect("other")
        other.subscribe("$share/g/tasks", qos=1)
    finally:
        a.close()
    assert other.settle(0.3) == []
    stats = em.stats()
    assert stats.dropped["lost_on_disconnect"] == 1
    assert stats.redispatched == 0


def test_lose_on_disconnect_keeps_it_for_a_persistent_member(emu, version, uid):
    """Like Mosquitto: the persistent member gets it back (DUP) instead of another member."""
    em, connect = emu(faults=["lose-on-disconnect"])
    cid = f"away-{uid}"
    a = RawClient(em.host, em.port, version=version)
    assert connack_code(a.connect(cid, clean=False, session_expiry=300)) == 0
    a.subscribe(1, "$share/g/tasks", 1)
    connect("pub").publish("tasks", b"task", qos=1)
    assert a.read_publish().payload == b"task"
    other = connect("other")
    other.subscribe("$share/g/tasks", qos=1)
    a.close()
    assert other.settle(0.3) == []
    back = RawClient(em.host, em.port, version=version)
    try:
        assert connack_code(back.connect(cid, clean=False, session_expiry=300)) == 0
        again = back.read_publish()
        assert (again.payload, again.dup) == (b"task", True)
        back.ack(PUBACK, again.packet_id)
    finally:
        back.close()


def test_share_retained_sends_retained_to_new_shared_subscriptions(emu, version):
    _em, connect = emu(faults=["share-retained"])
    pub = connect("pub")
    pub.publish("state", b"kept", qos=1, retain=True)
    member = connect("member")
    member.subscribe("$share/g/state", qos=1)
    (msg,) = member.wait_for(1)
    assert (msg.text, msg.retain) == ("kept", True)


def test_healthy_emulator_sends_no_retained_to_shared_subscriptions(emu, version):
    _em, connect = emu()
    connect("pub").publish("state", b"kept", qos=1, retain=True)
    member = connect("member")
    member.subscribe("$share/g/state", qos=1)
    assert member.settle(0.2) == []


@pytest.mark.parametrize(("faults", "expected"), [
    ([], [2, 2, 2]),
    (["per-publisher-rr"], [6, 0, 0]),
])
def test_per_publisher_round_robin(emu, version, faults, expected):
    """Six publishers send one task each: a turn kept per publisher always starts at the
    first member, so one worker gets everything."""
    _em, connect = emu(faults=faults)
    members = [connect(f"w{i}") for i in range(3)]
    for m in members:
        m.subscribe("$share/g/tasks/+", qos=1)
    for i in range(6):
        connect(f"p{i}").publish(f"tasks/{i}", str(i), qos=1)
    _wait_total(members, 6)
    assert [len(m.settle(0.1)) for m in members] == expected


@pytest.mark.parametrize(("faults", "expected"), [
    ([], ["0", "1", "2", "3", "4"]),
    (["reorder"], ["0", "4", "3", "2", "1"]),
])
def test_reorder_sends_a_members_backlog_newest_first(emu, version, faults, expected):
    """A member that has not acknowledged yet: a healthy broker sends it the whole backlog in
    publish order at once; under the fault it gets one message in flight and, after each
    acknowledgement, the newest one waiting."""
    _em, connect = emu(strategy="sticky", faults=faults)
    member = connect("member", manual_ack=True)
    member.subscribe("$share/g/tasks", qos=1)
    pub = connect("pub")
    for i in range(5):
        pub.publish("tasks", str(i), qos=1)
    got = member.wait_for(1)
    if faults:
        assert member.settle(0.1) == got, "one message in flight"
        while len(got) < 5:
            member.ack(got[-1])
            got = member.wait_for(len(got) + 1)
    else:
        got = member.wait_for(5)
    assert [m.text for m in member.settle(0.1)] == expected
    assert not any(m.dup for m in got)


def test_reorder_leaves_qos0_in_order(emu, version):
    """QoS 0 has no in-flight window, so nothing queues and nothing is reordered."""
    _em, connect = emu(faults=["reorder"])
    member = connect("member")
    member.subscribe("$share/g/tasks", qos=0)
    pub = connect("pub")
    for i in range(5):
        pub.publish("tasks", str(i), qos=0)
    member.wait_for(5)
    assert [m.text for m in member.settle(0.1)] == ["0", "1", "2", "3", "4"]


def test_faults_combine(emu, version):
    """Faults are independent switches: fan-out plus redelivery gives both symptoms."""
    em, connect = emu(faults=["share-fanout", "redeliver"])
    members = [connect(f"w{i}") for i in range(2)]
    for m in members:
        m.subscribe("$share/g/t", qos=1)
    connect("pub").publish("t", b"x", qos=1)
    for m in members:
        m.wait_for(2)
        assert sorted(x.dup for x in m.settle(0.1)) == [False, True]
    assert em.stats().dup_resends == 2


def test_unknown_fault_is_refused(emulator_factory):
    with pytest.raises(ValueError, match="unknown fault"):
        emulator_factory(faults=["share-everything"])


def test_every_fault_has_a_test():
    tested = {"share-fanout", "share-literal", "share-unsupported", "redeliver",
              "lose-on-disconnect", "share-retained", "per-publisher-rr", "reorder",
              "cluster-node-local", "cluster-no-route",  # the cluster ones: test_cluster_*.py
              # these three: test_conformance_faults_sessions.py
              "offline-member-keeps-share", "expired-session-drops",
              "redispatch-misses-wildcards"}
    assert set(FAULTS) == tested, "a new fault mode needs a test in this file"


def test_v311_and_v5_members_see_the_same_fanout(emulator_factory, clients):
    """The fault is protocol-independent: a 3.1.1 and a 5.0 member both get everything."""
    em = emulator_factory(faults=["share-fanout"])
    members = []
    for v in (V311, V5):
        c = PahoClient(em.host, em.port, version=v, client_id=f"m{v}")
        clients.append(c)
        c.connect()
        c.subscribe("$share/g/t", qos=1)
        members.append(c)
    pub = PahoClient(em.host, em.port, version=V5, client_id="pub")
    clients.append(pub)
    pub.connect()
    for i in range(3):
        pub.publish("t", str(i), qos=1)
    for c in members:
        c.wait_for(3)
        assert by_payload(c.settle(0.1)) == {"0": 1, "1": 1, "2": 1}
