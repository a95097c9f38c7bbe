"""MQTT over WebSocket (MQTT 5.0 and 3.1.1, section 6) for the emulator's server.

How this works: ``WebSocketConnection`` is an ``MqttConnection`` whose bytes first go through
wsproto, a sans-IO WebSocket library (bytes in, events out, events in, bytes out: the shape of
the emulator's own codec). The HTTP upgrade is answered with the subprotocol ``mqtt`` (or
``mqttv3.1``, which older clients offer); a client that offers subprotocols but neither of
these is refused (HTTP 400), one that offers none is served, as Mosquitto does. Only then
does the broker hear of the connection. The payloads of binary frames are one MQTT byte
stream: a frame may hold part of a packet or several packets [MQTT-6.0.0-2], so they go to
the MQTT decoder as they come. A text frame closes the connection [MQTT-6.0.0-1]; so does a
WebSocket protocol error (wsproto answers it with its close code). Pings are answered.

The server writes MQTT bytes to ``FramedTransport``, which wraps each write in one binary
frame [MQTT-6.0.0-1]; closing it sends a close frame first. Flow control (pause/resume) is
the TCP transport's, as for a plain connection. Imported only when a WebSocket listener is
asked for, so a plain TCP emulator never loads wsproto.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .connection import HIGH_WATER, Host, MqttConnection, peer

log = logging.getLogger("aetherdiag.emulator")
SUBPROTOCOLS = ("mqtt", "mqttv3.1")  # what the listener accepts, in order of preference


class FramedTransport(asyncio.Transport):
    """The TCP transport of a WebSocket connection, seen as an MQTT byte stream: every write
    is one binary frame."""

    def __init__(self, raw: asyncio.Transport, ws: WSConnection) -> None:
        super().__init__()
        self.raw = raw
        self.ws = ws

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.raw.write(self.ws.send(BytesMessage(data=bytes(data))))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self.raw.is_closing() or self.ws.state is not ConnectionState.OPEN

    def close(self) -> None:
        """A close frame (normal closure), then the TCP connection."""
        if not self.raw.is_closing():
            with contextlib.suppress(LocalProtocolError):
                self.raw.write(self.ws.send(CloseConnection(code=CloseReason.NORMAL_CLOSURE)))
        self.raw.close()

    def abort(self) -> None:
        self.raw.abort()

    def can_write_eof(self) -> bool:
        return False  # a WebSocket ends with its close frame (``close``)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.raw.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()


class WebSocketConnection(MqttConnection):
    """A client connection on the WebSocket listener."""

    def __init__(self, server: Host, node: int = 1) -> None:
        super().__init__(server, node)
        self.ws = WSConnection(ConnectionType.SERVER)
        self.raw: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.raw = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        # known to the server (node_down, stop) but not to the broker: it hears of the
        # connection once the upgrade is accepted (``opened``)
        self.server.conns[self.id] = self

    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self.received(self._rbuf[:nbytes].tobytes())
        except Exception:  # never let one client take the server down
            log.exception("connection %d: websocket handling failed", self.id)
            if self.raw is not None:
                self.raw.abort()

    def received(self, data: bytes) -> None:
        """Bytes from the network: the upgrade request, then frames."""
        raw, ws = self.raw, self.ws
        assert raw is not None
        if raw.is_closing():
            return
        try:
            ws.receive_data(data)
        except RemoteProtocolError as exc:  # not an HTTP upgrade request
            self.refuse(exc.event_hint if isinstance(exc.event_hint, RejectConnection)
                        else RejectConnection(status_code=400))
            return
        except LocalProtocolError:  # data after the close: nobody listens any more
            return
        payload: list[bytes] = []
        for event in ws.events():
            if isinstance(event, BytesMessage):
                payload.append(bytes(event.data))
                continue
            if payload:  # MQTT bytes before this event first
                self.data_received(b"".join(payload))
                payload.clear()
            if isinstance(event, Request):
                self.upgrade(event)
            elif isinstance(event, Ping):
                raw.write(ws.send(event.response()))
            elif isinstance(event, TextMessage):  # [MQTT-6.0.0-1]: close the connection
                self.close(CloseReason.UNSUPPORTED_DATA)
                return
            elif isinstance(event, CloseConnection):
                self.close(event.code, event if ws.state is ConnectionState.REMOTE_CLOSING
                           else None)
                return
            if raw.is_closing():
                return
        if payload:
            self.data_received(b"".join(payload))

    def upgrade(self, request: Request) -> None:
        """Accept the upgrade with the ``mqtt`` subprotocol (or refuse it)."""
        assert self.raw is not None
        offered = list(request.subprotocols)
        chosen = next((p for p in SUBPROTOCOLS if p in offered), None)
        if offered and chosen is None:
            self.refuse(RejectConnection(status_code=400))
            return
        self.raw.write(self.ws.send(AcceptConnection(subprotocol=chosen)))
        self.opened(FramedTransport(self.raw, self.ws), peer(self.raw))

    def refuse(self, reject: RejectConnection) -> None:
        """An HTTP error answer to the upgrade request, then the TCP connection closes."""
        assert self.raw is not None
        with contextlib.suppress(LocalProtocolError):
            self.raw.write(self.ws.send(reject))
        self.raw.close()

    def close(self, code: int, answer: CloseConnection | None = None) -> None:
        """A close frame (the answer to the client's, or ``code``), then TCP."""
        assert self.raw is not None
        with contextlib.suppress(LocalProtocolError):
            frame = answer.response() if answer is not None else CloseConnection(code=code)
            self.raw.write(self.ws.send(frame))
        self.raw.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:  # the broker knew it: a lost MQTT connection
            super().connection_lost(exc)
        else:
            self.server.conns.pop(self.id, None)

    def pause_writing(self) -> None:
        if self.transport is not None:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self.transport is not None:
            super().resume_writing()
