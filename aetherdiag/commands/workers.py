"""``aetherdiag workers``: N real workers, a publisher, the delivery report and its exit code.

How this works: the parameters become ``aetherdiag.workers`` option groups; then options ->
``plan`` -> ``run`` -> ``judge`` -> emit -> exit code, the feature's own package doing the
work (docs/architecture.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from .. import interrupts, render
from ..emulator import FAULTS, STRATEGIES
from ..exitcodes import ExitCode
from ..harness import phases
from ..harness.target import TargetOptions
from ..workers import options as o
from ..workers.judge import judge
from ..workers.model import Planned
from ..workers.options import MAX_TASKS
from ..workers.plan import plan
from ..workers.publishing import MAX_PUBLISHERS
from ..workers.run import RunFailed, run, tidy
from . import common

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

_STRATEGY_HELP = ("Emulator dispatch strategy: " + ", ".join(STRATEGIES)
                  + " (see aetherdiag emulator serve --help).")
_FAULT_HELP = ("Emulator fault mode (repeatable): " + ", ".join(FAULTS)
               + " (see aetherdiag emulator serve --help).")

BROKERS_OPTION: Any = typer.Option(
    [], "--broker", "-b", metavar="URL",
    help="The broker: mqtt://, mqtts://, ws:// or wss:// (see Broker URLs below). Repeat it "
    "for the nodes of a cluster or bridged brokers (node 1 first): workers are spread round "
    "robin over them. Default: the embedded emulator on a free loopback port.")
NODES_OPTION: Any = typer.Option(
    None, "--nodes", metavar="N",
    help="Embedded emulator: an emulated cluster of N nodes (one listener each); workers are "
    "spread over them like over several --broker URLs.")
PLACE_OPTION: Any = typer.Option(
    [], "--place", metavar="WORKER=NODE",
    help="Put one worker on a node (1-based), e.g. worker-3=2 (repeatable; the others are "
    "spread round robin).")
PUBLISH_TO_OPTION: Any = typer.Option(
    "first", "--publish-to", metavar="first|each|N",
    help="Which endpoint publishes the tasks: the first, each in turn (task n on node "
    "((n-1) mod N)+1), or node N.")
PUBLISHERS_OPTION: Any = typer.Option(
    None, "--publishers", min=1, max=MAX_PUBLISHERS, metavar="N",
    help="Publishers per publishing node (publisher-1 ... publisher-N, each its own client "
    "id); task n goes to publisher ((n-1) mod N)+1. The report shows where each one's tasks "
    "went. Default 1.")
PUBLISHER_RECONNECT_OPTION: Any = typer.Option(
    False, "--publisher-reconnect",
    help="Each publisher sends every task over a new connection with a fresh client id "
    "(short-lived publishers: EMQX's round_robin restarts its turn for each).")
KEYS_OPTION: Any = typer.Option(
    None, "--keys", min=1, max=1_000_000, metavar="K",
    help="Put the tasks on K ordering keys, one topic each (task n on key ((n-1) mod K)+1: "
    "the topic's {task_id} or {n} becomes the key); hash_topic keeps a key on one worker.")
EXPECT_ORDER_OPTION: Any = typer.Option(
    False, "--expect-order",
    help="Fail (exit 6) when a worker gets a publisher's tasks out of the order sent, whatever "
    "the strategy (sticky, hash_clientid and hash_topic with --keys are held to their own, "
    "stronger promise); on --broker the strategy is unknown, so order is judged only with "
    "this.")
RECORD_OPTION: Any = typer.Option(
    None, "--record", metavar="FILE",
    help="Write the run's record (JSON Lines: plan, every delivery and event, end state) to "
    "FILE ('-': stdout, the report then goes only to --output). `aetherdiag report FILE` "
    "judges and renders it later, several shards' records as one run.")
SHARD_OPTION: Any = typer.Option(
    None, "--shard", metavar="I/N",
    help="Run the I-th of N slices of the workers (worker names stay global); the N shards "
    "meet through the --broker under test and shard 1 publishes once all are ready. Needs "
    "--broker and --run-id.")
RUN_ID_OPTION: Any = typer.Option(
    None, "--run-id", metavar="ID",
    help="The run's id (letters, digits, . _ -): the same for every shard of a run; topics "
    "and client ids use it. Default: a fresh one.")


def command(
    count: int = typer.Option(3, "--count", "-n", min=1, max=100_000,
                              help="Number of worker clients (worker-1 ... worker-N)."),
    tasks: int = typer.Option(9, "--tasks", "-t", min=1, max=MAX_TASKS,
                              help="Number of tasks to publish."),
    broker: list[str] = BROKERS_OPTION,
    nodes: int | None = NODES_OPTION,
    place_worker: list[str] = PLACE_OPTION,
    publish_to: str = PUBLISH_TO_OPTION,
    publishers: int | None = PUBLISHERS_OPTION,
    publisher_reconnect: bool = PUBLISHER_RECONNECT_OPTION,
    keys: int | None = KEYS_OPTION,
    expect_order: bool = EXPECT_ORDER_OPTION,
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
    record: Path | None = RECORD_OPTION,
    shard: str | None = SHARD_OPTION,
    run_id_given: str | None = RUN_ID_OPTION,
    debug: bool = common.DEBUG_OPTION,
) -> None:
    """Spawn COUNT workers on a shared subscription, publish TASKS tasks, show who got what."""
    options = o.WorkersOptions(
        load=o.LoadOptions(count=count, tasks=tasks, rate=rate, work_ms=work_ms,
                           work_jitter_ms=work_jitter_ms, slow_worker=tuple(slow_worker),
                           timeout=timeout, settle_ms=settle_ms, connect_timeout=connect_timeout),
        endpoints=o.EndpointOptions(brokers=tuple(broker), nodes=nodes, place=tuple(place_worker),
                                    publish_to=publish_to, tls=TargetOptions(
                                        ca_file, cert_file, key_file, insecure, password_env)),
        emulator=o.EmulatorOptions(strategy=strategy, faults=tuple(fault),
                                   group_strategies=tuple(group_strategy), seed=seed),
        topics=o.TopicOptions(union=union, job=job, task=task, context=context, action=action,
                              workgroup=workgroup, topic=topic, topic_filter=topic_filter,
                              group=group, plain=plain, topic_prefix=topic_prefix,
                              use_production_topics=use_production_topics),
        wire=o.WireOptions(profile=profile, qos=qos, mqtt=mqtt),
        judging=o.JudgeOptions(max_imbalance=max_imbalance, allow_redelivery=allow_redelivery),
        publish=o.PublishOptions(publishers=publishers, reconnect=publisher_reconnect,
                                 keys=keys, expect_order=expect_order),
        shard=o.ShardOptions(record=record, shard=shard, run_id=run_id_given),
        exec=o.ExecOptions(command=exec_command, reply_topic=reply_topic,
                           worker_field=worker_field, logs=logs, warmup=warmup,
                           ready_timeout=ready_timeout))
    planned = plan(options)
    common.check_output(output, records=[record] if record is not None else [])
    try:
        ran = run(planned, progress=not quiet)
    except RunFailed as exc:
        _failed(planned, exc, fmt, output)
    report = judge(planned, ran)
    if not planned.stdout_is_record or output is not None:  # else stdout holds the record
        with interrupts.deferred():  # a Ctrl-C now still leaves the whole report, then 130
            phases.reached("rendering")
            common.emit_report(report, fmt, output, quiet)
    tidy(planned, ran, report.exit_code)
    if report.interrupted:
        render.interrupted()
    raise typer.Exit(int(report.exit_code))


def _failed(planned: Planned, exc: RunFailed, fmt: render.Format,
            output: Path | None) -> NoReturn:
    """A run that failed once started: its failure report (JSON/JUnit with the error, unless
    stdout holds the record), then the one-line error and its code; with the log tail that
    explains it when there is one (``--exec``)."""
    if not planned.stdout_is_record or output is not None:
        common.emit_failure(planned.header.title, planned.where, exc, fmt, output)
    if not exc.detail:
        raise exc
    render.error(str(exc))
    for line in exc.detail[-10:]:
        print(f"  | {line}", file=sys.stderr)
    raise typer.Exit(int(exc.code)) from None


__all__ = ["EPILOG", "ExitCode", "command"]
