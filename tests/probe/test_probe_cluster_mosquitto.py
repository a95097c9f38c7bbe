"""The probe on two real endpoints: two private Mosquittos, bridged both ways or not at all.

Two Mosquittos are never one cluster. Bridged on the probe's topic tree, each forwards every
message to the other, whose own share group picks its own member: one copy per node. Not
bridged, nothing published on one ever reaches the other. The probe must say exactly that.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.brokers import MosquittoProcess, running_mosquitto_pair
from support.probe import explain, rows

from aetherdiag.harness.model import BrokerTarget
from aetherdiag.probe import ProbeOptions, ProbeReport, run_probe
from aetherdiag.probe.cluster import PER_NODE_COPY, budget_extra
from aetherdiag.probe.context import DEFAULT_PREFIX

pytestmark = pytest.mark.mosquitto

# the probe's run-scoped topics are DEFAULT_PREFIX/<run id>/...: the bridge must carry them
BRIDGED = f"{DEFAULT_PREFIX}/#"


def probe_pair(first: MosquittoProcess, second: MosquittoProcess) -> ProbeReport:
    targets = [BrokerTarget(host=b.host, port=b.port) for b in (first, second)]
    started = time.monotonic()
    report = run_probe(targets[0], ProbeOptions(timeout=30.0), targets=targets)
    assert time.monotonic() - started < 15.0 + budget_extra(2)
    assert report.topic_prefix.startswith(f"{DEFAULT_PREFIX}/")  # under the bridged pattern
    return report


def test_bridged_mosquittos_give_one_copy_per_node(tmp_path: Path) -> None:
    with running_mosquitto_pair(tmp_path, bridge_topic=BRIDGED) as (first, second):
        report = probe_pair(first, second)
    got = rows(report)
    assert got["cross_node_once"] == ("fail", PER_NODE_COPY), explain(report)
    once = next(c for c in report.checks if c.id == "cross_node_once")
    assert once.data["per_node"] == once.data["published"] == 24, explain(report)
    # the bridge carries each message to the other broker's group, which picks one member
    assert got["cross_node_delivery"] == ("pass", "exactly once"), explain(report)
    assert got["local_preference"][0] == "skip"
    # one broker on its own is still plain Mosquitto
    assert dict(report.share_behaviour) == {"3.1.1": "balanced", "5": "balanced"}
    assert report.strategy is not None and report.strategy.name == "round_robin"
    assert int(report.exit_code) == 1


def test_unbridged_mosquittos_never_deliver_across(tmp_path: Path) -> None:
    with running_mosquitto_pair(tmp_path, bridge_topic=None) as (first, second):
        report = probe_pair(first, second)
    got = rows(report)
    assert got["cross_node_delivery"] == (
        "fail", "never arrived: the endpoints are not one cluster (no route between them)"), \
        explain(report)
    delivery = next(c for c in report.checks if c.id == "cross_node_delivery")
    assert [(p["arrived"], p["control_from"], p["control_to"])
            for p in delivery.data["pairs"]] == [(0, 6, 0), (0, 6, 0)]
    assert got["cross_node_once"] == ("pass", "one copy"), explain(report)
    assert got["local_preference"] == ("skip", "not applicable")
    assert int(report.exit_code) == 1
