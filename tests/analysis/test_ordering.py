"""The ordering check and the per-publisher figures (analysis/ordering.py), on hand-made runs:
which order each strategy promises, how out-of-order deliveries are counted per worker, per
publisher and per key, what is left out (DUP copies, repeats, re-dispatches), the check's
verdict and exit code, and the JSON round trip of the new report fields."""

from __future__ import annotations

import json

import pytest

from aetherdiag.analysis import Expectations, analyse
from aetherdiag.analysis.ordering import (
    ordering_of,
    promise,
    publishers_line,
    summary_line,
)
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec
from aetherdiag.render.load import load_saved
from aetherdiag.render.report import to_dict


def got(worker: str, task: int, pub: str, seq: int, at: float, *, dup: bool = False,
        key: str | None = None) -> Delivery:
    return Delivery(worker=worker, task_id=f"task-{task}", topic=f"t/{key or task}", qos=1,
                    dup=dup, retain=False, at=at, publisher=pub, seq=seq, key=key)


def run(deliveries: list[Delivery], workers: int = 2, tasks: int = 4,
        publishers: dict[int, tuple[str, int]] | None = None) -> RunResult:
    """``tasks`` published; ``publishers``: task n -> (publisher, seq) (default: one
    publisher, seq n)."""
    owner = publishers or {n: ("publisher", n) for n in range(1, tasks + 1)}
    return RunResult(target="t", workers=tuple(f"worker-{i}" for i in range(1, workers + 1)),
                     published=tuple(f"task-{n}" for n in range(1, tasks + 1)),
                     deliveries=tuple(deliveries),
                     task_publishers=tuple((f"task-{n}", p, s) for n, (p, s) in owner.items()))


def specs(n: int) -> list[WorkerSpec]:
    return [WorkerSpec(name=f"worker-{i}", subscriptions=("$share/g/t/+",))
            for i in range(1, n + 1)]


STICKY = Expectations(order="publisher", order_basis="sticky sends every task to one member",
                      order_check=True)


@pytest.mark.parametrize(("strategy", "kwargs", "scope", "words"), [
    ("sticky", {}, "publisher", "one member"),
    ("hash_clientid", {}, "publisher", "each publisher's tasks"),
    ("hash_clientid", {"fresh_ids": True}, "none", "client id of its own"),
    ("hash_topic", {}, "none", "--keys K"),
    ("hash_topic", {"keys": 3}, "key", "each key's tasks"),
    ("round_robin", {}, "none", "round_robin promises no order"),
    ("random", {"keys": 3}, "none", "random promises no order"),
    ("least_inflight", {}, "none", "promises no order"),
    ("local", {}, "none", "promises no order"),
    (None, {}, "none", "unknown"),
    (None, {"expect_order": True}, "worker", "--expect-order"),
    ("round_robin", {"expect_order": True, "keys": 2}, "worker", "--expect-order"),
    # a strategy that promises more is held to its own promise
    ("sticky", {"expect_order": True}, "publisher", "one member"),
    ("hash_topic", {"expect_order": True, "keys": 3}, "key", "each key's tasks"),
    ("hash_topic", {"expect_order": True}, "worker", "--expect-order"),
])
def test_what_each_strategy_promises(strategy: str | None, kwargs: dict[str, object],
                                     scope: str, words: str) -> None:
    got_scope, basis = promise(strategy, **kwargs)  # type: ignore[arg-type]
    assert (got_scope, words in basis) == (scope, True), basis


def test_out_of_order_per_worker_and_per_publisher() -> None:
    o = ordering_of(run([got("worker-1", 1, "publisher", 1, 0.1),
                         got("worker-1", 3, "publisher", 3, 0.2),
                         got("worker-1", 2, "publisher", 2, 0.3),
                         got("worker-2", 4, "publisher", 4, 0.4)]), STICKY,
                    {f"task-{n}" for n in range(1, 5)})
    assert o is not None and o.judged and o.out_of_order == 1 and o.counted == 4
    assert dict(o.by_worker) == {"worker-1": 1, "worker-2": 0}
    assert dict(o.by_publisher) == {"publisher": 1}
    assert o.examples == ("worker-1 got publisher #2 after #3",)


