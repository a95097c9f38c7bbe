"""The built-in fleet's runner: start the emulator if needed, drive the fleet, collect the
result.

How this works: ``run_workers`` is the one place the workers command touches the network. It
starts the embedded emulator when the plan has no broker target, connects the fleet, publishes,
waits for deliveries to settle (bounded by the plan's timeout) and returns the RunResult.
Broker failures are ``BrokerUnreachable`` (exit 3).

Sharded runs (``run_shard``): this process runs its slice of the workers; the shards meet
through the broker (``workers.shard.Coordinator``): every shard announces itself once its
workers are subscribed, shard 1 publishes once all have, and the others settle once shard 1
says the tasks are out. A shard that never shows up ends every waiting shard with
``ShardError`` (exit 3) within the plan's timeout.

Durations are kept to the millisecond, as every report shows them, so a report rebuilt from a
saved JSON report or a run record is the same to the byte.

MQTT version: with ``negotiate`` (no ``--mqtt``), one test connection per real endpoint asks
for MQTT 5.0 before the fleet starts, and a broker that refuses it and accepts 3.1.1 gets a run
in 3.1.1 (``harness.negotiate``): ``on_fallback`` hears of it before any worker connects, the
result's ``mqtt5_refused`` and a note say so.

Several endpoints: ``targets`` lists every real broker (several ``--broker`` URLs, node 1
first), or ``emulator.nodes`` asks for an emulated cluster; each worker connects to its
``WorkerSpec.node`` and each task is published on its ``TaskSpec.node``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from ..harness import phases
from ..harness.fleet import Fleet
from ..harness.model import BrokerTarget, RunResult
from ..harness.negotiate import Negotiated, negotiate
from ..harness.run import OpenBroker, open_broker
from .model import WorkersPlan
from .shard import Coordinator, ShardSpec

FallbackCallback = Callable[[Negotiated], None]


def run_workers(
    plan: WorkersPlan, on_progress: Callable[[int, int], None] | None = None,
    on_fallback: FallbackCallback | None = None,
) -> RunResult:
    """Execute ``plan`` and return everything observed.

    Publishing and waiting share one deadline, ``plan.timeout_s`` after the fleet connected
    (connecting is bounded by ``connect_timeout_s``). A run cut short by that deadline, by
    Ctrl-C/SIGTERM (``KeyboardInterrupt``), or by a broker lost mid-run still returns what it
    observed; the result says what was not done.
    """
    result, _ = _run(plan, on_progress, None, on_fallback)
    return result


def run_shard(
    plan: WorkersPlan, shard: ShardSpec, on_progress: Callable[[int, int], None] | None = None,
    on_fallback: FallbackCallback | None = None,
) -> tuple[RunResult, float]:
    """Execute this shard's part of ``plan`` (``plan.workers`` is its slice; shard 1
    publishes ``plan.tasks``). Returns the result and the wall-clock time (Unix seconds) at
    which the run's clock started, so shard records can be put on one clock."""
    return _run(plan, on_progress, shard, on_fallback)


def negotiated(plan: WorkersPlan, broker: OpenBroker, client_id: str,
               on_fallback: FallbackCallback | None) -> tuple[WorkersPlan, tuple[BrokerTarget, ...],
                                                          Negotiated | None]:
    """``plan`` and the broker's endpoints in the MQTT version the broker accepts: the plan's
    own unless ``plan.negotiate`` found a real broker that refuses 5.0 (``on_fallback`` is
    told). The fallback, when there was one, comes back too."""
    targets = broker.targets or (broker.target,)
    if not plan.negotiate or broker.emulator is not None:
        return plan, targets, None
    found = negotiate(targets, plan.connect_timeout_s, client_id=client_id)
    if not found.fell_back:
        return plan, targets, None
    if on_fallback is not None:
        on_fallback(found)
    used = found.protocol
    plan = replace(plan, protocol=used,
                   workers=tuple(replace(w, protocol=used, session_expiry=0)
                                 for w in plan.workers))
    return plan, tuple(replace(t, protocol=used) for t in targets), found


