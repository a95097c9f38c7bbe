"""One client connection of the emulator's asyncio server: MQTT bytes in, broker output out.

How this works: ``MqttConnection`` is the ``asyncio.BufferedProtocol`` of a plain TCP
connection. It feeds the bytes it receives to its own ``codec.Decoder`` and the packets to
the shared ``Broker``, and hands whatever the broker answers to the server (``Host.emit``),
which encodes and writes it, batched per connection. ``data_received`` is the MQTT byte
stream whatever carried it: the WebSocket listener (``websocket.py``) subclasses this class,
unwraps its frames and calls it with their payload, and writes through a transport that
frames what the server writes. Nothing here knows MQTT rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Protocol, cast

from . import packets as pk
from .broker import Broker, Out
from .codec import Decoder

log = logging.getLogger("aetherdiag.emulator")
HIGH_WATER = 4 << 20  # bytes buffered per connection before the broker holds messages back
READ_SIZE = 64 << 10  # bytes read per recv_into
# After the broker closes a connection (a DISCONNECT it sent, a refused CONNECT): how long
# what the client still sends is read and dropped before the socket is closed. Closing a
# socket with unread data makes the kernel send a reset, and a client that is still sending
# would read ConnectionResetError instead of the reason code; Mosquitto drains the same way.
DRAIN_S = 1.0


class Host(Protocol):
    """What a connection needs from its server (``server.EmulatorServer``)."""

    @property
    def broker(self) -> Broker:
        """The broker every connection shares."""

    @property
    def ids(self) -> Iterator[int]:
        """Connection ids, one per connection."""

    @property
    def conns(self) -> dict[int, MqttConnection]:
        """The server's connections by id."""

    def emit(self, out: list[Out]) -> None:
        """Encode and write the broker's output."""


class MqttConnection(asyncio.BufferedProtocol):
    """A client connection (TCP); ``transport`` is what the server writes MQTT bytes to."""

    # A BufferedProtocol reads into one preallocated buffer: a plain Protocol makes asyncio
    # allocate (mmap) and free a 256 KiB bytes object for every recv, which costs more than
    # decoding the small packets MQTT workers exchange.
    def __init__(self, server: Host, node: int = 1) -> None:
        self.server = server
        self.node = node
        self.id = next(server.ids)
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(max_packet_size=server.broker.limits.max_packet_size)
        self._rbuf = memoryview(bytearray(READ_SIZE))
        self._drain: asyncio.TimerHandle | None = None  # set once the broker closed it

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._rbuf[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.opened(transport, peer(transport))

    def opened(self, transport: asyncio.Transport, address: tuple[str, int] | None) -> None:
        """The MQTT connection starts: writes go to ``transport``, the broker knows it."""
        self.transport = transport
        self.server.conns[self.id] = self
        self.server.broker.open(self.id, time.monotonic(), address, self.node)

    def data_received(self, data: bytes) -> None:
        if self._drain is not None:
            return  # closed by the broker: what still comes is read and dropped
        broker = self.server.broker
        now = time.monotonic()  # once per read: every packet in it arrived at the same time
        error: pk.MalformedPacket | None = None
        try:
            packets = self.decoder.feed(data)
        except pk.MalformedPacket as exc:
            # Answer the good packets that came before the bad one, then the error.
            packets, error = exc.packets, exc
        except Exception as exc:  # never let one client take the server down
            log.exception("connection %d: unexpected decoding failure", self.id)
            self.server.emit(broker.reject(self.id, pk.MalformedPacket(str(exc)), now))
            return
        handle = broker.handle
        conn_id = self.id
        out: list[Out] = []
        for packet in packets:
            try:
                got = handle(conn_id, packet, now)
            except Exception:
                log.exception("connection %d: broker failed on %r", conn_id, packet)
                out += broker.reject(
                    conn_id,
                    pk.MalformedPacket("internal error", pk.RC_IMPLEMENTATION_SPECIFIC),
                    now,
                )
                break
            if out:
                out += got
            else:
                out = got  # a fresh list the broker no longer holds
        if error is not None:
            out += broker.reject(conn_id, error, now)
        self.server.emit(out)

    def can_write(self) -> bool:
        """Whether bytes written now can still reach the client (not after ``finish``)."""
        t = self.transport
        return t is not None and self._drain is None and not t.is_closing()

    def finish(self) -> None:
        """The broker ends the connection: what it wrote goes out, then the write side is
        shut (FIN), what the client still sends is read and dropped for ``DRAIN_S``, and the
        socket closes (at once when the client closes its side first)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._drain is not None:
            return
        if not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the client is already gone (reset): nothing to drain
            transport.close()
            return
        self._drain = asyncio.get_running_loop().call_later(DRAIN_S, transport.close)

    def eof_received(self) -> bool | None:
        """The client closed its side: after a broker close, end the connection now."""
        if self._drain is not None and self.transport is not None:
            self.transport.close()
        return None  # asyncio closes the transport (a half-open MQTT connection is over)

    def abort(self) -> None:
        """Cut the connection at once (no DISCONNECT, unsent data discarded)."""
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drain is not None:
            self._drain.cancel()
        self.server.conns.pop(self.id, None)
        try:
            self.server.emit(self.server.broker.lost(self.id, time.monotonic()))
        except Exception:
            log.exception("connection %d: broker failed while closing", self.id)

    def pause_writing(self) -> None:
        self.server.emit(self.server.broker.set_paused(self.id, True, time.monotonic()))

    def resume_writing(self) -> None:
        self.server.emit(self.server.broker.set_paused(self.id, False, time.monotonic()))


def peer(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The (host, port) of the other end; None when the transport does not say."""
    name = transport.get_extra_info("peername")
    if isinstance(name, (tuple, list)) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return None
