"""``watch`` as a long-running monitor (issue 26), on a private Mosquitto: ``--metrics-port``
scraped while a real AetherMagic pool works (one worker also subscribed plain, so tasks are
processed twice), ``--duration 0`` ended by SIGTERM, SIGHUP reopening the ``--record`` file,
and the recording rolled over by size.

The watch runs as its own process (``python -m aetherdiag watch``), so signals reach it as
they would in production. A test knows the watch has subscribed when its ``--record`` file has
its header: the file is flushed at the watch's first tick, which comes after every SUBACK.
What the watch saw, and when, is read from that file and from ``/metrics``; nothing waits on
a bare sleep. Every process a test starts is stopped by the ``procs`` fixture.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.brokers import MosquittoProcess, readable_tempdir, running_mosquitto, stop_process
from support.cli import invoke
from support.paths import REPO, TESTS
from watch.amwire import Wire

from aetherdiag.exitcodes import ExitCode

WAIT = 30.0  # seconds before a wait gives up (a loaded machine is slow)
MULTI = "aetherdiag_watch_tasks_processed_by_several_workers_total"
DOC = REPO / "docs" / "metrics.md"


@pytest.fixture(scope="module")
def mosq() -> Iterator[MosquittoProcess]:
    with readable_tempdir("aetherdiag-watch-monitor-") as tmp, running_mosquitto(tmp) as broker:
        yield broker


@pytest.fixture
def union(mosq: MosquittoProcess) -> str:
    if mosq.proc.poll() is not None:
        pytest.fail(f"the private mosquitto died:\n{mosq.log_text()}", pytrace=False)
    return f"m{uuid.uuid4().hex[:10]}"  # a topic tree of its own


class Procs:
    """Starts processes (stderr, and stdout unless piped, to ``tmp/NAME.log``); ``close``
    stops every one of them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              piped: bool = False) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE if piped else log, stderr=log,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                    cwd=REPO)
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in reversed(self.started):
            try:
                stop_process(proc)
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.close()


def until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """``check()``'s first truthy value, polled; an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a recording so far."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def has_header(path: Path) -> bool:
    got = lines(path)
    return bool(got) and "schema" in got[0]


def completed(path: Path, tid: str) -> bool:
    return any(e.get("tid") == tid and e.get("action") == "complete" for e in lines(path))


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@dataclass
class Watch:
    proc: subprocess.Popen[bytes]
    procs: Procs
    report: Path
    record: Path

    def log(self) -> str:
        return self.procs.log("watch")

    def metrics_url(self) -> str:
        found = until("the watch's 'metrics on' line", lambda: re.search(
            r"^aetherdiag watch: metrics on (http://\S+/metrics)$", self.log(), re.MULTILINE))
        return str(found.group(1))

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Its exit code and JSON report, once it ended."""
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the watch did not end:\n{self.log()}") from None
        assert "Traceback" not in self.log(), self.log()
        doc: dict[str, Any] = json.loads(self.report.read_text())
        assert doc["exit_code"] == code, (code, self.log())
        return code, doc


def start_watch(procs: Procs, mosq: MosquittoProcess, union: str, *args: str) -> Watch:
    """``aetherdiag watch`` on ``union`` (JSON report to a file, ``--record``); returns once it
    has subscribed (its recording has its header)."""
    report, record = procs.tmp / "report.json", procs.tmp / "pool.jsonl"
    proc = procs.start("watch", [
        sys.executable, "-m", "aetherdiag", "watch", "-b", f"mqtt://{mosq.host}:{mosq.port}",
        "--union", union, "--format", "json", "--output", str(report), "--record", str(record),
        "--quiet", *args])
    watch = Watch(proc, procs, report, record)

    def subscribed() -> bool:
        assert proc.poll() is None, f"the watch ended early:\n{watch.log()}"
        return has_header(record)

    until("the watch's subscription (its record header)", subscribed)
    return watch


