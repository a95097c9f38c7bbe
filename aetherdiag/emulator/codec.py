"""Sans-IO MQTT 3.1.1 and 5.0 packet codec.

How this works: packets are frozen, keyword-only dataclasses. ``Decoder.feed(data)`` takes
bytes as they arrive from a socket and returns the complete packets found so far; partial
frames stay buffered. ``encode(packet, version)`` turns a packet back into bytes. The protocol
version matters for both directions (v5 adds reason codes and properties); a decoder learns
it from the CONNECT packet it decodes, or is given it.

What may live here: byte layouts from the specifications and nothing else. No sockets, no
asyncio, no broker state. Malformed input raises ``MalformedPacket`` carrying the v5 reason
code the server should answer with (0x81 malformed, 0x82 protocol error, 0x95 too large).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5

# Packet type numbers (first nibble of the fixed header).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15,
)

# v5 reason codes used by the emulator.
RC_SUCCESS = 0x00
RC_GRANTED_QOS_1 = 0x01
RC_GRANTED_QOS_2 = 0x02
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_IMPLEMENTATION_SPECIFIC = 0x83
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_KEEP_ALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_ID_IN_USE = 0x91
RC_PACKET_ID_NOT_FOUND = 0x92
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93
RC_PACKET_TOO_LARGE = 0x95
RC_QUOTA_EXCEEDED = 0x97
RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E

# MQTT 3.1.1 CONNACK return codes.
RC311_ACCEPTED = 0
RC311_BAD_PROTOCOL = 1
RC311_ID_REJECTED = 2
RC311_SERVER_UNAVAILABLE = 3

# v5 property identifiers.
PROP_PAYLOAD_FORMAT = 0x01
PROP_MESSAGE_EXPIRY = 0x02
PROP_CONTENT_TYPE = 0x03
PROP_RESPONSE_TOPIC = 0x08
PROP_CORRELATION_DATA = 0x09
PROP_SUBSCRIPTION_ID = 0x0B
PROP_SESSION_EXPIRY = 0x11
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_AUTH_METHOD = 0x15
PROP_AUTH_DATA = 0x16
PROP_REQUEST_PROBLEM_INFO = 0x17
PROP_WILL_DELAY = 0x18
PROP_REQUEST_RESPONSE_INFO = 0x19
PROP_RESPONSE_INFO = 0x1A
PROP_SERVER_REFERENCE = 0x1C
PROP_REASON_STRING = 0x1F
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_TOPIC_ALIAS = 0x23
PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_USER_PROPERTY = 0x26
PROP_MAXIMUM_PACKET_SIZE = 0x27
PROP_WILDCARD_SUB_AVAILABLE = 0x28
PROP_SUB_ID_AVAILABLE = 0x29
PROP_SHARED_SUB_AVAILABLE = 0x2A

_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTY_TYPES: dict[int, int] = {
    PROP_PAYLOAD_FORMAT: _BYTE,
    PROP_MESSAGE_EXPIRY: _U32,
    PROP_CONTENT_TYPE: _STR,
    PROP_RESPONSE_TOPIC: _STR,
    PROP_CORRELATION_DATA: _BIN,
    PROP_SUBSCRIPTION_ID: _VARINT,
    PROP_SESSION_EXPIRY: _U32,
    PROP_ASSIGNED_CLIENT_ID: _STR,
    PROP_SERVER_KEEP_ALIVE: _U16,
    PROP_AUTH_METHOD: _STR,
    PROP_AUTH_DATA: _BIN,
    PROP_REQUEST_PROBLEM_INFO: _BYTE,
    PROP_WILL_DELAY: _U32,
    PROP_REQUEST_RESPONSE_INFO: _BYTE,
    PROP_RESPONSE_INFO: _STR,
    PROP_SERVER_REFERENCE: _STR,
    PROP_REASON_STRING: _STR,
    PROP_RECEIVE_MAXIMUM: _U16,
    PROP_TOPIC_ALIAS_MAXIMUM: _U16,
    PROP_TOPIC_ALIAS: _U16,
    PROP_MAXIMUM_QOS: _BYTE,
    PROP_RETAIN_AVAILABLE: _BYTE,
    PROP_USER_PROPERTY: _PAIR,
    PROP_MAXIMUM_PACKET_SIZE: _U32,
    PROP_WILDCARD_SUB_AVAILABLE: _BYTE,
    PROP_SUB_ID_AVAILABLE: _BYTE,
    PROP_SHARED_SUB_AVAILABLE: _BYTE,
}
# Properties that may appear more than once; decoded as a tuple of values.
REPEATABLE = frozenset({PROP_USER_PROPERTY, PROP_SUBSCRIPTION_ID})

Properties = dict[int, Any]
DEFAULT_MAX_PACKET_SIZE = 1 << 20  # 1 MiB: generous for tasks, small enough to bound memory
_EMPTY: Properties = {}


class MalformedPacket(Exception):
    """The bytes are not a valid MQTT packet. ``reason_code`` is the v5 code to answer with.

    ``packets`` holds the valid packets ``Decoder.feed`` decoded from the same data before
    the bad one; the server handles them first, then answers the error.
    """

    def __init__(self, message: str, reason_code: int = RC_MALFORMED) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.packets: list[Packet] = []


def _props() -> Properties:
    return {}


@dataclass(frozen=True, kw_only=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class Connect:
    protocol_level: int = MQTT_3_1_1
    protocol_name: str = "MQTT"
    client_id: str = ""
    clean_start: bool = True
    keepalive: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnAck:
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class PubRec:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class PubRel:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class PubComp:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class SubscriptionRequest:
    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Subscribe:
    packet_id: int
    subscriptions: tuple[SubscriptionRequest, ...]
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


@dataclass(frozen=True, kw_only=True, slots=True)
class Auth:
    reason_code: int = 0
    properties: Properties = field(default_factory=_props)


Packet = (
    Connect | ConnAck | Publish | PubAck | PubRec | PubRel | PubComp | Subscribe | SubAck
    | Unsubscribe | UnsubAck | PingReq | PingResp | Disconnect | Auth
)

# ---------------------------------------------------------------------------------------------
# Hot-path constructors: the same objects as the dataclass constructors make (the generated
# ``__init__`` only assigns the fields), built by the slots' own setters. A frozen dataclass's
# ``__init__`` goes through ``object.__setattr__`` once per field and parses keywords, which
# costs two to three times as much; the emulator builds several packets per message.

_new = object.__new__
_P_TOPIC, _P_PAYLOAD, _P_QOS, _P_RETAIN, _P_DUP, _P_PID, _P_PROPS = (
    Publish.__dict__[name].__set__
    for name in ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")
)


def new_publish(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int | None,
    properties: Properties,
) -> Publish:
    """``Publish(topic=..., ...)`` with every field given, faster."""
    p: Publish = _new(Publish)
    _P_TOPIC(p, topic)
    _P_PAYLOAD(p, payload)
    _P_QOS(p, qos)
    _P_RETAIN(p, retain)
    _P_DUP(p, dup)
    _P_PID(p, packet_id)
    _P_PROPS(p, properties)
    return p


_Ack = PubAck | PubRec | PubRel | PubComp
_ACK_SETTERS: dict[type, tuple[Callable[[Any, Any], None], ...]] = {
    cls: tuple(cls.__dict__[name].__set__ for name in ("packet_id", "reason_code", "properties"))
    for cls in (PubAck, PubRec, PubRel, PubComp)
}
_PA_PID, _PA_RC, _PA_PROPS = _ACK_SETTERS[PubAck]


def new_ack(cls: type[_Ack], packet_id: int, reason_code: int, properties: Properties) -> _Ack:
    """``cls(packet_id=..., reason_code=..., properties=...)`` for the four acks, faster."""
    p: _Ack = _new(cls)
    pid_set, rc_set, props_set = _ACK_SETTERS[cls]
    pid_set(p, packet_id)
    rc_set(p, reason_code)
    props_set(p, properties)
    return p


def new_puback(packet_id: int, reason_code: int, properties: Properties) -> PubAck:
    """``PubAck(packet_id=..., reason_code=..., properties=...)``, faster."""
    p: PubAck = _new(PubAck)
    _PA_PID(p, packet_id)
    _PA_RC(p, reason_code)
    _PA_PROPS(p, properties)
    return p

# ---------------------------------------------------------------------------------------------
# Primitive readers


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def remaining(self) -> int:
        return self.end - self.pos

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MalformedPacket("packet ends early")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise MalformedPacket("packet ends early")
        v: int = (self.buf[self.pos] << 8) | self.buf[self.pos + 1]
        self.pos += 2
        return v

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise MalformedPacket("packet ends early")
        v: int = struct.unpack_from(">I", self.buf, self.pos)[0]
        self.pos += 4
        return v

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise MalformedPacket("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > self.end:
            raise MalformedPacket("string or binary field runs past the packet")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def string(self) -> str:
        raw = self.binary()
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("invalid UTF-8 in a string field") from None
        if "\x00" in s:
            raise MalformedPacket("U+0000 in a string field")
        # Surrogates cannot survive utf-8 decoding, so only the NUL check is needed here.
        return s

    def rest(self) -> bytes:
        v = bytes(self.buf[self.pos : self.end])
        self.pos = self.end
        return v

    def properties(self) -> Properties:
        length = self.varint()
        end = self.pos + length
        if end > self.end:
            raise MalformedPacket("properties run past the packet")
        props: Properties = {}
        while self.pos < end:
            ident = self.varint()
            kind = PROPERTY_TYPES.get(ident)
            if kind is None:
                raise MalformedPacket(f"unknown property 0x{ident:02X}")
            value: Any
            if kind == _BYTE:
                value = self.byte()
            elif kind == _U16:
                value = self.u16()
            elif kind == _U32:
                value = self.u32()
            elif kind == _VARINT:
                value = self.varint()
            elif kind == _STR:
                value = self.string()
            elif kind == _BIN:
                value = self.binary()
            else:
                value = (self.string(), self.string())
            if ident in REPEATABLE:
                props[ident] = (*props.get(ident, ()), value)
            elif ident in props:
                raise MalformedPacket(
                    f"property 0x{ident:02X} given twice", RC_PROTOCOL_ERROR
                )
            else:
                props[ident] = value
        if self.pos != end:
            raise MalformedPacket("properties length does not match their content")
        return props


# ---------------------------------------------------------------------------------------------
# Decoding

_ACK_CLASSES: dict[int, type[PubAck | PubRec | PubRel | PubComp]] = {
    PUBACK: PubAck, PUBREC: PubRec, PUBREL: PubRel, PUBCOMP: PubComp,
}
# First bytes of acknowledgements (valid flags) that ``Decoder.feed`` builds directly when
# their remaining length is 2: packet id only, reason code 0 and no properties in v5 too.
_SHORT_ACKS: dict[int, type[PubAck | PubRec | PubRel | PubComp]] = {
    0x40: PubAck, 0x50: PubRec, 0x62: PubRel, 0x70: PubComp,
}


class Decoder:
    """Incremental decoder for one connection.

    ``version`` is the protocol level; a server-side decoder starts at ``None`` and learns it
    from CONNECT. ``max_packet_size`` bounds the memory one peer can make us hold.
    """

    def __init__(
        self, version: int | None = None, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    ) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return every complete packet now available, in order."""
        buf = self._buf
        if buf:
            buf += data
            data = bytes(buf)
        elif type(data) is not bytes:
            data = bytes(data)
        out: list[Packet] = []
        pos = 0
        n = len(data)
        try:
            if self.version is None and n and data[0] >> 4 != CONNECT:
                # Refuse at the first byte, without waiting for the rest of a bogus packet.
                raise MalformedPacket("first packet is not CONNECT", RC_PROTOCOL_ERROR)
            while n - pos >= 2:
                # Fixed header: type/flags byte, then the remaining length (1-4 bytes).
                length = data[pos + 1]
                i = pos + 2
                if length & 0x80:  # more than one length byte
                    length = 0
                    i = pos + 1
                    for shift in (0, 7, 14, 21):
                        if i >= n:
                            length = -1
                            break
                        b = data[i]
                        i += 1
                        length |= (b & 0x7F) << shift
                        if not b & 0x80:
                            break
                    else:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                    if length < 0:
                        break
                if i - pos + length > self.max_packet_size:
                    raise MalformedPacket(
                        "packet larger than the maximum size", RC_PACKET_TOO_LARGE
                    )
                end = i + length
                if end > n:
                    break
                first = data[pos]
                packet: Packet | None = None
                if self.version is not None:  # after CONNECT: the common packets, directly
                    if first >> 4 == PUBLISH:
                        packet = self._publish_fast(first, data, i, end)
                    elif length == 2 and first in _SHORT_ACKS:
                        packet = new_ack(_SHORT_ACKS[first], (data[i] << 8) | data[i + 1], 0, {})
                if packet is None:
                    packet = self._decode(first, data[i:end])
                out.append(packet)
                pos = end
        except MalformedPacket as exc:
            exc.packets = out
            if not buf:  # keep what was fed, as a decoder that failed midway always did
                buf += data
            raise
        if buf:
            if pos:
                del buf[:pos]
        elif pos < n:
            buf += data[pos:]
        return out

    def _publish_fast(self, first: int, data: bytes, i: int, end: int) -> Publish | None:
        """A well-formed PUBLISH without properties, decoded from ``data[i:end]`` in place.

        None when anything is unusual (bad flags, short fields, invalid UTF-8, v5 properties):
        ``_decode`` then gives the packet or the exact error.
        """
        qos = (first >> 1) & 0x03
        if qos == 3 or (first & 0x08 and not qos) or i + 2 > end:
            return None
        t = i + 2 + ((data[i] << 8) | data[i + 1])
        if t > end:
            return None
        try:
            topic = data[i + 2 : t].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "\x00" in topic:
            return None
        pid = None
        if qos:
            if t + 2 > end:
                return None
            pid = (data[t] << 8) | data[t + 1]
            if not pid:
                return None
            t += 2
        if self.version == MQTT_5:
            if t >= end or data[t]:
                return None  # properties: the general path reads them
            t += 1
        return new_publish(
            topic, data[t:end], qos, bool(first & 0x01), bool(first & 0x08), pid, {}
        )

    def buffered(self) -> int:
        return len(self._buf)

    def _decode(self, first: int, body: bytes) -> Packet:
        ptype = first >> 4
        flags = first & 0x0F
        r = _Reader(body, 0, len(body))
        if self.version is None and ptype != CONNECT:
            raise MalformedPacket("first packet is not CONNECT", RC_PROTOCOL_ERROR)
        if ptype == PUBLISH:
            return self._publish(flags, r)
        if ptype in (PUBREL, SUBSCRIBE, UNSUBSCRIBE):
            if flags != 0x02:
                raise MalformedPacket("reserved fixed-header flags must be 0010")
        elif flags != 0:
            raise MalformedPacket("reserved fixed-header flags must be 0000")
        v5 = self.version == MQTT_5
        packet: Packet
        if ptype == CONNECT:
            packet = self._connect(r)
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            pid = r.u16()
            rc = 0
            props: Properties = _EMPTY
            if v5 and r.remaining():
                rc = r.byte()
                if r.remaining():
                    props = r.properties()
            cls = _ACK_CLASSES[ptype]
            packet = cls(packet_id=pid, reason_code=rc, properties=dict(props))
        elif ptype == SUBSCRIBE:
            packet = self._subscribe(r, v5)
        elif ptype == UNSUBSCRIBE:
            pid = r.u16()
            if pid == 0:
                raise MalformedPacket("packet identifier 0")
            props = r.properties() if v5 else {}
            filters: list[str] = []
            while r.remaining():
                filters.append(r.string())
            if not filters:
                raise MalformedPacket("UNSUBSCRIBE with no topic filters", RC_PROTOCOL_ERROR)
            packet = Unsubscribe(packet_id=pid, topic_filters=tuple(filters), properties=props)
        elif ptype == PINGREQ:
            packet = PingReq()
        elif ptype == PINGRESP:
            packet = PingResp()
        elif ptype == DISCONNECT:
            rc = 0
            props = {}
            if v5 and r.remaining():
                rc = r.byte()
                if r.remaining():
                    props = r.properties()
            packet = Disconnect(reason_code=rc, properties=props)
        elif ptype == CONNACK:
            ack_flags = r.byte()
            rc = r.byte()
            props = r.properties() if v5 and r.remaining() else {}
            packet = ConnAck(session_present=bool(ack_flags & 1), reason_code=rc, properties=props)
        elif ptype == SUBACK:
            pid = r.u16()
            props = r.properties() if v5 else {}
            packet = SubAck(packet_id=pid, reason_codes=tuple(r.rest()), properties=props)
        elif ptype == UNSUBACK:
            pid = r.u16()
            props = r.properties() if v5 and r.remaining() else {}
            packet = UnsubAck(packet_id=pid, reason_codes=tuple(r.rest()), properties=props)
        elif ptype == AUTH and v5:
            rc = r.byte() if r.remaining() else 0
            props = r.properties() if r.remaining() else {}
            packet = Auth(reason_code=rc, properties=props)
        else:
            raise MalformedPacket(f"packet type {ptype} is not valid here", RC_PROTOCOL_ERROR)
        if r.remaining():
            raise MalformedPacket("trailing bytes after the packet")
        return packet

    def _publish(self, flags: int, r: _Reader) -> Publish:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        dup = bool(flags & 0x08)
        if dup and qos == 0:
            raise MalformedPacket("PUBLISH with DUP set at QoS 0")
        topic = r.string()
        pid = None
        if qos:
            pid = r.u16()
            if pid == 0:
                raise MalformedPacket("packet identifier 0")
        props = r.properties() if self.version == MQTT_5 else {}
        return Publish(
            topic=topic, payload=r.rest(), qos=qos, retain=bool(flags & 0x01), dup=dup,
            packet_id=pid, properties=props,
        )

    def _connect(self, r: _Reader) -> Connect:
        if self.version is not None:
            raise MalformedPacket("second CONNECT on one connection", RC_PROTOCOL_ERROR)
        name = r.string()
        level = r.byte()
        if (name, level) not in (("MQTT", MQTT_3_1_1), ("MQTT", MQTT_5), ("MQIsdp", MQTT_3_1)):
            raise UnsupportedVersion(name, level)
        self.version = level
        cflags = r.byte()
        if cflags & 0x01:
            raise MalformedPacket("CONNECT reserved flag set")
        keepalive = r.u16()
        props = r.properties() if level == MQTT_5 else {}
        client_id = r.string()
        will = None
        will_flag = bool(cflags & 0x04)
        will_qos = (cflags >> 3) & 0x03
        will_retain = bool(cflags & 0x20)
        if will_flag:
            if will_qos == 3:
                raise MalformedPacket("will QoS 3")
            will_props = r.properties() if level == MQTT_5 else {}
            will_topic = r.string()
            will_payload = r.binary()
            will = Will(
                topic=will_topic, payload=will_payload, qos=will_qos, retain=will_retain,
                properties=will_props,
            )
        elif will_qos or will_retain:
            raise MalformedPacket("will QoS or retain set without the will flag")
        username = r.string() if cflags & 0x80 else None
        password = r.binary() if cflags & 0x40 else None
        if password is not None and username is None and level != MQTT_5:
            raise MalformedPacket("password without user name")
        return Connect(
            protocol_level=level, protocol_name=name, client_id=client_id,
            clean_start=bool(cflags & 0x02), keepalive=keepalive, will=will,
            username=username, password=password, properties=props,
        )

    def _subscribe(self, r: _Reader, v5: bool) -> Subscribe:
        pid = r.u16()
        if pid == 0:
            raise MalformedPacket("packet identifier 0")
        props = r.properties() if v5 else {}
        if len(props.get(PROP_SUBSCRIPTION_ID, ())) > 1:
            raise MalformedPacket("Subscription Identifier given twice", RC_PROTOCOL_ERROR)
        subs: list[SubscriptionRequest] = []
        while r.remaining():
            topic_filter = r.string()
            opts = r.byte()
            if v5:
                if opts & 0xC0:
                    raise MalformedPacket("reserved subscription option bits set")
                rh = (opts >> 4) & 0x03
                if rh == 3 or opts & 0x03 == 3:
                    raise MalformedPacket("invalid subscription options")
                subs.append(SubscriptionRequest(
                    topic_filter=topic_filter, qos=opts & 0x03, no_local=bool(opts & 0x04),
                    retain_as_published=bool(opts & 0x08), retain_handling=rh,
                ))
            else:
                if opts & 0xFC or opts == 3:
                    raise MalformedPacket("invalid requested QoS byte")
                subs.append(SubscriptionRequest(topic_filter=topic_filter, qos=opts))
        if not subs:
            raise MalformedPacket("SUBSCRIBE with no topic filters", RC_PROTOCOL_ERROR)
        return Subscribe(packet_id=pid, subscriptions=tuple(subs), properties=props)


class UnsupportedVersion(MalformedPacket):
    """CONNECT named a protocol we do not speak; the server answers CONNACK 0x84 / 0x01."""

    def __init__(self, name: str, level: int) -> None:
        super().__init__(
            f"unsupported protocol {name!r} level {level}", RC_UNSUPPORTED_PROTOCOL_VERSION
        )
        self.level = level


# ---------------------------------------------------------------------------------------------
# Encoding


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
