"""Runs that did not do their job are never healthy: timeouts, unsent and unfinished tasks,
steps not run, bad input up front, failed runs that still leave their report, interrupts.

Everything here runs on the embedded emulator (port 0); the broker-killed and production-
topic cases live in test_workers_real_broker.py next to the private Mosquitto helpers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.cli import failed_checks, invoke, run_json
from support.mqttclient import PahoClient
from support.paths import SCENARIOS

from aetherdiag.cli import main
from aetherdiag.emulator import Emulator

# --------------------------------------------------------------------------- timeouts


def test_a_slow_worker_cut_off_by_the_timeout_is_incomplete() -> None:
    result, doc = run_json("--slow-worker", "worker-2=5000", "--timeout", "2")
    assert result.exit_code == 7, result.output
    assert doc["timed_out"] is True and "timed out after 2 s" in doc["verdict"]
    assert {u["worker"] for u in doc["unfinished"]} == {"worker-2"}
    assert failed_checks(doc) == {"every task finished", "settled within the timeout"}


def test_long_work_cut_off_by_the_timeout_is_incomplete() -> None:
    result, doc = run_json("--work-ms", "5000", "--tasks", "30", "--timeout", "1")
    assert result.exit_code == 7, result.output
    assert doc["unfinished"] and doc["settled"] is False


def test_qos0_work_also_counts_as_unfinished() -> None:
    result, doc = run_json("--qos", "0", "--work-ms", "5000", "--timeout", "1")
    assert result.exit_code == 7, result.output
    assert len(doc["unfinished"]) >= 3


def test_the_timeout_bounds_rate_pacing_too() -> None:
    start = time.monotonic()
    result, doc = run_json("--rate", "1", "--tasks", "100", "--timeout", "3")
    elapsed = time.monotonic() - start
    # 7 (incomplete); 4 when the last task, sent right at the deadline, had not arrived yet
    assert result.exit_code in (4, 7), result.output
    assert doc["timed_out"] is True and "timed out after 3 s" in doc["verdict"]
    assert doc["published"] < 100 and sum(u["count"] for u in doc["unsent"]) == (
        100 - doc["published"])
    assert [u["reason"] for u in doc["unsent"]] == ["not sent within 3 s"]  # one per reason
    assert len(doc["unsent"][0]["tasks"]) == 10  # a few ids, not every one
    assert "every task sent" in failed_checks(doc)
    assert elapsed < 3 + 10  # the bound, plus start-up and teardown; it ran 60 s before


def test_without_a_timeout_rate_pacing_gets_the_time_it_needs() -> None:
    result, doc = run_json("--rate", "20", "--tasks", "20")
    assert result.exit_code == 0, result.output
    assert doc["published"] == 20 and doc["unsent"] == []


def test_replay_cut_off_by_its_timeout_is_incomplete() -> None:
    path = str(SCENARIOS / "member-dropped-qos1.yaml")
    result = invoke("replay", "--timeout", "0.1", "--format", "json", path)
    assert result.exit_code == 7, result.output
    doc = json.loads(result.stdout)
    assert len(doc["steps_not_run"]) == 6
    assert "every step ran" in failed_checks(doc) and "timed out" in doc["verdict"]


def test_replay_check_expect_cannot_vouch_for_a_run_that_was_cut_off() -> None:
    path = str(SCENARIOS / "member-dropped-qos1.yaml")
    result = invoke("replay", "--check-expect", "--timeout", "0.1", "--format", "junit", path)
    assert result.exit_code != 0, result.output
    root = ET.fromstring(result.stdout)
    failures = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
    assert {"every step ran", "settled within the timeout"} <= failures


# --------------------------------------------------------------------------- bad input, up front


@pytest.mark.parametrize("args", [
    ["--tasks", "0"],
    ["--topic", "jobs/+/{task_id}"],
    ["--topic", "jobs/#/{n}"],
    ["--topic", "jobs/{n:>999999999}"],
    ["--topic", "jobs/{task_id.__class__}"],
    ["--rate", "nan"], ["--rate", "inf"],
    ["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "-inf"],
    ["--work-ms", "nan"], ["--work-jitter-ms", "inf"], ["--max-imbalance", "nan"],
    ["--settle-ms", "inf"], ["--connect-timeout", "nan"],
    ["--slow-worker", "worker-1=nan"], ["--slow-worker", "worker-1=inf"],
    ["--count", "100000", "--tasks", "1000000", "--plain"],
    ["--tasks", "999999999999"],
    ["--topic-prefix", "a/+", "--broker", "mqtt://127.0.0.1:9"],
])
def test_bad_input_is_a_usage_error_before_anything_runs(
        args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        main(["workers", *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert time.monotonic() - start < 5  # nothing connected, nothing waited


def test_an_unwritable_output_is_refused_before_the_run(tmp_path: Path) -> None:
    for target in (tmp_path / "missing-dir" / "r.json", tmp_path):
        result = invoke("workers", "--format", "json", "--output", str(target))
        assert result.exit_code == 2, result.output
        assert "--output" in result.stderr


def test_a_failed_run_replaces_an_earlier_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    out.write_text('{"verdict": "healthy", "exit_code": 0}')
    # port 9 (discard) on loopback: nothing listens there in a test sandbox
    result = invoke("workers", "--broker", "mqtt://127.0.0.1:9", "--connect-timeout", "1",
                    "--format", "json", "--output", str(out))
    assert result.exit_code == 3, result.output
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 3 and doc["error"]


def test_a_failed_run_writes_junit_with_the_error(tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    result = invoke("workers", "--broker", "mqtt://127.0.0.1:9", "--connect-timeout", "1",
                    "--format", "junit", "--output", str(out))
    assert result.exit_code == 3, result.output
    suite = ET.fromstring(out.read_text())
    assert suite.get("errors") == "1"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["exit_code"] == "3"


# --------------------------------------------------------------------------- interrupts


def test_ctrl_c_prints_the_partial_report_and_exits_130() -> None:
    """SIGINT once the run is publishing: the test waits for its first task on the broker (a
    packet seen, not a sleep a loaded machine can outrun), then interrupts."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with Emulator() as em:
        watcher = PahoClient(em.host, em.port, client_id="ctrl-c-watcher")
        try:
            assert watcher.connect().reason_code == 0
            watcher.subscribe("aetherdiag/#", qos=0)  # a run's own topic tree on a broker
            proc = subprocess.Popen(
                [sys.executable, "-m", "aetherdiag", "workers", "--tasks", "100000",
                 "--rate", "200", "--broker", f"mqtt://{em.host}:{em.port}", "--format",
                 "json", "--quiet"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            try:
                watcher.wait_for(1, timeout=60)  # the run is publishing
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        finally:
            watcher.close()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["aetherdiag: interrupted"], err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["verdict"] == "interrupted"
    assert 0 < doc["published"] < 100000 and doc["unsent"]
    assert sum(u["count"] for u in doc["unsent"]) == 100000 - doc["published"]
    assert len(out) < 200_000  # bounded: not a list of ~100,000 unsent entries
