"""Conformance: PUBLISH flows, SUBSCRIBE / UNSUBSCRIBE, retained messages and queued sessions.

Each test runs against the emulator and a private Mosquitto, for MQTT 3.1.1 and 5.0.
"""

from __future__ import annotations

import support.mqttclient as mc


def test_publish_each_qos_end_to_end(connect, version, topic):
    sub = connect("sub")
    assert sub.subscribe(f"{topic}/q", qos=2) == [2]
    pub = connect("pub")
    for qos in (0, 1, 2):
        assert pub.publish(f"{topic}/q", f"m{qos}", qos=qos) == 0  # flow completed, Success
    got = sub.wait_for(3)
    assert sorted((m.text, m.qos, m.dup, m.retain) for m in sub.settle(0.1)) == [
        ("m0", 0, False, False), ("m1", 1, False, False), ("m2", 2, False, False),
    ], got


def test_delivered_qos_is_the_lower_of_published_and_granted(connect, version, topic):
    subs = {}
    for granted in (0, 1, 2):
        subs[granted] = connect(f"g{granted}")
        assert subs[granted].subscribe(f"{topic}/d", qos=granted) == [granted]
    pub = connect("pub")
    for qos in (0, 1, 2):
        pub.publish(f"{topic}/d", str(qos), qos=qos)
    for granted, sub in subs.items():
        got = {m.text: m.qos for m in sub.wait_for(3)}
        assert got == {str(q): min(q, granted) for q in (0, 1, 2)}, f"granted {granted}"


def test_suback_grants_qos_per_filter(connect, version, topic):
    c = connect("multi")
    codes = c.subscribe((f"{topic}/a", 0), (f"{topic}/b/+", 1), (f"{topic}/c/#", 2))
    assert codes == [0, 1, 2]


def test_resubscribe_replaces_the_granted_qos(connect, version, topic):
    c = connect("resub")
    c.subscribe(f"{topic}/r", qos=2)
    c.subscribe(f"{topic}/r", qos=0)
    connect("pub").publish(f"{topic}/r", b"x", qos=2)
    (msg,) = c.wait_for(1)
    assert msg.qos == 0
    assert len(c.settle(0.1)) == 1


def test_invalid_filter_is_refused(raw, broker, version, uid):
    """A '#' that is not last is invalid (4.7.1.2).

    The emulator answers SUBACK 0x80 / 0x8F and keeps serving the connection; Mosquitto
    closes it (v5: DISCONNECT 0x81 first). Both are answers the spec allows.
    """
    r = raw()
    assert mc.connack_code(r.connect(f"inv-{uid}")) == 0
    r.send_subscribe(1, "a/#/b", 1)
    answer = r.read()
    if broker.is_emulator:
        assert answer is not None and answer.type == mc.SUBACK
        assert mc.suback_codes(answer, version) == [0x8F if version == mc.V5 else 0x80]
        assert mc.suback_codes(r.subscribe(2, "a/b", 1), version) == [1], "still serving"
    else:
        assert answer is None or (answer.type == mc.DISCONNECT
                                  and mc.disconnect_code(answer) >= 0x80)


def test_wildcards_match_per_spec(connect, version, topic):
    c = connect("wild")
    c.subscribe((f"{topic}/+/x", 1), (f"{topic}/h/#", 1))
    pub = connect("pub")
    for t in ("a/x", "a/b/x", "h", "h/1/2", "hx", "b/x"):
        pub.publish(f"{topic}/{t}", t, qos=1)
    got = sorted(m.text for m in c.settle(0.2))
    assert got == ["a/x", "b/x", "h", "h/1/2"]


def test_dollar_topics_not_matched_by_leading_wildcards(connect, version, uid):
    c = connect("dollar")
    c.subscribe((f"+/{uid}", 1), (f"$ad/{uid}", 1))
    pub = connect("pub")
    pub.publish(f"$ad/{uid}", b"dollar", qos=1)
    pub.publish(f"ad/{uid}", b"plain", qos=1)
    got = sorted((m.topic, m.text) for m in c.wait_for(2))
    assert sorted((m.topic, m.text) for m in c.settle(0.1)) == [
        (f"$ad/{uid}", "dollar"), (f"ad/{uid}", "plain"),
    ], got


def test_overlapping_subscriptions(connect, broker, version, topic):
    """One client, three matching plain filters granted QoS 0, 1 and 2.

    The emulator sends one copy at the highest granted QoS (3.3.4, both versions).
    Mosquitto 2.0.11 does the same for 3.1.1 but sends a v5 client one copy per matching
    subscription, which 3.3.4 also allows ("MAY deliver further copies"): a deliberate
    difference, checked as observed.
    """
    c = connect("ov")
    c.subscribe((f"{topic}/+", 0), (f"{topic}/#", 1), (f"{topic}/x", 2))
    connect("pub").publish(f"{topic}/x", b"x", qos=2)
    c.wait_for(1)
    qos = sorted(m.qos for m in c.settle(0.2))
    if broker.kind == "mosquitto" and version == mc.V5:
        assert qos == [0, 1, 2]
    else:
        assert qos == [2]


def test_overlapping_subscriptions_deliver_the_highest_qos(connect, version, topic,
                                                           mosquitto_differs):
    """3.3.5 (3.1.1) / 3.3.4 (5.0): overlapping subscriptions are delivered respecting the
    highest QoS among them, whichever filter was subscribed first."""
    if version == mc.V311:
        mosquitto_differs("2.0.11 sends a 3.1.1 client one copy at the QoS of one matching "
                          "subscription (here 0 from '.../a', though '.../#' grants 1), not "
                          "the highest (MQTT 3.1.1 3.3.5)")
    c = connect("ov")
    c.subscribe((f"{topic}/#", 1))
    c.subscribe((f"{topic}/a", 0))
    connect("pub").publish(f"{topic}/a", b"x", qos=1)
    c.wait_for(1)
    assert max(m.qos for m in c.settle(0.2)) == 1


