"""Runs against several endpoints (a cluster's nodes, bridged or unrelated brokers): per-node
figures and the likely causes of the cluster failure shapes.

How this works: every worker row carries the node it was connected to and the run result says
which node published each task (``RunResult.task_nodes``). ``node_figures`` counts, per node,
its workers, the tasks published there and what its workers received. ``cluster_causes`` looks
for three shapes, per pool of workers spread over two or more nodes:

- one copy per node: (nearly) every delivered task reached exactly one worker on each node
  that has members — the nodes dispatch on their own (bridged brokers, node-local dispatch);
- an idle node: a node's workers got nothing while the other nodes' workers got tasks
  published elsewhere — the endpoints do not share subscriptions (not one cluster);
- no route: tasks published on a node went missing and none reached another node's members
  (e.g. ``--publish-to each`` with members on some nodes only) — messages do not cross.

It says which generic causes each shape explains, so ``causes.likely_causes`` does not offer a
vaguer explanation for the same evidence. Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..harness.model import RunResult
from .report import NodeFigures, Report, WorkerRow

COPY_PER_NODE_SHARE = 0.9  # of the delivered tasks, for "each node's members got a copy"


@dataclass
class ClusterCauses:
    """The cluster causes found, and which generic findings they explain."""

    causes: list[str] = field(default_factory=list)
    duplicates: bool = False  # the cross-worker duplicates
    idle: bool = False  # idle workers, an uneven split, "one worker got everything"
    missing: bool = False  # the missing tasks


def node_figures(result: RunResult, rows: Sequence[WorkerRow]) -> tuple[NodeFigures, ...]:
    """Per-node figures, node 1 first; empty for a run against one endpoint."""
    if not result.endpoints:
        return ()
    published = set(result.published)
    on_node: dict[int, int] = defaultdict(int)
    for task, node in result.task_nodes:
        if task in published:
            on_node[node] += 1
    out = []
    for node, endpoint in enumerate(result.endpoints, start=1):
        mine = [r for r in rows if r.node == node]
        out.append(NodeFigures(
            node=node, endpoint=endpoint, workers=len(mine), published=on_node[node],
            delivered=sum(r.received for r in mine),
            unique=len({t for r in mine for t in r.tasks}),
            idle_workers=tuple(r.name for r in mine if r.unique == 0),
        ))
    return tuple(out)


def _and(items: Sequence[object]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def cluster_causes(report: Report, result: RunResult) -> ClusterCauses:
    """The likely causes of the cluster failure shapes in ``report`` (see the module doc)."""
    found = ClusterCauses()
    if not result.endpoints or report.published == 0:
        return found
    pools: dict[str, list[WorkerRow]] = defaultdict(list)
    for row in report.workers:
        pools[row.pool].append(row)
    task_node = dict(result.task_nodes)
    publishing = sorted({task_node[t] for t in result.published if t in task_node})
    for rows in pools.values():
        member_nodes = sorted({r.node for r in rows})
        if len(member_nodes) < 2:
            _no_route(found, report, rows, member_nodes, task_node, publishing)
            continue
        _copy_per_node(found, report, rows, member_nodes)
        _idle_nodes(found, rows, member_nodes, publishing)
        _no_route(found, report, rows, member_nodes, task_node, publishing)
    return found


def _copy_per_node(found: ClusterCauses, report: Report, rows: list[WorkerRow],
                   member_nodes: list[int]) -> None:
    holders: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for t in r.tasks:
            holders[t][r.node] += 1
    if not holders or not report.cross_worker:
        return
    per_node = [t for t, by in holders.items()
                if all(by.get(n, 0) == 1 for n in member_nodes)]
    if len(per_node) < COPY_PER_NODE_SHARE * len(holders):
        return
    share = ("every task reached" if len(per_node) == len(holders)
             else f"{len(per_node)} of {len(holders)} tasks reached")
    found.causes.append(
        f"each node's members got a copy (one copy per node: {share} one worker on each of "
        f"nodes {_and(member_nodes)}): the nodes dispatch locally (bridged or node-local) "
        "instead of choosing one member across the cluster; bridge only topics no shared "
        "group consumes, or use one clustered broker whose nodes share the group")
    found.duplicates = True


def _idle_nodes(found: ClusterCauses, rows: list[WorkerRow], member_nodes: list[int],
                publishing: list[int]) -> None:
    busy = [n for n in member_nodes if any(r.unique for r in rows if r.node == n)]
    idle = [n for n in member_nodes if n not in busy and n not in publishing]
    if not busy or not idle:
        return
    workers = [r.name for r in rows if r.node in idle]
    names = ", ".join(workers[:5]) + (f", … +{len(workers) - 5} more" if len(workers) > 5 else "")
    where = _and([f"node {n}" for n in publishing]) or "another node"
    found.causes.append(
        f"workers on node{'s' if len(idle) > 1 else ''} {_and(idle)} got nothing ({names}): "
        f"the endpoints do not share subscriptions (not one cluster), so tasks published on "
        f"{where} stay there; or the dispatch prefers the publisher's node (EMQX's local "
        "strategy), which --publish-to each would show")
    found.idle = True


def _no_route(found: ClusterCauses, report: Report, rows: list[WorkerRow],
              member_nodes: list[int], task_node: dict[str, int],
              publishing: list[int]) -> None:
    if not publishing or not report.missing:
        return
    missing = set(report.missing)
    reached: dict[int, set[int]] = defaultdict(set)  # publishing node -> nodes its tasks reached
    for r in rows:
        for t in r.tasks:
            if t in task_node:
                reached[task_node[t]].add(r.node)
    for node in publishing:
        lost = [t for t, n in task_node.items() if n == node and t in missing]
        others = [m for m in member_nodes if m != node]
        if not lost or not others or reached[node] & set(others):
            continue
        found.causes.append(
            f"tasks published on node {node} never reached node {_and(others)}'s members "
            f"({len(lost)} missing, e.g. {lost[0]}): messages do not cross the nodes (not one "
            "cluster, or the cluster link or bridge is down)")
        found.missing = True
