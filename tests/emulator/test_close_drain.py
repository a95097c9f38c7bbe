"""The emulator closes after a DISCONNECT it sends the way Mosquitto does: what it wrote goes
out, its write side shuts (FIN), and what the client still sends is read and dropped for a
while, so the client reads the reason code and then a clean end, never a reset that loses it.

The client is the emulator's own codec on a plain socket (every byte is ours), flooding past
Receive Maximum as the Paho interoperability test ``test_flow_control2`` does, and sending on
after the broker gave up on it, with more bytes than a socket buffer holds unread.
"""

from __future__ import annotations

import socket

from aetherdiag.emulator import Emulator, Limits
from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.codec import Decoder
from aetherdiag.emulator.encoding import encode

V5 = pk.MQTT_5


def test_a_client_flooding_past_receive_maximum_reads_0x93_then_a_clean_end() -> None:
    with Emulator(limits=Limits(receive_maximum=10)) as em, \
            socket.create_connection((em.host, em.port), timeout=10) as sock:
        sock.sendall(encode(pk.Connect(protocol_level=V5, client_id="flood"), V5))
        decoder = Decoder(V5)
        got: list[object] = []
        while not got:
            got += decoder.feed(sock.recv(4096))
        assert isinstance(got[0], pk.ConnAck) and got[0].reason_code == 0
        # receive maximum + 1 QoS 2 publishes, then 2,000 more the broker must not choke on
        flood = b"".join(encode(pk.Publish(topic="t", payload=b"x" * 100, qos=2,
                                           packet_id=i), V5) for i in range(1, 2012))
        sock.sendall(flood)
        ended_by = "eof"
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += decoder.feed(data)
        except ConnectionResetError:
            ended_by = "reset"
    disconnects = [p for p in got if isinstance(p, pk.Disconnect)]
    assert [d.reason_code for d in disconnects] == [0x93], got[-3:]
    assert ended_by == "eof"  # FIN after the DISCONNECT, no RST
    assert sum(isinstance(p, pk.PubRec) for p in got) == 10


def test_the_emulator_serves_others_while_a_closed_client_drains() -> None:
    """A client that keeps sending after its DISCONNECT is read and dropped: a second
    client's publish still reaches a subscriber at once."""
    with Emulator(limits=Limits(receive_maximum=2)) as em, \
            socket.create_connection((em.host, em.port), timeout=10) as bad, \
            socket.create_connection((em.host, em.port), timeout=10) as good:
        for sock, cid in ((bad, "bad"), (good, "good")):
            sock.sendall(encode(pk.Connect(protocol_level=V5, client_id=cid), V5))
        good_dec = Decoder(V5)
        acks: list[object] = []
        while not acks:
            acks += good_dec.feed(good.recv(4096))
        good.sendall(encode(pk.Subscribe(packet_id=1, subscriptions=(
            pk.SubscriptionRequest(topic_filter="news", qos=0),)), V5))
        seen: list[object] = []
        while not any(isinstance(p, pk.SubAck) for p in seen):
            seen += good_dec.feed(good.recv(4096))
        bad.sendall(b"".join(encode(pk.Publish(topic="t", payload=b"x", qos=1, packet_id=i),
                                    V5) for i in range(1, 500)))
        good.sendall(encode(pk.Publish(topic="news", payload=b"hello"), V5))
        seen = []
        while not any(isinstance(p, pk.Publish) for p in seen):
            seen += good_dec.feed(good.recv(4096))
        assert [p.payload for p in seen if isinstance(p, pk.Publish)] == [b"hello"]
