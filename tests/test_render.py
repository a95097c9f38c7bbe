"""render: the JSON schema, JUnit XML and the table carry the report's facts."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

from aetherdiag import render
from aetherdiag.analysis import analyse
from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec


def report(fanout: bool):  # type: ignore[no-untyped-def]
    tasks = [f"task-{n}" for n in range(1, 10)]
    deliveries = []
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
