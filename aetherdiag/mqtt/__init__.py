"""MQTT facts every layer uses: protocol versions and reason codes. No I/O, no paho import.

- ``protocol``: the one ``Protocol`` type (``"3.1.1"`` or ``"5"``) and its one parser;
- ``reasons``: reason-code names (MQTT 5.0 2.4), 3.1.1's CONNACK return codes, and how reports
  print them;
- ``urls``: how a broker address is written in a URL (IPv6 in brackets).
"""

from __future__ import annotations

from .protocol import PROTOCOLS, Protocol, UnknownProtocol, parse_protocol
from .reasons import (
    REASON_NAMES,
    RETURN_CODE_NAMES,
    connack_text,
    granted_text,
    reason_name,
    reason_text,
)

__all__ = ["PROTOCOLS", "REASON_NAMES", "RETURN_CODE_NAMES", "Protocol", "UnknownProtocol",
           "connack_text", "granted_text", "parse_protocol", "reason_name", "reason_text"]
