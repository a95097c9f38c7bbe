"""``aetherdiag workers`` against several endpoints: two real Mosquittos (bridged both ways, or
not related at all), the embedded emulated cluster (``--nodes``), and the usage errors of
``--broker`` x N, ``--place``, ``--publish-to`` and ``--nodes``.

The Mosquittos are private (free loopback ports, their own config files, stopped afterwards);
the bridge carries ``aetherdiag/#``, so the run-scoped topics under ``aetherdiag/<run id>/``
cross it. Without the binary those tests skip (fail in CI): see tests/support/brokers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.brokers import MosquittoProcess, running_mosquitto_pair
from support.cli import causes, failed_checks, one_error_line, run_json, workers

from aetherdiag.exitcodes import ExitCode

Pair = tuple[MosquittoProcess, MosquittoProcess]


def urls(pair: Pair) -> list[str]:
    """``--broker URL`` for each broker of ``pair``, node 1 first."""
    return [arg for b in pair for arg in ("--broker", f"mqtt://{b.host}:{b.port}")]


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with running_mosquitto_pair(tmp_path_factory.mktemp("bridged")) as pair:
        yield pair


@pytest.fixture(scope="module")
def unbridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with running_mosquitto_pair(tmp_path_factory.mktemp("apart"), bridge_topic=None) as pair:
        yield pair


def node_rows(doc: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(node, workers, published, distinct tasks delivered) per node."""
    return [(n["node"], n["workers"], n["published"], n["unique"]) for n in doc["nodes"]]


# --------------------------------------------------------------------------- real brokers


@pytest.mark.mosquitto
@pytest.mark.slow
def test_bridged_mosquittos_give_one_copy_per_node(bridged: Pair) -> None:
    result, doc = run_json(*urls(bridged), "--count", "4", "--tasks", "10", "--timeout", "20")
    assert result.exit_code == ExitCode.DUPLICATES, result.output
    assert "each node's members got a copy" in causes(doc)
    assert "one copy per node" in causes(doc)
    assert [w["node"] for w in doc["workers"]] == [1, 2, 1, 2]
    assert node_rows(doc) == [(1, 2, 10, 10), (2, 2, 0, 10)]
    assert doc["delivered"] == 20 and doc["duplicates"]["cross_worker"] == 10
    assert doc["target"] == ", ".join(n["endpoint"] for n in doc["nodes"])


@pytest.mark.mosquitto
@pytest.mark.slow
def test_unbridged_mosquittos_leave_the_other_nodes_workers_idle(unbridged: Pair) -> None:
    result, doc = run_json(*urls(unbridged), "--count", "4", "--tasks", "20",
                           "--timeout", "20")
    assert result.exit_code == ExitCode.IMBALANCE, result.output
    assert "workers on node 2 got nothing (worker-2, worker-4)" in causes(doc)
    assert "the endpoints do not share subscriptions (not one cluster)" in causes(doc)
    assert node_rows(doc) == [(1, 2, 20, 20), (2, 2, 0, 0)]
    assert doc["nodes"][1]["idle_workers"] == ["worker-2", "worker-4"]


@pytest.mark.mosquitto
@pytest.mark.slow
def test_unbridged_publish_to_each_loses_the_other_nodes_tasks(unbridged: Pair) -> None:
    result, doc = run_json(*urls(unbridged), "--count", "2", "--tasks", "10",
                           "--place", "worker-2=1", "--publish-to", "each", "--timeout", "20")
    assert result.exit_code == ExitCode.MISSING, result.output
    assert "tasks published on node 2 never reached node 1's members" in causes(doc)
    assert sorted(doc["missing"]) == sorted(f"task-{n}" for n in range(2, 11, 2))
    assert node_rows(doc) == [(1, 2, 5, 5), (2, 0, 5, 0)]


@pytest.mark.mosquitto
def test_one_broker_twice_is_one_healthy_broker(unbridged: Pair) -> None:
    first = unbridged[0]
    url = f"mqtt://{first.host}:{first.port}"
    result, doc = run_json("--broker", url, "--broker", url, "--count", "4", "--tasks", "12",
                           "--publish-to", "each")
    assert result.exit_code == 0, result.output
    assert node_rows(doc) == [(1, 2, 6, 6), (2, 2, 6, 6)]


# --------------------------------------------------------------------------- emulated cluster


def test_emulated_cluster_shares_the_group_across_nodes() -> None:
    result, doc = run_json("--nodes", "3", "--count", "6", "--tasks", "60")
    assert result.exit_code == 0, result.output
    assert all(w["unique"] > 0 for w in doc["workers"])
    assert [w["node"] for w in doc["workers"]] == [1, 2, 3, 1, 2, 3]
    assert [(n["node"], n["workers"], n["published"]) for n in doc["nodes"]] == [
        (1, 2, 60), (2, 2, 0), (3, 2, 0)]
    assert sum(n["unique"] for n in doc["nodes"]) == 60 and doc["delivered"] == 60
    assert doc["causes"] == [] and "3 nodes" in doc["target"]


