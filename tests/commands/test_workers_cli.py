"""``aetherdiag workers`` through typer's CliRunner against the embedded emulator.

Every strategy and fault mode must give the verdict and exit code it should, and the JSON must
hold the numbers that make it so (``assert_consistent`` re-derives the exit code from them).
Then the output options (junit, --output, --quiet, table), the protocol/QoS/layout options, and
usage errors (exit 2, one line on stderr, no traceback). The last tests run the real entry point
in a subprocess. Real-broker runs are in test_workers_real_broker.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest
from support.cli import ALL, ROUND_ROBIN, causes, one_error_line, run_json, tasks_of, workers
from typer.testing import Result

from aetherdiag.cli import main

SHARE = "$share/production_engine_workers/production/engine/process-data/batch1/+/perform"
CHECKS = ["no cross-worker duplicates", "no same-worker repeats", "no missing tasks", "balance",
          "broker connection held", "every task sent", "every task finished",
          "settled within the timeout"]


def nine_tasks(*args: str) -> tuple[Result, dict[str, Any]]:
    """``workers --count 3 --tasks 9 --format json ARGS``: the result and the parsed,
    self-consistent document."""
    result, doc = run_json("--count", "3", "--tasks", "9", *args)
    limit = float(args[args.index("--max-imbalance") + 1]) if "--max-imbalance" in args else 1.5
    assert_consistent(doc, limit)
    return result, doc


def unique_counts(doc: dict[str, Any]) -> list[int]:
    return [w["unique"] for w in doc["workers"]]


def check(doc: dict[str, Any], name: str) -> bool | None:
    passed: bool | None = {c["name"]: c["passed"] for c in doc["checks"]}[name]
    return passed


def assert_consistent(doc: dict[str, Any], max_imbalance: float = 1.5) -> None:
    """The verdict follows from the numbers in the same document."""
    assert doc["schema"] == "aetherdiag.report/1"
    assert [w["name"] for w in doc["workers"]] == [
        f"worker-{i}" for i in range(1, len(doc["workers"]) + 1)]
    assert doc["delivered"] == sum(w["received"] for w in doc["workers"])
    for w in doc["workers"]:
        assert w["unique"] == len(w["tasks"]) == len(set(w["tasks"]))
        assert w["received"] == w["unique"] + w["repeats"]
    dup = doc["duplicates"]
    assert dup["repeats"] == dup["repeats_dup"] + dup["repeats_fresh"]
    assert dup["cross_worker"] == len(dup["cross_worker_tasks"])
    assert doc["unique_delivered"] == doc["published"] - len(doc["missing"])
    assert [c["name"] for c in doc["checks"]] == CHECKS
    assert check(doc, "no cross-worker duplicates") == (dup["cross_worker"] == 0)
    assert check(doc, "no same-worker repeats") == (dup["repeats"] == 0)
    assert check(doc, "no missing tasks") == (not doc["missing"])
    bal = doc["balance"]
    if not bal["judged"]:
        assert check(doc, "balance") is None
    else:
        ratio = bal["max_over_min"]
        assert check(doc, "balance") == (ratio is not None and ratio <= max_imbalance)
        assert (ratio is None) == bool(bal["idle_workers"])
    assert check(doc, "broker connection held") == (not doc["connection_lost"])
    assert check(doc, "every task sent") == (not doc["unsent"])
    assert check(doc, "every task finished") == (not doc["unfinished"])
    assert check(doc, "settled within the timeout") == doc["settled"]
    failing = [c["exit_code"] for c in doc["checks"] if c["passed"] is False]
    assert doc["exit_code"] == (min(failing) if failing else 0)
    verdict = {0: "healthy", 1: "duplicates", 3: "broker lost", 4: "missing", 5: "imbalanced",
               7: "incomplete"}[doc["exit_code"]]
    assert doc["verdict"].split(" (timed out")[0] == verdict
    assert ("timed out" in doc["verdict"]) == doc["timed_out"]
    assert doc["exit_code"] == 0 or doc["causes"], "a failing verdict comes with likely causes"


# --------------------------------------------------------------------------- the default


def test_default_run_is_round_robin_and_healthy() -> None:
    result, doc = nine_tasks()
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    assert doc["published"] == doc["delivered"] == doc["unique_delivered"] == 9
    assert doc["missing"] == [] and doc["lost_in_flight"] == []
    assert doc["duplicates"] == {"cross_worker": 0, "cross_worker_tasks": [], "repeats": 0,
                                 "repeats_dup": 0, "repeats_fresh": 0,
                                 "allowed_redeliveries": 0}
    assert doc["balance"]["judged"] is True
    assert doc["balance"]["max_over_min"] == doc["balance"]["max_over_mean"] == 1.0
    assert [w["share"] for w in doc["workers"]] == [0.3333] * 3
    assert all(c["passed"] for c in doc["checks"])
    assert doc["verdict"] == "healthy" and doc["causes"] == [] and doc["settled"] is True
    assert doc["target"] == "emulator (strategy round_robin, faults none)"
    assert doc["run"]["subscription"] == SHARE
    assert doc["run"]["tasks"] == "9 to production/engine/process-data/batch1/task-N/perform"
    assert doc["run"]["qos"] == "1" and doc["run"]["mqtt"] == "5"
    assert all(w["subscriptions"] == [SHARE] for w in doc["workers"])
    assert doc["emulator"]["messages_in"] == 9 and doc["emulator"]["deliveries"] == 9


def test_default_table_shows_the_split_at_a_glance() -> None:
    result = workers("--count", "3", "--tasks", "9", "--settle-ms", "50")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name, tasks in zip(("worker-1", "worker-2", "worker-3"), ROUND_ROBIN, strict=True):
        line = next(ln for ln in out.splitlines() if name in ln)
        assert ", ".join(tasks) in line
    assert "verdict: healthy (exit 0)" in out
    assert "likely causes" not in out
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


# --------------------------------------------------------------------------- fault modes


def test_share_fanout_every_worker_gets_every_task() -> None:
    result, doc = nine_tasks("--fault", "share-fanout")
    assert result.exit_code == 1, result.output
    assert tasks_of(doc) == [ALL, ALL, ALL]
    assert doc["published"] == 9 and doc["delivered"] == 27 and doc["missing"] == []
    assert doc["duplicates"]["cross_worker"] == 9
    assert doc["duplicates"]["cross_worker_tasks"][0] == {
        "task": "task-1", "workers": ["worker-1", "worker-2", "worker-3"]}
    assert doc["duplicates"]["repeats"] == 0
    assert check(doc, "no cross-worker duplicates") is False
    assert doc["verdict"] == "duplicates"
    assert "broker treats $share/... like a plain subscription" in causes(doc)
    assert doc["target"] == "emulator (strategy round_robin, faults share-fanout)"


def test_share_fanout_table_lists_all_nine_tasks_per_worker() -> None:
    result = workers("--count", "3", "--tasks", "9", "--fault", "share-fanout")
    assert result.exit_code == 1, result.output
    rows = [ln for ln in result.stdout.splitlines() if "worker-" in ln and "│" in ln]
    assert len(rows) == 3
    assert all(", ".join(ALL) in row for row in rows), result.stdout
    assert "verdict: duplicates (exit 1)" in result.stdout
    assert "likely causes" in result.stdout


def test_plain_subscriptions_on_the_emulator_fan_out() -> None:
    result, doc = nine_tasks("--plain")
    assert result.exit_code == 1, result.output
    assert tasks_of(doc) == [ALL, ALL, ALL]
    assert doc["duplicates"]["cross_worker"] == 9 and doc["delivered"] == 27
    sub = "production/engine/process-data/batch1/+/perform"
    assert doc["run"]["subscription"] == sub
    assert all(w["subscriptions"] == [sub] for w in doc["workers"])
    assert "subscribed without $share" in causes(doc)


def test_share_literal_nothing_arrives() -> None:
    # nothing can arrive, so the run lasts until --timeout: keep it short, and below the 1 s
    # a run whose tasks go missing waits in silence before it settles (no race between them)
    result, doc = nine_tasks("--fault", "share-literal", "--timeout", "0.6")
    assert result.exit_code == 4, result.output
    assert doc["delivered"] == 0 and doc["unique_delivered"] == 0
    assert doc["missing"] == ALL
    assert unique_counts(doc) == [0, 0, 0]
    assert doc["duplicates"]["cross_worker"] == 0 and doc["duplicates"]["repeats"] == 0
    assert doc["balance"]["judged"] is False
    assert doc["verdict"] == "missing (timed out after 0.6 s)" and doc["settled"] is False
    assert "takes $share/... as a literal topic filter" in causes(doc)
    assert doc["duration_s"] < 5


@pytest.mark.parametrize(("mqtt", "code"), [("5", "0x9E"), ("3.1.1", "0x80")])
def test_share_unsupported_subscriptions_are_refused(mqtt: str, code: str) -> None:
    result, doc = nine_tasks("--fault", "share-unsupported", "--mqtt", mqtt, "--timeout", "1")
    assert result.exit_code == 4, result.output
    assert doc["missing"] == ALL and doc["delivered"] == 0
    assert f"the broker refused the subscriptions ({code}" in causes(doc)
    refusals = [n for n in doc["notes"] if "refused the subscription" in n]
    assert len(refusals) == 3 and all(code in n for n in refusals)
    if mqtt == "5":
        assert "shared subscriptions not supported" in causes(doc)
        assert any("Shared Subscription Available = 0" in n for n in doc["notes"])


def test_redeliver_counts_dup_repeats() -> None:
    result, doc = nine_tasks("--fault", "redeliver")
    assert result.exit_code == 1, result.output
    assert tasks_of(doc) == ROUND_ROBIN  # still shared: the copies go to the same worker
    assert doc["duplicates"]["cross_worker"] == 0
    assert doc["duplicates"]["repeats_dup"] == 9 and doc["duplicates"]["repeats_fresh"] == 0
    assert [(w["received"], w["repeats"], w["dup_repeats"]) for w in doc["workers"]] == [
        (6, 3, 3)] * 3
    assert doc["delivered"] == 18 and doc["missing"] == []
    assert check(doc, "no same-worker repeats") is False
    assert "DUP-flagged redelivery" in causes(doc)


def test_redeliver_spares_qos0() -> None:
    result, doc = nine_tasks("--fault", "redeliver", "--qos", "0", "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert doc["duplicates"]["repeats"] == 0 and doc["delivered"] == 9


@pytest.mark.parametrize("fault", ["lose-on-disconnect", "share-retained", "per-publisher-rr"])
def test_faults_that_need_a_trigger_the_plain_run_lacks(fault: str) -> None:
    """No member drops (lose-on-disconnect), no task is retained (share-retained) and one
    publisher sends everything (per-publisher-rr keeps one turn per publisher): the workers
    run is healthy and identical to plain round robin. Scenarios exercise the triggers."""
    result, doc = nine_tasks("--fault", fault, "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    assert doc["target"] == f"emulator (strategy round_robin, faults {fault})"


def test_several_faults_lowest_code_wins() -> None:
    result, doc = nine_tasks("--fault", "share-fanout", "--fault", "redeliver")
    assert result.exit_code == 1, result.output
    assert doc["duplicates"]["cross_worker"] == 9
    assert doc["duplicates"]["repeats_dup"] == 27 and doc["delivered"] == 54


# --------------------------------------------------------------------------- strategies


def test_random_strategy_is_reproducible_and_judged_by_its_numbers() -> None:
    args = ("--strategy", "random", "--seed", "7", "--tasks", "30", "--settle-ms", "100")
    first, doc = nine_tasks(*args)
    second, again = nine_tasks(*args)
    assert tasks_of(doc) == tasks_of(again)
    assert first.exit_code == second.exit_code
    assert sum(unique_counts(doc)) == 30 and doc["duplicates"]["cross_worker"] == 0
    ratio = doc["balance"]["max_over_min"]
    assert first.exit_code == (5 if ratio is None or ratio > 1.5 else 0), first.output
    assert doc["balance"]["chi_square"] is not None  # 10 tasks per worker: chi-square runs
    assert 0.0 <= doc["balance"]["p_value"] <= 1.0
    # a different seed gives a different split (with overwhelming probability: 3**30 splits)
    _, other = nine_tasks("--strategy", "random", "--seed", "8", "--tasks", "30",
                        "--settle-ms", "100")
    assert tasks_of(other) != tasks_of(doc)
    # and a lenient threshold turns an uneven-but-complete split into a pass
    lenient, doc = nine_tasks(*args, "--max-imbalance", "1000")
    if doc["balance"]["max_over_min"] is not None:
        assert lenient.exit_code == 0, lenient.output


@pytest.mark.parametrize("strategy", ["sticky", "hash_clientid"])
def test_one_worker_gets_everything(strategy: str) -> None:
    result, doc = nine_tasks("--strategy", strategy, "--settle-ms", "100")
    assert result.exit_code == 5, result.output
    counts = unique_counts(doc)
    assert sorted(counts) == [0, 0, 9]
    busy = doc["workers"][counts.index(9)]
    assert busy["tasks"] == ALL
    idle = [w["name"] for w in doc["workers"] if w["unique"] == 0]
    assert doc["balance"]["max_over_min"] is None
    assert doc["balance"]["idle_workers"] == idle
    assert doc["duplicates"]["cross_worker"] == 0 and doc["missing"] == []
    assert f"one worker ({busy['name']}) got everything" in causes(doc)
    assert check(doc, "balance") is False


def test_sticky_with_too_few_tasks_is_not_judged() -> None:
    result, doc = nine_tasks("--strategy", "sticky", "--tasks", "2", "--settle-ms", "50")
    assert result.exit_code == 0, result.output
    assert sorted(unique_counts(doc)) == [0, 0, 2]
    assert doc["balance"]["judged"] is False and check(doc, "balance") is None


def test_hash_topic_split_follows_the_topic_hash() -> None:
    result, doc = nine_tasks("--strategy", "hash_topic", "--settle-ms", "100")
    expected: list[list[str]] = [[], [], []]
    for n in range(1, 10):
        topic = f"production/engine/process-data/batch1/task-{n}/perform"
        expected[zlib.crc32(topic.encode()) % 3].append(f"task-{n}")
    assert tasks_of(doc) == expected
    counts = [len(t) for t in expected]
    ratio = None if min(counts) == 0 else max(counts) / min(counts)
    assert doc["balance"]["max_over_min"] == ratio
    assert result.exit_code == (5 if ratio is None or ratio > 1.5 else 0), result.output
    assert result.exit_code == 5  # these nine topics hash 6/2/1 (or worse)


def test_least_inflight_without_load_is_round_robin() -> None:
    result, doc = nine_tasks("--strategy", "least_inflight", "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN


def test_least_inflight_with_slow_workers_spreads_the_backlog() -> None:
    """All 9 tasks are published while every worker still holds its first one (200 ms each):
    fewest-unacked with round-robin ties gives an even split, each worker acking in turn."""
    result, doc = nine_tasks("--strategy", "least_inflight", "--work-ms", "200",
                           "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    assert doc["duration_s"] >= 0.6  # three tasks one after another on each worker


def test_exit_code_precedence_duplicates_before_imbalance() -> None:
    result, doc = nine_tasks("--strategy", "sticky", "--fault", "redeliver")
    assert result.exit_code == 1, result.output
    assert check(doc, "balance") is False and check(doc, "no same-worker repeats") is False
    assert doc["duplicates"]["repeats_dup"] == 9


# --------------------------------------------------------------------------- protocol options


@pytest.mark.parametrize(("option", "value"), [("--mqtt", "3.1.1"), ("--mqtt", "5"),
                                               ("--qos", "0"), ("--qos", "2")])
def test_protocol_and_qos_runs_are_healthy(option: str, value: str) -> None:
    result, doc = nine_tasks(option, value, "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert tasks_of(doc) == ROUND_ROBIN
    key = "mqtt" if option == "--mqtt" else "qos"
    assert doc["run"][key] == value


def test_mqtt_311_fanout_is_the_same_bug() -> None:
    result, doc = nine_tasks("--mqtt", "3.1.1", "--fault", "share-fanout")
    assert result.exit_code == 1, result.output
    assert doc["duplicates"]["cross_worker"] == 9 and doc["run"]["mqtt"] == "3.1.1"


def test_generic_layout() -> None:
    result, doc = nine_tasks("--topic", "jobs/{task_id}", "--group", "g", "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert doc["run"]["subscription"] == "$share/g/jobs/+"
    assert doc["run"]["tasks"] == "9 to jobs/task-N"
    assert tasks_of(doc) == ROUND_ROBIN


def test_generic_layout_with_n_and_an_explicit_filter() -> None:
    result, doc = nine_tasks("--topic", "q/{n}/run", "--filter", "q/#", "--group", "pool",
                           "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert doc["run"]["subscription"] == "$share/pool/q/#"
    assert doc["run"]["tasks"] == "9 to q/0/run"  # the example topic uses n = 0
    assert tasks_of(doc) == ROUND_ROBIN


def test_generic_layout_plain_reproduces_the_bug() -> None:
    result, doc = nine_tasks("--topic", "jobs/{task_id}", "--plain")
    assert result.exit_code == 1, result.output
    assert doc["run"]["subscription"] == "jobs/+"
    assert tasks_of(doc) == [ALL, ALL, ALL]


def test_aethermagic_options_shape_topics_and_group() -> None:
    result, doc = nine_tasks("--union", "u", "--job", "j", "--task", "t", "--context", "c",
                           "--action", "a", "--workgroup", "w", "--settle-ms", "100")
    assert result.exit_code == 0, result.output
    assert doc["run"]["subscription"] == "$share/u_j_w/u/j/t/c/+/a"
    assert doc["run"]["tasks"] == "9 to u/j/t/c/task-N/a"


# --------------------------------------------------------------------------- output options


def junit(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))  # bytes: the XML declaration names utf-8


def test_junit_one_testcase_per_check_with_the_failures() -> None:
    result = workers("--count", "3", "--tasks", "9", "--fault", "share-fanout",
                     "--format", "junit")
    assert result.exit_code == 1, result.output
    suite = junit(result.stdout)
    assert suite.tag == "testsuite"
    assert suite.get("tests") == str(len(CHECKS)) and suite.get("failures") == "1"
    assert suite.get("errors") == "0" and suite.get("skipped") == "0"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == CHECKS
    failure = cases["no cross-worker duplicates"].find("failure")
    assert failure is not None and failure.get("type") == "exit-1"
    assert "9 of 9 tasks reached more than one worker" in str(failure.get("message"))
    assert "like a plain subscription" in str(failure.text)
    assert all(cases[n].find("failure") is None for n in CHECKS[1:])
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["exit_code"] == "1" and props["verdict"] == "duplicates"
    assert props["published"] == "9" and props["delivered"] == "27"
    out = suite.find("system-out")
    assert out is not None and "worker-1: 9 unique / 9 received" in str(out.text)


def test_junit_healthy_and_not_judged_cases() -> None:
    result = workers("--count", "3", "--tasks", "9", "--format", "junit", "--settle-ms", "50")
    assert result.exit_code == 0, result.output
    suite = junit(result.stdout)
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"
    assert all(c.find("failure") is None for c in suite.iter("testcase"))

    small = workers("--count", "3", "--tasks", "2", "--format", "junit", "--settle-ms", "50")
    assert small.exit_code == 0, small.output
    suite = junit(small.stdout)
    assert suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["balance"].find("skipped") is not None


def test_junit_with_several_failures() -> None:
    result = workers("--count", "3", "--tasks", "9", "--strategy", "sticky", "--fault",
                     "redeliver", "--format", "junit")
    assert result.exit_code == 1, result.output
    suite = junit(result.stdout)
    failed = {c.get("name"): c.find("failure") for c in suite.iter("testcase")
              if c.find("failure") is not None}
    assert set(failed) == {"no same-worker repeats", "balance"}
    assert failed["balance"] is not None and failed["balance"].get("type") == "exit-5"


@pytest.mark.parametrize("fmt", ["json", "junit", "table"])
def test_output_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    result = workers("--count", "3", "--tasks", "9", "--fault", "share-fanout",
                     "--format", fmt, "--output", str(out))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        doc = json.loads(text)
        assert doc["exit_code"] == 1 and doc["duplicates"]["cross_worker"] == 9
    elif fmt == "junit":
        assert junit(text).get("failures") == "1"
    else:
        assert "verdict: duplicates (exit 1)" in text
        assert "\x1b[" not in text  # a file gets no terminal colours


def test_output_to_an_unwritable_place_is_a_usage_error(tmp_path: Path) -> None:
    result = workers("--tasks", "1", "--settle-ms", "0", "--format", "json",
                     "--output", str(tmp_path / "missing-dir" / "r.json"))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("aetherdiag: error: --output ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_quiet_table_prints_nothing_but_keeps_the_exit_code() -> None:
    result = workers("--count", "3", "--tasks", "9", "--fault", "share-fanout", "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output == ""


def test_quiet_json_still_prints_the_document() -> None:
    result, doc = nine_tasks("--quiet", "--settle-ms", "50")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and doc["published"] == 9


def test_plain_table() -> None:
    result = workers("--count", "3", "--tasks", "9", "--plain")
    assert result.exit_code == 1, result.output
    rows = [ln for ln in result.stdout.splitlines() if "worker-" in ln and "│" in ln]
    assert len(rows) == 3 and all(", ".join(ALL) in row for row in rows), result.stdout
    assert "subscribed without $share" in " ".join(result.stdout.split())
    assert "verdict: duplicates (exit 1)" in result.stdout


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args", [
    pytest.param(["--fault", "share-fanout", "--broker", "mqtt://127.0.0.1:1"],
                 id="fault-with-broker"),
    pytest.param(["--strategy", "sticky", "--broker", "mqtt://127.0.0.1:1"],
                 id="strategy-with-broker"),
    pytest.param(["--fault", "nope"], id="unknown-fault"),
    pytest.param(["--strategy", "nope"], id="unknown-strategy"),
    pytest.param(["--group-strategy", "g=nope"], id="unknown-group-strategy"),
    pytest.param(["--group-strategy", "no-equals"], id="bad-group-strategy"),
    pytest.param(["--broker", "ftp://example"], id="broker-scheme"),
    pytest.param(["--broker", "mqtt://"], id="broker-no-host"),
    pytest.param(["--broker", "mqtt://host:99999"], id="broker-port-range"),
    pytest.param(["--broker", "mqtt://host:abc"], id="broker-port-text"),
    pytest.param(["--mqtt", "4"], id="mqtt-4"),
    pytest.param(["--topic", "jobs/x"], id="topic-no-placeholder"),
    pytest.param(["--topic", "jobs/x{task_id}"], id="placeholder-not-a-level"),
    pytest.param(["--filter", "jobs/+"], id="filter-without-topic"),
    pytest.param(["--topic", "jobs/{task_id}", "--group", "a/b"], id="bad-group"),
    pytest.param(["--union", "a/b"], id="bad-union"),
    pytest.param(["--insecure"], id="tls-without-broker"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # the real entry point: click's errors too
        main(["workers", *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aetherdiag: error: "), err


@pytest.mark.parametrize("args", [
    ["--count", "0"], ["--qos", "3"], ["--format", "yaml"], ["--tasks", "many"], ["--nope"],
])
def test_bad_option_values_exit_2(args: list[str]) -> None:
    result = workers(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_help_lists_strategies_faults_and_exit_codes() -> None:
    result = workers("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for name in ("least_inflight", "share-fanout", "per-publisher-rr", "--plain",
                 "--max-imbalance", "Exit codes: 0 healthy, 1 duplicates, 2 usage"):
        assert name in text


# --------------------------------------------------------------------------- the real entry point


def aetherdiag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aetherdiag", *args], capture_output=True,
                          text=True, timeout=60)


def test_entry_point_end_to_end() -> None:
    proc = aetherdiag("workers", "--count", "3", "--tasks", "9", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert tasks_of(doc) == ROUND_ROBIN and doc["exit_code"] == 0
    assert proc.stderr == ""

    fanout = aetherdiag("workers", "--fault", "share-fanout", "--quiet")
    assert fanout.returncode == 1, fanout.stderr
    assert fanout.stdout == ""


@pytest.mark.parametrize(("args", "message"), [
    (["workers", "--nope"], "No such option: --nope"),
    (["workers", "--count", "0"], "Invalid value for '--count'"),
    (["workers", "--fault", "nope"], "aetherdiag: error: unknown fault 'nope'"),
    (["no-such-command"], "No such command"),
])
def test_entry_point_usage_errors_exit_2(args: list[str], message: str) -> None:
    proc = aetherdiag(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""


def test_one_slow_worker_gets_fewer_tasks_under_least_inflight() -> None:
    _, doc = nine_tasks("--tasks", "30", "--strategy", "least_inflight", "--rate", "30",
                           "--slow-worker", "worker-2=250", "--max-imbalance", "1.5")
    counts = dict(zip([w["name"] for w in doc["workers"]], unique_counts(doc), strict=True))
    assert counts["worker-2"] < min(counts["worker-1"], counts["worker-3"]), counts
    assert sum(counts.values()) == 30 and doc["missing"] == []


def test_slow_worker_must_name_a_worker() -> None:
    result = workers("--count", "2", "--slow-worker", "worker-3=100")
    assert result.exit_code == 2, result.output
    assert "no worker named 'worker-3'" in result.output


def test_generic_filter_that_cannot_match_is_a_usage_error() -> None:
    result = workers("--topic", "jobs/{task_id}", "--filter", "other/+")
    assert result.exit_code == 2, result.output
    assert "does not match the task topics" in result.output


def test_missing_tasks_end_promptly_not_at_the_timeout() -> None:
    import time

    started = time.monotonic()
    result, doc = nine_tasks("--fault", "share-literal", "--timeout", "20")
    assert result.exit_code == 4 and len(doc["missing"]) == 9
    assert time.monotonic() - started < 10


def test_balance_says_what_is_true_for_one_worker_and_for_no_delivery() -> None:
    """One worker has nothing to share with: its split is even (1.00), not infinite, and it
    is not judged because there is one worker, not for want of tasks. With nothing delivered
    there is no split at all."""
    result, doc = run_json("--count", "1", "--tasks", "9", "--quiet")
    assert result.exit_code == 0, result.output
    b = doc["balance"]
    assert (b["judged"], b["max_over_min"], b["max_over_mean"], b["not_judged"]) == (
        False, 1.0, 1.0, "one worker")
    table = workers("--count", "1", "--tasks", "9")
    assert "max/mean 1.00 (not judged: one worker)" in table.stdout
    result, doc = nine_tasks("--fault", "share-literal", "--timeout", "0.6")
    b = doc["balance"]
    assert (b["max_over_min"], b["max_over_mean"], b["not_judged"]) == (
        None, None, "nothing delivered")
    table = workers("--count", "3", "--tasks", "9", "--fault", "share-literal",
                    "--timeout", "0.6")
    assert "- (nothing delivered)" in table.stdout and "max/min 1.00" not in table.stdout


def test_allow_redelivery_does_not_excuse_dup_redeliveries_no_connection_loss_explains() -> None:
    """--allow-redelivery does what the docs say, no more: it accepts re-sends a lost
    connection causes. The redeliver fault resends with DUP although nothing was lost: the
    repeats still fail (tests/analysis covers the accepted case of a member that came back)."""
    for args in (("--fault", "redeliver", "--allow-redelivery"), ("--fault", "redeliver")):
        result, doc = nine_tasks(*args)
        assert result.exit_code == 1, result.output
        assert doc["duplicates"]["repeats_dup"] == 9 and doc["duplicates"]["repeats_fresh"] == 0
        assert check(doc, "no same-worker repeats") is False


def test_a_strategy_for_a_group_no_worker_joins_is_refused_and_a_real_one_shows() -> None:
    """--group-strategy either takes effect or is a usage error: a group this run's workers
    never join (or any group with --plain) is refused; the one they join is applied and
    named in the header."""
    for args in (["--group-strategy", "nonexistent=sticky"],
                 ["--plain", "--group-strategy", "production_engine_workers=sticky"]):
        result = workers(*args)
        assert result.exit_code == 2, result.output
        assert "no worker of this run joins group" in one_error_line(result)
    result, doc = nine_tasks("--group-strategy", "production_engine_workers=sticky")
    assert "group production_engine_workers: sticky" in doc["target"]
    assert sorted(unique_counts(doc)) == [0, 0, 9]  # sticky: one member gets every task


def test_the_default_timeout_grows_with_the_deliveries_a_run_expects(tmp_path: Path) -> None:
    """30 s, plus --rate pacing, plus a second per 5,000 deliveries: with --plain every
    worker's copy counts (300 plain workers x 3,000 tasks used to be cut off at 30 s)."""
    from aetherdiag.workers.model import DELIVERIES_PER_SECOND, default_timeout

    assert default_timeout(9, None) == pytest.approx(30.0 + 9 / DELIVERIES_PER_SECOND)
    assert default_timeout(100, 10.0) == pytest.approx(30.0 + 10.0 + 100 / DELIVERIES_PER_SECOND)
    assert default_timeout(3000, None, deliveries=900_000) == pytest.approx(30.0 + 180.0)
    record = tmp_path / "plain.jsonl"
    result = workers("--plain", "--count", "4", "--tasks", "5", "--record", str(record))
    assert result.exit_code == 1, result.output
    header = json.loads(record.read_text().splitlines()[0])
    assert header["plan"]["timeout_s"] == pytest.approx(30.0 + 20 / DELIVERIES_PER_SECOND)


def test_piped_and_file_tables_have_no_trailing_spaces(tmp_path: Path) -> None:
    """rich pads grid cells to the width; a pipe or a file gets the lines without it (a
    terminal keeps rich's output as drawn)."""
    result = workers("--count", "3", "--tasks", "9")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("subscription") for line in lines)
    assert [line for line in lines if line != line.rstrip()] == []
    out = tmp_path / "table.txt"
    assert workers("--count", "3", "--tasks", "9", "-o", str(out)).exit_code == 0
    text = out.read_text()
    assert text.endswith("(exit 0)\n") and " \n" not in text
