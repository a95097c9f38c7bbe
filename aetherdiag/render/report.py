"""A ``workers``-style Report as a rich table (laid out by ``report_view``), JSON and JUnit
XML (and a failed run's document); HTML and Markdown come from ``html`` and ``markdown``.

How this works: commands hand a frozen ``Report`` to ``render(report, fmt)`` and never import
rich themselves; ``output.write`` puts the chosen format where it belongs. The JSON layout is
the documented, stable schema (``SCHEMA``); JUnit has one test case per check so CI systems
show the verdict natively. Text from outside is escaped for each format (``safe``): JSON
keeps it raw, JUnit goes through ``safe.xml_document``, the table through ``safe.terminal``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, TextIO

from ..analysis import Report
from ..exitcodes import ExitCode
from .blocks import Sized
from .output import Format, shorten_tasks, write
from .report_view import report_view
from .safe import terminal, xml_document

SCHEMA = "aetherdiag.report/1"


UNSENT_EXAMPLES = 10  # task ids listed per reason in a JSON report's "unsent" (a record has all)


def unsent_groups(unsent: Sequence[tuple[str, str]]) -> list[dict[str, object]]:
    """``unsent`` one entry per reason, in order of first appearance: its count and the first
    ``UNSENT_EXAMPLES`` task ids (an interrupted run of 100,000 tasks has one reason and
    99,000 ids; the run's ``--record`` keeps every one)."""
    groups: dict[str, dict[str, Any]] = {}
    for task, reason in unsent:
        group = groups.setdefault(reason, {"reason": reason, "count": 0, "tasks": []})
        group["count"] += 1
        if len(group["tasks"]) < UNSENT_EXAMPLES:
            group["tasks"].append(task)
    return list(groups.values())


def to_dict(report: Report) -> dict[str, Any]:
    """The stable JSON document (schema ``aetherdiag.report/1``)."""
    b = report.balance
    return {
        "schema": SCHEMA,
        "title": report.title,
        "target": report.target,
        "run": dict(report.context),
        "published": report.published,
        "delivered": report.delivered,
        "unique_delivered": report.unique_delivered,
        "missing": list(report.missing),
        "lost_in_flight": list(report.lost_in_flight),
        "duplicates": {
            "cross_worker": len(report.cross_worker),
            "cross_worker_tasks": [
                {"task": t, "workers": list(ws)} for t, ws in report.cross_worker
            ],
            "repeats": report.repeats,
            "repeats_dup": report.repeats_dup,
            "repeats_fresh": report.repeats_fresh,
            "allowed_redeliveries": report.allowed_redeliveries,
        },
        "balance": {
            "judged": b.judged,
            "max_over_min": b.max_over_min,
            "max_over_mean": b.max_over_mean,
            "chi_square": b.chi_square,
            "p_value": b.p_value,
            "idle_workers": list(b.idle_workers),
            "not_judged": b.not_judged,
        },
        "workers": [
            {
                "name": w.name,
                "pool": w.pool,
                "received": w.received,
                "unique": w.unique,
                "repeats": w.repeats,
                "dup_repeats": w.dup_repeats,
                "share": round(w.share, 4),
                "tasks": list(w.tasks),
                "subscriptions": list(w.subscriptions),
                "handled": w.handled,
                "handled_twice": list(w.handled_twice),
                "never_handled": list(w.never_handled),
                "node": w.node,
                "shared": w.shared,
            }
            for w in report.workers
        ],
        "nodes": [
            {"node": f.node, "endpoint": f.endpoint, "workers": f.workers,
             "published": f.published, "delivered": f.delivered, "unique": f.unique,
             "idle_workers": list(f.idle_workers)}
            for f in report.nodes
        ],
        "checks": [
            {"name": c.name, "passed": c.passed, "detail": c.detail, "exit_code": int(c.code)}
            for c in report.checks
        ],
        "causes": list(report.causes),
        "verdict": report.verdict,
        "exit_code": int(report.exit_code),
        "duration_s": round(report.duration_s, 3),
        "settled": report.settled,
        "latency_ms": report.latency_ms,
        "latency_clock": report.latency_clock or None,
        "latency_histogram": [{"upto_ms": b.upto_ms, "count": b.count}
                              for b in report.latency_histogram],
        "activity": _activity_dict(report),
        "publishers": [
            {"name": p.name, "sent": p.sent, "delivered": p.delivered,
             "workers": dict(p.workers), "first_worker": p.first_worker}
            for p in report.publishers
        ],
        "ordering": _ordering_dict(report),
        "publish_failures": list(report.publish_failures),
        "foreign_messages": report.foreign,
        "notes": list(report.notes),
        "timeline": list(report.timeline),
        "emulator": report.emulator_stats,
        "unsent": unsent_groups(report.unsent),
        "unfinished": [{"task": t, "worker": w} for w, t in report.unfinished],
        "connection_lost": list(report.connection_lost),
        "steps_not_run": list(report.steps_not_run),
        "timed_out": report.timed_out,
        "interrupted": report.interrupted,
        "error": None,
    }


def _activity_dict(report: Report) -> dict[str, Any] | None:
    a = report.activity
    if a is None:
        return None
    return {"bucket_s": a.bucket_s, "hidden": a.hidden, "rows": [
        {"name": r.name, "workers": r.workers, "deliveries": list(r.deliveries),
         "duplicates": list(r.duplicates), "redeliveries": list(r.redeliveries)}
        for r in a.rows]}


def _ordering_dict(report: Report) -> dict[str, Any] | None:
    o = report.ordering
    if o is None:
        return None
    return {"judged": o.judged, "scope": o.scope, "basis": o.basis,
            "out_of_order": o.out_of_order, "counted": o.counted, "left_out": o.left_out,
            "by_worker": dict(o.by_worker), "by_publisher": dict(o.by_publisher),
            "by_key": dict(o.by_key), "examples": list(o.examples)}


def failure_dict(title: str, target: str, message: str, code: ExitCode) -> dict[str, Any]:
    """The JSON document of a run that could not produce a report (same schema, ``error``
    set, no figures)."""
    return {"schema": SCHEMA, "title": title, "target": target, "error": message,
            "verdict": FAILURE_VERDICTS.get(code, code.name.lower()), "exit_code": int(code)}


FAILURE_VERDICTS = {ExitCode.USAGE: "usage error", ExitCode.UNREACHABLE: "broker unreachable",
                    ExitCode.INTERNAL: "internal error", ExitCode.INTERRUPTED: "interrupted"}


def failure_suite(title: str, target: str, message: str, code: ExitCode) -> ET.Element:
    """A ``<testsuite>`` with one errored test case for a run that could not happen."""
    suite = ET.Element("testsuite", {"name": title, "tests": "1", "failures": "0",
                                     "errors": "1", "skipped": "0", "time": "0"})
    props = ET.SubElement(suite, "properties")
    for key, value in (("target", target), ("exit_code", str(int(code))),
                       ("verdict", FAILURE_VERDICTS.get(code, code.name.lower()))):
        ET.SubElement(props, "property", {"name": key, "value": value})
    case = ET.SubElement(suite, "testcase", {"classname": title.replace(" ", "."),
                                             "name": "run", "time": "0"})
    error = ET.SubElement(case, "error", {"message": message, "type": f"exit-{int(code)}"})
    error.text = message
    return suite


def render_failure(title: str, target: str, message: str, code: ExitCode, fmt: Format,
                   output: TextIO | None = None) -> None:
    """Write the report of a failed run (JSON/JUnit carry the error and exit code; a table
    has nothing to add to the error line on stderr)."""
    if fmt is Format.table:
        if output is not None:
            output.write(f"{terminal(title)}: {terminal(target)}\nerror: {terminal(message)}\n"
                         f"verdict: {FAILURE_VERDICTS.get(code, code.name.lower())} "
                         f"(exit {int(code)})\n")
        return

    def junit() -> str:
        return xml_document(failure_suite(title, target, message, code))

    from . import html, markdown

    verdict = FAILURE_VERDICTS.get(code, code.name.lower())
    write(fmt, output, json_text=lambda: json.dumps(
        failure_dict(title, target, message, code), indent=2) + "\n",
        junit_text=junit, draw=lambda console: None,
        html_text=lambda: html.failure_page(title, target, message, code, verdict),
        markdown_text=lambda: markdown.failure_summary(title, target, message, code, verdict))


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"


def to_junit(report: Report) -> str:
    return xml_document(junit_suite(report))


def junit_suite(report: Report) -> ET.Element:
    """The ``<testsuite>`` element: one test case per check (``replay`` nests several)."""
    failures = sum(1 for c in report.checks if c.passed is False)
    skipped = sum(1 for c in report.checks if c.passed is None)
    suite = ET.Element("testsuite", {
        "name": report.title, "tests": str(len(report.checks)), "failures": str(failures),
        "errors": "0", "skipped": str(skipped), "time": f"{report.duration_s:.3f}",
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (("target", report.target), ("verdict", report.verdict),
                       ("exit_code", str(int(report.exit_code))),
                       ("published", str(report.published)),
                       ("delivered", str(report.delivered))):
        ET.SubElement(props, "property", {"name": key, "value": value})
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": report.title.replace(" ", "."), "name": check.name,
            "time": "0",
        })
        if check.passed is False:
            failure = ET.SubElement(case, "failure", {
                "message": check.detail, "type": f"exit-{int(check.code)}",
            })
            failure.text = "\n".join([check.detail, *report.causes])
        elif check.passed is None:
            ET.SubElement(case, "skipped", {"message": check.detail})
    several = len(report.nodes) > 1
    for f in report.nodes:
        ET.SubElement(props, "property", {"name": f"node{f.node}", "value": (
            f"{f.endpoint}: {f.workers} workers, {f.published} published, "
            f"{f.delivered} delivered ({f.unique} distinct)")})
    out = ET.SubElement(suite, "system-out")
    out.text = "\n".join(
        f"{w.name}{f' (node {w.node})' if several else ''}: {w.unique} unique / "
        f"{w.received} received: {shorten_tasks(w.tasks, 50)}"
        for w in report.workers
    )
    return suite


def table(report: Report) -> Sized:
    """The rich renderable for ``--format table``, laid out for the width it is drawn at
    (``report_view``)."""
    return report_view(report)


def render(report: Report, fmt: Format, output: TextIO | None = None) -> None:
    """Write ``report`` in ``fmt`` to ``output`` (stdout by default)."""
    from . import html, markdown  # loaded for these formats only (jinja2)

    write(fmt, output, json_text=lambda: to_json(report), junit_text=lambda: to_junit(report),
          draw=lambda console: console.print(table(report)),
          html_text=lambda: html.report_page(report),
          markdown_text=lambda: markdown.report_summary(report))


