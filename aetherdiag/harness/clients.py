"""Building paho-mqtt clients for a ``BrokerTarget``, and one-line connection errors.

How this works: ``ClientFactory`` holds what every client of one run shares (target, one TLS
context, protocol constants) and makes a configured ``paho.mqtt.client.Client`` per worker or
publisher: transport (TCP or websockets + path), TLS, user name and password, manual
acknowledgements, no automatic reconnects. ``describe_connect_error`` turns whatever a failed
``connect()`` raised (refused, DNS, timeout, TLS, websocket handshake) into the short reason
``BrokerUnreachable`` carries. ``Connector`` runs the blocking ``connect()`` calls on a few
daemon threads (a hung DNS lookup must not keep the process alive).
"""

from __future__ import annotations

import contextlib
import errno
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..exitcodes import Unreachable
from ..mqtt.protocol import Protocol
from ..mqtt.reasons import connack_read_in, return_code_of
from .model import BrokerTarget
from .target import InvalidTarget, tls_context_from_files

KEEPALIVE = 60


class BrokerUnreachable(Unreachable):
    """The broker could not be reached or refused us; ``str()`` is one line for the user."""


def protocol_of(version: str) -> MQTTProtocolVersion:
    """paho's protocol constant for ``"3.1.1"`` or ``"5"``."""
    if version == "3.1.1":
        return MQTTProtocolVersion.MQTTv311
    if version == "5":
        return MQTTProtocolVersion.MQTTv5
    raise ValueError(f"unknown MQTT protocol version {version!r} (use 3.1.1 or 5)")


def tls_context(target: BrokerTarget) -> ssl.SSLContext | None:
    """One TLS context for every client of a run (``None`` for mqtt:// and ws://).

    ``parse_broker_url`` already loaded the files once (a bad file is a usage error there);
    this is the same loader, for targets built in code or files changed since.
    """
    if not target.tls:
        return None
    try:
        return tls_context_from_files(target.ca_file, target.cert_file, target.key_file,
                                      target.insecure)
    except InvalidTarget as exc:
        raise BrokerUnreachable(f"cannot use the TLS files for {target.display()}: {exc}"
                                ) from None


def new_client(
    target: BrokerTarget, client_id: str, protocol: str, *, tls: ssl.SSLContext | None,
    clean_start: bool = True, manual_ack: bool = False,
) -> mqtt.Client:
    """A paho client for ``target`` with transport, TLS (``tls_context(target)``) and
    credentials set, no automatic reconnects; nothing is connected yet."""
    proto = protocol_of(protocol)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if proto == mqtt.MQTTv5 else clean_start,
        protocol=proto,
        transport="websockets" if target.websocket else "tcp",
        reconnect_on_failure=False,
        manual_ack=manual_ack,
    )
    if target.websocket:
        client.ws_set_options(path=target.path)
    if tls is not None:
        client.tls_set_context(tls)
        if target.insecure:
            client.tls_insecure_set(True)
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    return client


def release(client: mqtt.Client) -> None:
    """Stop ``client``'s network thread (when ``loop_start()`` made one) and close every
    socket it holds: its connection and the socket pair that wakes the thread. Call it once
    done with the client, after DISCONNECT. paho closes them only in ``__del__``; a client
    whose callbacks are bound methods sits in a reference cycle, where the garbage collector
    may finalize the sockets first: open sockets left to the collector, a ResourceWarning."""
    with contextlib.suppress(Exception):
        client.loop_stop()
    reset = getattr(client, "_reset_sockets", None)  # paho 2.x
    if callable(reset):
        with contextlib.suppress(Exception):
            reset()


class ClientFactory:
    """Makes configured (not yet connected) paho clients for one target."""

    def __init__(self, target: BrokerTarget) -> None:
        self.target = target
        self._tls = tls_context(target)

    def make(self, client_id: str, protocol: str, *, clean_start: bool = True) -> mqtt.Client:
        """A fleet client: manual acknowledgements, no paho-side queue or window."""
        client = new_client(self.target, client_id, protocol, tls=self._tls,
                            clean_start=clean_start, manual_ack=True)
        client.suppress_exceptions = False
        client.max_inflight_messages = 0  # no paho-side queue: the fleet keeps its own window
        client.max_queued_messages = 0
        return client


def wire_connack(client: mqtt.Client, rc: Any, spoken: Protocol) -> tuple[int, Protocol]:
    """The CONNACK code as the broker sent it, and the protocol it was written in; call it
    from ``on_connect``. paho hands ``on_connect`` a v5 ``ReasonCode`` whatever came: a 3.1.1
    return code translated (1 -> 0x84), and a 3.1.1 CONNACK answering a v5 CONNECT (NATS:
    ``20 02 00 01``) read as 0x84 too. The packet paho is handling still holds the byte, so it
    is read there (paho 2.x keeps it in ``_in_packet``); where it cannot be read, the
    translation is undone with the documented table (``mqtt.reasons.V5_OF_RETURN_CODE``)."""
    value = int(getattr(rc, "value", rc))
    packet = getattr(client, "_in_packet", None)
    body = packet.get("packet") if isinstance(packet, dict) else None
    command = packet.get("command") if isinstance(packet, dict) else None
    if isinstance(body, bytes | bytearray) and len(body) >= 2 and command == 0x20:
        raw = int(body[1])
        return raw, connack_read_in(raw, spoken)
    if spoken == "3.1.1":
        back = return_code_of(value)
        return (back if back is not None else value), "3.1.1"
    return value, "5"


def connect_properties(session_expiry: int) -> Properties | None:
    """v5 CONNECT properties (Session Expiry Interval), or ``None`` when there are none."""
    if session_expiry <= 0:
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    return props


def _reason_text(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".").lower() if text else type(exc).__name__


def describe_connect_error(exc: BaseException, target: BrokerTarget, timeout: float) -> str:
    """A short reason for a failed ``connect()`` (without the "cannot connect to" prefix)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or _reason_text(exc)
        return f"TLS certificate verification failed ({detail}; --ca-file or --insecure?)"
    if isinstance(exc, ssl.CertificateError):
        return f"TLS certificate does not match the host ({exc})"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or _reason_text(exc)
        hint = " (is the port a TLS listener?)" if "WRONG_VERSION" in str(reason) else ""
        return f"TLS handshake failed: {str(reason).lower().replace('_', ' ')}{hint}"
    if isinstance(exc, mqtt.WebsocketConnectionError):
        return f"websocket handshake failed on path {target.path!r} ({exc})"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {target.host!r} ({_reason_text(exc)})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the broker"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return _reason_text(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
        return "too many open files (raise the limit with `ulimit -n`)"
    return _reason_text(exc)


class Connector:
    """A few daemon threads that run blocking paho ``connect()`` calls."""

    def __init__(self, max_threads: int = 16) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._max = max_threads

    def submit(self, jobs: Sequence[Callable[[], None]]) -> None:
        want = min(self._max, len(jobs))
        while len(self._threads) < want:
            t = threading.Thread(target=self._work, name="aetherdiag-connect", daemon=True)
            t.start()
            self._threads.append(t)
        for job in jobs:
            self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with contextlib.suppress(Exception):  # Member.connect records its own failures
                job()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()
