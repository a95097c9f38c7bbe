"""``workers --exec`` with replies the user describes (generic profile: ``--reply-topic`` and
``--worker-field``), and AetherMagic pools that announce themselves on a real broker. Worker
programs: tests/workers/generic_worker.py (paho) and am_worker.py (the aethermagic library)."""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from typing import Any

import pytest
from support.cli import causes, failed_checks, one_error_line, run_json, workers
from support.paths import TESTS

pytestmark = pytest.mark.slow

WORKERS = TESTS / "workers"
PY = shlex.quote(sys.executable)
GENERIC = ("--topic", "jobs/{task_id}", "--group", "pool", "--reply-topic", "results/{task_id}")


def generic(mode_of_2: str = "normal", plain: bool = False) -> str:
    """generic_worker.py on $share/pool/jobs/+; worker-2 runs in ``mode_of_2``."""
    flt = "jobs/+" if plain else "$share/pool/jobs/+"
    worker = f"{PY} {shlex.quote(str(WORKERS / 'generic_worker.py'))}"
    inner = (f'if [ "{{index}}" = 2 ]; then export GW_MODE={mode_of_2}; fi; '
             f"GW_FILTER='{flt}' exec {worker}")
    return f"sh -c {shlex.quote(inner)}"


def test_generic_replies_named_by_a_field_give_handled_counts() -> None:
    result, doc = run_json("--exec", generic(), *GENERIC, "--worker-field", "/worker",
                           "--count", "3", "--tasks", "9", "--quiet")
    assert result.exit_code == 0, result.output
    assert [w["unique"] for w in doc["workers"]] == [3, 3, 3]
    assert [w["handled"] for w in doc["workers"]] == [3, 3, 3]


def test_generic_replies_without_a_field_are_attributed_by_their_connection() -> None:
    result, doc = run_json("--exec", generic(), *GENERIC, "--count", "3", "--tasks", "6",
                           "--quiet")
    assert result.exit_code == 0, result.output
    assert [w["handled"] for w in doc["workers"]] == [2, 2, 2]


def test_a_silent_generic_worker_is_delivered_but_never_handled() -> None:
    result, doc = run_json("--exec", generic("silent"), *GENERIC, "--worker-field", "/worker",
                           "--count", "3", "--tasks", "6", "--quiet")
    assert result.exit_code == 4, result.output
    assert "every delivered task handled" in failed_checks(doc)
    rows = {w["name"]: w for w in doc["workers"]}
    assert rows["worker-2"]["handled"] == 0 and rows["worker-1"]["handled"] == 2


def test_a_generic_handler_that_answers_twice_is_handled_twice() -> None:
    result, doc = run_json("--exec", generic("twice"), *GENERIC, "--worker-field", "/worker",
                           "--count", "3", "--tasks", "6", "--quiet")
    assert result.exit_code == 1, result.output
    assert "each task handled once" in failed_checks(doc)
    assert "worker-2" in causes(doc) or "worker-2" in str(doc["checks"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--reply-topic", "results/+"], "no + or # wildcards"),
    (["--reply-topic", "results/{task}"], "{task_id} exactly once"),
    (["--reply-topic", "r/{task_id}", "--worker-field", "worker"], "must start with '/'"),
    (["--worker-field", "/worker"], "--worker-field needs --reply-topic"),
])
def test_bad_reply_options_are_one_line_exit_2(args: list[str], needle: str) -> None:
    result = workers("--exec", "true", "--topic", "jobs/{task_id}", *args, "--quiet")
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)


def test_reply_options_need_exec() -> None:
    result = workers("--reply-topic", "r/{task_id}", "--quiet")
    assert result.exit_code == 2
    assert "--reply-topic needs --exec" in one_error_line(result)


def test_a_reply_topic_on_a_real_broker_needs_a_worker_field() -> None:
    result = workers("--exec", "true", *GENERIC, "--broker", "mqtt://127.0.0.1:9",
                     "--use-production-topics", "--quiet")
    assert result.exit_code == 2
    assert "needs --worker-field" in one_error_line(result)


# --------------------------------------------------------------------------- a real broker


@pytest.mark.mosquitto
def test_generic_workers_on_mosquitto_are_named_by_their_field(mosquitto: Any) -> None:
    topic = f"jobs{uuid.uuid4().hex[:6]}"
    worker = f"{PY} {shlex.quote(str(WORKERS / 'generic_worker.py'))}"
    inner = (f"GW_FILTER='$share/pool/{topic}/+' GW_REPLY='res{topic}/{{{{task_id}}}}' "
             f"exec {worker}")
    result, doc = run_json(
        "--exec", f"sh -c {shlex.quote(inner)}", "--topic", f"{topic}/{{task_id}}",
        "--group", "pool", "--reply-topic", f"res{topic}/{{task_id}}", "--worker-field",
        "/worker", "--count", "3", "--tasks", "9", "--warmup", "1.5",
        "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--use-production-topics",
        "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(w["name"] for w in doc["workers"]) == ["worker-1", "worker-2", "worker-3"]
    assert sum(w["unique"] for w in doc["workers"]) == 9


@pytest.mark.mosquitto
def test_aethermagic_pool_on_mosquitto_is_ready_when_it_announced_itself(
        mosquitto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up is an upper bound: the run goes once all three announced ``idle``."""
    union = f"ad{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AM_UNION", union)
    started = time.monotonic()
    result, doc = run_json(
        "--exec", f"{PY} {shlex.quote(str(WORKERS / 'am_worker.py'))}", "--profile",
        "aethermagic", "--count", "3", "--tasks", "9", "--warmup", "60",
        "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--union", union,
        "--use-production-topics", "--timeout", "20", "--quiet")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 40  # not the 60 s warm-up
    assert sorted(w["unique"] for w in doc["workers"]) == [3, 3, 3]
