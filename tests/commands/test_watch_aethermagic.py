"""``aetherdiag watch`` against a live AetherMagic pool (the acceptance list of issue 11).

Everything here is real: worker processes and callers written with the ``aethermagic[mqtt]``
library from PyPI (tests/workers/am_*.py), the broker (the embedded emulator, round robin, or
a private Mosquitto), and ``python -m aetherdiag watch`` as its own process, watching with plain
subscriptions while the pool works. Each test: start the pool (READY lines), start the watch
and wait until the broker has its subscription, run the caller(s), let the watch end on its own
(``--tasks`` or ``--duration``) and read its JSON report (``--output``).

Every process a test starts is ended (SIGTERM, then SIGKILL) by the ``spawn`` fixture, also
when the test fails.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from support.brokers import MosquittoProcess, readable_tempdir, running_mosquitto, stop_process
from support.paths import REPO, TESTS

from aetherdiag.emulator import Emulator

pytest.importorskip("aethermagic", reason="the test extra installs aethermagic[mqtt]")
pytestmark = pytest.mark.slow

WORKERS = TESTS / "workers"
READY_TIMEOUT = 15.0  # a worker's READY line / the watch's subscription


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A started process: ``log`` holds its stderr (and its stdout unless ``piped``)."""

    name: str
    popen: subprocess.Popen[str]
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Worker:
    name: str
    proc: Proc
    client: str  # the "client" field of its replies (from its READY line)


class Spawner:
    """Starts processes in ``tmp`` and ends every one of them in ``close``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              piped: bool = False) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("w") as err:
            popen = subprocess.Popen(
                argv, stdout=subprocess.PIPE if piped else err, stderr=err, text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=REPO)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                stop_process(proc.popen)  # type: ignore[arg-type]  # text mode: same API
            finally:
                if proc.popen.stdout is not None:
                    proc.popen.stdout.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path)
    try:
        yield spawner
    finally:
        spawner.close()


def read_line(proc: Proc, timeout: float) -> str:
    """The next stdout line of a ``piped`` process, or "" at EOF / after ``timeout``."""
    stream: IO[str] | None = proc.popen.stdout
    assert stream is not None
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return stream.readline()


# --------------------------------------------------------------------------- the broker


@dataclass
class Target:
    """Where the pool and the watch meet, and how to tell the watch has subscribed."""

    host: str
    port: int
    union: str
    emulator: Emulator | None = None
    mosquitto: MosquittoProcess | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def am_env(self, **extra: str) -> dict[str, str]:
        return {"MQTT_HOST": self.host, "MQTT_PORT": str(self.port), "AM_UNION": self.union,
                **extra}

    def watch_filters(self) -> list[tuple[str, str | None]]:
        """(filter, share name) of the subscriptions in the watch's union that are not the
        workers' or the callers' own (the emulator only)."""
        assert self.emulator is not None
        found = []
        for c in self.emulator.clients():
            for s in c.subscriptions:
                if s.topic_filter.startswith(f"{self.union}/+/"):
                    found.append((s.topic_filter, s.share_name))
        return found

    def wait_watching(self, watch: Proc) -> None:
        """Until the broker has the watch's ``{union}/+/+/+/+/+`` subscription."""
        wanted = f"{self.union}/+/+/+/+/+"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert watch.popen.poll() is None, f"the watch ended early:\n{watch.log_text()}"
            if self.emulator is not None:
                if any(f == wanted for f, _ in self.watch_filters()):
                    return
            else:
                assert self.mosquitto is not None  # its config logs every SUBSCRIBE
                if f" {wanted}" in self.mosquitto.log_text():
                    return
            time.sleep(0.05)
        raise AssertionError(f"the watch never subscribed to {wanted}:\n{watch.log_text()}")


def new_union() -> str:
    return f"w{uuid.uuid4().hex[:10]}"  # a topic tree of its own


