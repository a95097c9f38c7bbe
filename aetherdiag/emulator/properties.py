"""Which v5 properties each packet may carry, and the values some of them may take.

How this works: ``ALLOWED`` is the table of MQTT 5.0 2.2.2.2 (property -> the packets it may
appear in), turned around per packet type; ``WILL`` stands for the will properties of a
CONNECT. ``check(kind, props)`` is called by the codec for every packet that carries
properties: an identifier not valid for the packet type is a Malformed Packet (2.2.2.2: 0x81,
which is also what Mosquitto answers), a value the spec calls a Protocol Error (a 0/1 byte
property given another value, 3.1.2.11.6-7, 3.2.2.3) raises with 0x82. ``check_client_publish``
holds the two PUBLISH rules that depend on the direction (client to server): a Topic Alias
while the emulator's Topic Alias Maximum is 0 (0x94) and a Subscription Identifier
([MQTT-3.3.4-6]: a Protocol Error, not stripped).

What may live here: the property rules of the specification. No I/O, no broker state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import packets as pk
from .state import ProtocolViolation

WILL = 0  # the will properties of a CONNECT (no packet type is 0)

_ACKS = (pk.PUBACK, pk.PUBREC, pk.PUBREL, pk.PUBCOMP)
_WHERE: dict[int, tuple[int, ...]] = {
    pk.PROP_PAYLOAD_FORMAT: (pk.PUBLISH, WILL),
    pk.PROP_MESSAGE_EXPIRY: (pk.PUBLISH, WILL),
    pk.PROP_CONTENT_TYPE: (pk.PUBLISH, WILL),
    pk.PROP_RESPONSE_TOPIC: (pk.PUBLISH, WILL),
    pk.PROP_CORRELATION_DATA: (pk.PUBLISH, WILL),
    pk.PROP_SUBSCRIPTION_ID: (pk.PUBLISH, pk.SUBSCRIBE),
    pk.PROP_SESSION_EXPIRY: (pk.CONNECT, pk.CONNACK, pk.DISCONNECT),
    pk.PROP_ASSIGNED_CLIENT_ID: (pk.CONNACK,),
    pk.PROP_SERVER_KEEP_ALIVE: (pk.CONNACK,),
    pk.PROP_AUTH_METHOD: (pk.CONNECT, pk.CONNACK, pk.AUTH),
    pk.PROP_AUTH_DATA: (pk.CONNECT, pk.CONNACK, pk.AUTH),
    pk.PROP_REQUEST_PROBLEM_INFO: (pk.CONNECT,),
    pk.PROP_WILL_DELAY: (WILL,),
    pk.PROP_REQUEST_RESPONSE_INFO: (pk.CONNECT,),
    pk.PROP_RESPONSE_INFO: (pk.CONNACK,),
    pk.PROP_SERVER_REFERENCE: (pk.CONNACK, pk.DISCONNECT),
    pk.PROP_REASON_STRING: (pk.CONNACK, *_ACKS, pk.SUBACK, pk.UNSUBACK, pk.DISCONNECT,
                            pk.AUTH),
    pk.PROP_RECEIVE_MAXIMUM: (pk.CONNECT, pk.CONNACK),
    pk.PROP_TOPIC_ALIAS_MAXIMUM: (pk.CONNECT, pk.CONNACK),
    pk.PROP_TOPIC_ALIAS: (pk.PUBLISH,),
    pk.PROP_MAXIMUM_QOS: (pk.CONNACK,),
    pk.PROP_RETAIN_AVAILABLE: (pk.CONNACK,),
    pk.PROP_USER_PROPERTY: (WILL, *range(pk.CONNECT, pk.AUTH + 1)),
    pk.PROP_MAXIMUM_PACKET_SIZE: (pk.CONNECT, pk.CONNACK),
    pk.PROP_WILDCARD_SUB_AVAILABLE: (pk.CONNACK,),
    pk.PROP_SUB_ID_AVAILABLE: (pk.CONNACK,),
    pk.PROP_SHARED_SUB_AVAILABLE: (pk.CONNACK,),
}
# packet type (or WILL) -> the property identifiers it may carry
ALLOWED: dict[int, frozenset[int]] = {
    kind: frozenset(p for p, where in _WHERE.items() if kind in where)
    for kind in (WILL, *range(pk.CONNECT, pk.AUTH + 1))
}
# byte properties whose only values are 0 and 1 (any other value is a Protocol Error)
ZERO_OR_ONE = frozenset({
    pk.PROP_REQUEST_PROBLEM_INFO, pk.PROP_REQUEST_RESPONSE_INFO, pk.PROP_MAXIMUM_QOS,
    pk.PROP_RETAIN_AVAILABLE, pk.PROP_WILDCARD_SUB_AVAILABLE, pk.PROP_SUB_ID_AVAILABLE,
    pk.PROP_SHARED_SUB_AVAILABLE,
})
_NAMES = {pk.CONNECT: "CONNECT", pk.CONNACK: "CONNACK", pk.PUBLISH: "PUBLISH",
          pk.PUBACK: "PUBACK", pk.PUBREC: "PUBREC", pk.PUBREL: "PUBREL", pk.PUBCOMP: "PUBCOMP",
          pk.SUBSCRIBE: "SUBSCRIBE", pk.SUBACK: "SUBACK", pk.UNSUBSCRIBE: "UNSUBSCRIBE",
          pk.UNSUBACK: "UNSUBACK", pk.DISCONNECT: "DISCONNECT", pk.AUTH: "AUTH",
          WILL: "the will properties"}


def check(kind: int, props: Mapping[int, Any]) -> None:
    """Raise ``MalformedPacket`` when ``props`` break 2.2.2.2 for packet type ``kind``."""
    allowed = ALLOWED.get(kind, frozenset())
    for ident, value in props.items():
        if ident not in allowed:
            raise pk.MalformedPacket(
                f"property 0x{ident:02X} is not allowed in {_NAMES.get(kind, kind)}")
        if ident in ZERO_OR_ONE and value not in (0, 1):
            raise pk.MalformedPacket(f"property 0x{ident:02X} = {value} (0 or 1 only)",
                                     pk.RC_PROTOCOL_ERROR)


def check_client_publish(props: Mapping[int, Any]) -> None:
    """The rules for a PUBLISH from a client; raise ``ProtocolViolation``."""
    if pk.PROP_TOPIC_ALIAS in props:
        raise ProtocolViolation(0x94, "topic alias used but Topic Alias Maximum is 0")
    if pk.PROP_SUBSCRIPTION_ID in props:  # [MQTT-3.3.4-6]
        raise ProtocolViolation(pk.RC_PROTOCOL_ERROR,
                                "a PUBLISH from a client carries a Subscription Identifier")
