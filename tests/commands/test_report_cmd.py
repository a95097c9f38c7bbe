"""``aetherdiag report FILE...`` on the embedded emulator's runs: a run record judged again
gives the same report as the run printed (table, JSON, JUnit, exit code); a saved JSON report
re-rendered gives the same output as the run; bad input is exit 2 with one line.

The runs' durations are kept to the millisecond (workers/builtin.py), which is what the JSON holds,
so nothing differs between a run's own output and its re-rendering, not even the duration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import invoke, one_error_line, workers

RUN = ("--count", "3", "--tasks", "12")


def run_with_record(tmp_path: Path, name: str, fmt: str, *args: str) -> tuple[int, Path, Path]:
    """``workers --format FMT --output OUT --record REC ARGS``: exit code, OUT, REC."""
    out, rec = tmp_path / f"{name}.{fmt}", tmp_path / f"{name}.jsonl"
    result = workers(*RUN, "--format", fmt, "--output", str(out), "--record", str(rec), *args)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, out, rec


@pytest.mark.parametrize("fmt", ["table", "json", "junit"])
@pytest.mark.parametrize("args", [(), ("--fault", "share-fanout"),
                                  ("--strategy", "random", "--seed", "3")])
def test_a_record_gives_the_report_the_run_printed(tmp_path: Path, fmt: str,
                                                   args: tuple[str, ...]) -> None:
    code, out, rec = run_with_record(tmp_path, "run", fmt, *args)
    again = tmp_path / f"again.{fmt}"
    result = invoke("report", str(rec), "--format", fmt, "--output", str(again))
    assert result.exit_code == code, result.output
    assert again.read_text() == out.read_text()
    if args[:2] == ("--fault", "share-fanout"):
        assert code == 1


def test_a_saved_json_report_re_renders_as_the_run_did(tmp_path: Path) -> None:
    code, saved, rec = run_with_record(tmp_path, "run", "json", "--fault", "share-fanout")
    assert code == 1
    for fmt in ("table", "junit", "json"):
        from_json, from_record = tmp_path / f"j.{fmt}", tmp_path / f"r.{fmt}"
        a = invoke("report", str(saved), "--format", fmt, "-o", str(from_json))
        b = invoke("report", str(rec), "--format", fmt, "-o", str(from_record))
        assert a.exit_code == b.exit_code == code, a.output + b.output
        assert from_json.read_text() == from_record.read_text()
    assert (tmp_path / "j.json").read_text() == saved.read_text()
    # the table the run itself printed: the same run rendered as a table at the time
    code, table, rec2 = run_with_record(tmp_path, "t", "table")
    saved2 = tmp_path / "t2.json"
    assert invoke("report", str(rec2), "--format", "json", "-o", str(saved2)).exit_code == code
    again = tmp_path / "t2.table"
    assert invoke("report", str(saved2), "-o", str(again)).exit_code == code
    assert again.read_text() == table.read_text()


def test_a_saved_json_report_keeps_unknown_keys_harmless(tmp_path: Path) -> None:
    code, saved, _ = run_with_record(tmp_path, "run", "json")
    doc = json.loads(saved.read_text())
    doc["from_the_future"] = {"x": 1}
    doc["workers"][0]["new_figure"] = 3
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(doc))
    result = invoke("report", str(newer), "--format", "json")
    assert result.exit_code == code == 0
    assert json.loads(result.stdout) == json.loads(saved.read_text())


def test_a_record_to_stdout(tmp_path: Path) -> None:
    result = workers(*RUN, "--record", "-")
    assert result.exit_code == 0, result.output
    rec = tmp_path / "out.jsonl"
    rec.write_text(result.stdout)
    assert json.loads(result.stdout.splitlines()[0])["schema"] == "aetherdiag.record/1"
    again = invoke("report", str(rec), "--format", "json")
    assert again.exit_code == 0 and json.loads(again.stdout)["verdict"] == "healthy"


def test_a_failed_run_record_reports_its_failure(tmp_path: Path) -> None:
    rec = tmp_path / "f.jsonl"
    run = workers("--broker", "mqtt://127.0.0.1:9", "--record", str(rec), "--connect-timeout",
                  "1")
    assert run.exit_code == 3
    result = invoke("report", str(rec), "--format", "json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"].startswith("cannot connect to mqtt://127.0.0.1:9")


def bad(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_bad_input_is_exit_2_with_one_line(tmp_path: Path) -> None:
    _, _, rec = run_with_record(tmp_path, "a", "json")
    _, saved, rec_b = run_with_record(tmp_path, "b", "json")
    lines = rec.read_text().splitlines()
    broken = bad(tmp_path, "broken.jsonl", "\n".join([lines[0], lines[1], "{oops", *lines[2:]]))
    cases = {
        f"{tmp_path / 'nope.jsonl'}: No such file or directory": [str(tmp_path / "nope.jsonl")],
        f"{broken}:3: not a JSON object": [str(broken)],
        f"{bad(tmp_path, 'e.json', '')}:1: not JSON": [str(tmp_path / "e.json")],
        "not an aetherdiag report": [str(bad(tmp_path, "foreign.json", '{"a": 1}'))],
        f"{tmp_path / 'bin.json'}:1: not UTF-8": [str(bad(tmp_path, "bin.json", b"\xff\xfe"))],
        "records of different runs": [str(rec), str(rec_b)],
        "both saved reports": [str(saved), str(saved)],
        "is a saved report and": [str(saved), str(rec)],
        "'published' must be an integer": [str(bad(tmp_path, "t.json", json.dumps(
            {**json.loads(saved.read_text()), "published": "many"})))],
    }
    for says, files in cases.items():
        result = invoke("report", *files)
        assert result.exit_code == 2, (files, result.output)
        assert says in one_error_line(result), says
    unreadable = bad(tmp_path, "dir.jsonl", "")
    unreadable.unlink()
    unreadable.mkdir()
    assert invoke("report", str(unreadable)).exit_code == 2
