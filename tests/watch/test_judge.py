"""Summary -> Report: checks, exit codes, causes, the empty watch, interrupts."""

from __future__ import annotations

from watch.synthetic import complete, feed, handled, perform, status

from aetherdiag.analysis import Check
from aetherdiag.exitcodes import ExitCode
from aetherdiag.watch.judge import NO_TASKS, judge
from aetherdiag.watch.tracker import Limits, Tracker


def pool(tracker: Tracker, tasks: int, workers: int) -> Tracker:
    for n in range(tasks):
        feed(tracker, *handled(n, f"t{n}", f"w{n % workers}"))
    return tracker


def failed(report_checks: tuple[Check, ...]) -> set[str]:
    return {c.name for c in report_checks if c.passed is False}


def test_healthy() -> None:
    r = judge(pool(Tracker(), 9, 3).summary(10), target="t", ended="duration")
    assert r.exit_code is ExitCode.OK and r.verdict == "healthy"
    assert [w.unique for w in r.workers] == [3, 3, 3] and r.balance.judged
    assert not failed(r.checks) and r.causes == ()


def test_processed_twice_is_exit_1_naming_both_workers() -> None:
    t = pool(Tracker(), 9, 3)
    feed(t, status(20, "t1", "other"), complete(20.1, "t1", "other"))
    r = judge(t.summary(21), target="t", ended="duration")
    assert r.exit_code is ExitCode.DUPLICATES
    assert r.cross_worker == (("t1", ("h/w1", "h/other")),)
    assert "each task processed by one worker" in failed(r.checks)
    assert "plain subscription" in r.causes[0]


def test_collision_is_exit_1_with_the_dedup_cause() -> None:
    t = feed(Tracker(), perform(0, "t1", digest="a"), status(0.1, "t1", "w"),
             complete(0.2, "t1", "w"), perform(1, "t1", digest="b"))
    r = judge(t.summary(2), target="t", ended="duration")
    assert r.exit_code is ExitCode.DUPLICATES and "no task id collisions" in failed(r.checks)
    assert any("de-dup set" in c for c in r.causes)


def test_resent_alone_passes_and_resent_processed_twice_is_named() -> None:
    t = feed(Tracker(), *handled(0, "t1", "w1"), perform(1, "t1"))
    r = judge(t.summary(2), target="t", ended="duration")
    assert r.exit_code is ExitCode.OK
    t2 = feed(Tracker(), perform(0, "t1"), status(0.1, "t1", "w1"), perform(1, "t1"),
              status(1.1, "t1", "w2"))
    r2 = judge(t2.summary(2), target="t", ended="duration")
    assert r2.exit_code is ExitCode.DUPLICATES
    assert "resent tasks processed once" in failed(r2.checks)
    assert any("resent perform" in c for c in r2.causes)


def test_stalled_is_exit_4() -> None:
    t = pool(Tracker(Limits(stall_after=1)), 9, 3)
    feed(t, perform(10, "lost"))
    t.tick(12)
    r = judge(t.summary(12), target="t", ended="duration")
    assert r.exit_code is ExitCode.MISSING and r.missing == ("lost",)


def test_imbalance_is_exit_5_and_only_judged_with_enough_tasks() -> None:
    t = Tracker()
    for n in range(12):
        feed(t, *handled(n, f"t{n}", "w0" if n < 9 else "w1"))
    r = judge(t.summary(20), target="t", ended="duration")
    assert r.exit_code is ExitCode.IMBALANCE
    small = judge(pool(Tracker(), 2, 2).summary(5), target="t", ended="duration")
    assert small.exit_code is ExitCode.OK and not small.balance.judged


def test_an_idle_worker_that_got_nothing_is_a_row() -> None:
    from aetherdiag.watch.events import Event

    t = pool(Tracker(), 12, 3)
    feed(t, Event(at=0, topic="x", tid=None, action="idle", client="lazy", host="h",
                  scope="engine/process-data/batch1"))
    r = judge(t.summary(10), target="t", ended="duration")
    assert "h/lazy" in [w.name for w in r.workers]
    assert r.exit_code is ExitCode.IMBALANCE


def test_lowest_code_wins_and_interrupt_is_130_with_a_note() -> None:
    t = pool(Tracker(Limits(stall_after=1)), 9, 3)
    feed(t, status(20, "t1", "other"), perform(21, "lost"))
    t.tick(30)
    r = judge(t.summary(30), target="t", ended="duration")
    assert r.exit_code is ExitCode.DUPLICATES
    i = judge(t.summary(30), target="t", ended="interrupted")
    assert i.exit_code is ExitCode.INTERRUPTED and i.interrupted
    assert "without the interrupt the verdict is duplicates (exit 1)" in i.notes[0]
    healthy = pool(Tracker(), 9, 3)  # nothing wrong: the note says so, not "interrupted"
    h = judge(healthy.summary(5), target="t", ended="interrupted")
    assert h.exit_code is ExitCode.INTERRUPTED
    assert "without the interrupt the verdict is healthy (exit 0)" in h.notes[0]