@pytest.fixture
def emulator() -> Iterator[Target]:
    """A fresh emulator (round robin, the default strategy), with its publish journal."""
    with Emulator(journal=True) as em:
        yield Target(em.host, em.port, new_union(), emulator=em)


@pytest.fixture(scope="module")
def subscribe_logging_mosquitto() -> Iterator[MosquittoProcess]:
    """A private Mosquitto that logs every SUBSCRIBE, so a test sees when the watch is in."""
    with readable_tempdir("aetherdiag-watch-mosq-") as tmp, \
            running_mosquitto(tmp, "log_type subscribe\n") as broker:
        yield broker


@pytest.fixture
def mosquitto_target(subscribe_logging_mosquitto: MosquittoProcess) -> Target:
    mosq = subscribe_logging_mosquitto
    if mosq.proc.poll() is not None:
        pytest.fail(f"the private mosquitto died:\n{mosq.log_text()}", pytrace=False)
    return Target(mosq.host, mosq.port, new_union(), mosquitto=mosq)


# --------------------------------------------------------------------------- pool, caller, watch


def start_pool(spawn: Spawner, target: Target, scripts: list[str],
               env: dict[str, dict[str, str]] | None = None) -> list[Worker]:
    """One process per script, named w1, w2, ... (started one after the other, so the share
    group's member order is w1, w2, ...); returns once every one printed READY."""
    pool = []
    for i, script in enumerate(scripts, 1):
        name = f"w{i}"
        extra = (env or {}).get(name, {})
        proc = spawn.start(name, [sys.executable, str(WORKERS / script)],
                           target.am_env(AETHERDIAG_WORKER=name, **extra), piped=True)
        line = read_line(proc, READY_TIMEOUT)
        assert line.startswith(f"READY {name} "), f"{name}: {line!r}\n{proc.log_text()}"
        fields = dict(part.split("=", 1) for part in line.split()[2:])
        pool.append(Worker(name, proc, fields["client"]))
    return pool


@dataclass
class CallerResult:
    code: int
    client: str
    tids: list[str]
    tasks: dict[str, dict[str, Any]]
    resent: list[str] = field(default_factory=list)

    def split(self) -> dict[str, list[int]]:
        """worker name -> the task numbers it completed (sorted)."""
        out: dict[str, list[int]] = {}
        for info in self.tasks.values():
            for who in info["completes"]:
                out.setdefault(who, []).append(info["n"])
        return {w: sorted(ns) for w, ns in sorted(out.items())}


def start_caller(spawn: Spawner, target: Target, name: str, *args: str) -> Proc:
    return spawn.start(name, [sys.executable, str(WORKERS / "am_caller.py"), *args],
                       target.am_env(), piped=True)


def finish_caller(proc: Proc, timeout: float = 30) -> CallerResult:
    assert proc.popen.stdout is not None
    try:
        out, _ = proc.popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.name} did not end:\n{proc.log_text()}") from None
    lines = out.splitlines()
    result = [ln for ln in lines if ln.startswith("RESULT ")]
    assert len(result) == 1, f"{proc.name}: {out!r}\n{proc.log_text()}"
    doc = json.loads(result[0][len("RESULT "):])
    return CallerResult(proc.popen.returncode, doc["client"], doc["tids"], doc["tasks"],
                        [ln.split()[1] for ln in lines if ln.startswith("RESENT ")])


def run_caller(spawn: Spawner, target: Target, *args: str, name: str = "caller"
               ) -> CallerResult:
    return finish_caller(start_caller(spawn, target, name, *args))


@dataclass
class Watch:
    proc: Proc
    report: Path
    record: Path

    def finish(self, timeout: float = 40) -> tuple[int, dict[str, Any]]:
        """Wait for the watch to end on its own: its exit code and its JSON report."""
        try:
            code = self.proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the watch did not end:\n{self.proc.log_text()}") from None
        log = self.proc.log_text()
        assert "Traceback" not in log, log
        assert self.report.exists(), f"no report (exit {code}):\n{log}"
        doc: dict[str, Any] = json.loads(self.report.read_text())
        assert doc["exit_code"] == code, (code, doc["exit_code"])
        return code, doc

    def events(self) -> list[dict[str, Any]]:
        """The ``--record`` file: one JSON object per observed message."""
        if not self.record.exists():
            return []
        return [json.loads(ln) for ln in self.record.read_text().splitlines() if ln.strip()]


