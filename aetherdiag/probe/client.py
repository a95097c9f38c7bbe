"""A small synchronous MQTT client for the probe: one paho-mqtt client on its own thread.

How this works: ``ProbeClient`` wraps an unmodified paho-mqtt 2.x client (3.1.1 or 5.0) whose
network loop runs on paho's own thread. Callbacks only record what happened (CONNACK, SUBACK
codes, PUBACK codes, received PUBLISH packets, the broker's DISCONNECT) under one condition
variable; every public method sends something and then waits for the answer with a timeout,
so a probe step can fail but never hang. ``drop()`` closes the TCP connection without sending
DISCONNECT, which is how a crashed worker looks to the broker.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..harness.clients import (
    connect_properties,
    describe_connect_error,
    new_client,
    release,
    tls_context,
    wire_connack,
)
from ..harness.model import BrokerTarget
from ..mqtt.protocol import Protocol
from ..mqtt.reasons import connack_text

V311: Protocol = "3.1.1"
V5: Protocol = "5"
KEEPALIVE = 30  # shorter than the fleet's: a probe client lives for seconds


class ConnectFailed(Exception):
    """The TCP (or TLS / WebSocket) connection could not be opened at all."""


@dataclass(frozen=True, kw_only=True)
class Received:
    """One PUBLISH as the client saw it; ``at`` is ``time.monotonic()`` on arrival."""

    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    mid: int
    at: float

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


@dataclass(frozen=True, kw_only=True)
class Connack:
    """What CONNECT got back. ``reason_code`` is the code on the wire (None when the socket
    closed before CONNACK), read in ``protocol``: a 3.1.1 return code (0-5) or a v5 reason
    code. A v5 CONNECT can get a 3.1.1 CONNACK back (NATS: return code 1)."""

    reason_code: int | None
    protocol: Protocol = "5"
    session_present: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.reason_code == 0

    def quoted(self, spoken: Protocol) -> str:
        """The answer as sent, with its meaning: ``CONNACK return code 0 (connection
        accepted)``, ``CONNACK 0x86 (bad user name or password)``, or, for a CONNACK in the
        other protocol, ``a 3.1.1 CONNACK: return code 1 (unacceptable protocol version)``."""
        if self.reason_code is None:
            return "connection closed before CONNACK"
        text = connack_text(self.reason_code, self.protocol)
        return f"CONNACK {text}" if self.protocol == spoken else (
            f"a {self.protocol} CONNACK: {text}")


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A SUBACK / UNSUBACK / PUBACK: ``codes`` (None on timeout) and any DISCONNECT seen."""

    codes: tuple[int, ...] | None
    disconnect: int | None = None  # reason code of the broker's DISCONNECT (v5) / -1 closed

    @property
    def refused(self) -> bool:
        return self.disconnect is not None or any(c >= 0x80 for c in self.codes or ())


@dataclass
class _Pending:
    event: threading.Event = field(default_factory=threading.Event)
    codes: tuple[int, ...] = ()


def _code(rc: Any) -> int:
    return int(getattr(rc, "value", rc))


def _props(p: Properties | None) -> dict[str, Any]:
    if p is None:
        return {}
    try:
        return dict(p.json())  # type: ignore[no-untyped-call]
    except Exception:
        return {}


