"""Conformance: every dispatch strategy of the emulator, seen through real paho-mqtt clients.

Emulator only (Mosquitto has one fixed strategy, round robin, checked in
test_conformance_shared.py). Each test would fail if the strategy fell back to another one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from support.mqttclient import PahoClient, by_payload, connector

from aetherdiag.emulator import STRATEGIES

FILTER = "$share/g/jobs/+"


def _members(connect, n: int, filt: str = FILTER, **kwargs) -> list[PahoClient]:
    members = [connect(f"m{i}", **kwargs) for i in range(n)]
    for m in members:  # one at a time: subscription order is the members' order
        assert m.subscribe(filt, qos=1) == [1]
    return members


def _drain(members: Sequence[PahoClient], expected: int) -> list[list[str]]:
    """Wait until ``expected`` messages arrived in all; return each member's payloads."""
    deadline = time.monotonic() + 5
    while sum(len(m.messages) for m in members) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    got = [[msg.text for msg in m.settle(0.1)] for m in members]
    assert by_payload(msg for m in members for msg in m.messages) == {
        p: 1 for batch in got for p in batch
    }, "a message reached two members"
    assert sum(len(batch) for batch in got) == expected
    return got


def test_round_robin_takes_turns_in_subscription_order(emu, version):
    _em, connect = emu(strategy="round_robin")
    members = _members(connect, 3)
    pub = connect("pub")
    for i in range(9):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    got = _drain(members, 9)
    assert [sorted(batch, key=int) for batch in got] == [
        ["0", "3", "6"], ["1", "4", "7"], ["2", "5", "8"],
    ]


def _random_assignment(emu, seed: int) -> list[int]:
    _em, connect = emu(strategy="random", seed=seed)
    members = _members(connect, 3)
    pub = connect("pub")
    for i in range(30):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    got = _drain(members, 30)
    owner = {p: idx for idx, batch in enumerate(got) for p in batch}
    for m in [*members, pub]:
        m.disconnect()
    return [owner[str(i)] for i in range(30)]


def test_random_is_reproducible_with_a_seed(emu, version):
    first = _random_assignment(emu, seed=7)
    again = _random_assignment(emu, seed=7)
    other = _random_assignment(emu, seed=8)
    assert first == again, "same seed, same members, same order: same choices"
    assert first != other
    assert set(first) == {0, 1, 2}, "random still uses every member"
    assert first != [i % 3 for i in range(30)], "not round robin"


def test_sticky_keeps_one_member_until_it_leaves(emu, version):
    _em, connect = emu(strategy="sticky", seed=1)
    members = _members(connect, 3)
    pub = connect("pub")
    for i in range(6):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    got = _drain(members, 6)
    (chosen,) = [i for i, batch in enumerate(got) if batch]
    assert len(got[chosen]) == 6

    members[chosen].disconnect()
    rest = [m for i, m in enumerate(members) if i != chosen]
    for m in rest:
        m.settle(0)
    before = [len(m.messages) for m in rest]
    for i in range(6, 12):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    deadline = time.monotonic() + 5
    while sum(len(m.messages) for m in rest) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    gained = [len(m.settle(0.1)) - b for m, b in zip(rest, before, strict=True)]
    assert sorted(gained) == [0, 6], "a new sticky member takes everything"


def _one_member_per_key(got: list[list[str]], what: str) -> None:
    """Every key (the payload before ':') went to one member, and keys spread over members."""
    owners: dict[str, set[int]] = {}
    for idx, batch in enumerate(got):
        for payload in batch:
            owners.setdefault(payload.split(":")[0], set()).add(idx)
    assert all(len(o) == 1 for o in owners.values()), owners
    assert len({next(iter(o)) for o in owners.values()}) >= 2, f"{what} spread over members"


def test_hash_clientid_keeps_each_publisher_on_one_member(emu, version):
    _em, connect = emu(strategy="hash_clientid")
    members = _members(connect, 3)
    publishers = [connect(f"p{i}", client_id=f"publisher-{i}") for i in range(6)]
    for n in range(4):
        for i, p in enumerate(publishers):
            p.publish(f"jobs/{n}", f"{i}:{n}", qos=1)
    _one_member_per_key(_drain(members, 24), "fixed ids")