def traffic(mosq: MosquittoProcess, union: str, tids: list[str]) -> None:
    """Each task performed and handled, round robin over workers w0, w1, w2."""
    wire = Wire(mosq.host, mosq.port, union)
    try:
        for n, tid in enumerate(tids):
            wire.perform(tid)
            wire.handle(tid, f"w{n % 3}")
    finally:
        wire.close()


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(("args", "message"), [
    (["-b", "mqtt://127.0.0.1:1", "--metrics-host", "::1"],
     "--metrics-host needs --metrics-port PORT"),
    (["-b", "mqtt://127.0.0.1:1", "--record-max-mb", "1"], "--record-max-mb needs --record FILE"),
    (["-b", "mqtt://127.0.0.1:1", "--record", "x.jsonl", "--record-keep", "3"],
     "--record-keep needs --record-max-mb MB"),
    (["--input", "x.jsonl", "--metrics-port", "0"], "--metrics-port cannot be used with --input"),
    (["--input", "x.jsonl", "--duration", "0"], "--duration cannot be used with --input"),
    (["-b", "mqtt://127.0.0.1:1", "--duration", "-1"], "Invalid value for '--duration'"),
    (["-b", "mqtt://127.0.0.1:1", "--metrics-port", "65536"],
     "Invalid value for '--metrics-port'"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    result = invoke("watch", *args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.stderr


def test_a_metrics_port_in_use_is_a_usage_error_before_connecting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        record = tmp_path / "pool.jsonl"
        # port 1: nothing listens there, but the endpoint is refused before any connection
        result = invoke("watch", "-b", "mqtt://127.0.0.1:1", "--metrics-port", str(port),
                        "--record", str(record))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1: " in result.stderr


# --------------------------------------------------------------------------- metrics


def start_worker(procs: Procs, mosq: MosquittoProcess, union: str, name: str, script: str
                 ) -> str:
    """An AetherMagic worker process; returns its reply ``client`` once it printed READY."""
    proc = procs.start(name, [sys.executable, str(TESTS / "workers" / script)], {
        "MQTT_HOST": mosq.host, "MQTT_PORT": str(mosq.port), "AM_UNION": union,
        "AETHERDIAG_WORKER": name}, piped=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(WAIT)
    line = proc.stdout.readline().decode() if ready else ""
    assert line.startswith(f"READY {name} "), f"{name}: {line!r}\n{procs.log(name)}"
    return dict(part.split("=", 1) for part in line.split()[2:])["client"]


def run_caller(procs: Procs, mosq: MosquittoProcess, union: str, name: str, count: int) -> None:
    proc = procs.start(name, [sys.executable, str(TESTS / "workers" / "am_caller.py"), "-n",
                              str(count), "--rate", "20"],
                       {"MQTT_HOST": mosq.host, "MQTT_PORT": str(mosq.port), "AM_UNION": union})
    assert proc.wait(timeout=WAIT) == 0, procs.log(name)


def documented() -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), re.MULTILINE))


@pytest.mark.mosquitto
def test_metrics_count_tasks_processed_by_several_workers_while_watching(
        procs: Procs, mosq: MosquittoProcess, union: str) -> None:
    pytest.importorskip("aethermagic", reason="the test extra installs aethermagic[mqtt]")
    clients = [start_worker(procs, mosq, union, name, script) for name, script in (
        ("w1", "am_worker.py"), ("w2", "am_worker.py"), ("w3", "am_worker_plain_too.py"))]
    # --tasks 6: it cannot end before the second batch, so /metrics is scraped mid-watch
    watch = start_watch(procs, mosq, union, "--metrics-port", "0", "--tasks", "6",
                        "--duration", "120")
    url = watch.metrics_url()
    assert url.startswith("http://127.0.0.1:")
    run_caller(procs, mosq, union, "caller-1", 3)
    got = until("a task processed by several workers on /metrics", lambda: (
        s := scrape(url)).get((MULTI, ()), 0) >= 1 and s)
    assert watch.proc.poll() is None  # scraped during the watch
    assert got[("aetherdiag_watch_tasks_total", ())] == 3
    per_worker = {dict(labels)["worker"]: value for (name, labels), value in got.items()
                  if name == "aetherdiag_watch_worker_tasks_total"}
    assert all(any(c in w for c in clients) for w in per_worker), per_worker
    assert any(clients[2] in w for w in per_worker)  # the plain one answers every task
    names = {name for name, _ in got}
    assert names <= documented(), names - documented()
    run_caller(procs, mosq, union, "caller-2", 3)
    code, doc = watch.finish()
    assert code == ExitCode.DUPLICATES, watch.log()
    assert doc["duplicates"]["cross_worker"] >= 1 and doc["published"] == 6
    with pytest.raises(urllib.error.URLError):  # the endpoint ended with the watch
        scrape(url)


# --------------------------------------------------------------------------- signals


@pytest.mark.mosquitto
def test_duration_0_runs_until_sigterm_and_reports(procs: Procs, mosq: MosquittoProcess,
                                                   union: str) -> None:
    watch = start_watch(procs, mosq, union, "--duration", "0", "--metrics-port", "0")
    url = watch.metrics_url()
    traffic(mosq, union, ["t0", "t1", "t2"])
    until("the three tasks on /metrics", lambda: scrape(url).get(
        ("aetherdiag_watch_tasks_processed_total", ())) == 3)
    assert watch.proc.poll() is None
    watch.proc.send_signal(signal.SIGTERM)
    code, doc = watch.finish()
    assert code == ExitCode.INTERRUPTED, watch.log()
    assert doc["published"] == 3 and doc["duplicates"]["cross_worker"] == 0
    assert any(n.startswith("interrupted: without the interrupt the verdict is healthy")
               for n in doc["notes"]), doc["notes"]
    assert "aetherdiag: interrupted" in watch.log()
    assert lines(watch.record)[-1]["reason"] == "interrupted"


@pytest.mark.mosquitto
def test_sighup_reopens_the_record_file(procs: Procs, mosq: MosquittoProcess, union: str
                                        ) -> None:
    watch = start_watch(procs, mosq, union, "--duration", "0")
    traffic(mosq, union, ["t0"])
    until("t0 recorded", lambda: completed(watch.record, "t0"))
    moved = watch.record.with_name("pool.jsonl.moved")
    watch.record.rename(moved)  # what logrotate does, then it sends SIGHUP
    watch.proc.send_signal(signal.SIGHUP)
    until("a new record file with its header", lambda: has_header(watch.record))
    traffic(mosq, union, ["t1"])
    until("t1 in the new file", lambda: completed(watch.record, "t1"))
    assert watch.proc.poll() is None  # SIGHUP did not end it
    old = lines(moved)
    assert "schema" in old[0] and old[-1]["reason"] == "reopened"
    assert {e["tid"] for e in old[1:-1]} == {"t0"}
    watch.proc.send_signal(signal.SIGTERM)
    code, doc = watch.finish()
    assert code == ExitCode.INTERRUPTED and doc["published"] == 2
    new = lines(watch.record)
    assert new[-1]["reason"] == "interrupted" and {e["tid"] for e in new[1:-1]} == {"t1"}
    # the moved file is a recording of its own, ended in order
    again = invoke("watch", "--input", str(moved), "--format", "json")
    assert again.exit_code == ExitCode.OK, again.output
    assert json.loads(again.stdout)["published"] == 1


@pytest.mark.mosquitto
def test_the_recording_rolls_over_by_size(procs: Procs, mosq: MosquittoProcess, union: str
                                          ) -> None:
    watch = start_watch(procs, mosq, union, "--record-max-mb", "0.01", "--record-keep", "3",
                        "--tasks", "60", "--duration", "120")
    traffic(mosq, union, [f"t{n}" for n in range(60)])
    code, doc = watch.finish()
    assert code == ExitCode.OK and doc["published"] == 60, watch.log()
    kept = sorted(p.name for p in watch.record.parent.glob("pool.jsonl*"))
    assert kept == ["pool.jsonl", "pool.jsonl.1", "pool.jsonl.2"]  # at most 3: older deleted
    tids: list[int] = []
    for name in reversed(kept):  # oldest first
        path = watch.record.with_name(name)
        got = lines(path)
        assert "schema" in got[0], name
        assert path.stat().st_size < 10_000 + 400, name  # the limit, and one end line
        assert got[-1]["reason"] == ("tasks" if name == "pool.jsonl" else "rolled over")
        tids += [int(e["tid"][1:]) for e in got[1:-1] if e.get("action") == "perform"]
        judged = invoke("watch", "--input", str(path), "--format", "json")
        assert judged.exit_code not in (ExitCode.USAGE, ExitCode.INCOMPLETE), judged.output
    assert tids == sorted(tids) and tids[-1] == 59 and tids[0] > 0  # the last ones, in order
