"""``--format markdown``: a compact summary for a CI job page (``$GITHUB_STEP_SUMMARY``).

How this works: GitHub-flavoured Markdown built from the same frozen values as the other
formats: the verdict first, then the checks, a per-worker table with each worker's first
tasks, the likely causes and the latency percentiles. It stays small whatever the run: at most
``WORKER_ROWS`` worker rows (those with duplicates or repeats first, then in worker order)
and a line counting the rest. No HTML, no images: the text reads the same in a terminal.
Every value from outside (names, task ids, topics, details, causes, file names, errors, even
the verdict of a loaded report) goes through ``safe.markdown`` (``md``), so none can add HTML,
a link, an image, a table cell or a line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..analysis import Report
from ..analysis.ordering import publishers_line
from ..exitcodes import ExitCode
from ..probe.fingerprint import percent
from ..probe.model import ProbeReport, Status, version_label
from ..replay.outcome import ReplayOutcome, worst_exit_code
from .fit import share_text
from .output import latency_line, shorten_tasks
from .safe import markdown as md

WORKER_ROWS = 20
FIRST_TASKS = 5
_STATUS = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.INFO: "ℹ️",  # noqa: RUF001
           Status.SKIP: "➖"}  # noqa: RUF001


def _mark(passed: bool | None) -> str:
    return "✅" if passed else ("➖" if passed is None else "❌")  # noqa: RUF001


def _verdict(verdict: str, code: int) -> str:
    return f"{'✅' if code == 0 else '❌'} **{md(verdict)}** (exit {code})"


def report_lines(report: Report, heading: str = "###") -> list[str]:
    """One workers-style report (``workers``, ``watch``, one replay file)."""
    lines = [f"{heading} {md(report.title or 'aetherdiag')}: {md(report.target)}", "",
             _verdict(report.verdict, int(report.exit_code)), ""]
    figures = (f"{report.published} published, {report.delivered} delivered "
               f"({report.unique_delivered} distinct), {len(report.cross_worker)} cross-worker "
               f"duplicates, {report.repeats} repeats, {len(report.missing)} missing, "
               f"{report.duration_s:.2f} s")
    lines += [figures, ""]
    if report.latency_ms:
        lines += [f"latency: {latency_line(report.latency_ms)}", ""]
    if (publishers := publishers_line(report)) is not None:
        lines += [f"publishers: {md(publishers)}", ""]
    lines += ["| | check | detail |", "|---|---|---|"]
    lines += [f"| {_mark(c.passed)} | {md(c.name)} | {md(c.detail)} |"
              for c in report.checks]
    lines.append("")
    rows = report.workers
    if rows:
        order = sorted(range(len(rows)), key=lambda i: (-(rows[i].shared + rows[i].repeats), i))
        shown = sorted(order[:WORKER_ROWS])
        lines += ["| worker | received | unique | shared | repeats | share | first tasks |",
                  "|---|--:|--:|--:|--:|--:|---|"]
        for i in shown:
            w = rows[i]
            lines.append(f"| {md(w.name)} | {w.received} | {w.unique} | {w.shared} | "
                         f"{w.repeats} | {share_text(w.share)} | "
                         f"{md(shorten_tasks(w.tasks, FIRST_TASKS))} |")
        if len(rows) > len(shown):
            rest = [rows[i].unique for i in range(len(rows)) if i not in set(shown)]
            lines.append("")
            lines.append(f"… and {len(rest)} more workers ({min(rest)} to {max(rest)} unique "
                         "tasks each)")
        lines.append("")
    if report.causes:
        lines += ["**Likely causes**", ""] + [f"- {md(c)}" for c in report.causes] + [""]
    return lines


def report_summary(report: Report) -> str:
    return "\n".join(report_lines(report)) + "\n"


def replay_summary(outcomes: Sequence[ReplayOutcome],
                   shown: Callable[[ReplayOutcome], Report]) -> str:
    """Every replay file: a summary table when there are several, then each file's report
    (``shown``: how ``render.replay`` displays one outcome's report)."""
    lines: list[str] = []
    if len(outcomes) > 1:
        code = worst_exit_code(o.exit_code for o in outcomes)
        lines += [f"### aetherdiag replay: {len(outcomes)} files", "",
                  _verdict("healthy" if code == ExitCode.OK else "failed", int(code)), "",
                  "| file | verdict | exit | expected | expectations |", "|---|---|--:|--:|---|"]
        for o in outcomes:
            met = sum(1 for e in o.expectations if e.passed)
            lines.append(
                f"| {md(o.file)} | {md(o.report.verdict if o.report else 'error')} | "
                f"{int(o.exit_code if o.report is None else o.report.exit_code)} | "
                f"{'-' if o.expected_exit is None else o.expected_exit} | "
                f"{'not run' if o.report is None else f'{met}/{len(o.expectations)} met'} |")
        lines.append("")
    for o in outcomes:
        if o.report is None:
            lines += [f"#### {md(o.file)}", "", f"❌ not run: {md(o.error or '')}", ""]
            continue
        lines += report_lines(shown(o), "####" if len(outcomes) > 1 else "###")
        failed = [e for e in o.expectations if not e.passed]
        if o.expectations:
            lines += [f"expectations: {len(o.expectations) - len(failed)} of "
                      f"{len(o.expectations)} met" + ("" if not failed else ": " + md("; ".join(
                          f"{e.name} expected {e.expected}, got {e.actual}" for e in failed))),
                      ""]
    return "\n".join(lines) + "\n"


def probe_summary(report: ProbeReport) -> str:
    """The probe: verdict, how $share behaved per version, the strategy, the checks."""
    lines = [f"### aetherdiag probe: {md(report.target)}", "",
             _verdict(report.verdict, int(report.exit_code)), ""]
    for v, b in report.share_behaviour.items():
        lines.append(f"- MQTT {version_label(v)}: {md(b or 'not tested')}")
    g = report.strategy
    if g is not None:
        lines.append(f"- strategy: {md(g.label)} (confidence {percent(g.confidence)})")
    lines += ["", "| | check | result |", "|---|---|---|"]
    lines += [f"| {_STATUS[c.status]} | {md(c.title)} | {md(c.result)} |"
              for c in report.checks]
    return "\n".join(lines) + "\n"


def failure_summary(title: str, target: str, message: str, code: ExitCode,
                    verdict: str) -> str:
    return (f"### {md(title)}: {md(target)}\n\n{_verdict(verdict, int(code))}\n\n"
            f"error: {md(message)}\n")
