"""``workers --publishers N``, ``--publisher-reconnect``, ``--keys K``, ``--expect-order`` and the
ordering check, through the CLI: on the embedded emulator (strategies that promise order and
those that do not, the ``reorder`` and ``per-publisher-rr`` faults) and on a private Mosquitto.
Each test also runs the case that must come out differently, so a check that cannot fail fails
the test."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.cli import invoke, one_error_line, run_json, workers

from aetherdiag.exitcodes import ExitCode


def ordering_check(doc: dict[str, Any]) -> dict[str, Any]:
    checks: list[dict[str, Any]] = [c for c in doc["checks"] if c["name"] == "ordering"]
    assert len(checks) == 1, doc["checks"]
    return checks[0]


def firsts(doc: dict[str, Any]) -> list[str]:
    return [str(p["first_worker"]) for p in doc["publishers"]]


def test_per_publisher_round_robin_sends_every_publishers_first_task_to_worker_1() -> None:
    """Three publishers, one task each: the turn kept per publisher starts each of them at
    worker-1; a turn kept per group deals them out."""
    args = ("--publishers", "3", "--count", "3", "--tasks", "3", "--settle-ms", "100")
    result, doc = run_json(*args, "--fault", "per-publisher-rr")
    assert [p["name"] for p in doc["publishers"]] == ["publisher-1", "publisher-2",
                                                     "publisher-3"]
    assert [(p["sent"], p["workers"]) for p in doc["publishers"]] == [(1, {"worker-1": 1})] * 3
    assert firsts(doc) == ["worker-1"] * 3
    assert doc["balance"]["judged"] is False  # 1 task per worker: too few to judge
    assert result.exit_code == 0, result.output
    assert ("publishers", "3 per publishing node") in doc["run"].items()
    healthy, fair = run_json(*args)
    assert sorted(firsts(fair)) == ["worker-1", "worker-2", "worker-3"], fair["publishers"]
    assert healthy.exit_code == 0
    # with a task per worker more, the balance check judges the skew
    skewed, many = run_json("--publishers", "9", "--count", "3", "--tasks", "9",
                            "--settle-ms", "100", "--fault", "per-publisher-rr")
    assert skewed.exit_code == ExitCode.IMBALANCE, skewed.output
    assert [w["unique"] for w in many["workers"]] == [9, 0, 0]
    assert any(c.startswith("one worker (worker-1) got everything from all 9 publishers") and
               "short-lived publishers always start at the first member" in c
               for c in many["causes"]), many["causes"]


def test_markdown_names_where_each_publishers_tasks_went() -> None:
    result = workers("--publishers", "3", "--count", "3", "--tasks", "3", "--settle-ms", "100",
                     "--fault", "per-publisher-rr", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert ("publishers: publisher-1: 1 sent → worker-1 1; publisher-2: 1 sent → worker-1 1; "
            "publisher-3: 1 sent → worker-1 1 (every publisher's first task went to worker-1)"
            ) in result.stdout.splitlines()
    assert "| ➖ | ordering | not judged: round_robin promises no order" in result.stdout  # noqa: RUF001


@pytest.mark.parametrize("strategy", ["sticky", "hash_clientid"])
def test_strategies_that_keep_a_publisher_on_one_member_pass_ordering(strategy: str) -> None:
    result, doc = run_json("--strategy", strategy, "--publishers", "3", "--tasks", "12",
                           "--settle-ms", "100")
    check = ordering_check(doc)
    assert check["passed"] is True, check
    assert check["exit_code"] == ExitCode.EXPECTATIONS_NOT_MET
    assert doc["ordering"]["scope"] == "publisher" and doc["ordering"]["out_of_order"] == 0
    assert doc["ordering"]["counted"] == 12
    assert doc["ordering"]["by_publisher"] == {f"publisher-{p}": 0 for p in (1, 2, 3)}
    for p in doc["publishers"]:  # each publisher's tasks on one worker
        assert p["sent"] == 4 and list(p["workers"].values()) == [4], doc["publishers"]
    assert result.exit_code in (ExitCode.OK, ExitCode.IMBALANCE), result.output


def test_the_reorder_fault_fails_the_ordering_check_with_exit_6() -> None:
    """One worker (balance not judged), sticky: the fault sends the backlog newest first.
    (``--publishers 1`` asks for the ordering check; the fault alone does too.)"""
    args = ("--strategy", "sticky", "--count", "1", "--tasks", "9", "--work-ms", "2",
            "--settle-ms", "100", "--publishers", "1")
    result, doc = run_json(*args, "--fault", "reorder")
    assert result.exit_code == ExitCode.EXPECTATIONS_NOT_MET, result.output
    assert doc["verdict"] == "out of order"
    check = ordering_check(doc)
    assert check["passed"] is False and "out of order per publisher, though sticky" in \
        check["detail"]
    assert doc["ordering"]["out_of_order"] == doc["ordering"]["by_worker"]["worker-1"] > 0
    assert doc["missing"] == [] and doc["duplicates"]["repeats"] == 0
    assert any("arrived out of the order their publisher sent them" in c
               for c in doc["causes"]), doc["causes"]
    fine, in_order = run_json(*args)
    assert fine.exit_code == 0, fine.output
    assert ordering_check(in_order)["passed"] is True
    assert "ordering" not in [c["name"] for c in in_order["checks"] if c["passed"] is False]
    assert not any("out of the order" in c for c in in_order["causes"])


def test_round_robin_shows_the_counts_without_judging_them() -> None:
    result, doc = run_json("--publishers", "2", "--tasks", "6", "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    check = ordering_check(doc)
    assert check["passed"] is None
    assert check["detail"].startswith("not judged: round_robin promises no order (0 out of "
                                      "order per worker")
    o = doc["ordering"]
    assert (o["judged"], o["scope"], o["out_of_order"]) == (False, "none", None)
    assert set(o["by_worker"]) == {"worker-1", "worker-2", "worker-3"}
    # the same run held to per-worker order by --expect-order: judged, and it holds (the
    # order across workers is a race between their sockets, never judged)
    held, judged = run_json("--publishers", "2", "--tasks", "6", "--settle-ms", "100",
                            "--expect-order")
    assert held.exit_code == 0 and ordering_check(judged)["passed"] is True, held.output
    assert judged["ordering"]["basis"].startswith("--expect-order")
    assert judged["ordering"]["scope"] == "worker"


def test_publisher_reconnect_uses_a_connection_per_task() -> None:
    """Fresh connections and client ids: every task of the run passes; under the turn kept
    per publisher each one starts over at worker-1, as on EMQX."""
    args = ("--publisher-reconnect", "--publishers", "2", "--tasks", "6", "--settle-ms", "100")
    result, doc = run_json(*args)
    assert result.exit_code == 0, result.output
    assert doc["published"] == doc["unique_delivered"] == 6 and doc["unsent"] == []
    assert doc["emulator"]["connections"] == 3 + 2 + 6  # workers, publishers, one per task
    assert [p["sent"] for p in doc["publishers"]] == [3, 3]
    assert ("publishers", "2 per publishing node, a fresh connection and client id per task"
            ) in doc["run"].items()
    skewed, pitfall = run_json("--publisher-reconnect", "--tasks", "9", "--settle-ms", "100",
                               "--fault", "per-publisher-rr")
    assert skewed.exit_code == ExitCode.IMBALANCE, skewed.output
    assert [w["unique"] for w in pitfall["workers"]] == [9, 0, 0]


def test_hash_topic_with_keys_keeps_each_key_in_order() -> None:
    result, doc = run_json("--strategy", "hash_topic", "--keys", "3", "--publishers", "2",
                           "--tasks", "12", "--settle-ms", "100")
    assert result.exit_code in (ExitCode.OK, ExitCode.IMBALANCE), result.output
    check = ordering_check(doc)
    assert check["passed"] is True and "every key's tasks" in check["detail"]
    assert doc["ordering"]["by_key"] == {"key-1": 0, "key-2": 0, "key-3": 0}
    assert doc["run"]["keys"].startswith("3 ")
    # without keys every task has a topic of its own: nothing to judge
    _, alone = run_json("--strategy", "hash_topic", "--publishers", "2", "--settle-ms", "100")
    assert ordering_check(alone)["passed"] is None
    assert "--keys K" in ordering_check(alone)["detail"]


def test_the_aethermagic_payload_carries_no_sequence_numbers() -> None:
    result, doc = run_json("--profile", "aethermagic", "--strategy", "sticky",
                           "--publishers", "2", "--tasks", "4", "--settle-ms", "100")
    assert result.exit_code in (ExitCode.OK, ExitCode.IMBALANCE), result.output
    check = ordering_check(doc)
    assert check["passed"] is None and "no delivery carried a sequence number" in \
        check["detail"]
    assert [p["sent"] for p in doc["publishers"]] == [2, 2]  # the publishers still say


def test_json_fields_and_a_record_judged_again(tmp_path: Path) -> None:
    out, rec = tmp_path / "run.json", tmp_path / "run.jsonl"
    result = workers("--strategy", "sticky", "--count", "1", "--fault", "reorder", "--work-ms",
                     "2", "--publishers", "2", "--keys", "2", "--settle-ms", "100",
                     "--format", "json", "--output", str(out), "--record", str(rec))
    assert result.exit_code == ExitCode.EXPECTATIONS_NOT_MET, result.output
    doc = json.loads(out.read_text())
    assert set(doc["ordering"]) == {"judged", "scope", "basis", "out_of_order", "counted",
                                    "left_out", "by_worker", "by_publisher", "by_key",
                                    "examples"}
    assert set(doc["publishers"][0]) == {"name", "sent", "delivered", "workers",
                                         "first_worker"}
    assert doc["ordering"]["examples"]
    again = invoke("report", str(rec), "--format", "json")
    assert again.exit_code == result.exit_code
    assert json.loads(again.stdout) == doc
    saved = invoke("report", str(out), "--format", "json")
    assert json.loads(saved.stdout) == doc


@pytest.mark.parametrize(("args", "words"), [
    (("--keys", "2", "--profile", "aethermagic"), "--keys puts several tasks on one topic"),
    (("--publishers", "2", "--exec", "true"), "--publishers configure the built-in"),
    (("--publishers", "0"), "--publishers"),
])
def test_usage_errors(args: tuple[str, ...], words: str) -> None:
    result = workers(*args)
    assert result.exit_code == ExitCode.USAGE
    if "--exec" in args or "--profile" in args:
        assert words in one_error_line(result)
    else:
        assert words in result.output


# --------------------------------------------------------------------------- Mosquitto


@pytest.mark.mosquitto
def test_mosquitto_several_publishers_figures_match_what_was_sent(mosquitto: Any) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    union = f"ad{uuid.uuid4().hex[:10]}"
    result, doc = run_json("--broker", url, "--union", union, "--publishers", "3",
                           "--count", "3", "--tasks", "9", "--timeout", "10")
    assert result.exit_code == 0, result.output
    sent = {f"publisher-{p}": {f"task-{n}" for n in range(p, 10, 3)} for p in (1, 2, 3)}
    for p in doc["publishers"]:
        assert p["sent"] == p["delivered"] == len(sent[p["name"]]) == 3
        per_worker = {w["name"]: len(sent[p["name"]] & set(w["tasks"])) for w in doc["workers"]}
        assert p["workers"] == {w: n for w, n in per_worker.items() if n}, doc["workers"]
    o = doc["ordering"]
    assert o["counted"] == 9 and set(o["by_publisher"]) == set(sent)
    check = ordering_check(doc)
    assert check["passed"] is None and "strategy is unknown" in check["detail"]
    # Mosquitto deals in turn and sends in order: held to it, the run passes
    held, judged = run_json("--broker", url, "--union", union, "--publishers", "3",
                            "--publisher-reconnect", "--expect-order", "--timeout", "10")
    assert held.exit_code == 0, held.output
    assert ordering_check(judged)["passed"] is True and judged["published"] == 9
