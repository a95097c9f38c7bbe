"""Conformance: MQTT over WebSocket (MQTT 5.0 / 3.1.1 section 6) on the emulator's listener.

paho-mqtt's websocket transport for ordinary use (connect, subscribe, shared delivery, mixed
with plain TCP clients), and a raw client built on wsproto for what paho never sends: a packet
split across frames and across TCP segments, several packets in one frame, text frames,
broken frames and plain garbage. After each bad client the others carry on and the listener
still accepts connections. Every emulator is started on free ports by the test.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.cli import invoke, one_error_line
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
)

from aetherdiag.emulator import Emulator, announce
from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.codec import Decoder
from aetherdiag.emulator.encoding import encode
from aetherdiag.harness.clients import release
from aetherdiag.harness.model import BrokerTarget, EmulatorSettings
from aetherdiag.harness.run import open_broker

WAIT = 5.0


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(ws_port=0) as em:
        yield em


class WsRaw:
    """A WebSocket client on a blocking socket (wsproto does the framing): MQTT bytes in
    binary frames exactly as the test lays them out."""

    def __init__(self, port: int, subprotocols: tuple[str, ...] = ("mqtt",)) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.decoder = Decoder(version=pk.MQTT_5)
        self.packets: list[Any] = []
        self.events: list[Event] = []
        self.closed = False
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/mqtt",
                                               subprotocols=list(subprotocols))))
        self.handshake = self._until(lambda: any(
            isinstance(e, (AcceptConnection, RejectConnection)) for e in self.events))

    def _until(self, done: Any) -> Event | None:
        deadline = time.monotonic() + WAIT
        while not done():
            if self.closed or time.monotonic() > deadline:
                return None
            self.pump()
        return next((e for e in self.events if isinstance(e, (AcceptConnection,
                                                              RejectConnection))), None)

    def pump(self) -> None:
        """Read once from the socket and take in what it carried."""
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ConnectionError):
            data = b""
        if not data:
            self.closed = True
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            self.events.append(event)
            if isinstance(event, BytesMessage):
                self.packets += self.decoder.feed(bytes(event.data))

    def frame(self, data: bytes) -> bytes:
        """``data`` as one binary frame (masked, as a client must)."""
        return self.ws.send(BytesMessage(data=data))

    def send_frames(self, *payloads: bytes) -> None:
        self.sock.sendall(b"".join(self.frame(p) for p in payloads))

    def expect(self, n: int) -> list[Any]:
        """The first ``n`` MQTT packets received (fails if they do not come)."""
        deadline = time.monotonic() + WAIT
        while len(self.packets) < n and not self.closed and time.monotonic() < deadline:
            self.pump()
        assert len(self.packets) >= n, (self.packets, self.events)
        return self.packets[:n]

    def wait_closed(self) -> bool:
        deadline = time.monotonic() + WAIT
        while not self.closed and time.monotonic() < deadline:
            self.pump()
        return self.closed

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raws() -> Iterator[list[WsRaw]]:
    made: list[WsRaw] = []
    yield made
    for r in made:
        r.close()


class WsPaho:
    """A paho client over WebSocket that records the payloads it receives."""

    def __init__(self, port: int, client_id: str, transport: str = "websockets",
                 protocol: int = mqtt.MQTTv5) -> None:
        self.got: list[bytes] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  transport=transport, protocol=protocol)  # type: ignore[arg-type]
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.on_message = lambda _c, _u, m: self.got.append(bytes(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic_filter: str) -> None:
        done: list[int] = []
        self.client.on_subscribe = lambda *a: done.append(1)
        self.client.subscribe(topic_filter, 1)
        _wait(lambda: bool(done))

    def wait_for(self, n: int) -> list[bytes]:
        _wait(lambda: len(self.got) >= n)
        return self.got

    def stop(self) -> None:
        self.client.disconnect()
        release(self.client)


def _wait(done: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def pahos() -> Iterator[list[WsPaho]]:
    made: list[WsPaho] = []
    yield made
    for c in made:
        c.stop()


def _connect(client_id: str) -> bytes:
    return encode(pk.Connect(client_id=client_id, protocol_level=pk.MQTT_5), pk.MQTT_5)


def _subscribe(topic_filter: str, packet_id: int = 1) -> bytes:
    req = pk.SubscriptionRequest(topic_filter=topic_filter, qos=0)
    return encode(pk.Subscribe(packet_id=packet_id, subscriptions=(req,)), pk.MQTT_5)


# ------------------------------------------------------------------------------ paho clients


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_connect_subscribe_and_shared_delivery_over_websocket(emu, pahos, protocol):
    members = [WsPaho(emu.ws_ports[0], f"ws-{i}", protocol=protocol) for i in range(2)]
    pahos.extend(members)
    tcp_member = WsPaho(emu.port, "tcp-member", transport="tcp", protocol=protocol)
    pahos.append(tcp_member)
    for m in [*members, tcp_member]:
        m.subscribe("$share/g/jobs/+")
    publisher = WsPaho(emu.ws_ports[0], "ws-pub", protocol=protocol)
    pahos.append(publisher)
    for n in range(6):
        publisher.client.publish(f"jobs/{n}", str(n).encode(), qos=1)
    for m in [*members, tcp_member]:  # round robin over WebSocket and TCP members alike
        assert len(m.wait_for(2)) == 2
    time.sleep(0.1)
    got = sorted(p for m in [*members, tcp_member] for p in m.got)
    assert got == [str(n).encode() for n in range(6)]
    assert {c.client_id for c in emu.clients()} == {"ws-0", "ws-1", "tcp-member", "ws-pub"}


# ------------------------------------------------------------------------------ raw frames


def test_the_upgrade_names_the_mqtt_subprotocol(emu, raws):
    raw = WsRaw(emu.ws_ports[0], ("mqtt",))
    raws.append(raw)
    assert isinstance(raw.handshake, AcceptConnection)
    assert raw.handshake.subprotocol == "mqtt"


def test_a_client_offering_no_subprotocol_is_served_one_offering_others_is_refused(emu, raws):
    plain = WsRaw(emu.ws_ports[0], ())
    raws.append(plain)
    assert isinstance(plain.handshake, AcceptConnection)  # as Mosquitto does
    plain.send_frames(_connect("no-subprotocol"))
    assert isinstance(plain.expect(1)[0], pk.ConnAck)
    other = WsRaw(emu.ws_ports[0], ("chat", "soap"))
    raws.append(other)
    assert isinstance(other.handshake, RejectConnection)
    assert other.handshake.status_code == 400


def test_a_packet_split_across_frames_and_tcp_segments(emu, raws):
    raw = WsRaw(emu.ws_ports[0])
    raws.append(raw)
    connect = _connect("split")
    # three frames, each cutting the CONNECT packet somewhere, and the second frame itself
    # sent in two TCP segments (its header apart from its payload)
    first, second, third = connect[:1], connect[1:7], connect[7:]
    raw.sock.sendall(raw.frame(first))
    time.sleep(0.05)
    middle = raw.frame(second)
    raw.sock.sendall(middle[:3])
    time.sleep(0.05)
    raw.sock.sendall(middle[3:])
    time.sleep(0.05)
    raw.sock.sendall(raw.frame(third))
    (connack,) = raw.expect(1)
    assert isinstance(connack, pk.ConnAck) and connack.reason_code == 0


def test_several_packets_in_one_frame(emu, raws):
    raw = WsRaw(emu.ws_ports[0])
    raws.append(raw)
    ping = encode(pk.PingReq(), pk.MQTT_5)
    raw.send_frames(_connect("batched") + _subscribe("a/b") + ping)
    connack, suback, pingresp = raw.expect(3)
    assert isinstance(connack, pk.ConnAck)
    assert isinstance(suback, pk.SubAck) and suback.reason_codes == (0,)
    assert isinstance(pingresp, pk.PingResp)
    # and the subscription works: a publish from a TCP client arrives as a binary frame
    pub = WsPaho(emu.port, "tcp-pub", transport="tcp")
    try:
        pub.client.publish("a/b", b"hello", qos=0)
        (publish,) = raw.expect(4)[3:]
        assert isinstance(publish, pk.Publish) and publish.payload == b"hello"
    finally:
        pub.stop()


def test_websocket_pings_are_answered(emu, raws):
    raw = WsRaw(emu.ws_ports[0])
    raws.append(raw)
    raw.sock.sendall(raw.ws.send(Ping(payload=b"are you there")))
    deadline = time.monotonic() + WAIT
    while not any(isinstance(e, Pong) for e in raw.events) and time.monotonic() < deadline:
        raw.pump()
    assert [e.payload for e in raw.events if isinstance(e, Pong)] == [b"are you there"]


@pytest.mark.parametrize("garbage", ["not-http", "text-frame", "broken-frame", "bad-mqtt"])
def test_a_client_sending_garbage_is_closed_and_nobody_else_notices(emu, raws, pahos, garbage):
    member = WsPaho(emu.ws_ports[0], "steady")
    pahos.append(member)
    member.subscribe("$share/g/steady/+")
    publisher = WsPaho(emu.port, "steady-pub", transport="tcp")
    pahos.append(publisher)
    publisher.client.publish("steady/1", b"before", qos=1)
    member.wait_for(1)

    if garbage == "not-http":
        sock = socket.create_connection(("127.0.0.1", emu.ws_ports[0]), timeout=WAIT)
        try:
            sock.sendall(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02hi\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 400")
        finally:
            sock.close()
    else:
        bad = WsRaw(emu.ws_ports[0])
        raws.append(bad)
        bad.send_frames(_connect("bad"))
        assert isinstance(bad.expect(1)[0], pk.ConnAck)
        if garbage == "text-frame":  # [MQTT-6.0.0-1]: only binary frames
            from wsproto.events import TextMessage

            bad.sock.sendall(bad.ws.send(TextMessage(data="PUBLISH steady/1 hi")))
        elif garbage == "broken-frame":  # unmasked, reserved opcode 0x3: not WebSocket
            bad.sock.sendall(b"\x83\x05hello")
        else:  # a binary frame holding no MQTT packet (reserved packet type 0)
            bad.send_frames(b"\x00\x02\xff\xff")
        assert bad.wait_closed()
        # the emulator's close frame (then wsproto's 1006 for the end of the TCP stream)
        codes = [e.code for e in bad.events if isinstance(e, CloseConnection)]
        if garbage == "text-frame":
            assert codes[0] == 1003
        elif garbage == "broken-frame":
            assert codes[0] == 1002
        _wait(lambda: not any(c.client_id == "bad" and c.connected for c in emu.clients()))

    publisher.client.publish("steady/2", b"after", qos=1)
    assert member.wait_for(2) == [b"before", b"after"]
    late = WsRaw(emu.ws_ports[0])  # the listener still accepts
    raws.append(late)
    late.send_frames(_connect("late"))
    assert isinstance(late.expect(1)[0], pk.ConnAck)


def test_a_websocket_client_that_vanishes_is_a_lost_connection(emu, raws, pahos):
    watcher = WsPaho(emu.port, "watcher", transport="tcp")
    pahos.append(watcher)
    watcher.subscribe("wills/+")
    raw = WsRaw(emu.ws_ports[0])
    raws.append(raw)
    will = encode(pk.Connect(client_id="mortal", protocol_level=pk.MQTT_5,
                             will=pk.Will(topic="wills/mortal", payload=b"gone")), pk.MQTT_5)
    raw.send_frames(will)
    assert isinstance(raw.expect(1)[0], pk.ConnAck)
    raw.sock.close()  # no close frame, no DISCONNECT
    assert watcher.wait_for(1) == [b"gone"]


# ------------------------------------------------------------------------------ clusters


def test_every_node_of_a_cluster_has_its_websocket_listener(pahos):
    with Emulator(ws_port=0, nodes=2) as em:
        assert len(em.ws_ports) == 2 and len(set(em.ws_ports) | set(em.ports)) == 4
        assert em.ws_urls == tuple(f"ws://127.0.0.1:{p}/mqtt" for p in em.ws_ports)
        c = WsPaho(em.ws_ports[1], "on-node-2")
        pahos.append(c)
        c.subscribe("t")
        assert next(v for v in em.clients() if v.client_id == "on-node-2").node == 2
        c.client.disconnect()
        release(c.client)
        pahos.remove(c)
        em.node_down(2)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", em.ws_ports[1]), timeout=1).close()
        em.node_up(2)
        again = WsPaho(em.ws_ports[1], "back")
        pahos.append(again)
        again.subscribe("t")


def test_no_websocket_listener_unless_asked() -> None:
    with Emulator() as em:
        assert em.ws_ports == () and em.ws_urls == ()
        with pytest.raises(ValueError):
            _ = em.ws_url


# ------------------------------------------------------------------------------ embedded


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_embedded_emulator_serves_websocket_runs(pahos, mode):
    with open_broker(None, EmulatorSettings(), mode=mode, transport="websocket") as opened:
        target = opened.target
        assert target.scheme == "ws" and target.websocket
        assert "over WebSocket" in opened.label
        assert opened.endpoint(1) == target
        c = WsPaho(target.port, f"embedded-{mode}")
        pahos.append(c)
        c.subscribe("$share/g/t")
        c.client.publish("t", b"x", qos=1)
        assert c.wait_for(1) == [b"x"]
        c.stop()
        pahos.remove(c)
        stats = opened.stats()
        assert stats is not None and stats["mode"] == mode


def test_a_given_target_ignores_the_transport() -> None:
    given = BrokerTarget(scheme="mqtt", host="127.0.0.1", port=1)
    with open_broker(given, EmulatorSettings(), transport="websocket") as opened:
        assert opened.target is given and opened.emulator is None


# ------------------------------------------------------------------------------ serve


def test_serve_announces_its_websocket_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "emulator", "serve", "--port", "0",
         "--ws-port", "0", "--machine", "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        event = announce.load(proc.stdout.readline())
        assert isinstance(event, announce.Listening) and len(event.ws_ports) == 1
        human = proc.stderr.readline()
        assert f"ws://127.0.0.1:{event.ws_ports[0]}/mqtt" in human
        raw = WsRaw(event.ws_ports[0])
        try:
            raw.send_frames(_connect("to-serve"))
            assert isinstance(raw.expect(1)[0], pk.ConnAck)
        finally:
            raw.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "2883", "--ws-port", "2883"],
     "--ws-port 2883: the same port as --port; give the WebSocket listener a port of its own"),
    (["--port", "0", "--ws-port", "70000"], "--ws-port 70000: expected 0 to 65535"),
    (["--port", "0", "--ws-port", "-1"], "--ws-port -1: expected 0 to 65535"),
    (["--port", "2883", "--nodes", "3", "--ws-port", "2884"],
     "--ws-port 2884 --nodes 3: the WebSocket ports 2884..2886 overlap the MQTT ports "
     "2883..2885"),
    (["--port", "0", "--nodes", "2", "--ws-port", "65535"],
     "--ws-port 65535 --nodes 2: node 2 would need port 65536, above 65535"),
])
def test_bad_ws_ports_are_one_line_usage_errors(args, message):
    result = invoke("emulator", "serve", *args)
    assert result.exit_code == 2, result.output
    assert one_error_line(result) == f"aetherdiag: error: {message}"
