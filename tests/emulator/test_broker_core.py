"""The sans-IO broker, driven with packet objects and a fake clock: no sockets, no threads.

``Net`` plays the transport: it opens connections, hands the broker packets, advances time and
records what the broker emits per connection. Every packet the broker emits is also encoded
and decoded again for its connection's protocol version, so nothing unsendable slips through.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from typing import Any

import pytest

from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.broker import Broker, Out
from aetherdiag.emulator.codec import Decoder
from aetherdiag.emulator.encoding import encode
from aetherdiag.emulator.session import Limits

V3 = pk.MQTT_3_1_1
V5 = pk.MQTT_5
CLOSED = None  # what the broker emits to mean "close this connection"


class Net:
    """A fake transport around one Broker; time only moves when a test says so."""

    def __init__(self, **kwargs: Any) -> None:
        self.broker = Broker(**kwargs)
        self.now = 1000.0
        self._ids = itertools.count(1)
        self.version: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.conn_of: dict[str, int] = {}
        self.log: list[Out] = []

    # -- transport ------------------------------------------------------------------------

    def _check(self, out: list[Out]) -> list[Out]:
        for conn_id, packet in out:
            if packet is None:
                continue
            version = self.version.get(conn_id, V3)
            wire = encode(packet, version)
            again = Decoder(version).feed(wire)
            assert len(again) == 1 and type(again[0]) is type(packet), (packet, again)
            if version == V5:
                assert again[0] == packet, (packet, again[0])
        self.log += out
        return out

    def open(self) -> int:
        conn_id = next(self._ids)
        self.broker.open(conn_id, self.now)
        return conn_id

    def send(self, conn_id: int, packet: pk.Packet) -> list[Out]:
        return self._check(self.broker.handle(conn_id, packet, self.now))

    def lost(self, conn_id: int) -> list[Out]:
        return self._check(self.broker.lost(conn_id, self.now))

    def advance(self, seconds: float) -> list[Out]:
        self.now += seconds
        return self._check(self.broker.tick(self.now))

    # -- client helpers -------------------------------------------------------------------

    def connect(
        self, client_id: str, version: int = V5, *, clean: bool = True, keepalive: int = 0,
        props: dict[int, Any] | None = None, will: pk.Will | None = None,
        username: str | None = None, password: bytes | None = None,
    ) -> tuple[int, pk.ConnAck]:
        conn_id = self.open()
        self.version[conn_id] = version
        out = self.send(conn_id, pk.Connect(
            protocol_level=version, client_id=client_id, clean_start=clean,
            keepalive=keepalive, properties=props or {}, will=will, username=username,
            password=password,
        ))
        acks = [p for cid, p in out if cid == conn_id and isinstance(p, pk.ConnAck)]
        assert len(acks) == 1 and out.index((conn_id, acks[0])) == min(
            i for i, (cid, _) in enumerate(out) if cid == conn_id), out  # CONNACK comes first
        if acks[0].reason_code == 0:
            self.names[conn_id] = client_id
            self.conn_of[client_id] = conn_id
        return conn_id, acks[0]

    def client(self, client_id: str, version: int = V5, **kwargs: Any) -> int:
        conn_id, ack = self.connect(client_id, version, **kwargs)
        assert ack.reason_code == 0, ack
        return conn_id

    def subscribe(self, conn_id: int, *filters: str, qos: int = 1, pid: int = 1,
                  **options: Any) -> tuple[int, ...]:
        reqs = tuple(pk.SubscriptionRequest(topic_filter=f, qos=qos, **options) for f in filters)
        out = self.send(conn_id, pk.Subscribe(packet_id=pid, subscriptions=reqs))
        acks = [p for cid, p in out if cid == conn_id and isinstance(p, pk.SubAck)]
        assert len(acks) == 1, out
        return acks[0].reason_codes

    def publish(self, conn_id: int, topic: str, payload: bytes | str = b"", qos: int = 0,
                pid: int | None = None, retain: bool = False, **kwargs: Any) -> list[Out]:
        if isinstance(payload, str):
            payload = payload.encode()
        if qos and pid is None:
            pid = next(self._ids) % 65535 + 1
        return self.send(conn_id, pk.Publish(topic=topic, payload=payload, qos=qos, packet_id=pid,
                                             retain=retain, **kwargs))

    def who(self, out: Iterable[Out]) -> list[tuple[str, str]]:
        """(receiver name, payload) for every PUBLISH in ``out``, in order."""
        return [(self.names.get(cid, str(cid)), p.payload.decode())
                for cid, p in out if isinstance(p, pk.Publish)]


def publishes(out: Iterable[Out], conn_id: int) -> list[pk.Publish]:
    return [p for cid, p in out if cid == conn_id and isinstance(p, pk.Publish)]


def packets_to(out: Iterable[Out], conn_id: int) -> list[pk.Packet | None]:
    return [p for cid, p in out if cid == conn_id]


def members(net: Net, names: Iterable[str], share: str = "$share/g/jobs", qos: int = 1,
            version: int = V5) -> list[int]:
    conns = []
    for name in names:
        conn_id = net.client(name, version)
        assert net.subscribe(conn_id, share, qos=qos) == (qos,)
        conns.append(conn_id)
    return conns


def receivers(net: Net, pub: int, count: int, topic: str = "jobs", qos: int = 0,
              start: int = 0) -> list[str]:
    got: list[str] = []
    for i in range(start, start + count):
        who = net.who(net.publish(pub, topic, f"m{i}", qos=qos))
        assert len(who) == 1, who  # exactly one member per message
        assert who[0][1] == f"m{i}"
        got.append(who[0][0])
    return got


# -- CONNECT / CONNACK ----------------------------------------------------------------------


def test_connack_v5_advertises_capabilities() -> None:
    net = Net()
    _, ack = net.connect("a", V5)
    assert ack == pk.ConnAck(properties={
        pk.PROP_RETAIN_AVAILABLE: 1,
        pk.PROP_WILDCARD_SUB_AVAILABLE: 1,
        pk.PROP_SUB_ID_AVAILABLE: 1,
        pk.PROP_SHARED_SUB_AVAILABLE: 1,
        pk.PROP_MAXIMUM_PACKET_SIZE: Limits().max_packet_size,
    })


def test_connack_v311_is_plain() -> None:
    _, ack = Net().connect("a", V3)
    assert ack == pk.ConnAck()


def test_v5_empty_client_id_is_assigned_and_unique() -> None:
    net = Net()
    _, first = net.connect("", V5)
    _, second = net.connect("", V5)
    a = first.properties[pk.PROP_ASSIGNED_CLIENT_ID]
    b = second.properties[pk.PROP_ASSIGNED_CLIENT_ID]
    assert a and b and a != b
    assert set(net.broker.sessions) == {a, b}


def test_v311_empty_client_id_needs_clean_session() -> None:
    net = Net()
    _, ok = net.connect("", V3, clean=True)
    assert ok.reason_code == 0
    conn_id, refused = net.connect("", V3, clean=False)
    assert refused.reason_code == pk.RC311_ID_REJECTED
    assert net.log[-1] == (conn_id, CLOSED)


@pytest.mark.parametrize(("version", "code"), [(V5, 0x86), (V3, 4)])
def test_bad_credentials_refused(version: int, code: int) -> None:
    net = Net(users={"u": "secret"})
    for user, password in [("u", b"wrong"), (None, None), ("x", b"secret")]:
        conn_id, ack = net.connect("a", version, username=user, password=password)
        assert ack.reason_code == code
        assert net.log[-1] == (conn_id, CLOSED)
    assert not net.broker.sessions
    _, ack = net.connect("a", version, username="u", password=b"secret")
    assert ack.reason_code == 0


def test_will_with_invalid_topic_refused() -> None:
    net = Net()
    conn_id, ack = net.connect("a", V5, will=pk.Will(topic="a/#", payload=b"x"))
    assert ack.reason_code == pk.RC_TOPIC_NAME_INVALID
    assert net.log[-1] == (conn_id, CLOSED)
    assert not net.broker.sessions


@pytest.mark.parametrize("prop", [pk.PROP_RECEIVE_MAXIMUM, pk.PROP_MAXIMUM_PACKET_SIZE])
def test_zero_receive_maximum_or_packet_size_is_a_protocol_error(prop: int) -> None:
    net = Net()
    conn_id, ack = net.connect("a", V5, props={prop: 0})
    assert ack.reason_code == pk.RC_PROTOCOL_ERROR
    assert net.log[-1] == (conn_id, CLOSED)
    net.lost(conn_id)
    assert not net.broker.sessions  # nothing left behind
    assert net.broker.stats.connected == 0
    net.client("a", V5)
    assert net.broker.stats.connected == 1


def test_packet_before_connect_closes() -> None:
    net = Net()
    conn_id = net.open()
    assert net.send(conn_id, pk.PingReq()) == [(conn_id, CLOSED)]
    assert net.broker.stats.protocol_errors == 1


def test_second_connect_is_a_protocol_error() -> None:
    net = Net()
    conn_id = net.client("a", V5)
    out = net.send(conn_id, pk.Connect(protocol_level=V5, client_id="b"))
    first = out[0][1]
    assert isinstance(first, pk.Disconnect) and first.reason_code == pk.RC_PROTOCOL_ERROR
    assert out[-1] == (conn_id, CLOSED)
    assert set(net.broker.sessions) == {"a"}


def test_pingreq_answered() -> None:
    net = Net()
    conn_id = net.client("a", V3)
    assert net.send(conn_id, pk.PingReq()) == [(conn_id, pk.PingResp())]


def test_reject_before_connect_unsupported_version() -> None:
    net = Net()
    conn_id = net.open()
    out = net.broker.reject(conn_id, pk.UnsupportedVersion("MQTT", 6), net.now)
    assert out == [(conn_id, pk.ConnAck(reason_code=pk.RC311_BAD_PROTOCOL)), (conn_id, CLOSED)]


def test_reject_before_connect_unsupported_name_at_level_5() -> None:
    net = Net()
    conn_id = net.open()
    out = net.broker.reject(conn_id, pk.UnsupportedVersion("MQTX", V5), net.now)
    assert out == [(conn_id, pk.ConnAck(reason_code=0x84)), (conn_id, CLOSED)]
    assert net.broker.version(conn_id) == V5  # the server encodes that CONNACK as v5


def test_reject_before_connect_malformed_just_closes() -> None:
    net = Net()
    conn_id = net.open()
    assert net.broker.reject(conn_id, pk.MalformedPacket("x"), net.now) == [(conn_id, CLOSED)]


@pytest.mark.parametrize("reason", [0x81, 0x82, 0x95])
def test_reject_after_connect_v5_sends_disconnect(reason: int) -> None:
    net = Net()
    conn_id = net.client("a", V5)
    out = net.broker.reject(conn_id, pk.MalformedPacket("bad", reason), net.now)
    assert len(out) == 2 and out[1] == (conn_id, CLOSED)
    disconnect = out[0][1]
    assert isinstance(disconnect, pk.Disconnect) and disconnect.reason_code == reason
    assert disconnect.properties[pk.PROP_REASON_STRING] == "bad"
    # Once closing, the connection is ignored.
    assert net.send(conn_id, pk.PingReq()) == []


def test_reject_after_connect_v311_just_closes() -> None:
    net = Net()
    conn_id = net.client("a", V3)
    assert net.broker.reject(conn_id, pk.MalformedPacket("bad"), net.now) == [(conn_id, CLOSED)]


def test_connect_timeout() -> None:
    net = Net(limits=Limits(connect_timeout=5))
    silent = net.open()
    talker = net.client("a", V3)
    assert net.advance(5) == []
    assert net.advance(0.1) == [(silent, CLOSED)]
    assert net.advance(100) == []  # connected clients without keep-alive stay
    assert net.broker.sessions["a"].conn == talker


# -- Shared subscriptions: dispatch strategies ----------------------------------------------


def test_round_robin_in_subscription_order() -> None:
    net = Net()
    members(net, ["a", "b", "c"])
    pub = net.client("p")
    assert receivers(net, pub, 7) == ["a", "b", "c", "a", "b", "c", "a"]
    # A late member joins at the end of the turn order.
    members(net, ["d"])
    assert receivers(net, pub, 5, start=7) == ["b", "c", "d", "a", "b"]


def test_shared_messages_carry_the_plain_topic() -> None:
    net = Net()
    (a,) = members(net, ["a"], share="$share/g/jobs/+")
    pub = net.client("p")
    out = net.publish(pub, "jobs/7", "x", qos=1)
    (msg,) = publishes(out, a)
    assert msg.topic == "jobs/7" and msg.qos == 1 and msg.packet_id


def _random_sequence(seed: int) -> list[str]:
    net = Net(strategy="random", seed=seed)
    members(net, ["a", "b", "c"])
    return receivers(net, net.client("p"), 60)


def test_random_is_reproducible_with_a_seed() -> None:
    first = _random_sequence(7)
    assert first == _random_sequence(7)
    assert set(first) == {"a", "b", "c"}
    assert first != ["a", "b", "c"] * 20


def test_sticky_keeps_one_member_until_it_leaves() -> None:
    net = Net(strategy="sticky", seed=1)
    conns = dict(zip("abc", members(net, ["a", "b", "c"]), strict=True))
    pub = net.client("p")
    got = receivers(net, pub, 10)
    assert len(set(got)) == 1
    first = got[0]
    net.send(conns[first], pk.Disconnect())
    net.lost(conns[first])
    after = receivers(net, pub, 10, start=10)
    assert len(set(after)) == 1 and after[0] != first


def test_hash_clientid_follows_the_publisher() -> None:
    net = Net(strategy="hash_clientid")
    names = ["a", "b", "c"]
    members(net, names)
    for publisher in ["p1", "p2", "p3", "worker-17"]:
        pub = net.client(publisher)
        expected = names[zlib.crc32(publisher.encode()) % 3]
        assert receivers(net, pub, 4) == [expected] * 4


def test_hash_topic_follows_the_topic() -> None:
    net = Net(strategy="hash_topic")
    names = ["a", "b", "c"]
    members(net, names, share="$share/g/jobs/+")
    pub = net.client("p")
    seen = set()
    for n in range(12):
        topic = f"jobs/{n}"
        expected = names[zlib.crc32(topic.encode()) % 3]
        for _ in range(2):
            assert net.who(net.publish(pub, topic, "x")) == [(expected, "x")]
        seen.add(expected)
    assert len(seen) > 1


def test_least_inflight_prefers_the_idlest_member() -> None:
    net = Net(strategy="least_inflight")
    a, b, _ = members(net, ["a", "b", "c"])
    pub = net.client("p")
    out = []
    for i in range(3):
        out += net.publish(pub, "jobs", f"m{i}", qos=1)
    assert [w for w, _ in net.who(out)] == ["a", "b", "c"]
    # b acknowledges: it is the only idle member, so it gets the next message.
    (mb,) = publishes(out, b)
    net.send(b, pk.PubAck(packet_id=mb.packet_id or 0))
    assert net.who(net.publish(pub, "jobs", "m3", qos=1)) == [("b", "m3")]
    (ma,) = publishes(out, a)
    net.send(a, pk.PubAck(packet_id=ma.packet_id or 0))
    assert net.who(net.publish(pub, "jobs", "m4", qos=1)) == [("a", "m4")]
    assert net.broker.pending("a") == net.broker.pending("b") == net.broker.pending("c") == 1


def test_per_group_strategies() -> None:
    net = Net(strategy="round_robin", group_strategies={"s": "sticky"}, seed=3)
    for name in "abc":
        conn_id = net.client(name)
        net.subscribe(conn_id, "$share/rr/jobs", "$share/s/jobs", qos=0)
    pub = net.client("p")
    by_group: dict[str, list[str]] = {"rr": [], "s": []}
    for i in range(6):
        out = net.publish(pub, "jobs", f"m{i}")
        got = [w for w, _ in net.who(out)]
        assert len(got) == 2  # one per group
        by_group["rr"].append(got[0])
        by_group["s"].append(got[1])
    assert by_group["rr"] == ["a", "b", "c", "a", "b", "c"]
    assert len(set(by_group["s"])) == 1


def test_independent_groups_and_plain_overlap() -> None:
    net = Net()
    members(net, ["g1a", "g1b"], share="$share/g1/jobs")
    members(net, ["g2a", "g2b"], share="$share/g2/jobs")
    plain = net.client("plain")
    net.subscribe(plain, "jobs")
    both = net.client("both")  # plain and shared in one session: may get two copies
    net.subscribe(both, "jobs", "$share/g3/jobs")
    pub = net.client("p")
    got = sorted(w for w, _ in net.who(net.publish(pub, "jobs", "x")))
    assert got == sorted(["g1a", "g2a", "plain", "both", "both"])
    got = sorted(w for w, _ in net.who(net.publish(pub, "jobs", "y")))
    assert got == sorted(["g1b", "g2b", "plain", "both", "both"])


def test_same_share_name_on_different_filters_are_different_groups() -> None:
    net = Net()
    a = net.client("a")
    b = net.client("b")
    net.subscribe(a, "$share/g/x")
    net.subscribe(b, "$share/g/y")
    pub = net.client("p")
    assert net.who(net.publish(pub, "x", "1")) == [("a", "1")]
    assert net.who(net.publish(pub, "y", "2")) == [("b", "2")]


def test_granted_qos_of_the_chosen_member_is_respected() -> None:
    net = Net()
    a = net.client("a")
    b = net.client("b")
    net.subscribe(a, "$share/g/jobs", qos=0)
    net.subscribe(b, "$share/g/jobs", qos=2)
    pub = net.client("p")
    out = net.publish(pub, "jobs", "1", qos=2) + net.publish(pub, "jobs", "2", qos=2)
    (to_a,) = publishes(out, a)
    (to_b,) = publishes(out, b)
    assert (to_a.qos, to_a.packet_id) == (0, None)
    assert to_b.qos == 2 and to_b.packet_id


def test_subscribing_twice_is_one_membership_and_unsubscribe_leaves() -> None:
    net = Net()
    a = net.client("a")
    net.subscribe(a, "$share/g/jobs")
    assert net.subscribe(a, "$share/g/jobs", pid=2) == (1,)
    members(net, ["b"])
    pub = net.client("p")
    assert receivers(net, pub, 4) == ["a", "b", "a", "b"]
    out = net.send(a, pk.Unsubscribe(packet_id=3, topic_filters=("$share/g/jobs", "$share/g/no")))
    assert out == [(a, pk.UnsubAck(packet_id=3, reason_codes=(0x00, 0x11)))]
    assert receivers(net, pub, 3, start=4) == ["b", "b", "b"]


def test_offline_persistent_member_only_gets_messages_when_nobody_is_online() -> None:
    net = Net()
    a = net.client("a", props={pk.PROP_SESSION_EXPIRY: 300}, clean=False)
    net.subscribe(a, "$share/g/jobs")
    members(net, ["b"])
    net.send(a, pk.Disconnect())
    net.lost(a)
    pub = net.client("p")
    assert receivers(net, pub, 3, qos=1) == ["b", "b", "b"]
    net.send(net.conn_of["b"], pk.Disconnect())
    # b's clean session ends with three unacknowledged QoS 1 messages: they go to the
    # offline persistent member rather than being lost.
    assert net.who(net.lost(net.conn_of["b"])) == []
    assert net.broker.pending("a") == 3
    # Nobody connected: QoS 1 is queued for the offline persistent member.
    assert net.who(net.publish(pub, "jobs", "queued", qos=1)) == []
    assert net.broker.pending("a") == 4
    a2, ack = net.connect("a", clean=False)
    assert ack.session_present
    assert [p.payload for p in publishes(net.log, a2)] == [b"m0", b"m1", b"m2", b"queued"]


def test_no_member_at_all_means_no_matching_subscribers() -> None:
    net = Net()
    pub = net.client("p")
    out = net.publish(pub, "jobs", "x", qos=1, pid=5)
    assert out == [(pub, pk.PubAck(packet_id=5, reason_code=pk.RC_NO_MATCHING_SUBSCRIBERS))]


# -- Shared subscriptions: protocol rules ---------------------------------------------------


@pytest.mark.parametrize(("version", "code"), [(V5, 0x8F), (V3, 0x80)])
def test_malformed_share_names_refused(version: int, code: int) -> None:
    net = Net()
    a = net.client("a", version)
    bad = ["$share//t", "$share/a+/t", "$share/a#/t", "$share/a", "$share/g/a#"]
    assert net.subscribe(a, *bad, "$share/g//finance", "$share/1/a/#") == (
        code, code, code, code, code, 1, 1
    )
    pub = net.client("p")
    assert net.who(net.publish(pub, "/finance", "x")) == [("a", "x")]


def test_no_local_on_a_shared_subscription_is_a_protocol_error() -> None:
    net = Net()
    a = net.client("a")
    out = net.send(a, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="$share/g/t", no_local=True),)))
    assert out[0][1] == pk.Disconnect(
        reason_code=pk.RC_PROTOCOL_ERROR,
        properties={pk.PROP_REASON_STRING: "No Local set on a shared subscription"},
    )
    assert out[-1] == (a, CLOSED)


def test_no_local_on_a_plain_subscription() -> None:
    net = Net()
    a = net.client("a")
    net.subscribe(a, "t", no_local=True)
    b = net.client("b")
    net.subscribe(b, "t")
    assert net.who(net.publish(a, "t", "x")) == [("b", "x")]


@pytest.mark.parametrize(("version", "code"), [(V5, 0x87), (V3, 0)])
def test_publishing_to_a_share_topic_is_refused(version: int, code: int) -> None:
    net = Net()
    members(net, ["a"], share="$share/g/t")
    watcher = net.client("w")
    net.subscribe(watcher, "#", "$share/#")
    pub = net.client("p", version)
    out = net.publish(pub, "$share/g/t", "x", qos=1, pid=9)
    assert out == [(pub, pk.PubAck(packet_id=9, reason_code=code))]
    assert net.broker.stats.dropped["publish_to_share_topic"] == 1


def test_retained_messages_not_sent_to_new_shared_subscriptions() -> None:
    net = Net()
    pub = net.client("p")
    net.publish(pub, "jobs", "old", qos=1, retain=True)
    a = net.client("a")
    out = net.send(a, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="$share/g/jobs", qos=1),)))
    assert publishes(out, a) == []
    plain = net.client("plain")
    out = net.send(plain, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="jobs", qos=1),)))
    (retained,) = publishes(out, plain)
    assert retained.retain and retained.payload == b"old"
    # An empty retained payload clears it.
    net.publish(pub, "jobs", b"", retain=True)
    assert net.broker.retained == {}


# -- Fault modes ---------------------------------------------------------------------------


def test_fault_share_fanout_sends_every_message_to_every_member() -> None:
    net = Net(faults=["share-fanout"])
    members(net, ["a", "b", "c"])
    pub = net.client("p")
    for i in range(3):
        got = net.who(net.publish(pub, "jobs", f"m{i}"))
        assert sorted(got) == [("a", f"m{i}"), ("b", f"m{i}"), ("c", f"m{i}")]


def test_fault_share_literal_takes_the_filter_literally() -> None:
    net = Net(faults=["share-literal"])
    members(net, ["a"])  # "$share/g/jobs" granted, but as a literal filter
    pub = net.client("p")
    assert net.who(net.publish(pub, "jobs", "x")) == []  # nothing arrives
    assert net.who(net.publish(pub, "$share/g/jobs", "y")) == [("a", "y")]


def test_fault_share_unsupported_v5() -> None:
    net = Net(faults=["share-unsupported"])
    conn_id, ack = net.connect("a", V5)
    assert ack.properties[pk.PROP_SHARED_SUB_AVAILABLE] == 0
    assert net.subscribe(conn_id, "$share/g/t", "t") == (pk.RC_SHARED_SUBS_NOT_SUPPORTED, 1)


def test_fault_share_unsupported_v311() -> None:
    net = Net(faults=["share-unsupported"])
    conn_id, ack = net.connect("a", V3)
    assert ack == pk.ConnAck()
    assert net.subscribe(conn_id, "$share/g/t", "t") == (0x80, 1)


def test_fault_redeliver_sends_a_dup_copy() -> None:
    net = Net(faults=["redeliver"])
    (a,) = members(net, ["a"], qos=2)
    pub = net.client("p")
    first, copy = publishes(net.publish(pub, "jobs", "x", qos=1), a)
    assert (first.dup, copy.dup) == (False, True)
    assert first.packet_id == copy.packet_id and first.payload == copy.payload
    assert net.broker.stats.dup_resends == 1
    assert len(publishes(net.publish(pub, "jobs", "y", qos=0), a)) == 1  # QoS 0: no copy


def test_default_redispatches_qos1_of_a_lost_member() -> None:
    net = Net()
    a, b = members(net, ["a", "b"])
    pub = net.client("p")
    out = net.publish(pub, "jobs", "m0", qos=1) + net.publish(pub, "jobs", "m1", qos=1)
    assert net.who(out) == [("a", "m0"), ("b", "m1")]
    out = net.lost(a)  # connection broke, no DISCONNECT, clean session ends
    (moved,) = publishes(out, b)
    assert moved.payload == b"m0" and moved.qos == 1 and not moved.dup
    assert moved.packet_id != publishes(net.log, b)[0].packet_id
    assert net.broker.stats.redispatched == 1
    assert net.broker.stats.total_dropped == 0


def test_redispatch_also_moves_queued_messages() -> None:
    net = Net(limits=Limits(max_inflight=1))
    a, b = members(net, ["a", "b"])
    pub = net.client("p")
    for i in range(4):
        net.publish(pub, "jobs", f"m{i}", qos=1)  # a: m0 in flight, m2 queued
    assert [p.payload for p in publishes(net.log, a)] == [b"m0"]
    out = net.lost(a)
    assert net.broker.stats.redispatched == 2
    assert net.broker.pending("b") == 4  # m1 in flight, m3, m0, m2 queued behind the window
    mb = publishes(net.log, b)[-1]
    net.send(b, pk.PubAck(packet_id=mb.packet_id or 0))
    assert out == []


def test_expired_member_session_hands_shared_qos1_on() -> None:
    net = Net()
    a = net.client("a", props={pk.PROP_SESSION_EXPIRY: 10})
    net.subscribe(a, "$share/g/jobs")
    net.lost(a)
    pub = net.client("p")
    net.publish(pub, "jobs", "m0", qos=1)  # nobody online: queued for the offline member
    members(net, ["b"])
    assert net.who(net.advance(10)) == [("b", "m0")]
    assert net.broker.stats.total_dropped == 0


def test_clean_start_takeover_hands_shared_qos1_on() -> None:
    net = Net()
    a = net.client("a", props={pk.PROP_SESSION_EXPIRY: 300})
    net.subscribe(a, "$share/g/jobs")
    (b,) = members(net, ["b"])
    pub = net.client("p")
    assert net.who(net.publish(pub, "jobs", "m0", qos=1)) == [("a", "m0")]
    net.connect("a", clean=True)  # same client id, clean start: the old session ends
    assert [p.payload for p in publishes(net.log, b)] == [b"m0"]
    assert net.broker.stats.total_dropped == 0


def test_fault_lose_on_disconnect_discards_and_counts() -> None:
    net = Net(faults=["lose-on-disconnect"])
    a, b = members(net, ["a", "b"])
    pub = net.client("p")
    net.publish(pub, "jobs", "m0", qos=1)
    out = net.lost(a)
    assert publishes(out, b) == []
    assert net.broker.stats.dropped["lost_on_disconnect"] == 1
    assert net.broker.stats.redispatched == 0


def test_fault_lose_on_disconnect_persistent_member_keeps_its_messages() -> None:
    net = Net(faults=["lose-on-disconnect"])
    a = net.client("a", props={pk.PROP_SESSION_EXPIRY: 300})
    net.subscribe(a, "$share/g/jobs")
    members(net, ["b"])
    pub = net.client("p")
    net.publish(pub, "jobs", "m0", qos=1)
    assert publishes(net.lost(a), net.conn_of["b"]) == []
    a2, ack = net.connect("a", clean=False)
    assert ack.session_present
    (again,) = [p for p in publishes(net.log, a2)]
    assert again.payload == b"m0" and again.dup


def test_fault_share_retained() -> None:
    net = Net(faults=["share-retained"])
    pub = net.client("p")
    net.publish(pub, "jobs", "old", retain=True)
    a = net.client("a")
    out = net.send(a, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="$share/g/jobs"),)))
    assert [(p.payload, p.retain) for p in publishes(out, a)] == [(b"old", True)]


def test_fault_per_publisher_round_robin() -> None:
    net = Net(faults=["per-publisher-rr"])
    members(net, ["a", "b", "c"])
    p1 = net.client("p1")
    p2 = net.client("p2")
    got = []
    for i in range(3):
        got.append(receivers(net, p1, 1, start=i)[0])
        got.append(receivers(net, p2, 1, start=i)[0])
    assert got == ["a", "a", "b", "b", "c", "c"]


def test_without_per_publisher_rr_the_turn_is_shared() -> None:
    net = Net()
    members(net, ["a", "b", "c"])
    p1 = net.client("p1")
    p2 = net.client("p2")
    got = [receivers(net, p, 1)[0] for p in (p1, p2, p1, p2, p1, p2)]
    assert got == ["a", "b", "c", "a", "b", "c"]


# -- QoS flows -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [V3, V5])
def test_qos1_flow(version: int) -> None:
    net = Net()
    sub = net.client("s", version)
    net.subscribe(sub, "t")
    pub = net.client("p", version)
    out = net.publish(pub, "t", "x", qos=1, pid=42)
    assert (pub, pk.PubAck(packet_id=42)) in out
    (msg,) = publishes(out, sub)
    assert msg.qos == 1 and msg.packet_id
    assert net.broker.pending("s") == 1
    assert net.send(sub, pk.PubAck(packet_id=msg.packet_id or 0)) == []
    assert net.broker.pending("s") == 0
    assert net.broker.stats.acked == 1
    assert net.broker.stats.deliveries_by_client["s"] == 1


def test_qos1_puback_with_error_is_discarded_not_moved() -> None:
    net = Net()
    a, b = members(net, ["a", "b"])
    pub = net.client("p")
    (msg,) = publishes(net.publish(pub, "jobs", "x", qos=1), a)
    out = net.send(a, pk.PubAck(packet_id=msg.packet_id or 0, reason_code=0x80))
    assert out == [] and net.broker.pending("a") == 0
    assert publishes(net.lost(a), b) == []


@pytest.mark.parametrize("version", [V3, V5])
def test_qos2_inbound_flow(version: int) -> None:
    net = Net()
    sub = net.client("s", version)
    net.subscribe(sub, "t", qos=0)
    pub = net.client("p", version)
    out = net.publish(pub, "t", "x", qos=2, pid=7)
    assert (pub, pk.PubRec(packet_id=7)) in out
    assert len(publishes(out, sub)) == 1
    # A resent PUBLISH (DUP) before PUBREL is acknowledged again, not delivered again.
    out = net.publish(pub, "t", "x", qos=2, pid=7, dup=True)
    assert out == [(pub, pk.PubRec(packet_id=7))]
    assert net.send(pub, pk.PubRel(packet_id=7)) == [(pub, pk.PubComp(packet_id=7))]
    # After PUBCOMP the id is free: the same id is a new message.
    assert len(publishes(net.publish(pub, "t", "y", qos=2, pid=7), sub)) == 1
    assert net.broker.stats.messages_in == 2


@pytest.mark.parametrize(("version", "code"), [(V3, 0), (V5, 0x92)])
def test_unknown_pubrel_and_pubrec(version: int, code: int) -> None:
    net = Net()
    conn_id = net.client("a", version)
    assert net.send(conn_id, pk.PubRel(packet_id=3)) == [
        (conn_id, pk.PubComp(packet_id=3, reason_code=code))]
    assert net.send(conn_id, pk.PubRec(packet_id=4)) == [
        (conn_id, pk.PubRel(packet_id=4, reason_code=code))]


def test_qos2_outbound_flow() -> None:
    net = Net()
    sub = net.client("s")
    net.subscribe(sub, "t", qos=2)
    pub = net.client("p")
    (msg,) = publishes(net.publish(pub, "t", "x", qos=2), sub)
    pid = msg.packet_id or 0
    assert net.send(sub, pk.PubRec(packet_id=pid)) == [(sub, pk.PubRel(packet_id=pid))]
    assert net.broker.pending("s") == 1
    assert net.send(sub, pk.PubComp(packet_id=pid)) == []
    assert net.broker.pending("s") == 0
    assert net.broker.stats.acked == 1


def test_qos2_pubrec_error_discards_without_pubrel() -> None:
    net = Net()
    sub = net.client("s")
    net.subscribe(sub, "t", qos=2)
    pub = net.client("p")
    (msg,) = publishes(net.publish(pub, "t", "x", qos=2), sub)
    assert net.send(sub, pk.PubRec(packet_id=msg.packet_id or 0, reason_code=0x80)) == []
    assert net.broker.pending("s") == 0


def test_qos2_is_never_moved_to_another_member() -> None:
    net = Net()
    a, b = members(net, ["a", "b"], qos=2)
    pub = net.client("p")
    assert len(publishes(net.publish(pub, "jobs", "m0", qos=2), a)) == 1
    out = net.lost(a)  # clean session: it ends, and the QoS 2 message with it
    assert publishes(out, b) == []
    assert net.broker.stats.redispatched == 0
    assert net.broker.stats.dropped["session_ended"] == 1


def test_qos2_completes_with_the_same_member_after_reconnect() -> None:
    net = Net()
    a = net.client("a", props={pk.PROP_SESSION_EXPIRY: 300})
    net.subscribe(a, "$share/g/jobs", qos=2)
    (b,) = members(net, ["b"], qos=2)
    pub = net.client("p")
    (m0,) = publishes(net.publish(pub, "jobs", "m0", qos=2), a)
    (m1,) = publishes(net.publish(pub, "jobs", "m1", qos=2), b)
    net.send(b, pk.PubRec(packet_id=m1.packet_id or 0))  # m1 released, waiting for PUBCOMP
    assert publishes(net.lost(a), b) == []
    assert publishes(net.lost(b), a) == []  # b's clean session ends: m1 dropped, not moved
    a2, ack = net.connect("a", clean=False, props={pk.PROP_SESSION_EXPIRY: 300})
    assert ack.session_present
    (again,) = publishes(net.log, a2)
    assert again.payload == b"m0" and again.dup and again.packet_id == m0.packet_id
    net.send(a2, pk.PubRec(packet_id=again.packet_id or 0))
    assert net.send(a2, pk.PubComp(packet_id=again.packet_id or 0)) == []
    assert net.broker.pending("a") == 0


def test_pubrel_resent_on_reconnect() -> None:
    net = Net()
    a = net.client("a", V3, clean=False)
    net.subscribe(a, "t", qos=2)
    pub = net.client("p")
    (msg,) = publishes(net.publish(pub, "t", "x", qos=2), a)
    pid = msg.packet_id or 0
    net.send(a, pk.PubRec(packet_id=pid))
    net.lost(a)
    a2, ack = net.connect("a", V3, clean=False)
    assert ack.session_present
    assert packets_to(net.log, a2)[1:] == [pk.PubRel(packet_id=pid)]


def test_wildcard_in_publish_topic_is_a_protocol_violation() -> None:
    net = Net()
    pub = net.client("p", V5)
    out = net.publish(pub, "a/+", "x")
    assert isinstance(out[0][1], pk.Disconnect) and out[0][1].reason_code == 0x90
    assert out[-1] == (pub, CLOSED)
    v3 = net.client("q", V3)
    assert net.publish(v3, "a/#", "x") == [(v3, CLOSED)]


def test_topic_alias_is_refused() -> None:
    net = Net()
    pub = net.client("p")
    out = net.publish(pub, "t", "x", properties={pk.PROP_TOPIC_ALIAS: 1})
    assert isinstance(out[0][1], pk.Disconnect) and out[0][1].reason_code == 0x94


def test_subscription_identifier_zero_is_a_protocol_error() -> None:
    net = Net()
    conn_id = net.client("a")
    out = net.send(conn_id, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="t"),), properties={pk.PROP_SUBSCRIPTION_ID: (0,)}))
    first = out[0][1]
    assert isinstance(first, pk.Disconnect) and first.reason_code == pk.RC_PROTOCOL_ERROR


def test_forwarded_properties_and_subscription_ids() -> None:
    net = Net()
    sub = net.client("s")
    net.send(sub, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="t/#"),), properties={pk.PROP_SUBSCRIPTION_ID: (9,)}))
    net.send(sub, pk.Subscribe(packet_id=2, subscriptions=(
        pk.SubscriptionRequest(topic_filter="t/+"),), properties={pk.PROP_SUBSCRIPTION_ID: (4,)}))
    pub = net.client("p")
    props = {pk.PROP_USER_PROPERTY: (("k", "v"),), pk.PROP_CONTENT_TYPE: "text/plain",
             pk.PROP_MESSAGE_EXPIRY: 30}
    (msg,) = publishes(net.publish(pub, "t/x", "x", properties=props), sub)  # one copy
    assert msg.properties == {**props, pk.PROP_SUBSCRIPTION_ID: (9, 4)}


# -- Limits: in-flight window and queue -------------------------------------------------------


def test_inflight_window_and_queue_limit_count_drops() -> None:
    net = Net(limits=Limits(max_inflight=2, max_queued=3))
    sub = net.client("s")
    net.subscribe(sub, "t")
    pub = net.client("p")
    for i in range(6):
        net.publish(pub, "t", f"m{i}", qos=1)
    sent = publishes(net.log, sub)
    assert [p.payload for p in sent] == [b"m0", b"m1"]
    assert net.broker.pending("s") == 5
    assert net.broker.stats.dropped == {"queue_full": 1}  # counted, never silent
    delivered = [p.payload for p in sent]
    while sent:
        out = net.send(sub, pk.PubAck(packet_id=sent.pop(0).packet_id or 0))
        sent += publishes(out, sub)
        delivered += [p.payload for p in publishes(out, sub)]
    assert delivered == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert net.broker.stats.total_dropped == 1


def test_receive_maximum_narrows_the_window() -> None:
    net = Net()
    sub = net.client("s", props={pk.PROP_RECEIVE_MAXIMUM: 1})
    net.subscribe(sub, "t")
    pub = net.client("p")
    for i in range(3):
        net.publish(pub, "t", f"m{i}", qos=1)
        net.publish(pub, "t", f"q{i}", qos=0)
    # QoS 0 messages wait behind the window too: order is kept.
    assert [p.payload for p in publishes(net.log, sub)] == [b"m0", b"q0"]


def test_offline_qos0_for_a_persistent_session_is_counted() -> None:
    net = Net()
    sub = net.client("s", V3, clean=False)
    net.subscribe(sub, "t")
    net.lost(sub)
    pub = net.client("p")
    net.publish(pub, "t", "x", qos=0)
    net.publish(pub, "t", "y", qos=1)
    assert net.broker.stats.dropped["offline_qos0"] == 1
    assert net.broker.pending("s") == 1


def test_paused_transport_holds_messages_then_flushes() -> None:
    net = Net()
    sub = net.client("s")
    net.subscribe(sub, "t")
    pub = net.client("p")
    assert net.broker.set_paused(sub, True) == []
    net.publish(pub, "t", "a")
    net.publish(pub, "t", "b", qos=1)
    assert publishes(net.log, sub) == []
    out = net.broker.set_paused(sub, False)
    assert [p.payload for p in publishes(out, sub)] == [b"a", b"b"]


def test_client_maximum_packet_size_is_respected() -> None:
    net = Net()
    sub = net.client("s", props={pk.PROP_MAXIMUM_PACKET_SIZE: 64})
    net.subscribe(sub, "t")
    pub = net.client("p")
    assert publishes(net.publish(pub, "t", "x" * 200), sub) == []
    assert net.broker.stats.dropped["client_max_packet_size"] == 1
    assert len(publishes(net.publish(pub, "t", "small"), sub)) == 1


# -- Keep-alive, session expiry, wills, takeover --------------------------------------------


@pytest.mark.parametrize("version", [V3, V5])
def test_keepalive_timeout(version: int) -> None:
    net = Net()
    conn_id = net.client("a", version, keepalive=10)
    assert net.advance(10) == []
    net.send(conn_id, pk.PingReq())  # activity resets the clock
    assert net.advance(15) == []
    out = net.advance(0.01)
    if version == V5:
        assert out == [(conn_id, pk.Disconnect(reason_code=pk.RC_KEEP_ALIVE_TIMEOUT)),
                       (conn_id, CLOSED)]
    else:
        assert out == [(conn_id, CLOSED)]
    assert net.advance(100) == []  # closed once


def test_keepalive_zero_never_times_out() -> None:
    net = Net()
    net.client("a", keepalive=0)
    assert net.advance(10_000) == []


def test_keepalive_timeout_publishes_the_will() -> None:
    net = Net()
    watcher = net.client("w")
    net.subscribe(watcher, "wills/#")
    conn_id = net.client("a", keepalive=2, will=pk.Will(topic="wills/a", payload=b"gone"))
    net.advance(2)
    net.send(watcher, pk.PingReq())
    assert net.advance(1.1)[-1] == (conn_id, CLOSED)
    assert [p.payload for p in publishes(net.lost(conn_id), watcher)] == [b"gone"]


def test_session_expiry() -> None:
    net = Net()
    sub = net.client("s", props={pk.PROP_SESSION_EXPIRY: 10})
    net.subscribe(sub, "t")
    net.lost(sub)
    pub = net.client("p")
    net.publish(pub, "t", "kept", qos=1)
    assert net.advance(9.9) == [] and "s" in net.broker.sessions
    net.advance(0.1)
    assert "s" not in net.broker.sessions
    assert net.broker.stats.dropped["session_ended"] == 1
    _, ack = net.connect("s", clean=False)
    assert not ack.session_present


def test_persistent_session_resumes_with_queued_messages() -> None:
    net = Net()
    sub = net.client("s", V3, clean=False)
    net.subscribe(sub, "t", qos=1)
    net.send(sub, pk.Disconnect())
    net.lost(sub)
    pub = net.client("p")
    for i in range(3):
        net.publish(pub, "t", f"m{i}", qos=1)
    net.advance(10_000)  # 3.1.1 persistent sessions do not expire here
    s2, ack = net.connect("s", V3, clean=False)
    assert ack.session_present
    assert [p.payload for p in publishes(net.log, s2)] == [b"m0", b"m1", b"m2"]


def test_disconnect_cannot_set_expiry_after_zero() -> None:
    net = Net()
    conn_id = net.client("a")
    out = net.send(conn_id, pk.Disconnect(properties={pk.PROP_SESSION_EXPIRY: 30}))
    assert isinstance(out[0][1], pk.Disconnect) and out[0][1].reason_code == 0x82


def test_disconnect_can_shorten_expiry() -> None:
    net = Net()
    conn_id = net.client("a", props={pk.PROP_SESSION_EXPIRY: 300})
    net.send(conn_id, pk.Disconnect(properties={pk.PROP_SESSION_EXPIRY: 0}))
    net.lost(conn_id)
    assert "a" not in net.broker.sessions


def _will_watch(net: Net) -> int:
    watcher = net.client("w")
    net.subscribe(watcher, "wills/#")
    return watcher


def test_will_on_lost_connection_not_on_clean_disconnect() -> None:
    net = Net()
    watcher = _will_watch(net)
    will = pk.Will(topic="wills/a", payload=b"gone")
    a = net.client("a", will=will)
    assert [p.payload for p in publishes(net.lost(a), watcher)] == [b"gone"]
    b = net.client("b", will=will)
    net.send(b, pk.Disconnect())
    assert publishes(net.lost(b), watcher) == []
    c5 = net.client("c", will=will)
    net.send(c5, pk.Disconnect(reason_code=pk.RC_DISCONNECT_WITH_WILL))
    assert [p.payload for p in publishes(net.lost(c5), watcher)] == [b"gone"]


def test_will_delay() -> None:
    net = Net()
    watcher = _will_watch(net)
    will = pk.Will(topic="wills/a", payload=b"gone", properties={pk.PROP_WILL_DELAY: 5})
    a = net.client("a", will=will, props={pk.PROP_SESSION_EXPIRY: 100})
    assert publishes(net.lost(a), watcher) == []
    assert publishes(net.advance(4.9), watcher) == []
    assert [p.payload for p in publishes(net.advance(0.1), watcher)] == [b"gone"]
    assert publishes(net.advance(100), watcher) == []  # once


def test_will_delay_cancelled_by_reconnect() -> None:
    net = Net()
    watcher = _will_watch(net)
    will = pk.Will(topic="wills/a", payload=b"gone", properties={pk.PROP_WILL_DELAY: 5})
    a = net.client("a", will=will, props={pk.PROP_SESSION_EXPIRY: 100})
    net.lost(a)
    net.advance(2)
    net.connect("a", clean=False, props={pk.PROP_SESSION_EXPIRY: 100})
    assert publishes(net.advance(10), watcher) == []


def test_will_delay_cut_short_by_session_end() -> None:
    net = Net()
    watcher = _will_watch(net)
    will = pk.Will(topic="wills/a", payload=b"gone", properties={pk.PROP_WILL_DELAY: 50})
    a = net.client("a", will=will, props={pk.PROP_SESSION_EXPIRY: 5})
    net.lost(a)
    assert [p.payload for p in publishes(net.advance(5), watcher)] == [b"gone"]


def test_retained_will() -> None:
    net = Net()
    a = net.client("a", will=pk.Will(topic="wills/a", payload=b"gone", retain=True, qos=1))
    net.lost(a)
    late = net.client("late")
    out = net.send(late, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="wills/+", qos=1),)))
    (msg,) = publishes(out, late)
    assert (msg.payload, msg.retain, msg.qos) == (b"gone", True, 1)


@pytest.mark.parametrize("version", [V3, V5])
def test_takeover(version: int) -> None:
    net = Net()
    old = net.client("a", version, clean=False, props={pk.PROP_SESSION_EXPIRY: 300}
                     if version == V5 else None)
    net.subscribe(old, "t")
    new, ack = net.connect("a", version, clean=False,
                           props={pk.PROP_SESSION_EXPIRY: 300} if version == V5 else None)
    assert ack.session_present
    to_old = packets_to(net.log, old)
    if version == V5:
        assert to_old[-2:] == [pk.Disconnect(reason_code=pk.RC_SESSION_TAKEN_OVER), CLOSED]
    else:
        assert to_old[-1] == CLOSED
    assert net.broker.stats.connected == 1
    net.lost(old)  # the old socket closing later does not detach the new connection
    assert net.broker.stats.connected == 1
    pub = net.client("p")
    assert net.who(net.publish(pub, "t", "x")) == [("a", "x")]
    assert publishes(net.log, new)[-1].payload == b"x"


def test_takeover_resends_inflight_as_dup() -> None:
    net = Net()
    old = net.client("a", V3, clean=False)
    net.subscribe(old, "t")
    pub = net.client("p")
    (msg,) = publishes(net.publish(pub, "t", "x", qos=1), old)
    new, _ = net.connect("a", V3, clean=False)
    (again,) = publishes(net.log, new)
    assert again.dup and again.packet_id == msg.packet_id


def test_shutdown_tells_v5_clients() -> None:
    net = Net()
    a5 = net.client("a5", V5)
    a3 = net.client("a3", V3)
    out = net.broker.shutdown()
    assert (a5, pk.Disconnect(reason_code=pk.RC_SERVER_SHUTTING_DOWN)) in out
    assert (a5, CLOSED) in out and (a3, CLOSED) in out
    assert not [p for cid, p in out if cid == a3 and p is not None]


def test_stats_count_messages_and_deliveries() -> None:
    net = Net()
    members(net, ["a", "b"])
    pub = net.client("p")
    receivers(net, pub, 5)
    stats = net.broker.stats.snapshot()
    assert stats.messages_in == 5 and stats.deliveries == 5
    assert stats.deliveries_by_client == {"a": 3, "b": 2}
    assert stats.as_dict()["deliveries_by_client"] == {"a": 3, "b": 2}
    assert stats.connected == 3
