"""Conformance by comparison: the same random session against the emulator and Mosquitto.

Hypothesis draws a sequence of SUBSCRIBE / UNSUBSCRIBE / PUBLISH (retained or not) / clear
retained / leave / come back operations for three paho-mqtt clients with persistent sessions;
both brokers get the same sequence, step by step, and every client must end up with the same
messages from both (including what was queued for it while it was away). Subscriptions here are
plain ones (shared ones have broker-specific choices; test_conformance_shared.py covers
them). Copies are compared as a set with the highest QoS seen, because with overlapping
subscriptions the spec lets a broker send one copy or several (Mosquitto sends a v5 client
one per subscription). For 3.1.1 the QoS is left out of the comparison: Mosquitto 2.0.11
sends a 3.1.1 client the copy of one matching subscription, not the highest QoS
(test_overlapping_subscriptions_deliver_the_highest_qos shows it on its own).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mqttclient import V311, PahoClient

from aetherdiag.emulator import Emulator

LEVELS = ["a", "b"]
CLIENTS = 3

topic_suffix = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3).map("/".join)
filter_suffix = st.one_of(
    st.just("#"),
    st.tuples(
        st.lists(st.sampled_from([*LEVELS, "+"]), min_size=1, max_size=3),
        st.booleans(),
    ).map(lambda t: "/".join(t[0]) + ("/#" if t[1] else "")),
)
client = st.integers(0, CLIENTS - 1)
operation = st.one_of(
    st.tuples(st.just("sub"), client, filter_suffix, st.integers(0, 2)),
    st.tuples(st.just("unsub"), client, filter_suffix),
    st.tuples(st.just("pub"), client, topic_suffix, st.integers(1, 2), st.booleans()),
    st.tuples(st.just("clear"), client, topic_suffix),
    st.tuples(st.just("leave"), client),
    st.tuples(st.just("return"), client),
)

_examples = itertools.count()


@pytest.fixture
def pair(mosquitto: Any, version: int) -> Iterator[dict[str, Any]]:
    """One emulator for the whole test (examples keep apart by topic prefix) and Mosquitto."""
    with Emulator() as em:
        yield {"emulator": (em.host, em.port), "mosquitto": (mosquitto.host, mosquitto.port),
               "version": version}


def _barrier(conns: list[PahoClient], prefix: str) -> None:
    """Until every message the brokers queued for ``conns`` has arrived (no sleep): each
    client sends a QoS 1 marker to a topic only it subscribes to, outside the run's tree, and
    waits for it, twice. After the first round every client's own earlier publishes (QoS 0
    ones included) have been processed, since a broker reads one connection in order; after
    the second, every delivery queued for a client before its marker has reached it, since a
    broker sends one connection's messages in the order it queued them."""
    for c in conns:
        c.subscribe(f"sync-{prefix}/{c.client_id}", qos=1)
    for n in (1, 2):
        for c in conns:
            c.publish(f"sync-{prefix}/{c.client_id}", f"sync{n}", qos=1)
        for c in conns:
            c.wait_for_message(f"sync-{prefix}/{c.client_id}", f"sync{n}")


def _run(targets: dict[str, tuple[str, int]], version: int, prefix: str,
         ops: list[tuple[Any, ...]]) -> dict[str, list[set[tuple[str, bytes, bool, int]]]]:
    """Apply ``ops`` to every broker in ``targets``, step by step; collect what arrived."""
    persistent: dict[str, Any] = {"clean": False, "session_expiry": 300 if version == 5 else None}

    def client(kind: str, i: int) -> PahoClient:
        c = PahoClient(*targets[kind], version=version, client_id=f"{prefix}{kind[0]}-{i}",
                       **persistent)
        c.connect()
        return c

    # every connection a client had, oldest first; the last one is live while online
    fleets = {kind: [[client(kind, i)] for i in range(CLIENTS)] for kind in targets}
    online = [True] * CLIENTS
    try:
        for n, op in enumerate(ops):
            kind, i = op[0], op[1]
            if (kind == "return") == online[i]:
                continue  # an offline client can only come back; an online one cannot
            for name, fleet in fleets.items():
                who = fleet[i][-1]
                if kind == "sub":
                    who.subscribe(f"{prefix}/{op[2]}", qos=op[3])
                elif kind == "unsub":
                    who.unsubscribe(f"{prefix}/{op[2]}")
                elif kind == "pub":
                    who.publish(f"{prefix}/{op[2]}", f"m{n}", qos=op[3], retain=op[4])
                elif kind == "clear":
                    who.publish(f"{prefix}/{op[2]}", b"", qos=1, retain=True)
                elif kind == "leave":
                    who.disconnect()
                else:
                    fleet[i].append(client(name, i))
            online[i] = kind == "return" or (online[i] and kind != "leave")
        for i in range(CLIENTS):  # everyone back, to collect what was queued
            if not online[i]:
                for name, fleet in fleets.items():
                    fleet[i].append(client(name, i))
        _barrier([fleet[i][-1] for fleet in fleets.values() for i in range(CLIENTS)], prefix)
        results = {}
        for name, fleet in fleets.items():
            per_client = []
            for conns in fleet:
                best: dict[tuple[str, bytes, bool], int] = {}
                for m in (m for c in conns for m in c.messages
                          if m.topic.startswith(f"{prefix}/")):
                    key = (m.topic[len(prefix):], m.payload, m.retain)
                    best[key] = max(best.get(key, 0), m.qos)
                per_client.append({(*k, q) for k, q in best.items()})
            results[name] = per_client
        return results
    finally:
        for name, fleet in fleets.items():
            for conns in fleet:
                for c in conns:
                    c.close()
                ender = PahoClient(*targets[name], version=version,  # end the session
                                   client_id=conns[-1].client_id, clean=True)
                ender.connect()
                ender.disconnect()


@pytest.mark.mosquitto
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=10))
def test_same_operations_same_deliveries(pair: dict[str, Any], ops: list[tuple[Any, ...]]
                                         ) -> None:
    n = next(_examples)
    targets = {kind: pair[kind] for kind in ("emulator", "mosquitto")}
    results = _run(targets, pair["version"], f"diff{pair['version']}x{n}", ops)
    if pair["version"] == V311:
        for kind, per_client in results.items():
            results[kind] = [{(t, p, r, 0) for t, p, r, _q in got} for got in per_client]
    for i in range(CLIENTS):
        assert results["emulator"][i] == results["mosquitto"][i], f"client {i}, ops {ops}"
