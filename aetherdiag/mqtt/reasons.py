"""Reason codes (MQTT 5.0 section 2.4; 3.1.1's CONNACK and SUBACK codes map onto them) and the
one way reports print them: ``0x87 (not authorized)``."""

from __future__ import annotations

from typing import Any

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
