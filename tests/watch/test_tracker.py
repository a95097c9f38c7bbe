"""The tracker, one finding at a time, and its memory bounds (simulated clock)."""

from __future__ import annotations

from watch.synthetic import SCOPE, complete, feed, handled, perform, status

from aetherdiag.watch.events import Event
from aetherdiag.watch.tracker import Limits, Tracker


def test_healthy_pool_counts_per_worker() -> None:
    t = Tracker()
    for n in range(9):
        feed(t, *handled(n, f"t{n}", f"w{n % 3}"))
    s = t.summary(10.0)
    assert s.tasks == 9 and s.handled == 9
    assert [(w.name, w.unique, w.received) for w in s.workers] == [
        ("h/w0", 3, 3), ("h/w1", 3, 3), ("h/w2", 3, 3)]
    assert all(n == 0 for n in s.counts.values())


def test_processed_by_several_workers_is_counted_once_per_task() -> None:
    t = feed(Tracker(), *handled(0, "t1", "w1"), status(0.5, "t1", "w2"),
             complete(0.6, "t1", "w2"), status(0.7, "t1", "w3"))
    s = t.summary(1.0)
    assert s.counts["multi"] == 1
    assert dict(s.examples["multi"]) == {"t1": "h/w1, h/w2, h/w3"}
    assert [f.kind for f in t.recent] == ["multi"]


def test_same_worker_again_from_two_progress_zero_statuses() -> None:
    t = feed(Tracker(), *handled(0, "t1", "w1"), status(1, "t1", "w1"),
             status(1.1, "t1", "w1", progress=50), complete(2, "t1", "w1"))
    s = t.summary(3)
    assert s.counts["repeat"] == 1 and s.repeats == 1 and s.counts["multi"] == 0
    assert s.workers[0].received == 2 and s.workers[0].unique == 1


def test_a_perform_with_no_status_stalls_after_the_limit() -> None:
    t = Tracker(Limits(stall_after=2))
    feed(t, perform(0, "t1"), *handled(0.5, "t2", "w1"))
    t.tick(1.9)
    assert t.counts["stalled"] == 0
    t.tick(2.0)
    assert t.counts["stalled"] == 1 and dict(t.summary(2).examples["stalled"]).keys() == {"t1"}
    feed(t, status(5, "t1", "w1"))
    assert t.summary(5).late == 1


def test_no_stalls_when_no_one_is_expected_to_answer() -> None:
    t = Tracker(Limits(stall_after=1, expects_replies=False))
    feed(t, perform(0, "t1"))
    t.tick(100)
    assert t.counts["stalled"] == 0


def test_resent_performs_and_resent_that_led_to_double_processing() -> None:
    t = feed(Tracker(), perform(0, "t1"), status(0.1, "t1", "w1"), perform(1, "t1"),
             perform(1.5, "t1"), status(1.1, "t1", "w2"))
    s = t.summary(2)
    assert s.counts["resent"] == 1 and s.resent_performs == 2
    assert s.counts["multi"] == 1 and s.resent_doubled == 1
    assert s.counts["collision"] == 0


def test_tid_collision_by_payload_or_by_caller() -> None:
    t = feed(Tracker(), perform(0, "t1", digest="a"), perform(1, "t1", digest="b"),
             perform(0, "t2", caller="c1"), perform(1, "t2", caller="c2"))
    s = t.summary(2)
    assert s.counts["collision"] == 2 and s.counts["resent"] == 0
    assert "another caller" in dict(s.examples["collision"])["t2"]


def test_same_tid_in_another_scope_is_another_task() -> None:
    other = Event(at=1, topic="y", tid="t1", action="perform", client="c1", host="h",
                  digest="zz", scope="other/job/ctx")
    t = feed(Tracker(), perform(0, "t1"), other)
    assert t.summary(2).counts["collision"] == 0 and t.tasks == 2


