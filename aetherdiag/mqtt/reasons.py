"""Reason codes (MQTT 5.0 section 2.4), MQTT 3.1.1's CONNACK return codes and SUBACK granted
QoS, and the one way reports print them: ``0x87 (not authorized)``, ``return code 1
(unacceptable protocol version)``, ``QoS 1 (SUBACK 0x01)``.

The byte on the wire is what evidence quotes. A 3.1.1 CONNACK carries a *return code* (0 to 5,
MQTT 3.1.1 section 3.2.2.3); client libraries translate it into the v5 reason code of the same
meaning (paho: return code 1 -> ``ReasonCode`` 0x84), so ``V5_OF_RETURN_CODE`` maps the one onto
the other and ``return_code_of`` maps a translated reason back. A v5 client that gets a CONNACK
whose code is 1 to 5 got a 3.1.1 CONNACK: v5 has no reason codes between 0x00 and 0x80 there.
"""

from __future__ import annotations

from typing import Any

from .protocol import Protocol

REASON_NAMES: dict[int, str] = {
    0x10: "no matching subscribers",
    # 0x80 is also MQTT 3.1.1's only SUBACK failure code, called "Failure" there
    0x80: "unspecified error / failure", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x8B: "server shutting down",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
    0x90: "topic name invalid", 0x93: "receive maximum exceeded", 0x95: "packet too large",
    0x97: "quota exceeded", 0x99: "payload format invalid", 0x9A: "retain not supported",
    0x9B: "QoS not supported", 0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded", 0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}

# DISCONNECT reasons a broker gives when it will not take what the client just sent (MQTT 5.0
# 3.14.2.1): a refusal of that packet, not the broker going away (0x8B), a takeover (0x8E) ...
REFUSING_DISCONNECTS = frozenset({0x80, 0x81, 0x82, 0x83, 0x87, 0x8F, 0x90, 0x93, 0x95, 0x97,
                                  0x99, 0x9A, 0x9B, 0x9E, 0xA1, 0xA2})

# MQTT 3.1.1 section 3.2.2.3: the CONNACK return codes (6-255 are reserved)
RETURN_CODE_NAMES: dict[int, str] = {
    0: "connection accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
}
# each 3.1.1 return code and the v5 CONNACK reason code of the same meaning (MQTT 5.0 3.2.2.2;
# the table paho's ``convert_connack_rc_to_reason_code`` follows)
V5_OF_RETURN_CODE: dict[int, int] = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}
_RETURN_CODE_OF_V5 = {v5: rc for rc, v5 in V5_OF_RETURN_CODE.items()}


def reason_name(code: int) -> str | None:
    """``0x87`` -> ``"not authorized"``; None for a code without a name here."""
    return REASON_NAMES.get(code)


def reason_text(rc: Any) -> str:
    """A reason code (an int, or paho's ``ReasonCode``) as ``0x87 (not authorized)``."""
    value = getattr(rc, "value", rc)
    try:
        code = int(value)
    except (TypeError, ValueError):
        return str(rc)
    name = REASON_NAMES.get(code) or (str(rc) if hasattr(rc, "value") else None)
    return f"0x{code:02X}" + (f" ({name})" if name else "")


def return_code_of(reason: int) -> int | None:
    """The 3.1.1 CONNACK return code a client library translated into v5 reason ``reason``
    (0x84 -> 1); None when no return code means that."""
    return _RETURN_CODE_OF_V5.get(reason)


def connack_read_in(code: int, spoken: Protocol) -> Protocol:
    """The protocol a CONNACK code was written in: what the client spoke, except that a v5
    client answered with 1 to 127 got a 3.1.1 CONNACK (v5 CONNACK codes are 0 or >= 0x80)."""
    return "3.1.1" if spoken == "3.1.1" or 0 < code < 0x80 else "5"


def connack_text(code: int, protocol: Protocol) -> str:
    """How a CONNACK code reads, in the protocol it was written in: ``return code 1
    (unacceptable protocol version)`` (3.1.1), ``0x84 (unsupported protocol version)``,
    ``0x00 (success)`` (5)."""
    if protocol == "3.1.1":
        name = RETURN_CODE_NAMES.get(code, "reserved")
        return f"return code {code} ({name})"
    return "0x00 (success)" if code == 0 else reason_text(code)


def connack_answer(code: int, read_in: Protocol, spoken: Protocol) -> str:
    """A CONNACK code for a client that spoke ``spoken``: ``0x86 (bad user name or password)``,
    or, when the broker answered in the other protocol, ``a 3.1.1 CONNACK, return code 1
    (unacceptable protocol version)``."""
    text = connack_text(code, read_in)
    return text if read_in == spoken else f"a {read_in} CONNACK, {text}"


def connack_meaning(code: int, protocol: Protocol) -> str:
    """The meaning alone: ``unacceptable protocol version``, ``success``."""
    if protocol == "3.1.1":
        return RETURN_CODE_NAMES.get(code, "reserved")
    return "success" if code == 0 else REASON_NAMES.get(code, "unknown")


def refuses_protocol(code: int, protocol: Protocol) -> bool:
    """The CONNACK says the broker does not speak the client's protocol version (3.1.1
    return code 1, v5 reason 0x84)."""
    return code == (1 if protocol == "3.1.1" else 0x84)


def granted_text(code: int) -> str:
    """A SUBACK code as what it grants: ``QoS 1 (SUBACK 0x01)``, or the failure's name."""
    if 0 <= code <= 2:
        return f"QoS {code} (SUBACK 0x{code:02X})"
    return f"SUBACK {reason_text(code)}"
