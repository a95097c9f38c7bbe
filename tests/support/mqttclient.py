"""Test clients for the conformance suite: a recording paho-mqtt client and a raw socket one.

``PahoClient`` wraps an unmodified paho-mqtt 2.x client (MQTT 3.1.1 or 5.0) running its
network loop on a thread, records every message it receives and offers bounded waits.
``RawClient`` speaks just enough MQTT by hand to do what paho will not: go silent, never
acknowledge, send an empty client id with a persistent session, vanish mid-flow.

Every wait here has a timeout: a test can fail, never hang.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from aetherdiag.harness.clients import release

V311 = 4
V5 = 5
WAIT = 5.0  # default bound for any single wait


class WaitTimeout(AssertionError):
    """A bounded wait ran out."""


@dataclass(frozen=True)
class Received:
    """One PUBLISH as the client's application saw it."""

    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    mid: int
    properties: dict[str, Any]

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


@dataclass(frozen=True)
class ConnResult:
    reason_code: int
    session_present: bool
    properties: dict[str, Any]


@dataclass
class _Pending:
    event: threading.Event = field(default_factory=threading.Event)
    codes: list[int] = field(default_factory=list)


def _props(p: Properties | None) -> dict[str, Any]:
    if p is None:
        return {}
    try:
        return dict(p.json())
    except Exception:
        return {}


def _code(rc: Any) -> int:
    return int(getattr(rc, "value", rc))


