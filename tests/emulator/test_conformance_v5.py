"""Conformance: MQTT 5.0 features (session expiry, assigned identifiers, CONNACK properties,
subscription options, flow control, message expiry, forwarded properties, will delay).

Each test runs against the emulator and a private Mosquitto, with MQTT 5.0 clients only.
"""

from __future__ import annotations

import time

import pytest
from support.mqttclient import V5, PahoClient, RawClient, connack_code


@pytest.fixture
def version() -> int:
    """Every test in this module speaks MQTT 5.0."""
    return V5


def test_v5_session_expiry_zero_ends_session_at_disconnect(connect, version):
    c = connect("e0", clean=False, session_expiry=0)
    c.disconnect()
    again = connect("e0", clean=False, session_expiry=0)
    assert again.connack.session_present is False


def test_v5_assigned_client_identifier(connect, version):
    c = connect("anon", client_id="")
    assigned = c.connack.properties.get("AssignedClientIdentifier")
    assert isinstance(assigned, str) and assigned
    other = connect("anon2", client_id="")
    assert other.connack.properties["AssignedClientIdentifier"] != assigned


def test_v5_empty_client_id_without_clean_start_gets_an_identifier(raw, version):
    r = raw()
    ack = r.connect("", clean=False)
    assert connack_code(ack) == 0
    assert b"\x12" in ack.body  # property 0x12 Assigned Client Identifier is present


def test_v5_connack_advertises_shared_subscriptions(connect, version):
    """3.2.2.3.13: absent means available; if present it must be 1."""
    props = connect("props").connack.properties
    assert props.get("SharedSubscriptionAvailable", 1) == 1
    assert props.get("WildcardSubscriptionAvailable", 1) == 1
    assert props.get("RetainAvailable", 1) == 1


def test_v5_retain_handling_2_sends_no_retained(connect, version, topic):
    pub = connect("pub")
    pub.publish(f"{topic}/r", b"state", qos=1, retain=True)
    c = connect("rh")
    c.subscribe(f"{topic}/r", qos=1, retain_handling=2)
    assert c.settle(0.2) == []
    pub.publish(f"{topic}/r", b"", qos=1, retain=True)


def test_v5_retain_handling_1_only_for_a_new_subscription(connect, version, topic):
    pub = connect("pub")
    pub.publish(f"{topic}/r", b"state", qos=1, retain=True)
    try:
        c = connect("rh1")
        c.subscribe(f"{topic}/r", qos=1, retain_handling=1)
        assert [m.text for m in c.wait_for(1)] == ["state"]
        c.subscribe(f"{topic}/r", qos=1, retain_handling=1)  # exists: nothing re-sent
        assert len(c.settle(0.2)) == 1
        c.subscribe(f"{topic}/r", qos=1, retain_handling=0)  # always: sent again
        c.wait_for(2)
    finally:
        pub.publish(f"{topic}/r", b"", qos=1, retain=True)


def test_v5_no_local_on_a_plain_subscription(connect, version, topic):
    c = connect("self")
    c.subscribe(f"{topic}/t", qos=1, no_local=True)
    other = connect("other")
    c.publish(f"{topic}/t", b"mine", qos=1)
    other.publish(f"{topic}/t", b"theirs", qos=1)
    c.wait_for(1)
    assert [m.text for m in c.settle(0.2)] == ["theirs"]


def test_v5_puback_says_no_matching_subscribers(connect, version, topic):
    assert connect("pub").publish(f"{topic}/nobody", b"x", qos=1) == 0x10


def test_v5_receive_maximum_limits_unacknowledged_deliveries(connect, version, topic,
                                                             mosquitto_differs):
    mosquitto_differs("2.0.11 sends two queued messages for each PUBACK once the client's "
                      "Receive Maximum is reached (observed: 3 in flight with a maximum of 2)")
    c = connect("rm", receive_maximum=2, manual_ack=True)
    c.subscribe(f"{topic}/t", qos=1)
    pub = connect("pub")
    for i in range(5):
        pub.publish(f"{topic}/t", str(i), qos=1)
    first = c.wait_for(2)
    assert len(c.settle(0.25)) == 2, "no more than Receive Maximum in flight"
    c.ack(first[0])
    c.wait_for(3)
    assert len(c.settle(0.2)) == 3
    for m in c.messages[1:]:
        c.ack(m)
    c.wait_for(5)
    for m in c.messages[3:]:
        c.ack(m)
    assert [m.text for m in c.settle(0.1)] == [str(i) for i in range(5)]


