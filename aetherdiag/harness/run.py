"""The one way a command gets the broker for a run: ``open_broker``.

How this works: with a target (``--broker``, a scenario's ``broker:``) it is that broker; with
none it starts the embedded emulator with the run's settings (a thread for small runs, a child
process for large ones: see ``embedded.py``), keeps the emulator's warnings off stderr unless
``--debug`` (what a fault does is the point of the run and shows in the report), and stops
it on the way out, whatever happened. ``workers``, ``replay`` and ``probe`` all use it, so
start-up, stats and shutdown behave the same everywhere.

Several endpoints (several ``--broker`` URLs, or an emulated cluster's nodes) fill
``OpenBroker.targets``, node 1 first; ``OpenBroker.endpoint(node)`` is where node N's clients
connect and, for the emulator, ``node_down``/``node_up`` take a node off the network and back.
``transport="websocket"`` has the embedded emulator's clients connect over WebSocket
(``ws://``); it does not apply to a given target, whose URL says how to reach it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from ..mqtt.protocol import Protocol
from .embedded import (
    EmbeddedBroker,
    Mode,
    Transport,
    describe,
    quiet_emulator_logs,
    start_emulator,
)
from .model import BrokerTarget, EmulatorSettings

__all__ = ["OpenBroker", "open_broker"]


# A real broker's first PUBLISH to a worker that has just subscribed waits for that worker's
# TCP acknowledgement of the SUBACK: the broker's side of the connection keeps Nagle's
# algorithm on (Mosquitto's default, set_tcp_nodelay false) and the worker's kernel delays
# that ACK (40 ms on Linux), since the worker has nothing to send. Every task of a burst then
# queues behind that first stall: p50 40-48 ms on a default Mosquitto against 1-3 ms per task.
# The run lets the connections go quiet for longer than a delayed ACK before it publishes
# (benchmarks/bench_latency.py measures both, next to a raw paho client's figures).
FIRST_PUBLISH_QUIET_S = 0.1


@dataclass(frozen=True)
class OpenBroker:
    """The broker of one run: where to connect, how reports name it, the emulator if ours."""

    target: BrokerTarget  # the first endpoint (node 1)
    label: str  # "mqtt://host:1883", or "emulator (strategy round_robin, faults none)"
    emulator: EmbeddedBroker | None = None
    # every endpoint, node 1 first: several --broker URLs, or an emulated cluster's nodes
    targets: tuple[BrokerTarget, ...] = ()

    def endpoint(self, node: int) -> BrokerTarget:
        """Where node ``node`` (1-based) listens."""
        return (self.targets or (self.target,))[node - 1]

    @property
    def nodes(self) -> int:
        """How many endpoints (nodes) the run has."""
        return len(self.targets) or 1

    def before_first_publish(self) -> None:
        """Let a real broker's connections go quiet before the first task: see
        ``FIRST_PUBLISH_QUIET_S`` (nothing to wait for on the embedded emulator)."""
        if self.emulator is None:
            time.sleep(FIRST_PUBLISH_QUIET_S)

    def backlog(self) -> int | None:
        """Messages the embedded emulator still owes connected clients (None: a real broker,
        which cannot say, or an emulator that did not answer)."""
        return self.emulator.backlog() if self.emulator is not None else None

    def stats(self) -> dict[str, object] | None:
        """The embedded emulator's counters (None for a real broker); stops a child process
        emulator first, so call it once the run's clients are gone."""
        return self.emulator.stats() if self.emulator is not None else None

    def node_down(self, node: int) -> None:
        """Take the embedded emulator's node ``node`` off the network (``ValueError`` for a
        real broker or a node the cluster does not have)."""
        self._emulated(node).node_down(node)

    def node_up(self, node: int) -> None:
        """Bring the embedded emulator's node ``node`` back."""
        self._emulated(node).node_up(node)

    def _emulated(self, node: int) -> EmbeddedBroker:
        if self.emulator is None:
            raise ValueError("only the embedded emulator's nodes can be taken down")
        if not 1 <= node <= self.nodes:
            raise ValueError(f"node {node}: the cluster has nodes 1..{self.nodes}")
        return self.emulator


@contextlib.contextmanager
def open_broker(
    target: BrokerTarget | Sequence[BrokerTarget] | None,
    emulator: EmulatorSettings,
    *,
    protocol: Protocol = "5",
    expected_clients: int = 0,
    expected_messages: int = 0,
    mode: Mode = "auto",
    targets: Sequence[BrokerTarget] = (),
    transport: Transport = "tcp",
) -> Iterator[OpenBroker]:
    """``target`` as it is, or the embedded emulator started with ``emulator`` settings.

    Several real endpoints (node 1 first) come as ``targets`` or as a sequence in ``target``;
    they fill ``OpenBroker.targets`` (``OpenBroker.target`` is the first). With none, the emulator
    starts with ``emulator.nodes`` nodes and ``targets`` lists every node's endpoint.
    ``expected_clients`` and ``expected_messages`` choose between a thread and a process
    (``mode="auto"``). Raises ``EmulatorStartError`` (a ``BrokerUnreachable``) when the
    emulator cannot start.
    """
    given = _endpoints(target, targets)
    if given:
        label = ", ".join(t.display() for t in given)
        yield OpenBroker(target=given[0], label=label, targets=given)
        return
    with quiet_emulator_logs():
        started, handle = start_emulator(emulator, protocol=protocol,
                                         expected_clients=expected_clients,
                                         expected_messages=expected_messages, mode=mode,
                                         transport=transport)
        try:
            nodes = tuple(replace(started, port=port) for port in handle.ports) or (started,)
            yield OpenBroker(target=started, label=describe(emulator, transport),
                             emulator=handle, targets=nodes)
        finally:
            handle.stop()


def _endpoints(
    target: BrokerTarget | Sequence[BrokerTarget] | None, targets: Sequence[BrokerTarget],
) -> tuple[BrokerTarget, ...]:
    """Every real endpoint given, node 1 first: ``targets`` when given (``target`` is then
    its first, or None), else ``target`` (one, or a sequence)."""
    if targets:
        return tuple(targets)
    if isinstance(target, BrokerTarget):
        return (target,)
    return tuple(target or ())
