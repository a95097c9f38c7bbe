"""analysis.analyse on hand-made delivery records: classification, balance, verdict, causes."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace

from aetherdiag.analysis import CopyRef, Expectations, analyse, chi_square_sf
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec

SHARED = "$share/g/jobs/+"


def specs(n: int, sub: str = SHARED, **kw: object) -> list[WorkerSpec]:
    return [WorkerSpec(name=f"worker-{i}", subscriptions=(sub,), **kw)  # type: ignore[arg-type]
            for i in range(1, n + 1)]


def run(assign: dict[str, list[str]], tasks: int, *, dup: Set[tuple[str, str]] = frozenset(),
        failures: tuple[str, ...] = (), incomplete: Set[tuple[str, str]] = frozenset(),
        subacks: tuple[tuple[str, str, int], ...] = ()) -> RunResult:
    deliveries: list[Delivery] = []
    for worker, ids in assign.items():
        for t in ids:
            again = any(d.worker == worker and d.task_id == t for d in deliveries)
            # ``incomplete``: the worker dropped holding its first copy; later copies finish.
            deliveries.append(Delivery(
                worker=worker, task_id=t, topic=f"jobs/{t}", qos=1,
                dup=(worker, t) in dup and again, retain=False, at=0.0,
                completed=again or (worker, t) not in incomplete))
    return RunResult(target="emulator", workers=tuple(assign), deliveries=tuple(deliveries),
                     published=tuple(f"task-{n}" for n in range(1, tasks + 1)),
                     publish_failures=failures, subscribe_results=subacks)


def rr(workers: int, tasks: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {f"worker-{i}": [] for i in range(1, workers + 1)}
    for n in range(1, tasks + 1):
        out[f"worker-{(n - 1) % workers + 1}"].append(f"task-{n}")
    return out


def test_round_robin_is_healthy() -> None:
    report = analyse(run(rr(3, 9), 9), specs(3))
    assert report.exit_code == ExitCode.OK and report.verdict == "healthy"
    assert report.workers[0].tasks == ("task-1", "task-4", "task-7")
    assert report.balance.max_over_min == 1.0
    assert not report.missing and not report.cross_worker and report.repeats == 0
    assert report.causes == ()


def test_fanout_counts_duplicates_and_explains() -> None:
    every = [f"task-{n}" for n in range(1, 10)]
    report = analyse(run({f"worker-{i}": every for i in (1, 2, 3)}, 9), specs(3))
    assert report.exit_code == ExitCode.DUPLICATES
    assert len(report.cross_worker) == 9
    assert report.delivered == 27
    assert any("treats $share" in c for c in report.causes)


def test_plain_subscriptions_named_as_the_cause() -> None:
    every = [f"task-{n}" for n in range(1, 10)]
    report = analyse(run({f"worker-{i}": every for i in (1, 2)}, 9), specs(2, sub="jobs/+"))
    assert report.exit_code == ExitCode.DUPLICATES
    assert any("without $share" in c for c in report.causes)


def test_nothing_arrived_is_missing_with_refusal_cause() -> None:
    result = run({"worker-1": [], "worker-2": []}, 5,
                 subacks=(("worker-1", SHARED, 0x9E), ("worker-2", SHARED, 0x9E)))
    report = analyse(result, specs(2))
    assert report.exit_code == ExitCode.MISSING
    assert len(report.missing) == 5
    assert any("0x9E" in c for c in report.causes)


def test_literal_share_cause_when_subscriptions_were_accepted() -> None:
    report = analyse(run({"worker-1": [], "worker-2": []}, 4), specs(2))
    assert report.exit_code == ExitCode.MISSING
    assert any("literal" in c for c in report.causes)


def test_duplicates_win_over_missing_and_imbalance() -> None:
    assign = {"worker-1": ["task-1", "task-2", "task-2"], "worker-2": []}
    report = analyse(run(assign, 9, dup={("worker-1", "task-2")}), specs(2))
    failing = {c.name for c in report.checks if c.passed is False}
    assert failing == {"no same-worker repeats", "no missing tasks", "balance"}
    assert report.exit_code == ExitCode.DUPLICATES
    assert report.repeats_dup == 1 and report.repeats_fresh == 0


def test_fresh_repeat_blames_overlapping_subscriptions() -> None:
    assign = rr(2, 6)
    assign["worker-1"].append("task-1")
    report = analyse(run(assign, 6), specs(2))
    assert report.repeats_fresh == 1
    assert any("overlapping subscriptions" in c for c in report.causes)


def test_imbalance_exit_code_and_threshold() -> None:
    assign = {"worker-1": [f"task-{n}" for n in range(1, 8)],
              "worker-2": [f"task-{n}" for n in range(8, 10)]}
    assert analyse(run(assign, 9), specs(2)).exit_code == ExitCode.IMBALANCE
    loose = analyse(run(assign, 9), specs(2), Expectations(max_imbalance=4.0))
    assert loose.exit_code == ExitCode.OK


def test_small_runs_are_not_judged_for_balance() -> None:
    report = analyse(run({"worker-1": ["task-1", "task-2"], "worker-2": []}, 2), specs(2))
    balance = next(c for c in report.checks if c.name == "balance")
    assert balance.passed is None
    assert report.exit_code == ExitCode.OK


def test_one_worker_got_everything_cause() -> None:
    report = analyse(run({"worker-1": [f"task-{n}" for n in range(1, 10)], "worker-2": [],
                          "worker-3": []}, 9), specs(3))
    assert report.exit_code == ExitCode.IMBALANCE
    assert report.balance.max_over_min is None
    assert report.balance.idle_workers == ("worker-2", "worker-3")
    assert any("got everything" in c for c in report.causes)


def test_allow_redelivery_accepts_a_redispatch_from_a_dropped_member() -> None:
    assign = {"worker-1": ["task-1", "task-3"], "worker-2": ["task-2", "task-3"]}
    result = run(assign, 3, incomplete={("worker-1", "task-3")})
    assert analyse(result, specs(2)).exit_code == ExitCode.DUPLICATES
    allowed = analyse(result, specs(2), Expectations(allow_redelivery=True))
    assert allowed.exit_code == ExitCode.OK
    assert allowed.allowed_redeliveries == 1


def test_two_pools_each_expect_one_copy() -> None:
    workers = [WorkerSpec(name="a-1", subscriptions=("$share/a/jobs/+",), pool="a"),
               WorkerSpec(name="a-2", subscriptions=("$share/a/jobs/+",), pool="a"),
               WorkerSpec(name="b-1", subscriptions=("$share/b/jobs/+",), pool="b")]
    assign = {"a-1": ["task-1", "task-3"], "a-2": ["task-2"],
              "b-1": ["task-1", "task-2", "task-3"]}
    report = analyse(run(assign, 3), workers)
    assert not report.cross_worker and not report.missing
    assert report.exit_code == ExitCode.OK


def test_chi_square_survival_function() -> None:
    assert abs(chi_square_sf(3.841, 1) - 0.05) < 1e-3
    assert abs(chi_square_sf(5.991, 2) - 0.05) < 1e-3
    assert abs(chi_square_sf(30.0, 20) - 0.0699) < 1e-3
    assert chi_square_sf(0.0, 3) == 1.0


def test_chi_square_reported_for_large_runs() -> None:
    report = analyse(run(rr(3, 300), 300), specs(3))
    assert report.balance.p_value is not None and report.balance.p_value > 0.99


def test_allow_redelivery_does_not_hide_dup_repeats_without_a_member_loss() -> None:
    assign = {"worker-1": ["task-1", "task-1"], "worker-2": ["task-2"]}
    result = run(assign, 2, dup={("worker-1", "task-1")})
    report = analyse(result, specs(2), Expectations(allow_redelivery=True))
    assert report.repeats_dup == 1 and report.exit_code == ExitCode.DUPLICATES
    assert report.workers[0].repeats == 1


def test_allow_redelivery_accepts_dup_resend_to_a_member_that_came_back() -> None:
    assign = {"worker-1": ["task-1", "task-1"], "worker-2": ["task-2"]}
    result = run(assign, 2, dup={("worker-1", "task-1")}, incomplete={("worker-1", "task-1")})
    strict = analyse(result, specs(2))
    assert strict.repeats_dup == 1 and strict.exit_code == ExitCode.DUPLICATES
    allowed = analyse(result, specs(2), Expectations(allow_redelivery=True))
    assert allowed.exit_code == ExitCode.OK
    assert allowed.allowed_redeliveries == 1 and allowed.workers[0].repeats == 0


def test_abandoned_copies_are_an_input_beside_the_records() -> None:
    # What replay derives from a drop: worker-1 never finished its first copy of task-1.
    gone = frozenset({CopyRef("worker-1", "task-1", 0)})
    result = run({"worker-1": ["task-1", "task-1"], "worker-2": ["task-2"]}, 2,
                 dup={("worker-1", "task-1")})
    allowed = analyse(result, specs(2), Expectations(allow_redelivery=True), abandoned=gone)
    assert allowed.exit_code == ExitCode.OK and allowed.allowed_redeliveries == 1
    lost = analyse(run({"worker-1": ["task-1"], "worker-2": ["task-2"]}, 2), specs(2),
                   abandoned=gone)
    assert lost.missing == ("task-1",) and lost.lost_in_flight == ("task-1",)
    assert all(d.completed for d in result.deliveries)


def test_the_report_carries_no_presentation() -> None:
    report = analyse(run(rr(2, 4), 4), specs(2))
    assert (report.title, report.context, report.timeline) == ("", (), ())


def test_a_task_only_a_dropped_member_held_is_missing() -> None:
    assign = {"worker-1": ["task-1"], "worker-2": ["task-2"]}
    report = analyse(run(assign, 2, incomplete={("worker-1", "task-1")}), specs(2))
    assert report.missing == ("task-1",) and report.lost_in_flight == ("task-1",)
    assert report.exit_code == ExitCode.MISSING
    assert any("in flight" in c for c in report.causes)


def test_uneven_split_within_chance_gets_a_hint() -> None:
    assign = {"worker-1": [f"task-{n}" for n in range(1, 16)],
              "worker-2": [f"task-{n}" for n in range(16, 22)],
              "worker-3": [f"task-{n}" for n in range(22, 31)]}
    report = analyse(run(assign, 30), specs(3))
    balance = next(c for c in report.checks if c.name == "balance")
    assert balance.passed is False and "common for a random dispatcher" in balance.detail



def test_slow_member_behind_is_blamed_not_a_random_dispatcher() -> None:
    """The same uneven split as above, with worker-2 the slow one (--slow-worker under
    least_inflight): the check and the cause name the slow worker and the load-based
    dispatcher, not chance; the unslowed worker-1 with the most tasks is not named."""
    assign = {"worker-1": [f"task-{n}" for n in range(1, 16)],
              "worker-2": [f"task-{n}" for n in range(16, 22)],
              "worker-3": [f"task-{n}" for n in range(22, 31)]}
    pool = [replace(w, work_ms=250.0) if w.name == "worker-2" else w for w in specs(3)]
    report = analyse(run(assign, 30), pool)
    balance = next(c for c in report.checks if c.name == "balance")
    assert balance.passed is False
    assert "worker-2 processes slowly" in balance.detail
    assert "random dispatcher" not in balance.detail
    cause = next(c for c in report.causes if c.startswith("the split is uneven"))
    assert "because worker-2 processes slowly" in cause and "worker-1" not in cause
    # a slow worker that is not behind is not the explanation
    fast_behind = [replace(w, work_ms=250.0) if w.name == "worker-1" else w for w in specs(3)]
    other = analyse(run(assign, 30), fast_behind)
    assert "common for a random dispatcher" in next(
        c for c in other.checks if c.name == "balance").detail

# ------------------------------------------------ runs that did not do their job (never healthy)


def test_unsent_tasks_are_incomplete_not_healthy() -> None:
    result = replace(run(rr(3, 6), 6), unsent=(("task-7", "not sent within 2 s"),
                                                 ("task-8", "not sent within 2 s")))
    report = analyse(result, specs(3))
    assert report.exit_code == ExitCode.INCOMPLETE and report.verdict == "incomplete"
    assert [c.passed for c in report.checks if c.name == "every task sent"] == [False]
    assert report.unsent == result.unsent


def test_unfinished_tasks_and_a_timeout_are_incomplete() -> None:
    result = replace(run(rr(3, 9), 9), settled=False, timeout_s=2.0,
                     unfinished=(("worker-2", "task-2"), ("worker-2", "task-5")))
    report = analyse(result, specs(3))
    assert report.exit_code == ExitCode.INCOMPLETE
    assert report.timed_out and report.verdict == "incomplete (timed out after 2 s)"
    failed = {c.name for c in report.checks if c.passed is False}
    assert failed == {"every task finished", "settled within the timeout"}
    assert any("hit its timeout (2 s)" in c for c in report.causes)


def test_a_timed_out_run_with_missing_tasks_says_both() -> None:
    result = replace(run({"worker-1": ["task-1"], "worker-2": []}, 3), settled=False,
                     timeout_s=1.0)
    report = analyse(result, specs(2))
    assert report.exit_code == ExitCode.MISSING
    assert report.verdict == "missing (timed out after 1 s)"


def test_a_lost_broker_is_exit_3_even_when_what_arrived_looks_fine() -> None:
    result = replace(run(rr(3, 6), 6), connection_lost=("worker-1", "publisher"),
                     unsent=tuple((f"task-{n}", "not sent: the publisher's connection ended")
                                  for n in range(7, 21)))
    report = analyse(result, specs(3))
    assert report.exit_code == ExitCode.UNREACHABLE and report.verdict == "broker lost"
    assert any("connection was lost mid-run" in c for c in report.causes)


def test_duplicates_still_win_over_a_lost_broker() -> None:
    every = [f"task-{n}" for n in range(1, 4)]
    result = replace(run({"worker-1": every, "worker-2": every}, 3),
                     connection_lost=("publisher",))
    assert analyse(result, specs(2)).exit_code == ExitCode.DUPLICATES


def test_steps_not_run_fail_only_when_steps_are_judged() -> None:
    result = replace(run(rr(2, 4), 4), steps_not_run=("step 3 (line 9)",), settled=False,
                     timeout_s=0.1)
    report = analyse(result, specs(2), steps=5)
    assert report.exit_code == ExitCode.INCOMPLETE
    assert [c.passed for c in report.checks if c.name == "every step ran"] == [False]
    assert all(c.name != "every step ran" for c in analyse(run(rr(2, 4), 4), specs(2)).checks)


def test_an_interrupted_run_is_130_whatever_else_it_shows() -> None:
    every = [f"task-{n}" for n in range(1, 4)]
    result = replace(run({"worker-1": every, "worker-2": every}, 3), interrupted=True,
                     settled=False)
    report = analyse(result, specs(2))
    assert report.exit_code == ExitCode.INTERRUPTED and report.verdict == "interrupted"
    assert report.cross_worker  # the partial figures are still there


# ------------------------------------------------ causes match the evidence


def test_publish_refused_as_not_authorized_is_blamed_on_the_acl() -> None:
    refusals = tuple((f"task-{n}", "refused by the broker (0x87 Not authorized)")
                     for n in range(1, 7))
    result = replace(run({"worker-1": [], "worker-2": []}, 6),
                     publish_failures=tuple(t for t, _ in refusals), publish_refusals=refusals)
    causes = " ".join(analyse(result, specs(2)).causes)
    assert "not authorized (0x87)" in causes and "ACL" in causes
    assert "$share" not in causes


def test_publish_to_a_share_topic_is_named_as_such() -> None:
    refusals = tuple((f"task-{n}", "refused by the broker to a $share/... topic (0x87 Not "
                      "authorized)") for n in range(1, 4))
    result = replace(run({"worker-1": [], "worker-2": []}, 3),
                     publish_failures=tuple(t for t, _ in refusals), publish_refusals=refusals)
    causes = " ".join(analyse(result, specs(2)).causes)
    assert "publish to the plain topic" in causes and "ACL denies" not in causes


def test_unacknowledged_publishes_are_not_called_refusals() -> None:
    refusals = (("task-3", "not acknowledged in time"),)
    result = replace(run({"worker-1": ["task-1"], "worker-2": ["task-2"]}, 3),
                     publish_failures=("task-3",), publish_refusals=refusals, settled=False,
                     timeout_s=1.0)
    causes = " ".join(analyse(result, specs(2)).causes)
    assert "refused" not in causes and "never acknowledged" in causes


def test_a_subscription_refused_by_an_acl_is_not_called_literal() -> None:
    subacks = (("worker-1", SHARED, 0x87), ("worker-2", SHARED, 0x87))
    report = analyse(run({"worker-1": [], "worker-2": []}, 4, subacks=subacks), specs(2))
    causes = " ".join(report.causes)
    assert "not authorized" in causes and "literal" not in causes


def test_accepted_subscriptions_that_get_nothing_name_the_probe_only_on_real_brokers() -> None:
    """No refusal, no sign of an ACL: the literal $share reading, and on a real broker the
    probe that tells the readings apart (an ACL is named only with a sign of one:
    tests/analysis/test_refusals.py)."""
    real = analyse(run({"worker-1": [], "worker-2": []}, 4), specs(2))
    emulated = analyse(replace(run({"worker-1": [], "worker-2": []}, 4), emulator_stats={}),
                       specs(2))
    assert "literal" in " ".join(real.causes) and "aetherdiag probe --broker" in real.causes[0]
    assert "ACL" not in " ".join(real.causes) + " ".join(emulated.causes)
    assert "aetherdiag probe" not in " ".join(emulated.causes)


def test_foreign_messages_are_counted_and_explained() -> None:
    result = run(rr(2, 4), 4)
    foreign = tuple(Delivery(worker="worker-1", task_id=None, topic="jobs/live", qos=1,
                             dup=False, retain=False, at=0.0) for _ in range(5))
    report = analyse(replace(result, deliveries=result.deliveries + foreign), specs(2))
    assert report.foreign == 5
    assert any("not published by this run" in c for c in report.causes)