def test_v5_forwards_publish_properties(connect, version, topic):
    sub = connect("sub")
    sub.subscribe(f"{topic}/t", qos=1)
    props = {
        "ContentType": "text/plain", "ResponseTopic": f"{topic}/reply",
        "CorrelationData": b"\x01\x02", "UserProperty": [("k", "v")], "PayloadFormatIndicator": 1,
    }
    connect("pub").publish(f"{topic}/t", b"hi", qos=1, properties=props)
    (msg,) = sub.wait_for(1)
    got = msg.properties
    assert got["ContentType"] == "text/plain"
    assert got["ResponseTopic"] == f"{topic}/reply"
    assert got["PayloadFormatIndicator"] == 1
    assert list(map(tuple, got["UserProperty"])) == [("k", "v")]
    assert "CorrelationData" in got


def test_v5_subscription_identifier_is_delivered(connect, version, topic):
    sub = connect("sub")
    sub.subscribe(f"{topic}/+", qos=1, sub_id=42)
    connect("pub").publish(f"{topic}/x", b"hi", qos=1)
    (msg,) = sub.wait_for(1)
    assert msg.properties["SubscriptionIdentifier"] == [42]


def test_v5_subscription_identifier_on_a_shared_subscription(connect, version, topic):
    sub = connect("sub")
    sub.subscribe(f"$share/g/{topic}/+", qos=1, sub_id=7)
    connect("pub").publish(f"{topic}/x", b"hi", qos=1)
    (msg,) = sub.wait_for(1)
    assert msg.properties["SubscriptionIdentifier"] == [7]


def test_v5_session_and_message_expiry(connect, version, topic):
    """Two intervals that share one wait (both brokers check at ~1 s granularity).

    Session Expiry (3.1.2.11.2): a session is resumed within its interval, gone after it.
    Message Expiry (3.3.2.3.3): a queued message past its interval is not delivered; a live
    one carries the lifetime it has left.
    """
    short = connect("e1", clean=False, session_expiry=1)
    short.disconnect()
    soon = connect("e1", clean=False, session_expiry=1)
    assert soon.connack.session_present is True, "resumed within the expiry interval"
    soon.disconnect()

    away = connect("away", clean=False, session_expiry=300)
    away.subscribe(f"{topic}/t", qos=1)
    away.disconnect()
    pub = connect("pub")
    pub.publish(f"{topic}/t", b"short", qos=1, properties={"MessageExpiryInterval": 1})
    pub.publish(f"{topic}/t", b"long", qos=1, properties={"MessageExpiryInterval": 60})

    time.sleep(2.3)
    late = connect("e1", clean=False, session_expiry=1)
    assert late.connack.session_present is False, "the session expired"
    back = connect("away", clean=False, session_expiry=300)
    (msg,) = back.wait_for(1)
    assert msg.text == "long"
    assert [m.text for m in back.settle(0.2)] == ["long"]
    assert 55 <= msg.properties["MessageExpiryInterval"] <= 58


