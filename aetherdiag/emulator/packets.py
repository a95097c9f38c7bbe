"""MQTT 3.1.1 and 5.0 packets as data: constants, the packet dataclasses and decoding errors.

How this works: every packet is a frozen, keyword-only dataclass; ``Packet`` is their union.
Protocol levels, packet types, reason codes and v5 property identifiers (with the wire type of
each property) are module constants named as in the specifications. ``MalformedPacket`` carries
the v5 reason code a server answers a bad packet with.

What may live here: the packet vocabulary, and nothing that reads or writes bytes (``codec``
decodes, ``encoding`` encodes; ``codec`` re-exports everything here). The ``new_*`` functions
at the end build the packets the emulator makes for every message more cheaply than the
dataclass constructors, with the same result.
"""

from __future__ import annotations

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


class UnsupportedVersion(MalformedPacket):
    """CONNECT named a protocol we do not speak; the server answers CONNACK 0x84 / 0x01."""

    def __init__(self, name: str, level: int) -> None:
        super().__init__(
            f"unsupported protocol {name!r} level {level}", RC_UNSUPPORTED_PROTOCOL_VERSION
        )
        self.level = level


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
