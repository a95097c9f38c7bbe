"""``aetherdiag watch`` end to end: the embedded emulator in this process, synthetic
AetherMagic traffic from one paho connection, the CLI through CliRunner (or a real
``python -m aetherdiag`` process for signals), and one run against a private Mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.brokers import free_port, running_mosquitto
from support.cli import invoke, one_error_line
from typer.testing import Result
from watch.amwire import Wire, wait_for_watcher

from aetherdiag.emulator import Emulator
from aetherdiag.exitcodes import ExitCode


@pytest.fixture
def em() -> Iterator[Emulator]:
    with Emulator() as broker:
        yield broker


def watch_while(em: Emulator, traffic: Callable[[Wire], None], *args: str
                ) -> tuple[Result, dict[str, Any]]:
    """``aetherdiag watch -b EM --format json ARGS`` while ``traffic`` runs once the watch
    has subscribed."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            wait_for_watcher(em)
            wire = Wire(em.host, em.port)
            try:
                traffic(wire)
            finally:
                wire.close()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        result = invoke("watch", "-b", em.url, "--format", "json", "--quiet", *args)
    finally:
        thread.join(timeout=30)
    assert not errors, errors
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["exit_code"] == result.exit_code
    return result, doc


def healthy(wire: Wire) -> None:
    for n in range(9):
        wire.online(f"w{n % 3}")
        wire.perform(f"t{n}")
        wire.handle(f"t{n}", f"w{n % 3}")


def test_healthy_three_workers(em: Emulator) -> None:
    result, doc = watch_while(em, healthy, "--tasks", "9", "--duration", "20")
    assert result.exit_code == ExitCode.OK, result.output
    assert [(w["name"], w["unique"]) for w in doc["workers"]] == [
        ("h1/w0", 3), ("h1/w1", 3), ("h1/w2", 3)]
    assert doc["verdict"] == "healthy" and doc["balance"]["judged"]


def test_two_workers_answering_one_task_is_exit_1(em: Emulator) -> None:
    def traffic(wire: Wire) -> None:
        healthy(wire)
        wire.handle("t4", "intruder")

    result, doc = watch_while(em, traffic, "--tasks", "9", "--duration", "20")
    assert result.exit_code == ExitCode.DUPLICATES, result.output
    assert doc["duplicates"]["cross_worker_tasks"] == [
        {"task": "t4", "workers": ["h1/w1", "h1/intruder"]}]


def test_a_perform_never_answered_stalls(em: Emulator) -> None:
    def traffic(wire: Wire) -> None:
        healthy(wire)
        wire.perform("orphan")

    result, doc = watch_while(em, traffic, "--tasks", "10", "--stall-after", "0.5",
                              "--duration", "20")
    assert result.exit_code == ExitCode.MISSING, result.output
    assert doc["missing"] == ["orphan"]


def test_record_then_input_gives_the_same_verdict(em: Emulator, tmp_path: Path) -> None:
    record = tmp_path / "watch.jsonl"

    def traffic(wire: Wire) -> None:
        healthy(wire)
        wire.handle("t2", "intruder")
        wire.send("production/engine/process-data/batch1/t9/status", b"not json")

    live, live_doc = watch_while(em, traffic, "--tasks", "9", "--duration", "20",
                                 "--record", str(record))
    assert live.exit_code == ExitCode.DUPLICATES, live.output
    text = record.read_text()
    assert "not json" not in text and '"digest"' in text
    again = invoke("watch", "--input", str(record), "--format", "json")
    doc = json.loads(again.stdout)
    assert again.exit_code == live.exit_code
    for key in ("workers", "checks", "duplicates", "missing", "published"):
        assert doc[key] == live_doc[key], key


def test_bad_input_lines_are_file_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"schema": "aetherdiag.watch/1"}\n{"at": "soon"}\n')
    line = one_error_line(invoke("watch", "--input", str(path)))
    assert f"{path}:2: " in line
    missing = invoke("watch", "--input", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == ExitCode.USAGE and "nope.jsonl" in one_error_line(missing)


def test_unreachable_broker_is_exit_3_within_the_connect_timeout() -> None:
    started = time.monotonic()
    result = invoke("watch", "-b", f"mqtt://127.0.0.1:{free_port()}", "--connect-timeout", "2")
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "connection refused" in one_error_line(result)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("args", [
    ["--profile", "generic", "--task-topic", "jobs/+"],
    ["--profile", "generic"],
    ["--profile", "generic", "--task-topic", "jobs/{task_id}", "--worker-field", "w"],
    ["--profile", "other"],
    ["--job", "a/b"],
    ["--task-topic", "jobs/{task_id}"],
    [],  # no --broker, no --input
])
def test_bad_options_are_one_line_usage_errors(args: list[str]) -> None:
    result = invoke("watch", *args)
    assert result.exit_code == ExitCode.USAGE, result.output
    one_error_line(result)


def test_generic_profile_with_a_pointer(em: Emulator) -> None:
    def traffic(wire: Wire) -> None:
        for n in range(6):
            wire.send(f"jobs/{n}", b"opaque")
            wire.send(f"results/{n}", json.dumps({"worker": f"p{n % 2}"}).encode())
        wire.send("results/3", b'{"worker": "p9"}')

    result, doc = watch_while(em, traffic, "--profile", "generic", "--task-topic",
                              "jobs/{task_id}", "--reply-topic", "results/{task_id}",
                              "--worker-field", "/worker", "--tasks", "6", "--duration", "20")
    assert result.exit_code == ExitCode.DUPLICATES, result.output
    assert {w["name"]: w["unique"] for w in doc["workers"]} == {"p0": 3, "p1": 3, "p9": 1}


def test_empty_watch_says_no_tasks_observed(em: Emulator) -> None:
    result = invoke("watch", "-b", em.url, "--duration", "0.5", "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == ExitCode.OK and doc["verdict"] == "no tasks observed"


@pytest.mark.slow
def test_sigint_prints_the_report_and_exits_130(em: Emulator) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "watch", "-b", em.url, "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        wait_for_watcher(em, timeout=20)
        wire = Wire(em.host, em.port)
        try:
            healthy(wire)
        finally:
            wire.close()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] and doc["published"] == 9
    assert b"Traceback" not in err and err.decode().strip().endswith("aetherdiag: interrupted")


@pytest.mark.slow
@pytest.mark.mosquitto
def test_healthy_on_a_private_mosquitto() -> None:
    with tempfile.TemporaryDirectory(prefix="aetherdiag-watch-") as tmp, \
            running_mosquitto(Path(tmp)) as mosq:
        def run() -> None:
            time.sleep(1.0)  # Mosquitto cannot tell us when the watch has subscribed
            wire = Wire(mosq.host, mosq.port)
            try:
                healthy(wire)
            finally:
                wire.close()

        thread = threading.Thread(target=run)
        thread.start()
        try:
            result = invoke("watch", "-b", f"mqtt://{mosq.host}:{mosq.port}", "--format",
                            "json", "--tasks", "9", "--duration", "20")
        finally:
            thread.join(timeout=30)
    doc = json.loads(result.stdout)
    assert result.exit_code == ExitCode.OK, result.output
    assert sorted(w["unique"] for w in doc["workers"]) == [3, 3, 3]
