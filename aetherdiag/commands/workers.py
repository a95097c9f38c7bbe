"""``aetherdiag workers``: N real workers, a publisher, the delivery report and its exit code."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import replace
from pathlib import Path

import typer

from .. import interrupts, render
from ..analysis import Expectations
from ..emulator import FAULTS, STRATEGIES
from ..emulator.sharing import UnknownName, check_fault, check_strategy
from ..exitcodes import Abort, ExitCode
from ..harness import phases
from ..harness.model import BrokerTarget, EmulatorSettings, TaskSpec, WorkerSpec
from ..harness.negotiate import Negotiated
from ..layout import Layout, LayoutError, aethermagic, generic
from ..mqtt.protocol import parse_protocol
from ..record import Failure, RunHeader, Shard, judge
from ..wire.profile import PROFILES
from . import common
from . import workers_publish as publish
from . import workers_shard as sharding
from .emulator import parse_group_strategies
from .placement import (
    BROKERS_OPTION,
    NODES_OPTION,
    PLACE_OPTION,
    PUBLISH_TO_OPTION,
    node_count,
    place,
)

EPILOG = """Examples:

  aetherdiag workers --count 3 --tasks 9
  aetherdiag workers --fault share-fanout          # the seed bug: exit 1
  aetherdiag workers --plain -b mqtt://localhost   # the bug on any broker
  aetherdiag workers --topic 'jobs/{task_id}' --group pool --qos 2
  aetherdiag workers -b mqtt://node1 -b mqtt://node2 --count 4   # a cluster
  aetherdiag workers --nodes 3 --count 6 --fault cluster-node-local  # exit 1
  aetherdiag workers --record run.jsonl && aetherdiag report run.jsonl
  aetherdiag workers -b mqtt://broker --count 6 --shard 2/3 --run-id n42 \\
      --record shard-2.jsonl                       # one of 3 hosts

On a real broker (--broker) the run uses its own topics and group under aetherdiag/<run id>/
(see --topic-prefix), so it never meets a live pool; --use-production-topics opts out.

