"""One paho client of the fleet and its connection state; ``Worker`` and ``Publisher`` extend it.

How this works: a ``Member`` owns a paho client whose callbacks run on the fleet's loop thread.
Its ``state`` moves new -> connecting -> connected -> (closing -> closed | dropping -> dropped |
lost | failed); the fleet's caller thread only reads it. ``connect()`` is the one call made off
the loop thread: paho's connect is blocking (TCP, TLS, websocket handshakes), so the fleet
runs it on a connector thread and paho's socket callbacks are forwarded to the loop. A failed
connect sets ``error`` to a short reason (see ``clients.describe_connect_error``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..mqtt.protocol import Protocol
from ..mqtt.reasons import (
    REFUSING_DISCONNECTS,
    connack_answer,
    reason_text,
    refuses_protocol,
)
from .clients import KEEPALIVE, connect_properties, describe_connect_error, wire_connack
from .loop import Loop
from .model import BrokerTarget, ClosedAfter
from .recorder import Recorder

# states in which the member has (or is getting) a live connection
LIVE = frozenset({"connecting", "connected", "closing", "dropping"})
# A connection the broker closes this soon after a packet it left unanswered was closed in
# answer to that packet (a refusal: see ``ClosedAfter``); measured: NATS closes within a few ms
CLOSED_AFTER_S = 1.0
# a 3.1.1-only broker's answer to an MQTT 5.0 CONNECT, spelled out for the fleet's error
_V311_ONLY = ("a broker that speaks only MQTT 3.1.1 answers an MQTT 5.0 CONNECT like this: "
              "try --mqtt 3.1.1")


class Member:
    """A paho client plus the state the fleet tracks for it."""

    def __init__(
        self, name: str, client_id: str, protocol: Protocol, client: mqtt.Client, loop: Loop,
        rec: Recorder, *, clean_start: bool = True, session_expiry: int = 0,
    ) -> None:
        self.name = name
        self.client_id = client_id
        self.protocol = protocol
        self.client = client
        self.loop = loop
        self.rec = rec
        self.clean_start = clean_start
        self.session_expiry = session_expiry if protocol == "5" else 0
        self.state = "new"
        self.error: str | None = None
        self.session_present = False
        self.connects = 0  # successful CONNACKs so far
        self.gen = 0  # bumped whenever a connection ends; stale timers compare it
        self.broker_props: Properties | None = None
        self.disconnect_code = 0  # reason code of the last DISCONNECT from the broker
        self.sent_at = 0.0  # monotonic time the last PUBLISH or SUBSCRIBE went out
        self.refused: ClosedAfter | None = None  # the packet the last connection closed after
        self._answered = threading.Event()  # CONNACK (or the end of the connection) arrived
        client.user_data_set(self)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        loop.attach(client)

    # --- called on a connector thread --------------------------------------------------
    def connect(self, target: BrokerTarget, timeout: float) -> None:
        """Open the connection, send CONNECT and wait (bounded) for the answer.

        Blocking; sets ``error`` on failure. Waiting for the CONNACK here keeps the number of
        half-open connections at the number of connector threads, well under the broker's
        listen backlog (an overflowing backlog drops SYNs and costs a 1 s retransmit each).
        """
        client = self.client
        self._answered.clear()
        try:
            if self.connects == 0 and self.state == "connecting":
                client.connect_timeout = timeout  # paho allows this before the first connect
                if self.protocol == "5":
                    client.connect(
                        target.host, target.port, KEEPALIVE, clean_start=self.clean_start,
                        properties=connect_properties(self.session_expiry),
                    )
                else:
                    client.connect(target.host, target.port, KEEPALIVE)
            else:
                client.reconnect()
        except Exception as exc:
            self.error = describe_connect_error(exc, target, timeout)
            self.state = "failed"
            return
        self._answered.wait(timeout)

    # --- loop thread ----------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._answered.set()
        if rc.is_failure:
            code, read_in = wire_connack(client, rc, self.protocol)
            self.error = ("broker refused the connection: "
                          + connack_answer(code, read_in, self.protocol))
            if self.protocol == "5" and (read_in != "5" or refuses_protocol(code, read_in)):
                self.error += f" ({_V311_ONLY})"
            self.state = "failed"
            return
        self.state = "connected"
        self.refused = None
        self.session_present = bool(getattr(flags, "session_present", False))
        self.broker_props = props
        self.connects += 1
        if getattr(props, "SharedSubscriptionAvailable", 1) == 0:
            self.rec.note("the broker's CONNACK says shared subscriptions are not available "
                          "(Shared Subscription Available = 0)")
        self.on_connected()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        prev = self.state
        self._answered.set()
        self.gen += 1
        from_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        self.disconnect_code = int(getattr(rc, "value", 0)) if from_broker else 0
        if prev == "connecting":
            self.state = "failed"
            why = f"DISCONNECT {reason_text(rc)}" if from_broker else "connection closed"
            self.error = f"{why} before CONNACK (is this an MQTT broker?)"
            if self.protocol == "5" and not from_broker:
                self.error += f"; {_V311_ONLY}"
        elif prev == "closing":
            self.state = "closed"
        elif prev == "dropping":
            self.state = "dropped"
        elif prev == "failed":
            pass
        else:
            self.state = "lost"
            why = f"DISCONNECT {reason_text(rc)} from the broker" if from_broker else (
                "connection lost")
            after = self._closed_after(self.disconnect_code if from_broker else None)
            if after is not None:
                self.refused = after
                self.rec.closed_after(after)
                why = (f"the broker closed the connection right after a QoS {after.qos} "
                       f"{after.packet} ({after.topic!r}) it had not answered"
                       + (f": DISCONNECT {reason_text(rc)}" if from_broker else ""))
            self.rec.event(self.name, "lost", why, self.in_flight())
            self.rec.note(f"{self.name}: {why}")
            if not from_broker:
                self.rec.connection_lost(self.name)
        self.on_disconnected()

    def _closed_after(self, disconnect: int | None) -> ClosedAfter | None:
        """The packet the broker closed this connection in answer to (``ClosedAfter``): one
        it had not answered when the connection ended, sent at most ``CLOSED_AFTER_S`` before;
        None when there is none, or the broker's DISCONNECT gives another reason (shutting
        down, session taken over...)."""
        if disconnect is not None and disconnect not in REFUSING_DISCONNECTS:
            return None
        if not self.sent_at or time.monotonic() - self.sent_at > CLOSED_AFTER_S:
            return None
        last = self.unanswered()
        if last is None:
            return None
        packet, qos, topic, count = last
        return ClosedAfter(client=self.name, packet=packet, qos=qos, topic=topic,
                           unanswered=count, disconnect=disconnect)

    def unanswered(self) -> tuple[str, int, str, int] | None:
        """Hook: ``(packet, QoS, topic or filter, how many)`` of the packets the broker had not
        answered yet (the oldest named), or None (loop thread)."""
        return None

    def on_connected(self) -> None:
        """Hook: a CONNACK with success arrived (loop thread)."""

    def on_disconnected(self) -> None:
        """Hook: the connection ended, for whatever reason (loop thread)."""

    def in_flight(self) -> tuple[str, ...]:
        """Task ids received and not yet acknowledged (workers only)."""
        return ()

    def ready(self) -> bool:
        """Connected with no SUBSCRIBE/UNSUBSCRIBE awaiting an answer."""
        return self.state == "connected"

    def disconnect(self, *, end_session: bool = False) -> None:
        """Send DISCONNECT (loop thread). ``end_session`` expires a v5 persistent session."""
        if self.state not in ("connected", "connecting"):
            return
        self.state = "closing"
        props = None
        if end_session and self.session_expiry > 0:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        if self.client.disconnect(properties=props) != mqtt.MQTT_ERR_SUCCESS:
            self.state = "closed"

    def drop(self) -> None:
        """Cut the TCP connection without DISCONNECT (loop thread), even mid-flight."""
        sock = self.client.socket()
        if sock is None or self.state not in ("connected", "connecting", "closing"):
            return
        self.state = "dropping"
        raw: Any = getattr(sock, "_socket", sock)  # the websocket wrapper keeps the real socket
        with contextlib.suppress(OSError, AttributeError):
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError, AttributeError):
            raw.shutdown(socket.SHUT_RDWR)
        # Discard what had already arrived: after a cut the application never sees it (and
        # paho must not half-process a QoS 2 PUBREL it could then never complete).
        with contextlib.suppress(OSError, AttributeError):
            for _ in range(10_000):
                if not raw.recv(1 << 16):
                    break
        for _ in range(100):  # paho now reads the end of the stream and closes
            if self.client.socket() is None:
                break
            self.client.loop_read()
