"""Which MQTT version a broker speaks (harness/negotiate.py), and CONNACK codes as sent.

A fake broker that speaks only MQTT 3.1.1 answers an MQTT 5.0 CONNECT the two ways real ones
do (RabbitMQ: the connection closed without a CONNACK; NATS: a 3.1.1 CONNACK with return code
1), so the fallback is proven without them; tests/commands/test_mqtt311_brokers.py runs the
commands against the real RabbitMQ and NATS.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Literal, cast

import paho.mqtt.client as mqtt
import pytest

from aetherdiag.emulator import Emulator
from aetherdiag.harness.clients import BrokerUnreachable, wire_connack
from aetherdiag.harness.model import BrokerTarget
from aetherdiag.harness.negotiate import Negotiated, connect_once, negotiate
from aetherdiag.mqtt.reasons import (
    V5_OF_RETURN_CODE,
    connack_answer,
    connack_read_in,
    connack_text,
    granted_text,
    return_code_of,
)

V5Answer = Literal["close", "return code 1", "close all"]


class V311OnlyServer:
    """Accepts MQTT connections; a 3.1.1 CONNECT gets CONNACK 0 (unless ``close all``), a 5.0
    CONNECT is closed at once (``close``) or answered ``20 02 00 01`` (``return code 1``)."""

    def __init__(self, v5: V5Answer) -> None:
        self.v5 = v5
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.levels: list[int] = []  # the protocol level of every CONNECT, in order
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            with contextlib.suppress(OSError):
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        head = conn.recv(2)  # CONNECT is short: a one-byte remaining length
        body = b""
        while len(body) < head[1]:
            body += conn.recv(head[1] - len(body))
        level = body[6]  # after the protocol name "MQTT" and its length
        self.levels.append(level)
        if level == 5 and self.v5 == "return code 1":
            conn.sendall(bytes([0x20, 0x02, 0x00, 0x01]))
            conn.close()
        elif level == 5 or self.v5 == "close all":
            conn.close()
        else:
            conn.sendall(bytes([0x20, 0x02, 0x00, 0x00]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self.thread.join(5)
        self.sock.close()
        for c in self.conns:
            c.close()


@contextlib.contextmanager
def v311_only(v5: V5Answer) -> Iterator[V311OnlyServer]:
    server = V311OnlyServer(v5)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(("v5", "refusal"), [
    ("close", "the connection closed before any CONNACK"),
    ("return code 1", "a 3.1.1 CONNACK, return code 1 (unacceptable protocol version)"),
])
def test_a_broker_that_refuses_v5_gets_311(v5: V5Answer, refusal: str) -> None:
    with v311_only(v5) as server:
        target = BrokerTarget(host="127.0.0.1", port=server.port)
        found = negotiate([target], 2.0, client_id="ad-neg")
    assert found.protocol == "3.1.1" and found.fell_back
    assert found.refusal == refusal  # the byte on the wire, not paho's 0x84
    assert found.endpoint == target.display()
    assert server.levels == [5, 4]  # MQTT 5.0 first, then once 3.1.1
    assert found.label() == "3.1.1 (the broker refused 5.0)"
    assert "\n" not in found.message() and "--mqtt" in found.message()


def test_a_broker_that_refuses_both_is_unreachable_with_both_answers() -> None:
    with v311_only("close all") as server:
        target = BrokerTarget(host="127.0.0.1", port=server.port)
        with pytest.raises(BrokerUnreachable) as err:
            negotiate([target], 2.0, client_id="ad-neg")
    assert str(err.value) == (
        f"cannot connect to {target.display()}: MQTT 5.0: the connection closed before any "
        "CONNACK; MQTT 3.1.1: the connection closed before any CONNACK (is this an MQTT "
        "broker?)")


def test_a_broker_that_speaks_5_stays_on_5() -> None:
    with Emulator() as em:
        found = negotiate([BrokerTarget(host=em.host, port=em.port)], 2.0, client_id="ad-neg")
    assert found.protocol == "5" and not found.fell_back and found.label() == "5"


def test_other_refusals_are_not_a_protocol_question() -> None:
    """Bad credentials: no second try with 3.1.1 and the version stays 5.0; the fleet's own
    connect reports the refusal, naming the client (the run's error names worker-N)."""
    with Emulator(users={"alice": "secret"}) as em:
        target = BrokerTarget(host=em.host, port=em.port, username="alice", password="nope")
        found = negotiate([target], 2.0, client_id="ad-neg")
        answer = connect_once(target, "5", 2.0, "ad-once-5")
    assert found == Negotiated(protocol="5") and not found.fell_back
    assert answer.code == 0x86 and not answer.refuses_version


def test_connect_once_reads_311_return_codes_as_sent() -> None:
    with Emulator(users={"alice": "secret"}) as em:
        target = BrokerTarget(host=em.host, port=em.port, username="alice", password="nope")
        answer = connect_once(target, "3.1.1", 2.0, "ad-once")
    assert (answer.code, answer.read_in) == (4, "3.1.1")
    assert answer.describe() == "CONNACK return code 4 (bad user name or password)"


def test_an_unreachable_port_is_left_to_the_fleet() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = BrokerTarget(host="127.0.0.1", port=port)
    assert negotiate([target], 1.0, client_id="ad-neg") == Negotiated(protocol="5")
    assert connect_once(target, "5", 1.0, "ad-once").error == "connection refused"


# -- the codes as sent -------------------------------------------------------------------------


def test_without_the_packet_paho_translation_is_undone_with_the_table() -> None:
    no_packet = cast(mqtt.Client, SimpleNamespace())
    for rc, v5 in V5_OF_RETURN_CODE.items():
        assert wire_connack(no_packet, SimpleNamespace(value=v5), "3.1.1") == (rc, "3.1.1")
        assert return_code_of(v5) == rc
    assert wire_connack(no_packet, SimpleNamespace(value=0x84), "5") == (0x84, "5")
    # the packet paho is handling holds the byte: a v5 client answered 20 02 00 01
    handling = cast(mqtt.Client, SimpleNamespace(
        _in_packet={"command": 0x20, "packet": bytearray(b"\x00\x01")}))
    assert wire_connack(handling, SimpleNamespace(value=0x84), "5") == (1, "3.1.1")


def test_codes_read_next_to_their_meaning() -> None:
    assert connack_read_in(1, "5") == "3.1.1" and connack_read_in(0x87, "5") == "5"
    assert connack_text(1, "3.1.1") == "return code 1 (unacceptable protocol version)"
    assert connack_text(0, "3.1.1") == "return code 0 (connection accepted)"
    assert connack_text(0x84, "5") == "0x84 (unsupported protocol version)"
    assert connack_text(0, "5") == "0x00 (success)"
    assert connack_text(9, "3.1.1") == "return code 9 (reserved)"
    assert connack_answer(1, "3.1.1", "5") == (
        "a 3.1.1 CONNACK, return code 1 (unacceptable protocol version)")
    assert granted_text(1) == "QoS 1 (SUBACK 0x01)"
    assert granted_text(0x80) == "SUBACK 0x80 (unspecified error / failure)"
