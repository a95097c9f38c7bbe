"""Run a ``workers`` plan: start the emulator if needed, drive the fleet, collect the result.

How this works: ``run_workers`` is the one place the workers command touches the network. It
starts the embedded emulator when the plan has no broker target, connects the fleet, publishes,
waits for deliveries to settle (bounded by the plan's timeout) and returns the RunResult.
Broker failures become ``Abort(..., UNREACHABLE)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .exitcodes import Abort, ExitCode
from .harness.embedded import describe, start_emulator
from .harness.fleet import BrokerUnreachable, Fleet
from .harness.model import BrokerTarget, EmulatorSettings, RunResult, TaskSpec, WorkerSpec


@dataclass(frozen=True, kw_only=True)
class WorkersPlan:
    target: BrokerTarget | None  # None: the embedded emulator
    emulator: EmulatorSettings
    workers: tuple[WorkerSpec, ...]
    tasks: tuple[TaskSpec, ...]
    rate: float | None = None
    timeout_s: float = 30.0
    quiet_s: float = 0.3
    connect_timeout_s: float = 5.0
    protocol: str = "5"
    seed: int = 0


def run_workers(
    plan: WorkersPlan, on_progress: Callable[[int, int], None] | None = None
) -> RunResult:
    """Execute ``plan`` and return everything observed."""
    handle = None
    target = plan.target
    label = None
    if target is None:
        label = describe(plan.emulator)
        target, handle = start_emulator(
            plan.emulator, protocol=plan.protocol,
            expected_clients=len(plan.workers) + 1, expected_messages=len(plan.tasks),
        )
    try:
        with Fleet(target, connect_timeout=plan.connect_timeout_s, seed=plan.seed,
                   label=label) as fleet:
            fleet.start(plan.workers)
            fleet.publish(plan.tasks, rate=plan.rate, on_progress=on_progress,
                          timeout_s=plan.timeout_s + _paced(plan))
            fleet.settle(expected=len(plan.tasks), quiet_s=plan.quiet_s,
                         timeout_s=plan.timeout_s, on_progress=on_progress)
            result = fleet.result()
        if handle is not None:
            stats = handle.stats()
            if stats is not None:
                result = replace(result, emulator_stats=stats)
        return result
    except BrokerUnreachable as exc:
        raise Abort(str(exc), ExitCode.UNREACHABLE) from None
    finally:
        if handle is not None:
            handle.stop()


def _paced(plan: WorkersPlan) -> float:
    """Seconds a --rate run needs just to publish, which --timeout should not eat into."""
    return len(plan.tasks) / plan.rate if plan.rate else 0.0
