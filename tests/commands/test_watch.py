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


def test_empty_watch_is_incomplete_with_a_hint(em: Emulator) -> None:
    result = invoke("watch", "-b", em.url, "--union", "nobody", "--duration", "0.5",
                    "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == ExitCode.INCOMPLETE and doc["verdict"] == "no tasks observed"
    assert doc["exit_code"] == 7 and doc["checks"][-1]["name"] == "tasks observed"
    hint = "hint: no task arrived on nobody/+/+/+/+/+"
    assert doc["notes"][0].startswith(hint)
    [line] = [ln for ln in result.stderr.splitlines() if "hint:" in ln]
    assert line.startswith(f"aetherdiag: {hint}")
    assert "mosquitto_sub -v -t 'nobody/+/+/+/+/+'" in line and "--union" in line
    assert doc["run"]["announced since start"] == "0"
    assert doc["run"]["workers answering"] == "0"


def recording(path: Path, end: str | None, *, healthy: bool = True) -> Path:
    """A recording of 9 tasks on 3 workers (a second worker on t4 unless ``healthy``), ended
    with ``end`` as its reason (None: no end line, as a killed watch leaves it)."""
    from watch.synthetic import handled, status

    from aetherdiag.watch.record import Recorder

    with path.open("w") as stream:
        rec = Recorder(stream, {"profile": "aethermagic", "filters": ["production/+/+/+/+/+"],
                                "target": "mqtt://broker"})
        for n in range(9):
            for event in handled(n, f"t{n}", f"w{n % 3}"):
                rec.write(event)
        if not healthy:
            rec.write(status(9.5, "t4", "intruder"))
        if end is not None:
            rec.close(10.0, end)
    return path


@pytest.mark.parametrize(("end", "healthy", "code"), [
    ("duration", True, ExitCode.OK),
    (None, True, ExitCode.INCOMPLETE),
    (None, False, ExitCode.DUPLICATES),  # the lower code wins
    ("interrupted", True, ExitCode.INTERRUPTED),
    ("interrupted", False, ExitCode.INTERRUPTED),  # 130 always wins
    ("lost: the broker closed the connection (7)", True, ExitCode.UNREACHABLE),
])
def test_input_judges_a_recording_by_how_it_ended(tmp_path: Path, end: str | None,
                                                  healthy: bool, code: ExitCode) -> None:
    path = recording(tmp_path / "pool.jsonl", end, healthy=healthy)
    result = invoke("watch", "--input", str(path), "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == code, result.output
    cut = [n for n in doc["notes"] if "ends without the watch's end record" in n]
    if end is None:
        assert cut == [f"{path} ends without the watch's end record (the watch was killed, "
                       "or the file was cut short): judged as cut off, with the figures up to "
                       "its last line"]
        assert any(c["name"] == "recording complete" and c["passed"] is False
                   for c in doc["checks"])
    else:
        assert cut == []
    assert doc["interrupted"] is (end == "interrupted")
    assert doc["run"]["filters"] == "production/+/+/+/+/+" and doc["published"] == 9


def test_input_of_a_recording_that_saw_nothing_is_incomplete(tmp_path: Path) -> None:
    from aetherdiag.watch.record import Recorder

    path = tmp_path / "empty.jsonl"
    with path.open("w") as stream:
        Recorder(stream, {"profile": "aethermagic", "filters": ["wrong/+/+/+/+/+"]}).close(
            30.0, "duration")
    result = invoke("watch", "--input", str(path), "--format", "json")
    assert result.exit_code == ExitCode.INCOMPLETE
    assert "'wrong/+/+/+/+/+'" in result.stderr and "no task arrived" in result.stderr


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
