"""What each step caused, from hand-made runs (no broker): attribution, timeline text, lost work,
and the expectation checks and exit-code rules of replay.outcome."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from aetherdiag.analysis import CopyRef, Expectations, analyse
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import Delivery, FleetEvent, RunResult, TaskSpec, WorkerSpec
from aetherdiag.replay.effects import derive
from aetherdiag.replay.model import Effects, StepRecord
from aetherdiag.replay.outcome import check_expect_block, worst_exit_code
from aetherdiag.scenario.model import (
    Count,
    Drop,
    Expect,
    Publish,
    Reconnect,
    Settle,
    Subscribe,
    WorkerExpect,
)

WORKERS = (WorkerSpec(name="worker-1", subscriptions=("$share/g/t/+",)),
           WorkerSpec(name="worker-2", subscriptions=("$share/g/t/+",)))


def tasks(*ids: str, qos: int = 1, retain: bool = False) -> tuple[TaskSpec, ...]:
    return tuple(TaskSpec(task_id=t, topic=f"t/{t}", qos=qos, retain=retain) for t in ids)


def d(worker: str, task: str, at: float, qos: int = 1, dup: bool = False,
      retain: bool = False) -> Delivery:
    return Delivery(worker=worker, task_id=task, topic=f"t/{task}", qos=qos, dup=dup,
                    retain=retain, at=at)


def publish(index: int, *ids: str, qos: int = 1, at: float = 0.0) -> StepRecord:
    return StepRecord(step=Publish(index=index, line=10 + index, tasks=tasks(*ids, qos=qos)),
                      started=at, ended=at + 0.01, sent=len(ids))


def drop(index: int, worker: str, at: float, *in_flight: str) -> StepRecord:
    return StepRecord(step=Drop(index=index, line=10 + index, worker=worker), started=at,
                      ended=at + 0.01, in_flight=in_flight)


def reconnect(index: int, worker: str, at: float, present: bool) -> StepRecord:
    return StepRecord(step=Reconnect(index=index, line=10 + index, worker=worker), started=at,
                      ended=at + 0.01, session_present=present)


def final(at: float) -> StepRecord:
    return StepRecord(step=None, started=at, ended=at + 0.3, settled=True)


def finished(run: RunResult, found: Effects) -> list[bool]:
    """Per delivery of ``run``: not among the copies ``derive`` found abandoned."""
    nth: Counter[tuple[str, str]] = Counter()
    out: list[bool] = []
    for x in run.deliveries:
        assert x.task_id is not None
        key = (x.worker, x.task_id)
        out.append(CopyRef(*key, nth[key]) not in found.abandoned)
        nth[key] += 1
    return out


def result(published: tuple[str, ...], deliveries: list[Delivery],
           events: tuple[FleetEvent, ...] = ()) -> RunResult:
    return RunResult(target="test", workers=("worker-1", "worker-2"), published=published,
                     deliveries=tuple(deliveries), events=events)


def test_a_drop_re_dispatches_and_the_dropped_copies_are_abandoned() -> None:
    ids = ("a", "b", "c", "d")
    run = result(ids, [d("worker-1", "a", 0.01), d("worker-2", "b", 0.01),
                       d("worker-1", "c", 0.01), d("worker-2", "d", 0.01),
                       d("worker-1", "b", 0.31), d("worker-1", "d", 0.31)],
                 (FleetEvent(at=0.3, worker="worker-2", kind="dropped", task_ids=("b", "d")),))
    records = (publish(1, *ids), drop(2, "worker-2", 0.29, "b", "d"), final(0.4))
    found = derive(run, records, WORKERS)
    effects = found.steps
    assert found.abandoned == {CopyRef("worker-2", "b", 0), CopyRef("worker-2", "d", 0)}
    assert finished(run, found) == [True, False, True, False, True, True]
    assert all(x.completed for x in run.deliveries)  # the harness's records stay as recorded
    assert effects[0].text == "step 1 (line 11): publish 4 task(s) (a .. d): worker-1 2, worker-2 2"
    assert effects[1].text == ("step 2 (line 12): drop worker-2: 2 in-flight task(s) "
                               "re-dispatched to worker-1 (b, d)")
    assert effects[1].deliveries == (("worker-1", 2),)
    assert effects[2].label == "after the last step" and "settled in 0.30 s" in effects[2].text
    report = analyse(run, WORKERS, Expectations(allow_redelivery=True),
                     abandoned=found.abandoned)
    assert report.missing == () and report.allowed_redeliveries == 2
    strict = analyse(run, WORKERS, Expectations(), abandoned=found.abandoned)
    assert [t for t, _ in strict.cross_worker] == ["b", "d"]


def test_a_finished_task_whose_ack_died_with_the_connection() -> None:
    # worker-2 finished "b" (not in flight at the cut) but the broker never saw its PUBACK
    run = result(("a", "b"), [d("worker-1", "a", 0.01), d("worker-2", "b", 0.01),
                              d("worker-1", "b", 0.25)])
    records = (publish(1, "a", "b"), drop(2, "worker-2", 0.2), final(0.3))
    found = derive(run, records, WORKERS)
    effects = found.steps
    assert found.abandoned == frozenset()
    assert effects[0].effect == "worker-1 1, worker-2 1"
    assert effects[1].effect == ("nothing in flight; 1 task(s) it had already finished "
                                 "re-dispatched to worker-1 (b): their acknowledgement was lost "
                                 "with the connection")
    report = analyse(run, WORKERS, Expectations(allow_redelivery=True),
                     abandoned=found.abandoned)
    assert [t for t, _ in report.cross_worker] == ["b"]  # done twice: a real duplicate


def test_tasks_nobody_else_received_are_lost_and_missing() -> None:
    run = result(("a", "b"), [d("worker-1", "a", 0.01), d("worker-2", "b", 0.01)])
    records = (publish(1, "a", "b"), drop(2, "worker-2", 0.2, "b"),
               reconnect(3, "worker-2", 0.5, present=False), final(0.6))
    found = derive(run, records, WORKERS)
    effects = found.steps
    assert finished(run, found) == [True, False]
    assert effects[1].effect == "1 in-flight task(s) lost: no other worker received them (b)"
    assert effects[2].effect == "new session"
    report = analyse(run, WORKERS, Expectations(), abandoned=found.abandoned)
    assert report.missing == ("b",) and report.lost_in_flight == ("b",)


def test_qos2_kept_in_a_present_session_counts_as_done() -> None:
    run = result(("a", "b", "c"), [
        d("worker-1", "a", 0.01, qos=2), d("worker-2", "b", 0.01, qos=2),
        d("worker-2", "c", 0.01, qos=2), d("worker-2", "c", 0.61, qos=2, dup=True)])
    records = (publish(1, "a", "b", "c", qos=2), drop(2, "worker-2", 0.3, "b", "c"),
               reconnect(3, "worker-2", 0.6, present=True), final(0.7))
    found = derive(run, records, WORKERS)
    effects = found.steps
    # "b" completes by PUBREL alone: its copy counts; "c" is re-sent: the re-sent copy counts
    assert finished(run, found) == [True, True, False, True]
    assert effects[1].effect == "2 in-flight task(s) kept in its session for its return (b, c)"
    assert effects[2].effect == ("session present, 2 interrupted QoS 2 exchange(s) completed on "
                                 "worker-2 (1 by PUBREL only, 1 PUBLISH re-sent with DUP)")
    assert effects[2].deliveries == (("worker-2", 1),)
    report = analyse(run, WORKERS, Expectations(allow_redelivery=True),
                     abandoned=found.abandoned)
    assert report.missing == () and report.cross_worker == () and report.repeats == 0


def test_qos2_without_a_session_on_return_is_lost() -> None:
    run = result(("a", "b"), [d("worker-1", "a", 0.01, qos=2), d("worker-2", "b", 0.01, qos=2)])
    records = (publish(1, "a", "b", qos=2), drop(2, "worker-2", 0.3, "b"),
               reconnect(3, "worker-2", 0.6, present=False), final(0.7))
    found = derive(run, records, WORKERS)
    assert finished(run, found) == [True, False]


def test_only_the_copies_in_flight_are_marked() -> None:
    # worker-2 finished its first copy of "a"; the DUP copy was in flight at the cut
    run = result(("a",), [d("worker-2", "a", 0.01), d("worker-2", "a", 0.02, dup=True)])
    records = (publish(1, "a"), drop(2, "worker-2", 0.3, "a"), final(0.4))
    found = derive(run, records, WORKERS)
    effects = found.steps
    assert finished(run, found) == [True, False]
    assert "1 extra copies on the same worker (1 with DUP)" in effects[0].effect


def test_a_connection_the_broker_closed_is_shown_in_its_step() -> None:
    lost = FleetEvent(at=0.05, worker="worker-1", kind="lost",
                      detail="DISCONNECT 0x9E from the broker", task_ids=())
    run = result(("a",), [d("worker-2", "a", 0.01)], (lost,))
    settle = StepRecord(step=Settle(index=2, line=12, timeout_s=5, quiet_s=0.3), started=0.02,
                        ended=0.4, settled=True)
    effects = derive(run, (publish(1, "a"), settle), WORKERS).steps
    assert effects[1].effect == ("settled in 0.38 s; worker-1 lost its connection "
                                 "(DISCONNECT 0x9E from the broker): nothing in flight")


def test_a_retained_copy_after_subscribe_belongs_to_the_subscribe() -> None:
    run = result(("r", "a"), [d("worker-1", "r", 0.21, retain=True), d("worker-1", "a", 0.3)])
    sub = StepRecord(step=Subscribe(index=2, line=12, worker="worker-1",
                                    topic_filter="$share/g/t/+", qos=1),
                     started=0.2, ended=0.21, reason_code=1)
    records = (StepRecord(step=Publish(index=1, line=11, tasks=tasks("r", retain=True)),
                          started=0.0, ended=0.01), sub, publish(3, "a", at=0.25), final(0.4))
    effects = derive(run, records, WORKERS).steps
    assert effects[0].effect == "none delivered"
    assert effects[1].effect == "granted QoS 1; 1 retained task(s) delivered (r)"
    assert effects[2].effect == "worker-1 1"


def test_expectations_and_worst_exit_code() -> None:
    run = result(("a", "b"), [d("worker-1", "a", 0.01), d("worker-2", "a", 0.01)])
    report = analyse(run, WORKERS, Expectations())
    expect = Expect(exit_code=1, duplicates=Count(min=1, max=1), missing_tasks=("b",),
                    missing=Count(min=1, max=1),
                    workers=(WorkerExpect(name="worker-2", tasks=Count(min=2)),))
    checks = {c.name: (c.passed, c.expected, c.actual) for c in check_expect_block(expect, report)}
    assert checks == {
        "exit code": (True, "1", "1 (duplicates)"),
        "duplicates": (True, "1", "1"),
        "missing": (True, "b", "b"),
        "worker-2 tasks": (False, ">= 2", "1"),
    }
    assert worst_exit_code([]) == ExitCode.OK
    assert worst_exit_code([ExitCode.OK, ExitCode.IMBALANCE, ExitCode.MISSING]) == 4
    assert worst_exit_code([ExitCode.MISSING, ExitCode.UNREACHABLE, ExitCode.DUPLICATES]) == 1


def test_the_pure_stages_do_not_load_the_fleet() -> None:
    """effects, outcome and their rendering are pure: importing them loads no fleet, no paho."""
    code = ("import sys, aetherdiag.replay.outcome, aetherdiag.render.replay; "
            "print([m for m in sys.modules if m.startswith(('paho', 'aetherdiag.harness.fleet', "
            "'aetherdiag.replay.run'))])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout
