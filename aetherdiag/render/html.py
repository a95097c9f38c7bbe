"""``--format html``: one self-contained page (inline CSS, inline SVG, no script, no network).

How this works: the functions here turn the frozen values (``Report``, replay outcomes,
``ProbeReport``) into plain view dicts, the charts into inline SVG (``charts``), and hand both
to the Jinja2 templates in ``templates/`` (autoescaped). The page carries a
Content-Security-Policy that forbids every load, so even a task id that looks like a URL
never makes the browser fetch anything. Sizes stay bounded whatever the run: the analysis
caps the timeline (``analysis.activity``), lists are cut to their first entries with "and N
more", bars become one path per series past ``charts.BAR_LIMIT`` workers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jinja2

from .. import __version__
from ..analysis import Report
from ..analysis.ordering import publishers_line
from ..exitcodes import ExitCode
from ..probe.fingerprint import percent
from ..probe.model import DESCRIBE, ProbeReport, Status, version_label
from ..replay.outcome import ReplayOutcome, worst_exit_code
from . import charts
from .fit import share_text
from .output import latency_line, shorten_tasks

WORKER_ROWS = 50  # rows of the workers table; the rest are counted
CROSS_ROWS = 20  # tasks listed as reaching several workers
_LATENCY_KEYS = (("count", "copies"), ("min", "min"), ("mean", "mean"), ("p50", "p50"),
                 ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p99_9", "p99.9"),
                 ("max", "max"))


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("aetherdiag.render", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _page(title: str, sections: list[dict[str, Any]], subtitle: str = "",
          summary: list[dict[str, Any]] | None = None,
          overall: dict[str, str] | None = None) -> str:
    return _env().get_template("page.html.j2").render(
        title=title, subtitle=subtitle, sections=sections, summary=summary or [],
        overall=overall or {}, version=__version__, generated="")


def _mark(passed: bool | None) -> tuple[str, str]:
    return ("ok", "✔") if passed else (("skip", "-") if passed is None else ("bad", "✘"))


def report_view(report: Report, *, anchor: str = "run", heading: str = "",
                description: str = "", markers: Sequence[tuple[float, str]] = (),
                steps: Sequence[str] = (), expectation: dict[str, str] | None = None,
                expectations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The template's view of one workers-style report."""
    rows = report.workers
    pool_sizes: dict[str, int] = {}
    for w in rows:
        pool_sizes[w.pool] = pool_sizes.get(w.pool, 0) + 1
    even = (report.unique_delivered / max(pool_sizes.values())) if rows else None
    bars = [charts.Bar(name=w.name, exclusive=w.unique - w.shared, shared=w.shared,
                       repeats=w.repeats) for w in rows]
    flagged = sorted(range(len(rows)), key=lambda i: (-(rows[i].shared + rows[i].repeats), i))
    table_rows = sorted(flagged[:WORKER_ROWS]) if len(rows) > WORKER_ROWS else range(len(rows))
    b = report.balance
    figures = [
        {"label": "published", "value": report.published, "bad": False},
        {"label": "delivered", "value": report.delivered, "bad": False},
        {"label": "cross-worker duplicates", "value": len(report.cross_worker),
         "bad": bool(report.cross_worker)},
        {"label": "same-worker repeats", "value": report.repeats, "bad": bool(report.repeats)},
        {"label": "missing", "value": len(report.missing), "bad": bool(report.missing)},
        {"label": "max/min", "value": "∞" if b.max_over_min is None
         else f"{b.max_over_min:.2f}", "bad": b.max_over_min is None and b.judged},
        {"label": "duration", "value": f"{report.duration_s:.2f} s", "bad": report.timed_out},
    ]
    if report.latency_ms.get("p99") is not None:
        figures.append({"label": "latency p99", "value": f"{report.latency_ms['p99']:.1f} ms",
                        "bad": False})
    activity = report.activity
    view: dict[str, Any] = {
        "kind": "report", "anchor": anchor, "heading": heading, "description": description,
        "error": None, "target": f"{report.title}: {report.target}" if report.title
        else report.target,
        "setup": list(report.context), "verdict": report.verdict,
        "verdict_cls": "ok" if report.exit_code == ExitCode.OK else "bad",
        "exit_code": int(report.exit_code), "expectation": expectation,
        "figures": figures,
        "checks": [{"cls": _mark(c.passed)[0], "mark": _mark(c.passed)[1], "name": c.name,
                    "detail": c.detail} for c in report.checks],
        "causes": list(report.causes), "notes": list(report.notes),
        "publishers": publishers_line(report) or "",
        "bars": charts.worker_bars(bars, even),
        "even_text": "-" if even is None else f"{even:.1f} tasks per worker",
        "timeline": charts.timeline(activity, markers) if activity else "",
        "markers": bool(markers),
        "bucket_text": _bucket(activity.bucket_s) if activity else "",
        "hidden": activity.hidden if activity else 0,
        "shown_rows": len(activity.rows) - 1 if activity else 0,
        "steps": list(steps),
        "latency": [(label, _latency_value(key, report.latency_ms[key]))
                    for key, label in _LATENCY_KEYS if key in report.latency_ms],
        "latency_chart": charts.latency_histogram(report.latency_histogram, report.latency_ms),
        "latency_clock": report.latency_clock or "as recorded",
        "latency_line": latency_line(report.latency_ms),
        "nodes": list(report.nodes) if len(report.nodes) > 1 else [],
        "show_node": len(report.nodes) > 1, "show_pool": len(pool_sizes) > 1,
        "workers": [{"name": rows[i].name, "node": rows[i].node, "pool": rows[i].pool,
                     "received": rows[i].received, "unique": rows[i].unique,
                     "shared": rows[i].shared, "repeats": rows[i].repeats,
                     "share": share_text(rows[i].share), "tasks": shorten_tasks(rows[i].tasks, 8)}
                    for i in table_rows],
        "more_workers": max(0, len(rows) - WORKER_ROWS),
        "cross": [f"{t} -> {', '.join(ws[:6])}" + (f" (+{len(ws) - 6} more)"
                                                    if len(ws) > 6 else "")
                  for t, ws in report.cross_worker[:CROSS_ROWS]],
        "more_cross": max(0, len(report.cross_worker) - CROSS_ROWS),
        "missing": shorten_tasks(report.missing, 30) if report.missing else "",
        "expectations": list(expectations),
    }
    return view


