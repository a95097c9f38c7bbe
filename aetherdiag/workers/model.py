"""The typed values of a ``workers`` run: the built-in fleet's plan, and ``Planned``, the one
value ``plan()`` builds from the options and every runner and the judge read.

How this works: frozen values only, no I/O. ``Planned`` holds the record's header (its setup
rows, expectations and title, built once from the same values as the worker and task specs)
and exactly one runnable plan: the built-in fleet's ``WorkersPlan`` (a whole run, or with
``shard`` this process's slice) or the worker processes' ``ExecPlan`` (``--exec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..harness.model import BrokerTarget, EmulatorSettings, RunResult, TaskSpec, WorkerSpec
from ..mqtt.protocol import Protocol
from ..record import RunHeader
from .exec.model import ExecOutcome, ExecPlan
from .shard import ShardSpec


@dataclass(frozen=True, kw_only=True)
class WorkersPlan:
    target: BrokerTarget | None  # None: the embedded emulator
    targets: tuple[BrokerTarget, ...] = ()  # several real endpoints, ``target`` first
    emulator: EmulatorSettings
    workers: tuple[WorkerSpec, ...]
    tasks: tuple[TaskSpec, ...]
    rate: float | None = None
    timeout_s: float = 30.0  # bounds publishing and waiting, --rate pacing included
    quiet_s: float = 0.3
    connect_timeout_s: float = 5.0
    protocol: Protocol = "5"
    seed: int = 0
    run_id: str | None = None  # client ids (and run-scoped topics) use it; None: a fresh one
    # try MQTT 5.0 and fall back to 3.1.1 on a real broker that refuses it (no --mqtt given)
    negotiate: bool = False


DELIVERIES_PER_SECOND = 5_000  # what the default timeout allows for: a low floor, measured
#                                 fan-out runs of 300 workers record about 8,500 a second


def default_timeout(tasks: int, rate: float | None, base: float = 30.0,
                    deliveries: int | None = None) -> float:
    """``--timeout`` when none is given: ``base`` seconds, plus what ``--rate`` pacing needs,
    plus a second per ``DELIVERIES_PER_SECOND`` deliveries the run expects (``deliveries``,
    default one per task; every worker's copy under ``--plain`` or a fan-out fault)."""
    expected = tasks if deliveries is None else deliveries
    return base + (tasks / rate if rate else 0.0) + expected / DELIVERIES_PER_SECOND


Runner = Literal["fleet", "shard", "exec"]


@dataclass(frozen=True, kw_only=True)
class Planned:
    """Everything a ``workers`` run needs, built once by ``plan()``."""

    header: RunHeader  # the record's header: workers, expectations, title and setup rows
    where: str  # the endpoints in words ("emulator", "mqtt://a:1883, mqtt://b:1883")
    fleet: WorkersPlan | None = None  # the built-in workers (this shard's slice with --shard)
    exec: ExecPlan | None = None  # --exec: the team's own worker processes
    shard: ShardSpec | None = None
    record: Path | None = None  # --record FILE ('-': stdout)
    warnings: tuple[str, ...] = ()  # said on stderr before the run starts
    clients: int = 0  # client sockets the run opens (the open-file check)
    embedded: bool = True  # the emulator runs in this process

    @property
    def runner(self) -> Runner:
        if self.exec is not None:
            return "exec"
        return "fleet" if self.shard is None else "shard"

    @property
    def task_ids(self) -> tuple[str, ...]:
        tasks = self.fleet.tasks if self.fleet is not None else (
            self.exec.tasks if self.exec is not None else ())
        return tuple(t.task_id for t in tasks)

    @property
    def stdout_is_record(self) -> bool:
        """``--record -``: stdout holds the record, so the report goes only to ``--output``."""
        return self.record is not None and str(self.record) == "-"


@dataclass(frozen=True, kw_only=True)
class Ran:
    """What a runner hands the judge: the header as the run ended up (the MQTT version a
    broker accepted, the shard's start on the wall clock), the result, the processes of
    ``--exec``, and why ``--record`` could not be written (None: written, or not asked)."""

    header: RunHeader
    result: RunResult
    exec: ExecOutcome | None = None
    record_error: str | None = None
