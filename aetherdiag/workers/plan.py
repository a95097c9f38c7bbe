"""``plan(options) -> Planned``: every worker and task spec of a ``workers`` run, its setup rows
and its record header, built once from the checked options.

How this works: ``options.check()`` first (usage errors, exit 2), then one pass that derives
everything the runners and the judge read: the layout (scoped to the run on a real broker
unless ``--use-production-topics``), the endpoints and which node each worker and task uses,
the worker and task specs (this shard's slice of the workers with ``--shard``), the timeout,
and the header the record and the report share (workers, expectations, title, setup rows,
plan). ``--exec`` gets an ``ExecPlan`` instead of the fleet's ``WorkersPlan``. Nothing here
connects or writes; the only values not derived from the options are a fresh run id and seed
when none is given (``--run-id``, ``--seed``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from typing import Any

from ..analysis import Expectations
from ..exitcodes import UsageError
from ..harness.model import BrokerTarget, EmulatorSettings, TaskSpec, WorkerSpec
from ..record import RunHeader, Shard
from ..wire.layout import Layout
from ..wire.profile import Profile, check_layout, replies_for
from .exec.model import ExecPlan
from .model import Planned, WorkersPlan, default_timeout
from .options import WorkersOptions
from .placement import Placement
from .publishing import Publishing
from .shard import ShardSpec, slice_of

TITLE = "aetherdiag workers"
EXEC_TITLE = "aetherdiag workers --exec"


def plan(options: WorkersOptions) -> Planned:
    """The checked options -> the run (module doc); ``UsageError`` (exit 2) for a usage error."""
    options.check()
    o = options
    run_id = o.shard.run_id or uuid.uuid4().hex[:8]
    targets = o.endpoints.targets(o.wire.protocol)
    where = ", ".join(t.display() for t in targets) or "emulator"
    pubs = o.publish.publishing(exec_command=o.exec.command, profile=o.wire.profile)
    clients = o.load.count + o.endpoints.count * pubs.publishers - 1
    if o.exec.command is not None:
        return Planned(header=_exec_header(o, run_id), where=where,
                       exec=_exec_plan(o, targets[0] if targets else None, run_id),
                       clients=clients, embedded=not targets)
    layout, warnings = o.topics.layout(), tuple[str, ...]()
    if targets and o.topics.use_production_topics:
        warnings = (f"--use-production-topics: {o.load.tasks} fake task(s) go to "
                    f"{layout.topic('task-N', 0)} and the workers join "
                    f"{layout.subscription(plain=o.topics.plain)} on {where}; live workers "
                    "will receive them and this run will take live tasks",)
    elif targets:
        layout = o.topics.scoped(layout, run_id)
    placement = o.endpoints.placement(o.load.count)
    specs = _worker_specs(o, layout, placement)
    tasks = _task_specs(o, layout, placement, pubs)
    shard = o.shard.spec(brokers=bool(o.endpoints.brokers) and o.endpoints.nodes is None,
                         count=o.load.count, exec_command=None)
    mine = my_workers(specs, shard)
    groups = o.emulator.groups()
    fleet = WorkersPlan(
        target=targets[0] if targets else None, targets=targets,
        emulator=EmulatorSettings(strategy=o.emulator.strategy, faults=o.emulator.faults,
                                  group_strategies=tuple(groups.items()), seed=o.emulator.seed,
                                  nodes=o.endpoints.nodes or 1),
        workers=mine, tasks=tasks, rate=o.load.rate,
        timeout_s=o.load.timeout if o.load.timeout is not None else default_timeout(
            o.load.tasks, o.load.rate,
            deliveries=o.load.tasks * o.load.count if o.fanout else o.load.tasks),
        quiet_s=o.load.settle_ms / 1000.0, connect_timeout_s=o.load.connect_timeout,
        protocol=o.wire.protocol,
        seed=o.emulator.seed if o.emulator.seed is not None else random.randrange(1 << 30),
        run_id=run_id, negotiate=bool(targets) and not o.wire.pinned)
    header = _header(o, fleet, specs, layout, placement, pubs, where)
    if shard is not None:
        header = _sharded(header, shard, mine)
    return Planned(header=header, where=where, fleet=fleet, shard=shard, record=o.shard.record,
                   warnings=warnings, clients=clients, embedded=not targets)


def my_workers(specs: tuple[WorkerSpec, ...], shard: ShardSpec | None) -> tuple[WorkerSpec, ...]:
    """The workers this process runs: all of them, or its shard's slice."""
    if shard is None:
        return specs
    return tuple(specs[i - 1] for i in slice_of(len(specs), shard.index, shard.count))


def _worker_specs(o: WorkersOptions, layout: Layout,
                  placement: Placement) -> tuple[WorkerSpec, ...]:
    slow = o.load.slow()
    subscription = layout.subscription(plain=o.topics.plain)
    return tuple(
        WorkerSpec(name=f"worker-{i}", subscriptions=(subscription,), qos=o.wire.task_qos,
                   protocol=o.wire.protocol, work_ms=slow.get(f"worker-{i}", o.load.work_ms),
                   work_jitter_ms=o.load.work_jitter_ms, profile=o.wire.profile,
                   node=placement.worker_nodes[i - 1])
        for i in range(1, o.load.count + 1))


def _task_specs(o: WorkersOptions, layout: Layout, placement: Placement,
                pubs: Publishing) -> tuple[TaskSpec, ...]:
    return tuple(
        TaskSpec(task_id=f"task-{n}", topic=pubs.topic(layout, f"task-{n}", n),
                 qos=o.wire.task_qos, profile=o.wire.profile, node=placement.task_node(n),
                 publisher=pubs.publisher_of(n), key=pubs.key_of(n),
                 fresh_connection=pubs.reconnect)
        for n in range(1, o.load.tasks + 1))