def test_unsubscribe_stops_delivery(connect, version, topic):
    c = connect("unsub")
    c.subscribe((f"{topic}/u", 1), (f"{topic}/keep", 1))
    codes = c.unsubscribe(f"{topic}/u")
    again = c.unsubscribe(f"{topic}/u")
    if version == mc.V5:
        assert codes == [0x00]
        assert again == [0x11]  # No subscription existed
    pub = connect("pub")
    pub.publish(f"{topic}/u", b"gone", qos=1)
    pub.publish(f"{topic}/keep", b"kept", qos=1)
    c.wait_for(1)
    assert [m.text for m in c.settle(0.1)] == ["kept"]


def test_retained_set_delivered_then_cleared(connect, version, topic):
    pub = connect("pub")
    live = connect("live")
    live.subscribe(f"{topic}/r", qos=1)
    pub.publish(f"{topic}/r", b"state", qos=1, retain=True)
    (first,) = live.wait_for(1)
    assert first.retain is False, "a live delivery is not flagged retained"

    late = connect("late")
    late.subscribe(f"{topic}/#", qos=2)
    (msg,) = late.wait_for(1)
    assert (msg.text, msg.retain, msg.qos) == ("state", True, 1)

    pub.publish(f"{topic}/r", b"", qos=1, retain=True)  # empty payload clears it
    later = connect("later")
    later.subscribe(f"{topic}/r", qos=1)
    pub.publish(f"{topic}/other", b"marker", qos=1)
    assert later.settle(0.2) == []


def test_persistent_session_queues_while_away(connect, version, topic):
    expiry = 300 if version == mc.V5 else None
    c = connect("away", clean=False, session_expiry=expiry)
    c.subscribe(f"{topic}/q", qos=2)
    c.disconnect()
    pub = connect("pub")
    pub.publish(f"{topic}/q", b"q0", qos=0)  # QoS 0 is not queued for an offline client
    for i in range(5):
        pub.publish(f"{topic}/q", f"m{i}", qos=1 + i % 2)
    back = connect("away", clean=False, session_expiry=expiry)
    assert back.connack.session_present is True
    back.wait_for(5)
    # sorted: paho hands a QoS 2 message over only at PUBREL, after later QoS 1 ones
    assert sorted((m.text, m.qos) for m in back.settle(0.2)) == [
        (f"m{i}", 1 + i % 2) for i in range(5)
    ]


def test_unacknowledged_qos1_is_resent_with_dup_on_resume(raw, connect, version, topic, uid):
    """4.4: on resume the server re-sends unacknowledged PUBLISH packets with DUP set."""
    r = raw()
    assert mc.connack_code(r.connect(f"slow-{uid}", clean=False, session_expiry=300)) == 0
    assert mc.suback_codes(r.subscribe(1, f"{topic}/s", 1), version) == [1]
    connect("pub").publish(f"{topic}/s", b"once", qos=1)
    first = r.read_publish()
    assert (first.payload, first.dup) == (b"once", False)
    r.close()  # gone without PUBACK

    r2 = raw()
    ack = r2.connect(f"slow-{uid}", clean=False, session_expiry=300)
    assert ack.body[0] & 1, "session present"
    again = r2.read_publish()
    assert (again.payload, again.qos, again.dup) == (b"once", 1, True)
    r2.ack(4, again.packet_id)


def test_qos2_inbound_is_exactly_once(raw, connect, version, topic, uid):
    """A QoS 2 PUBLISH re-sent (DUP) before PUBREL is delivered once (4.3.3)."""
    sub = connect("sub")
    sub.subscribe(f"{topic}/x", qos=2)
    r = raw()
    assert mc.connack_code(r.connect(f"p2-{uid}")) == 0
    r.publish(f"{topic}/x", b"exactly", qos=2, packet_id=7)
    assert r.expect(mc.PUBREC).body[:2] == b"\x00\x07"
    r.publish(f"{topic}/x", b"exactly", qos=2, packet_id=7, dup=True)  # re-sent before PUBREL
    assert r.expect(mc.PUBREC).body[:2] == b"\x00\x07"
    r.ack(mc.PUBREL, 7)
    assert r.expect(mc.PUBCOMP).body[:2] == b"\x00\x07"
    sub.wait_for(1)
    assert [m.text for m in sub.settle(0.2)] == ["exactly"]


def test_emulator_queue_limit_drops_are_counted(emu, version):
    """Issue item 6: a message dropped at a limit is counted, never dropped silently."""
    from aetherdiag.emulator import Limits

    em, connect = emu(limits=Limits(max_queued=3))
    away = connect("away", clean=False, session_expiry=300 if version == mc.V5 else None)
    away.subscribe("q", qos=1)
    away.disconnect()
    pub = connect("pub")
    pub.publish("q", b"zero", qos=0)  # offline QoS 0: not queued, but counted
    for i in range(5):
        pub.publish("q", str(i), qos=1)
    back = connect("away", clean=False, session_expiry=300 if version == mc.V5 else None)
    back.wait_for(3)
    assert [m.text for m in back.settle(0.2)] == ["0", "1", "2"]
    dropped = em.stats().dropped
    assert (dropped["queue_full"], dropped["offline_qos0"]) == (2, 1)
