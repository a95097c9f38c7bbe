"""The fleet's publishers: ``per_node`` of them on each node that publishes.

How this works: a run against several endpoints (several ``--broker`` URLs, an emulated
cluster) may publish on more than one of them (``--publish-to each``), and each publishing node
may have several publishers (``--publishers N``). A publisher is a slot ``(node, index)``; with
one per node they are named ``publisher`` for the first node and ``publisher-node2``... for the
others, with several ``publisher-1``, ``publisher-2``... (``publisher-node2-1``... on the other
nodes). ``route`` sends each ``TaskSpec`` to the slot its ``node`` and ``publisher`` name and
numbers each publisher's tasks 1, 2, ... (``seq``) in the order given, in ``numbered``: the one
place tasks are numbered; a publisher reads its task's number there when it sends it (a task id
routed again keeps its first number). The run's task order is kept so the result lists tasks in
publish order whichever publisher sent them. A ``--rate`` is for the whole run: it is split
evenly over the publishers that have tasks.

Tasks with ``fresh_connection`` (``--publisher-reconnect``) are not enqueued here: the fleet
sends each on a connection of its own (``fleet.publish_fresh``) and hands the short-lived
publisher back with ``retire``, so its sent ids and failures are collected like the others'.
Everything but ``route`` and the counters runs on the fleet's loop thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from .model import TaskSpec
from .publisher import Publisher

PUBLISHER_NAME = "publisher"

Slot = tuple[int, int]  # (node, publisher index), both 1-based


class Publishers:
    """Publishers by slot, the first node's first."""

    def __init__(self, nodes: Sequence[int], per_node: int = 1) -> None:
        self.nodes = tuple(dict.fromkeys(nodes)) or (1,)
        self.per_node = max(1, per_node)
        self.by_slot: dict[Slot, Publisher] = {}
        self.retired: list[Publisher] = []  # done with: fresh connections (fleet.publish_fresh)
        self.order: dict[str, int] = {}  # task id -> its place among the tasks routed so far
        self.task_node: dict[str, int] = {}  # task id -> the node it was published on
        self.numbered: dict[str, tuple[str, int]] = {}  # task id -> (publisher, its seq)
        self.given_up: list[tuple[str, str]] = []  # (task id, reason): no publisher took it
        self._seq: Counter[str] = Counter()

    def name(self, node: int, index: int) -> str:
        """The name of slot ``(node, index)`` (module doc)."""
        base = PUBLISHER_NAME if node == self.nodes[0] else f"{PUBLISHER_NAME}-node{node}"
        return base if self.per_node == 1 else f"{base}-{index}"

    def names(self) -> Iterator[tuple[str, int]]:
        """``(name, node)`` of every publisher this run needs."""
        for node in self.nodes:
            for index in range(1, self.per_node + 1):
                yield self.name(node, index), node

    def __iter__(self) -> Iterator[Publisher]:
        return iter([*self.by_slot.values(), *self.retired])

    def __bool__(self) -> bool:
        return bool(self.by_slot)

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self)

    @property
    def queued(self) -> bool:
        """Some task still waits to be handed to its broker."""
        return any(p.queue for p in self.by_slot.values())

    @property
    def idle(self) -> bool:
        return all(p.idle for p in self.by_slot.values())

    def route(self, tasks: Sequence[TaskSpec]) -> dict[Slot, list[TaskSpec]]:
        """``tasks`` by the slot that publishes them, each new task id numbered in
        ``numbered``; ``ValueError`` for a node or index without a publisher."""
        by_slot: dict[Slot, list[TaskSpec]] = {}
        names: dict[Slot, str] = {}
        for task in tasks:
            slot = (task.node, task.publisher)
            name = names.get(slot)
            if name is None:
                if slot not in self.by_slot:
                    where = (f"no publisher {task.publisher} on node {task.node}"
                             if task.node in self.nodes else f"no publisher on node {task.node}")
                    raise ValueError(f"{task.task_id}: {where}")
                name = names[slot] = self.name(*slot)
            by_slot.setdefault(slot, []).append(task)
            if task.task_id not in self.order:
                self.order[task.task_id] = len(self.order)
                self.task_node[task.task_id] = task.node
                self._seq[name] += 1
                self.numbered[task.task_id] = (name, self._seq[name])
        return by_slot

    def split_fresh(self, by_slot: dict[Slot, list[TaskSpec]]) -> list[TaskSpec]:
        """Take the ``fresh_connection`` tasks out of ``by_slot``; returns them in publish
        order (the fleet sends each over a connection of its own)."""
        fresh = [t for tasks in by_slot.values() for t in tasks if t.fresh_connection]
        for slot in list(by_slot):
            by_slot[slot] = [t for t in by_slot[slot] if not t.fresh_connection]
            if not by_slot[slot]:
                del by_slot[slot]
        return sorted(fresh, key=lambda t: self.order[t.task_id])

    def enqueue(self, by_slot: dict[Slot, list[TaskSpec]], rate: float | None) -> None:
        """Hand each slot's tasks to its publisher (loop thread)."""
        share = rate / len(by_slot) if rate and by_slot else rate
        for slot, tasks in by_slot.items():
            self.by_slot[slot].enqueue(tasks, share)

    def retire(self, publisher: Publisher) -> None:
        """A short-lived publisher (one fresh connection) is done: keep what it did."""
        self.retired.append(publisher)

    def cancel(self, reason: str) -> None:
        for pub in self.by_slot.values():
            pub.cancel(reason)

    def clear_retained(self) -> None:
        for pub in self:
            pub.clear_retained()

    def collect(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Sent task ids in publish order, and ``(task id, reason)`` of every failure: refused,
        still queued, still unacknowledged, never given to a publisher (loop thread)."""
        sent: list[str] = []
        failures: list[tuple[str, str]] = []
        for pub in self:
            sent += pub.sent_ids
            failures += pub.failures
            failures += [(t.task_id, "not sent: the run ended first") for t in pub.queue]
            failures += [(t, "not acknowledged in time") for t in pub.unacknowledged()]
        failures += self.given_up
        if len(self.by_slot) > 1 or self.retired:
            order = self.order
            sent.sort(key=lambda t: order.get(t, len(order)))
        return sent, failures

    def task_publishers(self) -> tuple[tuple[str, str, int], ...]:
        """``(task id, publisher, seq)`` of every task routed, in publish order."""
        return tuple((t, name, seq) for t, (name, seq) in self.numbered.items())

    def make_all(self, make: Callable[[str, int], Publisher]) -> list[Publisher]:
        """Build every publisher with ``make(name, node)``."""
        for node in self.nodes:
            for index in range(1, self.per_node + 1):
                self.by_slot[(node, index)] = make(self.name(node, index), node)
        return list(self.by_slot.values())


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
