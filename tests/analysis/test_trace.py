"""One task's story from a real run's record (the embedded emulator, the seed bug on purpose)
and from hand-made results for each outcome; drawn with hostile names escaped."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from support.cli import workers

from aetherdiag.analysis import analyse
from aetherdiag.analysis.trace import known_tasks, trace
from aetherdiag.harness.model import Delivery, FleetEvent, ProcessExit, RunResult, WorkerSpec
from aetherdiag.record.read import read_record
from aetherdiag.render.trace import trace_dict, trace_lines
from aetherdiag.workers.judge import judge_record

SPECS = [WorkerSpec(name=w, subscriptions=("$share/g/t/+",)) for w in ("w1", "w2", "w3")]


def recorded(tmp_path: Path, *args: str) -> tuple[RunResult, object]:
    rec = tmp_path / "run.jsonl"
    result = workers("--count", "3", "--tasks", "9", "--record", str(rec), "--quiet", *args)
    assert result.exit_code in (0, 1), result.output
    run = read_record(rec)
    assert run.result is not None
    return run.result, judge_record(run.header, run.result)


def test_the_seed_bug_traced_names_every_worker(tmp_path: Path) -> None:
    result, report = recorded(tmp_path, "--fault", "share-fanout")
    t = trace(result, "task-5", report)  # type: ignore[arg-type]
    assert t.published and t.publisher == "publisher" and t.seq == 5
    assert t.workers == ("worker-1", "worker-2", "worker-3")
    assert t.outcome.startswith("a duplicate: 3 workers received it")
    assert [c.at for c in t.copies] == sorted(c.at for c in t.copies)
    doc = trace_dict(t)
    assert json.loads(json.dumps(doc))["outcome"] == t.outcome and len(doc["copies"]) == 3


def test_a_healthy_task_is_handled_once(tmp_path: Path) -> None:
    result, report = recorded(tmp_path)
    t = trace(result, "task-1", report)  # type: ignore[arg-type]
    assert len(t.workers) == 1 and t.outcome == f"handled once, by {t.workers[0]}"
    assert known_tasks(result)[:2] == ["task-1", "task-2"]
    assert trace(result, "task-99", report).outcome == "this run has no such task"  # type: ignore[arg-type]


def d(worker: str, task: str, at: float, **kw: object) -> Delivery:
    fields: dict[str, object] = {"topic": f"t/{task}", "qos": 1, "dup": False, "retain": False,
                                 **kw}
    return Delivery(worker=worker, task_id=task, at=at, **fields)  # type: ignore[arg-type]


def run(*deliveries: Delivery, **kw: object) -> RunResult:
    base = dict(target="x", workers=("w1", "w2", "w3"), published=("a", "b"),
                deliveries=deliveries)
    return RunResult(**{**base, **kw})  # type: ignore[arg-type]


def test_each_outcome_in_words() -> None:
    lost = run(d("w1", "a", 0.1, completed=False), d("w2", "b", 0.2),
               events=(FleetEvent(at=0.3, worker="w1", kind="dropped", task_ids=("a",)),))
    t = trace(lost, "a", analyse(lost, SPECS))
    assert t.outcome.startswith("missing: w1 received it but lost it in flight")
    assert [m.kind for m in t.moments] == ["dropped"]
    repeat = run(d("w1", "a", 0.1), d("w1", "a", 0.2, dup=True), d("w2", "b", 0.3))
    assert trace(repeat, "a", analyse(repeat, SPECS)).outcome == (
        "a repeat: w1 received it 2 times (1 DUP-flagged)")
    unsent = run(d("w1", "a", 0.1), unsent=(("b", "not sent: interrupted"),),
                 published=("a",))
    assert trace(unsent, "b").outcome == "never sent (not sent: interrupted)"
    died = run(d("w1", "a", 0.1, completed=False), d("w2", "b", 0.2), own_processes=True,
               process_exits=(ProcessExit(name="w1", pid=7, status=-9, held=("a",)),))
    assert trace(died, "a", analyse(died, SPECS)).outcome.startswith("lost: w1 ended holding it")
    twice = run(d("w1", "a", 0.1), d("w2", "b", 0.2), expects_replies=True,
                replies=(("w1", "a", "complete"), ("w1", "a", "complete")))
    assert trace(twice, "a", analyse(twice, SPECS)).outcome == "handled twice by w1"


def test_hostile_names_are_drawn_as_text() -> None:
    name = "[bold]x[/bold]\x1b]0;t\x07\nverdict: healthy (exit 0)"
    r = run(d(name, "a", 0.1), workers=(name,), published=("a",))
    console = Console(width=120, record=True, force_terminal=True)
    for line in trace_lines(trace(r, "a")):
        console.print(line)
    out = console.export_text()
    assert "\x1b]0" not in out and "\x07" not in out
    assert "[bold]x[/bold]" in out and "\\nverdict: healthy" in out
    assert not any(ln.startswith("verdict:") for ln in out.splitlines())
