"""Conformance: CONNECT / CONNACK, sessions, keep-alive and wills, over real TCP.

Each test runs against the emulator and a private Mosquitto, for MQTT 3.1.1 and 5.0, with
unmodified paho-mqtt clients (or a raw socket client where paho refuses to misbehave).
"""

from __future__ import annotations

import time

import pytest
from support.mqttclient import V5, V311, PahoClient, RawClient, connack_code, disconnect_code

# Mosquitto 2.0.11 checks keep-alives about every 5 s, whatever the interval: allow for it.
KEEPALIVE_BOUND = 10.0


def test_clean_session_has_no_session_present(connect, version):
    c = connect("clean", clean=True)
    assert c.connack.session_present is False


def test_persistent_session_is_resumed_then_cleaned(connect, version, topic):
    expiry = 60 if version == V5 else None
    c = connect("p", clean=False, session_expiry=expiry)
    assert c.connack.session_present is False
    c.subscribe(f"{topic}/x", qos=1)
    c.disconnect()

    again = connect("p", clean=False, session_expiry=expiry)
    assert again.connack.session_present is True
    again.disconnect()

    fresh = connect("p", clean=True, session_expiry=expiry)
    assert fresh.connack.session_present is False


def test_empty_client_id_with_clean_session_is_accepted(raw, version):
    r = raw()
    assert connack_code(r.connect("", clean=True)) == 0


def test_v311_empty_client_id_without_clean_session_is_rejected(raw, version):
    """3.1.1 3.1.3-8: CONNACK 0x02 (identifier rejected), then the connection closes.

    paho refuses to send this CONNECT, so a raw client does.
    """
    if version != V311:
        pytest.skip("in 5.0 the server assigns an identifier instead")
    r = raw()
    assert connack_code(r.connect("", clean=False)) == 0x02
    assert r.wait_closed() == []


def test_keepalive_timeout_disconnects_and_publishes_will(broker, clients, uid):
    """A client that goes silent past 1.5 x keep-alive is cut off and its will published.

    Both protocol versions at once, to wait for the (slow) Mosquitto check only once; a
    paho client on the same short keep-alive that pings stays connected throughout.
    """
    watcher = PahoClient(broker.host, broker.port, version=V5, client_id=f"watch-{uid}")
    clients.append(watcher)
    watcher.connect()
    watcher.subscribe(f"will/{uid}/#", qos=1)
    pinger = PahoClient(broker.host, broker.port, version=V311, client_id=f"ping-{uid}",
                        keepalive=1)  # paho pings on time: it must stay connected
    clients.append(pinger)
    pinger.connect()
    silent = []
    for v in (V311, V5):
        r = RawClient(broker.host, broker.port, version=v)
        will = (f"will/{uid}/{v}", b"gone", 1, False)
        ack = r.connect(f"silent{v}-{uid}", keepalive=1, will=will)
        assert connack_code(ack) == 0
        silent.append(r)
    started = time.monotonic()
    try:
        for r in silent:
            leftovers = r.wait_closed(KEEPALIVE_BOUND)
            if r.version == V5 and leftovers:  # a server MAY say why (0x8D) before closing
                assert [disconnect_code(p) for p in leftovers if p.type == 14] == [0x8D]
        elapsed = time.monotonic() - started
        assert elapsed >= 1.0, "disconnected before 1.5 x keep-alive could have passed"
        if broker.is_emulator:
            assert elapsed < 3.0
        got = watcher.wait_for(2, timeout=KEEPALIVE_BOUND)
        assert sorted(m.topic for m in got) == [f"will/{uid}/{V311}", f"will/{uid}/{V5}"]
        assert pinger.disconnected is None
    finally:
        for r in silent:
            r.close()


def test_will_published_on_abrupt_close(connect, version, topic):
    watcher = connect("watch")
    watcher.subscribe(f"{topic}/will", qos=1)
    doomed = connect("doomed", will=(f"{topic}/will", b"bye", 1, False))
    doomed.kill()
    (msg,) = watcher.wait_for(1)
    assert (msg.topic, msg.payload, msg.qos) == (f"{topic}/will", b"bye", 1)


def test_will_not_published_on_clean_disconnect(connect, version, topic):
    watcher = connect("watch")
    watcher.subscribe(f"{topic}/will", qos=1)
    polite = connect("polite", will=(f"{topic}/will", b"bye", 1, False))
    polite.disconnect()
    watcher.publish(f"{topic}/will", b"marker", qos=1)
    got = watcher.wait_for(1)
    assert [m.payload for m in watcher.settle(0.2)] == [b"marker"], got


def test_retained_will_is_kept(connect, version, topic):
    doomed = connect("doomed", will=(f"{topic}/will", b"bye", 1, True))
    doomed.kill()
    time.sleep(0.2)
    late = connect("late")
    late.subscribe(f"{topic}/will", qos=1)
    (msg,) = late.wait_for(1)
    assert msg.payload == b"bye" and msg.retain is True
    late.publish(f"{topic}/will", b"", qos=1, retain=True)  # clear it


def test_session_takeover_closes_the_old_connection(connect, version, mosquitto_differs):
    if version == V5:
        mosquitto_differs("2.0.11 closes the taken-over connection without sending "
                          "DISCONNECT 0x8E (Session taken over, MQTT 5.0 3.1.4-3)")
    first = connect("same")
    second = connect("same")
    code = first.wait_disconnected()
    if version == V5:
        assert code == 0x8E  # Session taken over
    assert second.disconnected is None


def test_takeover_of_a_clean_session_does_not_resume_it(connect, version):
    """A clean session lasts as long as its network connection (3.1.2.4 / 5.0 expiry 0):
    taken over by a connection asking to resume, it is gone, so Session Present is 0."""
    first = connect("tk", clean=True)
    second = connect("tk", clean=False, session_expiry=60 if version == V5 else None)
    first.wait_disconnected()
    assert second.connack.session_present is False
