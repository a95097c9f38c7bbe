"""Run records (aetherdiag.record): written and read back to the same values, bad lines named
as FILE:LINE, shard records merged in global order or refused with the files named; and the
shard helpers (slices, ``--shard``, ``--run-id``)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from aetherdiag.analysis import Expectations
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import (
    ClientIdCollision,
    ClosedAfter,
    Delivery,
    FleetEvent,
    Holder,
    LatencyRecord,
    ProcessExit,
    RunResult,
    WorkerSpec,
)
from aetherdiag.record import (
    Failure,
    RecordError,
    Recording,
    RunHeader,
    Shard,
    merge,
    read_record,
    write_record,
)
from aetherdiag.workers.shard import check_run_id, parse_shard, slice_of

SPECS = tuple(WorkerSpec(name=f"worker-{i}", subscriptions=("$share/g/t/+",), node=1 + i % 2)
              for i in (1, 2, 3))


def header(run_id: str = "r1", shard: Shard | None = None, started: float | None = None
           ) -> RunHeader:
    return RunHeader(run_id=run_id, seed=7, workers=SPECS, tasks=3,
                     expect=Expectations(max_imbalance=2.0, allow_redelivery=True),
                     title="aetherdiag workers", context=(("workers", "3"), ("qos", "1")),
                     plan={"strategy": "round_robin", "rate": None}, shard=shard,
                     started_unix=started)


# every RunResult field set to something other than its default
FULL = RunResult(
    target="mqtt://h:1883", workers=("worker-1", "worker-2", "worker-3"),
    published=("task-1", "task-2"), publish_failures=("task-3",),
    deliveries=(Delivery(worker="worker-1", task_id="task-1", topic="t/1", qos=1, dup=False,
                         retain=False, at=0.012345678901, latency_ms=1.23456789),
                Delivery(worker="worker-2", task_id=None, topic="t/x", qos=0, dup=True,
                         retain=True, at=0.5, latency_ms=None, completed=False),
                Delivery(worker="worker-3", task_id="task-2", topic="t/key-1", qos=1, dup=False,
                         retain=False, at=0.6, latency_ms=0.5, publisher="publisher-2", seq=1,
                         key="key-1")),
    duration_s=1.234, settled=False,
    subscribe_results=(("worker-1", "$share/g/t/+", 1), ("worker-2", "$share/g/t/+", 0x87)),
    notes=("worker-3: no SUBACK within 5 s",), emulator_stats={"connections": 4, "x": [1, 2]},
    events=(FleetEvent(at=0.1, worker="worker-2", kind="dropped", detail="cut",
                       task_ids=("task-2",)),),
    unsent=(("task-3", "not sent within 2 s"),), unfinished=(("worker-1", "task-2"),),
    publish_refusals=(("task-3", "refused: 0x87 not authorized"),),
    connection_lost=("worker-2",), steps_not_run=("wait 1",), timeout_s=2.5, interrupted=True,
    replies=(("worker-1", "task-1", "complete"),), expects_replies=True, own_processes=True,
    observed="acks",
    process_exits=(ProcessExit(name="worker-2", pid=42, status=-9, held=("task-2",),
                               log="/logs/worker-2.log", log_tail=("[worker-2] bye",)),),
    collisions=(ClientIdCollision(client_id="same", processes=("worker-1", "worker-3"),
                                  takeovers=4),),
    holders=(Holder(process="worker-1", pid=41, client_id="c1", topic_filter="t/+"),),
    closed_after=(ClosedAfter(client="publisher", packet="PUBLISH", qos=2, topic="t/1",
                              unanswered=3),
                  ClosedAfter(client="worker-2", packet="SUBSCRIBE", qos=1, topic="t/+",
                              disconnect=0x87)),
    mqtt5_refused="the connection closed before any CONNACK",
    endpoints=("mqtt://a:1", "mqtt://b:2"), task_nodes=(("task-1", 1), ("task-2", 2)),
    task_publishers=(("task-1", "publisher-1", 1), ("task-2", "publisher-2", 1)),
    latency=LatencyRecord(hdr=b"HISTFAAAA\x00\xff", count=1, below_zero=1, above_range=2,
                          clock="wall"),
)


def written(path: Path, head: RunHeader, result: RunResult | None,
            failure: Failure | None = None) -> Path:
    with path.open("w", encoding="utf-8") as stream:
        write_record(stream, head, result, failure)
    return path


def test_every_field_of_a_run_result_is_recorded() -> None:
    defaults = RunResult(target="", workers=(), published=())
    unset = [f.name for f in dataclasses.fields(RunResult)
             if getattr(FULL, f.name) == getattr(defaults, f.name) and f.name != "target"]
    assert unset == [], "FULL must set every field (a new RunResult field needs a record line)"


def test_a_record_reads_back_to_the_same_header_and_result(tmp_path: Path) -> None:
    path = written(tmp_path / "r.jsonl", header(shard=Shard(index=2, count=3,
                                                            workers=("worker-2",))), FULL)
    got = read_record(path)
    assert got.result == FULL
    assert got.header == header(shard=Shard(index=2, count=3, workers=("worker-2",)))
    assert got.failure is None
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["schema"] == "aetherdiag.record/1" and lines[-1]["type"] == "end"
    assert sum(1 for doc in lines if doc["type"] == "delivery") == len(FULL.deliveries)


def test_a_failed_run_is_recorded_with_its_error(tmp_path: Path) -> None:
    path = written(tmp_path / "f.jsonl", header(), None,
                   Failure(message="shard 3 of 3 never announced itself", code=ExitCode(3)))
    got = read_record(path)
    assert got.result is None and got.failure == Failure(
        message="shard 3 of 3 never announced itself", code=ExitCode.UNREACHABLE)


@pytest.mark.parametrize(("mangle", "where", "says"), [
    (lambda ls: ['{"schema": "aetherdiag.watch/1"}', *ls[1:]], 1, "not a run record"),
    (lambda ls: [ls[0], "{not json", *ls[1:]], 2, "not a JSON object"),
    (lambda ls: [ls[0], '{"type": "teleport"}', *ls[1:]], 2, "unknown line type 'teleport'"),
    (lambda ls: [ls[0], '{"type": "delivery", "worker": 3}', *ls[1:]], 2,
     "'worker' must be a string"),
    (lambda ls: ls[:-1], None, "ends without its end line"),
    (lambda ls: [], 1, "empty file"),
])
def test_bad_lines_are_named_file_and_line(tmp_path: Path, mangle: object, where: int | None,
                                           says: str) -> None:
    good = written(tmp_path / "g.jsonl", header(), FULL).read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    lines = mangle(good)  # type: ignore[operator]
    bad.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(RecordError) as err:
        read_record(bad)
    line = where if where is not None else len(lines)
    assert str(err.value).startswith(f"{bad}:{line}: "), str(err.value)
    assert says in str(err.value)


def shard_record(tmp_path: Path, index: int, names: tuple[str, ...], result: RunResult,
                 run_id: str = "r1", started: float = 100.0, count: int = 3) -> Recording:
    path = written(tmp_path / f"s{index}-{run_id}.jsonl",
                   header(run_id, Shard(index=index, count=count, workers=names), started),
                   result)
    return read_record(path)


def shard_result(workers: tuple[str, ...], tasks: list[tuple[str, str]], published: tuple[str, ...]
                 = (), duration: float = 1.0) -> RunResult:
    return RunResult(target="mqtt://h:1883", workers=workers, published=published,
                     deliveries=tuple(Delivery(worker=w, task_id=t, topic="t", qos=1,
                                               dup=False, retain=False, at=0.25)
                                      for w, t in tasks), duration_s=duration)


def test_shards_merge_in_global_order_on_one_clock(tmp_path: Path) -> None:
    one = shard_record(tmp_path, 1, ("worker-1",), shard_result(
        ("worker-1",), [("worker-1", "task-1")], ("task-1", "task-2", "task-3")), started=100.0)
    two = shard_record(tmp_path, 2, ("worker-2",), shard_result(
        ("worker-2",), [("worker-2", "task-2")], duration=1.5), started=100.5)
    three = shard_record(tmp_path, 3, ("worker-3",), shard_result(
        ("worker-3",), [("worker-3", "task-3")]), started=100.25)
    run = merge([three, one, two])
    assert run.result is not None and run.header.shard is None
    assert run.result.workers == ("worker-1", "worker-2", "worker-3")
    assert run.result.published == ("task-1", "task-2", "task-3")
    assert [(d.worker, d.at) for d in run.result.deliveries] == [
        ("worker-1", 0.25), ("worker-2", 0.75), ("worker-3", 0.5)]
    assert run.result.duration_s == 2.0
    assert run.header.context[-1] == ("shards", "3 (run r1)")


def test_records_that_are_not_one_run_are_refused_naming_the_files(tmp_path: Path) -> None:
    res = shard_result(("worker-1",), [])
    a = shard_record(tmp_path, 1, ("worker-1",), res, run_id="r1")
    b = shard_record(tmp_path, 2, ("worker-2",), res, run_id="r2")
    with pytest.raises(RecordError, match=r"records of different runs: .*s1-r1.jsonl \(run r1\)"
                       r", .*s2-r2.jsonl \(run r2\)"):
        merge([a, b])
    c = shard_record(tmp_path, 3, ("worker-3",), res)
    with pytest.raises(RecordError, match="shard 2 of 3 missing"):
        merge([a, c])
    with pytest.raises(RecordError, match="are both shard 1 of 3"):
        merge([a, a, c])
    d = shard_record(tmp_path, 2, ("worker-2",), res, count=2)
    with pytest.raises(RecordError, match="not the same sharding"):
        merge([a, d])


@pytest.mark.parametrize(("count", "shards"), [(6, 3), (7, 3), (3, 3), (100, 7), (5, 1)])
def test_slices_are_contiguous_and_cover_every_worker_once(count: int, shards: int) -> None:
    numbers = [n for i in range(1, shards + 1) for n in slice_of(count, i, shards)]
    assert numbers == list(range(1, count + 1))
    sizes = [len(slice_of(count, i, shards)) for i in range(1, shards + 1)]
    assert max(sizes) - min(sizes) <= 1
    assert list(slice_of(6, 2, 3)) == [3, 4]


def test_shard_and_run_id_parsing() -> None:
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("3", "0/2", "3/2", "a/b", "1/-2", "1/2/3", ""):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    assert check_run_id("nightly-42_a.b") == "nightly-42_a.b"
    for bad in ("", "-x", "a/b", "a+b", "a#", "é", "x" * 65):
        with pytest.raises(ValueError, match="--run-id"):
            check_run_id(bad)


def test_writing_goes_to_any_text_stream() -> None:
    out = io.StringIO()
    write_record(out, header(), FULL)
    assert out.getvalue().count("\n") == len(out.getvalue().splitlines())