def test_v5_will_delay(broker, clients, version, topic, uid):
    """3.1.3.2.2: the will waits for the Will Delay Interval; a reconnection within it
    cancels the will."""
    watcher = PahoClient(broker.host, broker.port, version=V5, client_id=f"w-{uid}")
    clients.append(watcher)
    watcher.connect()
    watcher.subscribe(f"{topic}/will/#", qos=1)
    cases = {"late": 1, "back": 2}
    conns = {}
    for name, delay in cases.items():
        r = RawClient(broker.host, broker.port, version=V5)
        clients.append(r)
        ack = r.connect(f"{name}-{uid}", session_expiry=30, will_delay=delay,
                        will=(f"{topic}/will/{name}", name.encode(), 1, False))
        assert connack_code(ack) == 0
        conns[name] = r
    started = time.monotonic()
    for r in conns.values():
        r.close()
    assert watcher.settle(0.4) == [], "no will before the delay"
    back = RawClient(broker.host, broker.port, version=V5)
    clients.append(back)
    assert connack_code(back.connect(f"back-{uid}", clean=False, session_expiry=30)) == 0
    (msg,) = watcher.wait_for(1, timeout=5)
    assert msg.text == "late"
    assert time.monotonic() - started >= 0.9
    time.sleep(max(0.0, 2.4 - (time.monotonic() - started)))
    assert [m.text for m in watcher.messages] == ["late"], "reconnecting cancelled the will"


@pytest.mark.parametrize("clean_start", [False, True])
def test_v5_takeover_and_will_delay(broker, clients, topic, uid, clean_start, mosquitto_differs):
    """The old connection of a session with a delayed will is taken over.

    Resumed (Clean Start 0) before the delay: the will is not sent (3.1.3.2.2). Clean
    Start 1: the old session ends, and a will is sent when its session ends (3.1.2.5).
    """
    if clean_start:
        mosquitto_differs("2.0.11 drops the delayed will when a Clean Start connection takes "
                          "the session over; the session ends then, so the will is due")
    watcher = PahoClient(broker.host, broker.port, version=V5, client_id=f"w-{uid}")
    clients.append(watcher)
    watcher.connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    old = RawClient(broker.host, broker.port, version=V5)
    new = RawClient(broker.host, broker.port, version=V5)
    clients += [old, new]
    cid = f"tk-{uid}"
    old.connect(cid, session_expiry=30, will_delay=5, will=(f"{topic}/will", b"w", 1, False))
    ack = new.connect(cid, clean=clean_start, session_expiry=30)
    assert connack_code(ack) == 0
    assert bool(ack.body[0] & 1) is not clean_start
    if clean_start:
        assert [m.text for m in watcher.wait_for(1, timeout=2)] == ["w"]
    else:
        assert watcher.settle(0.3) == []


def test_v5_retain_as_published(connect, version, topic):
    keep = connect("rap")
    keep.subscribe(f"{topic}/r", qos=1, retain_as_published=True)
    plain = connect("plain")
    plain.subscribe(f"{topic}/r", qos=1)
    pub = connect("pub")
    pub.publish(f"{topic}/r", b"state", qos=1, retain=True)
    try:
        assert [m.retain for m in keep.wait_for(1)] == [True]
        assert [m.retain for m in plain.wait_for(1)] == [False]
    finally:
        pub.publish(f"{topic}/r", b"", qos=1, retain=True)


def test_v5_disconnect_with_will_message(broker, clients, topic, uid):
    """DISCONNECT reason 0x04 asks the server to publish the will anyway."""
    watcher = PahoClient(broker.host, broker.port, version=V5, client_id=f"w-{uid}")
    clients.append(watcher)
    watcher.connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    r = RawClient(broker.host, broker.port, version=V5)
    clients.append(r)
    assert connack_code(r.connect(f"dw-{uid}", will=(f"{topic}/will", b"w", 1, False))) == 0
    r.disconnect(reason=0x04)
    assert [m.text for m in watcher.wait_for(1)] == ["w"]


def test_v5_client_maximum_packet_size_is_respected(connect, broker, version, topic):
    """3.1.2.11.4: the server must not send a packet larger than the client's maximum; it
    discards the message for that client instead (the emulator counts the drop)."""
    small = connect("small", connect_properties={"MaximumPacketSize": 128})
    small.subscribe(f"{topic}/t", qos=1)
    pub = connect("pub")
    pub.publish(f"{topic}/t", b"x" * 500, qos=1)
    pub.publish(f"{topic}/t", b"fits", qos=1)
    small.wait_for(1)
    assert [m.text for m in small.settle(0.2)] == ["fits"]
    if broker.emulator is not None:
        assert broker.emulator.stats().dropped["client_max_packet_size"] == 1
