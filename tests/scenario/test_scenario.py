"""Scenario files -> Scenario plans: the shipped library, the error table, replicas, steps.

Pure parsing: nothing here connects to a broker (running the library is the replay tests'
job). Every bad snippet is written to a file so the message is checked exactly as a user sees
it: ``file:line:column: what is wrong``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from support.paths import REPO, SCENARIOS

from aetherdiag.harness.model import EmulatorSettings, TaskSpec
from aetherdiag.scenario import load_scenario, parse_scenario
from aetherdiag.scenario import model as sm

SHIPPED = {
    "problem-task.yaml": 0,
    "seed-bug-fanout.yaml": 1,
    "plain-by-mistake.yaml": 1,
    "group-per-worker.yaml": 1,
    "plain-and-shared-overlap.yaml": 1,
    "two-groups.yaml": 0,
    "no-share-support-literal.yaml": 4,
    "no-share-support-refused.yaml": 4,
    "publish-to-share-topic.yaml": 4,
    "redelivery-storm.yaml": 1,
    "member-dropped-qos1.yaml": 0,
    "member-dropped-lose.yaml": 4,
    "qos2-persistent-member.yaml": 0,
    "slow-member-round-robin.yaml": 0,
    "slow-member-least-inflight.yaml": 5,
    "retained-shared.yaml": 4,
    "cluster-healthy.yaml": 0,
    "cluster-bridged-duplicates.yaml": 1,
    "cluster-no-route.yaml": 4,
    "cluster-node-down-qos1.yaml": 0,
    "offline-member-keeps-share.yaml": 0,
    "expired-session-drops.yaml": 4,
    "redispatch-misses-wildcards.yaml": 4,
    "session-takeover.yaml": 0,
    "session-kicked.yaml": 0,
    "unsubscribe-in-flight.yaml": 0,
    "resubscribe-qos.yaml": 0,
}
AM_SHARED = "$share/production_engine_workers/production/engine/process-data/batch1/+/perform"
AM_PLAIN = "production/engine/process-data/batch1/+/perform"


def parse(text: str) -> object:
    return parse_scenario(text, "s.yaml")


def unplaced(steps: tuple[sm.Step, ...]) -> list[sm.Step]:
    """Steps without their position, to compare two files' plans."""
    return [replace(s, index=0, line=0, column=0) for s in steps]


# -- the shipped library ---------------------------------------------------------------------


