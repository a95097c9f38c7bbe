"""The ``workers`` table reads right at every size and width: snapshots at 40, 60, 80 and 120
columns (piped and on a terminal, colour stripped) for 1, 3 and 300 workers, and the
behaviour the snapshots only show: names whole, no line past the width, lists summarised,
shares that differ, bounded summary lines, nothing lost at 20 columns.

Snapshots are ``golden/table/<case>-<width>.txt`` (lines right-stripped); a run with
``UPDATE_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from support.cli import workers
from support.synthetic import probe_report, replay_outcome, synthetic_report

from aetherdiag.analysis import Report
from aetherdiag.render import table, to_dict, to_json
from aetherdiag.render.fit import duplicate_examples, fit_names, fit_tasks, share_text
from aetherdiag.render.load import load_saved
from aetherdiag.render.probe import table as probe_table
from aetherdiag.render.replay import summary

GOLDEN = Path(__file__).parent / "golden" / "table"
WIDTHS = (40, 60, 80, 120)
SUBSCRIPTION = "$share/production_engine_workers/production/engine/process-data/batch1/+/perform"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def titled(report: Report) -> Report:
    """A synthetic report with the title and setup ``workers`` gives it."""
    return replace(report, title="aetherdiag workers", context=(
        ("workers", str(len(report.workers))), ("subscription", SUBSCRIPTION),
        ("tasks", f"{report.published} to production/engine/process-data/batch1/task-N/perform"),
        ("qos", "1"), ("mqtt", "5")))


@functools.cache
def case(name: str) -> Report:
    return titled({
        "one": lambda: synthetic_report(1, 9),
        "three": lambda: synthetic_report(3, 9),
        "three-dup": lambda: synthetic_report(3, 30, duplicate_every=4, redeliver_every=5),
        "pool300": lambda: synthetic_report(300, 3000, duplicate_every=7, redeliver_every=11),
        "fanout300": lambda: synthetic_report(300, 600, fanout=True),
    }[name]())


def draw(report: Report, width: int, tty: bool) -> str:
    """The table as printed: piped (no terminal) or on a terminal with colour stripped. The
    terminal's raw output must hold colour and, stripped, read exactly as recorded."""
    if not tty:
        out = io.StringIO()
        Console(file=out, width=width, force_terminal=False).print(table(report))
        return out.getvalue()
    console = Console(file=io.StringIO(), width=width, force_terminal=True, record=True,
                      color_system="truecolor")
    console.print(table(report))
    text = console.export_text(styles=False)
    raw = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in raw and ANSI.sub("", raw) == text
    return text


def names_of(report: Report) -> list[str]:
    return [w.name for w in report.workers]


# -- snapshots ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "tty"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["one", "three", "pool300"])
def test_snapshot(name: str, width: int, tty: bool) -> None:
    got = "\n".join(line.rstrip() for line in draw(case(name), width, tty).splitlines()) + "\n"
    path = GOLDEN / f"{name}-{width}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert got == path.read_text(encoding="utf-8"), f"{path} differs (UPDATE_GOLDEN=1 rewrites)"


def test_synthetic_reports_are_deterministic() -> None:
    """Snapshots hold duration and latency: the synthetic runs must give the same ones."""
    again = titled(synthetic_report(300, 3000, duplicate_every=7, redeliver_every=11))
    assert to_dict(again) == to_dict(case("pool300"))
    assert case("pool300").duration_s == 2.0 and case("pool300").latency_ms


# -- behaviour at every width ------------------------------------------------------------------

EVERY = [(n, w, t) for n in ("one", "three", "three-dup", "pool300", "fanout300")
         for w in (20, *WIDTHS) for t in (False, True)]


@pytest.mark.parametrize(("name", "width", "tty"), EVERY)
def test_names_whole_and_lines_within_the_width(name: str, width: int, tty: bool) -> None:
    report = case(name)
    text = draw(report, width, tty)
    too_long = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_long, too_long[:3]
    for worker in names_of(report):
        assert re.search(rf"(?<![\w-]){re.escape(worker)}(?![\w-])", text), worker
    assert not re.search(r"[\w-]…", text), "a name or word cut with …"
    assert "wo…" not in text and "w…" not in text


@pytest.mark.parametrize(("name", "width"), [(n, w) for n in ("three", "pool300", "fanout300")
                                             for w in (40, 60, 80, 120)])
