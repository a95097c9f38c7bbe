"""``aetherdiag replay`` through typer's CliRunner: exit codes, JSON, JUnit, errors, options.

The scenarios run here are the short ones (about 0.4 s each on the emulator); the full
library is run by test_replay_library.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from support.brokers import free_port
from support.paths import SCENARIOS
from typer.testing import CliRunner

from aetherdiag.cli import app

runner = CliRunner()
HEALTHY = str(SCENARIOS / "problem-task.yaml")
FANOUT = str(SCENARIOS / "seed-bug-fanout.yaml")
LITERAL = str(SCENARIOS / "no-share-support-literal.yaml")

SMALL = """\
name: small
description: two workers, four tasks
workers: [worker-1, worker-2]
steps:
  - publish: {count: 4}
  - settle
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_seed_bug_exits_1_like_the_issue_says() -> None:
    result = runner.invoke(app, ["replay", FANOUT])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "aetherdiag replay seed-bug-fanout" in out
    assert "verdict: duplicates (exit 1)" in out
    assert "expectations: all 6 met (exit 1 as expected)" in out
    assert "worker-1 10, worker-2 10; 10 reached more than one worker" in " ".join(out.split())


def test_healthy_scenario_exits_0_with_its_timeline() -> None:
    result = runner.invoke(app, ["replay", HEALTHY])
    assert result.exit_code == 0, result.output
    assert "timeline" in result.stdout and "step 1 (line 32): publish 10 task(s)" in result.stdout
    assert "step 2 (line 37): settle (at most 30s): settled in" in result.stdout
    assert result.stderr == ""


