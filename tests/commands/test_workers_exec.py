"""``aetherdiag workers --exec``: real AetherMagic worker processes (aethermagic[mqtt] from
PyPI), small broken variants of them, and a shell worker, on the embedded emulator and on a
private Mosquitto. Every test ends every process it started."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.children import children_before, no_children_left
from support.cli import causes, failed_checks, run_json
from support.paths import TESTS

from aetherdiag.cli import main

pytest.importorskip("aethermagic", reason="the test extra installs aethermagic[mqtt]")
pytestmark = pytest.mark.slow

WORKERS = TESTS / "workers"  # the worker programs the runs start
PY = shlex.quote(sys.executable)


__all__ = ["children_before"]  # autouse: what ran before a test is not its to end


def script(name: str) -> str:
    return f"{PY} {shlex.quote(str(WORKERS / name))}"


def mixed(good: str, broken: str) -> str:
    """worker-2 runs ``broken``, the others ``good``."""
    inner = (f'if [ "{{index}}" = 2 ]; then exec {script(broken)}; '
             f'else exec {script(good)}; fi')
    return f"sh -c {shlex.quote(inner)}"


# --------------------------------------------------------------------------- on the emulator


def test_three_aethermagic_workers_share_nine_tasks() -> None:
    result, doc = run_json("--exec", script("am_worker.py"), "--profile", "aethermagic",
                           "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 0, result.output
    assert [w["unique"] for w in doc["workers"]] == [3, 3, 3]
    assert [w["handled"] for w in doc["workers"]] == [3, 3, 3]
    assert doc["run"]["mqtt"] == "3.1.1" and doc["run"]["qos"] == "0"  # the library's defaults
    no_children_left()


def test_a_process_that_also_subscribes_plain_is_named() -> None:
    result, doc = run_json("--exec", mixed("am_worker.py", "am_worker_plain_too.py"),
                           "--profile", "aethermagic", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 1, result.output
    assert doc["workers"][1]["unique"] == 9  # worker-2 got every task
    text = causes(doc)
    assert re.search(r"worker-2 \(pid \d+, client '[^']+'\) also holds the plain subscription "
                     r"'production/engine/process-data/batch1/\+/perform'", text), text
    assert "worker-1" not in text and "worker-3" not in text  # nobody else is accused


def test_a_handler_on_the_share_filter_is_delivered_but_never_handled() -> None:
    result, doc = run_json("--exec", mixed("am_worker.py", "am_worker_callback_on_share.py"),
                           "--profile", "aethermagic", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 4, result.output
    w2 = doc["workers"][1]
    assert w2["unique"] == 3 and w2["handled"] == 0 and len(w2["never_handled"]) == 3
    assert "worker-2 received 3 task(s) and never handled them" in causes(doc)
    assert "every delivered task handled" in failed_checks(doc)


def test_a_handler_that_runs_twice_is_a_repeat() -> None:
    result, doc = run_json("--exec", mixed("am_worker.py", "am_worker_twice.py"),
                           "--profile", "aethermagic", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 1, result.output
    assert len(doc["workers"][1]["handled_twice"]) == 3
    assert doc["workers"][0]["handled_twice"] == []
    assert "worker-2 handled 3 task(s) more than once" in causes(doc)


def test_any_language_works_a_shell_worker() -> None:
    result, doc = run_json("--exec", "bash " + shlex.quote(str(WORKERS / "sh_worker.sh")),
                           "--profile", "aethermagic", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 0, result.output
    assert [w["unique"] for w in doc["workers"]] == [3, 3, 3]
    no_children_left()


# --------------------------------------------------------------------------- lifecycle


def test_a_worker_that_fails_at_start_is_one_line_with_its_log(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    failing = tmp_path / "fails.sh"
    failing.write_text("echo 'config error: no such queue' >&2\nexit 3\n")
    with pytest.raises(SystemExit) as exited:
        main(["workers", "--exec", f"sh {failing}", "--count", "2", "--quiet"])
    _, err = capsys.readouterr()
    assert exited.value.code == 7
    lines = err.strip().splitlines()
    assert lines[0].startswith("aetherdiag: error: worker-") and "status 3" in lines[0]
    assert any("config error: no such queue" in line for line in lines[1:])
    assert "Traceback" not in err
    no_children_left()


@pytest.mark.parametrize("args", [
    ["--exec", ""], ["--exec", "worker {nope}"], ["--exec", "worker {index:>5}"],
    ["--exec", "worker 'unbalanced"], ["--exec", "w", "--work-ms", "10"],
    ["--exec", "w", "--plain"], ["--exec", "w", "--profile", "aethermagic", "--topic", "j/{n}"],
    ["--exec", "w", "--profile", "nope"], ["--logs", "/tmp"],
])
def test_bad_exec_input_is_one_line_exit_2(args: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["workers", *args])
    _, err = capsys.readouterr()
    assert exited.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ctrl_c_ends_every_worker_process_within_5_s(tmp_path: Path) -> None:
    """SIGINT once the workers handle tasks (a worker's log says so: an event, not a sleep)."""
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "workers", "--exec", script("am_worker.py"),
         "--profile", "aethermagic", "--count", "3", "--tasks", "100000", "--rate", "100",
         "--quiet", "--format", "json", "--logs", str(logs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        handling = False
        while time.monotonic() < deadline and not (handling and len(children) >= 3):
            children = [c for c in parent.children(recursive=True)
                        if "am_worker" in " ".join(c.cmdline())]
            handling = any("handling" in log.read_text(errors="replace")
                           for log in logs.glob("worker-*.log"))
            time.sleep(0.1)
        assert len(children) >= 3 and handling, "the workers never handled a task"
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = proc.communicate(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=max(0.1, 5 - (time.monotonic() -
                                                                           start)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    assert proc.returncode == 130, err
    assert json.loads(out)["interrupted"] is True


# --------------------------------------------------------------------------- a real broker


@pytest.mark.mosquitto
def test_aethermagic_workers_on_mosquitto_are_attributed_from_their_replies(
        mosquitto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    union = f"ad{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AM_UNION", union)  # the workers' own configuration
    result, doc = run_json(
        "--exec", script("am_worker.py"), "--profile", "aethermagic", "--count", "3",
        "--tasks", "9", "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}",
        "--union", union, "--use-production-topics", "--warmup", "2", "--timeout", "20", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(doc["workers"]) == 3  # three identities answered
    assert sorted(w["unique"] for w in doc["workers"]) == [3, 3, 3]
    assert all("/" in w["name"] for w in doc["workers"])  # host/client from the replies
    no_children_left(keep=frozenset({mosquitto.proc.pid}))