def test_across_workers_the_receive_order_counts() -> None:
    """Each worker in order on its own, but #1 arrived after #2 had reached another one."""
    o = ordering_of(run([got("worker-1", 2, "publisher", 2, 0.1),
                         got("worker-2", 1, "publisher", 1, 0.2)], tasks=2), STICKY,
                    {"task-1", "task-2"})
    assert o is not None
    assert dict(o.by_worker) == {"worker-1": 0, "worker-2": 0}
    assert o.out_of_order == 1
    assert o.examples == ("worker-2 got publisher #1 after #2 reached worker-1",)


EXPECT_ORDER = Expectations(order="worker", order_basis="--expect-order: each worker gets each "
                           "publisher's tasks in the order sent", order_check=True)


def test_expect_order_judges_each_worker_not_the_race_between_workers() -> None:
    """Held per worker (--expect-order on a strategy that promises nothing more): #1 reaching
    worker-2 after #2 reached worker-1 is a race between two sockets, not a fault; worker-1
    getting #3 before #2 is."""
    across = ordering_of(run([got("worker-1", 2, "publisher", 2, 0.1),
                              got("worker-2", 1, "publisher", 1, 0.2)], tasks=2),
                         EXPECT_ORDER, {"task-1", "task-2"})
    assert across is not None and across.judged and across.out_of_order == 0
    assert dict(across.by_publisher) == {"publisher": 1}  # shown, not judged
    within = ordering_of(run([got("worker-1", 1, "publisher", 1, 0.1),
                              got("worker-1", 3, "publisher", 3, 0.2),
                              got("worker-1", 2, "publisher", 2, 0.3),
                              got("worker-2", 4, "publisher", 4, 0.4)]),
                         EXPECT_ORDER, {f"task-{n}" for n in range(1, 5)})
    assert within is not None and within.out_of_order == 1
    assert within.examples == ("worker-1 got publisher #2 after #3",)
    report = analyse(run([got("worker-1", 1, "publisher", 1, 0.1),
                          got("worker-1", 3, "publisher", 3, 0.2),
                          got("worker-1", 2, "publisher", 2, 0.3),
                          got("worker-2", 4, "publisher", 4, 0.4)]),
                     specs(2), EXPECT_ORDER)
    check = next(c for c in report.checks if c.name == "ordering")
    assert check.passed is False and check.detail.startswith("1 of 4 deliveries out of order "
                                                             "per worker")
    assert load_saved(json.loads(json.dumps(to_dict(report)))) == report


def test_redelivered_and_repeated_copies_are_left_out() -> None:
    """A DUP resend after a reconnect, a re-dispatch elsewhere and a plain repeat all come
    late by nature; the duplicate checks judge them, ordering leaves them out."""
    o = ordering_of(run([got("worker-1", 1, "publisher", 1, 0.1),
                         got("worker-1", 2, "publisher", 2, 0.2),
                         got("worker-1", 1, "publisher", 1, 0.3, dup=True),
                         got("worker-2", 1, "publisher", 1, 0.4),
                         got("worker-1", 2, "publisher", 2, 0.5)], tasks=2), STICKY,
                    {"task-1", "task-2"})
    assert o is not None and o.out_of_order == 0 and (o.counted, o.left_out) == (2, 3)


def test_keys_are_compared_per_publisher() -> None:
    """Two publishers' sequence numbers are independent: p2's #1 after p1's #3 on one key is
    in order; p1's #1 after its #3 on that key is not."""
    owner = {1: ("p1", 3), 2: ("p2", 1), 3: ("p1", 1)}
    o = ordering_of(run([got("worker-1", 1, "p1", 3, 0.1, key="key-1"),
                         got("worker-2", 2, "p2", 1, 0.2, key="key-1"),
                         got("worker-2", 3, "p1", 1, 0.3, key="key-1")], tasks=3,
                        publishers=owner),
                    Expectations(order="key", order_basis="hash_topic", order_check=True),
                    {"task-1", "task-2", "task-3"})
    assert o is not None and dict(o.by_key) == {"key-1": 1} and o.out_of_order == 1
    assert o.examples == ("worker-2 got p1 #1 (key key-1) after #3 reached worker-1",)


