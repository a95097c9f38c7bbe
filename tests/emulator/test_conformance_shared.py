"""Conformance: shared subscriptions (MQTT 5.0 section 4.8.2) for 3.1.1 and 5.0 clients.

Each test runs against the emulator and a private Mosquitto. Where Mosquitto 2.0.11 departs
from the spec (or from the emulator's documented choice) the test says so and why.
"""

from __future__ import annotations

import time

import pytest
import support.mqttclient as mc


def _session(version: int) -> dict[str, object]:
    """Options for a session that outlives its connection, in either protocol version."""
    return {"clean": False, "session_expiry": 300 if version == mc.V5 else None}


def test_each_message_goes_to_one_member(connect, version, topic):
    members = [connect(f"w{i}") for i in range(3)]
    for m in members:
        assert m.subscribe(f"$share/g/{topic}/+/task", qos=1) == [1]
    pub = connect("pub")
    for i in range(30):
        pub.publish(f"{topic}/{i}/task", f"t{i}", qos=1)
    deadline = time.monotonic() + 5
    while sum(len(m.messages) for m in members) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    got = [m.settle(0.1) for m in members]
    counts = mc.by_payload(msg for batch in got for msg in batch)
    assert counts == {f"t{i}": 1 for i in range(30)}, "every task exactly once"
    assert [len(batch) for batch in got] == [10, 10, 10], "round robin spreads evenly"
    # messages arrive under the topic they were published to, never the $share filter
    assert all(msg.topic.startswith(f"{topic}/") for batch in got for msg in batch)


def test_independent_groups_each_get_a_copy(connect, version, topic):
    groups = {g: [connect(f"{g}{i}") for i in range(2)] for g in ("a", "b")}
    for g, members in groups.items():
        for m in members:
            m.subscribe(f"$share/{g}/{topic}/t", qos=1)
    pub = connect("pub")
    for i in range(10):
        pub.publish(f"{topic}/t", str(i), qos=1)
    for g, members in groups.items():
        deadline = time.monotonic() + 5
        while sum(len(m.messages) for m in members) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        counts = mc.by_payload(msg for m in members for msg in m.settle(0.1))
        assert counts == {str(i): 1 for i in range(10)}, f"group {g}"


def test_plain_and_shared_on_one_client_give_two_copies(connect, broker, version, topic):
    """One copy for the plain subscription and one for the group (MQTT-NOTES: legal).

    Mosquitto 2.0.11 sends a 3.1.1 client only one copy: it suppresses duplicates of a
    message already queued for a non-v5 client (observed; both answers are legal, the
    emulator shows the overlap the same way for both versions).
    """
    c = connect("both")
    assert c.subscribe((f"{topic}/t", 1), (f"$share/g/{topic}/t", 1)) == [1, 1]
    pub = connect("pub")
    for i in range(3):
        pub.publish(f"{topic}/t", str(i), qos=1)
    copies = 1 if broker.kind == "mosquitto" and version == mc.V311 else 2
    c.wait_for(3 * copies)
    assert mc.by_payload(c.settle(0.2)) == {"0": copies, "1": copies, "2": copies}


def test_granted_qos_is_respected_per_member(connect, version, topic):
    low, high = connect("low"), connect("high")
    assert low.subscribe(f"$share/g/{topic}/t", qos=0) == [0]
    assert high.subscribe(f"$share/g/{topic}/t", qos=2) == [2]
    pub = connect("pub")
    for i in range(6):
        pub.publish(f"{topic}/t", str(i), qos=2)
    deadline = time.monotonic() + 5
    while len(low.messages) + len(high.messages) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    lows, highs = low.settle(0.1), high.settle(0.1)
    assert mc.by_payload(lows + highs) == {str(i): 1 for i in range(6)}
    assert lows and highs
    assert {m.qos for m in lows} == {0}
    assert {m.qos for m in highs} == {2}