Exit codes: 0 healthy, 1 duplicates, 2 usage, 3 broker unreachable or lost, 4 missing,
5 imbalance, 6 out of order (where the strategy or --expect-order promises order),
7 incomplete (tasks not sent or not finished, --timeout reached), 8 internal error,
130 interrupted.
"""

MAX_TASKS = 1_000_000
MAX_FANOUT_DELIVERIES = 20_000_000  # --plain / share-fanout: every worker gets every task

_STRATEGY_HELP = ("Emulator dispatch strategy: " + ", ".join(STRATEGIES)
                  + " (see aetherdiag emulator serve --help).")
_FAULT_HELP = ("Emulator fault mode (repeatable): " + ", ".join(FAULTS)
               + " (see aetherdiag emulator serve --help).")


def command(
    count: int = typer.Option(3, "--count", "-n", min=1, max=100_000,
                              help="Number of worker clients (worker-1 ... worker-N)."),
    tasks: int = typer.Option(9, "--tasks", "-t", min=1, max=MAX_TASKS,
                              help="Number of tasks to publish."),
    broker: list[str] = BROKERS_OPTION,
    nodes: int | None = NODES_OPTION,
    place_worker: list[str] = PLACE_OPTION,
    publish_to: str = PUBLISH_TO_OPTION,
    publishers: int | None = publish.PUBLISHERS_OPTION,
    publisher_reconnect: bool = publish.PUBLISHER_RECONNECT_OPTION,
    keys: int | None = publish.KEYS_OPTION,
    expect_order: bool = publish.EXPECT_ORDER_OPTION,
    mqtt: str | None = common.mqtt_option(
        "Protocol of every client, pinned (default: 5, and 3.1.1 when a --broker refuses 5; "
        "3.1.1 with --profile aethermagic)"),
    exec_command: str | None = typer.Option(
        None, "--exec", metavar="'CMD ...'",
        help="Run COUNT copies of your own worker command instead of the built-in workers. "
        "Split like a shell; {name} {index} {host} {port} {url} are filled in, and "
        "AETHERDIAG_WORKER, AETHERDIAG_BROKER_URL, MQTT_HOST, MQTT_PORT are set."),
    profile: str = typer.Option(
        "generic", "--profile",
        help="Wire format of the tasks: generic (aetherdiag's JSON) or aethermagic (the "
        "AetherMagic library's perform/status/complete messages)."),
    reply_topic: str | None = typer.Option(
        None, "--reply-topic", metavar="TEMPLATE",
        help="--exec, generic profile: where your workers answer a task, with {task_id} as "
        "one level, e.g. 'results/{task_id}'. Each reply counts as handled."),
    worker_field: str | None = typer.Option(
        None, "--worker-field", metavar="POINTER",
        help="--exec: the JSON pointer to the field naming the worker in a reply, e.g. "
        "/worker (needed on a real broker with --reply-topic)."),
    logs: Path | None = typer.Option(
        None, "--logs", metavar="DIR",
        help="--exec: keep every worker's output in DIR/worker-N.log (by default the logs are "
        "kept only when the run fails)."),
    warmup: float | None = typer.Option(
        None, "--warmup", min=0, max=600, callback=common.finite,
        help="--exec on a real broker: seconds the workers get to subscribe before tasks go "
        "out (default 3; with --profile aethermagic at most 15, ended as soon as every worker "
        "announced itself idle). On the emulator the tool sees when they have subscribed."),
    ready_timeout: float = typer.Option(
        20.0, "--ready-timeout", min=0.1, max=600, callback=common.finite,
        help="--exec on the emulator: seconds every worker gets to subscribe to the task "
        "topics."),
    ca_file: Path | None = common.CA_FILE_OPTION,
    cert_file: Path | None = common.CERT_FILE_OPTION,
    key_file: Path | None = common.KEY_FILE_OPTION,
    insecure: bool = common.INSECURE_OPTION,
    password_env: str = common.PASSWORD_ENV_OPTION,
    strategy: str = typer.Option(
        "round_robin", "--strategy", "-s",
        help=_STRATEGY_HELP),
    group_strategy: list[str] = typer.Option(
        [], "--group-strategy", help="Emulator per-group strategy GROUP=STRATEGY (repeatable)."),
    fault: list[str] = typer.Option(
        [], "--fault", "-f", help=_FAULT_HELP),
    union: str = typer.Option("production", help="AetherMagic union."),
    job: str = typer.Option("engine", help="AetherMagic job."),
    task: str = typer.Option("process-data", help="AetherMagic task."),
    context: str = typer.Option("batch1", help="AetherMagic context."),
    action: str = typer.Option("perform", help="AetherMagic action."),
    workgroup: str = typer.Option("workers", help="AetherMagic workgroup (part of the group)."),
    topic: str | None = typer.Option(
        None, "--topic", metavar="TEMPLATE",
        help="Generic layout: task topic template with {task_id} or {n}, e.g. 'jobs/{task_id}'."),
    topic_filter: str | None = typer.Option(
        None, "--filter", help="Generic layout: worker filter (default: the template with + ).",
    ),
    group: str = typer.Option("workers", "--group", help="Generic layout: share group name."),
    plain: bool = typer.Option(False, "--plain",
                               help="Subscribe without $share (reproduces the bug anywhere)."),
    topic_prefix: str = typer.Option(
        "aetherdiag", "--topic-prefix", metavar="PREFIX",
        help="With --broker: topics go under PREFIX/<run id>/ and the group gets a -<run id> "
        "suffix, so a live pool is never touched (pick a PREFIX your broker's ACL allows)."),
    use_production_topics: bool = typer.Option(
        False, "--use-production-topics",
        help="With --broker: publish to and join the real topics and group. Live workers "
        "will get these fake tasks and this run will take live tasks."),
    qos: int | None = typer.Option(None, "--qos", "-q", min=0, max=2,
                                   help="QoS of tasks and workers (default 1; 0 with --profile "
                                   "aethermagic, as the library)."),
    rate: float | None = typer.Option(None, "--rate", min=0.001, callback=common.finite,
                                      help="Tasks per second (default: as fast as possible)."),
    work_ms: float = typer.Option(0.0, "--work-ms", min=0, max=3_600_000, callback=common.finite,
                                  help="Processing time per task before the worker acks."),
    work_jitter_ms: float = typer.Option(0.0, "--work-jitter-ms", min=0, max=3_600_000,
                                         callback=common.finite,
                                         help="Random extra processing time, 0..J ms."),
    slow_worker: list[str] = typer.Option(
        [], "--slow-worker", metavar="NAME=MS",
        help="Processing time for one worker, e.g. worker-2=200 (repeatable)."),
    max_imbalance: float = typer.Option(1.5, "--max-imbalance", min=1.0, callback=common.finite,
                                        help="Largest max/min split allowed."),
    allow_redelivery: bool = typer.Option(
        False, "--allow-redelivery",
        help="Accept re-sends caused by a lost connection: a re-dispatch after a member loss "
        "is not a duplicate, a DUP resend of a copy a reconnected member never finished is "
        "not a repeat (a DUP redelivery with no connection lost still is)."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, max=86_400, callback=common.finite,
        help="Upper bound in seconds on publishing and waiting, --rate pacing included "
        "(default: 30, plus the seconds --rate pacing needs, plus one per 5,000 expected "
        "deliveries: COUNT x TASKS with --plain). A run it cuts off is incomplete (exit 7)."),
    settle_ms: float = typer.Option(300.0, "--settle-ms", min=0, max=60_000, callback=common.finite,
                                    help="Quiet period that ends the run once all is acked."),
    connect_timeout: float = typer.Option(5.0, "--connect-timeout", min=0.1, max=600,
                                          callback=common.finite,
                                          help="Seconds to wait for the broker."),
    fmt: render.Format = typer.Option(render.Format.table, "--format",
                                      help="table, json, junit, html (one "
                                      "self-contained page) or markdown."),
    output: Path | None = common.OUTPUT_OPTION,
    quiet: bool = typer.Option(False, "--quiet",
                               help="No progress bar; with --format table, no report either."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for random choices (jitter, "
                                    "emulator random/sticky strategies)."),
    record: Path | None = sharding.RECORD_OPTION,
    shard: str | None = sharding.SHARD_OPTION,
    run_id_given: str | None = sharding.RUN_ID_OPTION,
    debug: bool = common.DEBUG_OPTION,
) -> None:
    """Spawn COUNT workers on a shared subscription, publish TASKS tasks, show who got what."""
    try:
        for name in fault:
            check_fault(name)
        check_strategy(strategy)
        groups = parse_group_strategies(group_strategy)
        for name in groups.values():
            check_strategy(name)
    except UnknownName as exc:
        raise Abort(str(exc)) from None
    if broker and (fault or strategy != "round_robin" or groups):
        raise Abort("--fault, --strategy and --group-strategy configure the embedded emulator; "
                    "they cannot be used with --broker")
    if profile not in PROFILES:
        raise Abort(f"--profile {profile!r}: choose {' or '.join(PROFILES)}")
    library = profile == "aethermagic"
    pubs = publish.publishing(publishers, publisher_reconnect, keys, expect_order,
                              exec_command=exec_command, profile=profile)
    pinned = mqtt is not None or library  # --mqtt (or the library's 3.1.1): no fallback
    protocol = parse_protocol(mqtt or ("3.1.1" if library else "5"))  # checked by the callback
    mqtt = protocol
    qos = qos if qos is not None else (0 if library else 1)
    if exec_command is not None:
        builtin = [flag for flag, given in (
            ("--plain", plain), ("--work-ms", work_ms), ("--work-jitter-ms", work_jitter_ms),
            ("--slow-worker", slow_worker)) if given]
        if builtin:
            raise Abort(f"{', '.join(builtin)} configure the built-in workers; they cannot be "
                        "used with --exec (your workers decide how they subscribe and work)")
    else:
        for flag, given in (("--logs", logs), ("--reply-topic", reply_topic),
                            ("--worker-field", worker_field)):
            if given is not None:
                raise Abort(f"{flag} needs --exec (it is about your own worker processes)")
    shard_spec = sharding.shard_setup(shard, run_id_given, brokers=broker, count=count,
                                      exec_command=exec_command, nodes=nodes)
    if record is not None and exec_command is not None:
        raise Abort("--record writes the built-in workers' run; it cannot be used with --exec")
    n_nodes = node_count(broker, nodes)
    placement = place(count, n_nodes, place_worker, publish_to,
                      endpoints="brokers" if broker else "emulator" if nodes is None
                      else "cluster")
    if exec_command is not None and n_nodes > 1:
        raise Abort("--exec runs against one endpoint; several --broker URLs and --nodes "
                    "need the built-in workers")
    tls = common.TargetOptions(ca_file, cert_file, key_file, insecure, password_env)
    targets = tuple(tls.target(url, mqtt) for url in broker)
    target: BrokerTarget | None = targets[0] if targets else None
    where = ", ".join(t.display() for t in targets) or "emulator"
    if not targets:
        tls.refuse_tls()
    try:
        layout: Layout = (
            generic(topic, topic_filter, group) if topic is not None
            else aethermagic(union=union, job=job, task=task, context=context, action=action,
                             workgroup=workgroup)
        )
    except LayoutError as exc:
        raise Abort(str(exc)) from None
    if topic is None and topic_filter is not None:
        raise Abort("--filter needs --topic (the generic layout)")
    unknown = [g for g in groups if plain or g != layout.group]
    if unknown and exec_command is None:  # --exec: the workers choose their own groups
        joined = "no group (--plain)" if plain else f"only group {layout.group!r}"
        raise Abort(f"--group-strategy {unknown[0]}={groups[unknown[0]]}: no worker of this "
                    f"run joins group {unknown[0]!r} (they join {joined}), so it would "
                    "change nothing")
    fanout = plain or "share-fanout" in fault  # every worker gets every task
    if fanout and count * tasks > MAX_FANOUT_DELIVERIES:
        raise Abort(f"--count {count} x --tasks {tasks}: with every worker getting every task "
                    f"that is {count * tasks:,} deliveries to record, above the "
                    f"{MAX_FANOUT_DELIVERIES:,} one run keeps in memory")
    common.check_output(output, records=[record] if record is not None else [])
    sharding.check_record(record)
    _check_fd_limit(count + n_nodes * pubs.publishers - 1, embedded=target is None)
    run_id = run_id_given or uuid.uuid4().hex[:8]
    if exec_command is not None:
        if target is not None and not use_production_topics:
            raise Abort("--exec with --broker publishes to the topics your workers listen on; "
                        "add --use-production-topics to confirm (on a shared broker, point "
                        "your workers and --union or --topic at a test tree first)")
        from .workers_exec import run_exec_command

        run_exec_command(
            command=exec_command, count=count, tasks=tasks, target=target, layout=layout,
            profile=profile, qos=qos, protocol=protocol, strategy=strategy, faults=fault,
            groups=groups, seed=seed, rate=rate, timeout=timeout, settle_ms=settle_ms,
            connect_timeout=connect_timeout, ready_timeout=ready_timeout,
            warmup=warmup if warmup is not None else (15.0 if library else 3.0),
            reply_topic=reply_topic, worker_field=worker_field,
            logs=logs, max_imbalance=max_imbalance, allow_redelivery=allow_redelivery,
            fmt=fmt, output=output, quiet=quiet, run_id=run_id)
    if target is not None:
        if use_production_topics:
            render.warning(
                f"--use-production-topics: {tasks} fake task(s) go to "
                f"{layout.topic('task-N', 0)} and the workers join "
                f"{layout.subscription(plain=plain)} on {where}; live workers "
                "will receive them and this run will take live tasks")
        else:
            try:
                layout = layout.scoped(topic_prefix, run_id)
            except LayoutError as exc:
                raise Abort(str(exc)) from None

    slow = _parse_slow(slow_worker, count)
    subscription = layout.subscription(plain=plain)
    specs = tuple(
        WorkerSpec(name=f"worker-{i}", subscriptions=(subscription,), qos=qos, protocol=protocol,
                   work_ms=slow.get(f"worker-{i}", work_ms), work_jitter_ms=work_jitter_ms,
                   profile=profile, node=placement.worker_nodes[i - 1])
        for i in range(1, count + 1)
    )
    task_specs = tuple(
        TaskSpec(task_id=f"task-{n}", topic=pubs.topic(layout, f"task-{n}", n), qos=qos,
                 profile=profile, node=placement.task_node(n), publisher=pubs.publisher_of(n),
                 key=pubs.key_of(n), fresh_connection=pubs.reconnect)
        for n in range(1, tasks + 1))
    from ..workload import WorkersPlan, default_timeout, run_shard, run_workers

    mine = sharding.my_workers(specs, shard_spec)
    plan = WorkersPlan(
        target=target, targets=targets,
        emulator=EmulatorSettings(strategy=strategy, faults=tuple(fault),
                                  group_strategies=tuple(groups.items()), seed=seed,
                                  nodes=nodes or 1),
        workers=mine, tasks=task_specs, rate=rate,
        timeout_s=timeout if timeout is not None else default_timeout(
            tasks, rate, deliveries=tasks * count if fanout else tasks),
        quiet_s=settle_ms / 1000.0, connect_timeout_s=connect_timeout, protocol=protocol,
        seed=seed if seed is not None else random.randrange(1 << 30), run_id=run_id,
        negotiate=target is not None and not pinned,
    )
    header = RunHeader(
        run_id=run_id, seed=plan.seed, workers=specs, tasks=tasks,
        expect=pubs.expectations(
            Expectations(max_imbalance=max_imbalance, allow_redelivery=allow_redelivery),
            None if target is not None else groups.get(layout.group, strategy), fault, plain),
        title="aetherdiag workers", context=(
            ("workers", str(count)), ("subscription", subscription),
            ("tasks", f"{tasks} to {layout.topic('task-N', 0) if tasks else '-'}"),
            ("qos", str(qos)), ("mqtt", mqtt),
        ) + ((("nodes", str(n_nodes)), ("publish to", placement.describe()))
             if n_nodes > 1 else ()) + pubs.context(),
        plan={"target": where, "subscription": subscription,
              "task_topic": layout.topic("task-N", 0), "qos": qos, "mqtt": mqtt,
              "profile": profile, "strategy": strategy, "faults": list(fault),
              "group_strategies": dict(groups), "rate": rate, "timeout_s": plan.timeout_s,
              "settle_ms": settle_ms, "nodes": n_nodes, "publish_to": placement.describe(),
              **pubs.plan()},
        shard=None if shard_spec is None else Shard(
            index=shard_spec.index, count=shard_spec.count,
            workers=tuple(w.name for w in mine)),
    )
    def fell_back(found: Negotiated) -> None:  # before any worker connects
        nonlocal header
        render.warning(found.message())
        header = _with_protocol(header, found)

    try:
        with render.progress(tasks, "publishing", enabled=not quiet) as update:
            if shard_spec is None:
                result = run_workers(plan, on_progress=update, on_fallback=fell_back)
            else:
                result, started = run_shard(plan, shard_spec, on_progress=update,
                                            on_fallback=fell_back)
                header = replace(header, started_unix=started)
    except Abort as exc:
        sharding.write(record, header, None, Failure(message=str(exc), code=exc.code))
        if record is None or str(record) != "-" or output is not None:
            common.emit_failure("aetherdiag workers", where, exc, fmt, output)
        raise
    report = (judge(header, result) if shard_spec is None else sharding.shard_report(
        header, result, shard_spec, mine, [t.task_id for t in task_specs]))
    try:
        sharding.write(record, header, result)
    except Abort as exc:  # the run is judged all the same: the report says the record is lost
        render.warning(str(exc))
        report = common.not_recorded(report, str(exc))
    if record is None or str(record) != "-" or output is not None:  # stdout holds the record
        with interrupts.deferred():  # a Ctrl-C now still leaves the whole report, then 130
            phases.reached("rendering")
            common.emit_report(report, fmt, output, quiet)
    if report.interrupted:
        render.interrupted()
    raise typer.Exit(int(report.exit_code))


__all__ = ["EPILOG", "ExitCode", "command"]


def _with_protocol(header: RunHeader, used: Negotiated) -> RunHeader:
    """The header of a run that fell back to ``used.protocol``: its ``mqtt`` row says so
    (``3.1.1 (the broker refused 5.0)``), the plan and the workers name the version used."""
    context = tuple((key, used.label() if key == "mqtt" else value)
                    for key, value in header.context)
    return replace(header, context=context,
                   plan={**header.plan, "mqtt": used.protocol, "mqtt5_refused": used.refusal},
                   workers=tuple(replace(w, protocol=used.protocol, session_expiry=0)
                                 for w in header.workers))


def _parse_slow(values: list[str], count: int) -> dict[str, float]:
    """``--slow-worker worker-2=200`` -> {"worker-2": 200.0}."""
    out: dict[str, float] = {}
    for value in values:
        name, sep, ms = value.partition("=")
        try:
            delay = float(ms)
        except ValueError:
            delay = -1.0
        if not sep or not math.isfinite(delay) or not 0 <= delay <= 3_600_000:
            raise Abort(f"--slow-worker {value!r}: expected NAME=MS, e.g. worker-2=200")
        names = {f"worker-{i}" for i in range(1, count + 1)}
        if name not in names:
            raise Abort(f"--slow-worker {value!r}: no worker named {name!r} "
                        f"(workers are worker-1 ... worker-{count})")
        out[name] = delay
    return out


def _check_fd_limit(count: int, *, embedded: bool) -> None:
    """Enough open files for every client socket (and the emulator's end of each when it runs
    in this process), or a usage error now instead of a failure half-way through connecting."""
    from ..harness.embedded import ensure_fd_limit, open_file_limit

    needed = (count + 1) * (2 if embedded else 1) + 16
    ensure_fd_limit(needed)
    limit = open_file_limit()
    if limit is not None and limit < needed:
        raise Abort(f"--count {count}: needs about {needed} open files, but the limit is "
                    f"{limit}; raise it (ulimit -n {needed}) or run fewer workers")
