"""The one way a command gets the broker for a run: ``open_broker``.

How this works: with a target (``--broker``, a scenario's ``broker:``) it is that broker; with
none it starts the embedded emulator with the run's settings (a thread for small runs, a child
process for large ones: see ``embedded.py``), keeps the emulator's warnings off stderr unless
``--debug`` (what a fault does is the point of the run and shows in the report), and stops
it on the way out, whatever happened. ``workers``, ``replay`` and ``probe`` all use it, so
start-up, stats and shutdown behave the same everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..mqtt.protocol import Protocol
from .embedded import EmbeddedBroker, Mode, describe, quiet_emulator_logs, start_emulator
from .model import BrokerTarget, EmulatorSettings

__all__ = ["OpenBroker", "open_broker"]


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

    def stats(self) -> dict[str, object] | None:
        """The embedded emulator's counters (None for a real broker); stops a child process
        emulator first, so call it once the run's clients are gone."""
        return self.emulator.stats() if self.emulator is not None else None


@contextlib.contextmanager
def open_broker(
    target: BrokerTarget | None,
    emulator: EmulatorSettings,
    *,
    protocol: Protocol = "5",
    expected_clients: int = 0,
    expected_messages: int = 0,
    mode: Mode = "auto",
) -> Iterator[OpenBroker]:
    """``target`` as it is, or the embedded emulator started with ``emulator`` settings.

    ``expected_clients`` and ``expected_messages`` choose between a thread and a process
    (``mode="auto"``). Raises ``EmulatorStartError`` (a ``BrokerUnreachable``) when the
    emulator cannot start.
    """
    if target is not None:
        yield OpenBroker(target=target, label=target.display())
        return
    with quiet_emulator_logs():
        started, handle = start_emulator(emulator, protocol=protocol,
                                         expected_clients=expected_clients,
                                         expected_messages=expected_messages, mode=mode)
        try:
            yield OpenBroker(target=started, label=describe(emulator), emulator=handle)
        finally:
            handle.stop()
