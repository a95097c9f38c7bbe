"""The fleet's publishers: one per node that publishes (just ``publisher`` on one broker).

How this works: a run against several endpoints (several ``--broker`` URLs, an emulated
cluster) may publish on more than one of them (``--publish-to each``). Each publishing node gets
a ``Publisher`` of its own, named ``publisher`` for the first and ``publisher-node2``... for the
others; ``route`` sends each ``TaskSpec`` to the publisher its ``node`` names, and the run's
task order is kept so the result lists tasks in publish order whichever node sent them. A
``--rate`` is for the whole run: it is split evenly over the nodes that publish. Everything but
``route`` and the counters runs on the fleet's loop thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from .model import TaskSpec
from .publisher import Publisher

PUBLISHER_NAME = "publisher"


class Publishers:
    """Publishers by node (1-based), the first of ``nodes`` first."""

    def __init__(self, nodes: Sequence[int]) -> None:
        self.nodes = tuple(dict.fromkeys(nodes)) or (1,)
        self.by_node: dict[int, Publisher] = {}
        self.order: dict[str, int] = {}  # task id -> its place among the tasks routed so far
        self.task_node: dict[str, int] = {}  # task id -> the node it was published on

    def names(self) -> Iterator[tuple[str, int]]:
        """``(name, node)`` of every publisher this run needs."""
        for i, node in enumerate(self.nodes):
            yield (PUBLISHER_NAME if i == 0 else f"{PUBLISHER_NAME}-node{node}"), node

    def add(self, node: int, publisher: Publisher) -> None:
        self.by_node[node] = publisher

    def __iter__(self) -> Iterator[Publisher]:
        return iter(self.by_node.values())

    def __bool__(self) -> bool:
        return bool(self.by_node)

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self.by_node.values())

    @property
    def queued(self) -> bool:
        """Some task still waits to be handed to its broker."""
        return any(p.queue for p in self.by_node.values())

    @property
    def idle(self) -> bool:
        return all(p.idle for p in self.by_node.values())

    def route(self, tasks: Sequence[TaskSpec]) -> dict[int, list[TaskSpec]]:
        """``tasks`` by the node that publishes them; ``ValueError`` for a node without a
        publisher."""
        by_node: dict[int, list[TaskSpec]] = {}
        for task in tasks:
            if task.node not in self.by_node:
                raise ValueError(f"{task.task_id}: no publisher on node {task.node}")
            by_node.setdefault(task.node, []).append(task)
            self.order.setdefault(task.task_id, len(self.order))
            self.task_node.setdefault(task.task_id, task.node)
        return by_node

    def enqueue(self, by_node: dict[int, list[TaskSpec]], rate: float | None) -> None:
        """Hand each node's tasks to its publisher (loop thread)."""
        share = rate / len(by_node) if rate and by_node else rate
        for node, tasks in by_node.items():
            self.by_node[node].enqueue(tasks, share)

    def cancel(self, reason: str) -> None:
        for pub in self.by_node.values():
            pub.cancel(reason)

    def clear_retained(self) -> None:
        for pub in self.by_node.values():
            pub.clear_retained()

    def collect(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Sent task ids in publish order, and ``(task id, reason)`` of every failure: refused,
        still queued, still unacknowledged (loop thread)."""
        sent: list[str] = []
        failures: list[tuple[str, str]] = []
        for pub in self.by_node.values():
            sent += pub.sent_ids
            failures += pub.failures
            failures += [(t.task_id, "not sent: the run ended first") for t in pub.queue]
            failures += [(t, "not acknowledged in time") for t in pub.unacknowledged()]
        if len(self.by_node) > 1:
            order = self.order
            sent.sort(key=lambda t: order.get(t, len(order)))
        return sent, failures

    def make_all(self, make: Callable[[str, int], Publisher]) -> list[Publisher]:
        """Build every publisher with ``make(name, node)``."""
        for name, node in self.names():
            self.add(node, make(name, node))
        return list(self.by_node.values())


class Outcome(NamedTuple):
    """What became of the tasks, as ``RunResult`` holds it."""

    published: tuple[str, ...]  # sent, each once, in publish order
    failures: tuple[str, ...]  # sent and refused or never acknowledged
    refusals: tuple[tuple[str, str], ...]  # (task id, reason) of those
    unsent: tuple[tuple[str, str], ...]  # (task id, reason): never handed to the broker
    notes: tuple[str, ...]  # one line per distinct reason, with its count


def outcome(sent: Sequence[str], failures: Sequence[tuple[str, str]]) -> Outcome:
    """Sort ``collect()``'s sent ids and failures into what the run result reports."""
    reasons = Counter(reason for _, reason in failures)
    sent_set = set(sent)
    unsent: dict[str, str] = {}
    for task_id, reason in failures:
        if task_id not in sent_set:
            unsent.setdefault(task_id, reason)
    return Outcome(
        published=tuple(dict.fromkeys(sent)),
        failures=tuple(dict.fromkeys(t for t, _ in failures if t in sent_set)),
        refusals=tuple((t, r) for t, r in failures if t in sent_set),
        unsent=tuple(unsent.items()),
        notes=tuple(f"publisher: {count} task(s) {reason}"
                    for reason, count in sorted(reasons.items())),
    )