def test_subscribing_twice_is_one_membership(connect, version, topic):
    a, b = connect("a"), connect("b")
    a.subscribe(f"$share/g/{topic}/t", qos=1)
    b.subscribe(f"$share/g/{topic}/t", qos=1)
    a.subscribe(f"$share/g/{topic}/t", qos=1)  # again: still one member, one turn
    pub = connect("pub")
    for i in range(4):
        pub.publish(f"{topic}/t", str(i), qos=1)
    a.wait_for(2)
    b.wait_for(2)
    assert (len(a.settle(0.1)), len(b.settle(0.1))) == (2, 2)

    a.unsubscribe(f"$share/g/{topic}/t")  # one UNSUBSCRIBE leaves the group
    for i in range(4, 8):
        pub.publish(f"{topic}/t", str(i), qos=1)
    b.wait_for(6)
    assert len(b.settle(0.1)) == 6
    assert len(a.messages) == 2


def test_share_filter_wildcards_and_empty_levels(connect, version, uid):
    """``$share/g/{uid}/#`` is a valid shared filter; a leading-wildcard share filter does not
    match ``$`` topics; ``$share/g//x`` covers the topic ``/x`` (empty first level)."""
    c = connect("wild")
    codes = c.subscribe((f"$share/g/{uid}/#", 1), (f"$share/g/+/{uid}", 1),
                        (f"$share/g//{uid}e", 1))
    assert codes == [1, 1, 1]
    pub = connect("pub")
    for t in (f"{uid}/a/b", f"$ad/{uid}", f"/{uid}e", f"a/{uid}", f"e/{uid}e"):
        pub.publish(t, t, qos=1)
    c.wait_for(3)
    got = sorted(m.topic for m in c.settle(0.2))
    assert got == sorted([f"{uid}/a/b", f"/{uid}e", f"a/{uid}"])


def test_retained_not_sent_on_shared_subscribe(connect, version, topic, mosquitto_differs):
    mosquitto_differs("2.0.11 sends retained messages to a new shared subscription; MQTT 5.0 "
                      "4.8.2 says it must not (the emulator's share-retained fault does this)")
    pub = connect("pub")
    pub.publish(f"{topic}/r", b"state", qos=1, retain=True)
    try:
        member = connect("member")
        member.subscribe(f"$share/g/{topic}/r", qos=1)
        plain = connect("plain")
        plain.subscribe(f"{topic}/r", qos=1)
        assert [m.text for m in plain.wait_for(1)] == ["state"], "the retained message exists"
        assert member.settle(0.2) == []
    finally:
        pub.publish(f"{topic}/r", b"", qos=1, retain=True)


def test_v5_no_local_on_shared_subscription_is_a_protocol_error(
    raw, version, topic, uid, mosquitto_differs
):
    if version != mc.V5:
        pytest.skip("No Local is an MQTT 5.0 subscription option")
    mosquitto_differs("2.0.11 grants No Local on a shared subscription (SUBACK 1) instead of "
                      "DISCONNECT 0x82 (MQTT 5.0 3.8.3.1)")
    r = raw()
    assert mc.connack_code(r.connect(f"nl-{uid}")) == 0
    r.send_subscribe(1, f"$share/g/{topic}/t", 0x04 | 1)  # No Local + QoS 1
    answer = r.read()
    assert answer is not None and answer.type == mc.DISCONNECT, answer
    assert mc.disconnect_code(answer) == 0x82
    assert b"\x1f" in answer.body[2:4], "a Reason String says what was wrong"
    assert r.wait_closed() == []


MALFORMED = ["$share//t", "$share/a+/t", "$share/a#/t", "$share/a"]
MOSQUITTO_ACCEPTS = {"$share//t", "$share/a"}


