"""The timeline a page draws: deliveries per worker per time bucket, duplicates and
redeliveries marked, bounded in rows and buckets whatever the run's size."""

from __future__ import annotations

from aetherdiag.analysis.activity import MAX_BUCKETS, MAX_ROWS, activity, bucket_width
from aetherdiag.harness.model import Delivery, RunResult


def d(worker: str, task: str, at: float, dup: bool = False) -> Delivery:
    return Delivery(worker=worker, task_id=task, topic="t", qos=1, dup=dup, retain=False, at=at)


def test_marks_duplicates_and_redeliveries() -> None:
    result = RunResult(target="x", workers=("a", "b"), published=("t1", "t2"), deliveries=(
        d("a", "t1", 0.01), d("b", "t1", 0.02), d("a", "t1", 0.5, dup=True),
        d("b", "t2", 0.9), d("b", "t2", 0.95), d("a", "foreign", 0.3)))
    act = activity(result, {"a": "p", "b": "p"}, result.published)
    assert act is not None and act.hidden == 0
    a, b = act.rows
    assert sum(a.deliveries) == 2 and sum(b.deliveries) == 3  # the foreign copy left out
    assert sum(a.duplicates) == 0 and sum(b.duplicates) == 1
    assert sum(a.redeliveries) == 1 and sum(b.redeliveries) == 1
    assert len(a.deliveries) <= MAX_BUCKETS


def test_pools_are_judged_apart() -> None:
    result = RunResult(target="x", workers=("a", "b"), published=("t1",), deliveries=(
        d("a", "t1", 0.1), d("b", "t1", 0.2)))
    act = activity(result, {"a": "p", "b": "q"}, result.published)
    assert act is not None and sum(act.rows[1].duplicates) == 0


def test_bounded_rows_keep_the_interesting_workers() -> None:
    names = tuple(f"w{i}" for i in range(200))
    deliveries = [d(n, f"t{i}", i * 0.01) for i, n in enumerate(names)]
    deliveries.append(d("w150", "t0", 3.0))  # w0's task reached w150 too
    result = RunResult(target="x", workers=names, published=tuple(f"t{i}" for i in range(200)),
                       deliveries=tuple(deliveries))
    act = activity(result, dict.fromkeys(names, "p"), result.published)
    assert act is not None
    assert len(act.rows) == MAX_ROWS and act.hidden == 200 - (MAX_ROWS - 1)
    assert "w150" in [r.name for r in act.rows]
    assert act.rows[-1].name == f"{act.hidden} other workers"
    assert sum(sum(r.deliveries) for r in act.rows) == 201


def test_bucket_width_is_round() -> None:
    assert bucket_width(0.05) == 0.001
    assert bucket_width(2.0) == 0.05
    assert bucket_width(600.0) == 10.0
    assert bucket_width(10 ** 7) * MAX_BUCKETS >= 10 ** 7


def test_no_deliveries_no_activity() -> None:
    result = RunResult(target="x", workers=("a",), published=("t1",))
    assert activity(result, {"a": "p"}, result.published) is None
