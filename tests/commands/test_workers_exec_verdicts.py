"""``workers --exec`` never calls unfinished work healthy, and names the guilty process only.

Real worker processes: AetherMagic workers written with ``aethermagic[mqtt]==0.2.23`` (slow,
dying, with a second plain client) and small paho workers (QoS 0 with work time, a crash after
one task, two processes with one client id), on the embedded emulator; on a private Mosquitto,
a generic pool without a reply channel is refused and a silent AetherMagic-pool member stays in
the table. Every run ends every process it started (``no_children_left``).
"""

from __future__ import annotations

import re
import shlex
import sys
import uuid
from typing import Any

import pytest
from support.children import children_before, no_children_left
from support.cli import causes, failed_checks, run_json, workers
from support.paths import TESTS

pytest.importorskip("aethermagic", reason="the test extra installs aethermagic[mqtt]")
pytestmark = pytest.mark.slow
__all__ = ["children_before"]  # autouse: what ran before a test is not its to end

WORKERS = TESTS / "workers"  # the worker programs the runs start
PY = shlex.quote(sys.executable)
SHARE = "$share/pool/jobs/+"


def script(name: str) -> str:
    return f"{PY} {shlex.quote(str(WORKERS / name))}"


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in doc["checks"] if c["name"] == name)
    return found


def per_index(default: str, **by_index: str) -> str:
    """A shell command running ``default`` for every worker but those named by index
    (``i2="..."``): each gets its own command (env assignments may lead)."""
    branches = "".join(f'if [ "{{index}}" = {k[1:]} ]; then exec {v}; fi; '
                       for k, v in by_index.items())
    return f"sh -c {shlex.quote(branches + f'exec {default}')}"


def paho(**env: str) -> str:
    """The generic paho worker with ``env`` (GW_* settings) in front of it."""
    settings = " ".join(f"{k}={shlex.quote(v.replace('{', '{{').replace('}', '}}'))}"
                        for k, v in env.items())
    return f"env {settings} {PY} {shlex.quote(str(WORKERS / 'generic_worker.py'))}"


# --------------------------------------------------------------- AetherMagic, on the emulator