@pytest.mark.parametrize("share_filter", MALFORMED)
def test_malformed_share_name_is_rejected(raw, broker, version, uid, share_filter,
                                          mosquitto_differs):
    """SUBACK 0x8F (v5) / 0x80 (3.1.1); the connection keeps working on the emulator.

    Mosquitto rejects '+' and '#' in a share name by closing the connection (v5: DISCONNECT
    0x81 first), which the spec also allows.
    """
    if share_filter in MOSQUITTO_ACCEPTS:
        mosquitto_differs(f"2.0.11 grants {share_filter!r} (SUBACK 1): an empty share name or "
                          "a missing filter is malformed per MQTT 5.0 4.8.2")
    r = raw()
    assert mc.connack_code(r.connect(f"bad-{uid}")) == 0
    r.send_subscribe(1, share_filter, 1)
    answer = r.read()
    if broker.is_emulator:
        assert answer is not None and answer.type == mc.SUBACK
        assert mc.suback_codes(answer, version) == [0x8F if version == mc.V5 else 0x80]
        assert mc.suback_codes(r.subscribe(2, "$share/ok/t", 1), version) == [1]
    elif answer is not None and answer.type == mc.SUBACK:
        assert mc.suback_codes(answer, version)[0] >= 0x80
    else:
        assert answer is None or mc.disconnect_code(answer) >= 0x80


def test_publishing_to_a_share_topic_is_refused(connect, version, topic):
    member = connect("member")
    member.subscribe(f"$share/g/{topic}/t", qos=1)
    plain = connect("plain")
    plain.subscribe(f"{topic}/t", qos=1)
    pub = connect("pub")
    rc = pub.publish(f"$share/g/{topic}/t", b"wrong", qos=1)
    if version == mc.V5:
        assert rc == 0x87  # Not authorized, as Mosquitto answers
    pub.publish(f"{topic}/t", b"right", qos=1)
    member.wait_for(1)
    plain.wait_for(1)
    assert [m.text for m in member.settle(0.1) + plain.settle(0.1)] == ["right", "right"]
    assert pub.disconnected is None


def test_refused_puback_is_not_retried_on_another_member(raw, connect, version, topic, uid):
    """4.8.2: a PUBACK with a reason code >= 0x80 discards the message, no other member."""
    if version != mc.V5:
        pytest.skip("reason codes on PUBACK are MQTT 5.0")
    r = raw()
    assert mc.connack_code(r.connect(f"refuser-{uid}")) == 0
    r.subscribe(1, f"$share/g/{topic}/t", 1)
    pub = connect("pub")
    pub.publish(f"{topic}/t", b"m1", qos=1)
    msg = r.read_publish()
    other = connect("other")
    other.subscribe(f"$share/g/{topic}/t", qos=1)
    r.ack(mc.PUBACK, msg.packet_id, reason=0x83)  # Implementation specific error
    time.sleep(0.1)
    r.close()
    assert other.settle(0.2) == []


@pytest.mark.parametrize("stage", ["publish", "pubrel"])
def test_qos2_in_flight_is_completed_to_the_same_member(raw, connect, version, topic, uid,
                                                         stage):
    """4.8.2: an interrupted QoS 2 delivery is finished with the same client, never moved.

    ``stage`` is how far the flow got before the member vanished: PUBLISH received but not
    acknowledged, or PUBREC sent and PUBREL received but PUBCOMP not sent.
    """
    cid = f"q2-{uid}"
    filt = f"$share/g/{topic}/t"
    a = raw()
    assert mc.connack_code(a.connect(cid, clean=False, session_expiry=300)) == 0
    assert mc.suback_codes(a.subscribe(1, filt, 2), version) == [2]
    pub = connect("pub")
    pub.publish(f"{topic}/t", b"precious", qos=2)
    first = a.read_publish()
    assert (first.payload, first.qos) == (b"precious", 2)
    if stage == "pubrel":
        a.ack(mc.PUBREC, first.packet_id)
        assert a.expect(mc.PUBREL).body[:2] == first.packet_id.to_bytes(2, "big")
    other = connect("other")
    other.subscribe(filt, qos=2)
    a.close()  # vanish mid-flow

    assert other.settle(0.3) == [], "a QoS 2 message is never moved to another member"
    back = raw()
    ack = back.connect(cid, clean=False, session_expiry=300)
    assert mc.connack_code(ack) == 0 and ack.body[0] & 1, "session present"
    if stage == "publish":
        again = back.read_publish()
        assert (again.payload, again.qos, again.dup) == (b"precious", 2, True)
        assert again.packet_id == first.packet_id
        back.ack(mc.PUBREC, again.packet_id)
        back.expect(mc.PUBREL)
    else:
        assert back.expect(mc.PUBREL).body[:2] == first.packet_id.to_bytes(2, "big")
    back.ack(mc.PUBCOMP, first.packet_id)
    back.send(b"\xe0\x00")  # DISCONNECT
    assert other.settle(0.2) == []


