"""--format markdown: a compact summary for $GITHUB_STEP_SUMMARY, checked against a golden
file (regenerate with AETHERDIAG_UPDATE_GOLDEN=1 after a deliberate change)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from support.cli import invoke
from support.synthetic import probe_report, replay_outcome, synthetic_report

from aetherdiag.render import markdown
from aetherdiag.render.replay import shown

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("AETHERDIAG_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def fanout_text() -> str:
    report = synthetic_report(3, 9, fanout=True)
    return markdown.report_summary(replace(report, title="aetherdiag workers",
                                           duration_s=0.25))


def test_workers_summary_matches_golden() -> None:
    golden("workers-fanout.md", fanout_text())


def test_structure() -> None:
    lines = fanout_text().splitlines()
    assert lines[0] == "### aetherdiag workers: emulator (synthetic)"
    assert lines[2] == "❌ **duplicates** (exit 1)"
    assert "| | check | detail |" in lines
    assert "| ❌ | no cross-worker duplicates | 9 of 9 tasks reached more than one worker |" \
        in lines
    header = "| worker | received | unique | shared | repeats | share | first tasks |"
    assert header in lines
    assert "| worker-1 | 9 | 9 | 9 | 0 | 100% | task-1, task-2, task-3, task-4, task-5, … +4 " \
        "more |" in lines
    assert "**Likely causes**" in lines
    assert any(line.startswith("latency: p50 ") for line in lines)


def test_compact_for_300_workers() -> None:
    text = markdown.report_summary(synthetic_report(300, 30_000, duplicate_every=97))
    rows = [line for line in text.splitlines() if line.startswith("| worker-")]
    assert len(rows) == markdown.WORKER_ROWS
    assert "… and 280 more workers" in text
    assert len(text.encode()) < 8_000, len(text.encode())


def test_pipes_in_values_do_not_break_the_table() -> None:
    report = synthetic_report(2, 4)
    text = markdown.report_summary(replace(report, causes=("a | b",), target="x|y"))
    assert "x\\|y" in text and "- a \\| b" in text


def test_replay_and_probe() -> None:
    o = replay_outcome()
    text = markdown.replay_summary([o, o], shown)
    assert text.startswith("### aetherdiag replay: 2 files")
    assert text.count("#### aetherdiag replay drop-mid-work") == 2
    assert "expectations: 1 of 1 met" in text
    probe = markdown.probe_summary(probe_report())
    assert "✅ **shared subscriptions deliver each message to exactly one member** (exit 0)" \
        in probe
    assert "- strategy: round_robin (per group) (confidence 97%)" in probe


def test_workers_command_prints_markdown() -> None:
    result = invoke("workers", "--count", "3", "--tasks", "9", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("### aetherdiag workers: emulator")
    assert "✅ **healthy** (exit 0)" in result.output