def test_json_for_one_file_is_one_object() -> None:
    result = runner.invoke(app, ["replay", FANOUT, "--format", "json", "--quiet"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "aetherdiag.report/1"
    assert doc["exit_code"] == 1 and doc["verdict"] == "duplicates"
    assert doc["published"] == 10 and doc["delivered"] == 20
    assert doc["duplicates"]["cross_worker"] == 10 and doc["missing"] == []
    assert [w["name"] for w in doc["workers"]] == ["worker-1", "worker-2"]
    assert "problem-task-123" in doc["workers"][0]["tasks"]
    assert doc["target"] == "emulator (strategy round_robin, faults share-fanout)"
    sc = doc["scenario"]
    assert sc["file"] == FANOUT and sc["name"] == "seed-bug-fanout"
    assert sc["expected_exit_code"] == 1 and sc["exit_code_matched"] is True
    assert sc["expectations_met"] is True and sc["check_expect"] is False
    assert sc["exit_code"] == 1
    assert {"name": "duplicates", "expected": "10", "actual": "10", "passed": True} in \
        sc["expectations"]
    assert [s["kind"] for s in sc["steps"]] == ["publish", "settle"]
    assert sc["steps"][0]["deliveries"] == {"worker-1": 10, "worker-2": 10}
    assert sc["steps"][0]["index"] == 1 and sc["steps"][0]["line"] == 29
    assert doc["timeline"][0].startswith("step 1 (line 29): publish 10 task(s)")
    names = [c["name"] for c in doc["checks"]]
    assert "no cross-worker duplicates" in names and "expect duplicates" in names
    expect_codes = {c["exit_code"] for c in doc["checks"] if c["name"].startswith("expect ")}
    assert expect_codes == {6}


def test_several_files_json_list_and_the_lowest_nonzero_code(tmp_path: Path) -> None:
    out = tmp_path / "replay.json"
    result = runner.invoke(app, ["replay", HEALTHY, LITERAL, FANOUT, "--format", "json",
                                 "--output", str(out)])
    assert result.exit_code == 1, result.output  # 0, 4 and 1: the lowest non-zero wins
    assert result.stdout == ""
    docs = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(docs, list)
    assert [d["scenario"]["name"] for d in docs] == ["problem-task", "no-share-support-literal",
                                                      "seed-bug-fanout"]
    assert [d["exit_code"] for d in docs] == [0, 4, 1]
    assert docs[1]["missing"] == [f"task-{n}" for n in range(1, 7)]


def test_table_for_several_files_ends_with_a_summary() -> None:
    result = runner.invoke(app, ["replay", HEALTHY, LITERAL])
    assert result.exit_code == 4, result.output
    assert "replay summary" in result.stdout
    assert "exit 4: the lowest non-zero code of the files' verdicts" in result.stdout


def test_junit_has_one_testsuite_per_file() -> None:
    result = runner.invoke(app, ["replay", HEALTHY, FANOUT, "--format", "junit"])
    assert result.exit_code == 1, result.output
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["aetherdiag replay problem-task",
                                               "aetherdiag replay seed-bug-fanout"]
    props = {p.get("name"): p.get("value") for p in suites[1].iter("property")}
    assert props["file"] == FANOUT and props["expected_exit_code"] == "1"
    assert props["exit_code"] == "1"
    failed = [c.get("name") for c in suites[1].iter("testcase") if c.find("failure") is not None]
    assert failed == ["no cross-worker duplicates"]
    assert root.get("failures") == "1"
    assert int(str(root.get("tests"))) == sum(int(str(s.get("tests"))) for s in suites)


def test_check_expect_turns_met_expectations_into_exit_0() -> None:
    result = runner.invoke(app, ["replay", "--check-expect", FANOUT, LITERAL, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_check_expect_junit_is_judged_by_the_expectations() -> None:
    result = runner.invoke(app, ["replay", "--check-expect", FANOUT, "--format", "junit"])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert root.get("failures") == "0"
    case = next(c for c in root.iter("testcase") if c.get("name") == "no cross-worker duplicates")
    skipped = case.find("skipped")
    assert skipped is not None
    assert str(skipped.get("message")).startswith("observed, judged by the expect block: 10 of")


def test_unmet_expectations_are_reported_and_fail_check_expect(tmp_path: Path) -> None:
    wrong = write(tmp_path, SMALL + "expect:\n  exit_code: 1\n  duplicates: 4\n"
                  "  workers:\n    worker-1: {tasks: 2}\n")
    plain = runner.invoke(app, ["replay", wrong])
    assert plain.exit_code == 0, plain.output  # the run itself is healthy
    text = " ".join(plain.stdout.split())  # the table wraps at the runner's 80 columns
    assert "✘ expect exit code" in text and "✔ expect worker-1 tasks" in text
    assert re.search(r"expectations: 2 of 3 NOT met \(exit 0, expected 1\): exit code "
                     r"expected 1, got 0 \(healthy\); duplicates expected 4, got 0", text), text

    checked = runner.invoke(app, ["replay", "--check-expect", "--format", "json", wrong])
    assert checked.exit_code == 6, checked.output
    doc = json.loads(checked.stdout)
    assert doc["exit_code"] == 0 and doc["verdict"] == "healthy"
    sc = doc["scenario"]
    assert sc["exit_code"] == 6 and sc["check_expect"] is True
    assert sc["expectations_met"] is False and sc["exit_code_matched"] is False
    assert [e["name"] for e in sc["expectations"] if not e["passed"]] == ["exit code",
                                                                         "duplicates"]


def test_a_bad_file_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    bad = write(tmp_path, SMALL.replace("  - settle\n", "  - drop: worker-9\n"), "bad.yaml")
    started = time.monotonic()
    result = runner.invoke(app, ["replay", HEALTHY, bad])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"{bad}:6:11: drop: unknown worker 'worker-9' (did you mean 'worker-2'?)"]
    assert time.monotonic() - started < 2.0  # problem-task.yaml never ran
    assert "Traceback" not in result.output


def test_every_bad_file_gets_its_line(tmp_path: Path) -> None:
    one = write(tmp_path, SMALL.replace("name: small", "nmae: small"), "one.yaml")
    missing = str(tmp_path / "nowhere.yaml")
    result = runner.invoke(app, ["replay", one, missing])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{one}:1:1: unknown key 'nmae'")
    assert lines[1].startswith(f"{missing}:1:1: cannot read the file")


def test_bad_options_are_usage_errors() -> None:
    assert runner.invoke(app, ["replay", HEALTHY, "--mqtt", "4"]).exit_code == 2
    assert runner.invoke(app, ["replay", HEALTHY, "--broker", "http://x"]).exit_code == 2
    assert runner.invoke(app, ["replay", HEALTHY, "--insecure"]).exit_code == 2
    assert runner.invoke(app, ["replay"]).exit_code == 2


def test_unreachable_broker_exits_3_and_is_tried_once() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["replay", HEALTHY, FANOUT, "--broker", url,
                                 "--connect-timeout", "2", "--format", "json"])
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("aetherdiag: error: ") for line in lines)
    assert "cannot connect" in lines[0] and "not tried again" in lines[1]
    docs = json.loads(result.stdout)
    assert [d["verdict"] for d in docs] == ["error", "error"]
    assert [d["exit_code"] for d in docs] == [3, 3]


def test_file_faults_are_noted_when_broker_overrides(tmp_path: Path) -> None:
    from aetherdiag.emulator import Emulator

    with Emulator() as em:  # a plain broker: the file's share-fanout fault does not apply
        result = runner.invoke(app, ["replay", FANOUT, "--broker", em.url, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["target"].startswith("mqtt://127.0.0.1:")
    assert any("do not apply" in note for note in doc["notes"])
    assert doc["scenario"]["exit_code_matched"] is False


def test_timeout_bounds_the_whole_scenario(tmp_path: Path) -> None:
    slow = write(tmp_path, SMALL.replace("  - settle\n", "  - wait: 30\n  - publish: {count: 4}\n"))
    started = time.monotonic()
    result = runner.invoke(app, ["replay", slow, "--timeout", "1", "--format", "json"])
    assert time.monotonic() - started < 8.0
    doc = json.loads(result.stdout)
    assert doc["published"] == 4
    assert doc["timeline"][2].endswith("publish 4 task(s) (task-5 .. task-8): not run "
                                       "(--timeout reached)")
    assert doc["settled"] is False
    assert any("--timeout 1 s reached: 1 step(s) not run" in n for n in doc["notes"])


def test_mqtt_override_runs_every_client_on_3_1_1() -> None:
    result = runner.invoke(app, ["replay", HEALTHY, "--mqtt", "3.1.1", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["mqtt"] == "3.1.1"
    assert any("--mqtt 3.1.1" in n for n in doc["notes"])


@pytest.mark.mosquitto
def test_broker_option_on_mosquitto(mosquitto: Any) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    result = runner.invoke(app, ["replay", HEALTHY, "--broker", url, "--check-expect",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["target"] == url and doc["scenario"]["expectations_met"] is True


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["replay", "--help"])
    assert result.exit_code == 0
    for option in ("--broker", "--mqtt", "--check-expect", "--timeout", "--format", "--output",
                   "--quiet", "--ca-file", "--seed"):
        assert option in result.stdout


def test_a_dash_reads_the_scenario_from_stdin() -> None:
    """``replay -`` reads one scenario from standard input; its errors name ``<stdin>``."""
    text = (SCENARIOS / "problem-task.yaml").read_text()
    done = subprocess.run([sys.executable, "-m", "aetherdiag", "replay", "-", "--check-expect",
                           "--format", "json", "--quiet"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"verdict": "healthy"' in done.stdout
    bad = subprocess.run([sys.executable, "-m", "aetherdiag", "replay", "-"], input="name: [\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("<stdin>:") and \
        len(bad.stderr.strip().splitlines()) == 1