def _bucket(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def _latency_value(key: str, value: float) -> str:
    return f"{int(value)}" if key == "count" else f"{value:.2f} ms"


def report_page(report: Report) -> str:
    """A workers-style report (``workers``, ``watch``) as one page."""
    return _page(report.title or "aetherdiag report", [report_view(report)])


def replay_page(outcomes: Sequence[ReplayOutcome],
                shown: Callable[[ReplayOutcome], Report]) -> str:
    """Several replay files as one page: a summary, then a section each. ``shown`` is how
    ``render.replay`` displays one outcome's report (title, setup, timeline, expectations
    merged in as checks)."""
    sections: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for n, o in enumerate(outcomes, 1):
        anchor = f"file-{n}"
        met = sum(1 for e in o.expectations if e.passed)
        summary.append({
            "anchor": anchor, "file": o.file,
            "verdict": o.report.verdict if o.report else "error",
            "cls": "ok" if o.report is not None and o.report.exit_code == ExitCode.OK else "bad",
            "exit": int(o.exit_code if o.report is None else o.report.exit_code),
            "expected": "-" if o.expected_exit is None else o.expected_exit,
            "expectations": "not run" if o.report is None
            else f"{met}/{len(o.expectations)} met"})
        if o.report is None:
            sections.append({"kind": "report", "anchor": anchor, "heading": o.file,
                             "description": o.description, "error": o.error,
                             "exit_code": int(o.exit_code)})
            continue
        failed = [e for e in o.expectations if not e.passed]
        expectation = ({"cls": "skip", "text": "the file has no expect block"}
                       if not o.expectations else
                       {"cls": "ok", "text": f"expectations: all {len(o.expectations)} met"}
                       if not failed else
                       {"cls": "bad", "text": f"expectations: {len(failed)} of "
                        f"{len(o.expectations)} NOT met"})
        sections.append(report_view(
            shown(o), anchor=anchor, heading=o.file, description=o.description,
            markers=[(s.started, s.text) for s in o.steps if s.index is not None],
            steps=[s.text for s in o.steps], expectation=expectation,
            expectations=[{"name": e.name, "expected": e.expected, "actual": e.actual,
                           "passed": e.passed} for e in o.expectations]))
    code = worst_exit_code(o.exit_code for o in outcomes)
    overall = {"cls": "ok" if code == ExitCode.OK else "bad",
               "text": f"exit {int(code)}: the lowest non-zero code of the files"}
    return _page("aetherdiag replay", sections, subtitle=f"{len(outcomes)} scenario file(s)",
                 summary=summary if len(outcomes) > 1 else None, overall=overall)


def probe_view(report: ProbeReport) -> dict[str, Any]:
    """The template's view of a probe report: the capability matrix, the strategy scores."""
    versions = [p.version for p in report.protocols]
    by_version = {p.version: p for p in report.protocols}

    def cell(text: str, cls: str) -> dict[str, str]:
        return {"text": text, "cls": cls}

    matrix = [
        {"label": "connect accepted", "cells": [
            cell("yes" if by_version[v].accepted else f"no ({by_version[v].detail})",
                 "pass" if by_version[v].accepted else "fail") for v in versions]},
        {"label": "CONNACK", "cells": [
            cell("-" if by_version[v].connack is None else f"0x{by_version[v].connack:02X}",
                 "info") for v in versions]},
        {"label": "shared subscriptions available", "cells": [
            cell("-" if v != "5" else ("yes" if by_version[v].shared_available is not False
                                       else "no"), "info") for v in versions]},
        {"label": "$share behaviour", "cells": [
            cell(DESCRIBE.get(b, b) if (b := report.share_behaviour.get(v)) else "not tested",
                 "pass" if b == "balanced" else ("skip" if b is None else "fail"))
            for v in versions]},
    ]
    g = report.strategy
    ranked = sorted((g.scores if g else {}).items(), key=lambda kv: -kv[1])
    members = ""
    if g is not None and g.counts:
        mean = sum(g.counts) / len(g.counts)
        members = charts.worker_bars([charts.Bar(name=f"member {i}", exclusive=c, shared=0,
                                                 repeats=0)
                                      for i, c in enumerate(g.counts, 1)], mean)
    missing = next((c.evidence for c in report.checks if c.id == "strategy"), "not tested")
    return {
        "kind": "probe", "anchor": "probe", "target": report.target,
        "topic_prefix": report.topic_prefix, "run_id": report.run_id,
        "duration": f"{report.duration_s:.2f} s", "verdict": report.verdict,
        "verdict_cls": "ok" if report.exit_code == ExitCode.OK else "bad",
        "exit_code": int(report.exit_code),
        "versions": [version_label(v) for v in versions], "matrix": matrix,
        "strategy": None if g is None else {"label": g.label, "confidence":
                                            percent(g.confidence), "evidence": g.evidence},
        "strategy_missing": f"strategy not tested: {missing}",
        "scores": charts.score_bars(ranked, g.name if g else None), "members": members,
        "checks": [{"status": str(c.status), "title": c.title, "result": c.result,
                    "evidence": c.evidence, "spec": c.spec, "meaning": c.meaning}
                   for c in report.checks if c.status is not Status.INFO or c.result],
        "notes": list(report.notes),
    }


def probe_page(report: ProbeReport) -> str:
    """``aetherdiag probe`` as one page."""
    return _page("aetherdiag probe", [probe_view(report)])


def failure_page(title: str, target: str, message: str, code: ExitCode, verdict: str) -> str:
    """A run that could not produce a report: the error and the exit code."""
    return _page(title, [{"kind": "report", "anchor": "run", "heading": target,
                          "description": verdict, "error": message,
                          "exit_code": int(code)}])