def test_hash_topic_keeps_each_topic_on_one_member(emu, version):
    _em, connect = emu(strategy="hash_topic")
    members = _members(connect, 3)
    pub = connect("pub")
    for n in range(4):
        for t in range(6):
            pub.publish(f"jobs/{t}", f"{t}:{n}", qos=1)
    _one_member_per_key(_drain(members, 24), "topics")


def _slow_fast_and_publisher(emu, strategy: str) -> tuple[PahoClient, PahoClient, PahoClient]:
    """Two members of one group under ``strategy``: ``slow`` never acknowledges (it
    receives, and holds every QoS 1 message in flight), ``fast`` acknowledges at once."""
    _em, connect = emu(strategy=strategy)
    slow = connect("slow", manual_ack=True)
    fast = connect("fast")
    slow.subscribe(FILTER, qos=1)
    fast.subscribe(FILTER, qos=1)
    return slow, fast, connect("pub")


def test_least_inflight_starves_a_member_that_does_not_ack(emu, version):
    slow, fast, pub = _slow_fast_and_publisher(emu, "least_inflight")
    for i in range(20):
        pub.publish(f"jobs/{i}", str(i), qos=1)
        # one task at a time, as a pull queue sees it: wait for the delivery and give the
        # fast member's PUBACK a moment to land (bounded), so its load is back to zero
        deadline = time.monotonic() + 5
        while len(slow.messages) + len(fast.messages) <= i and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.01)
    n_slow, n_fast = len(slow.settle(0.1)), len(fast.settle(0.1))
    assert n_slow + n_fast == 20
    assert 1 <= n_slow <= 3 and n_fast >= 17, (n_slow, n_fast)


def test_round_robin_gives_a_slow_member_its_full_share(emu, version):
    """The contrast to least_inflight: round robin ignores how busy a member is."""
    slow, fast, pub = _slow_fast_and_publisher(emu, "round_robin")
    for i in range(20):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    slow.wait_for(10)
    fast.wait_for(10)
    assert (len(slow.settle(0.1)), len(fast.settle(0.1))) == (10, 10)


def test_per_group_strategies(emu, version):
    _em, connect = emu(strategy="round_robin", group_strategies={"s": "sticky"}, seed=3)
    sticky = _members(connect, 3, filt="$share/s/jobs/+")
    rr = [connect(f"r{i}") for i in range(3)]
    for m in rr:
        m.subscribe("$share/r/jobs/+", qos=1)
    pub = connect("pub")
    for i in range(9):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    assert sorted(len(b) for b in _drain(sticky, 9)) == [0, 0, 9]
    assert [len(b) for b in _drain(rr, 9)] == [3, 3, 3]


def test_unknown_strategy_is_refused(emulator_factory):
    with pytest.raises(ValueError, match="unknown strategy"):
        emulator_factory(strategy="fastest")
    with pytest.raises(ValueError, match="unknown strategy"):
        emulator_factory(group_strategies={"g": "fastest"})


def test_local_prefers_members_on_the_publishers_node(emulator_factory, clients, version, uid):
    em = emulator_factory(strategy="local", nodes=2)
    node1, node2 = (connector(em.host, port, version, clients, uid) for port in em.ports)
    near, far = node1("near"), node2("far")
    for m in (near, far):
        assert m.subscribe(FILTER, qos=1) == [1]
    pub = node1("pub")
    for i in range(4):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    assert [len(batch) for batch in _drain([near, far], 4)] == [4, 0]
    near.disconnect()  # node 1 has no member left: node 2's takes them
    for i in range(4, 6):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    assert sorted(msg.text for msg in far.wait_for(2)) == ["4", "5"]


def test_every_strategy_has_a_test():
    tested = {"round_robin", "random", "sticky", "hash_clientid", "hash_topic",
              "least_inflight", "local"}
    assert set(STRATEGIES) == tested, "a new strategy needs a test in this file"