def test_a_broken_promise_fails_with_exit_6() -> None:
    result = run([got("worker-1", 2, "publisher", 2, 0.1), got("worker-1", 1, "publisher", 1, 0.2),
                  got("worker-1", 3, "publisher", 3, 0.3), got("worker-1", 4, "publisher", 4, 0.4)],
                 workers=1)
    report = analyse(result, specs(1), STICKY)
    check = next(c for c in report.checks if c.name == "ordering")
    assert check.passed is False and check.code is ExitCode.EXPECTATIONS_NOT_MET
    assert check.detail.startswith("1 of 4 deliveries out of order per publisher, though sticky")
    assert report.exit_code is ExitCode.EXPECTATIONS_NOT_MET and report.verdict == "out of order"
    line = summary_line(report)
    assert line == "1 out of order per worker, 1 per publisher of 4 (judged per publisher)"
    # the same deliveries in order pass
    fine = analyse(run([got("worker-1", n, "publisher", n, n / 10) for n in range(1, 5)],
                       workers=1), specs(1), STICKY)
    assert fine.exit_code is ExitCode.OK
    assert [c.passed for c in fine.checks if c.name == "ordering"] == [True]
    assert summary_line(fine) == ("0 out of order per worker, 0 per publisher of 4 (judged per "
                                  "publisher)")


def test_counts_without_a_promise_are_shown_not_judged() -> None:
    result = run([got("worker-1", 2, "publisher", 2, 0.1), got("worker-2", 1, "publisher", 1, 0.2)],
                 tasks=2)
    expect = Expectations(order="none", order_basis="round_robin promises no order",
                          order_check=True)
    report = analyse(result, specs(2), expect)
    check = next(c for c in report.checks if c.name == "ordering")
    assert check.passed is None and check.code is ExitCode.EXPECTATIONS_NOT_MET
    assert check.detail == ("not judged: round_robin promises no order (0 out of order per "
                            "worker, 1 per publisher of 2)")
    assert report.ordering is not None and report.ordering.out_of_order is None
    assert summary_line(report) == "0 out of order per worker, 1 per publisher of 2 (not judged)"


def test_no_check_unless_asked_and_no_figures_without_sequence_numbers() -> None:
    result = run([got("worker-1", 1, "publisher", 1, 0.1)], tasks=1)
    report = analyse(result, specs(2))
    assert all(c.name != "ordering" for c in report.checks)
    assert report.ordering is not None and summary_line(report) is None
    bare = run([Delivery(worker="worker-1", task_id="task-1", topic="t", qos=0, dup=False,
                         retain=False, at=0.1)], tasks=1)
    assert analyse(bare, specs(2)).ordering is None
    asked = analyse(bare, specs(2), STICKY)
    check = next(c for c in asked.checks if c.name == "ordering")
    assert check.passed is None and "no delivery carried a sequence number" in check.detail


def test_publisher_figures_and_their_line() -> None:
    """Three publishers, one task each, every first task on worker-1: the per-publisher-rr
    pitfall, named in the table line."""
    owner = {1: ("publisher-1", 1), 2: ("publisher-2", 1), 3: ("publisher-3", 1)}
    result = run([got("worker-1", n, f"publisher-{n}", 1, n / 10) for n in (1, 2, 3)],
                 workers=3, tasks=3, publishers=owner)
    report = analyse(result, specs(3))
    assert [(p.name, p.sent, p.delivered, p.workers, p.first_worker)
            for p in report.publishers] == [
        (f"publisher-{n}", 1, 1, (("worker-1", 1),), "worker-1") for n in (1, 2, 3)]
    assert publishers_line(report) == (
        "publisher-1: 1 sent → worker-1 1; publisher-2: 1 sent → worker-1 1; publisher-3: "
        "1 sent → worker-1 1 (every publisher's first task went to worker-1)")
    one = analyse(run([got("worker-1", 1, "publisher", 1, 0.1)], tasks=1), specs(2))
    assert publishers_line(one) is None


def test_json_round_trip_of_the_new_fields() -> None:
    owner = {1: ("publisher-1", 1), 2: ("publisher-2", 1), 3: ("publisher-1", 2)}
    result = run([got("worker-1", 3, "publisher-1", 2, 0.1, key="key-1"),
                  got("worker-2", 1, "publisher-1", 1, 0.2, key="key-1"),
                  got("worker-2", 2, "publisher-2", 1, 0.3, key="key-2")],
                 tasks=3, publishers=owner)
    report = analyse(result, specs(2), STICKY)
    doc = json.loads(json.dumps(to_dict(report)))
    assert doc["publishers"][0] == {"name": "publisher-1", "sent": 2, "delivered": 2,
                                    "workers": {"worker-1": 1, "worker-2": 1},
                                    "first_worker": "worker-2"}
    assert doc["ordering"]["judged"] is True and doc["ordering"]["out_of_order"] == 1
    assert doc["ordering"]["by_key"] == {"key-1": 1, "key-2": 0}
    again = load_saved(doc)
    assert again == report