class PahoClient:
    """A paho-mqtt client on its own network thread that records what it receives."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        version: int = V5,
        client_id: str = "",
        clean: bool = True,
        session_expiry: int | None = None,
        keepalive: int = 30,
        will: tuple[str, bytes, int, bool] | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        connect_properties: dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.version = version
        self.client_id = client_id
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        protocol = mqtt.MQTTv5 if version == V5 else mqtt.MQTTv311
        self._paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if version == V5 else clean,
            protocol=protocol,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if will is not None:
            topic, payload, qos, retain = will
            self._paho.will_set(topic, payload, qos, retain)
        self._receive_maximum = receive_maximum
        self._connect_properties = dict(connect_properties or {})
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._connack: ConnResult | None = None
        self._disconnected: int | None = None
        self._pending: dict[int, _Pending] = {}
        self._published: dict[int, _Pending] = {}
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_subscribe = self._on_suback
        self._paho.on_unsubscribe = self._on_suback
        self._paho.on_publish = self._on_publish
        self._loop_started = False

    # -- callbacks (network thread) -----------------------------------------------------------

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            self._connack = ConnResult(_code(rc), bool(flags.session_present), _props(props))
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
        with self._cond:
            self._disconnected = _code(rc)
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        rec = Received(
            topic=msg.topic, payload=bytes(msg.payload), qos=msg.qos, dup=bool(msg.dup),
            retain=bool(msg.retain), mid=msg.mid,
            properties=_props(msg.properties) if self.version == V5 else {},
        )
        with self._cond:
            self._messages.append(rec)
            self._cond.notify_all()

    def _on_suback(self, _c: Any, _u: Any, mid: int, codes: Any, _props: Any) -> None:
        with self._cond:
            pending = self._pending.setdefault(mid, _Pending())
            pending.codes = [_code(x) for x in (codes or [])]
            pending.event.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _props: Any) -> None:
        with self._cond:
            pending = self._published.setdefault(mid, _Pending())
            pending.codes = [_code(rc)]
            pending.event.set()

    # -- actions (test thread) ----------------------------------------------------------------

    def connect(self, timeout: float = WAIT) -> ConnResult:
        """Connect and wait for the CONNACK (whatever its reason code)."""
        props: Properties | None = None
        if self.version == V5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            if self._receive_maximum is not None:
                props.ReceiveMaximum = self._receive_maximum
            for name, value in self._connect_properties.items():
                setattr(props, name, value)
            self._paho.connect(
                self.host, self.port, keepalive=self.keepalive, clean_start=self.clean,
                properties=props,
            )
        else:
            self._paho.connect(self.host, self.port, keepalive=self.keepalive)
        self._paho.loop_start()
        self._loop_started = True
        self._wait(lambda: self._connack is not None or self._disconnected is not None,
                   timeout, "CONNACK")
        if self._connack is None:
            raise WaitTimeout(f"{self.client_id!r}: connection closed before CONNACK")
        return self._connack

    @property
    def connack(self) -> ConnResult:
        assert self._connack is not None, "not connected"
        return self._connack

    def subscribe(
        self, *filters: str | tuple[str, int], qos: int = 0, no_local: bool = False,
        retain_handling: int = 0, retain_as_published: bool = False, sub_id: int | None = None,
        timeout: float = WAIT,
    ) -> list[int]:
        """Subscribe and wait for the SUBACK; return its reason codes (granted QoS or >= 0x80)."""
        props: Properties | None = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        items: list[tuple[str, Any]] = []
        for f in filters:
            topic, q = (f, qos) if isinstance(f, str) else f
            if self.version == V5:
                opts = SubscribeOptions(qos=q, noLocal=no_local, retainHandling=retain_handling,
                                        retainAsPublished=retain_as_published)
                items.append((topic, opts))
            else:
                items.append((topic, q))
        rc, mid = self._paho.subscribe(items, properties=props)
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None, f"subscribe failed locally: {rc}"
        with self._cond:  # the SUBACK may already be in: both sides use setdefault
            pending = self._pending.setdefault(mid, _Pending())
        if not pending.event.wait(timeout):
            raise WaitTimeout(f"{self.client_id!r}: no SUBACK for {filters}")
        return pending.codes

    def unsubscribe(self, *filters: str, timeout: float = WAIT) -> list[int]:
        rc, mid = self._paho.unsubscribe(list(filters))
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None, \
            f"unsubscribe failed locally: {rc}"
        with self._cond:
            pending = self._pending.setdefault(mid, _Pending())
        if not pending.event.wait(timeout):
            raise WaitTimeout(f"{self.client_id!r}: no UNSUBACK for {filters}")
        return pending.codes

    def publish(
        self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
        wait: bool = True, timeout: float = WAIT, properties: dict[str, Any] | None = None,
    ) -> int:
        """Publish; with ``wait`` block until the flow completes and return its reason code.

        ``properties`` (v5) are paho property names, e.g. ``{"MessageExpiryInterval": 1}``.
        """
        props: Properties | None = None
        if properties:
            props = Properties(PacketTypes.PUBLISH)
            for name, value in properties.items():
                setattr(props, name, value)
        info = self._paho.publish(topic, payload, qos=qos, retain=retain, properties=props)
        with self._cond:
            pending = self._published.setdefault(info.mid, _Pending())
        if wait and not pending.event.wait(timeout):
            raise WaitTimeout(f"{self.client_id!r}: publish to {topic!r} did not complete")
        return pending.codes[0] if pending.codes else 0

    def ack(self, msg: Received) -> None:
        """With ``manual_ack``: acknowledge ``msg`` now."""
        self._paho.ack(msg.mid, msg.qos)

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def payloads(self) -> list[str]:
        return [m.text for m in self.messages]

    def wait_for(self, n: int, timeout: float = WAIT) -> list[Received]:
        """Wait until at least ``n`` messages arrived; return all of them."""
        self._wait(lambda: len(self._messages) >= n, timeout,
                   lambda: f"{n} message(s) (have {len(self._messages)})")
        return self.messages

    def wait_for_message(self, topic: str, payload: str, timeout: float = WAIT) -> None:
        """Wait until a message with ``topic`` and ``payload`` arrived."""
        self._wait(lambda: any(m.topic == topic and m.text == payload for m in self._messages),
                   timeout, f"{payload!r} on {topic!r}")

    def settle(self, quiet: float = 0.2, timeout: float = WAIT) -> list[Received]:
        """Wait until no new message arrived for ``quiet`` seconds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            with self._cond:
                n = len(self._messages)
            if n == seen:
                break
            seen = n
            time.sleep(quiet)
        return self.messages

    def wait_disconnected(self, timeout: float = WAIT) -> int:
        """Wait until the broker closes the connection; return the disconnect reason code."""
        self._wait(lambda: self._disconnected is not None, timeout, "disconnection")
        assert self._disconnected is not None
        return self._disconnected

    @property
    def disconnected(self) -> int | None:
        with self._cond:
            return self._disconnected

    def disconnect(self) -> None:
        """A clean DISCONNECT (the will is discarded)."""
        if self._loop_started:
            self._paho.disconnect()
            self._wait(lambda: self._disconnected is not None, WAIT, "clean disconnect",
                       fail=False)
            release(self._paho)
            self._loop_started = False

    def kill(self) -> None:
        """Vanish without DISCONNECT: shut the socket down under paho, then stop its thread."""
        sock = self._paho.socket()
        if isinstance(sock, socket.socket):  # TCP (our clients use no websockets)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._loop_started:
            self._wait(lambda: self._disconnected is not None, WAIT, "socket loss", fail=False)
            release(self._paho)
            self._loop_started = False

    def close(self) -> None:
        try:
            if self._loop_started and self._disconnected is None:
                self.disconnect()
            elif self._loop_started:
                release(self._paho)
                self._loop_started = False
        except Exception:
            pass

    def _wait(self, pred: Callable[[], bool], timeout: float, what: str | Callable[[], str],
              fail: bool = True) -> None:
        with self._cond:
            if not self._cond.wait_for(pred, timeout) and fail:
                text = what if isinstance(what, str) else what()
                raise WaitTimeout(f"{self.client_id!r}: timed out after {timeout}s waiting for "
                                  f"{text}")