def test_a_handler_slower_than_the_quiet_period_is_waited_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each task's handler works 3 s; AetherMagic answers `status` at once. The run waits for
    every `complete` (the 2 s quiet grace is not the end) and then it is healthy."""
    monkeypatch.setenv("AM_WORK_S", "3")
    result, doc = run_json("--exec", script("am_worker.py"), "--profile", "aethermagic",
                           "--count", "3", "--tasks", "9", "--timeout", "60", "--quiet")
    assert result.exit_code == 0, result.output
    assert [w["handled"] for w in doc["workers"]] == [3, 3, 3]
    assert doc["duration_s"] >= 3  # the completes come after the handler's 3 s, not before
    assert doc["unfinished"] == [] and doc["settled"] is True
    no_children_left()


def test_a_short_timeout_cuts_a_slow_pool_to_incomplete(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_WORK_S", "60")  # never done within the run
    result, doc = run_json("--exec", script("am_worker.py"), "--profile", "aethermagic",
                           "--count", "3", "--tasks", "9", "--timeout", "3", "--quiet")
    assert result.exit_code == 7, result.output
    assert doc["verdict"].startswith("incomplete")
    assert sorted(u["task"] for u in doc["unfinished"]) == sorted(f"task-{n}"
                                                                  for n in range(1, 10))
    assert {u["worker"] for u in doc["unfinished"]} == {"worker-1", "worker-2", "worker-3"}
    assert "every task finished" in failed_checks(doc)
    assert doc["missing"] == [] and all(w["handled"] == 0 for w in doc["workers"])
    # a status is receipt, not handling: nothing is "handled", nothing "never handled"
    assert check(doc, "every delivered task handled")["passed"] is None
    assert "connection" not in causes(doc)  # no invented drop
    no_children_left()


def test_a_worker_that_dies_mid_task_is_named_first() -> None:
    result, doc = run_json(
        "--exec", per_index(script("am_worker.py"), i2=script("am_worker_dies.py")),
        "--profile", "aethermagic", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 4, result.output
    died = check(doc, "worker processes kept running")
    assert died["passed"] is False and "worker-2 exited with SIGKILL" in died["detail"]
    first = doc["causes"][0]
    assert first.startswith("worker-2 (pid ") and "lost with it" in first, doc["causes"]
    assert "killing myself" in first  # the last line of its log
    assert "filter does not match" not in causes(doc) and "literal" not in causes(doc)
    assert "worker-1" not in causes(doc) and "worker-3" not in causes(doc)
    no_children_left()


def test_a_second_plain_client_in_one_process_is_named_with_its_filter() -> None:
    result, doc = run_json(
        "--exec", per_index(script("am_worker.py"), i3=script("am_worker_second_client.py")),
        "--profile", "aethermagic", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 1, result.output
    text = causes(doc)
    assert re.search(r"worker-3 \(pid \d+, client 'worker-3-monitor-\d+'\) also holds the plain "
                     r"subscription 'production/engine/process-data/batch1/\+/perform'", text), text
    assert "worker-1" not in text and "worker-2" not in text  # nobody else is accused
    assert "each task handled once" in failed_checks(doc)
    w3 = doc["workers"][2]
    assert w3["handled"] == 9 and len(w3["handled_twice"]) == 3  # two handlers, one process
    no_children_left()


def test_a_healthy_pool_has_no_cause_at_all() -> None:
    result, doc = run_json("--exec", script("am_worker.py"), "--profile", "aethermagic",
                           "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 0, result.output
    assert doc["causes"] == []
    assert all(c["passed"] is True for c in doc["checks"] if c["name"] != "balance")
    # the run's own clock: a short run is drawn over seconds, not the machine's uptime
    assert doc["activity"]["bucket_s"] < 1
    no_children_left()


# ----------------------------------------------------------------- paho workers, the emulator


def test_qos0_without_replies_never_claims_the_work_finished() -> None:
    result, doc = run_json(
        "--exec", paho(GW_FILTER=SHARE, GW_REPLY="-", GW_QOS="0", GW_WORK_S="0.5"),
        "--topic", "jobs/{task_id}", "--group", "pool", "--qos", "0",
        "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 0, result.output
    assert check(doc, "every task finished")["passed"] is None
    assert check(doc, "every task finished")["detail"].startswith("not observed")
    assert check(doc, "every delivered task handled")["passed"] is None
    assert check(doc, "each task handled once")["passed"] is None
    assert "delivery only" in doc["verdict"] and "--reply-topic" in doc["verdict"]
    table = workers("--exec", paho(GW_FILTER=SHARE, GW_REPLY="-", GW_QOS="0"),
                    "--topic", "jobs/{task_id}", "--group", "pool", "--qos", "0",
                    "--count", "2", "--tasks", "4")
    assert "✔ every task finished" not in table.output, table.output
    assert len([ln for ln in table.output.splitlines() if ln.startswith("verdict:")]) == 1
    no_children_left()


def test_a_crash_after_one_task_fails_the_run_and_names_the_process() -> None:
    good = paho(GW_FILTER=SHARE, GW_REPLY="res/{task_id}")
    bad = paho(GW_FILTER=SHARE, GW_REPLY="res/{task_id}", GW_CRASH_AFTER="1")
    result, doc = run_json(
        "--exec", per_index(good, i2=bad), "--topic", "jobs/{task_id}", "--group", "pool",
        "--reply-topic", "res/{task_id}", "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code != 0, result.output
    died = check(doc, "worker processes kept running")
    assert died["passed"] is False and "worker-2 exited with status 3" in died["detail"]
    assert doc["causes"][0].startswith("worker-2 (pid "), doc["causes"]
    assert "crashing with task-" in doc["causes"][0]  # its log tail
    assert any("worker-2 exited during the run" in n for n in doc["notes"])
    no_children_left()


def test_two_processes_with_one_client_id_are_named_as_a_collision() -> None:
    same = paho(GW_FILTER=SHARE, GW_REPLY="-", GW_CLIENT_ID=f"same-{uuid.uuid4().hex[:6]}")
    result, doc = run_json(
        "--exec", per_index(paho(GW_FILTER=SHARE, GW_REPLY="-"), i1=same, i2=same),
        "--topic", "jobs/{task_id}", "--group", "pool", "--count", "3", "--tasks", "9",
        "--quiet")
    assert result.exit_code != 0, result.output
    collided = check(doc, "one client id per process")
    assert collided["passed"] is False
    assert "worker-1 and worker-2" in collided["detail"], collided
    assert "same client id 'same-" in causes(doc) and "took the session over" in causes(doc)
    assert "never subscribed" not in causes(doc)
    no_children_left()


# ------------------------------------------------------------------------- a real broker


@pytest.mark.mosquitto
def test_no_reply_channel_on_a_real_broker_is_refused(mosquitto: Any) -> None:
    result = workers("--exec", paho(GW_FILTER=SHARE, GW_REPLY="-"), "--topic",
                     "jobs/{task_id}", "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}",
                     "--use-production-topics", "--count", "2", "--tasks", "4", "--quiet")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--reply-topic" in lines[0] and "healthy" not in result.output
    no_children_left(keep=frozenset({mosquitto.proc.pid}))


@pytest.mark.mosquitto
def test_a_silent_member_on_a_real_broker_stays_in_the_table(
        mosquitto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """worker-3 joins the AetherMagic share group with a plain paho client that never answers
    nor announces itself: its tasks vanish, and it is a row with nothing, counted in the
    balance."""
    union = f"ad{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AM_UNION", union)
    silent = paho(GW_FILTER=f"$share/{union}_engine_workgroup/{union}/engine/process-data/"
                  "batch1/+/perform", GW_REPLY="-", GW_QOS="0")
    result, doc = run_json(
        "--exec", per_index(script("am_worker.py"), i3=silent), "--profile", "aethermagic",
        "--count", "3", "--tasks", "9", "--union", union, "--use-production-topics",
        "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--warmup", "3",
        "--timeout", "20", "--quiet")
    assert result.exit_code == 4, result.output
    assert len(doc["workers"]) == 3
    unseen = [w for w in doc["workers"] if w["name"].startswith("unseen-")]
    assert len(unseen) == 1 and unseen[0]["unique"] == 0
    assert doc["balance"]["max_over_min"] is None  # the silent member got nothing
    assert len(doc["missing"]) == 3
    no_children_left(keep=frozenset({mosquitto.proc.pid}))
