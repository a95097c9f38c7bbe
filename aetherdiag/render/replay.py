"""How ``aetherdiag replay`` results leave the program: table, JSON and JUnit for several files.

How this works: each file's report is rendered exactly like a ``workers`` report (``render``),
with the scenario's description above it and one line saying whether its expectations held.
The outcome keeps the judged report, the step effects and the expectations side by side;
``shown`` merges them here, and only here: the title, the run's setup and the timeline are
attached, and each expectation becomes one more check after the run's own.
Several files end with a summary table. JSON: one file gives one object (the ``workers``
schema ``aetherdiag.report/1`` plus a ``scenario`` section), several files give a list of
such objects in the order given. JUnit: a ``<testsuites>`` document with one ``<testsuite>``
per file (one test case per check, expectations included; under ``--check-expect`` the run's
own failed checks are reported as skipped, since the expectations decide). Commands never
import rich. File names, descriptions, errors and expectation values are text from outside:
``safe.terminal`` inside ``Text`` for the table (``Guarded`` around the lines that carry them,
so no line but a report's verdict line starts with ``verdict:``), ``safe.xml_document`` for
JUnit.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..analysis import Check, Report
from ..exitcodes import ExitCode
from ..replay.outcome import RUN_FAILURES, ExpectResult, ReplayOutcome, worst_exit_code
from . import report as render
from .blocks import Guarded, Sized, boxed_width, pairs
from .output import Format, write
from .safe import terminal, xml_document

__all__ = ["outcome_dict", "render_outcomes", "shown", "to_json", "to_junit"]


def _title(o: ReplayOutcome) -> str:
    return f"aetherdiag replay {o.name}"


def _expect_check(e: ExpectResult) -> Check:
    """One expectation as a check line (``expect duplicates``: "expected 10, got 10")."""
    return Check(name=f"expect {e.name}", passed=e.passed, code=ExitCode.EXPECTATIONS_NOT_MET,
                 detail=f"expected {e.expected}, got {e.actual}")


def shown(o: ReplayOutcome, own_checks: tuple[Check, ...] | None = None) -> Report:
    """The report as displayed: title, setup and timeline attached, the run's own checks
    (``own_checks`` in place of the report's, when given) followed by the expectations."""
    assert o.report is not None
    own = o.report.checks if own_checks is None else own_checks
    return replace(o.report, title=_title(o), context=o.setup,
                   timeline=tuple(s.text for s in o.steps),
                   checks=own + tuple(_expect_check(e) for e in o.expectations))


def outcome_dict(outcome: ReplayOutcome) -> dict[str, Any]:
    """One file as JSON: the report document plus ``scenario`` (or ``error``)."""
    o = outcome
    scenario: dict[str, Any] = {
        "file": o.file,
        "name": o.name,
        "description": o.description,
        "expected_exit_code": o.expected_exit,
        "exit_code_matched": (None if o.expected_exit is None or o.report is None
                              else int(o.report.exit_code) == o.expected_exit),
        "expectations_met": o.expectations_met,
        "expectations": [
            {"name": e.name, "expected": e.expected, "actual": e.actual, "passed": e.passed}
            for e in o.expectations
        ],
        "steps": [
            {
                "index": s.index, "line": s.line, "kind": s.kind, "step": s.description,
                "effect": s.effect, "started_s": round(s.started, 3),
                "ended_s": round(s.ended, 3), "deliveries": dict(s.deliveries),
            }
            for s in o.steps
        ],
        "check_expect": o.check_expect,
        "exit_code": int(o.exit_code),
    }
    if o.report is None:
        return {
            "schema": render.SCHEMA, "title": _title(o),
            "error": o.error, "verdict": "error", "exit_code": int(o.exit_code),
            "scenario": scenario,
        }
    return {**render.to_dict(shown(o)), "scenario": scenario}


def to_json(outcomes: Sequence[ReplayOutcome]) -> str:
    """One object for one file, a list for several."""
    docs = [outcome_dict(o) for o in outcomes]
    return json.dumps(docs[0] if len(docs) == 1 else docs, indent=2) + "\n"


def to_junit(outcomes: Sequence[ReplayOutcome]) -> str:
    """``<testsuites>`` with one ``<testsuite>`` per file."""
    suites = ET.Element("testsuites", {"name": "aetherdiag replay"})
    tests = failures = errors = 0
    for o in outcomes:
        if o.report is None:
            suite = ET.SubElement(suites, "testsuite", {
                "name": _title(o), "tests": "1", "failures": "0",
                "errors": "1", "skipped": "0", "time": "0",
            })
            case = ET.SubElement(suite, "testcase", {
                "classname": f"aetherdiag.replay.{o.name}", "name": "run", "time": "0"})
            ET.SubElement(case, "error", {"message": o.error or "", "type": f"exit-{o.exit_code}"})
            tests, errors = tests + 1, errors + 1
        else:
            suite = render.junit_suite(_judged(o))
            suites.append(suite)
            tests += int(suite.get("tests", "0"))
            failures += int(suite.get("failures", "0"))
        props = suite.find("properties")
        if props is None:
            props = ET.Element("properties")
            suite.insert(0, props)
        for key, value in (("file", o.file), ("scenario_exit_code", str(int(o.exit_code))),
                           ("expected_exit_code", "" if o.expected_exit is None
                            else str(o.expected_exit))):
            ET.SubElement(props, "property", {"name": key, "value": value})
    suites.set("tests", str(tests))
    suites.set("failures", str(failures))
    suites.set("errors", str(errors))
    return xml_document(suites)


def _judged(o: ReplayOutcome) -> Report:
    """The report as JUnit should judge it: under ``--check-expect`` (with an expect block)
    the expectations decide, so the run's own failed verdict checks become skipped cases.
    Checks saying the run did not do its job (broker lost, incomplete, interrupted) keep
    failing unless the file expects exactly that exit code."""
    assert o.report is not None
    if not (o.check_expect and o.expectations):
        return shown(o)

    def judged_elsewhere(c: Check) -> bool:
        if c.passed is not False:
            return False
        return c.code not in RUN_FAILURES or o.expected_exit == c.code

    own = tuple(
        replace(c, passed=None, detail=f"observed, judged by the expect block: {c.detail}")
        if judged_elsewhere(c) else c
        for c in o.report.checks
    )
    return shown(o, own)


def expectation_line(o: ReplayOutcome) -> Text:
    """``expectations: all 7 met (exit 1 as expected)`` or what did not hold."""
    if o.report is None:
        return Text(f"not run: {terminal(o.error or '')}", style="bold red")
    if not o.expectations:
        return Text("expectations: the file has no expect block", style="dim")
    failed = [e for e in o.expectations if not e.passed]
    code = (f"exit {int(o.report.exit_code)} as expected"
            if o.expected_exit is not None and int(o.report.exit_code) == o.expected_exit
            else f"exit {int(o.report.exit_code)}"
            + (f", expected {o.expected_exit}" if o.expected_exit is not None else ""))
    if not failed:
        return Text(f"expectations: all {len(o.expectations)} met ({code})", style="green")
    listed = terminal("; ".join(f"{e.name} expected {e.expected}, got {e.actual}"
                                for e in failed))
    return Text(f"expectations: {len(failed)} of {len(o.expectations)} NOT met ({code}): "
                f"{listed}", style="bold red")


def summary(outcomes: Sequence[ReplayOutcome]) -> Sized:
    """One row per file (shown when several files were replayed): a table when it fits the
    width, else one line per file, so a file name is never cut."""
    heads = ("file", "verdict", "exit", "expected", "expectations")
    rows: list[tuple[str, str, str, str, Text]] = []  # file and verdict escaped (terminal)
    for o in outcomes:
        expected = "-" if o.expected_exit is None else str(o.expected_exit)
        if o.report is None:
            rows.append((terminal(o.file), "error", str(int(o.exit_code)), expected,
                         Text("not run", style="bold red")))
            continue
        met = sum(1 for e in o.expectations if e.passed)
        ok = met == len(o.expectations)
        rows.append((terminal(o.file), terminal(o.report.verdict),
                     str(int(o.report.exit_code)), expected,
                     Text(f"{met}/{len(o.expectations)} met",
                          style="green" if ok else "bold red")))

    def verdict(row: tuple[str, str, str, str, Text]) -> Text:
        return Text(row[1], style="bold red") if row[1] == "error" else Text(row[1])

    def build(width: int) -> list[RenderableType]:
        title = Text("replay summary", style="italic")
        if boxed_width(heads, ((*r[:4], r[4].plain) for r in rows)) <= width:
            t = Table(title="replay summary", title_justify="left")
            for col in heads:
                t.add_column(col, justify="right" if col in ("exit", "expected") else "left",
                             no_wrap=True)
            for r in rows:
                t.add_row(Text(r[0]), verdict(r), Text(r[2]), Text(r[3]), r[4])
            return [t]
        return [title, pairs([(r[0], Text.assemble(
            verdict(r), f", exit {r[2]}, expected {r[3]}, ", r[4])) for r in rows], width)]

    return Sized(build)


def render_outcomes(outcomes: Sequence[ReplayOutcome], fmt: Format,
                    output: TextIO | None = None) -> None:
    """Write every file's result in ``fmt`` to ``output`` (stdout by default)."""
    from . import html, markdown  # jinja2 loads only when a page is asked for

    write(fmt, output, json_text=lambda: to_json(outcomes),
          junit_text=lambda: to_junit(outcomes), draw=lambda console: _draw(console, outcomes),
          html_text=lambda: html.replay_page(outcomes, shown),
          markdown_text=lambda: markdown.replay_summary(outcomes, shown))


def _draw(console: Console, outcomes: Sequence[ReplayOutcome]) -> None:
    several = len(outcomes) > 1
    for o in outcomes:
        if several:
            console.rule(Text(terminal(o.file)))
        if o.description:
            console.print(Guarded(Text(terminal(o.description), style="italic")))
        if o.report is not None:
            console.print(render.table(shown(o)))
        console.print(Guarded(expectation_line(o)))
    if several:
        console.print(Guarded(summary(outcomes)))
        code = worst_exit_code(o.exit_code for o in outcomes)
        mode = "expectations (--check-expect)" if outcomes[0].check_expect else "verdicts"
        console.print(Text(f"exit {int(code)}: the lowest non-zero code of the files' {mode}",
                           style="bold green" if code == ExitCode.OK else "bold red"))
