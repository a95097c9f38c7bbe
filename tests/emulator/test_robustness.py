"""Robustness over real TCP: bad clients get the spec's answer, good clients never notice.

Each test speaks raw bytes to a live emulator (a misbehaving client) while healthy paho-mqtt
clients (3.1.1 and 5.0, on a shared subscription) are connected to the same emulator, and
checks that they still publish and receive afterwards. A hypothesis test throws random and
mutated frames at a live emulator; two more property tests check the codec on its own.
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from aetherdiag.emulator import Emulator, Limits
from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.codec import Decoder
from aetherdiag.emulator.encoding import encode
from aetherdiag.emulator.properties import ALLOWED, WILL
from aetherdiag.harness.clients import release

V3 = pk.MQTT_3_1_1
V5 = pk.MQTT_5
WAIT = 5.0
CONNECT_TIMEOUT = 1.0  # the emulator's limit for a connection that never sends CONNECT


class Healthy:
    """A well-behaved paho-mqtt client on a shared subscription; ``roundtrip`` proves it works."""

    def __init__(self, port: int, version: int, name: str) -> None:
        self.topic = f"healthy/{name}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=name,
            protocol=mqtt.MQTTv5 if version == V5 else mqtt.MQTTv311,
        )
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.ready = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda *_: self.ready.set()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.inbox.put(bytes(msg.payload))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.ready.wait(WAIT), "healthy client: no CONNACK"
        self.client.subscribe(f"$share/healthy/{self.topic}", qos=1)
        assert self.subscribed.wait(WAIT), "healthy client: no SUBACK"
        self.count = 0

    def roundtrip(self) -> None:
        self.count += 1
        payload = f"ping {self.count}".encode()
        info = self.client.publish(self.topic, payload, qos=1)
        info.wait_for_publish(WAIT)
        assert info.is_published(), "healthy client: no PUBACK"
        deadline = time.monotonic() + WAIT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "healthy client: its message never came back"
            if self.inbox.get(timeout=remaining) == payload:
                return

    def close(self) -> None:
        self.client.disconnect()
        release(self.client)


class Live:
    def __init__(self, em: Emulator, healthy: list[Healthy]) -> None:
        self.em = em
        self.port = em.port
        self.healthy = healthy

    def check_healthy(self) -> None:
        assert self.em._thread is not None and self.em._thread.is_alive()
        for h in self.healthy:
            h.roundtrip()


@contextlib.contextmanager
def live_emulator(**kwargs: object) -> Iterator[Live]:
    limits = Limits(connect_timeout=CONNECT_TIMEOUT)
    with Emulator(limits=limits, **kwargs) as em:  # type: ignore[arg-type]
        healthy = [Healthy(em.port, V5, "healthy-v5"), Healthy(em.port, V3, "healthy-v311")]
        try:
            yield Live(em, healthy)
        finally:
            for h in healthy:
                h.close()


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_emulator() as lv:
        lv.check_healthy()
        yield lv


@pytest.fixture
def emulator_errors() -> Iterator[list[logging.LogRecord]]:
    """ERROR records the emulator logs (an internal failure it had to swallow)."""
    records: list[logging.LogRecord] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Grab(level=logging.ERROR)
    logger = logging.getLogger("aetherdiag.emulator")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# -- raw socket client -------------------------------------------------------------------------


def read_until_closed(sock: socket.socket, wait: float) -> tuple[bytes, bool]:
    """Everything the server sends within ``wait`` seconds, and whether it closed."""
    data = bytearray()
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(data), False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return bytes(data), False
        except OSError:  # reset by the server
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk


def exchange(port: int, *chunks: bytes, version: int = V5, wait: float = WAIT,
             pause: float = 0.05) -> tuple[list[pk.Packet], bool]:
    """Send ``chunks`` (with a pause between them), then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(pause)
            try:
                sock.sendall(chunk)
            except OSError:
                break
        data, closed = read_until_closed(sock, wait)
    return Decoder(version).feed(data), closed


def connect_bytes(version: int, client_id: str, keepalive: int = 0) -> bytes:
    return encode(pk.Connect(protocol_level=version, client_id=client_id, keepalive=keepalive),
                  version)


