"""Encoding MQTT 3.1.1 and 5.0 packets to bytes (re-exported by ``codec``).

How this works: ``encode(packet, version)`` writes the fixed header (type, flags, remaining
length) and the body laid out as the specification says for ``version``; v5 adds reason codes
and properties (``encode_properties``). PUBLISH and the acknowledgements, which every message
brings, are written without the general framing helpers. No I/O, no broker state.
"""

from __future__ import annotations

from .packets import (
    _BIN,
    _BYTE,
    _STR,
    _U16,
    _U32,
    _VARINT,
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    MQTT_3_1_1,
    MQTT_5,
    PROPERTY_TYPES,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    REPEATABLE,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def _bin(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def encode_properties(props: Properties) -> bytes:
    if not props:
        return b"\x00"
    out = bytearray()
    for ident, value in props.items():
        kind = PROPERTY_TYPES[ident]
        values = value if ident in REPEATABLE else (value,)
        for v in values:
            out += _varint(ident)
            if kind == _BYTE:
                out.append(v)
            elif kind == _U16:
                out += v.to_bytes(2, "big")
            elif kind == _U32:
                out += v.to_bytes(4, "big")
            elif kind == _VARINT:
                out += _varint(v)
            elif kind == _STR:
                out += _str(v)
            elif kind == _BIN:
                out += _bin(v)
            else:
                out += _str(v[0]) + _str(v[1])
    return _varint(len(out)) + bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


_ACK_TYPES: dict[type, int] = {PubAck: PUBACK, PubRec: PUBREC, PubRel: PUBREL, PubComp: PUBCOMP}
_SHORT_ACK_HEADERS: dict[type, bytes] = {
    PubAck: b"\x40\x02", PubRec: b"\x50\x02", PubRel: b"\x62\x02", PubComp: b"\x70\x02",
}


def encode(packet: Packet, version: int = MQTT_3_1_1) -> bytes:
    """Serialise ``packet`` for a peer speaking protocol ``version``."""
    v5 = version == MQTT_5
    if isinstance(packet, Publish):
        return _encode_publish(packet, v5)
    if isinstance(packet, PubAck | PubRec | PubRel | PubComp):
        if not v5 or not (packet.reason_code or packet.properties):  # packet id only
            return _SHORT_ACK_HEADERS[type(packet)] + packet.packet_id.to_bytes(2, "big")
        ptype = _ACK_TYPES[type(packet)]
        first = (ptype << 4) | (0x02 if ptype == PUBREL else 0)
        body: bytes = packet.packet_id.to_bytes(2, "big") + bytes((packet.reason_code,))
        if packet.properties:
            body += encode_properties(packet.properties)
        return _frame(first, body)
    if isinstance(packet, ConnAck):
        body = bytes((1 if packet.session_present else 0, packet.reason_code))
        if v5:
            body += encode_properties(packet.properties)
        return _frame(CONNACK << 4, body)
    if isinstance(packet, SubAck):
        body = packet.packet_id.to_bytes(2, "big")
        if v5:
            body += encode_properties(packet.properties)
        return _frame(SUBACK << 4, body + bytes(packet.reason_codes))
    if isinstance(packet, UnsubAck):
        body = packet.packet_id.to_bytes(2, "big")
        if v5:
            body += encode_properties(packet.properties) + bytes(packet.reason_codes)
        return _frame(UNSUBACK << 4, body)
    if isinstance(packet, PingReq):
        return b"\xc0\x00"
    if isinstance(packet, PingResp):
        return b"\xd0\x00"
    if isinstance(packet, Disconnect):
        if v5 and (packet.reason_code or packet.properties):
            body = bytes((packet.reason_code,))
            if packet.properties:
                body += encode_properties(packet.properties)
            return _frame(DISCONNECT << 4, body)
        return b"\xe0\x00"
    if isinstance(packet, Connect):
        return _encode_connect(packet)
    if isinstance(packet, Subscribe):
        sbody = bytearray(packet.packet_id.to_bytes(2, "big"))
        if v5:
            sbody += encode_properties(packet.properties)
        for s in packet.subscriptions:
            opts = s.qos
            if v5:
                opts |= (
                    (0x04 if s.no_local else 0) | (0x08 if s.retain_as_published else 0)
                    | (s.retain_handling << 4)
                )
            sbody += _str(s.topic_filter) + bytes((opts,))
        return _frame((SUBSCRIBE << 4) | 0x02, bytes(sbody))
    if isinstance(packet, Unsubscribe):
        ubody = bytearray(packet.packet_id.to_bytes(2, "big"))
        if v5:
            ubody += encode_properties(packet.properties)
        for f in packet.topic_filters:
            ubody += _str(f)
        return _frame((UNSUBSCRIBE << 4) | 0x02, bytes(ubody))
    if isinstance(packet, Auth):
        body = bytes((packet.reason_code,)) + encode_properties(packet.properties)
        return _frame(AUTH << 4, body)
    raise TypeError(f"cannot encode {packet!r}")


def _encode_publish(packet: Publish, v5: bool) -> bytes:
    qos = packet.qos
    first = 0x30 | (qos << 1) | (0x08 if packet.dup else 0) | (0x01 if packet.retain else 0)
    raw = packet.topic.encode("utf-8")
    head = len(raw).to_bytes(2, "big") + raw
    if qos:
        head += (packet.packet_id or 0).to_bytes(2, "big")
    if v5:
        head += encode_properties(packet.properties)
    payload = packet.payload
    n = len(head) + len(payload)
    if n < 0x80:
        return bytes((first, n)) + head + payload
    return bytes((first,)) + _varint(n) + head + payload


def _encode_connect(p: Connect) -> bytes:
    v5 = p.protocol_level == MQTT_5
    flags = 0x02 if p.clean_start else 0
    if p.will is not None:
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
    if p.username is not None:
        flags |= 0x80
    if p.password is not None:
        flags |= 0x40
    body = bytearray(_str(p.protocol_name) + bytes((p.protocol_level, flags)))
    body += p.keepalive.to_bytes(2, "big")
    if v5:
        body += encode_properties(p.properties)
    body += _str(p.client_id)
    if p.will is not None:
        if v5:
            body += encode_properties(p.will.properties)
        body += _str(p.will.topic) + _bin(p.will.payload)
    if p.username is not None:
        body += _str(p.username)
    if p.password is not None:
        body += _bin(p.password)
    return _frame(CONNECT << 4, bytes(body))