def test_lost_broker_is_exit_3() -> None:
    r = judge(pool(Tracker(), 9, 3).summary(5), target="t", ended="lost", lost="closed")
    assert r.exit_code is ExitCode.UNREACHABLE and r.connection_lost == ("closed",)


def test_an_empty_watch_is_incomplete_with_a_hint_naming_the_filters() -> None:
    r = judge(Tracker().summary(3), target="t", ended="duration",
              filters=("production/+/+/+/+/+", "production/system/online/+/+/online"))
    assert r.exit_code is ExitCode.INCOMPLETE and r.verdict == NO_TASKS
    assert "tasks observed" in failed(r.checks)
    # nothing seen is nothing vouched for: no check passes
    assert not [c.name for c in r.checks if c.passed is True]
    assert {c.detail for c in r.checks[:5]} == {"not judged: no task observed"}
    hint = r.notes[0]
    assert hint.startswith("hint: no task arrived on production/+/+/+/+/+, production/system")
    assert "--union" in hint and "idle pool" in hint and "run longer" in hint
    assert "mosquitto_sub -v -t 'production/+/+/+/+/+'" in hint


def test_an_empty_watch_loses_to_a_lower_code_and_to_the_interrupt() -> None:
    lost = judge(Tracker().summary(3), target="t", ended="lost", lost="closed")
    assert lost.exit_code is ExitCode.UNREACHABLE
    i = judge(Tracker().summary(3), target="t", ended="interrupted")
    assert i.exit_code is ExitCode.INTERRUPTED
    assert "without the interrupt the verdict is no tasks observed (exit 7)" in i.notes[0]


def test_answers_alone_are_tasks_observed() -> None:
    t = feed(Tracker(), status(0, "t1", "w1"), complete(0.1, "t1", "w1"))
    r = judge(t.summary(1), target="t", ended="duration")
    assert r.exit_code is ExitCode.OK and "tasks observed" not in {c.name for c in r.checks}


def test_a_recording_cut_off_is_incomplete_unless_a_lower_code_applies() -> None:
    r = judge(pool(Tracker(), 9, 3).summary(10), target="t", ended="cut",
              recording="pool.jsonl")
    assert r.exit_code is ExitCode.INCOMPLETE and r.verdict == "incomplete"
    assert "recording complete" in failed(r.checks)
    assert r.notes[0].startswith("pool.jsonl ends without the watch's end record")
    t = pool(Tracker(), 9, 3)
    feed(t, status(20, "t1", "other"))
    worse = judge(t.summary(21), target="t", ended="cut", recording="pool.jsonl")
    assert worse.exit_code is ExitCode.DUPLICATES
    assert {"recording complete", "each task processed by one worker"} <= failed(worse.checks)


def test_retained_messages_are_a_note() -> None:
    from aetherdiag.watch.events import Event

    t = pool(Tracker(), 9, 3)
    feed(t, Event(at=0, topic="x", tid="old", action="perform", retained=True))
    r = judge(t.summary(10), target="t", ended="duration")
    assert r.exit_code is ExitCode.OK
    assert "1 retained message(s) ignored: stale state from before the watch, not live " \
        "tasks" in r.notes


def test_the_pool_counts_announcements_since_the_start_and_workers_answering() -> None:
    from aetherdiag.watch.events import Event
    from aetherdiag.watch.judge import pool_seen

    t = pool(Tracker(), 9, 3)
    feed(t, Event(at=0, topic="x", tid=None, action="online", client="w0", host="h",
                  scope="system/online/h"))
    s = t.summary(10)
    r = judge(s, target="t", ended="duration")
    [note] = [n for n in r.notes if n.startswith("pool:")]
    assert note.startswith("pool: 1 process(es) announced themselves since the watch started "
                           "(1 online, 0 idle); 3 worker(s) seen answering tasks, 2 of them "
                           "not announced")
    assert pool_seen(s) == (("announced since start", "1"),
                            ("workers answering", "3"))


def test_finished_memory_full_and_recalled_tasks_are_notes() -> None:
    t = pool(Tracker(Limits(forget_after=1, max_finished=5)), 9, 3)
    t.tick(100)
    feed(t, status(200, "t8", "late"), status(200, "t0", "late"))
    r = judge(t.summary(201), target="t", ended="duration")
    assert r.exit_code is ExitCode.DUPLICATES and r.cross_worker == (("t8", ("h/w2", "h/late")),)
    notes = "\n".join(r.notes)
    assert "finished-task memory full after 5 tasks (4 older ones dropped): a second answer " \
        "to a task older than that cannot be recognised" in notes
    assert "1 finished and forgotten task(s) heard from again" in notes
    assert "or finished before the finished-task memory dropped it" in notes  # t0


def test_notes_name_forgotten_and_unparsed() -> None:
    t = pool(Tracker(Limits(forget_after=1)), 9, 3)
    t.tick(100)
    r = judge(t.summary(100), target="t", ended="duration")
    assert any("9 finished task(s) forgotten" in n for n in r.notes)
