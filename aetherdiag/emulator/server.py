"""Thin asyncio TCP front end over the sans-IO broker, and the ``Emulator`` handle.

How this works: one ``asyncio.BufferedProtocol`` per TCP connection feeds received bytes to its own
``codec.Decoder`` and the packets to the shared ``Broker``; whatever the broker answers is
encoded and written, batched per connection. A periodic task calls ``Broker.tick``. Nothing
here knows MQTT rules. ``Emulator`` runs the server on a private event loop in a background
thread so synchronous code (tests, the ``workers`` harness) can use it with ``with``.

An emulated cluster of N nodes is one broker behind N listeners: each connection tells the
broker the node (1-based) whose listener accepted it. ``node_down`` stops a node's listener
(new connections are refused) and aborts its connections; ``node_up`` listens again on the
same port.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from ..mqtt.urls import host_for_url
from . import packets as pk
from .broker import Broker, Out
from .codec import Decoder
from .encoding import encode
from .journal import PublishedMessage, SentMessage
from .session import ClientView, Limits, Stats

log = logging.getLogger("aetherdiag.emulator")
_HIGH_WATER = 4 << 20  # bytes buffered per connection before the broker holds messages back
_READ_SIZE = 64 << 10  # bytes read per recv_into


class _Connection(asyncio.BufferedProtocol):
    # A BufferedProtocol reads into one preallocated buffer: a plain Protocol makes asyncio
    # allocate (mmap) and free a 256 KiB bytes object for every recv, which costs more than
    # decoding the small packets MQTT workers exchange.
    def __init__(self, server: EmulatorServer, node: int = 1) -> None:
        self.server = server
        self.node = node
        self.id = next(server.ids)
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(max_packet_size=server.broker.limits.max_packet_size)
        self._rbuf = memoryview(bytearray(_READ_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._rbuf[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        self.server.conns[self.id] = self
        self.server.broker.open(self.id, time.monotonic(), _peer(transport), self.node)

    def data_received(self, data: bytes) -> None:
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

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.pop(self.id, None)
        try:
            self.server.emit(self.server.broker.lost(self.id, time.monotonic()))
        except Exception:
            log.exception("connection %d: broker failed while closing", self.id)

    def pause_writing(self) -> None:
        self.server.emit(self.server.broker.set_paused(self.id, True, time.monotonic()))

    def resume_writing(self) -> None:
        self.server.emit(self.server.broker.set_paused(self.id, False, time.monotonic()))


def _peer(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The (host, port) of the other end; None when the transport does not say."""
    name = transport.get_extra_info("peername")
    if isinstance(name, (tuple, list)) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return None


def _one_line_accept_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's handler, except that running out of file descriptors while accepting (a
    client flood, a low ``ulimit -n``) is one warning line: asyncio retries the accept a
    second later and every connected client carries on."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
        log.warning("cannot accept a connection: %s (retrying in a second)",
                    exc.strerror or exc)
        return
    loop.default_exception_handler(context)


class EmulatorServer:
    """The asyncio server; create and use it on one event loop."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.ids = itertools.count(1)
        self.conns: dict[int, _Connection] = {}
        self.host = ""
        self.ports: list[int] = []  # node i listens on ports[i - 1]
        self._servers: dict[int, asyncio.Server] = {}  # node -> its listener (while up)
        self._ticker: asyncio.Task[None] | None = None

    def backlog(self) -> int:
        """Messages queued or in flight (sent, not yet acknowledged) for connected clients:
        what the emulator still owes them. A run is not over while this is above 0."""
        return sum(s.load() for s in self.broker.sessions.values() if s.conn is not None)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen for every node of the broker: on ``port``, ``port + 1``... (port 0: free
        ports, not necessarily consecutive). Returns node 1's (host, port); ``ports`` lists
        them all."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_one_line_accept_errors)
        try:
            for node in range(1, self.broker.nodes + 1):
                bound = await self._listen(host, port + node - 1 if port else 0, node)
                self.host = self.host or bound[0]
                self.ports.append(bound[1])
        except BaseException:
            for server in self._servers.values():
                server.close()
            self._servers.clear()
            raise
        self._ticker = asyncio.create_task(self._tick())
        return self.host, self.ports[0]

    async def _listen(self, host: str, port: int, node: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self, node), host, port)
        self._servers[node] = server
        addr = server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    def node_down(self, node: int) -> None:
        """Take ``node`` down: its listener closes, its connections are cut (no DISCONNECT,
        unsent data discarded) and the broker hands on what they held."""
        out = self.broker.node_down(node, time.monotonic())
        server = self._servers.pop(node, None)
        if server is not None:
            server.close()
        for conn in list(self.conns.values()):
            if conn.node == node and conn.transport is not None:
                conn.transport.abort()
        self.emit(out)

    async def node_up(self, node: int) -> None:
        """Bring ``node`` back on the port it had (a no-op when it is up)."""
        self.broker.node_up(node)
        if node not in self._servers:
            await self._listen(self.host, self.ports[node - 1], node)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self.emit(self.broker.tick(time.monotonic()))
            except Exception:
                log.exception("broker tick failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.emit(self.broker.shutdown())
        servers = list(self._servers.values())
        self._servers.clear()
        for server in servers:
            server.close()
        # Connections first: from Python 3.12 on, wait_closed() waits for every one of them.
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.abort()
        for server in servers:
            await server.wait_closed()

    def emit(self, out: list[Out]) -> None:
        """Encode and write the broker's output, one write per connection."""
        if not out:
            return
        conns = self.conns
        if len(out) == 1:  # the common case: one packet (or close) for one connection
            conn_id, packet = out[0]
            data = None if packet is None else encode(packet, self.broker.version(conn_id))
            conn = conns.get(conn_id)
            if conn is not None and conn.transport is not None:
                if data is None:
                    conn.transport.close()
                elif not conn.transport.is_closing():
                    conn.transport.write(data)
            return
        # Everything is encoded first (each connection's version as the broker knows it once
        # this output is complete), into one bytes object or list per connection; then one
        # write per connection, in order of first appearance; closes last.
        version = self.broker.version
        enc = encode  # a local name: this loop runs once per packet
        pending: dict[int, bytes | list[bytes]] = {}
        closing: list[int] = []
        last_id = -1
        v = 0
        for conn_id, packet in out:
            if packet is None:
                closing.append(conn_id)
                continue
            if conn_id != last_id:
                last_id, v = conn_id, version(conn_id)
            chunk = enc(packet, v)
            prev = pending.get(conn_id)
            if prev is None:
                pending[conn_id] = chunk
            elif isinstance(prev, bytes):
                pending[conn_id] = [prev, chunk]
            else:
                prev.append(chunk)
        for conn_id, chunks in pending.items():
            conn = conns.get(conn_id)
            if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(chunks if isinstance(chunks, bytes) else b"".join(chunks))
        for conn_id in closing:
            conn = conns.get(conn_id)
            if conn is not None and conn.transport is not None:
                conn.transport.close()


