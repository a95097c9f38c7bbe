"""One selector thread that drives many paho-mqtt clients (paho's "external loop" mode).

How this works: every paho client gets the four socket callbacks (open, close,
register_write, unregister_write). Open/close (un)register the socket with a ``selectors``
selector; readable sockets get ``loop_read()``. A client that queued output is put in a
``_flush`` set and written once at the end of the loop iteration, so a burst of packets costs
one ``loop_write()`` and no selector change; only a client whose socket buffer is full gets
write interest. Timers are a heap; ``loop_misc()`` (keepalive) runs for every client once a
second. Other threads never touch a client: they hand the loop a callable with
``call_soon_threadsafe`` or ``run`` (which waits for the result, bounded). Callbacks paho makes
on another thread (a blocking ``connect()`` in a connector thread) are forwarded the same way.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

import paho.mqtt.client as mqtt

log = logging.getLogger("aetherdiag.harness")
T = TypeVar("T")
MISC_INTERVAL = 1.0  # seconds between loop_misc() sweeps (keepalive pings)


class LoopError(RuntimeError):
    """The loop thread failed or did not answer in time."""


class Loop:
    """A background thread running a selector over the sockets of many paho clients."""

    def __init__(self, name: str = "aetherdiag-fleet") -> None:
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._calls: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._clients: set[mqtt.Client] = set()
        self._flush: set[mqtt.Client] = set()
        self._writing: set[mqtt.Client] = set()  # registered for EVENT_WRITE
        self._again: set[mqtt.Client] = set()  # TLS sockets with decrypted bytes pending
        self._running = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._tid: int | None = None
        self.error: BaseException | None = None  # first unexpected exception in the loop

    # ----------------------------------------------------------------- thread control
    def start(self) -> None:
        """Start the loop thread."""
        self._running = True
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop thread (bounded) and release the selector."""
        if self._thread.is_alive():
            self._running = False
            self._wake()
            self._thread.join(timeout)
        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def in_loop(self) -> bool:
        """True when called from the loop thread itself."""
        return threading.get_ident() == self._tid

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the loop thread soon (from any thread)."""
        self._calls.append(fn)
        if not self.in_loop():
            self._wake()

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the loop thread at ``time.monotonic() >= when`` (loop thread only)."""
        heapq.heappush(self._timers, (when, next(self._seq), fn))

    def run(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn()`` on the loop thread and return its result (bounded by ``timeout``)."""
        if self.in_loop():
            return fn()
        if not self.alive:
            raise LoopError("the fleet's event loop is not running")
        future: Future[T] = Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

        self.call_soon_threadsafe(call)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise LoopError(f"the fleet's event loop did not answer within {timeout:g} s") from None

    # ----------------------------------------------------------------- paho clients
    def attach(self, client: mqtt.Client) -> None:
        """Give ``client`` the socket callbacks that hook it into this loop."""
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self.in_loop():
            self.call_soon_threadsafe(lambda: self._on_socket_open(client, userdata, sock))
            return
        if client.socket() is not sock:  # closed again before we got here
            return
        fileobj = cast("socket.socket", sock)
        raw: Any = getattr(sock, "_socket", sock)  # paho's websocket wrapper keeps the real socket
        with contextlib.suppress(OSError, AttributeError):
            # paho writes one packet per send(); without this, Nagle + delayed ACKs stall
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._sel.register(fileobj, selectors.EVENT_READ, client)
        except (KeyError, ValueError, OSError):
            log.debug("socket of %s could not be registered", client)
            return
        self._clients.add(client)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Called by paho right before it closes ``sock``; always on the loop thread, except
        # in paho's connect() on a connector thread, where the socket was never registered.
        self._clients.discard(client)
        self._flush.discard(client)
        self._writing.discard(client)
        self._again.discard(client)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(sock)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self.in_loop():
            self.call_soon_threadsafe(lambda: self._flush.add(client))
            return
        self._flush.add(client)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self.in_loop():
            self.call_soon_threadsafe(lambda: self._on_unregister_write(client, userdata, sock))
            return
        self._flush.discard(client)
        if client in self._writing:
            self._writing.discard(client)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.modify(sock, selectors.EVENT_READ, client)

    # ----------------------------------------------------------------- the loop
    def _fail(self, exc: BaseException) -> None:
        log.error("fleet event loop: %s: %s", type(exc).__name__, exc, exc_info=exc)
        if self.error is None:
            self.error = exc

    def _run(self) -> None:
        self._tid = threading.get_ident()
        next_misc = time.monotonic() + MISC_INTERVAL
        select = self._sel.select
        timers = self._timers
        calls = self._calls
        while self._running:
            now = time.monotonic()
            timeout = next_misc - now
            if timers:
                timeout = min(timeout, timers[0][0] - now)
            if calls or self._flush or self._again:
                timeout = 0.0
            try:
                events = select(max(timeout, 0.0))
            except OSError as exc:  # a socket closed under us; retry
                self._fail(exc)
                continue
            for key, mask in events:
                client = key.data
                if client is None:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                self._service(client, mask)
            if self._again:
                for client in list(self._again):
                    self._again.discard(client)
                    self._service(client, selectors.EVENT_READ)
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                fn = heapq.heappop(timers)[2]
                try:
                    fn()
                except Exception as exc:
                    self._fail(exc)
            for _ in range(len(calls)):
                try:
                    calls.popleft()()
                except Exception as exc:
                    self._fail(exc)
            if self._flush:
                self._flush_writes()
            if now >= next_misc:
                next_misc = now + MISC_INTERVAL
                for client in list(self._clients):
                    try:
                        client.loop_misc()
                    except Exception as exc:
                        self._fail(exc)

    def _service(self, client: mqtt.Client, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                client.loop_read()
                sock = client.socket()
                pending = getattr(sock, "pending", None)
                if pending is not None and pending():
                    self._again.add(client)
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        except Exception as exc:
            self._fail(exc)

    def _flush_writes(self) -> None:
        flush = self._flush
        self._flush = set()
        for client in flush:
            sock = client.socket()
            if sock is None:
                continue
            try:
                client.loop_write()
            except Exception as exc:
                self._fail(exc)
                continue
            if client.want_write() and client.socket() is not None and client not in self._writing:
                # the socket buffer is full: wait until the selector says it is writable
                self._writing.add(client)
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
