"""Run a ``workers`` plan: start the emulator if needed, drive the fleet, collect the result.

How this works: ``run_workers`` is the one place the workers command touches the network. It
starts the embedded emulator when the plan has no broker target, connects the fleet, publishes,
waits for deliveries to settle (bounded by the plan's timeout) and returns the RunResult.
Broker failures become ``Abort(..., UNREACHABLE)``.

Several endpoints: ``targets`` lists every real broker (several ``--broker`` URLs, node 1
first), or ``emulator.nodes`` asks for an emulated cluster; each worker connects to its
``WorkerSpec.node`` and each task is published on its ``TaskSpec.node``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .exitcodes import Abort, ExitCode
from .harness.fleet import BrokerUnreachable, Fleet
from .harness.model import BrokerTarget, EmulatorSettings, RunResult, TaskSpec, WorkerSpec
from .harness.run import open_broker
from .mqtt.protocol import Protocol


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


def default_timeout(tasks: int, rate: float | None, base: float = 30.0) -> float:
    """``--timeout`` when none is given: ``base`` seconds plus what ``--rate`` pacing needs."""
    return base + (tasks / rate if rate else 0.0)


def run_workers(
    plan: WorkersPlan, on_progress: Callable[[int, int], None] | None = None
) -> RunResult:
    """Execute ``plan`` and return everything observed.

    Publishing and waiting share one deadline, ``plan.timeout_s`` after the fleet connected
    (connecting is bounded by ``connect_timeout_s``). A run cut short by that deadline, by
    Ctrl-C/SIGTERM (``KeyboardInterrupt``), or by a broker lost mid-run still returns what it
    observed; the result says what was not done.
    """
    publish_nodes = sorted({t.node for t in plan.tasks}) or [1]
    try:
        with open_broker(plan.target, plan.emulator, protocol=plan.protocol,
                         targets=plan.targets,
                         expected_clients=len(plan.workers) + len(publish_nodes),
                         expected_messages=len(plan.tasks)) as broker:
            with Fleet(broker.target, connect_timeout=plan.connect_timeout_s, seed=plan.seed,
                       label=broker.label, run_id=plan.run_id, targets=broker.targets,
                       publish_nodes=publish_nodes) as fleet:
                interrupted = False
                try:
                    fleet.start(plan.workers)
                    deadline = time.monotonic() + plan.timeout_s
                    fleet.publish(plan.tasks, rate=plan.rate, on_progress=on_progress,
                                  timeout_s=plan.timeout_s)
                    fleet.settle(expected=len(plan.tasks), quiet_s=plan.quiet_s,
                                 timeout_s=max(0.0, deadline - time.monotonic()),
                                 on_progress=on_progress)
                except KeyboardInterrupt:  # even while connecting: report what there is
                    interrupted = True
                    fleet.stop_clock()
                result = fleet.result()
                if interrupted:
                    seen = set(result.published) | {t for t, _ in result.unsent}
                    never = tuple((t.task_id, "not sent: interrupted") for t in plan.tasks
                                  if t.task_id not in seen)
                    result = replace(result, interrupted=True, unsent=result.unsent + never)
                result = replace(result, timeout_s=plan.timeout_s)
            return replace(result, emulator_stats=broker.stats())
    except BrokerUnreachable as exc:
        raise Abort(str(exc), ExitCode.UNREACHABLE) from None