def test_tasks_never_one_per_line(name: str, width: int) -> None:
    """A task id alone on a line (box lines aside) is a list wrapped word by word."""
    for line in draw(case(name), width, tty=False).splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        assert not any(re.fullmatch(r"task-\d+,?", c) for c in cells), line


@pytest.mark.parametrize("width", [20, 40, 60])
@pytest.mark.parametrize("name", ["one", "three", "three-dup", "pool300"])
def test_narrow_blocks_keep_every_figure(name: str, width: int) -> None:
    """Below the table's width each worker is a block that still holds all its figures."""
    report = case(name)
    flat = " ".join(draw(report, width, tty=False).split())
    for w in report.workers:
        assert (f"{w.name} {w.received} received, {w.unique} unique, {w.repeats} repeats, "
                f"{share_text(w.share)}") in flat, w.name


@pytest.mark.parametrize("name", ["three", "three-dup", "pool300"])
def test_wide_table_rows_hold_every_figure(name: str) -> None:
    report = case(name)
    rows = {cells[0]: cells for line in draw(report, 120, tty=False).splitlines()
            if (cells := [c.strip() for c in line.split("│")[1:-1]]) and cells[0]}
    for w in report.workers:
        assert rows[w.name][1:5] == [str(w.received), str(w.unique), str(w.repeats),
                                     share_text(w.share)]


@pytest.mark.parametrize("width", [40, 80, 120])
def test_large_pool_shares_differ_and_are_never_zero(width: int) -> None:
    report = case("pool300")
    assert all(w.unique for w in report.workers)
    text = draw(report, width, tty=False)
    shares = re.findall(r"(?<![\w.])<?\d+(?:\.\d+)?%", text)
    assert len(shares) >= len(report.workers)
    assert "0%" not in shares and len(set(shares)) > 1, sorted(set(shares))


