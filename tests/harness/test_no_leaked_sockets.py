"""No socket is left to the garbage collector: a paho client released with
``harness.clients.release`` (its connection and the socket pair ``loop_start()`` made), and an
emulator stopped with clients still connected, close every socket they opened. An open socket
found by the collector is a ResourceWarning, which the suite turns into a failure of whichever
test happens to be running when it is collected."""

from __future__ import annotations

import gc
import socket
import threading
import time
import warnings

from aetherdiag.emulator import Emulator
from aetherdiag.harness.clients import new_client, release
from aetherdiag.harness.model import BrokerTarget


def resource_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


class _Cycle:
    """Holds a paho client whose callbacks are bound methods: the reference cycle every
    real user of the client has (probe, watch, replay's intruder)."""

    def __init__(self, port: int, name: str) -> None:
        self.connected = threading.Event()
        self.client = new_client(BrokerTarget(host="127.0.0.1", port=port), name, "5", tls=None)
        self.client.on_connect = self.on_connect

    def on_connect(self, *_: object) -> None:
        self.connected.set()


def test_a_released_client_holds_no_socket() -> None:
    with Emulator() as em:
        c = _Cycle(em.port, "released")
        c.client.connect("127.0.0.1", em.port)
        c.client.loop_start()
        assert c.connected.wait(5)
        c.client.disconnect()
        release(c.client)
        assert c.client.socket() is None
        assert getattr(c.client, "_sockpairR", None) is None  # the loop's wake-up pair
        del c
    assert resource_warnings() == []


def test_releasing_a_client_that_never_connected_is_harmless() -> None:
    client = new_client(BrokerTarget(host="127.0.0.1", port=1), "never", "3.1.1", tls=None)
    release(client)
    release(client)  # twice: still nothing to close, nothing raised
    assert client.socket() is None


def test_an_emulator_stopped_under_live_connections_closes_their_sockets() -> None:
    """Clients still connected (raw sockets, so only the server side is under test) when the
    emulator stops: each connection is closed, none found open by the collector afterwards."""
    em = Emulator().start()
    clients = [socket.create_connection(("127.0.0.1", em.port), timeout=5) for _ in range(5)]
    try:
        deadline = time.monotonic() + 5
        while em.stats().connections < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        em.stop()
        assert resource_warnings() == []
        for c in clients:  # the server side is closed: each client reads end of file
            c.settimeout(5)
            assert c.recv(16) == b""
    finally:
        for c in clients:
            c.close()