def start_watch(spawn: Spawner, target: Target, *args: str) -> Watch:
    """``python -m aetherdiag watch`` on ``target`` (its union), JSON report to a file; returns
    once the broker has its subscription."""
    report = spawn.tmp / "watch-report.json"
    record = spawn.tmp / "watch-record.jsonl"
    proc = spawn.start("watch", [
        sys.executable, "-m", "aetherdiag", "watch", "--broker", target.url,
        "--union", target.union, "--format", "json", "--output", str(report),
        "--record", str(record), "--quiet", *args])
    target.wait_watching(proc)
    return Watch(proc, report, record)


# --------------------------------------------------------------------------- reading the report


def report_workers(doc: dict[str, Any], pool: list[Worker]) -> dict[str, dict[str, Any]]:
    """The report's per-worker entries by pool name (w1, ...): a report entry is a worker's
    ``host/client`` (or its client), matched to the pool by the client of its READY line."""
    out: dict[str, dict[str, Any]] = {}
    for entry in doc["workers"]:
        owners = [w.name for w in pool if w.client in entry["name"]]
        assert len(owners) == 1, (entry["name"], [w.client for w in pool])
        out[owners[0]] = entry
    return out


def unique_counts(doc: dict[str, Any], pool: list[Worker]) -> dict[str, int]:
    by_name = report_workers(doc, pool)
    return {w.name: int(by_name[w.name]["unique"]) if w.name in by_name else 0 for w in pool}


def report_text(doc: dict[str, Any]) -> str:
    """The whole report as one string, for failure messages."""
    return json.dumps(doc, indent=1)


def failed(doc: dict[str, Any]) -> set[str]:
    """The names of the report's failed checks (not the ones not judged)."""
    return {c["name"] for c in doc["checks"] if c["passed"] is False}


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in doc["checks"] if c["name"] == name]
    assert len(found) == 1, (name, [c["name"] for c in doc["checks"]])
    return found[0]


def cross_worker(doc: dict[str, Any], pool: list[Worker]) -> dict[str, set[str]]:
    """tid -> the pool names (w1, ...) of the workers the report says processed it."""
    out = {}
    for entry in doc["duplicates"]["cross_worker_tasks"]:
        out[entry["task"]] = {w.name for w in pool if any(w.client in x for x in entry["workers"])}
    return out


MULTI = "each task processed by one worker"
REPEAT = "no worker got a task twice"
COLLISION = "no task id collisions"
RESENT = "resent tasks processed once"
STALLED = "no stalled tasks"


# --------------------------------------------------------------------------- healthy


def test_healthy_pool_on_the_emulator_is_3_3_3(spawn: Spawner, emulator: Target) -> None:
    pool = start_pool(spawn, emulator, ["am_worker.py"] * 3)
    watch = start_watch(spawn, emulator, "--tasks", "9", "--duration", "30")
    caller = run_caller(spawn, emulator, "-n", "9", "--rate", "20")
    assert caller.code == 0
    code, doc = watch.finish()
    assert code == 0, report_text(doc)
    assert doc["verdict"] == "healthy" and failed(doc) == set()
    assert doc["published"] == 9 and doc["missing"] == []
    assert doc["duplicates"]["cross_worker"] == 0 and doc["duplicates"]["repeats"] == 0
    assert unique_counts(doc, pool) == {"w1": 3, "w2": 3, "w3": 3}
    assert caller.split() == {"w1": [0, 3, 6], "w2": [1, 4, 7], "w3": [2, 5, 8]}
    by_name = report_workers(doc, pool)
    for w in pool:  # the watch attributes the same tids as the workers' own completes
        assert sorted(by_name[w.name]["tasks"]) == sorted(
            tid for tid, info in caller.tasks.items() if info["completes"] == [w.name])
    # the watch subscribed plain, never to a share group
    assert all(share is None for _, share in emulator.watch_filters())