class Emulator:
    """An MQTT broker emulator on a background thread.

    >>> with Emulator(strategy="round_robin", faults=["share-fanout"]) as broker:
    ...     broker.port  # connect any MQTT client to 127.0.0.1:broker.port

    ``journal=True`` records every PUBLISH sent to a subscriber (``sent()``, ``journal.py``).
    ``nodes=N`` emulates a cluster of N nodes (one broker state, N listeners): on ``port``,
    ``port + 1``... ``port + N - 1``, or N free ports for port 0; ``ports`` and ``urls`` list
    them, node 1 first, and ``port`` / ``url`` are node 1's. ``node_down(n)`` / ``node_up(n)``
    take a node off the network and back.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        strategy: str = "round_robin",
        group_strategies: Mapping[str, str] | None = None,
        faults: Iterable[str] = (),
        seed: int | None = None,
        limits: Limits | None = None,
        users: Mapping[str, str] | None = None,
        journal: bool = False,
        nodes: int = 1,
    ) -> None:
        self.broker = Broker(
            strategy=strategy, group_strategies=group_strategies, faults=faults, seed=seed,
            limits=limits, users=users, journal=journal, nodes=nodes,
        )
        self._host = host
        self._port = port
        self.host = host
        self.port = 0
        self.ports: tuple[int, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: EmulatorServer | None = None

    @property
    def nodes(self) -> int:
        return self.broker.nodes

    @property
    def url(self) -> str:
        return f"mqtt://{host_for_url(self.host)}:{self.port}"

    @property
    def urls(self) -> tuple[str, ...]:
        """Every node's URL, node 1 first."""
        return tuple(f"mqtt://{host_for_url(self.host)}:{port}" for port in self.ports)

    def backlog(self) -> int:
        """Messages queued or in flight for connected clients (``EmulatorServer.backlog``)."""
        server = self._server
        assert server is not None, "start() the emulator first"
        return self.call(server.backlog)  # type: ignore[no-any-return]

    def node_down(self, node: int) -> None:
        """Take cluster node ``node`` (1-based) down: its connections are cut as by a network
        failure and its port refuses connections until ``node_up`` (``ValueError``: no such
        node)."""
        self.broker.check_node(node)  # validated here, in the caller's thread
        server = self._server
        assert server is not None, "start() the emulator first"
        self.call(server.node_down, node)

    def node_up(self, node: int) -> None:
        """Bring cluster node ``node`` back on its port."""
        self.broker.check_node(node)
        server, loop = self._server, self._loop
        assert server is not None and loop is not None, "start() the emulator first"
        asyncio.run_coroutine_threadsafe(server.node_up(node), loop).result(timeout=5)

    def start(self) -> Emulator:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = EmulatorServer(self.broker)
            try:
                self.host, self.port = loop.run_until_complete(
                    self._server.start(self._host, self._port)
                )
                self.ports = tuple(self._server.ports)
            except BaseException as exc:
                error.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._server.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="aetherdiag-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the emulator's loop and return its result (thread-safe)."""
        if self._loop is None:
            return fn(*args)

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=5)

    def stats(self) -> Stats:
        """A consistent snapshot of the emulator's counters."""
        return self.call(self.broker.stats.snapshot)  # type: ignore[no-any-return]

    def sent(self, start: int = 0) -> tuple[SentMessage, ...]:
        """Every PUBLISH sent to a subscriber so far, oldest first (from the ``start``-th
        on); needs ``journal=True``."""
        return self.call(self.broker.sent, start)  # type: ignore[no-any-return]

    def published(self, start: int = 0) -> tuple[PublishedMessage, ...]:
        """Every PUBLISH a client sent so far (a worker's replies, with their connection),
        from the ``start``-th on."""
        return self.call(self.broker.published, start)  # type: ignore[no-any-return]

    def acks(self, start: int = 0) -> tuple[int, ...]:
        """Indices into ``sent()`` of the acknowledged sends, in ack order (from the
        ``start``-th ack on)."""
        return self.call(self.broker.acks, start)  # type: ignore[no-any-return]

    def sent_dropped(self) -> int:
        """Sends the journal only counted because it was full (0: ``sent()`` is complete)."""
        journal = self.broker.journal
        return journal.dropped if journal is not None else 0

    def clients(self) -> tuple[ClientView, ...]:
        """Every session: client id, connected, TCP peer (host, port), subscriptions."""
        return self.call(self.broker.clients)  # type: ignore[no-any-return]

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