def test_library_is_complete() -> None:
    assert sorted(p.name for p in SCENARIOS.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scenario_parses_and_documents_its_exit_code(name: str) -> None:
    path = SCENARIOS / name
    scenario = load_scenario(path)
    assert scenario.name == name.removesuffix(".yaml")
    assert scenario.description
    assert scenario.expect.exit_code == SHIPPED[name]
    header = path.read_text(encoding="utf-8").split("\nname:", 1)[0]
    assert header.startswith(f"# {name}"), "the file starts with a comment naming it"
    codes = re.findall(r"Expected exit code: (\d)", header)
    assert codes == [str(SHIPPED[name])], "the comment block states the expected exit code"
    assert scenario.tasks, "every scenario publishes something"


def test_problem_task_is_the_seed_case() -> None:
    s = load_scenario(SCENARIOS / "problem-task.yaml")
    assert [w.name for w in s.workers] == ["worker-1", "worker-2"]
    assert all(w.subscriptions == (AM_SHARED,) for w in s.workers)
    ids = [t.task_id for t in s.tasks]
    assert "problem-task-123" in ids and len(ids) == 10
    assert s.tasks[0].topic == "production/engine/process-data/batch1/problem-task-118/perform"
    assert s.broker_url is None and s.emulator == EmulatorSettings()


def test_seed_bug_only_adds_the_fault() -> None:
    good = load_scenario(SCENARIOS / "problem-task.yaml")
    bad = load_scenario(SCENARIOS / "seed-bug-fanout.yaml")
    assert bad.emulator.faults == ("share-fanout",)
    assert bad.tasks == good.tasks and bad.workers == good.workers


def test_slow_member_pair_differs_only_in_strategy() -> None:
    rr = load_scenario(SCENARIOS / "slow-member-round-robin.yaml")
    li = load_scenario(SCENARIOS / "slow-member-least-inflight.yaml")
    assert (rr.emulator.strategy, li.emulator.strategy) == ("round_robin", "least_inflight")
    assert rr.workers == li.workers and unplaced(rr.steps) == unplaced(li.steps)
    assert rr.expect.max_imbalance == li.expect.max_imbalance == 1.5


def test_drop_scenarios_differ_only_in_the_fault() -> None:
    redispatch = load_scenario(SCENARIOS / "member-dropped-qos1.yaml")
    lose = load_scenario(SCENARIOS / "member-dropped-lose.yaml")
    assert lose.emulator.faults == ("lose-on-disconnect",) and not redispatch.emulator.faults
    assert unplaced(lose.steps) == unplaced(redispatch.steps)
    assert lose.workers == redispatch.workers
    assert [s.kind for s in lose.steps] == ["publish", "wait", "drop", "wait", "slow",
                                            "reconnect", "publish", "settle"]


def test_qos2_member_is_persistent() -> None:
    s = load_scenario(SCENARIOS / "qos2-persistent-member.yaml")
    w2 = s.worker("worker-2")
    assert (w2.qos, w2.clean_start, w2.session_expiry, w2.work_ms) == (2, False, 300, 1000.0)
    assert all(t.qos == 2 for t in s.tasks)


def test_retained_scenario_subscribes_after_the_retained_publish() -> None:
    s = load_scenario(SCENARIOS / "retained-shared.yaml")
    assert all(w.subscriptions == () for w in s.workers)
    first, *_ = s.steps
    assert isinstance(first, sm.Publish) and first.tasks[0].retain
    assert [type(st) for st in s.steps[2:4]] == [sm.Subscribe, sm.Subscribe]
    assert s.expect.missing_tasks == ("retained-task",)
    assert s.expect.missing == sm.Count(min=1, max=1)


def test_publish_to_share_topic_builds_share_topics() -> None:
    s = load_scenario(SCENARIOS / "publish-to-share-topic.yaml")
    assert s.tasks[0].topic == (
        "$share/production_engine_workers/production/engine/process-data/batch1/task-1/perform")


# -- workers, replicas, subscriptions --------------------------------------------------------


def test_replica_groups_expand_in_order() -> None:
    s = parse_scenario("""\
name: r
workers:
  - name: a
    replicas: 3
    qos: 2
    work_ms: 5
  - b
  - name: c
    replicas: 1
steps:
  - publish: {count: 1}
""")
    assert [w.name for w in s.workers] == ["a-1", "a-2", "a-3", "b", "c-1"]
    assert {(w.qos, w.work_ms) for w in s.workers[:3]} == {(2, 5.0)}
    assert s.worker("b").qos == 1 and s.worker("b").subscriptions == (AM_SHARED,)


def test_subscription_forms_and_groups() -> None:
    s = parse_scenario("""\
name: subs
layout:
  generic: {topic: "jobs/{task_id}", group: pool}
workers:
  - name: w
    group: mine
    pool: p
    subscriptions: [shared, plain, {shared: other}, "$share/x/jobs/#", "audit/+"]
steps:
  - publish: {count: 2}
""")
    w = s.worker("w")
    assert w.subscriptions == ("$share/mine/jobs/+", "jobs/+", "$share/other/jobs/+",
                               "$share/x/jobs/#", "audit/+")
    assert w.pool == "p"
    assert s.tasks[1] == TaskSpec(task_id="task-2", topic="jobs/task-2", qos=1)


def test_sessions_and_protocols() -> None:
    s = parse_scenario("""\
name: sessions
protocol: 3.1.1
qos: 0
workers:
  - {name: a}
  - {name: b, session: persistent}
  - {name: c, protocol: 5, session: persistent}
  - {name: d, protocol: "5", session: clean, session_expiry: 60}
steps:
  - publish: {count: 1}
""")
    got = [(w.protocol, w.clean_start, w.session_expiry, w.qos) for w in s.workers]
    assert got == [("3.1.1", True, 0, 0), ("3.1.1", False, 0, 0), ("5", False, 3600, 0),
                   ("5", True, 60, 0)]
    assert s.protocol == "3.1.1"


# -- steps -----------------------------------------------------------------------------------

STEPS = """\
name: steps
timeout: 12
workers:
  - name: w
    replicas: 2
steps:
  - publish: {count: 3, qos: 2, rate: 50}
  - wait: 0.5
  - drop: w-2

  - reconnect: w-2
  - slow: {worker: w-1, work_ms: 250}
  - subscribe: {worker: w-1, filter: plain, qos: 0}
  - unsubscribe:
      worker: w-1
      filter: plain
  - publish: {tasks: [x, y], retain: true, topic: "other/{task_id}"}
  - publish: {count: 2, id_pattern: "job-{n:03d}"}
  - settle
  - settle: {timeout: 3, quiet: 0.1}
"""


def test_steps_keep_order_index_and_source_line() -> None:
    s = parse_scenario(STEPS, "steps.yaml")
    assert [(st.index, st.line, st.kind) for st in s.steps] == [
        (1, 7, "publish"), (2, 8, "wait"), (3, 9, "drop"), (4, 11, "reconnect"),
        (5, 12, "slow"), (6, 13, "subscribe"), (7, 14, "unsubscribe"), (8, 17, "publish"),
        (9, 18, "publish"), (10, 19, "settle"), (11, 20, "settle"),
    ]
    assert s.steps[2].label == "step 3 (line 9)"
    assert all(st.column == 5 for st in s.steps)  # where the step's name starts


def test_step_values() -> None:
    s = parse_scenario(STEPS, "steps.yaml")
    pub, wait, drop, rec, slow, sub, unsub, explicit, pattern, settle, bounded = s.steps
    assert isinstance(pub, sm.Publish) and pub.rate == 50.0
    assert [t.task_id for t in pub.tasks] == ["task-1", "task-2", "task-3"]
    assert {t.qos for t in pub.tasks} == {2}
    assert wait == sm.Wait(index=2, line=8, column=5, seconds=0.5)
    assert isinstance(drop, sm.Drop) and drop.worker == "w-2" and drop.describe() == "drop w-2"
    assert isinstance(rec, sm.Reconnect) and rec.worker == "w-2"
    assert isinstance(slow, sm.Slow) and slow.work_ms == 250.0
    assert isinstance(sub, sm.Subscribe) and (sub.topic_filter, sub.qos) == (AM_PLAIN, 0)
    assert isinstance(unsub, sm.Unsubscribe) and unsub.topic_filter == AM_PLAIN
    assert isinstance(explicit, sm.Publish)
    assert explicit.tasks == (TaskSpec(task_id="x", topic="other/x", qos=1, retain=True),
                              TaskSpec(task_id="y", topic="other/y", qos=1, retain=True))
    assert isinstance(pattern, sm.Publish)
    assert [t.task_id for t in pattern.tasks] == ["job-004", "job-005"]  # numbering continues
    assert isinstance(settle, sm.Settle) and (settle.timeout_s, settle.quiet_s) == (12.0, 0.3)
    assert isinstance(bounded, sm.Settle) and (bounded.timeout_s, bounded.quiet_s) == (3.0, 0.1)


def test_count_numbering_continues_unless_start_is_given() -> None:
    s = parse_scenario("""\
name: n
workers: [w]
steps:
  - publish: {count: 2}
  - publish: {count: 2}
  - publish: {count: 1, start: 100, id_pattern: "t{n}"}
""")
    assert [t.task_id for t in s.tasks] == ["task-1", "task-2", "task-3", "task-4", "t100"]


def test_expectations() -> None:
    s = parse_scenario("""\
name: e
workers: [a, b]
steps:
  - publish: {count: 4}
expect:
  exit_code: 5
  duplicates: 0
  repeats: {max: 2}
  missing: {min: 1}
  redispatched: {min: 1, max: 3}
  max_imbalance: 2
  allow_redelivery: true
  workers:
    a: {tasks: 3, received: {min: 3}}
    b: {repeats: 0}
""")
    e = s.expect
    assert (e.exit_code, e.max_imbalance, e.allow_redelivery) == (5, 2.0, True)
    assert (str(e.duplicates), str(e.repeats), str(e.missing), str(e.redispatched)) == (
        "0", "<= 2", ">= 1", "1..3")
    assert e.missing_tasks is None
    a, b = e.workers
    assert (a.name, a.tasks, a.received, a.repeats) == ("a", sm.Count(min=3, max=3),
                                                        sm.Count(min=3), None)
    assert (b.name, b.tasks, b.repeats) == ("b", None, sm.Count(min=0, max=0))


def test_count_matches() -> None:
    assert sm.Count(min=2, max=2).matches(2) and not sm.Count(min=2, max=2).matches(3)
    assert sm.Count(min=1).matches(10**6) and not sm.Count(min=1).matches(0)
    assert sm.Count(max=5).matches(0) and not sm.Count(max=5).matches(6)


def test_targets() -> None:
    base = "name: t\nworkers: [w]\nsteps:\n  - publish: {count: 1}\n"
    em = parse(base + """\
target:
  emulator:
    strategy: sticky
    faults: [redeliver, share-retained]
    group_strategies: {g1: random, g2: hash_topic}
    seed: 7
""")
    assert em.emulator == EmulatorSettings(  # type: ignore[attr-defined]
        strategy="sticky", faults=("redeliver", "share-retained"),
        group_strategies=(("g1", "random"), ("g2", "hash_topic")), seed=7)
    broker = parse(base + "target:\n  broker: mqtts://user@broker.example:8883\n")
    assert broker.broker_url == "mqtts://user@broker.example:8883"  # type: ignore[attr-defined]


def test_defaults() -> None:
    s = parse_scenario("name: d\nworkers: [w]\nsteps:\n  - publish: {tasks: [one]}\n")
    assert (s.protocol, s.timeout_s, s.description, s.path) == ("5", 30.0, "", "<scenario>")
    assert s.expect.exit_code is None and s.expect.max_imbalance == 1.5
    assert s.layout.group == "production_engine_workers"


# -- errors: one line each, file:line:column -------------------------------------------------

W = "workers:\n  - name: worker\n    replicas: 2\n"
S = "steps:\n  - publish: {count: 3}\n"

BAD: list[tuple[str, str, str]] = [
    # (id, file content, expected "line:column: message")
    ("unknown-key", "name: t\nworkrs: []\n" + W + S,
     "2:1: unknown key 'workrs' in the scenario (did you mean 'workers'?)"),
    ("duplicate-key", "name: t\nname: u\n" + W + S,
     "2:1: duplicate key 'name' (first given at line 1)"),
    ("missing-field", "name: t\n" + S,
     "1:1: the scenario: missing required key 'workers'"),
    ("wrong-type-text", "name: t\nqos: '1'\n" + W + S,
     "2:6: qos: expected a whole number, got the text '1'"),
    ("out-of-range", "name: t\nqos: 3\n" + W + S,
     "2:6: qos: must be between 0 and 2, got 3"),
    ("wrong-type-list", "name: t\n" + W + "steps:\n  publish: {count: 3}\n",
     "6:3: steps: expected a list, got a mapping"),
    ("bad-url-scheme", "name: t\ntarget:\n  broker: http://x\n" + W + S,
     "3:11: broker: unsupported scheme 'http://' in broker URL 'http://x' "
     "(use mqtt://, mqtts://, ws:// or wss://)"),
    ("bad-url-port", "name: t\ntarget:\n  broker: mqtt://host:99999\n" + W + S,
     "3:11: broker: bad port '99999' in broker URL 'mqtt://host:99999' (expected 1-65535)"),
    ("two-targets", "name: t\ntarget:\n  emulator: {}\n  broker: mqtt://h\n" + W + S,
     "3:3: target: give exactly one of 'emulator' or 'broker'"),
    ("bad-fault", "name: t\ntarget:\n  emulator:\n    faults: [share-fanot]\n" + W + S,
     "4:14: unknown fault 'share-fanot' (did you mean 'share-fanout'?)"),
    ("bad-strategy", "name: t\ntarget:\n  emulator: {strategy: roundrobin}\n" + W + S,
     "3:24: unknown strategy 'roundrobin' (did you mean 'round_robin'?)"),
    ("bad-filter", "name: t\nworkers:\n  - name: w\n    subscriptions: ['a/#/b']\n" + S,
     "4:21: invalid topic filter: '#' must be a whole last level in 'a/#/b'"),
    ("bad-share-filter", "name: t\nworkers:\n  - name: w\n    subscriptions: ['$share//a']\n"
     + S, "4:21: invalid topic filter: empty share name in '$share//a'"),
    ("subscription-typo", "name: t\nworkers:\n  - name: w\n    subscriptions: [sharde]\n" + S,
     "4:21: subscription 'sharde': did you mean 'shared'? (an explicit one-level filter "
     "would be taken literally)"),
    ("bad-group", "name: t\nworkers:\n  - name: w\n    group: a/b\n" + S,
     "4:12: group 'a/b': a share name has no '/', '+' or '#'"),
    ("duplicate-worker", "name: t\nworkers:\n  - worker-1\n  - name: worker\n    replicas: 2\n"
     + S, "4:11: duplicate worker name 'worker-1' (already defined at line 3)"),
    ("worker-key-typo", "name: t\nworkers:\n  - name: w\n    work_sm: 3\n" + S,
     "4:5: unknown key 'work_sm' in a worker (did you mean 'work_ms'?)"),
    ("worker-name", "name: t\nworkers:\n  - name: a b\n" + S,
     "3:11: worker name 'a b': use letters, digits, '-', '_' and '.'"),
    ("no-workers", "name: t\nworkers: []\n" + S, "2:10: workers: expected at least one worker"),
    ("expiry-311", "name: t\nworkers:\n  - name: w\n    protocol: '3.1.1'\n"
     "    session: persistent\n    session_expiry: 10\n" + S,
     "6:21: session_expiry is an MQTT 5 setting (a persistent 3.1.1 session never expires)"),
    ("persistent-zero", "name: t\nworkers:\n  - name: w\n    session: persistent\n"
     "    session_expiry: 0\n" + S,
     "5:21: a persistent session needs session_expiry > 0 under MQTT 5 (0 ends the session "
     "when the connection ends)"),
    ("bad-session", "name: t\nworkers:\n  - name: w\n    session: durable\n" + S,
     "4:14: unknown session 'durable' (expected one of: clean, persistent)"),
    ("bad-protocol", "name: t\nprotocol: 4\n" + W + S,
     "2:11: protocol: expected \"3.1.1\" or \"5\", got the number 4"),
    ("layout-field", "name: t\nlayout:\n  aethermagic: {union: a/b}\n" + W + S,
     "3:24: union 'a/b': must be non-empty without / + # { }"),
    ("layout-missing-topic", "name: t\nlayout:\n  generic: {group: g}\n" + W + S,
     "3:12: generic: missing required key 'topic'"),
    ("layout-placeholder", "name: t\nlayout:\n  generic: {topic: 'jobs/x{task_id}'}\n" + W + S,
     "3:20: topic 'jobs/x{task_id}': the placeholder is not a whole level; give filter"),
    ("yaml-syntax", "name: t\nsteps: [publish\nworkers: []\n",
     "3:8: YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow "
     "sequence at line 2)"),
    ("yaml-indent", "name: t\n  workers: []\n",
     "2:10: YAML syntax error: mapping values are not allowed here"),
    ("yaml-tab", "name: t\n\tworkers: [w]\n",
     "2:1: YAML syntax error: found character '\\t' that cannot start any token"),
    ("two-documents", "name: t\n" + W + S + "---\nname: u\n",
     "7:1: a scenario file holds one YAML document; remove this '---'"),
    ("empty-file", "", "1:1: empty scenario (expected a mapping with name, workers and steps)"),
    ("not-a-mapping", "- name: t\n", "1:1: the scenario: expected a mapping, got a list"),
    ("unknown-worker", "name: t\n" + W + "steps:\n  - publish: {count: 3}\n  - drop: worker-9\n",
     "7:11: drop: unknown worker 'worker-9' (did you mean 'worker-2'?)"),
    ("replica-group-ref", "name: t\n" + W + "steps:\n  - publish: {count: 3}\n  - drop: worker\n",
     "7:11: drop: 'worker' is a replica group; name one worker (worker-1 .. worker-2)"),
    ("step-indent", "name: t\n" + W + "steps:\n  - publish:\n    count: 3\n",
     "6:5: a step has one key, found several (publish, count); indent the options under "
     "'publish:'"),
    ("unknown-step", "name: t\n" + W + "steps:\n  - publsh: {count: 3}\n",
     "6:5: unknown step 'publsh' (did you mean 'publish'?)"),
    ("step-needs-value", "name: t\n" + W + "steps:\n  - publish: {count: 3}\n  - wait:\n",
     "7:5: wait: needs a value (see the scenario format)"),
    ("wait-negative", "name: t\n" + W + "steps:\n  - publish: {count: 3}\n  - wait: -1\n",
     "7:11: wait: must be above 0, got -1"),
    ("drop-twice", "name: t\n" + W
     + "steps:\n  - publish: {count: 3}\n  - drop: worker-1\n  - drop: worker-1\n",
     "8:11: drop: worker-1 is not connected (since step 2 (line 7))"),
    ("reconnect-connected", "name: t\n" + W
     + "steps:\n  - reconnect: worker-1\n  - publish: {count: 3}\n",
     "6:16: reconnect: worker-1 is already connected"),
    ("subscribe-offline", "name: t\n" + W + "steps:\n  - publish: {count: 3}\n"
     "  - disconnect: worker-1\n  - subscribe: {worker: worker-1, filter: plain}\n",
     "8:25: subscribe: worker-1 is not connected (since step 2 (line 7))"),
    ("unsubscribe-not-held", "name: t\n" + W
     + "steps:\n  - unsubscribe: {worker: worker-1, filter: plain}\n  - publish: {count: 3}\n",
     f"6:45: unsubscribe: worker-1 does not hold '{AM_PLAIN}' at this step (it holds: "
     f"{AM_SHARED})"),
    ("subscribe-twice", "name: t\n" + W
     + "steps:\n  - subscribe: {worker: worker-1, filter: shared}\n  - publish: {count: 3}\n",
     f"6:43: subscribe: worker-1 already holds '{AM_SHARED}' (resubscribe changes its QoS "
     "in place)"),
    ("slow-missing", "name: t\n" + W + "steps:\n  - slow: {worker: worker-1}\n",
     "6:11: slow: missing required key 'work_ms'"),
    ("duplicate-task", "name: t\n" + W
     + "steps:\n  - publish: {tasks: [a, b]}\n  - publish: {tasks: [b]}\n",
     "7:23: task id 'b' is already published by step 1 (line 6)"),
    ("task-id-slash", "name: t\n" + W + "steps:\n  - publish: {tasks: [a/b]}\n",
     "6:23: task id 'a/b': must be non-empty without / + #"),
    ("id-pattern", "name: t\n" + W + "steps:\n  - publish: {count: 3, id_pattern: task}\n",
     "6:37: id_pattern 'task': needs an {n} placeholder, e.g. 'task-{n}'"),
    ("id-pattern-key", "name: t\n" + W + "steps:\n  - publish: {count: 3, id_pattern: 't{n}{m}'}\n",
     "6:37: id_pattern 't{n}{m}': unknown placeholder {m} (only {n} is known)"),
    ("tasks-and-count", "name: t\n" + W + "steps:\n  - publish: {count: 3, tasks: [a]}\n",
     "6:14: publish: give either 'tasks' (a list of ids) or 'count'"),
    ("bad-topic", "name: t\n" + W + "steps:\n  - publish: {count: 3, topic: 'a/+'}\n",
     "6:32: topic 'a/+': not a valid topic name (no '+' or '#' in a topic)"),
    ("topic-and-share", "name: t\n" + W
     + "steps:\n  - publish: {count: 3, topic: 'a/{n}', to_share_topic: true}\n",
     "6:41: give either topic or to_share_topic"),
    ("rate-zero", "name: t\n" + W + "steps:\n  - publish: {count: 3, rate: 0}\n",
     "6:31: rate: must be above 0, got 0"),
    ("retain-text", "name: t\n" + W + "steps:\n  - publish: {count: 3, retain: 'yes please'}\n",
     "6:33: retain: expected true or false, got the text 'yes please'"),
    ("no-publish", "name: t\n" + W + "steps:\n  - settle\n",
     "6:3: steps: no publish step, so there is nothing to deliver"),
    ("expect-missing-id", "name: t\n" + W + S + "expect:\n  missing: [task-9]\n",
     "8:13: missing: task 'task-9' is never published (did you mean 'task-3'?)"),
    ("expect-exit-2", "name: t\n" + W + S + "expect:\n  exit_code: 2\n",
     "8:14: exit_code: 2 is the usage-error code; a scenario that runs cannot end with it"),
    ("expect-unknown-worker",
     "name: t\n" + W + S + "expect:\n  workers:\n    worker-3: {tasks: 1}\n",
     "9:5: expect workers: unknown worker 'worker-3' (did you mean 'worker-2'?)"),
    ("expect-worker-key",
     "name: t\n" + W + S + "expect:\n  workers:\n    worker-1: {task: 1}\n",
     "9:16: unknown key 'task' in worker-1 (did you mean 'tasks'?)"),
    ("expect-range", "name: t\n" + W + S + "expect:\n  duplicates: {min: 3, max: 1}\n",
     "8:15: duplicates: min 3 is above max 1"),
    ("expect-count-text", "name: t\n" + W + S + "expect:\n  duplicates: many\n",
     "8:15: duplicates: expected a count or {min: N, max: M}, got the text 'many'"),
    ("expect-imbalance", "name: t\n" + W + S + "expect:\n  max_imbalance: 0.5\n",
     "8:18: max_imbalance: must be at least 1, got 0.5"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD],
                         ids=[i for i, _, _ in BAD])
def test_bad_scenario_gives_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(sm.ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message == f"{path}:{expected}"
    assert "\n" not in message
    line, column, rest = expected.split(":", 2)
    assert (info.value.file, info.value.line, info.value.column) == (str(path), int(line),
                                                                     int(column))
    assert info.value.message == rest.strip()
    assert isinstance(info.value, ValueError)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(sm.ScenarioError, match=r"nope\.yaml:1:1: cannot read the file"):
        load_scenario(missing)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(sm.ScenarioError, match=r"bin\.yaml:1:1: the file is not UTF-8 text"):
        load_scenario(binary)


def test_long_worker_lists_are_shortened_in_messages() -> None:
    text = ("name: t\nworkers:\n  - name: w\n    replicas: 50\n"
            "steps:\n  - publish: {count: 1}\n  - drop: zzz\n")
    with pytest.raises(sm.ScenarioError) as info:
        parse(text)
    assert str(info.value).endswith("(expected one of: w-1, w-2, w-3, w-4, w-5, w-6, w-7, w-8, "
                                    "... 50 in all)")


def test_the_documented_example_parses() -> None:
    doc = REPO / "docs" / "scenario-format.md"
    example = doc.read_text(encoding="utf-8").split("```yaml\n", 1)[1].split("```", 1)[0]
    s = parse_scenario(example, "example.yaml")
    assert [w.name for w in s.workers] == ["worker-1", "worker-2", "audit-1", "audit-2"]
    assert len(s.tasks) == 20 and s.steps[2].describe() == "drop worker-2"
