"""``workers`` on several endpoints: which node each worker joins, where tasks are published.

How this works: the endpoints are the ``--broker`` URLs in the order given (node 1 first), or
the nodes of an embedded emulated cluster (``--nodes N``). Workers are spread round robin
(worker-1 on node 1, worker-2 on node 2, ...) unless ``--place worker-3=2`` says otherwise; the
publisher uses node 1, or what ``--publish-to first|each|N`` says (``each``: task n goes to node
((n-1) mod N)+1). Everything here is option parsing: bad input is a ``UsageError`` (exit 2, one
line) before anything connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..exitcodes import UsageError

MAX_NODES = 64


PublishTo = Literal["first", "each"] | int


@dataclass(frozen=True)
class Placement:
    """How a run uses its endpoints: ``nodes`` endpoints, each worker's node (worker-1 first),
    and where tasks are published."""

    nodes: int
    worker_nodes: tuple[int, ...]
    publish_to: PublishTo = "first"

    def task_node(self, n: int) -> int:
        """The node task ``n`` (1-based) is published on."""
        if self.publish_to == "each":
            return (n - 1) % self.nodes + 1
        return 1 if self.publish_to == "first" else int(self.publish_to)

    def describe(self) -> str:
        """``"each"``, ``"node 2"``: for the report's setup lines."""
        if self.publish_to == "each":
            return f"each node in turn (task n on node ((n-1) mod {self.nodes})+1)"
        return f"node {self.task_node(1)}"


def node_count(brokers: list[str], nodes: int | None) -> int:
    """How many endpoints the run has: one per ``--broker``, ``--nodes``, or 1."""
    if nodes is not None:
        if brokers:
            raise UsageError("--nodes starts an emulated cluster in the embedded emulator; it "
                             "cannot be used with --broker (give one --broker per node instead)")
        if not 1 <= nodes <= MAX_NODES:
            raise UsageError(f"--nodes {nodes}: an emulated cluster has 1 to {MAX_NODES} nodes")
        return nodes
    return max(1, len(brokers))


def _node_range(nodes: int) -> str:
    return "node 1 only" if nodes == 1 else f"nodes 1 ... {nodes}"


EndpointKind = Literal["brokers", "cluster", "emulator"]  # --broker URLs, --nodes, neither

_WHY = {"brokers": "one per --broker", "cluster": "the emulated cluster (--nodes)",
        "emulator": "the embedded emulator is one node; --nodes N emulates a cluster"}


def place(count: int, nodes: int, places: list[str], publish_to: str, *,
          endpoints: EndpointKind = "brokers") -> Placement:
    """Parse ``--place`` and ``--publish-to`` for ``count`` workers on ``nodes`` endpoints."""
    worker_nodes = [(i - 1) % nodes + 1 for i in range(1, count + 1)]
    names = {f"worker-{i}": i for i in range(1, count + 1)}
    where = f"{_node_range(nodes)}: {_WHY[endpoints]}"
    for value in places:
        name, sep, text = value.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text.isdigit():
            raise UsageError(f"--place {value!r}: expected WORKER=NODE, e.g. worker-3=2")
        if name not in names:
            raise UsageError(f"--place {value!r}: no worker named {name!r} "
                             f"(workers are worker-1 ... worker-{count})")
        node = int(text)
        if not 1 <= node <= nodes:
            raise UsageError(f"--place {value!r}: no node {node} ({where})")
        worker_nodes[names[name] - 1] = node
    return Placement(nodes, tuple(worker_nodes), parse_publish_to(publish_to, nodes, where))


def parse_publish_to(value: str, nodes: int, where: str = "") -> PublishTo:
    """``first``, ``each`` or a node number (1-based, at most ``nodes``)."""
    text = value.strip().lower()
    if text in ("first", "each"):
        return "first" if text == "first" else "each"
    if not text.isdigit():
        raise UsageError(f"--publish-to {value!r}: expected first, each or a node number")
    node = int(text)
    if not 1 <= node <= nodes:
        raise UsageError(f"--publish-to {value}: no node {node} ({where or _node_range(nodes)})")
    return node