def test_emulated_cluster_node_local_gives_one_copy_per_node() -> None:
    result, doc = run_json("--nodes", "3", "--count", "6", "--tasks", "60",
                           "--fault", "cluster-node-local")
    assert result.exit_code == ExitCode.DUPLICATES, result.output
    assert "each node's members got a copy" in causes(doc)
    assert "nodes 1, 2 and 3" in causes(doc)
    assert doc["delivered"] == 180


def test_emulated_cluster_no_route_leaves_other_nodes_idle() -> None:
    result, doc = run_json("--nodes", "2", "--count", "4", "--tasks", "20",
                           "--fault", "cluster-no-route")
    assert result.exit_code == ExitCode.IMBALANCE, result.output
    assert "workers on node 2 got nothing" in causes(doc)
    assert "do not share subscriptions" in causes(doc)
    assert "balance" in failed_checks(doc)


def test_emulated_cluster_local_strategy_keeps_tasks_on_their_node() -> None:
    result, doc = run_json("--nodes", "2", "--count", "4", "--tasks", "20",
                           "--strategy", "local", "--publish-to", "each")
    assert result.exit_code == 0, result.output
    for w in doc["workers"]:  # task n went out on node ((n-1) mod 2)+1 and stayed there
        assert {(int(t.split("-")[1]) - 1) % 2 + 1 for t in w["tasks"]} == {w["node"]}


def test_place_and_publish_to_a_node() -> None:
    result, doc = run_json("--nodes", "2", "--count", "3", "--tasks", "9",
                           "--place", "worker-1=2", "--publish-to", "2")
    assert result.exit_code == 0, result.output
    assert [w["node"] for w in doc["workers"]] == [2, 2, 1]
    assert [(n["node"], n["published"]) for n in doc["nodes"]] == [(1, 0), (2, 9)]
    assert doc["run"]["publish to"] == "node 2"


def test_table_shows_the_node_column_only_with_several_endpoints() -> None:
    several = workers("--nodes", "2", "--count", "2", "--tasks", "4")
    assert several.exit_code == 0, several.output
    assert "┃ node ┃" in several.stdout and "endpoint" in several.stdout
    one = workers("--count", "2", "--tasks", "4")
    assert one.exit_code == 0, one.output
    assert "node" not in one.stdout and "endpoint" not in one.stdout


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("args", "expected"), [
    (["--place", "worker-9=1"], "--place 'worker-9=1': no worker named 'worker-9'"),
    (["--place", "worker-2=3"], "--place 'worker-2=3': no node 3 (nodes 1 ... 2"),
    (["--place", "worker-2"], "--place 'worker-2': expected WORKER=NODE"),
    (["--place", "worker-2=x"], "--place 'worker-2=x': expected WORKER=NODE"),
    (["--publish-to", "3"], "--publish-to 3: no node 3"),
    (["--publish-to", "0"], "--publish-to 0: no node 0"),
    (["--publish-to", "some"], "--publish-to 'some': expected first, each or a node number"),
])
def test_bad_placement_is_a_usage_error(args: list[str], expected: str) -> None:
    result = workers("--nodes", "2", "--count", "3", *args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert expected in one_error_line(result)


def test_place_on_a_second_broker_url_counts_the_urls() -> None:
    result = workers("--broker", "mqtt://127.0.0.1:9", "--broker", "mqtt://127.0.0.1:10",
                     "--place", "worker-1=3")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "no node 3 (nodes 1 ... 2: one per --broker)" in one_error_line(result)


@pytest.mark.parametrize(("args", "expected"), [
    (["--nodes", "2", "--broker", "mqtt://127.0.0.1:9"], "cannot be used with --broker"),
    (["--nodes", "0"], "--nodes 0: an emulated cluster has 1 to"),
    (["--place", "worker-1=2"], "the embedded emulator is one node; --nodes N"),
    (["--nodes", "2", "--exec", "true"], "--exec runs against one endpoint"),
])
def test_bad_endpoints_are_usage_errors(args: list[str], expected: str) -> None:
    result = workers(*args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert expected in one_error_line(result)


@pytest.mark.mosquitto
def test_unreachable_third_endpoint_is_named(tmp_path: Path) -> None:
    from support.brokers import free_port

    with running_mosquitto_pair(tmp_path, bridge_topic=None) as pair:
        dead = f"mqtt://127.0.0.1:{free_port()}"
        result = workers(*urls(pair), "--broker", dead, "--count", "3",
                         "--connect-timeout", "2")
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    assert f"cannot connect to {dead}: connection refused (worker-3" in one_error_line(result)
