"""``aetherdiag.workers.plan``: plans built straight from option groups, with no broker and no
CliRunner. What the run will do (specs, topics, timeout, header) is read off the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from aetherdiag.exitcodes import DiagError, ExitCode, UsageError
from aetherdiag.harness.target import TargetOptions
from aetherdiag.workers.model import DELIVERIES_PER_SECOND, default_timeout
from aetherdiag.workers.options import (
    EmulatorOptions,
    EndpointOptions,
    ExecOptions,
    LoadOptions,
    PublishOptions,
    ShardOptions,
    TopicOptions,
    WireOptions,
    WorkersOptions,
    parse_group_strategies,
    parse_pairs,
)
from aetherdiag.workers.plan import plan


def options(**groups: object) -> WorkersOptions:
    return WorkersOptions(shard=ShardOptions(run_id="r1"), **groups)  # type: ignore[arg-type]


def usage_error(opts: WorkersOptions) -> str:
    with pytest.raises(DiagError) as raised:  # a usage error carries its code: 2
        plan(opts)
    assert raised.value.exit_code == ExitCode.USAGE
    return str(raised.value)


def test_the_defaults_plan_three_workers_and_nine_tasks_on_the_emulator() -> None:
    planned = plan(options(emulator=EmulatorOptions(seed=7)))
    assert planned.runner == "fleet" and planned.where == "emulator" and planned.embedded
    fleet = planned.fleet
    assert fleet is not None and fleet.target is None and not fleet.negotiate
    assert [w.name for w in fleet.workers] == ["worker-1", "worker-2", "worker-3"]
    sub = "$share/production_engine_workers/production/engine/process-data/batch1/+/perform"
    assert {w.subscriptions for w in fleet.workers} == {(sub,)}
    assert [t.task_id for t in fleet.tasks] == [f"task-{n}" for n in range(1, 10)]
    assert fleet.tasks[0].topic == "production/engine/process-data/batch1/task-1/perform"
    assert {(t.qos, t.node, t.publisher) for t in fleet.tasks} == {(1, 1, 1)}
    assert fleet.protocol == "5" and fleet.seed == 7 and fleet.run_id == "r1"
    assert fleet.timeout_s == pytest.approx(default_timeout(9, None))
    header = planned.header
    assert header.workers == fleet.workers and header.tasks == 9
    assert header.title == "aetherdiag workers"
    assert dict(header.context)["subscription"] == sub
    assert header.plan["task_topic"] == "production/engine/process-data/batch1/task-N/perform"
    assert header.expect.max_imbalance == 1.5 and not header.expect.order_check


def test_plain_subscribes_without_share_and_grows_the_timeout_with_the_fan_out() -> None:
    load = LoadOptions(count=10, tasks=1000)
    planned = plan(options(load=load, topics=TopicOptions(plain=True)))
    assert planned.fleet is not None
    assert {w.subscriptions for w in planned.fleet.workers} == {
        ("production/engine/process-data/batch1/+/perform",)}
    assert planned.fleet.timeout_s == pytest.approx(
        30 + 10 * 1000 / DELIVERIES_PER_SECOND)
    assert planned.header.expect.order == "none"


def test_share_fanout_grows_the_timeout_like_plain() -> None:
    load = LoadOptions(count=50, tasks=2000)
    fanout = plan(options(load=load, emulator=EmulatorOptions(faults=("share-fanout",))))
    healthy = plan(options(load=load))
    assert fanout.fleet is not None and healthy.fleet is not None
    assert fanout.fleet.timeout_s - healthy.fleet.timeout_s == pytest.approx(
        (50 * 2000 - 2000) / DELIVERIES_PER_SECOND)
    assert fanout.fleet.emulator.faults == ("share-fanout",)


def test_publishers_and_keys_route_the_tasks() -> None:
    planned = plan(options(publish=PublishOptions(publishers=2, keys=3),
                           topics=TopicOptions(topic="jobs/{task_id}"), load=LoadOptions(tasks=6)))
    assert planned.fleet is not None
    routed = [(t.task_id, t.topic, t.publisher, t.key) for t in planned.fleet.tasks]
    assert routed == [("task-1", "jobs/key-1", 1, "key-1"), ("task-2", "jobs/key-2", 2, "key-2"),
                      ("task-3", "jobs/key-3", 1, "key-3"), ("task-4", "jobs/key-1", 2, "key-1"),
                      ("task-5", "jobs/key-2", 1, "key-2"), ("task-6", "jobs/key-3", 2, "key-3")]
    assert planned.header.expect.order_check
    assert planned.header.plan["publishers"] == 2 and planned.header.plan["keys"] == 3
    assert planned.clients == 3 + 2 - 1


def test_an_emulated_cluster_places_workers_and_publishes_each_in_turn() -> None:
    planned = plan(options(endpoints=EndpointOptions(nodes=2, place=("worker-1=2",),
                                                     publish_to="each")))
    assert planned.fleet is not None
    assert [w.node for w in planned.fleet.workers] == [2, 2, 1]
    assert [t.node for t in planned.fleet.tasks][:4] == [1, 2, 1, 2]
    assert planned.fleet.emulator.nodes == 2
    assert dict(planned.header.context)["nodes"] == "2"


def test_a_real_broker_gets_run_scoped_topics_and_negotiates() -> None:
    planned = plan(options(endpoints=EndpointOptions(brokers=("mqtt://localhost:1",))))
    fleet = planned.fleet
    assert fleet is not None and fleet.target is not None and fleet.negotiate
    assert planned.where == "mqtt://localhost:1" and not planned.embedded
    assert fleet.tasks[0].topic.startswith("aetherdiag/r1/")
    assert planned.warnings == ()
    production = plan(options(endpoints=EndpointOptions(brokers=("mqtt://localhost:1",)),
                              topics=TopicOptions(use_production_topics=True)))
    assert production.fleet is not None
    assert production.fleet.tasks[0].topic.startswith("production/")
    assert len(production.warnings) == 1 and "--use-production-topics" in production.warnings[0]


def test_a_shard_runs_its_slice_and_says_so_in_the_header() -> None:
    planned = plan(WorkersOptions(
        load=LoadOptions(count=6), endpoints=EndpointOptions(brokers=("mqtt://localhost:1",)),
        shard=ShardOptions(shard="2/3", run_id="n42")))
    assert planned.runner == "shard" and planned.fleet is not None
    assert [w.name for w in planned.fleet.workers] == ["worker-3", "worker-4"]
    assert len(planned.header.workers) == 6
    assert planned.header.shard is not None and planned.header.shard.workers == (
        "worker-3", "worker-4")


def test_exec_plans_the_processes_on_the_layout_as_given() -> None:
    planned = plan(options(exec=ExecOptions(command="python worker.py {name}"),
                           wire=WireOptions(profile="aethermagic"), load=LoadOptions(tasks=4)))
    assert planned.runner == "exec" and planned.fleet is None
    plan_ = planned.exec
    assert plan_ is not None and plan_.count == 3 and plan_.profile == "aethermagic"
    assert plan_.protocol == "3.1.1" and plan_.qos == 0 and plan_.warmup_s == 15.0
    assert [t.task_id for t in plan_.tasks] == ["task-1", "task-2", "task-3", "task-4"]
    assert planned.header.title == "aetherdiag workers --exec"
    assert dict(planned.header.context)["workers"] == "3 x python worker.py {name}"


@pytest.mark.parametrize(("opts", "says"), [
    (WorkersOptions(emulator=EmulatorOptions(strategy="nope")), "unknown strategy 'nope'"),
    (WorkersOptions(emulator=EmulatorOptions(faults=("share-fanout",)),
                    endpoints=EndpointOptions(brokers=("mqtt://h",))), "cannot be used with"),
    (WorkersOptions(wire=WireOptions(profile="x")), "--profile 'x'"),
    (WorkersOptions(exec=ExecOptions(command="w"), topics=TopicOptions(plain=True)),
     "--plain configure the built-in workers"),
    (WorkersOptions(exec=ExecOptions(logs=Path("logs"))), "--logs needs --exec"),
    (WorkersOptions(shard=ShardOptions(shard="1/2", run_id="r")), "--shard needs --broker"),
    (WorkersOptions(endpoints=EndpointOptions(nodes=2, place=("worker-1=3",))), "no node 3"),
    (WorkersOptions(topics=TopicOptions(topic_filter="a/+")), "--filter needs --topic"),
    (WorkersOptions(emulator=EmulatorOptions(group_strategies=("other=sticky",))),
     "no worker of this run joins group 'other'"),
    (WorkersOptions(load=LoadOptions(count=10_000, tasks=10_000), topics=TopicOptions(plain=True)),
     "deliveries to record"),
    (WorkersOptions(load=LoadOptions(slow_worker=("worker-9=5",))), "no worker named"),
    (WorkersOptions(endpoints=EndpointOptions(tls=TargetOptions(insecure=True))),
     "need --broker mqtts://"),
    (WorkersOptions(publish=PublishOptions(keys=2), wire=WireOptions(profile="aethermagic")),
     "--keys puts several tasks on one topic"),
])
def test_check_refuses_what_cannot_work(opts: WorkersOptions, says: str) -> None:
    assert says in usage_error(opts)


def test_name_value_options_are_parsed_once() -> None:
    assert parse_group_strategies(["a=sticky", "b=random", "a=sticky"]) == {
        "a": "sticky", "b": "random"}
    with pytest.raises(UsageError, match="expected GROUP=STRATEGY"):
        parse_group_strategies(["a"])
    with pytest.raises(UsageError, match="group 'a' already has strategy 'sticky'"):
        parse_group_strategies(["a=sticky", "a=random"])
    with pytest.raises(UsageError, match="has no '/'"):
        parse_group_strategies(["a/b=sticky"])
    assert parse_pairs(["x=1"], "--flag", "NAME=N") == {"x": "1"}