def expect_refusal(packets: list[pk.Packet], closed: bool, version: int, reason: int) -> None:
    """After a CONNACK: a v5 client gets DISCONNECT ``reason``; a 3.1.1 client a close."""
    assert closed, packets
    assert isinstance(packets[0], pk.ConnAck) and packets[0].reason_code == 0, packets
    if version == V5:
        assert len(packets) == 2 and isinstance(packets[1], pk.Disconnect), packets
        assert packets[1].reason_code == reason, packets[1]
    else:
        assert len(packets) == 1, packets


VERSIONS = pytest.mark.parametrize("version", [V3, V5], ids=["v311", "v5"])


# -- before CONNECT ---------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [
    b"\x00\x00", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff" * 8, b"\xc0\x00",
    encode(pk.Publish(topic="t", payload=b"x")), b"\x10\xff\xff\xff\xff\x01",
], ids=["type-0", "http", "ff", "pingreq", "publish", "bad-length"])
def test_garbage_before_connect_is_closed_without_answer(live: Live, garbage: bytes) -> None:
    packets, closed = exchange(live.port, garbage)
    assert closed and packets == []
    live.check_healthy()


def test_connection_that_never_sends_connect_is_closed(live: Live) -> None:
    start = time.monotonic()
    packets, closed = exchange(live.port, b"", wait=CONNECT_TIMEOUT + 3)
    assert closed and packets == []
    assert time.monotonic() - start >= CONNECT_TIMEOUT * 0.9
    live.check_healthy()


def test_half_a_connect_then_silence_is_closed(live: Live) -> None:
    half = connect_bytes(V5, "half")[:7]
    packets, closed = exchange(live.port, half, wait=CONNECT_TIMEOUT + 3)
    assert closed and packets == []
    live.check_healthy()


def test_oversized_connect_is_closed_at_once(live: Live) -> None:
    start = time.monotonic()
    packets, closed = exchange(live.port, b"\x10\xff\xff\xff\x7f")  # 256 MB announced
    assert closed and packets == []
    assert time.monotonic() - start < CONNECT_TIMEOUT  # not merely timed out
    live.check_healthy()


def test_unsupported_protocol_level_gets_connack_0x01(live: Live) -> None:
    bad = encode(pk.Connect(protocol_level=6, client_id="x"))
    packets, closed = exchange(live.port, bad, version=V3)
    assert closed and packets == [pk.ConnAck(reason_code=pk.RC311_BAD_PROTOCOL)]
    live.check_healthy()


def test_unknown_protocol_name_at_level_5_gets_a_v5_connack_0x84(live: Live) -> None:
    bad = encode(pk.Connect(protocol_level=V5, protocol_name="MQTX", client_id="x"), V5)
    with socket.create_connection(("127.0.0.1", live.port), timeout=WAIT) as sock:
        sock.sendall(bad)
        data, closed = read_until_closed(sock, WAIT)
    assert closed and data == bytes.fromhex("20 03 00 84 00")
    live.check_healthy()


def test_invalid_utf8_client_id_is_closed(live: Live) -> None:
    bad = bytes.fromhex("10 0e 00 04 4d 51 54 54 05 02 00 00 00 00 02 c3 28")
    bad = bytes((0x10, len(bad) - 2)) + bad[2:]
    packets, closed = exchange(live.port, bad)
    assert closed and packets == []
    live.check_healthy()


# -- after CONNECT ----------------------------------------------------------------------------

