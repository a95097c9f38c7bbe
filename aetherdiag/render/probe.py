"""Every way a probe report leaves the program: rich table, JSON, JUnit XML; plus its spinner.

How this works: ``aetherdiag probe`` hands a frozen ``ProbeReport`` to ``render(report, fmt)``
(the command never imports rich). The JSON layout is the documented, stable schema
``aetherdiag.probe/1`` (see docs/probe.md); JUnit has one test case per check, "fail" rows as
failures and "skip" rows as skipped, "warn" rows pass with the warning in system-out.
With several endpoints the summary names each node and the JSON ``endpoints`` lists them
(node 1 first); the cross-node checks are ordinary rows. A probe that could not run at all
(unreachable broker, usage error) still leaves a document in the requested format:
``render_failure`` (same schema, no checks, an ``error`` and the exit code). The target,
endpoints, errors and check texts are escaped for each format (``safe``): in ``Text`` via
``safe.terminal`` for the table (the verdict line ``Guarded`` as the only one starting with
``verdict:``), ``safe.xml_document`` for JUnit.
"""

from __future__ import annotations

import contextlib
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..probe.fingerprint import percent
from ..probe.model import ProbeReport, Status, version_label
from .blocks import Guarded, Sized, pairs, stacked, verdict_line
from .output import Format, write
from .safe import terminal, xml_document

SCHEMA = "aetherdiag.probe/1"

_MARK: dict[Status, tuple[str, str]] = {
    Status.PASS: ("✔", "green"),
    Status.WARN: ("!", "bold yellow"),
    Status.FAIL: ("✘", "bold red"),
    Status.INFO: ("·", "cyan"),
    Status.SKIP: ("-", "dim"),
}


def to_dict(report: ProbeReport) -> dict[str, Any]:
    """The stable JSON document (schema ``aetherdiag.probe/1``)."""
    protocols: dict[str, Any] = {}
    for p in report.protocols:
        entry: dict[str, Any] = {
            "accepted": p.accepted, "connack": p.connack, "detail": p.detail,
            "connect_ms": round(p.connect_ms, 1),
        }
        if p.version == "5":
            entry["shared_subscription_available"] = p.shared_available
            entry["connack_properties"] = dict(p.properties)
        protocols[p.version] = entry
    g = report.strategy
    strategy: dict[str, Any]
    if g is None:
        reason = next((c.evidence for c in report.checks if c.id == "strategy"), "")
        strategy = {"name": None, "scope": None, "confidence": 0.0,
                    "evidence": f"not tested: {reason}", "counts": [], "messages": 0,
                    "scores": {}}
    else:
        strategy = {"name": g.name, "scope": g.scope, "confidence": g.confidence,
                    "evidence": g.evidence, "counts": list(g.counts), "messages": g.messages,
                    "scores": dict(g.scores)}
    return {
        "schema": SCHEMA,
        "target": report.target,
        "endpoints": list(report.endpoints),
        "run_id": report.run_id,
        "topic_prefix": report.topic_prefix,
        "protocols": protocols,
        "share_behaviour": dict(report.share_behaviour),
        "strategy": strategy,
        "exactly_once": report.exactly_once,
        "checks": [
            {"id": c.id, "title": c.title, "status": str(c.status), "result": c.result,
             "evidence": c.evidence, "spec": c.spec, "meaning": c.meaning, "data": dict(c.data)}
            for c in report.checks
        ],
        "verdict": report.verdict,
        "exit_code": int(report.exit_code),
        "duration_s": round(report.duration_s, 3),
        "notes": list(report.notes),
    }


def to_json(report: ProbeReport) -> str:
    return json.dumps(to_dict(report), indent=2, default=str) + "\n"


