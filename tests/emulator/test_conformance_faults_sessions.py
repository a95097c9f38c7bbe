"""Conformance: the session faults of issue 14, each next to the healthy behaviour.

``offline-member-keeps-share`` (an offline persistent member keeps its turn: its share waits
for it), ``expired-session-drops`` (an expired session's queued tasks are dropped instead of
handed on) and ``redispatch-misses-wildcards`` (redispatch after a member loss looks the group
up by the topic, so wildcard groups lose the tasks). Emulator only, real clients.
"""

from __future__ import annotations

import time

import pytest
from support.mqttclient import PUBACK, RawClient, connack_code


def _persistent(em, version, cid: str, expiry: int = 300) -> RawClient:
    c = RawClient(em.host, em.port, version=version)
    assert connack_code(c.connect(cid, clean=False, session_expiry=expiry)) == 0
    return c


@pytest.mark.parametrize("faults", [[], ["offline-member-keeps-share"]])
def test_offline_member_keeps_its_share(emu, version, uid, faults):
    em, connect = emu(faults=faults)
    away = _persistent(em, version, f"away-{uid}")
    away.subscribe(1, "$share/g/tasks/+", 1)
    here = connect("here")
    here.subscribe("$share/g/tasks/+", qos=1)
    away.disconnect()
    away.close()
    pub = connect("pub")
    for i in range(4):
        pub.publish(f"tasks/{i}", str(i), qos=1)
    got = here.settle(0.3)
    back = _persistent(em, version, f"away-{uid}")
    try:
        parked = []
        if faults:
            for _ in range(2):
                p = back.read_publish()
                parked.append(p.payload)
                back.ack(PUBACK, p.packet_id)
        assert len(got) == (2 if faults else 4)
        assert len(parked) == (2 if faults else 0)
        assert sorted([m.text for m in got] + [p.decode() for p in parked]) == ["0", "1", "2",
                                                                                 "3"]
    finally:
        back.close()


@pytest.mark.parametrize(("faults", "moved"), [([], 2), (["expired-session-drops"], 0)])
def test_expired_session_hands_on_or_drops_its_queue(emu, version, uid, faults, moved):
    if version == 4:
        pytest.skip("a 3.1.1 session never expires")
    em, connect = emu(faults=faults)
    gone = _persistent(em, version, f"gone-{uid}", expiry=1)
    gone.subscribe(1, "$share/g/tasks", 1)
    gone.disconnect()
    gone.close()
    pub = connect("pub")
    for i in range(2):
        pub.publish("tasks", str(i), qos=1)  # nobody connected: queued in gone's session
    other = connect("other")
    other.subscribe("$share/g/tasks", qos=1)
    time.sleep(1.6)  # the session expires after 1 s (the server ticks every 0.25 s)
    assert len(other.settle(0.3)) == moved
    stats = em.stats()
    assert stats.dropped["expired_session_dropped"] == 2 - moved
    assert stats.redispatched == moved


@pytest.mark.parametrize(("faults", "topic_filter", "moved"), [
    ([], "$share/g/tasks/+", 1),
    (["redispatch-misses-wildcards"], "$share/g/tasks/+", 0),
    (["redispatch-misses-wildcards"], "$share/g/tasks/1", 1),  # exact filters are not hit
])
def test_redispatch_by_topic_misses_wildcard_groups(emu, version, uid, faults, topic_filter,
                                                    moved):
    em, connect = emu(faults=faults)
    a = RawClient(em.host, em.port, version=version)
    try:
        assert connack_code(a.connect(f"crash-{uid}", clean=True)) == 0
        a.subscribe(1, topic_filter, 1)
        connect("pub").publish("tasks/1", b"task", qos=1)
        assert a.read_publish().payload == b"task"
        other = connect("other")
        other.subscribe(topic_filter, qos=1)
    finally:
        a.close()
    assert len(other.settle(0.4)) == moved
    assert em.stats().dropped["no_member_for_redispatch"] == 1 - moved
