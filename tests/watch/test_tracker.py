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


# -- the finished-task memory ------------------------------------------------------------------


def forgotten(limits: Limits, *events: Event, at: float = 100.0) -> Tracker:
    """A tracker fed ``events``, then ticked at ``at`` so every finished task is forgotten."""
    t = feed(Tracker(limits), *events)
    t.tick(at)
    assert not t._tasks, "every task forgotten"
    return t


def test_a_second_worker_answering_a_forgotten_task_is_processed_twice() -> None:
    t = forgotten(Limits(forget_after=1), *handled(0, "t1", "w1"))
    assert t.forgotten == 1
    feed(t, status(500, "t1", "w2"), complete(500.1, "t1", "w2"))
    s = t.summary(501)
    assert s.counts["multi"] == 1 and dict(s.examples["multi"]) == {"t1": "h/w1, h/w2"}
    assert s.unperformed == 0 and s.tasks == 1 and s.handled == 1  # not a task of its own
    assert s.recalled == 1 and s.repeats == 0
    assert {w.name: (w.unique, w.shared) for w in s.workers} == {"h/w1": (1, 1),
                                                                 "h/w2": (1, 1)}


def test_a_third_worker_later_still_is_named_and_counted_once() -> None:
    t = forgotten(Limits(forget_after=1), *handled(0, "t1", "w1"))
    feed(t, status(50, "t1", "w2"))
    t.tick(60)  # forgotten again, after the late answer
    assert not t._tasks and t.forgotten == 1  # counted once
    feed(t, status(90, "t1", "w3"))
    s = t.summary(91)
    assert s.counts["multi"] == 1 and dict(s.examples["multi"]) == {"t1": "h/w1, h/w2, h/w3"}
    assert s.recalled == 2


def test_the_same_worker_again_after_forgetting_is_a_repeat_not_a_duplicate() -> None:
    t = forgotten(Limits(forget_after=1), *handled(0, "t1", "w1"))
    feed(t, status(50, "t1", "w1"), status(50.1, "t1", "w1", progress=40))
    s = t.summary(51)
    assert s.counts["repeat"] == 1 and s.counts["multi"] == 0 and s.repeats == 1


def test_a_stalled_task_in_progress_completes_after_forgetting_without_a_finding() -> None:
    t = Tracker(Limits(stall_after=1, forget_after=5))
    feed(t, perform(0, "t1"))
    t.tick(1)  # stalled
    feed(t, status(2, "t1", "w1"))  # late, and now in progress
    t.tick(100)
    assert not t._tasks
    feed(t, complete(200, "t1", "w1"))
    s = t.summary(201)
    assert s.counts == {"multi": 0, "repeat": 0, "stalled": 1, "resent": 0, "collision": 0}
    assert s.late == 1 and s.unperformed == 0


def test_a_stalled_task_answered_after_forgetting_is_late_not_before_the_watch() -> None:
    t = Tracker(Limits(stall_after=1, forget_after=5))
    feed(t, perform(0, "t1"))
    t.tick(1)  # stalled
    t.tick(100)  # forgotten
    assert t.counts["stalled"] == 1 and t.forgotten == 1
    feed(t, status(300, "t1", "w1"))
    s = t.summary(301)
    assert s.late == 1 and s.unperformed == 0 and s.handled == 1


def test_a_forgotten_task_performed_again_is_resent_or_a_collision() -> None:
    t = forgotten(Limits(forget_after=1), *handled(0, "t1", "w1"), *handled(1, "t2", "w1"))
    feed(t, perform(50, "t1"), perform(50, "t2", digest="other"))
    s = t.summary(51)
    assert s.tasks == 2 and s.performs == 4
    assert s.counts["resent"] == 1 and s.counts["collision"] == 1
    feed(t, status(51, "t1", "w2"))  # the resend processed by another worker
    assert t.summary(52).resent_doubled == 1


def test_generic_tasks_with_no_replies_are_remembered_too() -> None:
    t = forgotten(Limits(forget_after=1, expects_replies=False), perform(0, "t1"))
    feed(t, perform(50, "t1"))
    assert t.summary(51).counts["resent"] == 1 and t.tasks == 1


def test_finished_tasks_dropped_from_the_live_table_early_are_remembered() -> None:
    t = Tracker(Limits(max_tracked=2, forget_after=1000))
    feed(t, *handled(0, "t1", "w1"), *handled(1, "t2", "w1"), *handled(2, "t3", "w1"))
    assert len(t._tasks) == 2 and t.evicted == 0 and t.forgotten == 1
    feed(t, status(3, "t1", "w2"))
    assert t.counts["multi"] == 1


def test_the_finished_memory_is_bounded_and_says_what_it_dropped() -> None:
    t = Tracker(Limits(forget_after=1, max_finished=3))
    for n in range(5):
        feed(t, *handled(n, f"t{n}", "w1"))
    t.tick(100)
    assert len(t._finished) == 3 == len(t._finished_order)
    s = t.summary(100)
    assert s.forgotten == 5 and s.finished_dropped == 2
    feed(t, status(200, "t0", "w2"), status(200, "t4", "w2"))  # t0 was dropped, t4 kept
    s = t.summary(201)
    assert s.counts["multi"] == 1 and dict(s.examples["multi"]) == {"t4": "h/w1, h/w2"}
    assert s.unperformed == 1  # t0: no longer recognisable


def test_a_recalled_task_keeps_its_place_in_the_finished_memory() -> None:
    t = Tracker(Limits(forget_after=1, max_finished=2))
    feed(t, *handled(0, "t0", "w1"), *handled(0, "t1", "w1"))
    t.tick(10)
    feed(t, status(20, "t0", "w1", progress=50))  # recalled, forgotten again below
    t.tick(30)
    feed(t, *handled(40, "t2", "w1"))
    t.tick(50)  # the oldest entry (t0, recalled or not) goes first
    assert list(t._finished_order) == [f"2:t1/{SCOPE}", f"2:t2/{SCOPE}"]
    assert t.finished_dropped == 1


def test_retained_messages_are_counted_and_never_tracked() -> None:
    stale = Event(at=0, topic="x/old/perform", tid="old", action="perform", client="c",
                  host="h", digest="d", scope=SCOPE, retained=True)
    t = feed(Tracker(Limits(stall_after=1)), stale)
    t.tick(10)
    s = t.summary(10)
    assert s.retained == 1 and s.tasks == 0 and s.counts["stalled"] == 0 and not t._tasks
    assert t.snapshot(10).retained == 1


def test_the_finished_memory_per_entry_stays_within_its_documented_bytes() -> None:
    """The bytes of every object the finished-task memory holds (keys, entries, digests, the
    dict and the order queue; names are shared), per entry: 36-character tids."""
    import sys
    import uuid

    from aetherdiag.watch.tracker import FINISHED_ENTRY_BYTES

    n = 10_000
    t = Tracker(Limits(forget_after=1))
    for i in range(n):
        tid = str(uuid.uuid4())
        feed(t, perform(0, tid, digest=f"{i:016x}"), status(0, tid, f"w{i % 3}"),
             complete(0, tid, f"w{i % 3}"))
    t.tick(10)
    finished = t._finished
    assert len(finished) == n and not t._tasks
    held = sys.getsizeof(finished) + sys.getsizeof(t._finished_order) + sum(
        sys.getsizeof(key) + sys.getsizeof(entry) + sys.getsizeof(entry[0])
        for key, entry in finished.items())
    assert held / n < FINISHED_ENTRY_BYTES, held / n