def to_junit(report: ProbeReport) -> str:
    checks = report.checks
    suite = ET.Element("testsuite", {
        "name": "aetherdiag probe", "tests": str(len(checks)),
        "failures": str(sum(1 for c in checks if c.status is Status.FAIL)), "errors": "0",
        "skipped": str(sum(1 for c in checks if c.status is Status.SKIP)),
        "time": f"{report.duration_s:.3f}",
    })
    props = ET.SubElement(suite, "properties")
    values = [("target", report.target)]
    values += [(f"node.{i}", url) for i, url in enumerate(report.endpoints, 1)
               if len(report.endpoints) > 1]
    values += [("verdict", report.verdict),
              ("exit_code", str(int(report.exit_code)))]
    values += [(f"share_behaviour.{v}", b or "-") for v, b in report.share_behaviour.items()]
    if report.strategy is not None:
        values.append(("strategy", f"{report.strategy.label} "
                                   f"({percent(report.strategy.confidence)})"))
    for key, value in values:
        ET.SubElement(props, "property", {"name": key, "value": value})
    for c in checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": "aetherdiag.probe", "name": f"{c.id}: {c.title}", "time": "0"})
        if c.status is Status.FAIL:
            failure = ET.SubElement(case, "failure", {"message": c.result, "type": "fail"})
            failure.text = "\n".join([c.evidence, f"spec: {c.spec}", f"meaning: {c.meaning}"])
        elif c.status is Status.SKIP:
            ET.SubElement(case, "skipped", {"message": c.evidence})
        else:
            out = ET.SubElement(case, "system-out")
            prefix = "WARNING: " if c.status is Status.WARN else ""
            out.text = f"{prefix}{c.result}: {c.evidence}"
    return xml_document(suite)


def failure_dict(target: str, message: str, code: int, duration_s: float = 0.0
                 ) -> dict[str, Any]:
    """The JSON document of a probe that could not run: the ``aetherdiag.probe/1`` keys, empty,
    plus ``error``."""
    return {
        "schema": SCHEMA, "target": target, "endpoints": [], "run_id": None,
        "topic_prefix": None,
        "protocols": {}, "share_behaviour": {},
        "strategy": {"name": None, "scope": None, "confidence": 0.0,
                     "evidence": f"not tested: {message}", "counts": [], "messages": 0,
                     "scores": {}},
        "exactly_once": False,
        "checks": [], "verdict": f"error: {message}", "exit_code": int(code),
        "duration_s": round(duration_s, 3), "notes": [], "error": message,
    }


def failure_junit(target: str, message: str, code: int, duration_s: float = 0.0) -> str:
    """One test case in error, so CI shows the failed probe instead of an empty suite."""
    suite = ET.Element("testsuite", {
        "name": "aetherdiag probe", "tests": "1", "failures": "0", "errors": "1",
        "skipped": "0", "time": f"{duration_s:.3f}"})
    props = ET.SubElement(suite, "properties")
    for key, value in (("target", target), ("verdict", f"error: {message}"),
                       ("exit_code", str(int(code)))):
        ET.SubElement(props, "property", {"name": key, "value": value})
    case = ET.SubElement(suite, "testcase", {
        "classname": "aetherdiag.probe", "name": "probe: run", "time": f"{duration_s:.3f}"})
    error_el = ET.SubElement(case, "error", {"message": message, "type": f"exit {int(code)}"})
    error_el.text = message
    return xml_document(suite)


def render_failure(target: str, message: str, code: int, fmt: Format,
                   output: TextIO | None = None, duration_s: float = 0.0) -> None:
    """Write the report of a probe that could not run (see ``failure_dict``)."""
    write(fmt, output,
          json_text=lambda: json.dumps(failure_dict(target, message, code, duration_s),
                                       indent=2) + "\n",
          junit_text=lambda: failure_junit(target, message, code, duration_s),
          draw=lambda console: console.print(
              Guarded(Text(f"target: {terminal(target)}")),
              verdict_line(f"error: {message}", code)),
          width=160)


TABLE_MIN = 100  # narrower than this, one block per check instead of the four-column table


