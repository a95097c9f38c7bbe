"""Sharded ``workers`` runs against a private Mosquitto: three shard processes
(``python -m aetherdiag workers --shard I/3``) meet through the broker, and ``aetherdiag
report`` of their records judges the run like one unsharded run; a shard that never shows up
ends the others with exit 3 within the timeout; bad ``--shard`` input is exit 2.

Comparing with the unsharded run: Mosquitto dispatches a share group round robin in
subscription order. One process subscribes its workers in order (worker-1 gets task-1), but
three shards subscribe concurrently, so which worker holds which place in the rotation
differs from run to run. What Mosquitto guarantees either way is the rotation itself: with
every member subscribed before the first task (the shards' readiness makes sure of it), each
worker gets every 6th task. So the runs are compared on the verdict, the exit code, the worker
names and the *set* of per-worker task lists, not on which worker got which list.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.cli import invoke, one_error_line, run_json

COUNT, TASKS = 6, 60


def shard_cmd(url: str, index: int, run_id: str, record: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aetherdiag", "workers", "--broker", url, "--count",
            str(COUNT), "--tasks", str(TASKS), "--seed", "7", "--shard", f"{index}/3",
            "--run-id", run_id, "--record", str(record), "--quiet", *extra]


def run_processes(cmds: list[list[str]], timeout: float, kill: frozenset[int] = frozenset()
                  ) -> list[subprocess.CompletedProcess[str]]:
    """Start every command at once; the ones in ``kill`` are killed at once. Every process
    is ended when this returns, even when an assertion fails."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    try:
        for i in kill:
            procs[i].kill()
        out = []
        for cmd, proc in zip(cmds, procs, strict=True):
            stdout, stderr = proc.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
        return out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def task_sets(doc: dict[str, Any]) -> set[tuple[str, ...]]:
    return {tuple(w["tasks"]) for w in doc["workers"]}


@pytest.mark.slow
@pytest.mark.mosquitto
def test_three_shards_merge_like_one_run(mosquitto: Any, tmp_path: Path) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    run_id = f"t{uuid.uuid4().hex[:8]}"
    records = [tmp_path / f"shard-{i}.jsonl" for i in (1, 2, 3)]
    done = run_processes([shard_cmd(url, i, run_id, records[i - 1], "--timeout", "20")
                          for i in (1, 2, 3)], timeout=60)
    for p in done:
        assert p.returncode == 0, p.stderr
    merged = invoke("report", *map(str, records), "--format", "json")
    doc = json.loads(merged.stdout)
    assert merged.exit_code == doc["exit_code"] == 0, merged.output
    alone, single = run_json("--broker", url, "--count", str(COUNT), "--tasks", str(TASKS),
                             "--seed", "7", "--timeout", "20")
    assert alone.exit_code == 0, alone.output
    assert doc["verdict"] == single["verdict"] == "healthy"
    assert [w["name"] for w in doc["workers"]] == [w["name"] for w in single["workers"]]
    assert sorted(w["unique"] for w in doc["workers"]) == [10] * COUNT
    assert task_sets(doc) == task_sets(single)  # each worker every 6th task (module doc)
    assert {c["name"]: c["passed"] for c in doc["checks"]} == {
        c["name"]: c["passed"] for c in single["checks"]}
    assert doc["published"] == doc["delivered"] == TASKS and doc["missing"] == []
    assert ("shards", f"3 (run {run_id})") in doc["run"].items()
    # the shards cleared their retained readiness and marker: a new shard 1 of this run id
    # finds nobody and says so
    again = run_processes([shard_cmd(url, 1, run_id, tmp_path / "again.jsonl",
                                     "--timeout", "1")], timeout=30)[0]
    assert again.returncode == 3
    assert "shards 2 and 3 of 3 never announced themselves within 1 s" in again.stderr


@pytest.mark.slow
@pytest.mark.mosquitto
def test_a_shard_killed_before_ready_ends_the_others_with_exit_3(mosquitto: Any,
                                                                  tmp_path: Path) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    run_id = f"t{uuid.uuid4().hex[:8]}"
    records = [tmp_path / f"shard-{i}.jsonl" for i in (1, 2, 3)]
    started = time.monotonic()
    done = run_processes([shard_cmd(url, i, run_id, records[i - 1], "--timeout", "4")
                          for i in (1, 2, 3)], timeout=60, kill=frozenset({2}))
    elapsed = time.monotonic() - started
    assert elapsed < 4 + 12, elapsed  # the timeout, plus start-up and connecting
    for p in done[:2]:
        assert p.returncode == 3, p.stderr
        assert p.stderr.strip().splitlines() == [
            "aetherdiag: error: shard 3 of 3 never announced itself within 4 s (--timeout): is "
            f"every shard started with --run-id {run_id} against this broker?"]
    # the two records say so; without shard 3's record, report refuses (exit 2)
    missing = invoke("report", str(records[0]), str(records[1]))
    assert missing.exit_code == 2
    assert "shard 3 of 3 missing" in one_error_line(missing)


@pytest.mark.parametrize(("args", "says"), [
    (["--shard", "2of3"], "--shard '2of3': expected I/N"),
    (["--shard", "0/3"], "I must be 1..N"),
    (["--shard", "4/3"], "I must be 1..N"),
    (["--shard", "1/0"], "I must be 1..N"),
    (["--shard", "1/3", "--run-id", "x"], "--shard needs --broker"),
    (["--shard", "1/3", "--broker", "mqtt://127.0.0.1:9"], "--shard needs --run-id"),
    (["--shard", "1/3", "--broker", "mqtt://127.0.0.1:9", "--run-id", "a/b"],
     "--run-id 'a/b': use 1-64 letters"),
    (["--shard", "1/9", "--broker", "mqtt://127.0.0.1:9", "--run-id", "r1"],
     "9 shards need at least 9 workers"),
    (["--shard", "1/2", "--nodes", "2", "--run-id", "r1"], "--shard needs --broker"),
])
def test_bad_shard_options_are_usage_errors(args: list[str], says: str) -> None:
    result = invoke("workers", "--count", "3", *args)
    assert result.exit_code == 2, result.output
    assert says in one_error_line(result)
