"""Thin asyncio TCP front end over the sans-IO broker, and the ``Emulator`` handle.

How this works: one ``asyncio.BufferedProtocol`` per TCP connection (``connection.py``) feeds
received bytes to its own ``codec.Decoder`` and the packets to the shared ``Broker``; whatever
the broker answers is encoded and written here, batched per connection. A periodic task calls
``Broker.tick``. Nothing here knows MQTT rules. With a WebSocket port (``ws_port``) the
same broker also listens for MQTT over WebSocket (``websocket.py``, loaded only then).
``Emulator`` runs the server on a private event loop in a background thread so synchronous
code (tests, the ``workers`` harness) can use it with ``with``.

An emulated cluster of N nodes is one broker behind N listeners: each connection tells the
broker the node (1-based) whose listener accepted it. ``node_down`` stops a node's listener
(new connections are refused) and aborts its connections; ``node_up`` listens again on the
same port. Each node has its own WebSocket listener too when one is asked for.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from ..mqtt.urls import host_for_url
from .broker import Broker, Out
from .connection import MqttConnection
from .encoding import encode
from .journal import PublishedMessage, SentMessage, Takeover
from .session import ClientView, Limits, Stats

log = logging.getLogger("aetherdiag.emulator")
_Connection = MqttConnection  # the name benchmarks/bench_core.py knows


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
        self.conns: dict[int, MqttConnection] = {}
        self.host = ""
        self.ports: list[int] = []  # node i listens on ports[i - 1]
        self.ws_ports: list[int] = []  # and for WebSocket clients on ws_ports[i - 1], if any
        # (node, websocket?) -> its listener (while up)
        self._servers: dict[tuple[int, bool], asyncio.Server] = {}
        self._ticker: asyncio.Task[None] | None = None

    def backlog(self) -> int:
        """Messages queued or in flight (sent, not yet acknowledged) for connected clients:
        what the emulator still owes them. A run is not over while this is above 0."""
        return sum(s.load() for s in self.broker.sessions.values() if s.conn is not None)

    async def start(self, host: str = "127.0.0.1", port: int = 0,
                    ws_port: int | None = None) -> tuple[str, int]:
        """Listen for every node of the broker: on ``port``, ``port + 1``... (port 0: free
        ports, not necessarily consecutive) and, with ``ws_port``, for MQTT over WebSocket on
        ``ws_port``, ``ws_port + 1``... (0: free ports). Returns node 1's (host, port);
        ``ports`` and ``ws_ports`` list them all."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_one_line_accept_errors)
        try:
            for node in range(1, self.broker.nodes + 1):
                bound = await self._listen(host, port + node - 1 if port else 0, node)
                self.host = self.host or bound[0]
                self.ports.append(bound[1])
            if ws_port is not None:
                for node in range(1, self.broker.nodes + 1):
                    bound = await self._listen(host, ws_port + node - 1 if ws_port else 0,
                                               node, websocket=True)
                    self.ws_ports.append(bound[1])
        except BaseException:
            for server in self._servers.values():
                server.close()
            self._servers.clear()
            raise
        self._ticker = asyncio.create_task(self._tick())
        return self.host, self.ports[0]

    async def _listen(self, host: str, port: int, node: int,
                      websocket: bool = False) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        kind: Callable[[EmulatorServer, int], MqttConnection] = MqttConnection
        if websocket:
            from .websocket import WebSocketConnection  # wsproto only when asked for

            kind = WebSocketConnection
        server = await loop.create_server(lambda: kind(self, node), host, port)
        self._servers[node, websocket] = server
        addr = server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    def node_down(self, node: int) -> None:
        """Take ``node`` down: its listener closes, its connections are cut (no DISCONNECT,
        unsent data discarded) and the broker hands on what they held."""
        out = self.broker.node_down(node, time.monotonic())
        for websocket in (False, True):
            server = self._servers.pop((node, websocket), None)
            if server is not None:
                server.close()
        for conn in list(self.conns.values()):
            if conn.node == node:
                conn.abort()
        self.emit(out)

    async def node_up(self, node: int) -> None:
        """Bring ``node`` back on the port it had (a no-op when it is up)."""
        self.broker.node_up(node)
        if (node, False) not in self._servers:
            await self._listen(self.host, self.ports[node - 1], node)
        if self.ws_ports and (node, True) not in self._servers:
            await self._listen(self.host, self.ws_ports[node - 1], node, websocket=True)

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
        # Each one's loss is settled with the broker now, not when asyncio gets round to
        # connection_lost (a no-op by then): what a session still held is counted as dropped
        # before anyone reads the final stats.
        for conn in list(self.conns.values()):
            conn.abort()
            conn.connection_lost(None)
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
                    conn.finish()
                elif conn.can_write():
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
            transport = conn.transport if conn is not None and conn.can_write() else None
            if transport is not None:
                transport.write(chunks if isinstance(chunks, bytes) else b"".join(chunks))
        for conn_id in closing:
            conn = conns.get(conn_id)
            if conn is not None:
                conn.finish()


class Emulator:
    """An MQTT broker emulator on a background thread.

    >>> with Emulator(strategy="round_robin", faults=["share-fanout"]) as broker:
    ...     broker.port  # connect any MQTT client to 127.0.0.1:broker.port

    ``journal=True`` records every PUBLISH sent to a subscriber (``sent()``, ``journal.py``).
    ``nodes=N`` emulates a cluster of N nodes (one broker state, N listeners): on ``port``,
    ``port + 1``... ``port + N - 1``, or N free ports for port 0; ``ports`` and ``urls`` list
    them, node 1 first, and ``port`` / ``url`` are node 1's. ``node_down(n)`` / ``node_up(n)``
    take a node off the network and back. ``ws_port`` (0: a free one) also serves MQTT over
    WebSocket (any path, subprotocol ``mqtt``); ``ws_url`` / ``ws_urls`` are where.
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
        ws_port: int | None = None,
    ) -> None:
        self.broker = Broker(
            strategy=strategy, group_strategies=group_strategies, faults=faults, seed=seed,
            limits=limits, users=users, journal=journal, nodes=nodes,
        )
        self._host = host
        self._port = port
        self._ws_port = ws_port
        self.host = host
        self.port = 0
        self.ports: tuple[int, ...] = ()
        self.ws_ports: tuple[int, ...] = ()  # empty without ``ws_port``
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

    @property
    def ws_url(self) -> str:
        """Node 1's WebSocket URL (``ValueError`` without ``ws_port``)."""
        if not self.ws_ports:
            raise ValueError("the emulator has no WebSocket listener (give ws_port)")
        return self.ws_urls[0]

    @property
    def ws_urls(self) -> tuple[str, ...]:
        """Every node's WebSocket URL, node 1 first (empty without ``ws_port``)."""
        return tuple(f"ws://{host_for_url(self.host)}:{port}/mqtt" for port in self.ws_ports)

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
                    self._server.start(self._host, self._port, self._ws_port)
                )
                self.ports = tuple(self._server.ports)
                self.ws_ports = tuple(self._server.ws_ports)
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

    def takeovers(self, start: int = 0) -> tuple[Takeover, ...]:
        """Every session takeover so far (a CONNECT with the client id of a live
        connection), from the ``start``-th on; needs ``journal=True``."""
        return self.call(self.broker.takeovers, start)  # type: ignore[no-any-return]

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
