"""``RecordFile``: ``--record`` for a watch that runs for days. Rolled over by size (FILE,
FILE.1, ... at most ``keep`` files, each a recording of its own) and reopened on request
(logrotate moved the file away)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from watch.synthetic import handled

from aetherdiag.watch.record import SCHEMA, Ended, Header, RecordFile, Rollover, read

HEADER = {"profile": "aethermagic", "filters": ["u/+/+/+/+/+"], "target": "x"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def files(path: Path) -> list[Path]:
    """FILE, FILE.1, FILE.2, ... as they exist."""
    return sorted(path.parent.glob(path.name + "*"), key=lambda p: (len(p.name), p.name))


def test_rolls_over_by_size_keeping_k_files_each_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    rec = RecordFile(path, HEADER, Rollover(max_bytes=2_000, keep=3))
    for n in range(60):
        for event in handled(n, f"t{n}", "w1"):
            rec.write(event)
    rec.close(60.0, "duration")
    assert rec.rolled >= 3 and rec.failed is None
    kept = files(path)
    assert [p.name for p in kept] == ["pool.jsonl", "pool.jsonl.1", "pool.jsonl.2"]
    tids: list[int] = []
    for p in reversed(kept):  # oldest first: FILE.2, FILE.1, FILE
        assert p.stat().st_size <= 2_000 + 100  # the end line may go past the limit
        items = list(read(p))  # each one reads on its own
        assert isinstance(items[0], Header) and items[0].filters == ("u/+/+/+/+/+",)
        assert isinstance(items[-1], Ended)
        assert items[-1].reason == ("duration" if p == path else "rolled over")
        tids += [int(e.tid[1:]) for e in items[1:-1]
                 if not isinstance(e, Header | Ended) and e.tid is not None]
    # the files hold the last events, in order, the newest in FILE
    assert tids == sorted(tids) and tids[-1] == 59 and tids[0] > 0


def test_keep_one_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    rec = RecordFile(path, HEADER, Rollover(max_bytes=1_000, keep=1))
    for n in range(20):
        for event in handled(n, f"t{n}", "w1"):
            rec.write(event)
    rec.close(20.0, "duration")
    assert rec.rolled > 0 and files(path) == [path]
    assert lines(path)[0]["schema"] == SCHEMA


def test_a_file_too_small_for_one_event_still_gets_one(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    rec = RecordFile(path, HEADER, Rollover(max_bytes=1, keep=2))
    for event in handled(0, "t0", "w1"):
        rec.write(event)
    rec.close(1.0, "duration")
    assert [len(lines(p)) for p in files(path)] == [3, 3]  # header, one event, end line


def test_reopen_after_the_file_was_moved_away(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    moved = tmp_path / "pool.jsonl.moved"
    rec = RecordFile(path, HEADER)
    for event in handled(0, "t0", "w1"):
        rec.write(event)
    rec.flush()
    path.rename(moved)  # logrotate; the recorder still writes to the moved file ...
    rec.write(handled(1, "t1", "w1")[0])
    rec.reopen(1.5)  # ... until it is told
    for event in handled(2, "t2", "w1"):
        rec.write(event)
    rec.close(3.0, "interrupted")
    old, new = lines(moved), lines(path)
    assert old[0]["schema"] == SCHEMA and old[-1] == {"ended": 1.5, "reason": "reopened"}
    assert [e["tid"] for e in old[1:-1]] == ["t0", "t0", "t0", "t1"]
    assert new[0]["schema"] == SCHEMA and new[-1] == {"ended": 3.0, "reason": "interrupted"}
    assert [e["tid"] for e in new[1:-1]] == ["t2", "t2", "t2"]


def test_reopen_when_the_file_was_not_moved_appends(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    rec = RecordFile(path, HEADER)
    rec.write(handled(0, "t0", "w1")[0])
    rec.reopen(0.5)  # a stray SIGHUP: nothing lost, the file reads as before
    rec.write(handled(1, "t1", "w1")[0])
    rec.close(1.0, "duration")
    items = list(read(path))
    assert [type(i).__name__ for i in items] == ["Header", "Event", "Ended", "Header", "Event",
                                                 "Ended"]


def test_a_failed_roll_over_stops_the_recording_not_the_watch(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    heard: list[str] = []
    rec = RecordFile(path, HEADER, Rollover(max_bytes=500, keep=2), on_error=heard.append)
    (tmp_path / "pool.jsonl.1").mkdir()  # FILE cannot be renamed to FILE.1
    for n in range(10):
        for event in handled(n, f"t{n}", "w1"):
            rec.write(event)
    rec.close(10.0, "duration")
    assert rec.failed is not None and len(heard) == 1
    # what was written stays readable
    items = list(read(path))
    assert items[0] == Header(profile="aethermagic", filters=("u/+/+/+/+/+",), target="x")
    assert isinstance(items[-1], Ended) and items[-1].reason == "rolled over"