def table(report: ProbeReport) -> Sized:
    """The rich renderable for ``--format table``, laid out for the width it is drawn at:
    the four-column checks table from ``TABLE_MIN`` cells, one block per check below it (a
    column a few cells wide would fold every word)."""
    return Sized(lambda width: _parts(report, width))


def _parts(report: ProbeReport, width: int) -> list[RenderableType]:
    summary: list[tuple[str, str | Text]] = [("target", report.target)]
    if len(report.endpoints) > 1:
        summary.append(("nodes", ", ".join(f"{i}: {url}"
                                           for i, url in enumerate(report.endpoints, 1))))
    summary.append(("protocols", ", ".join(
        f"MQTT {version_label(p.version)}: {'accepted' if p.accepted else 'refused'}"
        for p in report.protocols)))
    summary.append(("$share", ", ".join(f"MQTT {version_label(v)}: {b or 'not tested'}"
                                        for v, b in report.share_behaviour.items())))
    g = report.strategy
    if g is not None:
        summary.append(("strategy", f"{g.label} (confidence {percent(g.confidence)}; "
                        f"per member: {', '.join(str(c) for c in g.counts)})"))
    summary.append(("run", f"{report.run_id}, {report.duration_s:.1f} s"))

    parts: list[RenderableType] = [pairs(summary, width)]
    parts += [_checks_table(report)] if width >= TABLE_MIN else _check_blocks(report, width)
    if report.notes:
        parts.append(Text("notes: " + "; ".join(terminal(n) for n in report.notes),
                          style="yellow"))
    return [Guarded(Group(*parts)), verdict_line(report.verdict, report.exit_code)]


def _checks_table(report: ProbeReport) -> Table:
    rows = Table(title="checks", title_justify="left", show_lines=True, expand=True)
    rows.add_column("check", style="bold", ratio=2, overflow="fold")
    rows.add_column("result", ratio=4, overflow="fold")
    rows.add_column("what the spec says", ratio=3, overflow="fold")
    rows.add_column("what it means for a worker pool", ratio=3, overflow="fold")
    for c in report.checks:
        mark, style = _MARK[c.status]
        result = Text()
        result.append(f"{mark} {terminal(c.result)}", style=style)
        result.append(f"\n{terminal(c.evidence)}", style="dim")
        rows.add_row(Text(terminal(c.title)), result, Text(terminal(c.spec), style="dim"),
                     Text(terminal(c.meaning)))
    return rows


def _check_blocks(report: ProbeReport, width: int) -> list[RenderableType]:
    """Each check as ``✔ title  result`` with its evidence, the spec and what it means for a
    worker pool indented below."""
    out: list[RenderableType] = [Text("checks", style="italic")]
    for c in report.checks:
        mark, style = _MARK[c.status]
        head = Text.assemble((f"{mark} ", style), (terminal(c.title), "bold"))
        out.append(stacked(head, Text(terminal(c.result), style=style), width))
        lines = [Text(terminal(c.evidence), style="dim"),
                 Text(f"spec: {terminal(c.spec)}", style="dim"),
                 Text(f"meaning: {terminal(c.meaning)}")]
        body = Text("\n", overflow="fold").join(line for line in lines if line.plain.strip())
        out.append(Padding(body, (0, 0, 0, 2)))
    return out


def render(report: ProbeReport, fmt: Format, output: TextIO | None = None) -> None:
    """Write ``report`` in ``fmt`` to ``output`` (stdout by default)."""
    from . import html, markdown  # jinja2 loads only when a page is asked for

    write(fmt, output, json_text=lambda: to_json(report), junit_text=lambda: to_junit(report),
          draw=lambda console: console.print(table(report)), width=160,
          html_text=lambda: html.probe_page(report),
          markdown_text=lambda: markdown.probe_summary(report))


@contextlib.contextmanager
def status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the current probe step (only on a terminal)."""
    console = Console(file=sys.stderr)
    if not enabled or not console.is_terminal:
        yield lambda _text: None
        return
    with console.status(Text("probing")) as spinner:
        yield lambda text: spinner.update(Text(f"probing: {terminal(text)}"))