@pytest.mark.mosquitto
def test_healthy_pool_on_mosquitto_processes_each_task_once(spawn: Spawner,
                                                            mosquitto_target: Target) -> None:
    pool = start_pool(spawn, mosquitto_target, ["am_worker.py"] * 3)
    watch = start_watch(spawn, mosquitto_target, "--tasks", "9", "--duration", "30")
    caller = run_caller(spawn, mosquitto_target, "-n", "9", "--rate", "20")
    assert caller.code == 0
    code, doc = watch.finish()
    assert code == 0, report_text(doc)
    assert failed(doc) == set()
    # Mosquitto's split is its own business; what it guarantees: each task goes to one
    # member of the group, once.
    assert doc["published"] == 9 and doc["missing"] == []
    assert doc["duplicates"]["cross_worker"] == 0 and doc["duplicates"]["repeats"] == 0
    counts = unique_counts(doc, pool)
    assert sum(counts.values()) == 9, counts
    assert all(len(info["completes"]) == 1 for info in caller.tasks.values())
    assert Counter(w for info in caller.tasks.values() for w in info["completes"]) == \
        Counter({k: v for k, v in counts.items() if v})


# --------------------------------------------------------------------------- broken, detected


def test_a_plain_subscriber_replying_like_a_worker_is_processed_twice(
        spawn: Spawner, emulator: Target) -> None:
    pool = start_pool(spawn, emulator, ["am_worker.py"] * 3 + ["am_worker_plain_only.py"])
    watch = start_watch(spawn, emulator, "--duration", "4", "--stall-after", "2")
    caller = run_caller(spawn, emulator, "-n", "6", "--rate", "20")
    assert all(len(set(info["completes"])) == 2 for info in caller.tasks.values())
    code, doc = watch.finish()
    assert code == 1, report_text(doc)
    assert MULTI in failed(doc)
    doubled = cross_worker(doc, pool)
    assert set(doubled) == set(caller.tids), report_text(doc)
    for tid, info in caller.tasks.items():  # both clients named: the plain one and the worker
        assert doubled[tid] == {"w4", *info["completes"]} and len(doubled[tid]) == 2
    assert {n for names in doubled.values() for n in names} == {"w1", "w2", "w3", "w4"}
    assert unique_counts(doc, pool)["w4"] == 6
    assert "processed by several workers" in " ".join(doc["causes"])


def test_a_republisher_with_a_blocked_worker_resends_and_is_processed_twice(
        spawn: Spawner, emulator: Target) -> None:
    pool = start_pool(spawn, emulator, ["am_worker.py", "am_worker_blocks.py", "am_worker.py"],
                      env={"w2": {"AM_BLOCK_SECONDS": "3", "AM_BLOCK_COUNT": "1"}})
    watch = start_watch(spawn, emulator, "--duration", "7", "--stall-after", "5")
    caller = run_caller(spawn, emulator, "-n", "9", "--rate", "5", "--republish-after", "1",
                        "--max-resends", "1")
    assert caller.code == 0 and caller.resent, caller
    # what the workers themselves say: a resent task was completed by w2 and by another
    assert any(len(caller.tasks[t]["completes"]) == 2 for t in caller.resent), caller
    code, doc = watch.finish()
    assert code == 1, report_text(doc)
    resent = check(doc, RESENT)
    assert resent["passed"] is False, report_text(doc)
    assert resent["detail"].startswith(f"{len(caller.resent)} task(s) performed again")
    doubled = cross_worker(doc, pool)
    assert any(tid in doubled and "w2" in doubled[tid] for tid in caller.resent), \
        report_text(doc)
    assert "resent perform" in " ".join(doc["causes"])


