"""An emulated cluster in the sans-IO broker: one routing state, connections tagged with nodes.

Driven with packet objects and a fake clock like test_broker_core.py: ``Cluster`` opens each
connection on a node. Correct cluster routing gives one copy per share group cluster-wide; the
``local`` strategy prefers the publisher's node; the faults ``cluster-node-local`` (one copy
per node that has members) and ``cluster-no-route`` (nothing crosses nodes) split it per node;
``node_down`` cuts a node's connections as a network failure would.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

from aetherdiag.emulator import packets as pk
from aetherdiag.emulator.broker import Broker, Out
from aetherdiag.emulator.sharing import CLUSTER_FAULTS, FAULTS, STRATEGIES

V5 = pk.MQTT_5
SHARE = "$share/g/jobs/+"


class Cluster:
    """A fake transport for a Broker of several nodes; time moves only when told to."""

    def __init__(self, **kwargs: Any) -> None:
        self.broker = Broker(**kwargs)
        self.now = 1000.0
        self._ids = itertools.count(1)
        self.names: dict[int, str] = {}
        self.conn_of: dict[str, int] = {}
        self.log: list[Out] = []

    def client(self, name: str, node: int, *, clean: bool = True, expiry: int = 0) -> int:
        conn_id = next(self._ids)
        self.broker.open(conn_id, self.now, None, node)
        props = {pk.PROP_SESSION_EXPIRY: expiry} if expiry else {}
        out = self.broker.handle(conn_id, pk.Connect(
            protocol_level=V5, client_id=name, clean_start=clean, keepalive=0,
            properties=props), self.now)
        self.log += out
        acks = [p for cid, p in out if cid == conn_id and isinstance(p, pk.ConnAck)]
        assert acks and acks[0].reason_code == 0, out
        self.names[conn_id] = name
        self.conn_of[name] = conn_id
        return conn_id

    def member(self, name: str, node: int, share: str = SHARE, qos: int = 1, **kw: Any) -> int:
        conn_id = self.client(name, node, **kw)
        out = self.send(conn_id, pk.Subscribe(packet_id=1, subscriptions=(
            pk.SubscriptionRequest(topic_filter=share, qos=qos),)))
        assert any(isinstance(p, pk.SubAck) and p.reason_codes == (qos,) for _, p in out), out
        return conn_id

    def send(self, conn_id: int, packet: pk.Packet) -> list[Out]:
        out = self.broker.handle(conn_id, packet, self.now)
        self.log += out
        return out

    def publish(self, conn_id: int, n: int, qos: int = 1) -> list[tuple[str, str]]:
        out = self.send(conn_id, pk.Publish(topic=f"jobs/{n}", payload=f"m{n}".encode(),
                                            qos=qos, packet_id=n % 65535 + 1 if qos else None))
        return self.who(out)

    def who(self, out: list[Out]) -> list[tuple[str, str]]:
        return [(self.names[cid], p.payload.decode()) for cid, p in out
                if isinstance(p, pk.Publish)]

    def receivers(self, pub: int, count: int, qos: int = 1) -> list[list[str]]:
        """For each message, who got it (sorted)."""
        return [sorted(name for name, _ in self.publish(pub, i, qos)) for i in range(count)]


def test_the_cluster_names_are_known() -> None:
    assert {"cluster-node-local", "cluster-no-route"} == CLUSTER_FAULTS <= set(FAULTS)
    assert "local" in STRATEGIES
    for fault in CLUSTER_FAULTS:
        assert "no effect on one node" in FAULTS[fault]


def test_nodes_must_be_positive_and_nodes_known() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Broker(nodes=0)
    broker = Broker(nodes=2)
    for bad in (0, 3):
        with pytest.raises(ValueError, match=r"1\.\.2"):
            broker.open(1, 0.0, None, bad)
        with pytest.raises(ValueError, match=r"1\.\.2"):
            broker.node_down(bad, 0.0)


def test_correct_routing_is_one_copy_per_group_across_the_cluster() -> None:
    c = Cluster(nodes=2)
    for name, node in [("a1", 1), ("b2", 2), ("c1", 1), ("d2", 2)]:
        c.member(name, node)
    pub = c.client("pub", 1)
    got = c.receivers(pub, 8)
    assert all(len(names) == 1 for names in got), got
    # round robin in subscription order, whatever node a member is on
    assert [names[0] for names in got] == ["a1", "b2", "c1", "d2"] * 2


def test_plain_subscribers_get_one_copy_whatever_their_node() -> None:
    c = Cluster(nodes=3)
    for i, node in enumerate((1, 2, 3)):
        c.member(f"p{i}", node, share="jobs/+")
    got = c.receivers(c.client("pub", 2), 3)
    assert got == [["p0", "p1", "p2"]] * 3


def test_local_prefers_the_publishers_node_and_falls_back() -> None:
    c = Cluster(nodes=3, strategy="local")
    for name, node in [("a1", 1), ("b2", 2), ("c1", 1), ("d2", 2)]:
        c.member(name, node)
    on1 = c.receivers(c.client("pub1", 1), 4)
    assert [n[0] for n in on1] == ["a1", "c1", "a1", "c1"]
    on2 = c.receivers(c.client("pub2", 2), 4)
    assert [n[0] for n in on2] == ["b2", "d2", "b2", "d2"]
    # node 3 has no member: the others', in turn
    on3 = c.receivers(c.client("pub3", 3), 4)
    assert [n[0] for n in on3] == ["a1", "b2", "c1", "d2"]


def test_local_on_one_node_is_round_robin() -> None:
    c = Cluster(strategy="local")
    for name in ("a", "b", "c"):
        c.member(name, 1)
    assert [n[0] for n in c.receivers(c.client("pub", 1), 6)] == ["a", "b", "c"] * 2


def test_node_local_gives_one_copy_per_node_with_members() -> None:
    c = Cluster(nodes=3, faults=["cluster-node-local"])
    for name, node in [("a1", 1), ("b2", 2), ("c1", 1), ("d2", 2)]:
        c.member(name, node)
    c.member("plain3", 3, share="jobs/+")
    got = c.receivers(c.client("pub", 1), 4)
    # one member of node 1, one of node 2 (each node its own turn), the plain one on node 3
    assert got == [["a1", "b2", "plain3"], ["c1", "d2", "plain3"]] * 2


def test_no_route_keeps_messages_on_the_publishers_node() -> None:
    c = Cluster(nodes=2, faults=["cluster-no-route"])
    c.member("a1", 1)
    c.member("b2", 2)
    c.member("d2", 2)
    c.member("plain2", 2, share="jobs/+")
    assert c.receivers(c.client("pub1", 1), 2) == [["a1"], ["a1"]]
    assert c.receivers(c.client("pub2", 2), 2) == [["b2", "plain2"], ["d2", "plain2"]]


def test_no_route_with_no_member_on_the_node_delivers_nothing() -> None:
    c = Cluster(nodes=2, faults=["cluster-no-route"])
    c.member("b2", 2)
    pub = c.client("pub", 1)
    out = c.send(pub, pk.Publish(topic="jobs/1", payload=b"x", qos=1, packet_id=1))
    assert c.who(out) == []
    assert [p.reason_code for _, p in out if isinstance(p, pk.PubAck)] == [
        pk.RC_NO_MATCHING_SUBSCRIBERS]


def test_no_route_retained_messages_stay_on_their_node() -> None:
    c = Cluster(nodes=2, faults=["cluster-no-route"])
    pub = c.client("pub", 1)
    c.send(pub, pk.Publish(topic="jobs/r", payload=b"kept", qos=0, retain=True))
    conn = c.client("late2", 2)
    out = c.send(conn, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="jobs/+", qos=0),)))
    assert c.who(out) == []
    conn = c.client("late1", 1)
    out = c.send(conn, pk.Subscribe(packet_id=1, subscriptions=(
        pk.SubscriptionRequest(topic_filter="jobs/+", qos=0),)))
    assert c.who(out) == [("late1", "kept")]


@pytest.mark.parametrize("fault", sorted(CLUSTER_FAULTS))
def test_cluster_faults_change_nothing_on_one_node(fault: str) -> None:
    plain, faulty = Cluster(), Cluster(faults=[fault])
    for c in (plain, faulty):
        for name in ("a", "b", "c"):
            c.member(name, 1)
        c.member("p", 1, share="jobs/+")
    assert plain.receivers(plain.client("pub", 1), 6) == faulty.receivers(
        faulty.client("pub", 1), 6)


def test_node_down_cuts_connections_and_hands_qos1_in_flight_on() -> None:
    c = Cluster(nodes=2)
    a1 = c.member("a1", 1)
    b2 = c.member("b2", 2)
    pub = c.client("pub", 1)
    got = c.receivers(pub, 4)
    assert [n[0] for n in got] == ["a1", "b2", "a1", "b2"]
    out = c.broker.node_down(2, c.now)
    assert (b2, None) in out and (a1, None) not in out and (pub, None) not in out
    assert not any(isinstance(p, pk.Disconnect) for _, p in out)  # a network failure
    # b2's two unacknowledged messages go to the member still connected
    assert sorted(c.who(out)) == [("a1", "m1"), ("a1", "m3")]
    assert c.broker.stats.redispatched == 2
    assert c.broker.nodes_down == {2}
    # a connection that comes in on a down node anyway is ignored
    c.broker.open(99, c.now, None, 2)
    assert c.broker.handle(99, pk.Connect(protocol_level=V5, client_id="x"), c.now) == []
    c.broker.node_up(2)
    assert c.broker.nodes_down == frozenset()
    c.member("b2", 2)
    assert sorted(n[0] for n in c.receivers(pub, 2)) == ["a1", "b2"]


def test_node_down_under_node_local_keeps_copies_on_their_node() -> None:
    c = Cluster(nodes=2, faults=["cluster-node-local"])
    c.member("a1", 1)
    c.member("b2", 2)
    c.member("d2", 2, clean=False, expiry=600)  # persistent: its session outlives the node
    pub = c.client("pub", 1)
    c.receivers(pub, 2)  # a1 twice; b2 then d2 on node 2
    out = c.broker.node_down(2, c.now)
    # b2's copy cannot go to node 1 (its own broker's copy): it waits for d2, offline
    assert c.who(out) == []
    assert c.broker.pending("d2") == 2
    assert c.broker.pending("a1") == 2


def test_clients_and_journal_name_the_node() -> None:
    c = Cluster(nodes=2, journal=True)
    c.member("a1", 1)
    c.member("b2", 2)
    c.receivers(c.client("pub", 2), 2)
    nodes = {v.client_id: v.node for v in c.broker.clients()}
    assert nodes == {"a1": 1, "b2": 2, "pub": 2}
    assert Counter((s.client_id, s.node) for s in c.broker.sent()) == {("a1", 1): 1, ("b2", 2): 1}
    assert {p.node for p in c.broker.published()} == {2}