def test_unparsed_and_unattributed_answers_are_counted_not_raised() -> None:
    bad = Event(at=0.1, topic="x/t1/status", tid="t1", action="status", parsed=False,
                scope=SCOPE)
    t = feed(Tracker(Limits(stall_after=1)), perform(0, "t1"), bad)
    t.tick(5)
    s = t.summary(5)
    assert s.unparsed == 1 and s.unattributed == 1 and s.counts["stalled"] == 0


def test_answers_without_a_perform_and_perform_after_its_answer() -> None:
    t = feed(Tracker(), status(0, "t1", "w1"), complete(0.1, "t1", "w1"))
    assert t.summary(1).unperformed == 1 and t.tasks == 0
    feed(t, perform(0.2, "t1"))
    assert t.summary(1).unperformed == 0 and t.tasks == 1


def test_pool_from_online_and_idle() -> None:
    online = Event(at=0, topic="p/system/online/h/a/online", tid=None, action="online",
                   client="a", host="h", scope="system/online/h")
    idle = Event(at=0, topic="p/x//idle", tid=None, action="idle", client="b", host="h",
                 scope=SCOPE)
    s = feed(Tracker(), online, idle).summary(1)
    assert s.pool == (("h/a", ("online",)), ("h/b", ("idle",)))
    assert s.idle_scopes == {"h/b": (SCOPE,)}


def test_finished_tasks_are_forgotten_and_memory_stays_bounded() -> None:
    t = Tracker(Limits(forget_after=5))
    for n in range(1000):
        feed(t, *handled(n * 0.1, f"t{n}", f"w{n % 4}"))
    t.tick(200.0)
    s = t.summary(200.0)
    assert s.forgotten == 1000 and len(t._tasks) == 0
    assert sum(w.unique for w in s.workers) == 1000  # counts survive forgetting
    assert all(len(w.tasks) <= t.limits.max_tasks_listed for w in s.workers)


def test_forgetting_waits_for_quiet_and_keeps_detecting_until_then() -> None:
    t = Tracker(Limits(forget_after=5))
    feed(t, *handled(0, "t1", "w1"), status(4, "t1", "w2"))
    t.tick(8)  # last activity at 4: not forgotten yet
    assert t.forgotten == 0
    feed(t, status(8.5, "t1", "w3"))
    assert t.counts["multi"] == 1
    t.tick(14)
    assert t.forgotten == 1


def test_live_tasks_are_capped_and_examples_too() -> None:
    t = Tracker(Limits(max_tracked=50, max_examples=5, stall_after=1, forget_after=1000))
    for n in range(200):
        feed(t, perform(n * 0.01, f"t{n}"))
    assert len(t._tasks) <= 50 and t.evicted == 150
    t.tick(10)
    s = t.summary(10)
    assert s.counts["stalled"] == 50 and len(s.examples["stalled"]) == 5


def test_open_keys_and_settled() -> None:
    t = Tracker(Limits(stall_after=1))
    feed(t, perform(0, "a"), perform(0, "b"), status(0.1, "b", "w"))
    keys = t.open_keys()
    assert {k[1] for k in keys} == {"a", "b"} and not t.settled(keys)
    feed(t, complete(0.2, "b", "w"))
    t.tick(1.0)
    assert t.settled(keys)


def test_snapshot_for_the_live_view() -> None:
    t = feed(Tracker(), *handled(0, "t1", "w1"), status(0.1, "t1", "w2"))
    snap = t.snapshot(3.0)
    assert snap.tasks == 1 and dict(snap.counts)["multi"] == 1
    assert {name for name, _ in snap.workers} == {"h/w1", "h/w2"}
    assert snap.recent[0].tid == "t1"


def test_a_task_answered_by_several_workers_counts_as_shared_on_each_once() -> None:
    t = Tracker(Limits(stall_after=100))
    feed(t, perform(1, "t1"), status(2, "t1", "a"), status(3, "t1", "b"), status(4, "t1", "c"),
         status(5, "t1", "b"), perform(6, "t2"), status(7, "t2", "a"))
    shared = {w.name: (w.unique, w.shared) for w in t.summary(10).workers}
    assert shared == {"h/a": (2, 1), "h/b": (1, 1), "h/c": (1, 1)}