AFTER_CONNECT: list[tuple[str, bytes | pk.Packet, int]] = [
    ("garbage", b"\xff\xff\xff\xff\xff", 0x81),
    ("publish-qos-3", bytes.fromhex("36 05 00 01 74 00 01"), 0x81),
    ("publish-dup-at-qos-0", bytes.fromhex("38 04 00 01 74 78"), 0x81),
    ("publish-invalid-utf8-topic", bytes.fromhex("30 05 00 02 c3 28 78"), 0x81),
    ("publish-u0000-topic", bytes.fromhex("30 04 00 01 00 78"), 0x81),
    ("publish-truncated-topic", bytes.fromhex("30 04 00 09 61 62"), 0x81),
    ("publish-wildcard-plus", pk.Publish(topic="jobs/+", payload=b"x"), 0x90),
    ("publish-wildcard-hash", pk.Publish(topic="#", payload=b"x", qos=1, packet_id=1), 0x90),
    ("publish-topic-alias", pk.Publish(topic="t", properties={pk.PROP_TOPIC_ALIAS: 1}),
     0x94),
    ("publish-packet-id-0", bytes.fromhex("32 05 00 01 74 00 00"), 0x81),
    ("subscribe-bad-flags", bytes.fromhex("80 06 00 01 00 01 74 00"), 0x81),
    ("subscribe-no-filters", pk.Subscribe(packet_id=1, subscriptions=()), 0x82),
    ("second-connect", pk.Connect(client_id="again"), 0x82),
    ("remaining-length-5-bytes", bytes.fromhex("30 80 80 80 80 01"), 0x81),
    ("oversized", b"\x30\x80\x80\x80\x01", 0x95),  # 2 MB announced, 1 MB allowed
    ("server-only-packet", pk.ConnAck(), 0x82),
    ("reserved-type", b"\x00\x00", 0x82),
]


@VERSIONS
@pytest.mark.parametrize(("bad", "reason"), [pytest.param(b, r, id=i) for i, b, r in
                                            AFTER_CONNECT])
@pytest.mark.parametrize("same_chunk", [False, True], ids=["separate", "same-chunk"])
def test_bad_packet_after_connect(live: Live, version: int, bad: bytes | pk.Packet,
                                  reason: int, same_chunk: bool) -> None:
    hello = connect_bytes(version, f"bad-{version}-{reason}")
    if isinstance(bad, pk.Connect):
        bad = connect_bytes(version, "again")
    elif not isinstance(bad, bytes):
        bad = encode(bad, version)
    if version == V3 and reason == 0x94:
        pytest.skip("a 3.1.1 PUBLISH has no properties, so no topic alias")
    chunks = (hello + bad,) if same_chunk else (hello, bad)
    packets, closed = exchange(live.port, *chunks, version=version)
    expect_refusal(packets, closed, version, reason)
    live.check_healthy()


@VERSIONS
def test_good_packets_before_garbage_in_one_chunk_are_answered(live: Live,
                                                               version: int) -> None:
    stream = (
        connect_bytes(version, f"mixed-{version}")
        + encode(pk.Subscribe(packet_id=1, subscriptions=(
            pk.SubscriptionRequest(topic_filter="$share/g/mixed", qos=1),)), version)
        + encode(pk.PingReq())
        + b"\x00\x00"
    )
    packets, closed = exchange(live.port, stream, version=version)
    assert closed
    assert packets[:3] == [pk.ConnAck(properties=packets[0].properties),  # type: ignore[union-attr]
                           pk.SubAck(packet_id=1, reason_codes=(1,)), pk.PingResp()]
    assert len(packets) == (4 if version == V5 else 3)
    live.check_healthy()


@VERSIONS
def test_half_a_packet_then_silence_hits_keepalive(live: Live, version: int) -> None:
    hello = connect_bytes(version, f"stall-{version}", keepalive=1)
    half = encode(pk.Publish(topic="jobs/1", payload=b"x" * 50))[:20]
    start = time.monotonic()
    packets, closed = exchange(live.port, hello, half, version=version, wait=WAIT)
    elapsed = time.monotonic() - start
    assert 1.4 <= elapsed < WAIT
    expect_refusal(packets, closed, version, pk.RC_KEEP_ALIVE_TIMEOUT)
    live.check_healthy()


