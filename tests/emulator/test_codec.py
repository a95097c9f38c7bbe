"""Byte tables for the sans-IO codec, from the MQTT 3.1.1 and 5.0 specifications.

Every row is ``(packet, protocol version, bytes on the wire)``; the same row is checked in both
directions (encode the packet, decode the bytes). Hex is written by hand from the spec's
layouts (section 2 fixed header, section 3 per packet), never produced by the codec itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.codec import Decoder
from aetherdiag.emulator.encoding import encode

V3 = pk.MQTT_3_1_1
V5 = pk.MQTT_5
SR = pk.SubscriptionRequest


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def decode_one(data: bytes, version: int | None) -> pk.Packet:
    decoder = Decoder(version)
    packets = decoder.feed(data)
    assert len(packets) == 1, packets
    assert decoder.buffered() == 0
    return packets[0]


# "MQTT" with its length prefix, and "$share/g/t" / "$share/g/b" (10 bytes each).
MQTT = "00 04 4d 51 54 54"
SHARE_G_T = "24 73 68 61 72 65 2f 67 2f 74"
SHARE_G_B = "24 73 68 61 72 65 2f 67 2f 62"

ROUND_TRIP: list[tuple[str, pk.Packet, int, str]] = [
    # -- CONNECT (3.1) ---------------------------------------------------------------------
    ("connect-311-minimal", pk.Connect(client_id="c1"), V3,
     f"10 0e {MQTT} 04 02 00 3c 00 02 63 31"),
    ("connect-31-mqisdp",
     pk.Connect(protocol_level=pk.MQTT_3_1, protocol_name="MQIsdp", client_id="c",
                clean_start=False, keepalive=0), pk.MQTT_3_1,
     "10 0f 00 06 4d 51 49 73 64 70 03 00 00 00 00 01 63"),
    ("connect-311-will-user-pass",
     pk.Connect(client_id="c", keepalive=10,
                will=pk.Will(topic="w", payload=b"x", qos=1, retain=True),
                username="u", password=b"p"), V3,
     f"10 19 {MQTT} 04 ee 00 0a 00 01 63 00 01 77 00 01 78 00 01 75 00 01 70"),
    ("connect-5-properties",
     pk.Connect(protocol_level=V5, client_id="c",
                properties={pk.PROP_SESSION_EXPIRY: 3600, pk.PROP_RECEIVE_MAXIMUM: 10}), V5,
     f"10 16 {MQTT} 05 02 00 3c 08 11 00 00 0e 10 21 00 0a 00 01 63"),
    ("connect-5-will-properties-password-only",
     pk.Connect(protocol_level=V5, client_id="", clean_start=False, keepalive=0,
                will=pk.Will(topic="w", payload=b"", qos=2,
                             properties={pk.PROP_WILL_DELAY: 5,
                                         pk.PROP_USER_PROPERTY: (("a", "b"), ("a", "c"))}),
                password=b"pw", properties={pk.PROP_USER_PROPERTY: (("k", "v"),)}), V5,
     f"10 31 {MQTT} 05 54 00 00 07 26 00 01 6b 00 01 76 00 00"
     " 13 18 00 00 00 05 26 00 01 61 00 01 62 26 00 01 61 00 01 63"
     " 00 01 77 00 00 00 02 70 77"),
    # -- CONNACK (3.2) ---------------------------------------------------------------------
    ("connack-311-session-present", pk.ConnAck(session_present=True), V3, "20 02 01 00"),
    ("connack-311-refused", pk.ConnAck(reason_code=5), V3, "20 02 00 05"),
    ("connack-5-no-properties", pk.ConnAck(), V5, "20 03 00 00 00"),
    ("connack-5-properties",
     pk.ConnAck(properties={pk.PROP_SHARED_SUB_AVAILABLE: 1, pk.PROP_RECEIVE_MAXIMUM: 10,
                            pk.PROP_ASSIGNED_CLIENT_ID: "id"}), V5,
     "20 0d 00 00 0a 2a 01 21 00 0a 12 00 02 69 64"),
    ("connack-5-unsupported-version", pk.ConnAck(reason_code=0x84), V5, "20 03 00 84 00"),
    # -- PUBLISH (3.3) ---------------------------------------------------------------------
    ("publish-311-qos0", pk.Publish(topic="a/b", payload=b"hi"), V3,
     "30 07 00 03 61 2f 62 68 69"),
    ("publish-311-qos1-dup-retain",
     pk.Publish(topic="a/b", payload=b"hi", qos=1, dup=True, retain=True, packet_id=10), V3,
     "3b 09 00 03 61 2f 62 00 0a 68 69"),
    ("publish-311-qos2-empty-payload", pk.Publish(topic="t", qos=2, packet_id=0x1234), V3,
     "34 05 00 01 74 12 34"),
    ("publish-311-utf8-topic", pk.Publish(topic="\u00fc/\u2603", payload=b""), V3,
     "30 08 00 06 c3 bc 2f e2 98 83"),
    ("publish-5-qos0-no-properties", pk.Publish(topic="a/b", payload=b"hi"), V5,
     "30 08 00 03 61 2f 62 00 68 69"),
    ("publish-5-all-forwarded-properties",
     pk.Publish(topic="t", payload=b"x", qos=1, packet_id=1, properties={
         pk.PROP_PAYLOAD_FORMAT: 1,
         pk.PROP_MESSAGE_EXPIRY: 60,
         pk.PROP_CONTENT_TYPE: "t",
         pk.PROP_RESPONSE_TOPIC: "r",
         pk.PROP_CORRELATION_DATA: b"\x00\x01",
         pk.PROP_USER_PROPERTY: (("k", "v"), ("k", "v")),  # repeatable, even identical pairs
         pk.PROP_SUBSCRIPTION_ID: (1, 268435455),  # repeatable; largest varint
     }), V5,
     "32 30 00 01 74 00 01 29 01 01 02 00 00 00 3c 03 00 01 74 08 00 01 72"
     " 09 00 02 00 01 26 00 01 6b 00 01 76 26 00 01 6b 00 01 76 0b 01 0b ff ff ff 7f 78"),
    ("publish-5-topic-alias-empty-topic",
     pk.Publish(topic="", properties={pk.PROP_TOPIC_ALIAS: 5}), V5,
     "30 06 00 00 03 23 00 05"),
    # -- PUBACK / PUBREC / PUBREL / PUBCOMP (3.4-3.7) -----------------------------------------
    ("puback-311", pk.PubAck(packet_id=10), V3, "40 02 00 0a"),
    ("pubrec-311", pk.PubRec(packet_id=10), V3, "50 02 00 0a"),
    ("pubrel-311", pk.PubRel(packet_id=10), V3, "62 02 00 0a"),
    ("pubcomp-311", pk.PubComp(packet_id=10), V3, "70 02 00 0a"),
    ("puback-5-success-short", pk.PubAck(packet_id=10), V5, "40 02 00 0a"),
    ("puback-5-no-matching-subscribers", pk.PubAck(packet_id=10, reason_code=0x10), V5,
     "40 03 00 0a 10"),
    ("pubrec-5-reason-string",
     pk.PubRec(packet_id=10, reason_code=0x80, properties={pk.PROP_REASON_STRING: "no"}), V5,
     "50 09 00 0a 80 05 1f 00 02 6e 6f"),
    ("pubrel-5-id-not-found", pk.PubRel(packet_id=10, reason_code=0x92), V5, "62 03 00 0a 92"),
    ("pubcomp-5-user-property",
     pk.PubComp(packet_id=10, properties={pk.PROP_USER_PROPERTY: (("a", "b"),)}), V5,
     "70 0b 00 0a 00 07 26 00 01 61 00 01 62"),
    # -- SUBSCRIBE / SUBACK (3.8, 3.9) -------------------------------------------------------
    ("subscribe-311",
     pk.Subscribe(packet_id=1, subscriptions=(SR(topic_filter="a/b", qos=1), SR(topic_filter="c"))),
     V3, "82 0c 00 01 00 03 61 2f 62 01 00 01 63 00"),
    ("subscribe-5-options-and-subscription-id",
     pk.Subscribe(packet_id=2, subscriptions=(
         SR(topic_filter="$share/g/t", qos=1),
         SR(topic_filter="t", qos=2, no_local=True, retain_as_published=True,
            retain_handling=2),
     ), properties={pk.PROP_SUBSCRIPTION_ID: (5,)}), V5,
     f"82 16 00 02 02 0b 05 00 0a {SHARE_G_T} 01 00 01 74 2e"),
    ("subscribe-5-retain-handling-1",
     pk.Subscribe(packet_id=3, subscriptions=(SR(topic_filter="t", retain_handling=1),)), V5,
     "82 07 00 03 00 00 01 74 10"),
    ("suback-311", pk.SubAck(packet_id=1, reason_codes=(1, 0x80)), V3, "90 04 00 01 01 80"),
    ("suback-5", pk.SubAck(packet_id=2, reason_codes=(0x01, 0x8F, 0x9E)), V5,
     "90 06 00 02 00 01 8f 9e"),
    ("suback-5-reason-string",
     pk.SubAck(packet_id=2, reason_codes=(0x9E,), properties={pk.PROP_REASON_STRING: "x"}), V5,
     "90 08 00 02 04 1f 00 01 78 9e"),
    # -- UNSUBSCRIBE / UNSUBACK (3.10, 3.11) -------------------------------------------------
    ("unsubscribe-311", pk.Unsubscribe(packet_id=3, topic_filters=("a", "$share/g/b")), V3,
     f"a2 11 00 03 00 01 61 00 0a {SHARE_G_B}"),
    ("unsubscribe-5", pk.Unsubscribe(packet_id=3, topic_filters=("a",)), V5,
     "a2 06 00 03 00 00 01 61"),
    ("unsuback-311", pk.UnsubAck(packet_id=3), V3, "b0 02 00 03"),
    ("unsuback-5", pk.UnsubAck(packet_id=3, reason_codes=(0x00, 0x11)), V5,
     "b0 05 00 03 00 00 11"),
    # -- PINGREQ / PINGRESP / DISCONNECT / AUTH (3.12-3.15) ----------------------------------
    ("pingreq-311", pk.PingReq(), V3, "c0 00"),
    ("pingreq-5", pk.PingReq(), V5, "c0 00"),
    ("pingresp-311", pk.PingResp(), V3, "d0 00"),
    ("pingresp-5", pk.PingResp(), V5, "d0 00"),
    ("disconnect-311", pk.Disconnect(), V3, "e0 00"),
    ("disconnect-5-normal-short", pk.Disconnect(), V5, "e0 00"),
    ("disconnect-5-with-will", pk.Disconnect(reason_code=0x04), V5, "e0 01 04"),
    ("disconnect-5-taken-over", pk.Disconnect(reason_code=0x8E), V5, "e0 01 8e"),
    ("disconnect-5-session-expiry",
     pk.Disconnect(properties={pk.PROP_SESSION_EXPIRY: 0}), V5, "e0 07 00 05 11 00 00 00 00"),
    ("disconnect-5-reason-string",
     pk.Disconnect(reason_code=0x82, properties={pk.PROP_REASON_STRING: "x"}), V5,
     "e0 06 82 04 1f 00 01 78"),
    ("auth-5",
     pk.Auth(reason_code=0x18, properties={pk.PROP_AUTH_METHOD: "m", pk.PROP_AUTH_DATA: b"\x01"}),
     V5, "f0 0a 18 08 15 00 01 6d 16 00 01 01"),
]


def _decoder_version(packet: pk.Packet, version: int) -> int | None:
    # A CONNECT is what teaches a fresh decoder its version; everything else needs one.
    return None if isinstance(packet, pk.Connect) else version


@pytest.mark.parametrize(("packet", "version", "wire"),
                         [pytest.param(p, v, w, id=i) for i, p, v, w in ROUND_TRIP])
def test_encode_matches_spec_bytes(packet: pk.Packet, version: int, wire: str) -> None:
    assert encode(packet, version).hex(" ") == h(wire).hex(" ")


@pytest.mark.parametrize(("packet", "version", "wire"),
                         [pytest.param(p, v, w, id=i) for i, p, v, w in ROUND_TRIP])
def test_decode_spec_bytes(packet: pk.Packet, version: int, wire: str) -> None:
    decoder = Decoder(_decoder_version(packet, version))
    assert decoder.feed(h(wire)) == [packet]
    assert decoder.buffered() == 0
    if isinstance(packet, pk.Connect):
        assert decoder.version == packet.protocol_level


# Other encodings of the same packet that a peer may legally send (decode only).
DECODE_ONLY: list[tuple[str, str, int, pk.Packet]] = [
    ("puback-5-explicit-success", "40 03 00 0a 00", V5, pk.PubAck(packet_id=10)),
    ("puback-5-empty-properties", "40 04 00 0a 00 00", V5, pk.PubAck(packet_id=10)),
    ("pubrel-5-empty-properties", "62 04 00 0a 00 00", V5, pk.PubRel(packet_id=10)),
    ("disconnect-5-explicit-success", "e0 01 00", V5, pk.Disconnect()),
    ("disconnect-5-empty-properties", "e0 02 00 00", V5, pk.Disconnect()),
    ("auth-5-empty", "f0 00", V5, pk.Auth()),
    ("connack-5-session-present", "20 03 01 00 00", V5, pk.ConnAck(session_present=True)),
    ("unsuback-5-no-codes", "b0 03 00 03 00", V5, pk.UnsubAck(packet_id=3)),
    ("publish-5-unicode-user-property",
     "30 0e 00 01 74 0a 26 00 02 c3 bc 00 03 e2 98 83", V5,
     pk.Publish(topic="t", properties={pk.PROP_USER_PROPERTY: (("\u00fc", "\u2603"),)})),
]


@pytest.mark.parametrize(("wire", "version", "packet"),
                         [pytest.param(w, v, p, id=i) for i, w, v, p in DECODE_ONLY])
def test_decode_alternative_encodings(wire: str, version: int, packet: pk.Packet) -> None:
    assert decode_one(h(wire), version) == packet


# What a version drops when a packet carries fields it cannot express (encode only).
ENCODE_FOR_OLDER_PEER: list[tuple[str, pk.Packet, str]] = [
    ("puback-reason-code-dropped", pk.PubAck(packet_id=10, reason_code=0x10), "40 02 00 0a"),
    ("publish-properties-dropped",
     pk.Publish(topic="t", properties={pk.PROP_USER_PROPERTY: (("k", "v"),)}), "30 03 00 01 74"),
    ("disconnect-reason-dropped", pk.Disconnect(reason_code=0x8E), "e0 00"),
    ("suback-properties-dropped",
     pk.SubAck(packet_id=1, reason_codes=(0,), properties={pk.PROP_REASON_STRING: "x"}),
     "90 03 00 01 00"),
    ("unsuback-codes-dropped", pk.UnsubAck(packet_id=3, reason_codes=(0x11,)), "b0 02 00 03"),
    ("connack-properties-dropped",
     pk.ConnAck(properties={pk.PROP_SHARED_SUB_AVAILABLE: 1}), "20 02 00 00"),
]


@pytest.mark.parametrize(("packet", "wire"),
                         [pytest.param(p, w, id=i) for i, p, w in ENCODE_FOR_OLDER_PEER])
def test_encode_for_311_peer_drops_v5_fields(packet: pk.Packet, wire: str) -> None:
    assert encode(packet, V3) == h(wire)


# -- Variable Byte Integer (1.5.5 / 2.1.4) ----------------------------------------------------

VARINTS = [
    (0, "00"),
    (127, "7f"),
    (128, "80 01"),
    (16383, "ff 7f"),
    (16384, "80 80 01"),
    (2097151, "ff ff 7f"),
    (2097152, "80 80 80 01"),
    (268435455, "ff ff ff 7f"),
]


@pytest.mark.parametrize(("value", "wire"), VARINTS)
def test_varint_in_a_property(value: int, wire: str) -> None:
    # A SUBSCRIBE carrying Subscription Identifier ``value``: the property is a varint.
    varint = h(wire)
    props = b"\x0b" + varint
    body = b"\x00\x01" + bytes((len(props),)) + props + h("00 01 74 00")
    expected = bytes((0x82, len(body))) + body
    packet = pk.Subscribe(packet_id=1, subscriptions=(SR(topic_filter="t"),),
                          properties={pk.PROP_SUBSCRIPTION_ID: (value,)})
    assert encode(packet, V5) == expected
    assert decode_one(expected, V5) == packet


def test_remaining_length_zero() -> None:
    assert encode(pk.PingReq()) == h("c0 00")
    assert decode_one(h("c0 00"), V3) == pk.PingReq()


@pytest.mark.parametrize(("length", "wire"), [v for v in VARINTS if 3 <= v[0] <= 2097152])
def test_remaining_length_in_fixed_header(length: int, wire: str) -> None:
    # A QoS 0 PUBLISH on topic "t" (3 bytes of variable header) with a payload that makes
    # the remaining length exactly ``length``.
    packet = pk.Publish(topic="t", payload=b"p" * (length - 3))
    header = b"\x30" + h(wire)
    data = encode(packet, V3)
    assert data[: len(header)] == header
    assert data[len(header):len(header) + 3] == h("00 01 74")
    assert len(data) == len(header) + length
    decoder = Decoder(V3, max_packet_size=len(data))
    assert decoder.feed(data) == [packet]


def test_largest_remaining_length_is_accepted_and_awaited() -> None:
    # 268,435,455 is the largest remaining length; the decoder reads the header and waits for
    # the body (when its size limit allows that much).
    decoder = Decoder(V3, max_packet_size=1 << 29)
    assert decoder.feed(h("30 ff ff ff 7f")) == []
    assert decoder.buffered() == 5
    assert decoder.feed(h("00 01 74")) == []


def test_oversized_packet_refused_from_its_header_alone() -> None:
    decoder = Decoder(V3)
    with pytest.raises(pk.MalformedPacket) as info:
        decoder.feed(h("30 ff ff ff 7f"))
    assert info.value.reason_code == pk.RC_PACKET_TOO_LARGE


def test_max_packet_size_counts_the_whole_packet() -> None:
    exact = h("30 0e 00 01 74") + b"x" * 11  # 16 bytes in all
    assert Decoder(V3, max_packet_size=16).feed(exact) == [pk.Publish(topic="t", payload=b"x" * 11)]
    with pytest.raises(pk.MalformedPacket) as info:
        Decoder(V3, max_packet_size=16).feed(h("30 0f"))  # 17 bytes announced
    assert info.value.reason_code == 0x95


def test_remaining_length_split_across_feeds() -> None:
    packet = pk.Publish(topic="t", payload=b"p" * 200)  # remaining length 203: "cb 01"
    data = encode(packet, V3)
    assert data[:3] == h("30 cb 01")
    decoder = Decoder(V3)
    assert decoder.feed(data[:2]) == []
    assert decoder.feed(data[2:3]) == []
    assert decoder.feed(data[3:]) == [packet]


# -- Streams: byte by byte, several packets per chunk -----------------------------------------

CLIENT_STREAM_5: list[pk.Packet] = [
    pk.Connect(protocol_level=V5, client_id="w1", properties={pk.PROP_SESSION_EXPIRY: 60}),
    pk.Subscribe(packet_id=1, subscriptions=(SR(topic_filter="$share/g/jobs/+", qos=1),)),
    pk.Publish(topic="jobs/1", payload=b"task" * 40, qos=1, packet_id=2,
               properties={pk.PROP_USER_PROPERTY: (("a", "1"), ("b", "2"))}),
    pk.PubAck(packet_id=7),
    pk.Publish(topic="jobs/2", payload=b"", qos=2, packet_id=3),
    pk.PubRel(packet_id=3),
    pk.PingReq(),
    pk.Unsubscribe(packet_id=4, topic_filters=("$share/g/jobs/+",)),
    pk.Disconnect(reason_code=0x04),
]

CLIENT_STREAM_311: list[pk.Packet] = [
    pk.Connect(client_id="w1", clean_start=False),
    pk.Subscribe(packet_id=1, subscriptions=(SR(topic_filter="jobs/#", qos=2),)),
    pk.Publish(topic="jobs/1", payload=b"x" * 300, qos=1, packet_id=2),
    pk.PubRec(packet_id=9),
    pk.PubComp(packet_id=9),
    pk.PingReq(),
    pk.Disconnect(),
]


@pytest.mark.parametrize("stream", [CLIENT_STREAM_5, CLIENT_STREAM_311], ids=["v5", "v311"])
def test_feed_byte_by_byte(stream: list[pk.Packet]) -> None:
    version = stream[0].protocol_level  # type: ignore[union-attr]
    frames = [encode(p, version) for p in stream]
    decoder = Decoder()
    got: list[pk.Packet] = []
    for frame, expected in zip(frames, stream, strict=True):
        for i in range(len(frame)):
            out = decoder.feed(frame[i:i + 1])
            if i < len(frame) - 1:
                assert out == []  # nothing until the packet's last byte
            else:
                assert out == [expected]
            got += out
    assert got == stream
    assert decoder.version == version
    assert decoder.buffered() == 0


@pytest.mark.parametrize("stream", [CLIENT_STREAM_5, CLIENT_STREAM_311], ids=["v5", "v311"])
def test_several_packets_in_one_chunk(stream: list[pk.Packet]) -> None:
    version = stream[0].protocol_level  # type: ignore[union-attr]
    data = b"".join(encode(p, version) for p in stream)
    decoder = Decoder()
    assert decoder.feed(data) == stream
    assert decoder.buffered() == 0


def test_chunk_ending_mid_packet_keeps_the_rest() -> None:
    a = encode(pk.Publish(topic="a", payload=b"1"), V3)
    b = encode(pk.Publish(topic="b", payload=b"2"), V3)
    decoder = Decoder(V3)
    assert decoder.feed(a + b[:3]) == [pk.Publish(topic="a", payload=b"1")]
    assert decoder.buffered() == 3
    assert decoder.feed(b[3:] + a[:1]) == [pk.Publish(topic="b", payload=b"2")]
    assert decoder.buffered() == 1


# -- Malformed input -> the v5 reason code the server answers with ----------------------------

MALFORMED: list[tuple[str, int | None, str, int]] = [
    # Reserved fixed-header flags (2.1.3).
    ("puback-flags", V3, "41 02 00 01", 0x81),
    ("pubrel-flags-0000", V3, "60 02 00 01", 0x81),
    ("subscribe-flags-0000", V3, "80 06 00 01 00 01 74 00", 0x81),
    ("unsubscribe-flags-0000", V3, "a0 05 00 01 00 01 74", 0x81),
    ("pingreq-flags", V3, "c1 00", 0x81),
    ("disconnect-flags", V5, "e8 00", 0x81),
    ("connect-flags", None, f"11 0e {MQTT} 04 02 00 3c 00 02 63 31", 0x81),
    # PUBLISH flags (3.3.1).
    ("publish-qos-3", V3, "36 05 00 01 74 00 01", 0x81),
    ("publish-dup-at-qos-0", V3, "38 04 00 01 74 78", 0x81),
    # UTF-8 strings (1.5.4).
    ("topic-invalid-utf8", V3, "30 04 00 01 ff 78", 0x81),
    ("topic-overlong-nul", V3, "30 05 00 02 c0 80 78", 0x81),
    ("topic-utf16-surrogate", V3, "30 06 00 03 ed a0 80 78", 0x81),
    ("topic-u0000", V3, "30 04 00 01 00 78", 0x81),
    ("client-id-u0000", None, f"10 0e {MQTT} 04 02 00 3c 00 02 63 00", 0x81),
    ("client-id-invalid-utf8", None, f"10 0e {MQTT} 04 02 00 3c 00 02 63 fe", 0x81),
    ("property-string-u0000", V5, "30 08 00 01 74 04 03 00 01 00", 0x81),
    ("user-property-invalid-utf8", V5, "30 0b 00 01 74 07 26 00 01 80 00 01 61", 0x81),
    ("filter-invalid-utf8", V3, "82 06 00 01 00 01 ff 00", 0x81),
    # Truncation.
    ("topic-length-past-packet", V3, "30 04 00 05 61 62", 0x81),
    ("client-id-length-past-packet", None, f"10 0e {MQTT} 04 02 00 3c 00 09 63 31", 0x81),
    ("connect-ends-before-keepalive", None, f"10 08 {MQTT} 04 02", 0x81),
    ("puback-one-byte-id", V3, "40 01 00", 0x81),
    ("subscribe-missing-options-byte", V3, "82 05 00 01 00 01 74", 0x81),
    ("properties-length-past-packet", V5, "30 05 00 01 74 09 01", 0x81),
    ("property-value-past-packet", V5, "30 06 00 01 74 02 02 00", 0x81),
    ("connack-5-ends-early", V5, "20 01 00", 0x81),
    # Variable Byte Integers longer than four bytes.
    ("remaining-length-5-bytes", V3, "30 80 80 80 80 01", 0x81),
    ("property-varint-5-bytes", V5, "82 0d 00 01 06 0b 80 80 80 80 01 00 01 74 00", 0x81),
    # Properties (2.2.2.2).
    ("property-duplicated", V5, "30 08 00 01 74 04 01 01 01 01", 0x82),
    ("connect-property-duplicated", None,
     f"10 18 {MQTT} 05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 01 63", 0x82),
    ("subscribe-subscription-id-twice", V5, "82 0b 00 01 04 0b 01 0b 02 00 01 74 00", 0x82),
    ("property-unknown", V5, "30 06 00 01 74 02 05 00", 0x81),
    ("property-unknown-high-id", V5, "30 06 00 01 74 02 7f 00", 0x81),
    # Packet identifiers (2.2.1): non-zero where present.
    ("publish-qos1-packet-id-0", V3, "32 05 00 01 74 00 00", 0x81),
    ("publish-qos2-packet-id-0", V5, "34 06 00 01 74 00 00 00", 0x81),
    ("subscribe-packet-id-0", V3, "82 06 00 00 00 01 74 00", 0x81),
    ("unsubscribe-packet-id-0", V3, "a2 05 00 00 00 01 74", 0x81),
    # CONNECT rules (3.1).
    ("first-packet-not-connect", None, "c0 00", 0x82),
    ("first-packet-publish", None, "30 03 00 01 74", 0x82),
    ("second-connect", V3, f"10 0e {MQTT} 04 02 00 3c 00 02 63 31", 0x82),
    ("connect-reserved-flag", None, f"10 0e {MQTT} 04 03 00 3c 00 02 63 31", 0x81),
    ("connect-will-qos-3", None, f"10 0e {MQTT} 04 1e 00 3c 00 02 63 31", 0x81),
    ("connect-will-retain-without-will", None, f"10 0e {MQTT} 04 22 00 3c 00 02 63 31", 0x81),
    ("connect-will-qos-without-will", None, f"10 0e {MQTT} 04 0a 00 3c 00 02 63 31", 0x81),
    ("connect-311-password-without-username", None,
     f"10 11 {MQTT} 04 42 00 3c 00 02 63 31 00 01 70", 0x81),
    ("connect-trailing-bytes", None, f"10 0f {MQTT} 04 02 00 3c 00 02 63 31 00", 0x81),
    # SUBSCRIBE / UNSUBSCRIBE payloads (3.8.3, 3.10.3).
    ("subscribe-no-filters", V3, "82 02 00 01", 0x82),
    ("subscribe-5-no-filters", V5, "82 03 00 01 00", 0x82),
    ("subscribe-311-qos-3", V3, "82 06 00 01 00 01 74 03", 0x81),
    ("subscribe-311-reserved-bits", V3, "82 06 00 01 00 01 74 04", 0x81),
    ("subscribe-5-qos-3", V5, "82 07 00 01 00 00 01 74 03", 0x81),
    ("subscribe-5-reserved-bits", V5, "82 07 00 01 00 00 01 74 c0", 0x81),
    ("subscribe-5-retain-handling-3", V5, "82 07 00 01 00 00 01 74 30", 0x81),
    ("unsubscribe-no-filters", V3, "a2 02 00 01", 0x82),
    # Lengths that do not match the content.
    ("pingreq-trailing-byte", V3, "c0 01 00", 0x81),
    ("puback-311-trailing-byte", V3, "40 03 00 01 00", 0x81),
    ("disconnect-311-trailing-byte", V3, "e0 01 00", 0x81),
    # Packet types that are not valid here.
    ("reserved-type-0", V3, "00 00", 0x82),
    ("auth-in-311", V3, "f0 00", 0x82),
]


@pytest.mark.parametrize(("version", "wire", "reason"),
                         [pytest.param(v, w, r, id=i) for i, v, w, r in MALFORMED])
def test_malformed(version: int | None, wire: str, reason: int) -> None:
    decoder = Decoder(version)
    with pytest.raises(pk.MalformedPacket) as info:
        decoder.feed(h(wire))
    assert info.value.reason_code == reason, str(info.value)


@pytest.mark.parametrize(("version", "wire", "reason"),
                         [pytest.param(v, w, r, id=i) for i, v, w, r in MALFORMED])
def test_malformed_byte_by_byte(version: int | None, wire: str, reason: int) -> None:
    # The same verdict however the bytes are split (never a crash or a silent accept).
    decoder = Decoder(version)
    data = h(wire)
    with pytest.raises(pk.MalformedPacket) as info:
        for i in range(len(data)):
            decoder.feed(data[i:i + 1])
    assert info.value.reason_code == reason


UNSUPPORTED: list[tuple[str, str, int]] = [
    ("mqtt-level-6", f"10 0e {MQTT} 06 02 00 3c 00 02 63 31", 6),
    ("mqtt-level-3", f"10 0e {MQTT} 03 02 00 3c 00 02 63 31", 3),
    ("mqisdp-level-4", "10 10 00 06 4d 51 49 73 64 70 04 02 00 3c 00 02 63 31", 4),
    ("unknown-name", "10 0e 00 04 4d 51 54 58 04 02 00 3c 00 02 63 31", 4),
]


@pytest.mark.parametrize(("wire", "level"),
                         [pytest.param(w, lv, id=i) for i, w, lv in UNSUPPORTED])
def test_unsupported_protocol(wire: str, level: int) -> None:
    decoder = Decoder()
    with pytest.raises(pk.UnsupportedVersion) as info:
        decoder.feed(h(wire))
    assert info.value.reason_code == pk.RC_UNSUPPORTED_PROTOCOL_VERSION
    assert info.value.level == level
    assert decoder.version is None


@pytest.mark.parametrize("first", [b"G", b"\x00", b"\xc0", b"\x30"])
def test_non_connect_first_byte_refused_at_once(first: bytes) -> None:
    # No need to wait for the rest of a packet that cannot be a CONNECT (an HTTP request,
    # say): the first byte settles it.
    with pytest.raises(pk.MalformedPacket) as info:
        Decoder().feed(first)
    assert info.value.reason_code == pk.RC_PROTOCOL_ERROR


def test_packets_before_a_malformed_one_are_not_lost() -> None:
    # CONNECT and a PINGREQ followed by garbage in one chunk: the server must still see the
    # good packets (to answer CONNACK / PINGRESP) before it handles the error.
    good = encode(pk.Connect(client_id="c1"), V3) + encode(pk.PingReq())
    decoder = Decoder()
    with pytest.raises(pk.MalformedPacket) as info:
        decoder.feed(good + h("00 00"))
    assert info.value.packets == [pk.Connect(client_id="c1"), pk.PingReq()]
    assert info.value.reason_code == 0x82


def test_malformed_error_without_earlier_packets_has_empty_list() -> None:
    with pytest.raises(pk.MalformedPacket) as info:
        Decoder(V3).feed(h("00 00"))
    assert info.value.packets == []


def test_malformed_packet_default_reason() -> None:
    assert pk.MalformedPacket("x").reason_code == pk.RC_MALFORMED


def test_encode_rejects_non_packets() -> None:
    bad: Any = object()
    with pytest.raises(TypeError):
        encode(bad)
