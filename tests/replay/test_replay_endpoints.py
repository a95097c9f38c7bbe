"""``aetherdiag replay --broker URL`` repeated: each URL a node, node 1 first.

The shipped cluster scenarios still hold on the emulated cluster; endpoints that do not fit a
file are one line and exit 2 before anything connects; and a 2-node scenario against two
real, unbridged Mosquittos runs with every worker on its own broker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.brokers import free_port, running_mosquitto_pair
from support.cli import invoke, one_error_line
from support.paths import SCENARIOS

CLUSTER = sorted(SCENARIOS.glob("cluster-*.yaml"))


def test_there_are_cluster_scenarios() -> None:
    assert len(CLUSTER) >= 4


@pytest.mark.parametrize("path", CLUSTER, ids=lambda p: p.stem)
def test_cluster_scenarios_hold_on_the_emulated_cluster(path: Path) -> None:
    result = invoke("replay", "--check-expect", "--quiet", str(path))
    assert result.exit_code == 0, result.output


def test_too_few_endpoints_is_one_line_naming_file_and_node() -> None:
    path = SCENARIOS / "cluster-healthy.yaml"  # workers on nodes 1..3
    dead = [f"mqtt://127.0.0.1:{free_port()}" for _ in range(2)]
    started = time.monotonic()
    result = invoke("replay", "--quiet", str(path), "--broker", dead[0], "--broker", dead[1])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line == (f"aetherdiag: error: {path}: the scenario puts clients on node 3 but "
                    "--broker gives 2 endpoint(s); give one --broker per node, node 1 first")
    assert time.monotonic() - started < 5  # nothing tried to connect


def test_one_broker_for_a_cluster_scenario_is_refused_too() -> None:
    path = SCENARIOS / "cluster-bridged-duplicates.yaml"
    result = invoke("replay", "--quiet", str(path), "--broker", "mqtt://127.0.0.1:9")
    assert result.exit_code == 2, result.output
    assert "puts clients on node 2 but --broker gives 1 endpoint(s)" in one_error_line(result)


def test_node_steps_against_real_endpoints_are_refused() -> None:
    path = SCENARIOS / "cluster-node-down-qos1.yaml"
    brokers = [a for _ in range(3) for a in ("--broker", f"mqtt://127.0.0.1:{free_port()}")]
    result = invoke("replay", "--quiet", str(path), *brokers)
    assert result.exit_code == 2, result.output
    assert "node_down needs the embedded emulator's cluster, not a real broker" in \
        one_error_line(result)


def test_every_file_is_checked_before_any_runs(tmp_path: Path) -> None:
    # the healthy one-node file would run; the cluster file after it does not fit: nothing runs
    out = tmp_path / "out.json"
    result = invoke("replay", "--quiet", "--format", "json", "-o", str(out),
                    str(SCENARIOS / "problem-task.yaml"),
                    str(SCENARIOS / "cluster-bridged-duplicates.yaml"),
                    "--broker", f"mqtt://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert not out.exists() or out.read_text() == ""


@pytest.mark.mosquitto
def test_two_node_scenario_on_two_unbridged_mosquittos(tmp_path: Path) -> None:
    """Each worker connects to its node's broker. Two Mosquittos that know nothing of each
    other: the tasks published on node 1 all go to node 1's workers (one each, round robin),
    node 2's workers stay idle, nothing is duplicated or missing."""
    path = SCENARIOS / "cluster-bridged-duplicates.yaml"  # 2 workers on each of 2 nodes
    with running_mosquitto_pair(tmp_path, bridge_topic=None) as (first, second):
        urls = [f"mqtt://{b.host}:{b.port}" for b in (first, second)]
        result = invoke("replay", "--quiet", "--format", "json", str(path),
                        "--broker", urls[0], "--broker", urls[1])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    nodes = {w["name"]: w["node"] for w in report["workers"]}
    assert nodes == {"node1-1": 1, "node1-2": 1, "node2-1": 2, "node2-2": 2}
    tasks = {w["name"]: len(w["tasks"]) for w in report["workers"]}
    assert tasks == {"node1-1": 5, "node1-2": 5, "node2-1": 0, "node2-2": 0}
    assert report["duplicates"]["cross_worker"] == 0 and report["missing"] == []
    assert [n["node"] for n in report["nodes"]] == [1, 2]
    causes = "\n".join(report["causes"])
    assert "workers on node 2 got nothing" in causes
    assert "do not share subscriptions (not one cluster)" in causes


@pytest.mark.mosquitto
def test_bridged_duplicates_scenario_holds_on_two_bridged_mosquittos(tmp_path: Path) -> None:
    """What the emulator's cluster-node-local fault stands for, on the real thing: two
    Mosquittos bridged both ways on the scenario's task topics give every task to one worker
    per broker, so the file's own expectations (10 duplicates, 5 tasks each) hold."""
    path = SCENARIOS / "cluster-bridged-duplicates.yaml"  # AetherMagic topics: production/...
    with running_mosquitto_pair(tmp_path, bridge_topic="production/#") as (first, second):
        result = invoke("replay", "--check-expect", "--quiet", str(path),
                        "--broker", f"mqtt://{first.host}:{first.port}",
                        "--broker", f"mqtt://{second.host}:{second.port}")
    assert result.exit_code == 0, result.output