def test_member_vanishing_mid_packet_and_mid_flow(live: Live) -> None:
    # A raw client joins the healthy v5 client's share group, takes its turn of QoS 1
    # messages without acknowledging them, then vanishes (RST) in the middle of a packet.
    # Its unacknowledged messages must reach the healthy member.
    healthy = live.healthy[0]
    group = f"$share/healthy/{healthy.topic}"
    with socket.create_connection(("127.0.0.1", live.port), timeout=WAIT) as sock:
        sock.sendall(connect_bytes(V5, "vanish") + encode(pk.Subscribe(
            packet_id=1, subscriptions=(pk.SubscriptionRequest(topic_filter=group, qos=1),)), V5))
        got = Decoder(V5)
        seen: list[pk.Packet] = []
        while len(seen) < 2:  # CONNACK, SUBACK
            seen += got.feed(sock.recv(4096))
        payloads = [f"turn {i}".encode() for i in range(6)]
        for p in payloads:
            healthy.client.publish(healthy.topic, p, qos=1)
        taken: list[pk.Packet] = []
        deadline = time.monotonic() + WAIT
        while len(taken) < 3:  # round robin: every other message comes here
            assert time.monotonic() < deadline, taken
            taken += [p for p in got.feed(sock.recv(4096)) if isinstance(p, pk.Publish)]
        sock.sendall(encode(pk.Publish(topic="t", payload=b"x" * 100), V5)[:30])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    received: set[bytes] = set()
    deadline = time.monotonic() + WAIT
    while not set(payloads) <= received:
        remaining = deadline - time.monotonic()
        assert remaining > 0, sorted(received)
        received.add(healthy.inbox.get(timeout=remaining))
    assert live.em.stats().redispatched >= 3
    live.check_healthy()


def test_many_bad_clients_at_once(live: Live) -> None:
    socks = []
    try:
        for i in range(30):
            s = socket.create_connection(("127.0.0.1", live.port), timeout=WAIT)
            socks.append(s)
            s.sendall(connect_bytes(V5, f"crowd-{i}")[: i % 10])
        live.check_healthy()
        for i, s in enumerate(socks):
            with contextlib.suppress(OSError):
                s.sendall(b"\xff" * (i % 7 + 1))
        live.check_healthy()
    finally:
        for s in socks:
            s.close()
    live.check_healthy()


# -- hypothesis: random frames at a live emulator ---------------------------------------------

_VALID_FRAMES: list[tuple[int, bytes]] = [
    (v, encode(p, v)) for v in (V3, V5) for p in list[pk.Packet]([
        pk.Publish(topic="jobs/1", payload=b"task", qos=1, packet_id=1),
        pk.Publish(topic="jobs/2", payload=b"", qos=2, packet_id=2, retain=True),
        pk.Publish(topic="healthy/x", payload=b"intruder"),
        pk.Subscribe(packet_id=3, subscriptions=(
            pk.SubscriptionRequest(topic_filter="$share/g/jobs/#", qos=2),
            pk.SubscriptionRequest(topic_filter="#", qos=1))),
        pk.Subscribe(packet_id=4, subscriptions=(
            pk.SubscriptionRequest(topic_filter="$share/healthy/healthy/#", qos=1),)),
        pk.Unsubscribe(packet_id=5, topic_filters=("$share/g/jobs/#", "#")),
        pk.PubAck(packet_id=1), pk.PubRec(packet_id=1),
        pk.PubRel(packet_id=1), pk.PubComp(packet_id=1),
        pk.PingReq(), pk.Disconnect(reason_code=0x04 if v == V5 else 0),
        pk.Publish(topic="jobs/p", payload=b"x", properties={
            pk.PROP_USER_PROPERTY: (("k", "v"),), pk.PROP_SUBSCRIPTION_ID: (1,)}),
    ])
]


