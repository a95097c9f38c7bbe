"""Replaying cluster scenarios: workers on their nodes' endpoints, node_down / node_up on the
embedded emulator, and the errors when the endpoints do not fit the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import invoke
from support.paths import SCENARIOS

from aetherdiag.exitcodes import Abort, ExitCode
from aetherdiag.harness.model import BrokerTarget
from aetherdiag.replay import run_scenario
from aetherdiag.replay.outcome import build_outcome
from aetherdiag.scenario import load_scenario, parse_scenario

LOCAL = """\
name: local
description: the local strategy keeps tasks on the publisher's node while it has members
target:
  emulator:
    nodes: 2
    strategy: local
workers:
  - {name: near, replicas: 2, node: 1}
  - {name: far, node: 2}
steps:
  - publish: {count: 6}
  - publish: {count: 2, node: 2}
  - settle
"""


def test_workers_and_publish_steps_use_their_nodes() -> None:
    run = run_scenario(parse_scenario(LOCAL, "local.yaml"), timeout_s=30)
    outcome = build_outcome(run)
    report = outcome.report
    assert report is not None, outcome.error
    unique = {w.name: w.unique for w in report.workers}
    # tasks published on node 1 stay on node 1's members; node 2's go to its own member
    assert unique == {"near-1": 3, "near-2": 3, "far": 2}
    assert dict(run.result.task_nodes) == {
        **{f"task-{n}": 1 for n in range(1, 7)}, "task-7": 2, "task-8": 2}
    assert int(report.exit_code) == 0


def test_node_steps_need_the_embedded_emulator() -> None:
    scenario = load_scenario(SCENARIOS / "cluster-node-down-qos1.yaml")
    with pytest.raises(Abort) as info:
        run_scenario(scenario, BrokerTarget(port=1), timeout_s=5)
    assert info.value.code == ExitCode.USAGE
    assert "node_down needs the embedded emulator's cluster" in str(info.value)


def test_too_few_endpoints_for_the_workers_nodes() -> None:
    scenario = load_scenario(SCENARIOS / "cluster-healthy.yaml")
    with pytest.raises(Abort) as info:
        run_scenario(scenario, BrokerTarget(port=1), timeout_s=5)
    assert info.value.code == ExitCode.USAGE
    assert "puts clients on node 3 but 1 endpoint(s) were given" in str(info.value)


def test_a_node_out_of_range_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(LOCAL.replace("node: 2}", "node: 3}"), encoding="utf-8")
    result = invoke("replay", str(bad))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"{bad}:9:23: node: node 3 is not in the scenario, which has nodes 1..2"]
