"""render: the JSON schema, JUnit XML and the table carry the report's facts."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

from aetherdiag import render
from aetherdiag.analysis import Report, analyse
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec
from aetherdiag.render.replay import to_json as replay_json
from aetherdiag.render.replay import to_junit as replay_junit
from aetherdiag.replay.model import StepEffect
from aetherdiag.replay.outcome import ExpectResult, ReplayOutcome


def report(fanout: bool) -> Report:
    tasks = [f"task-{n}" for n in range(1, 10)]
    deliveries: list[Delivery] = []
    for i in (1, 2, 3):
        mine = tasks if fanout else tasks[i - 1::3]
        deliveries += [Delivery(worker=f"worker-{i}", task_id=t, topic="t/" + t, qos=1,
                                dup=False, retain=False, at=0.1, latency_ms=1.5) for t in mine]
    result = RunResult(target="emulator", workers=("worker-1", "worker-2", "worker-3"),
                       published=tuple(tasks), deliveries=tuple(deliveries), duration_s=0.5)
    workers = [WorkerSpec(name=f"worker-{i}", subscriptions=("$share/g/t/+",)) for i in (1, 2, 3)]
    return analyse(result, workers)


def test_json_schema_fields() -> None:
    doc = json.loads(render.to_json(report(fanout=True)))
    assert doc["schema"] == "aetherdiag.report/1"
    assert doc["published"] == 9 and doc["delivered"] == 27 and doc["missing"] == []
    assert doc["duplicates"]["cross_worker"] == 9 and doc["duplicates"]["repeats"] == 0
    assert doc["balance"]["max_over_min"] == 1.0
    assert [w["name"] for w in doc["workers"]] == ["worker-1", "worker-2", "worker-3"]
    assert len(doc["workers"][0]["tasks"]) == 9
    assert doc["verdict"] == "duplicates" and doc["exit_code"] == 1


def test_junit_one_case_per_check() -> None:
    root = ET.fromstring(render.to_junit(report(fanout=True)))
    cases = root.findall("testcase")
    assert len(cases) == len(report(fanout=True).checks) == 8
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["no cross-worker duplicates"]
    assert root.get("failures") == "1"


def test_table_lists_tasks_per_worker() -> None:
    out = io.StringIO()
    render.render(report(fanout=False), render.Format.table, out)
    text = out.getvalue()
    assert "task-1, task-4, task-7" in text
    assert "task-2, task-5, task-8" in text
    assert "verdict: healthy (exit 0)" in text


def test_shorten_tasks() -> None:
    ids = [f"task-{n}" for n in range(1, 101)]
    short = render.shorten_tasks(ids, 3)
    assert short == "task-1, task-2, task-3, … +97 more"
    assert render.shorten_tasks([]) == "-"


def outcome() -> ReplayOutcome:
    """A replay of the fanout run whose file expects the duplicates, under --check-expect."""
    step = StepEffect(index=1, line=12, kind="publish", description="publish 9 task(s)",
                      effect="worker-1 9, worker-2 9, worker-3 9", started=0.0, ended=0.1)
    return ReplayOutcome(
        file="demo.yaml", name="demo", description="", report=report(fanout=True),
        exit_code=ExitCode.OK, check_expect=True, setup=(("file", "demo.yaml"),),
        steps=(step,), expected_exit=1, expectations=(
            ExpectResult(name="exit code", expected="1", actual="1 (duplicates)", passed=True),
            ExpectResult(name="duplicates", expected="9", actual="9", passed=True)))


def test_replay_expectations_are_merged_only_when_rendered() -> None:
    o = outcome()
    assert o.report is not None and not any(c.name.startswith("expect") for c in o.report.checks)
    doc = json.loads(replay_json([o]))
    assert doc["title"] == "aetherdiag replay demo" and doc["run"] == {"file": "demo.yaml"}
    assert doc["timeline"] == ["step 1 (line 12): publish 9 task(s): worker-1 9, worker-2 9, "
                               "worker-3 9"]
    names = [c["name"] for c in doc["checks"]]
    assert names == [c.name for c in o.report.checks] + ["expect exit code", "expect duplicates"]
    assert {c["exit_code"] for c in doc["checks"][-2:]} == {int(ExitCode.EXPECTATIONS_NOT_MET)}
    cases = {c.get("name"): c for c in ET.fromstring(replay_junit([o])).iter("testcase")}
    skipped = cases["no cross-worker duplicates"].find("skipped")
    assert skipped is not None and str(skipped.get("message")).startswith("observed, judged by")
    assert all(not list(cases[f"expect {n}"]) for n in ("exit code", "duplicates"))