def test_qos1_in_flight_on_a_vanished_clean_member(raw, broker, connect, version, topic, uid):
    """A member whose session ends with a QoS 1 message unacknowledged.

    Emulator (MQTT 5.0 4.8.2 SHOULD, EMQX-like): the message goes to another member.
    Mosquitto (deliberate difference, reproduced by the emulator's lose-on-disconnect
    fault): the message is discarded with the session and nobody gets it.
    """
    filt = f"$share/g/{topic}/t"
    a = raw()
    assert mc.connack_code(a.connect(f"gone-{uid}", clean=True)) == 0
    a.subscribe(1, filt, 1)
    connect("pub").publish(f"{topic}/t", b"task", qos=1)
    assert a.read_publish().payload == b"task"
    other = connect("other")
    other.subscribe(filt, qos=1)
    a.close()  # no PUBACK, session ends (clean session / expiry 0)
    if broker.is_emulator:
        (msg,) = other.wait_for(1)
        assert (msg.text, msg.qos) == ("task", 1)
        assert broker.emulator is not None and broker.emulator.stats().redispatched == 1
    else:
        assert other.settle(0.3) == [], "Mosquitto drops it with the member's session"


def test_qos1_in_flight_on_a_vanished_persistent_member(raw, broker, connect, version, topic,
                                                         uid):
    """The member's session survives its connection.

    Emulator: a QoS 1 message may be handed on at once (4.8.2), so another connected member
    gets it and the returning member does not. Mosquitto keeps it for the member and re-sends
    it with DUP when the member comes back (deliberate difference; the emulator's
    lose-on-disconnect fault keeps it too).
    """
    cid = f"away-{uid}"
    filt = f"$share/g/{topic}/t"
    a = raw()
    assert mc.connack_code(a.connect(cid, clean=False, session_expiry=300)) == 0
    a.subscribe(1, filt, 1)
    connect("pub").publish(f"{topic}/t", b"task", qos=1)
    assert a.read_publish().payload == b"task"
    other = connect("other")
    other.subscribe(filt, qos=1)
    a.close()
    if broker.is_emulator:
        assert [m.text for m in other.wait_for(1)] == ["task"]
    else:
        assert other.settle(0.3) == []
    back = raw()
    assert mc.connack_code(back.connect(cid, clean=False, session_expiry=300)) == 0
    if broker.is_emulator:
        back.send(b"\xc0\x00")  # PINGREQ: the answer proves nothing was queued before it
        assert back.read().type == 13
    else:
        again = back.read_publish()
        assert (again.payload, again.dup) == (b"task", True)
        back.ack(mc.PUBACK, again.packet_id)
    assert len(other.messages) == (1 if broker.is_emulator else 0)


def test_sole_member_gets_its_qos1_back_with_dup_and_the_same_packet_id(raw, connect, version,
                                                                        topic, uid):
    """With nobody else in the group, the unacknowledged message stays in the member's
    session and is re-sent on resume with DUP and its original packet id (4.4)."""
    cid = f"sole-{uid}"
    a = raw()
    assert mc.connack_code(a.connect(cid, clean=False, session_expiry=300)) == 0
    a.subscribe(1, f"$share/g/{topic}/t", 1)
    pub = connect("pub")
    pub.publish(f"{topic}/t", b"first", qos=1)
    first = a.read_publish()
    a.close()
    time.sleep(0.2)  # let the broker notice before the next message
    pub.publish(f"{topic}/t", b"second", qos=1)  # queued while the member is away
    back = raw()
    assert mc.connack_code(back.connect(cid, clean=False, session_expiry=300)) == 0
    again = back.read_publish()
    assert (again.payload, again.dup, again.packet_id) == (b"first", True, first.packet_id)
    nxt = back.read_publish()
    assert nxt.payload == b"second"
    back.ack(mc.PUBACK, again.packet_id)
    back.ack(mc.PUBACK, nxt.packet_id)


