"""The probe on several endpoints: the cross-node checks against the emulated cluster.

Each case starts an in-process ``Emulator(nodes=2)`` on free ports and gives the probe both
endpoints. The judgements themselves (``once_check``, ``local_check``) are also pinned as pure
functions on hand-made runs, so the shapes a real cluster may show are covered without one.
"""

from __future__ import annotations

import time

import pytest
from support.brokers import free_port
from support.probe import explain, rows

from aetherdiag.emulator import Emulator
from aetherdiag.harness.model import BrokerTarget
from aetherdiag.probe import ProbeOptions, ProbeReport, ProbeUnreachable, run_probe
from aetherdiag.probe.cluster import (
    PER_NODE_COPY,
    NodeRun,
    budget_extra,
    local_check,
    local_guess,
    once_check,
)
from aetherdiag.probe.model import Check, Status

CROSS = ("cross_node_delivery", "cross_node_once", "local_preference")
# the one-endpoint time bound of test_probe_accuracy, plus the cross-node checks' allowance
BOUND_S = 15.0 + budget_extra(2)


def probe_cluster(strategy: str = "round_robin", faults: tuple[str, ...] = (), *,
                  nodes: int = 2, run_id: str = "clu") -> ProbeReport:
    with Emulator(nodes=nodes, strategy=strategy, faults=faults, seed=5) as em:
        targets = [BrokerTarget(host=em.host, port=port) for port in em.ports]
        started = time.monotonic()
        report = run_probe(targets[0], ProbeOptions(timeout=30.0, run_id=run_id),
                           targets=targets)
        elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"probe took {elapsed:.1f} s"
    return report


def test_a_healthy_cluster_passes_every_cross_node_check() -> None:
    report = probe_cluster(run_id="cluok")
    got = rows(report)
    assert got["cross_node_delivery"] == ("pass", "exactly once"), explain(report)
    assert got["cross_node_once"] == ("pass", "one copy"), explain(report)
    assert got["local_preference"] == ("pass", "no preference"), explain(report)
    assert report.strategy is not None and report.strategy.name == "round_robin"
    assert report.exit_code == 0 and report.exactly_once
    assert len(report.endpoints) == 2
    # the cross-node rows follow the strategy row; every other row is the one-node probe's
    ids = [c.id for c in report.checks]
    assert ids[ids.index("strategy") + 1:ids.index("strategy") + 4] == list(CROSS)
    delivery = next(c for c in report.checks if c.id == "cross_node_delivery")
    assert [(p["from"], p["to"], p["arrived"]) for p in delivery.data["pairs"]] == [
        (1, 2, 6), (2, 1, 6)]


def test_node_local_dispatch_fails_one_copy_across_nodes() -> None:
    report = probe_cluster(faults=("cluster-node-local",), run_id="clunl")
    got = rows(report)
    assert got["cross_node_once"] == ("fail", PER_NODE_COPY), explain(report)
    once = next(c for c in report.checks if c.id == "cross_node_once")
    assert once.data["per_node"] == once.data["published"] == 24
    assert once.data["delivered"] == 48
    # members only on the other node: that node dispatches its copy, once
    assert got["cross_node_delivery"] == ("pass", "exactly once"), explain(report)
    assert got["local_preference"][0] == "skip"
    assert int(report.exit_code) == 1
    assert "One copy across nodes" in report.verdict


def test_no_route_fails_cross_node_delivery() -> None:
    report = probe_cluster(faults=("cluster-no-route",), run_id="clunr")
    got = rows(report)
    status, result = got["cross_node_delivery"]
    assert status == "fail", explain(report)
    assert result == "never arrived: the endpoints are not one cluster (no route between them)"
    delivery = next(c for c in report.checks if c.id == "cross_node_delivery")
    assert all(p["arrived"] == 0 and p["control_from"] == 6 and p["control_to"] == 0
               for p in delivery.data["pairs"])
    # each node's own members share its messages: no duplicates, just no crossing
    assert got["cross_node_once"] == ("pass", "one copy"), explain(report)
    assert got["local_preference"] == ("skip", "not applicable")
    assert report.strategy is not None and report.strategy.name == "round_robin"
    assert int(report.exit_code) == 1


