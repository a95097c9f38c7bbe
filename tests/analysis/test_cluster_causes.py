"""analysis on runs against several endpoints: per-node figures and the cluster causes
(one copy per node, an idle node, tasks that never cross nodes), on hand-made records."""

from __future__ import annotations

from aetherdiag.analysis import Report, analyse
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec
from aetherdiag.render.report import table, to_dict, to_junit

SHARED = "$share/g/jobs/+"
ENDPOINTS = ("mqtt://127.0.0.1:1001", "mqtt://127.0.0.1:1002")


def specs(nodes: list[int]) -> list[WorkerSpec]:
    """worker-1 ... worker-N on the given nodes."""
    return [WorkerSpec(name=f"worker-{i}", subscriptions=(SHARED,), node=node)
            for i, node in enumerate(nodes, start=1)]


def run(assign: dict[str, list[str]], tasks: int, task_node: dict[int, int] | None = None,
        endpoints: tuple[str, ...] = ENDPOINTS) -> RunResult:
    """``assign``: worker -> tasks it received; ``task_node``: task n -> publishing node (1)."""
    deliveries = tuple(
        Delivery(worker=w, task_id=t, topic=f"jobs/{t}", qos=1, dup=False, retain=False, at=0.0)
        for w, ids in assign.items() for t in ids)
    nodes = task_node or {}
    return RunResult(
        target=", ".join(endpoints), workers=tuple(assign), deliveries=deliveries,
        published=tuple(f"task-{n}" for n in range(1, tasks + 1)), endpoints=endpoints,
        task_nodes=tuple((f"task-{n}", nodes.get(n, 1)) for n in range(1, tasks + 1)))


def tasks(*ns: int) -> list[str]:
    return [f"task-{n}" for n in ns]


def causes(report: Report) -> str:
    return "\n".join(report.causes)


def test_bridged_pair_one_copy_per_node() -> None:
    odd, even = tasks(*range(1, 11, 2)), tasks(*range(2, 11, 2))
    report = analyse(run({"worker-1": odd, "worker-2": odd, "worker-3": even,
                          "worker-4": even}, 10), specs([1, 2, 1, 2]))
    assert report.exit_code == ExitCode.DUPLICATES
    text = causes(report)
    assert "each node's members got a copy" in text and "one copy per node" in text
    assert "nodes 1 and 2" in text
    # the cluster cause replaces the generic "reached several workers" one
    assert "overlapping pools" not in text
    assert [(f.node, f.workers, f.published, f.delivered, f.unique) for f in report.nodes] == [
        (1, 2, 10, 10, 10), (2, 2, 0, 10, 10)]
    assert [w.node for w in report.workers] == [1, 2, 1, 2]


def test_one_worker_per_node_bridged_is_not_blamed_on_fanout() -> None:
    every = tasks(*range(1, 7))
    report = analyse(run({"worker-1": every, "worker-2": every}, 6), specs([1, 2]))
    assert report.exit_code == ExitCode.DUPLICATES
    assert "each node's members got a copy" in causes(report)
    assert "treats $share" not in causes(report)


def test_idle_node_means_not_one_cluster() -> None:
    report = analyse(run({"worker-1": tasks(*range(1, 21, 2)), "worker-2": [],
                          "worker-3": tasks(*range(2, 21, 2)), "worker-4": []}, 20),
                     specs([1, 2, 1, 2]))
    assert report.exit_code == ExitCode.IMBALANCE
    text = causes(report)
    assert "workers on node 2 got nothing (worker-2, worker-4)" in text
    assert "do not share subscriptions (not one cluster)" in text
    assert "tasks published on node 1 stay there" in text
    assert "the split is uneven" not in text
    assert report.nodes[1].idle_workers == ("worker-2", "worker-4")


def test_several_idle_nodes_make_one_cause() -> None:
    ends = (*ENDPOINTS, "mqtt://127.0.0.1:1003")
    report = analyse(run({"worker-1": tasks(*range(1, 13)), "worker-2": [], "worker-3": []},
                         12, endpoints=ends), specs([1, 2, 3]))
    text = causes(report)
    assert "workers on nodes 2 and 3 got nothing (worker-2, worker-3)" in text
    assert "one worker (worker-1) got everything" not in text


def test_tasks_published_on_a_node_never_cross() -> None:
    # --publish-to each, every member on node 1, node 2 does not route to node 1
    each = {n: (n - 1) % 2 + 1 for n in range(1, 11)}
    report = analyse(run({"worker-1": tasks(1, 5, 9), "worker-2": tasks(3, 7)}, 10, each),
                     specs([1, 1]))
    assert report.exit_code == ExitCode.MISSING
    text = causes(report)
    assert "tasks published on node 2 never reached node 1's members (5 missing" in text
    assert "messages were lost" not in text
    assert [(f.node, f.published, f.delivered) for f in report.nodes] == [(1, 5, 5), (2, 5, 0)]


def test_healthy_cluster_has_no_cluster_cause() -> None:
    report = analyse(run({"worker-1": tasks(1, 3, 5), "worker-2": tasks(2, 4, 6)}, 6),
                     specs([1, 2]))
    assert report.exit_code == ExitCode.OK and report.causes == ()
    assert len(report.nodes) == 2


def test_one_endpoint_has_no_node_figures() -> None:
    result = run({"worker-1": tasks(1, 3), "worker-2": tasks(2)}, 3, endpoints=())
    report = analyse(result, specs([1, 1]))
    assert report.nodes == ()
    doc = to_dict(report)
    assert doc["nodes"] == [] and [w["node"] for w in doc["workers"]] == [1, 1]


def test_render_shows_nodes_in_every_format() -> None:
    from rich.console import Console

    every = tasks(*range(1, 5))
    report = analyse(run({"worker-1": every, "worker-2": every}, 4), specs([1, 2]))
    doc = to_dict(report)
    assert doc["nodes"][1] == {"node": 2, "endpoint": ENDPOINTS[1], "workers": 1,
                               "published": 0, "delivered": 4, "unique": 4,
                               "idle_workers": []}
    junit = to_junit(report)
    assert 'name="node2"' in junit and "worker-2 (node 2)" in junit
    console = Console(width=200, record=True)
    console.print(table(report))
    text = console.export_text()
    assert "endpoint" in text and ENDPOINTS[1] in text
    assert "│ worker-2 │    2 │" in text
