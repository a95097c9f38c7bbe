"""``aetherdiag watch`` never says healthy for what it did not see (issue 20), on a private
Mosquitto with real publishers: paho clients of this test that speak AetherMagic's wire
(tests/watch/amwire.py), the watch through the CLI in this process.

Each test has a union of its own on one Mosquitto for the module. Mosquitto logs every
SUBSCRIBE, which is how a test knows the watch is in; the ``--record`` file (flushed on every
tick of the watch) is how it knows what the watch saw and when, so nothing here waits on a bare
sleep.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.brokers import MosquittoProcess, readable_tempdir, running_mosquitto
from support.cli import invoke
from typer.testing import Result
from watch.amwire import Wire

from aetherdiag.exitcodes import ExitCode
from aetherdiag.watch.observe import TICK

pytestmark = pytest.mark.mosquitto
WAIT = 20.0  # seconds before a wait for the watch gives up (a loaded machine is slow)


@pytest.fixture(scope="module")
def mosq() -> Iterator[MosquittoProcess]:
    with readable_tempdir("aetherdiag-watch-truth-") as tmp, \
            running_mosquitto(tmp, "log_type subscribe\n") as broker:
        yield broker


@pytest.fixture
def union(mosq: MosquittoProcess) -> str:
    if mosq.proc.poll() is not None:
        pytest.fail(f"the private mosquitto died:\n{mosq.log_text()}", pytrace=False)
    return f"w{uuid.uuid4().hex[:10]}"


def until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """``check()``'s first truthy value, polled; an AssertionError naming ``what`` after
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def recorded(path: Path) -> list[dict[str, Any]]:
    """The events of a ``--record`` file so far (a line still being written is left out)."""
    out = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if "action" in doc:
            out.append(doc)
    return out


def watch_while(mosq: MosquittoProcess, union: str, traffic: Callable[[Wire], None],
                *args: str, watched_union: str | None = None) -> tuple[Result, dict[str, Any]]:
    """``aetherdiag watch`` on ``mosq`` (``--union``, JSON, quiet) while ``traffic`` runs in a
    thread once Mosquitto has the watch's subscription; the result and the JSON report."""
    watched = watched_union or union
    errors: list[BaseException] = []

    def run() -> None:
        try:
            until("the watch's SUBSCRIBE", lambda: f" {watched}/+/+/+/+/+" in mosq.log_text())
            wire = Wire(mosq.host, mosq.port, union)
            try:
                traffic(wire)
            finally:
                wire.close()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        result = invoke("watch", "-b", f"mqtt://{mosq.host}:{mosq.port}", "--union", watched,
                        "--format", "json", "--quiet", *args)
    finally:
        thread.join(timeout=60)
    assert not errors, errors
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["exit_code"] == result.exit_code
    return result, doc


def test_a_second_worker_answering_after_forget_after_is_a_duplicate(
        mosq: MosquittoProcess, union: str, tmp_path: Path) -> None:
    record = tmp_path / "watch.jsonl"
    forget_after = 0.5

    def traffic(wire: Wire) -> None:
        wire.perform("t1")
        wire.handle("t1", "A")
        done = until("t1's complete in the recording", lambda: [
            e for e in recorded(record) if e["tid"] == "t1" and e["action"] == "complete"])
        # The watch forgets t1 at its first tick forget_after after that complete. An event
        # recorded a tick later than that was taken off the queue after such a tick.
        forgotten_by = done[0]["at"] + forget_after + TICK + 0.05

        def clock() -> bool:
            wire.online("clock")
            return any(e["at"] >= forgotten_by for e in recorded(record))

        until("the watch to pass forget-after", clock)
        wire.handle("t1", "B")  # the late second answer
        wire.perform("t2")  # then a healthy task: --tasks 2 ends the watch once it is done
        wire.handle("t2", "A")

    result, doc = watch_while(mosq, union, traffic, "--forget-after", str(forget_after),
                              "--tasks", "2", "--duration", "60", "--record", str(record))
    assert result.exit_code == ExitCode.DUPLICATES, result.output
    assert doc["duplicates"]["cross_worker_tasks"] == [
        {"task": "t1", "workers": ["h1/A", "h1/B"]}]
    notes = "\n".join(doc["notes"])
    assert "1 finished and forgotten task(s) heard from again" in notes
    assert "finished task(s) forgotten after 0.5 s" in notes
    assert "perform was not seen" not in notes  # the watch start is not blamed
    assert doc["published"] == 2
    assert doc["run"]["workers answering"] == "2"
    # the recording judged again gives the same verdict
    again = invoke("watch", "--input", str(record), "--forget-after", str(forget_after),
                   "--format", "json")
    assert again.exit_code == ExitCode.DUPLICATES
    assert json.loads(again.stdout)["duplicates"] == doc["duplicates"]


def test_a_retained_stale_perform_is_ignored_and_noted(
        mosq: MosquittoProcess, union: str, tmp_path: Path) -> None:
    record = tmp_path / "watch.jsonl"
    stale = Wire(mosq.host, mosq.port, union)
    try:  # long before the watch: kept by the broker, acknowledged before the watch starts
        stale.perform("stale-task", retain=True)
    finally:
        stale.close()

    def traffic(wire: Wire) -> None:
        for n in range(3):
            wire.perform(f"t{n}")
            wire.handle(f"t{n}", f"w{n}")

    result, doc = watch_while(mosq, union, traffic, "--tasks", "3", "--stall-after", "1",
                              "--duration", "60", "--record", str(record))
    assert result.exit_code == ExitCode.OK, result.output
    assert doc["published"] == 3 and doc["missing"] == []
    note = "1 retained message(s) ignored: stale state from before the watch, not live tasks"
    assert note in doc["notes"]
    events = recorded(record)
    assert [e["tid"] for e in events if e.get("retained")] == ["stale-task"]
    # --input gives the same verdict and the same note
    again = invoke("watch", "--input", str(record), "--stall-after", "1", "--format", "json")
    assert again.exit_code == ExitCode.OK and note in json.loads(again.stdout)["notes"]
    # the same recording cut off before its end (a killed watch): incomplete, and it says so
    lines = record.read_text().splitlines()
    assert "ended" in json.loads(lines[-1])
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n")
    judged = invoke("watch", "--input", str(cut), "--stall-after", "1", "--format", "json")
    cut_doc = json.loads(judged.stdout)
    assert judged.exit_code == ExitCode.INCOMPLETE and cut_doc["verdict"] == "incomplete"
    assert any(n.startswith(f"{cut} ends without the watch's end record")
               for n in cut_doc["notes"])


def test_watching_the_wrong_union_sees_nothing_and_fails(
        mosq: MosquittoProcess, union: str) -> None:
    def traffic(wire: Wire) -> None:  # the pool works, in another union than the watched one
        for n in range(3):
            wire.perform(f"t{n}")
            wire.handle(f"t{n}", f"w{n}")

    wrong = f"{union}-typo"
    result, doc = watch_while(mosq, union, traffic, "--duration", "1", watched_union=wrong)
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert doc["verdict"] == "no tasks observed"
    assert doc["checks"][-1] == {"name": "tasks observed", "passed": False,
                                 "detail": doc["checks"][-1]["detail"], "exit_code": 7}
    hints = [ln for ln in result.stderr.splitlines() if "hint:" in ln]
    assert len(hints) == 1 and f"mosquitto_sub -v -t '{wrong}/+/+/+/+/+'" in hints[0]
    assert doc["notes"][0].startswith(f"hint: no task arrived on {wrong}/+/+/+/+/+")