def _run(plan: WorkersPlan, on_progress: Callable[[int, int], None] | None,
         shard: ShardSpec | None, on_fallback: FallbackCallback | None = None,
         ) -> tuple[RunResult, float]:
    publish_nodes = sorted({t.node for t in plan.tasks}) or [1]
    scope = f"{plan.run_id}-s{shard.index}" if shard is not None and plan.run_id else None
    try:
        phases.reached("connecting")  # the emulator starts, the clients connect
        with open_broker(plan.target, plan.emulator, protocol=plan.protocol,
                         targets=plan.targets,
                         expected_clients=len(plan.workers) + len(publish_nodes),
                         expected_messages=len(plan.tasks)) as broker:
            tag = scope or plan.run_id or uuid.uuid4().hex[:8]
            plan, targets, fallback = negotiated(plan, broker, f"aetherdiag-{tag}-mqtt-version",
                                                 on_fallback)
            with Fleet(targets[0], connect_timeout=plan.connect_timeout_s, seed=plan.seed,
                       label=broker.label, run_id=plan.run_id, targets=targets,
                       publish_nodes=publish_nodes, client_scope=scope,
                       publishers=max((t.publisher for t in plan.tasks), default=1),
                       backlog=broker.backlog) as fleet:
                coordinator = (None if shard is None else Coordinator(
                    targets[0], shard, connect_timeout=plan.connect_timeout_s))
                interrupted = False
                try:
                    if coordinator is not None:
                        coordinator.connect()
                    fleet.start(plan.workers)
                    if coordinator is not None:
                        coordinator.announce([w.name for w in plan.workers])
                        coordinator.wait_ready(plan.timeout_s)
                    broker.before_first_publish()
                    _publish_and_settle(plan, fleet, coordinator, on_progress)
                except KeyboardInterrupt:  # even while connecting: report what there is
                    interrupted = True
                    fleet.stop_clock()
                finally:
                    if coordinator is not None:
                        coordinator.close()
                started = time.time() - (time.monotonic() - fleet.rec.t0)
                result = fleet.result()
                if interrupted:
                    seen = set(result.published) | {t for t, _ in result.unsent}
                    never = tuple((t.task_id, "not sent: interrupted") for t in plan.tasks
                                  if t.task_id not in seen and _publishes(shard))
                    result = replace(result, interrupted=True, unsent=result.unsent + never)
                result = replace(result, timeout_s=plan.timeout_s,
                                 duration_s=round(result.duration_s, 3))
                if fallback is not None:
                    result = replace(result, mqtt5_refused=fallback.refusal,
                                     notes=(fallback.message(), *result.notes))
            return replace(result, emulator_stats=broker.stats()), started
    except KeyboardInterrupt:  # before the fleet was up: starting the emulator, negotiating
        return _interrupted_early(plan, shard), time.time()


def _interrupted_early(plan: WorkersPlan, shard: ShardSpec | None) -> RunResult:
    """The result of a run interrupted before any client connected: nothing was sent."""
    label = plan.target.display() if plan.target is not None else "emulator"
    return RunResult(
        target=label, workers=tuple(w.name for w in plan.workers), published=(),
        unsent=tuple((t.task_id, "not sent: interrupted") for t in plan.tasks)
        if _publishes(shard) else (),
        settled=False, interrupted=True, timeout_s=plan.timeout_s,
        notes=("interrupted before the workers connected",))


def _publishes(shard: ShardSpec | None) -> bool:
    return shard is None or shard.index == 1


def _publish_and_settle(plan: WorkersPlan, fleet: Fleet, coordinator: Coordinator | None,
                        on_progress: Callable[[int, int], None] | None) -> None:
    """Publish (unless another shard does) and wait for the deliveries to settle, all within
    ``plan.timeout_s``."""
    deadline = time.monotonic() + plan.timeout_s

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    if coordinator is None:
        phases.reached("publishing")
        fleet.publish(plan.tasks, rate=plan.rate, on_progress=on_progress,
                      timeout_s=plan.timeout_s)
        phases.reached("settling")
        fleet.settle(expected=len(plan.tasks), quiet_s=plan.quiet_s, timeout_s=left(),
                     on_progress=on_progress)
    elif coordinator.spec.index == 1:
        # this shard's workers get only their share: settle on quiet, not on a count; the
        # marker goes out once every publish is acknowledged (or the deadline passed)
        try:
            fleet.publish(plan.tasks, rate=plan.rate, on_progress=on_progress,
                          timeout_s=plan.timeout_s)
            fleet.settle(quiet_s=plan.quiet_s, timeout_s=left(), on_progress=on_progress)
        finally:
            coordinator.announce_published(fleet.published)
    else:
        coordinator.wait_published(left())
        fleet.wait(min(left(), max(plan.quiet_s, 0.5)))  # copies still on their way to us
        fleet.settle(quiet_s=plan.quiet_s, timeout_s=left(), on_progress=on_progress)
