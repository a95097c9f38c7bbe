"""Scenario files for an emulated cluster: ``nodes``, a worker's ``node``, ``publish_to``, a
publish step's ``node`` and the ``node_down`` / ``node_up`` steps, each error at file:line."""

from __future__ import annotations

import pytest

from aetherdiag.scenario import ScenarioError, parse_scenario
from aetherdiag.scenario import model as sm

HEAD = """\
name: c
target:
  emulator:
    nodes: 3
workers:
  - {name: a, node: 1}
  - {name: b, node: 2}
  - {name: c, replicas: 2, node: 3}
"""


def parse(text: str) -> sm.Scenario:
    return parse_scenario(text, "s.yaml")


def fails(text: str, line: int, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.message) == (line, message), str(err)
    assert str(err).startswith(f"s.yaml:{line}:")


def test_nodes_workers_and_publish_nodes() -> None:
    s = parse(HEAD + "publish_to: 2\nsteps:\n  - publish: {count: 2}\n"
              "  - publish: {count: 1, node: 3}\n")
    assert s.emulator.nodes == 3 and s.publish_to == 2
    assert {w.name: w.node for w in s.workers} == {"a": 1, "b": 2, "c-1": 3, "c-2": 3}
    assert [t.node for t in s.tasks] == [2, 2, 3]
    assert s.publish_nodes == (2, 3) and s.nodes_used == 3


def test_defaults_are_one_node() -> None:
    s = parse("name: x\nworkers: [w]\nsteps:\n  - publish: {count: 1}\n")
    assert s.emulator.nodes == 1 and s.publish_to == 1 and s.workers[0].node == 1
    assert s.publish_nodes == (1,) and s.nodes_used == 1


def test_node_steps_track_the_workers() -> None:
    s = parse(HEAD + "steps:\n  - publish: {count: 2}\n  - node_down: 2\n  - node_up: 2\n"
              "  - reconnect: b\n  - publish: {count: 2}\n")
    kinds = [(st.kind, getattr(st, "node", None)) for st in s.steps]
    assert kinds == [("publish", None), ("node_down", 2), ("node_up", 2), ("reconnect", None),
                     ("publish", None)]
    assert s.steps[1].describe() == "node_down 2"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("name: x\nworkers:\n  - {name: w, node: 2}\nsteps:\n  - publish: {count: 1}\n", 3,
     "node: node 2 is not in the scenario, which has one node (a cluster needs target: "
     "emulator: nodes: N)"),
    (HEAD.replace("node: 3}", "node: 4}") + "steps:\n  - publish: {count: 1}\n", 8,
     "node: node 4 is not in the scenario, which has nodes 1..3"),
    (HEAD.replace("nodes: 3", "nodes: 0") + "steps:\n  - publish: {count: 1}\n", 4,
     "nodes: must be between 1 and 64, got 0"),
    (HEAD + "publish_to: 5\nsteps:\n  - publish: {count: 1}\n", 9,
     "publish_to: node 5 is not in the scenario, which has nodes 1..3"),
    (HEAD + "steps:\n  - publish: {count: 1, node: 9}\n", 10,
     "node: node 9 is not in the scenario, which has nodes 1..3"),
    (HEAD + "steps:\n  - publish: {count: 1}\n  - node_down: 4\n", 11,
     "node_down: node 4 is not in the scenario, which has nodes 1..3"),
    (HEAD + "steps:\n  - publish: {count: 1}\n  - node_up: 2\n", 11,
     "node_up: node 2 is not down"),
    (HEAD + "steps:\n  - publish: {count: 1}\n  - node_down: 2\n  - node_down: 2\n", 12,
     "node_down: node 2 is already down (since step 2 (line 11))"),
    (HEAD + "steps:\n  - publish: {count: 1}\n  - node_down: 2\n  - reconnect: b\n", 12,
     "reconnect: b's node 2 is down (since step 2 (line 11)); add 'node_up: 2' before"),
    (HEAD + "steps:\n  - publish: {count: 1}\n  - node_down: 2\n  - drop: b\n", 12,
     "drop: b is not connected (since step 2 (line 11))"),
    (HEAD + "steps:\n  - publish: {count: 1}\n  - node_down: 1\n", 11,
     "node_down: node 1 is where tasks are published (step 1 (line 10)); its publisher must "
     "stay connected"),
    ("name: x\nworkers: [w]\nsteps:\n  - publish: {count: 1}\n  - node_down: 1\n", 5,
     "node_down: the scenario has one node (a cluster needs target: emulator: nodes: N)"),
])
def test_cluster_mistakes_name_their_line(text: str, line: int, message: str) -> None:
    fails(text, line, message)