@st.composite
def _hostile_streams(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "connect+random", "connect+mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    version = draw(st.sampled_from([V3, V5]))
    hello = encode(pk.Connect(
        protocol_level=version, client_id=draw(st.sampled_from(["", "fuzz", "healthy-v5"])),
        keepalive=draw(st.sampled_from([0, 1, 60])),
        will=draw(st.sampled_from([None, pk.Will(topic="healthy/healthy-v5", payload=b"w")])),
    ), version)
    if kind == "connect+random":
        return hello + draw(st.binary(max_size=64))
    frames = [f for v, f in _VALID_FRAMES if v == version]
    body = b"".join(draw(st.lists(st.sampled_from(frames), min_size=1, max_size=4)))
    data = bytearray(body)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return hello + bytes(data)


def test_random_frames_never_hurt_a_live_emulator(
    emulator_errors: list[logging.LogRecord],
) -> None:
    with live_emulator() as lv:
        lv.check_healthy()

        @settings(max_examples=120, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(stream=_hostile_streams())
        def throw(stream: bytes) -> None:
            with socket.create_connection(("127.0.0.1", lv.port), timeout=WAIT) as sock:
                with contextlib.suppress(OSError):
                    sock.sendall(stream)
                read_until_closed(sock, 0.02)

        throw()
        # The 3.1.1 healthy client was connected all along and still works.
        lv.healthy[1].roundtrip()
        # Some frames reused the v5 healthy client's id (a legal takeover that disconnects
        # it, and paho does not reconnect by itself here): replace it, then check both.
        lv.healthy[0].close()
        lv.healthy[0] = Healthy(lv.port, V5, "healthy-v5-again")
        lv.check_healthy()
        # Every hostile connection is gone; only the two healthy clients remain.
        deadline = time.monotonic() + WAIT
        while lv.em.stats().connected != 2:
            assert time.monotonic() < deadline, lv.em.stats()
            time.sleep(0.05)
        assert lv.em.stats().protocol_errors > 0
    assert [r.getMessage() for r in emulator_errors] == []


# -- hypothesis: the codec on its own ---------------------------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                max_size=12)
_pid = st.integers(1, 65535)
_u16 = st.integers(0, 65535)
_u32 = st.integers(0, 2**32 - 1)
_varint = st.integers(0, 268435455)
_pair = st.tuples(_text, _text)
_PROPERTY_VALUES = {
    pk.PROP_PAYLOAD_FORMAT: st.integers(0, 1),
    pk.PROP_MESSAGE_EXPIRY: _u32,
    pk.PROP_CONTENT_TYPE: _text,
    pk.PROP_RESPONSE_TOPIC: _text,
    pk.PROP_CORRELATION_DATA: st.binary(max_size=8),
    pk.PROP_SESSION_EXPIRY: _u32,
    pk.PROP_RECEIVE_MAXIMUM: _u16,
    pk.PROP_TOPIC_ALIAS: _u16,
    pk.PROP_MAXIMUM_PACKET_SIZE: _u32,
    pk.PROP_REASON_STRING: _text,
    pk.PROP_SHARED_SUB_AVAILABLE: st.integers(0, 1),  # 0 or 1 only (properties.ZERO_OR_ONE)
    pk.PROP_AUTH_DATA: st.binary(max_size=8),
    pk.PROP_USER_PROPERTY: st.lists(_pair, min_size=1, max_size=3).map(tuple),
    pk.PROP_SUBSCRIPTION_ID: st.lists(_varint, min_size=1, max_size=3).map(tuple),
}


@st.composite
def _props(draw: st.DrawFn, version: int, kind: int) -> dict[int, object]:
    """Properties a packet of type ``kind`` may carry (properties.ALLOWED, MQTT 5.0 2.2.2.2)."""
    allowed = sorted(set(_PROPERTY_VALUES) & ALLOWED[kind])
    if version != V5 or not allowed:
        return {}
    keys = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=4))
    return {k: draw(_PROPERTY_VALUES[k]) for k in keys}