class ProbeClient:
    """One MQTT client with bounded, blocking operations (see the module comment)."""

    def __init__(
        self,
        target: BrokerTarget,
        client_id: str,
        *,
        version: Protocol = V5,
        clean: bool = True,
        session_expiry: int = 0,
        manual_ack: bool = False,
    ) -> None:
        self.target = target
        self.client_id = client_id
        self.version = version
        self.clean = clean
        self.session_expiry = session_expiry
        self.manual_ack = manual_ack
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self.connack: Connack | None = None
        self.disconnect_code: int | None = None  # set when the connection ends
        self.disconnect_from_server = False
        self._subs: dict[int, _Pending] = {}
        self._pubs: dict[int, _Pending] = {}
        self._acked = 0  # messages[:_acked] were acknowledged by ack_all
        self._tls = tls_context(target)
        self._paho = self._make_paho()

    # -- set-up -------------------------------------------------------------------------------

    def _make_paho(self) -> mqtt.Client:
        client = new_client(self.target, self.client_id, self.version, tls=self._tls,
                            clean_start=self.clean, manual_ack=self.manual_ack)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_suback
        client.on_unsubscribe = self._on_suback
        client.on_publish = self._on_publish
        return client

    # -- callbacks (paho's thread) ------------------------------------------------------------

    def _on_connect(self, client: Any, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        code, read_in = wire_connack(client, rc, self.version)
        with self._cond:
            self.connack = Connack(
                reason_code=code, protocol=read_in,
                session_present=bool(flags.session_present),
                properties=_props(props), elapsed_s=time.monotonic() - self._t0,
            )
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        with self._cond:
            self.disconnect_from_server = bool(
                getattr(flags, "is_disconnect_packet_from_server", False))
            self.disconnect_code = _code(rc) if self.disconnect_from_server else -1
            for pending in (*self._subs.values(), *self._pubs.values()):
                pending.event.set()
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        rec = Received(topic=msg.topic, payload=bytes(msg.payload), qos=msg.qos,
                       dup=bool(msg.dup), retain=bool(msg.retain), mid=msg.mid,
                       at=time.monotonic())
        with self._cond:
            self.messages.append(rec)
            self._cond.notify_all()

    def _on_suback(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        if not isinstance(codes, list | tuple):
            codes = [codes]
        with self._cond:
            pending = self._subs.setdefault(mid, _Pending())
            pending.codes = tuple(_code(x) for x in codes)
            pending.event.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._cond:
            pending = self._pubs.setdefault(mid, _Pending())
            pending.codes = (_code(rc),)
            pending.event.set()

    # -- operations (caller's thread) ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.connack is not None and self.connack.accepted and self.disconnect_code is None

    def connect(self, timeout: float) -> Connack:
        """Open the connection and wait (bounded) for the CONNACK, whatever its code.

        Raises ``ConnectFailed`` when no connection can be opened at all.
        """
        self._t0 = time.monotonic()
        self._paho.connect_timeout = max(0.1, timeout)
        try:
            if self.version == V5:
                self._paho.connect(self.target.host, self.target.port, keepalive=KEEPALIVE,
                                   clean_start=self.clean,
                                   properties=connect_properties(self.session_expiry))
            else:
                self._paho.connect(self.target.host, self.target.port, keepalive=KEEPALIVE)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConnectFailed(describe_connect_error(exc, self.target,
                                                       self._paho.connect_timeout)) from None
        self._paho.loop_start()
        self.wait(lambda: self.connack is not None or self.disconnect_code is not None,
                  timeout)
        if self.connack is None:
            return Connack(reason_code=None, protocol=self.version,
                           elapsed_s=time.monotonic() - self._t0)
        return self.connack

    def subscribe(self, topic_filter: str, qos: int, timeout: float, *,
                  no_local: bool = False) -> Answer:
        """SUBSCRIBE one filter; the SUBACK codes, or the DISCONNECT that answered it."""
        if self.version == V5:
            opts = SubscribeOptions(qos=qos, noLocal=no_local)
            rc, mid = self._paho.subscribe(topic_filter, options=opts)
        else:
            rc, mid = self._paho.subscribe(topic_filter, qos)
        return self._await(self._subs, rc, mid, timeout)

    def subscribe_raw(self, topic_filter: str, qos: int, timeout: float) -> Answer:
        """SUBSCRIBE without paho's client-side filter validation (for malformed filters).

        Uses paho's packet writer directly; paho 2.x has had it under this name throughout.
        """
        send = getattr(self._paho, "_send_subscribe", None)
        if send is None:  # pragma: no cover - a future paho without it
            return self.subscribe(topic_filter, qos, timeout)
        option: SubscribeOptions | int = (SubscribeOptions(qos=qos) if self.version == V5
                                          else qos)
        rc, mid = send(False, [(topic_filter.encode("utf-8"), option)], None)
        return self._await(self._subs, rc, mid, timeout)

    def unsubscribe(self, topic_filter: str, timeout: float) -> Answer:
        rc, mid = self._paho.unsubscribe(topic_filter)
        return self._await(self._subs, rc, mid, timeout)

    def publish(self, topic: str, payload: bytes, qos: int, timeout: float, *,
                retain: bool = False) -> Answer:
        """PUBLISH and wait for its acknowledgement (QoS 0: until written)."""
        info = self._paho.publish(topic, payload, qos=qos, retain=retain)
        return self._await(self._pubs, info.rc, info.mid, timeout)

    def publish_many(self, items: Sequence[tuple[str, bytes, int]], timeout: float
                     ) -> list[Answer]:
        """Send every message back to back, then wait (bounded) for all acknowledgements."""
        sent: list[tuple[Any, int]] = []
        for topic, payload, qos in items:
            info = self._paho.publish(topic, payload, qos=qos)
            sent.append((info.rc, info.mid))
        deadline = time.monotonic() + timeout
        return [self._await(self._pubs, rc, mid, max(0.0, deadline - time.monotonic()))
                for rc, mid in sent]

    def _await(self, table: dict[int, _Pending], rc: Any, mid: int | None, timeout: float
               ) -> Answer:
        if _code(rc) != 0 or mid is None:
            return Answer(codes=None, disconnect=self.disconnect_code
                          if self.disconnect_code is not None else -1)
        with self._cond:
            pending = table.setdefault(mid, _Pending())
        pending.event.wait(timeout)
        with self._cond:
            table.pop(mid, None)
            if pending.event.is_set() and pending.codes:
                return Answer(codes=pending.codes)
            return Answer(codes=None, disconnect=self.disconnect_code)

    def ack_all(self) -> int:
        """Acknowledge every QoS 1/2 message received so far and not yet acknowledged
        (``manual_ack`` clients; safe to call repeatedly: a packet id the broker has already
        reused for a newer message is never acknowledged twice)."""
        with self._cond:
            todo = [(m.mid, m.qos) for m in self.messages[self._acked:] if m.qos]
            self._acked = len(self.messages)
        for mid, qos in todo:
            self._paho.ack(mid, qos)
        return len(todo)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (evaluated under the lock) is true, at most ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def received(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def drop(self, timeout: float = 2.0) -> None:
        """Vanish like a crashed worker: close TCP without DISCONNECT."""
        sock = self._paho.socket()
        raw = getattr(sock, "_socket", sock)  # paho's WebSocket wrapper keeps the socket here
        if isinstance(raw, socket.socket):
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
        self.wait(lambda: self.disconnect_code is not None, timeout)
        self._stop_loop()

    def close(self, timeout: float = 2.0, *, end_session: bool = False) -> None:
        """DISCONNECT politely (ending a v5 persistent session when asked) and stop the loop."""
        if self.connected:
            props: Properties | None = None
            if self.version == V5 and end_session:
                props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 0
            with contextlib.suppress(Exception):
                self._paho.disconnect(properties=props)
            self.wait(lambda: self.disconnect_code is not None, timeout)
        self._stop_loop()

    def _stop_loop(self) -> None:
        release(self._paho)


def close_all(clients: Iterable[ProbeClient], *, end_session: bool = False) -> None:
    """Close every client, ignoring failures (used in ``finally`` blocks)."""
    for client in clients:
        with contextlib.suppress(Exception):
            client.close(end_session=end_session)