# -- a raw client for what paho will not do ---------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([ptype << 4 | flags]) + _varint(len(body)) + body


@dataclass(frozen=True)
class RawPacket:
    type: int
    flags: int
    body: bytes


@dataclass(frozen=True)
class RawPublish:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    packet_id: int


class RawClient:
    """A hand-rolled MQTT client on a blocking socket: nothing happens unless asked."""

    def __init__(self, host: str, port: int, version: int = V5, timeout: float = WAIT) -> None:
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(
        self, client_id: str, *, clean: bool = True, keepalive: int = 30,
        session_expiry: int | None = None, will: tuple[str, bytes, int, bool] | None = None,
        will_delay: int | None = None,
    ) -> RawPacket:
        """Send CONNECT and return the CONNACK (or raise if the socket closes first)."""
        flags = 0x02 if clean else 0
        if will is not None:
            flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
        body = _str("MQTT") + bytes([self.version, flags]) + struct.pack("!H", keepalive)
        if self.version == V5:
            props = b""
            if session_expiry is not None:
                props += b"\x11" + struct.pack("!I", session_expiry)
            body += _varint(len(props)) + props
        body += _str(client_id)
        if will is not None:
            if self.version == V5:
                wprops = b"" if will_delay is None else b"\x18" + struct.pack("!I", will_delay)
                body += _varint(len(wprops)) + wprops
            body += _str(will[0]) + _str(will[1])
        self.send(_packet(CONNECT, 0, body))
        return self.expect(CONNACK)

    def send_subscribe(self, packet_id: int, topic_filter: str, options: int) -> None:
        """SUBSCRIBE one filter; ``options`` is the QoS (plus v5 option bits)."""
        body = struct.pack("!H", packet_id)
        if self.version == V5:
            body += b"\x00"
        body += _str(topic_filter) + bytes([options])
        self.send(_packet(SUBSCRIBE, 2, body))

    def subscribe(self, packet_id: int, topic_filter: str, options: int) -> RawPacket:
        self.send_subscribe(packet_id, topic_filter, options)
        return self.expect(SUBACK)

    def publish(self, topic: str, payload: bytes, qos: int = 0, packet_id: int = 1,
                retain: bool = False, dup: bool = False) -> None:
        body = _str(topic)
        if qos:
            body += struct.pack("!H", packet_id)
        if self.version == V5:
            body += b"\x00"
        flags = qos << 1 | (1 if retain else 0) | (8 if dup else 0)
        self.send(_packet(PUBLISH, flags, body + payload))

    def ack(self, ptype: int, packet_id: int, reason: int = 0) -> None:
        """PUBACK / PUBREC / PUBREL / PUBCOMP (a v5 ``reason`` other than Success is sent)."""
        flags = 2 if ptype == PUBREL else 0
        body = struct.pack("!H", packet_id)
        if reason and self.version == V5:
            body += bytes([reason])
        self.send(_packet(ptype, flags, body))

    def disconnect(self, reason: int = 0) -> None:
        """DISCONNECT; a v5 ``reason`` other than 0 is sent (0x04: with will message)."""
        body = bytes([reason, 0]) if reason and self.version == V5 else b""
        self.send(_packet(DISCONNECT, 0, body))

    def read(self, timeout: float = WAIT) -> RawPacket | None:
        """The next packet, or None if the broker closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._parse()
            if pkt is not None:
                return pkt
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout("no packet from the broker in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise WaitTimeout("no packet from the broker in time") from None
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self._buf += chunk

    def expect(self, ptype: int, timeout: float = WAIT) -> RawPacket:
        """The next packet that is not a PINGRESP; it must be of type ``ptype``."""
        while True:
            pkt = self.read(timeout)
            if pkt is None:
                raise AssertionError(f"connection closed while waiting for packet type {ptype}")
            if pkt.type == PINGRESP:
                continue
            assert pkt.type == ptype, f"expected packet type {ptype}, got {pkt}"
            return pkt

    def read_publish(self, timeout: float = WAIT) -> RawPublish:
        return self.decode_publish(self.expect(PUBLISH, timeout))

    def decode_publish(self, pkt: RawPacket) -> RawPublish:
        body = pkt.body
        (tlen,) = struct.unpack_from("!H", body)
        topic = body[2:2 + tlen].decode("utf-8")
        pos = 2 + tlen
        qos = (pkt.flags >> 1) & 3
        pid = 0
        if qos:
            (pid,) = struct.unpack_from("!H", body, pos)
            pos += 2
        if self.version == V5:
            plen, pos = _read_varint(body, pos)
            pos += plen
        return RawPublish(topic, body[pos:], qos, bool(pkt.flags & 8), bool(pkt.flags & 1), pid)

    def wait_closed(self, timeout: float = WAIT) -> list[RawPacket]:
        """Read until the broker closes the socket; return what came before."""
        got: list[RawPacket] = []
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.read(max(0.01, deadline - time.monotonic()))
            if pkt is None:
                return got
            got.append(pkt)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _parse(self) -> RawPacket | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        try:
            length, pos = _read_varint(buf, 1)
        except IndexError:
            return None
        if len(buf) < pos + length:
            return None
        self._buf = buf[pos + length:]
        return RawPacket(buf[0] >> 4, buf[0] & 0x0F, buf[pos:pos + length])


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def connack_code(pkt: RawPacket) -> int:
    """The return / reason code of a raw CONNACK."""
    return pkt.body[1]


def suback_codes(pkt: RawPacket, version: int) -> list[int]:
    pos = 2
    if version == V5:
        plen, pos = _read_varint(pkt.body, pos)
        pos += plen
    return list(pkt.body[pos:])


def disconnect_code(pkt: RawPacket) -> int:
    return pkt.body[0] if pkt.body else 0


def by_payload(messages: Iterable[Received]) -> dict[str, int]:
    """How many copies of each payload arrived."""
    counts: dict[str, int] = {}
    for m in messages:
        counts[m.text] = counts.get(m.text, 0) + 1
    return counts


def total(clients: Sequence[PahoClient]) -> int:
    return sum(len(c.messages) for c in clients)


# -- factories the conftest fixtures hand to tests --------------------------------------------

ClientFactory = Callable[..., PahoClient]
RawFactory = Callable[..., RawClient]


def connector(host: str, port: int, version: int, clients: list[Any], uid: str) -> ClientFactory:
    """``factory(name, *, connect=True, **options)``: a recording paho client on host:port,
    kept in ``clients`` (closed by the fixture). The client id is ``{name}-{uid}`` unless
    ``client_id=`` is given; ``version`` is the default protocol level."""

    def factory(name: str = "c", *, connect: bool = True, **kwargs: Any) -> PahoClient:
        kwargs.setdefault("version", version)
        kwargs.setdefault("client_id", f"{name}-{uid}")
        client = PahoClient(host, port, **kwargs)
        clients.append(client)
        if connect:
            result = client.connect()
            assert result.reason_code == 0, f"CONNACK {result}"
        return client

    return factory