def test_local_strategy_is_recognised_as_local() -> None:
    report = probe_cluster("local", run_id="clulo")
    got = rows(report)
    assert got["local_preference"][0] == "warn", explain(report)
    assert got["local_preference"][1].startswith("prefers the publisher's node (local)")
    assert report.strategy is not None
    assert report.strategy.name == "local", report.strategy.evidence
    assert report.strategy.confidence >= 0.8
    assert got["strategy"][0] == "warn" and got["strategy"][1].startswith("local, confidence")
    # local falls back to the other node's members: delivery across nodes still works
    assert got["cross_node_delivery"] == ("pass", "exactly once")
    assert got["cross_node_once"] == ("pass", "one copy")
    assert report.exit_code == 0


def test_three_nodes_form_a_ring_of_delivery_runs() -> None:
    report = probe_cluster(nodes=3, run_id="clu3")
    delivery = next(c for c in report.checks if c.id == "cross_node_delivery")
    assert [(p["from"], p["to"]) for p in delivery.data["pairs"]] == [(1, 2), (2, 3), (3, 1)]
    assert delivery.status is Status.PASS, explain(report)
    assert rows(report)["cross_node_once"] == ("pass", "one copy")


def test_one_endpoint_has_no_cross_node_rows() -> None:
    with Emulator(nodes=2) as em:
        report = run_probe(BrokerTarget(host=em.host, port=em.port), ProbeOptions(timeout=30.0))
    assert not set(CROSS) & {c.id for c in report.checks}
    assert report.endpoints == (f"mqtt://{em.host}:{em.port}",)


def test_an_unreachable_second_endpoint_is_named() -> None:
    dead = free_port()
    with Emulator() as em:
        targets = [BrokerTarget(host=em.host, port=em.port),
                   BrokerTarget(host="127.0.0.1", port=dead)]
        with pytest.raises(ProbeUnreachable, match=rf"node 2 \(mqtt://127.0.0.1:{dead}\)"):
            run_probe(targets[0], ProbeOptions(timeout=10.0), targets=targets)


# -- the judgements, pure ----------------------------------------------------------------------

NODES = (1, 2, 1, 2)  # members in subscription order, as the one-copy run places them


def split_run(deliveries: dict[int, tuple[int, ...]], origin: dict[int, int] | None = None
              ) -> NodeRun:
    origin = origin or {seq: 1 if seq < 12 else 2 for seq in deliveries}
    return NodeRun(member_nodes=NODES, origin=origin, deliveries=deliveries,
                   controls={1: len(origin), 2: len(origin)})


def passed_delivery() -> Check:
    return Check(id="cross_node_delivery", title="t", status=Status.PASS,
                 result="exactly once", evidence="", spec="", meaning="")


def test_once_check_tells_per_node_copies_from_other_duplicates() -> None:
    per_node = split_run({s: (0, 1) for s in range(24)})
    assert (once_check(per_node).status, once_check(per_node).result) == (Status.FAIL,
                                                                          PER_NODE_COPY)
    same_node = split_run({**{s: (s % 4,) for s in range(23)}, 23: (0, 2)})
    assert once_check(same_node).result == "duplicated"
    lost = split_run({**{s: (s % 4,) for s in range(22)}, 22: (), 23: ()})
    assert (once_check(lost).status, once_check(lost).result) == (Status.WARN,
                                                                  "2 never arrived")
    refused = NodeRun(member_nodes=NODES, origin={}, deliveries={}, controls={},
                      refused="member 1 on node 1: SUBSCRIBE answered 0x87 (not authorized)")
    assert once_check(refused).status is Status.SKIP


def test_local_needs_every_node_local_and_spread_over_its_members() -> None:
    local = split_run({s: ((0, 2)[s % 2] if s < 12 else (1, 3)[s % 2],) for s in range(24)})
    check = local_check(local, passed_delivery())
    assert check.status is Status.WARN and check.data["preference"] == "local"
    guess = local_guess(check, None)
    assert guess is not None and guess.name == "local" and guess.confidence >= 0.99
    # every node's messages stayed home, but each went to one member: a hash or sticky
    # choice that follows the publisher, not a preference for the node
    one_member = split_run({s: (0 if s < 12 else 1,) for s in range(24)})
    check = local_check(one_member, passed_delivery())
    assert check.status is Status.INFO and local_guess(check, None) is None
    spread = split_run({s: (s % 4,) for s in range(24)})
    assert local_check(spread, passed_delivery()).result == "no preference"
    # staying home because nothing crosses is no preference
    failed = Check(id="cross_node_delivery", title="t", status=Status.FAIL,
                   result="never arrived", evidence="", spec="", meaning="")
    assert local_check(local, failed).status is Status.SKIP
    assert local_check(None, None, "out of time").evidence == "out of time"