def test_qos2_in_flight_on_a_vanished_clean_member_is_not_moved(raw, connect, version, topic,
                                                                 uid):
    """4.8.2: if the member's session ends, its QoS 2 message must not go to another one."""
    filt = f"$share/g/{topic}/t"
    a = raw()
    assert mc.connack_code(a.connect(f"q2gone-{uid}", clean=True)) == 0
    a.subscribe(1, filt, 2)
    connect("pub").publish(f"{topic}/t", b"precious", qos=2)
    assert a.read_publish().qos == 2
    other = connect("other")
    other.subscribe(filt, qos=2)
    a.close()
    assert other.settle(0.3) == []


def test_offline_persistent_member_and_the_turn(connect, broker, version, topic):
    """Who gets messages while a persistent member is offline.

    Emulator: connected members first; an offline member only when nobody is connected.
    Mosquitto: strict round robin keeps the offline member's turn and queues for it
    (deliberate difference: the emulator balances work over the workers that can take it).
    """
    filt = f"$share/g/{topic}/t"
    away = connect("away", **_session(version))
    away.subscribe(filt, qos=1)
    here = connect("here")
    here.subscribe(filt, qos=1)
    away.disconnect()
    pub = connect("pub")
    for i in range(4):
        pub.publish(f"{topic}/t", str(i), qos=1)
    here.wait_for(2)
    got_here = here.settle(0.2)
    back = connect("away", **_session(version))
    got_back = back.settle(0.25)
    assert mc.by_payload(got_here + got_back) == {str(i): 1 for i in range(4)}
    if broker.is_emulator:
        assert (len(got_here), len(got_back)) == (4, 0)
    else:
        assert (len(got_here), len(got_back)) == (2, 2)


def test_queue_prefix_is_a_shared_subscription_on_the_emulator(connect, broker, version,
                                                                topic):
    """``$queue/t`` means ``$share/$queue/t`` on the emulator (EMQX style, on by default).

    Mosquitto has no ``$queue/``: the filter is taken literally and nothing published to
    ``t`` reaches it (deliberate difference: the emulator models the brokers people use).
    """
    members = [connect(f"q{i}") for i in range(2)]
    for m in members:
        assert m.subscribe(f"$queue/{topic}/t", qos=1) == [1]
    pub = connect("pub")
    for i in range(4):
        pub.publish(f"{topic}/t", str(i), qos=1)
    if broker.is_emulator:
        for m in members:
            m.wait_for(2)
        assert [len(m.settle(0.1)) for m in members] == [2, 2]
    else:
        assert [m.settle(0.2) for m in members] == [[], []]


def test_shared_subscription_from_both_protocol_versions(broker, clients, topic, uid):
    """3.1.1 and 5.0 members in one group share the work."""
    members = []
    for v in (mc.V311, mc.V5):
        c = mc.PahoClient(broker.host, broker.port, version=v, client_id=f"m{v}-{uid}")
        clients.append(c)
        c.connect()
        c.subscribe(f"$share/mix/{topic}/t", qos=1)
        members.append(c)
    pub = mc.PahoClient(broker.host, broker.port, version=mc.V5, client_id=f"pub-{uid}")
    clients.append(pub)
    pub.connect()
    for i in range(6):
        pub.publish(f"{topic}/t", str(i), qos=1)
    for m in members:
        m.wait_for(3)
    assert mc.by_payload(m for c in members for m in c.settle(0.1)) == {str(i): 1 for i in range(6)}
