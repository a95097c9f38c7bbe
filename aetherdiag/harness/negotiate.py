"""Which MQTT version a real broker speaks: one test connection before the fleet starts.

How this works: ``negotiate(targets, timeout)`` CONNECTs once with MQTT 5.0 to each endpoint
and disconnects again. A broker that refuses 5.0 — it closes the connection before any
CONNACK (RabbitMQ 3.10), or answers with a 3.1.1 CONNACK, return code 1 (NATS 2.9; paho reads
it as v5 reason 0x84), or with v5 reason 0x84 — gets one more CONNECT, with 3.1.1; when that
one is accepted, every client of the run uses 3.1.1 and ``Negotiated.refusal`` says how 5.0
was refused (the commands print it as one warning line and show the version in the report's
``mqtt`` row). Any other answer leaves the version at 5.0: accepted, or a failure the fleet's
own connect then reports, naming the client (``worker-3``) that could not connect.
``workers`` and ``replay`` call it before their fleet connects; callers skip it when a
version is pinned (``--mqtt``) and on the embedded emulator, which speaks both. The probe
tries both versions itself (probe/checks.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from ..mqtt.protocol import Protocol
from ..mqtt.reasons import connack_answer, connack_text, refuses_protocol
from .clients import (
    KEEPALIVE,
    BrokerUnreachable,
    describe_connect_error,
    new_client,
    release,
    tls_context,
    wire_connack,
)
from .model import BrokerTarget

__all__ = ["Answer", "Negotiated", "connect_once", "negotiate"]


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What one CONNECT got: the CONNACK code as sent (``read_in``: the protocol it was written
    in), or the end of the connection before any CONNACK, or an error opening it."""

    spoken: Protocol
    code: int | None = None  # None: no CONNACK
    read_in: Protocol = "5"
    closed: bool = False  # the connection ended before a CONNACK
    disconnect: int | None = None  # a v5 DISCONNECT's reason code, when the broker sent one
    error: str = ""  # connect() failed, or nothing came back in time

    @property
    def accepted(self) -> bool:
        return self.code == 0

    @property
    def refuses_version(self) -> bool:
        """The broker does not speak the protocol asked for: the connection closed without a
        word, or a CONNACK saying so (3.1.1 return code 1, v5 0x84)."""
        if self.code is not None:
            return refuses_protocol(self.code, self.read_in)
        return self.closed and self.disconnect is None

    def describe(self) -> str:
        """``a 3.1.1 CONNACK, return code 1 (unacceptable protocol version)``, ``the
        connection closed before any CONNACK``, ``CONNACK 0x86 (bad user name or password)``."""
        if self.error:
            return self.error
        if self.code is not None:
            text = connack_answer(self.code, self.read_in, self.spoken)
            return text if self.read_in != self.spoken else f"CONNACK {text}"
        if self.disconnect is not None:
            return f"DISCONNECT {connack_text(self.disconnect, '5')} before any CONNACK"
        return "the connection closed before any CONNACK"


@dataclass(frozen=True, kw_only=True)
class Negotiated:
    """The version a run's clients use; ``refusal`` (with ``endpoint``) when 5.0 was refused
    and the run fell back to 3.1.1."""

    protocol: Protocol
    refusal: str = ""
    endpoint: str = ""

    @property
    def fell_back(self) -> bool:
        return bool(self.refusal)

    def message(self) -> str:
        """The one line that says so (a warning on stderr, and a note of the report)."""
        return (f"{self.endpoint} refused MQTT 5.0 ({self.refusal}): this run uses MQTT 3.1.1, "
                "which it accepts (--mqtt pins a version)")

    def label(self) -> str:
        """The report's ``mqtt`` row: ``3.1.1 (the broker refused 5.0)``, or the version."""
        return f"{self.protocol} (the broker refused 5.0)" if self.fell_back else self.protocol


def connect_once(target: BrokerTarget, protocol: Protocol, timeout: float, client_id: str
                 ) -> Answer:
    """CONNECT once with ``protocol`` and wait (bounded by ``timeout``) for the CONNACK or the
    end of the connection; a session that was accepted is closed with DISCONNECT."""
    seen: dict[str, Any] = {}

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        seen["connack"] = wire_connack(client, rc, protocol)

    def on_disconnect(_c: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        from_server = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        seen["closed"] = int(getattr(rc, "value", 0)) if from_server else None

    client = new_client(target, client_id, protocol, tls=tls_context(target))
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect_timeout = timeout
    try:
        try:
            if protocol == "5":
                client.connect(target.host, target.port, KEEPALIVE, clean_start=True)
            else:
                client.connect(target.host, target.port, KEEPALIVE)
        except Exception as exc:
            return Answer(spoken=protocol, error=describe_connect_error(exc, target, timeout))
        deadline = time.monotonic() + timeout
        while "connack" not in seen and "closed" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return Answer(spoken=protocol, error=f"no CONNACK within {timeout:g} s")
            if client.loop(timeout=min(0.1, left)) != mqtt.MQTT_ERR_SUCCESS and (
                    "connack" not in seen):
                seen.setdefault("closed", None)
        if "connack" in seen:
            code, read_in = seen["connack"]
            if code == 0:
                client.disconnect()
            return Answer(spoken=protocol, code=code, read_in=read_in)
        return Answer(spoken=protocol, closed=True, disconnect=seen["closed"])
    finally:
        release(client)


def negotiate(targets: Sequence[BrokerTarget], timeout: float, *, client_id: str
              ) -> Negotiated:
    """MQTT 5.0 if every endpoint accepts it; 3.1.1 when one refuses 5.0 and accepts 3.1.1
    (see the module comment). Raises ``BrokerUnreachable`` (one line) otherwise."""
    fallback: Negotiated | None = None
    for target in dict.fromkeys(targets):
        where = target.display()
        v5 = connect_once(target, "5", timeout, client_id)
        if v5.accepted:
            continue
        if not v5.refuses_version:  # refused otherwise, or unreachable: the fleet's own
            continue  # connect says so, naming the client that could not connect
        v311 = connect_once(target, "3.1.1", timeout, client_id)
        if not v311.accepted:
            both = v5.closed and v311.closed
            raise BrokerUnreachable(
                f"cannot connect to {where}: MQTT 5.0: {v5.describe()}; MQTT 3.1.1: "
                f"{v311.describe()}" + (" (is this an MQTT broker?)" if both else ""))
        if fallback is None:
            fallback = Negotiated(protocol="3.1.1", refusal=v5.describe(), endpoint=where)
    return fallback or Negotiated(protocol="5")


def _failure(answer: Answer) -> str:
    """A final answer in the fleet's words (``Member``): ``broker refused the connection: 0x86
    (bad user name or password)``."""
    if answer.error:
        return answer.error
    if answer.code is not None:
        return ("broker refused the connection: "
                + connack_answer(answer.code, answer.read_in, answer.spoken))
    return answer.describe()