def _header(o: WorkersOptions, fleet: WorkersPlan, specs: tuple[WorkerSpec, ...],
            layout: Layout, placement: Placement, pubs: Publishing, where: str) -> RunHeader:
    """The record's header and the report's setup rows, from the values the run uses."""
    groups = o.emulator.groups()
    subscription = layout.subscription(plain=o.topics.plain)
    nodes, qos, mqtt, tasks = placement.nodes, o.wire.task_qos, o.wire.protocol, o.load.tasks
    task_topic = layout.topic("task-N", 0)
    context: tuple[tuple[str, str], ...] = (
        ("workers", str(o.load.count)), ("subscription", subscription),
        ("tasks", f"{tasks} to {task_topic if tasks else '-'}"),
        ("qos", str(qos)), ("mqtt", mqtt),
    ) + ((("nodes", str(nodes)), ("publish to", placement.describe()))
         if nodes > 1 else ()) + pubs.context()
    record: dict[str, Any] = {
        "target": where, "subscription": subscription, "task_topic": task_topic, "qos": qos,
        "mqtt": mqtt, "profile": o.wire.profile, "strategy": o.emulator.strategy,
        "faults": list(o.emulator.faults), "group_strategies": dict(groups),
        "rate": o.load.rate, "timeout_s": fleet.timeout_s, "settle_ms": o.load.settle_ms,
        "nodes": nodes, "publish_to": placement.describe(), **pubs.plan()}
    strategy = None if fleet.target is not None else groups.get(layout.group,
                                                                o.emulator.strategy)
    expect = pubs.expectations(_expectations(o), strategy, o.emulator.faults, o.topics.plain)
    assert fleet.run_id is not None
    return RunHeader(run_id=fleet.run_id, seed=fleet.seed, workers=specs, tasks=tasks,
                     expect=expect, title=TITLE, context=context, plan=record)


def _sharded(header: RunHeader, shard: ShardSpec, mine: tuple[WorkerSpec, ...]) -> RunHeader:
    return replace(header, shard=Shard(index=shard.index, count=shard.count,
                                       workers=tuple(w.name for w in mine)))


def _expectations(o: WorkersOptions) -> Expectations:
    return Expectations(max_imbalance=o.judging.max_imbalance,
                        allow_redelivery=o.judging.allow_redelivery)


def _exec_plan(o: WorkersOptions, target: BrokerTarget | None, run_id: str) -> ExecPlan:
    """``--exec``: the team's own processes on the layout as given (their topics)."""
    e, layout = o.exec, o.topics.layout()
    assert e.command is not None
    chosen: Profile = "aethermagic" if o.wire.library else "generic"
    check_layout(chosen, layout)
    replies = replies_for(chosen, layout, e.reply_topic, e.worker_field)
    _check_replies(target, replies.kind, replies.names_worker)
    groups = o.emulator.groups()
    return ExecPlan(
        command=e.command, count=o.load.count, target=target,
        emulator=EmulatorSettings(strategy=o.emulator.strategy, faults=o.emulator.faults,
                                  group_strategies=tuple(groups.items()), seed=o.emulator.seed),
        layout=layout, profile=chosen, replies=replies,
        tasks=tuple(TaskSpec(task_id=f"task-{n}", topic=layout.topic(f"task-{n}", n),
                             qos=o.wire.task_qos, profile=chosen)
                    for n in range(1, o.load.tasks + 1)),
        qos=o.wire.task_qos, rate=o.load.rate,
        timeout_s=o.load.timeout if o.load.timeout is not None else default_timeout(
            o.load.tasks, o.load.rate),
        ready_timeout_s=e.ready_timeout,
        warmup_s=e.warmup if e.warmup is not None else (15.0 if o.wire.library else 3.0),
        quiet_s=max(0.3, o.load.settle_ms / 1000.0), connect_timeout_s=o.load.connect_timeout,
        protocol=o.wire.protocol, seed=o.emulator.seed or 0, run_id=run_id, logs_dir=e.logs)


def _check_replies(target: BrokerTarget | None, kind: str, names_worker: bool) -> None:
    if target is not None and kind == "none":
        raise UsageError("--exec on a real broker needs a reply channel: without one nothing your "
                         "workers do can be seen there (only the embedded emulator sees "
                         "deliveries); give --reply-topic TEMPLATE --worker-field POINTER, or drop "
                         "--broker to judge deliveries on the emulator")
    if target is not None and kind == "template" and not names_worker:
        raise UsageError("--reply-topic on a real broker needs --worker-field: only the embedded "
                         "emulator sees which connection published a reply")


def _exec_header(o: WorkersOptions, run_id: str) -> RunHeader:
    """``--exec``'s header: the setup rows known before the run (the judge adds one row per
    process, and where the logs are)."""
    e, layout = o.exec, o.topics.layout()
    chosen = "aethermagic" if o.wire.library else "generic"
    replies = ([("replies", f"{e.reply_topic}" + (
        f" (worker: {e.worker_field})" if e.worker_field else ""))] if e.reply_topic else [])
    context = (("workers", f"{o.load.count} x {e.command}"), ("profile", chosen), *replies,
               ("tasks", f"{o.load.tasks} to {layout.topic('task-N', 0)}"),
               ("qos", str(o.wire.task_qos)), ("mqtt", o.wire.protocol))
    return RunHeader(run_id=run_id, seed=o.emulator.seed or 0, workers=(), tasks=o.load.tasks,
                     expect=_expectations(o), title=EXEC_TITLE, context=context)
