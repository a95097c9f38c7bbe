"""Writes that cannot lose a report: an output naming an input or a record is refused before
anything is touched (exit 2, the file unchanged), and an output that cannot be written (a
full disk: ``/dev/full``) is one line naming the fallback that holds the report (exit 9 when
nothing worse holds), never an internal error."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import pytest
from support.cli import invoke, one_error_line, workers

from aetherdiag.analysis import Report
from aetherdiag.exitcodes import ExitCode
from aetherdiag.watch.record import Recorder
from aetherdiag.workers.judge import not_recorded

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full here")


def a_record(tmp_path: Path) -> Path:
    rec = tmp_path / "run.jsonl"
    result = workers("--count", "2", "--tasks", "4", "--record", str(rec), "--quiet")
    assert result.exit_code == 0, result.output
    return rec


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink"])
def test_report_output_naming_its_input_is_refused_and_the_input_kept(
        tmp_path: Path, spelling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = a_record(tmp_path)
    before = rec.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = {"same": "run.jsonl", "dot-slash": "./run.jsonl", "symlink": "link.jsonl"}[spelling]
    if spelling == "symlink":
        os.symlink(rec, tmp_path / "link.jsonl")
    result = invoke("report", "run.jsonl", "--format", "json", "-o", out)
    assert result.exit_code == 2, result.output
    assert "is also the input" in one_error_line(result)
    assert rec.read_bytes() == before


def test_watch_output_naming_its_recording_is_refused(tmp_path: Path) -> None:
    rec = tmp_path / "pool.jsonl"
    rec.write_text('{"schema":"aetherdiag.watch/1","profile":"aethermagic","filters":[],'
                   '"target":"x"}\n')
    before = rec.read_bytes()
    result = invoke("watch", "--input", str(rec), "-o", str(tmp_path / "." / "pool.jsonl"))
    assert result.exit_code == 2, result.output
    assert "is also the input" in one_error_line(result)
    assert rec.read_bytes() == before


@needs_dev_full
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_a_full_disk_is_one_line_and_the_report_goes_to_a_fallback(fmt: str) -> None:
    result = workers("--count", "2", "--tasks", "4", "--format", fmt, "-o", str(FULL))
    assert result.exit_code == ExitCode.NOT_WRITTEN, result.output
    line = one_error_line(result)
    assert "No space left on device" in line and "Traceback" not in result.output
    found = re.search(r"the report is in (\S+)$", line)
    assert found, line
    fallback = Path(found.group(1))
    try:
        text = fallback.read_text()
        if fmt == "json":
            assert json.loads(text)["exit_code"] == 0
        else:
            assert "verdict: healthy" in text
    finally:
        fallback.unlink()


@needs_dev_full
def test_a_verdict_worse_than_a_lost_report_keeps_its_code() -> None:
    """The lowest non-zero code wins: duplicates (1) stay 1 even though -o failed."""
    result = workers("--count", "2", "--tasks", "4", "--fault", "share-fanout", "--format",
                     "json", "-o", str(FULL))
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    fallback = Path(line.rsplit(" ", 1)[1])
    try:
        assert json.loads(fallback.read_text())["exit_code"] == 1
    finally:
        fallback.unlink()


@needs_dev_full
def test_a_record_that_fails_stops_and_says_so_once() -> None:
    heard: list[str] = []
    stream = FULL.open("w", encoding="utf-8")
    try:
        recorder = Recorder(stream, {"profile": "x"}, on_error=heard.append)
        for _ in range(3):
            recorder.flush()
        recorder.close(1.0, "duration")
        assert recorder.failed == "No space left on device"
        assert heard == ["No space left on device"]
    finally:
        with contextlib.suppress(OSError):  # the buffered header still cannot be written
            stream.close()


def test_a_lost_record_is_exit_9_only_when_nothing_worse_holds(healthy: Report,
                                                               duplicated: Report) -> None:
    lost = not_recorded(healthy, "--record r.jsonl: No space left on device")
    assert lost.exit_code == ExitCode.NOT_WRITTEN and "record was not written" in lost.verdict
    assert "recording stopped" in lost.notes[-1]
    worse = not_recorded(duplicated, "--record r.jsonl: No space left on device")
    assert worse.exit_code == ExitCode.DUPLICATES and worse.verdict == duplicated.verdict


@pytest.fixture
def healthy() -> Report:
    return _report(0)


@pytest.fixture
def duplicated() -> Report:
    return _report(1)


def _report(code: int) -> Report:
    from aetherdiag.analysis import analyse
    from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec

    deliveries = tuple(Delivery(worker=w, task_id="t1", topic="t/1", qos=1, dup=False,
                                retain=False, at=0.1) for w in ("w1", "w2")[:code + 1])
    result = RunResult(target="x", workers=("w1", "w2"), published=("t1",),
                       deliveries=deliveries)
    specs = [WorkerSpec(name=w, subscriptions=("$share/g/t/+",)) for w in ("w1", "w2")]
    report = analyse(result, specs)
    assert report.exit_code == code
    return report


def test_workers_output_naming_its_record_is_refused(tmp_path: Path) -> None:
    rec = tmp_path / "run.jsonl"
    rec.write_text("an earlier record\n")
    result = workers("--count", "2", "--tasks", "4", "--record", str(rec),
                     "-o", str(tmp_path / "sub" / ".." / "run.jsonl"))
    assert result.exit_code == 2, result.output
    assert "is also the --record file" in one_error_line(result)
    assert rec.read_text() == "an earlier record\n"


@needs_dev_full
def test_workers_record_on_a_full_disk_still_reports(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = workers("--count", "2", "--tasks", "4", "--record", str(FULL), "--format", "json",
                     "-o", str(out))
    assert result.exit_code == ExitCode.NOT_WRITTEN, result.output
    assert "--record /dev/full: No space left on device" in result.stderr
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 9 and doc["published"] == 4
    assert any("recording stopped" in n for n in doc["notes"])


def test_a_report_written_to_a_file_leaves_its_verdict_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = workers("--count", "2", "--tasks", "4", "--format", "html", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.splitlines() == [f"verdict: healthy (exit 0); report in {out}"]
    assert "<html" in out.read_text()
    quiet = workers("--count", "2", "--tasks", "4", "--format", "json", "-o", str(out),
                    "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