def rows_of(text: str, label: str, indent: int) -> list[str]:
    """The lines of one grid row: its first line and the continuation lines indented to the
    value column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.rstrip() == label or line.startswith(label + " "))
    out = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * indent) or not line.strip():
            break
        out.append(line)
    return out


@pytest.mark.parametrize("tty", [False, True])
def test_fanout_duplicates_line_stays_short(tty: bool) -> None:
    text = draw(case("fanout300"), 80, tty)
    row = rows_of(text, "cross-worker duplicates", len("cross-worker duplicates  "))
    assert len(row) <= 3, row
    joined = " ".join(" ".join(row).split())
    assert ("600 (task-1 -> worker-1, worker-2, worker-3 and 297 more; task-2 -> worker-1, "
            "worker-2, worker-3 and 297 more; and 598 more tasks)") in joined


def test_subscription_whole_in_the_setup_at_80_columns_piped() -> None:
    text = draw(case("three"), 80, tty=False)
    indent = len("subscription  ")
    row = rows_of(text, "subscription", indent)
    assert "".join(line[indent:].rstrip() for line in row) == SUBSCRIPTION
    assert "…" not in "".join(row)


@pytest.mark.parametrize("width", [40, 60, 80])
def test_topics_fold_after_a_slash_not_inside_a_level(width: int) -> None:
    """A topic too long for its column breaks after a ``/``: every line of the subscription
    but the last ends with one, so no level is split."""
    text = draw(case("three"), width, tty=False)
    indent = len("subscription  ")
    row = [line[indent:].rstrip() for line in rows_of(text, "subscription", indent)]
    assert len(row) > 1 and "".join(row) == SUBSCRIPTION
    assert all(line.endswith("/") for line in row[:-1]), row


def failing(n: int) -> Report:
    """A 300-worker run where everything that can go wrong did, n of each."""
    base = case("pool300")
    names = names_of(base)
    return replace(
        base, missing=tuple(f"task-{i}" for i in range(1, n + 1)),
        unsent=tuple((f"task-{i}", "not sent within 2 s") for i in range(1, n + 1)),
        unfinished=tuple((names[i % 300], f"task-{i}") for i in range(1, n + 1)),
        connection_lost=tuple(names[:n]),
        steps_not_run=tuple(f"step {i} (line {i + 10})" for i in range(1, n + 1)))


@pytest.mark.parametrize("width", [40, 80, 120])
def test_failure_lines_stay_short_at_300(width: int) -> None:
    text = draw(failing(300), width, tty=False)
    assert not [line for line in text.splitlines() if cell_len(line) > width]
    stacked = width < 60  # the label on its own line, the value indented below
    for label in ("missing", "not sent", "unfinished", "connection lost", "steps not run"):
        row = rows_of(text, label, 2 if stacked else len("cross-worker duplicates  "))
        assert len(row) <= 3 + stacked, row
        assert "300" in row[0] or "300" in row[1], row
    assert "and 29" in text  # connection lost names a few workers and counts the rest


# -- the helpers -------------------------------------------------------------------------------


def test_fit_tasks() -> None:
    ids = [f"task-{n}" for n in range(1, 301, 3)]
    assert fit_tasks(ids[:3], 80) == "task-1, task-4, task-7"
    assert fit_tasks(ids, 40) == "task-1, task-4, … task-298 (100 tasks)"
    assert fit_tasks(ids, 40, lines=2).endswith("… task-298 (100 tasks)")
    assert fit_tasks(ids[:3], 10) == "task-1, task-4, task-7"  # shorter than any summary
    assert fit_tasks([], 10) == "-"
    assert fit_names([f"worker-{i}" for i in range(1, 301)], 40) == (
        "worker-1, worker-2 and 298 more")


def test_share_text_and_examples() -> None:
    assert [share_text(s) for s in (0, 0.00005, 0.0033, 0.042, 1 / 3, 1)] == [
        "0%", "<0.01%", "0.33%", "4.2%", "33%", "100%"]
    few = (("task-1", ("worker-1", "worker-2")),)
    assert duplicate_examples(few) == "task-1 -> worker-1, worker-2"
    many = tuple((f"task-{i}", tuple(f"worker-{j}" for j in range(1, 301))) for i in range(1, 9))
    assert duplicate_examples(many) == (
        "task-1 -> worker-1, worker-2, worker-3 and 297 more; task-2 -> worker-1, worker-2, "
        "worker-3 and 297 more; and 6 more tasks")


# -- replay and probe ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [20, 40, 80, 120])
def test_replay_summary_and_probe_checks_keep_names_whole(width: int) -> None:
    outcome = replay_outcome()
    probe = probe_report()
    for renderable, names in (
            (summary([outcome, replace(outcome, file="scenarios/another-file.yaml")]),
             [outcome.file, "scenarios/another-file.yaml"]),
            (probe_table(probe), [c.title for c in probe.checks])):
        out = io.StringIO()
        Console(file=out, width=width, force_terminal=False).print(renderable)
        text = out.getvalue()
        assert not [line for line in text.splitlines() if cell_len(line) > width], text
        assert "…" not in text, text
        # at 20 a 28-character file name folds, whole but on two lines; from 100 the probe's
        # checks are a table whose narrow title column wraps titles over lines
        if 40 <= width < 100:
            for name in names:
                assert name in text, (name, text)


# -- through the CLI ---------------------------------------------------------------------------


def test_cli_at_40_columns_names_every_worker_whole() -> None:
    result = workers("--count", "3", "--tasks", "9", env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= 40, result.stdout
    flat = " ".join(result.stdout.split())
    for i, tasks in enumerate((("1", "4", "7"), ("2", "5", "8"), ("3", "6", "9")), start=1):
        assert f"worker-{i} 3 received, 3 unique, 0 repeats, 33%" in flat, result.stdout
        assert ", ".join(f"task-{n}" for n in tasks) in flat
    assert not re.search(r"[\w-]…", result.stdout)
    assert "verdict: healthy (exit 0)" in result.stdout


def test_a_json_report_lists_unsent_per_reason_and_reads_back_with_the_counts() -> None:
    report = replace(failing(300), unsent=(
        *((f"task-{i}", "not sent within 2 s") for i in range(1, 251)),
        *((f"task-{i}", "interrupted") for i in range(251, 301))))
    doc = json.loads(to_json(report))
    assert [(u["reason"], u["count"], len(u["tasks"])) for u in doc["unsent"]] == [
        ("not sent within 2 s", 250, 10), ("interrupted", 50, 10)]
    assert doc["unsent"][0]["tasks"][:2] == ["task-1", "task-2"]
    back = load_saved(doc)
    assert isinstance(back, Report)
    assert len(back.unsent) == 300 and back.unsent[0] == ("task-1", "not sent within 2 s")
    assert sum(1 for _, r in back.unsent if r == "interrupted") == 50