@st.composite
def _packets(draw: st.DrawFn) -> tuple[pk.Packet, int]:
    version = draw(st.sampled_from([pk.MQTT_3_1, V3, V5]))
    v5 = version == V5

    def props(kind: int) -> st.SearchStrategy[dict[int, object]]:
        return _props(version, kind)

    rc = st.integers(0, 255) if v5 else st.just(0)
    kind = draw(st.sampled_from([
        "connect", "connack", "publish", "ack", "subscribe", "suback", "unsubscribe",
        "unsuback", "ping", "pong", "disconnect", "auth",
    ]))
    packet: pk.Packet
    if kind == "connect":
        will = draw(st.none() | st.builds(
            pk.Will, topic=_text, payload=st.binary(max_size=8), qos=st.integers(0, 2),
            retain=st.booleans(), properties=props(WILL)))
        username = draw(st.none() | _text)
        password = draw(st.none() | st.binary(max_size=8))
        if username is None and not v5:
            password = None
        packet = pk.Connect(
            protocol_level=version, protocol_name="MQIsdp" if version == 3 else "MQTT",
            client_id=draw(_text), clean_start=draw(st.booleans()), keepalive=draw(_u16),
            will=will, username=username, password=password,
            properties=draw(props(pk.CONNECT)))
    elif kind == "connack":
        packet = pk.ConnAck(session_present=draw(st.booleans()),
                            reason_code=draw(st.integers(0, 255)),
                            properties=draw(props(pk.CONNACK)))
    elif kind == "publish":
        qos = draw(st.integers(0, 2))
        packet = pk.Publish(
            topic=draw(_text), payload=draw(st.binary(max_size=300)), qos=qos,
            retain=draw(st.booleans()), dup=draw(st.booleans()) if qos else False,
            packet_id=draw(_pid) if qos else None, properties=draw(props(pk.PUBLISH)))
    elif kind == "ack":
        acks: list[type[pk.PubAck | pk.PubRec | pk.PubRel | pk.PubComp]] = [
            pk.PubAck, pk.PubRec, pk.PubRel, pk.PubComp]
        cls = draw(st.sampled_from(acks))
        packet = cls(packet_id=draw(_pid), reason_code=draw(rc),
                     properties=draw(props(pk.PUBACK)))
    elif kind == "subscribe":
        reqs = draw(st.lists(st.builds(
            pk.SubscriptionRequest, topic_filter=_text, qos=st.integers(0, 2),
            no_local=st.booleans() if v5 else st.just(False),
            retain_as_published=st.booleans() if v5 else st.just(False),
            retain_handling=st.integers(0, 2) if v5 else st.just(0)),
            min_size=1, max_size=3))
        sub_props = draw(props(pk.SUBSCRIBE))
        if pk.PROP_SUBSCRIPTION_ID in sub_props:  # at most one in a SUBSCRIBE (3.8.2.1.2)
            sub_props[pk.PROP_SUBSCRIPTION_ID] = (draw(_varint),)
        packet = pk.Subscribe(packet_id=draw(_pid), subscriptions=tuple(reqs),
                              properties=sub_props)
    elif kind == "suback":
        packet = pk.SubAck(packet_id=draw(_pid), reason_codes=tuple(draw(st.lists(
            st.integers(0, 255), min_size=1, max_size=4))), properties=draw(props(pk.SUBACK)))
    elif kind == "unsubscribe":
        packet = pk.Unsubscribe(packet_id=draw(_pid), topic_filters=tuple(draw(st.lists(
            _text, min_size=1, max_size=3))),
            properties=draw(props(pk.UNSUBSCRIBE)))
    elif kind == "unsuback":
        codes = draw(st.lists(st.integers(0, 255), max_size=4)) if v5 else []
        packet = pk.UnsubAck(packet_id=draw(_pid), reason_codes=tuple(codes),
                             properties=draw(props(pk.UNSUBACK)))
    elif kind == "ping":
        packet = pk.PingReq()
    elif kind == "pong":
        packet = pk.PingResp()
    elif kind == "disconnect":
        packet = pk.Disconnect(reason_code=draw(rc), properties=draw(props(pk.DISCONNECT)))
    else:
        version = V5
        packet = pk.Auth(reason_code=draw(st.integers(0, 255)),
                         properties=draw(_props(V5, pk.AUTH)))
    return packet, version


@settings(max_examples=300, deadline=None)
@given(_packets())
def test_codec_round_trip(generated: tuple[pk.Packet, int]) -> None:
    packet, version = generated
    wire = encode(packet, version)
    decoder = Decoder(None if isinstance(packet, pk.Connect) else version)
    assert decoder.feed(wire) == [packet]
    assert decoder.buffered() == 0
    assert encode(packet, version) == wire  # encode(decode(x)) == x
    # And the same bytes split at any point decode the same way.
    cut = len(wire) // 2
    decoder = Decoder(None if isinstance(packet, pk.Connect) else version)
    assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == [packet]


@settings(max_examples=400, deadline=None)
@given(version=st.sampled_from([None, V3, V5]), data=st.binary(max_size=200))
def test_decoder_only_ever_raises_malformed_packet(version: int | None, data: bytes) -> None:
    decoder = Decoder(version, max_packet_size=256)
    try:
        for packet in decoder.feed(data):
            # Whatever decodes must encode again without error.
            encode(packet, decoder.version or V3)
    except pk.MalformedPacket as exc:
        assert 0x80 <= exc.reason_code <= 0xFF