def test_a_worker_killed_with_a_task_in_hand_stalls_it(spawn: Spawner, emulator: Target
                                                       ) -> None:
    pool = start_pool(spawn, emulator, ["am_worker.py", "am_worker_dies.py", "am_worker.py"])
    watch = start_watch(spawn, emulator, "--duration", "4", "--stall-after", "1.5")
    caller = run_caller(spawn, emulator, "-n", "6", "--rate", "10", "--wait", "2.5")
    lost = [tid for tid, info in caller.tasks.items() if not info["completes"]]
    assert caller.code == 1 and lost, caller
    assert pool[1].proc.popen.wait(timeout=5) == -9  # it did die, by SIGKILL
    code, doc = watch.finish()
    assert code == 4, report_text(doc)
    assert STALLED in failed(doc) and MULTI not in failed(doc)
    assert sorted(doc["missing"]) == sorted(lost)
    assert unique_counts(doc, pool)["w2"] == 0


def test_two_callers_reusing_a_tid_is_a_collision(spawn: Spawner, emulator: Target) -> None:
    start_pool(spawn, emulator, ["am_worker.py"] * 3)
    watch = start_watch(spawn, emulator, "--duration", "4", "--stall-after", "2")
    tid = uuid.uuid4().hex[:8]
    first = start_caller(spawn, emulator, "caller-a", "--tid", tid, "--tag", "a")
    second = start_caller(spawn, emulator, "caller-b", "--tid", tid, "--tag", "b")
    a, b = finish_caller(first), finish_caller(second)
    assert a.tids == b.tids == [tid] and a.client != b.client
    code, doc = watch.finish()
    assert code == 1, report_text(doc)
    collision = check(doc, COLLISION)
    assert collision["passed"] is False and tid in collision["detail"], report_text(doc)
    assert a.client in collision["detail"] and b.client in collision["detail"]
    assert "tid(s) were used by two different tasks" in " ".join(doc["causes"])
    # the --record file shows why: two performs of that tid, two callers, two payloads
    performs = [e for e in watch.events() if e.get("action") == "perform" and e["tid"] == tid]
    assert {e["client"] for e in performs} == {a.client, b.client}
    assert len({e["digest"] for e in performs}) == 2


# --------------------------------------------------------------------------- passive


def test_watching_does_not_change_the_pools_split(spawn: Spawner, emulator: Target) -> None:
    """The same pool, the same caller: 9 tasks without the watch, then 9 with it. Round robin
    hands the same task numbers to the same workers both times; the watch publishes nothing
    and holds no share-group subscription."""
    pool = start_pool(spawn, emulator, ["am_worker.py"] * 3)
    without = run_caller(spawn, emulator, "-n", "9", "--rate", "20", name="caller-1")
    assert without.code == 0
    watch = start_watch(spawn, emulator, "--tasks", "9", "--duration", "30")
    watched = run_caller(spawn, emulator, "-n", "9", "--rate", "20", name="caller-2")
    assert watched.code == 0
    code, doc = watch.finish()
    assert code == 0, report_text(doc)
    assert watched.split() == without.split()
    assert sorted(len(ns) for ns in without.split().values()) == [3, 3, 3]
    # the watch's own per-worker figures agree with what the workers said they did
    assert unique_counts(doc, pool) == {w: len(ns) for w, ns in watched.split().items()}
    assert all(share is None for _, share in emulator.watch_filters())
    recorded = [e["tid"] for e in watch.events() if e.get("action") == "perform"]
    assert recorded == watched.tids  # it saw the second run's tasks, and only those
    assert emulator.emulator is not None
    ours = {w.client for w in pool} | {without.client, watched.client}
    senders = {json.loads(m.payload).get("client") for m in emulator.emulator.published()
               if m.topic.startswith(emulator.union + "/")}
    assert senders <= ours  # nobody else, the watch included, published in the union
