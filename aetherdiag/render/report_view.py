"""The ``workers``-style report as rich draws it, laid out for the width it is drawn at.

How this works: ``report_view`` is a ``blocks.Sized``: it learns its width only when rich
draws it, and then every part is built for that width:

- names (workers, pools, nodes) are never cut: their columns never wrap, and the tasks column
  gives way, its list summarised to fit (``fit.fit_tasks``). When the tasks column would get
  fewer than ``MIN_TASKS`` cells the table becomes one block per worker (``worker-1  3
  received, 3 unique, 0 repeats, 33%`` and its tasks below), name beside or above;
- key/value grids (setup, summary, per node) and the checks fold long values instead of
  cutting them, and become stacked lines when the value column would be narrower than
  ``MIN_VALUE``;
- summary lines listing tasks or workers are bounded whatever the run's size.

Nothing here decides a figure or a verdict: it only lays out what ``analysis`` reported.
Names, task ids, topics, details, notes and causes are text from outside: each reaches rich
inside a ``Text``, escaped with ``safe.terminal`` (lists before they are fitted to a width),
and the body is ``Guarded`` so the verdict line is the only line starting with ``verdict:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..analysis import Check, Report, WorkerRow
from ..analysis.ordering import publishers_line, summary_line
from .blocks import (
    MIN_VALUE,
    Guarded,
    Sized,
    boxed_width,
    pairs,
    stacked,
    value_width,
    verdict_line,
)
from .fit import duplicate_examples, fit_names, fit_tasks, lines_needed, share_text, some_names
from .output import latency_line
from .safe import terminal

MIN_TASKS = 24  # below this many cells for the tasks column, one block per worker
SUMMARY_LINES = 2  # lines a summary row's task or worker list may take


def report_view(report: Report) -> Sized:
    """The rich renderable for ``--format table``: the report laid out for its width."""
    return Sized(lambda width: parts(report, width))


def parts(report: Report, width: int) -> list[RenderableType]:
    """Every part of the report, top to bottom, for ``width`` cells: the body, then the
    verdict line (both ``Guarded``)."""
    out: list[RenderableType] = [Text(terminal(f"{report.title}: {report.target}"),
                                      style="bold")]
    if report.context:
        out.append(pairs(report.context, width, key_style="dim", value_style="dim"))
    out.append(workers_view(report, width))
    if len(report.nodes) > 1:
        out.append(nodes_view(report, width))
    out += [summary_view(report, width), checks_view(report.checks, width)]
    if report.timeline:
        tl = Table(title="timeline", title_justify="left", show_header=False)
        tl.add_column(overflow="fold")
        for line in report.timeline:
            tl.add_row(Text(terminal(line)))
        out.append(tl)
    if report.notes:
        out.append(Text("notes: " + "; ".join(terminal(n) for n in report.notes),
                        style="yellow"))
    if report.causes:
        out.append(Panel(Text("\n".join(f"• {terminal(c)}" for c in report.causes)),
                         title="likely causes", title_align="left", border_style="yellow"))
    return [Guarded(Group(*out)), verdict_line(report.verdict, report.exit_code)]


# -- workers -----------------------------------------------------------------------------------


def _columns(report: Report) -> list[tuple[str, list[Text], str]]:
    """The figure columns between the name and the tasks: header, one cell per worker,
    justification."""
    rows = report.workers
    cols: list[tuple[str, list[Text], str]] = []
    if len(report.nodes) > 1:
        cols.append(("node", [Text(str(w.node)) for w in rows], "right"))
    if len({w.pool for w in rows}) > 1:
        cols.append(("pool", [Text(terminal(w.pool)) for w in rows], "left"))
    cols += [
        ("received", [Text(str(w.received)) for w in rows], "right"),
        ("unique", [Text(str(w.unique), style="red" if _everything(report, w) else "")
                    for w in rows], "right"),
        ("repeats", [Text(str(w.repeats), style="red" if w.repeats else "") for w in rows],
         "right"),
        ("share", [Text(share_text(w.share)) for w in rows], "right"),
    ]
    if any(w.handled is not None for w in rows):
        cols.append(("handled", [Text(str(w.handled), style="red" if (
            w.never_handled or w.handled_twice) else "") for w in rows], "right"))
    return cols


def _everything(report: Report, w: WorkerRow) -> bool:
    """A worker of several that got every task: the pool did not share."""
    return w.unique == report.published and len(report.workers) > 1 and report.published > 0


def _ids(items: Sequence[str]) -> list[str]:
    """Task ids or names as the terminal shows them (``safe.terminal``), ready to be fitted."""
    return [terminal(i) for i in items]


def _tasks(report: Report, w: WorkerRow, width: int, lines: int) -> Text:
    return Text(fit_tasks(_ids(w.tasks), width, lines),
                style="red" if _everything(report, w) else "")


def workers_view(report: Report, width: int) -> RenderableType:
    """The per-worker table, or one block per worker when the tasks column would be narrow."""
    cols = _columns(report)
    names = _ids([w.name for w in report.workers])
    name_w = max([cell_len("worker"), *(cell_len(n) for n in names)])
    fixed = name_w + sum(max([cell_len(h), *(cell_len(c.plain) for c in cells)])
                         for h, cells, _ in cols)
    n = len(cols) + 2
    tasks_w = width - fixed - 3 * n - 1  # a box line before each column and at the end, padding
    if tasks_w < MIN_TASKS:
        return _blocks(report, width, name_w)
    lines = 1 if all(lines_needed(fit_tasks(_ids(w.tasks), tasks_w, 1), tasks_w) <= 1
                     for w in report.workers) else 2
    table = Table(expand=False, show_lines=False)
    table.add_column("worker", style="bold", no_wrap=True)
    for header, _, justify in cols:
        table.add_column(header, justify="right" if justify == "right" else "left",
                         no_wrap=True)
    table.add_column("tasks", overflow="fold", max_width=tasks_w)
    for i, (w, name) in enumerate(zip(report.workers, names, strict=True)):
        table.add_row(Text(name), *(cells[i] for _, cells, _ in cols),
                      _tasks(report, w, tasks_w, lines))
    return table


def _blocks(report: Report, width: int, name_w: int) -> RenderableType:
    """One block per worker: its figures, then its tasks; the name beside them when there is
    room, above them otherwise."""
    cols = _columns(report)
    beside = name_w + 2 + MIN_TASKS <= width
    tasks_w = width - name_w - 2 if beside else max(1, width - 2)
    details = []
    for i, w in enumerate(report.workers):
        items: list[Text] = []
        for header, cells, _ in cols:
            cell = cells[i]
            items.append(Text.assemble(f"{header} ", cell) if header in ("node", "pool")
                         else cell if header == "share" else Text.assemble(cell, f" {header}"))
        details.append(Text.assemble(_joined(items, tasks_w), "\n",
                                     _tasks(report, w, tasks_w, 2), overflow="fold"))
    names = _ids([w.name for w in report.workers])
    if beside:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, detail in zip(names, details, strict=True):
            grid.add_row(Text(name), detail)
        return grid
    return Group(*(part for name, detail in zip(names, details, strict=True) for part in (
        Text(name, style="bold", overflow="fold"), Padding(detail, (0, 0, 0, 2)))))


def _joined(items: Sequence[Text], width: int) -> Text:
    """``a, b, c`` with line breaks only between items (``3 received`` stays together)."""
    out, used = Text(overflow="fold"), 0
    for i, item in enumerate(items):
        size = item.cell_len + (1 if i < len(items) - 1 else 0)
        if used and used + 1 + size > width:
            out.append("\n")
            used = 0
        elif used:
            out.append(" ")
            used += 1
        out.append_text(item)
        if i < len(items) - 1:
            out.append(",")
        used += size
    return out


def nodes_view(report: Report, width: int) -> RenderableType:
    """Per-node figures: where tasks were published and where they went; a table when it
    fits, else one line per node."""
    heads = ("node", "endpoint", "workers", "published", "delivered", "distinct",
             "idle workers")
    rows = [(str(f.node), terminal(f.endpoint), str(f.workers), str(f.published),
             str(f.delivered), str(f.unique), terminal(some_names(f.idle_workers, 8)))
            for f in report.nodes]
    if boxed_width(heads, rows) <= width:
        nodes = Table(expand=False, show_lines=False)
        for name in heads:
            nodes.add_column(name, justify="left" if name in ("endpoint", "idle workers")
                             else "right", no_wrap=True)
        for r in rows:
            nodes.add_row(*(Text(c) for c in r[:-1]), Text(r[-1], style="red"))
        return nodes
    return pairs([(f"node {f.node}", Text.assemble(
        f"{r[1]}: {f.workers} workers, {f.published} published, {f.delivered} "
        f"delivered, {f.unique} distinct",
        ("; idle: " + r[-1], "red") if f.idle_workers else "")) for f, r in zip(
            report.nodes, rows, strict=True)], width)


# -- summary and checks ------------------------------------------------------------------------


def _count(n: int, extra: str = "") -> Text:
    return Text(f"{n}{extra if n else ''}", style="bold red" if n else "green")


def _ratio(value: float | None) -> str:
    return "∞" if value is None else f"{value:.2f}"


SUMMARY_KEYS = ("published", "delivered", "cross-worker duplicates", "same-worker repeats",
                "missing", "not sent", "unfinished", "connection lost", "steps not run",
                "foreign messages", "balance", "publishers", "ordering", "latency", "duration")


def summary_view(report: Report, width: int) -> RenderableType:
    """The run's totals, one line each; lists sized to the width and bounded at any size."""
    vw = value_width(SUMMARY_KEYS, width)
    lines = SUMMARY_LINES

    def listed(n: int, text: str) -> Text:
        return _count(n, ": " + text)

    b = report.balance
    examples = terminal(duplicate_examples(report.cross_worker))  # no width to fit: escaped after
    rows: list[tuple[str, str | Text]] = [
        ("published", str(report.published)),
        ("delivered", f"{report.delivered} ({report.unique_delivered} distinct tasks)"),
        ("cross-worker duplicates", _count(len(report.cross_worker), f" ({examples})")),
        ("same-worker repeats", _count(report.repeats, f" ({report.repeats_dup} DUP "
                                       f"redeliveries, {report.repeats_fresh} fresh copies)")),
        ("missing", listed(len(report.missing), fit_tasks(_ids(report.missing), vw - 6, lines,
                                                          8))),
    ]
    if report.unsent:
        rows.append(("not sent", listed(len(report.unsent), fit_tasks(
            _ids([t for t, _ in report.unsent]), vw - 6, lines, 8))))
    if report.unfinished:
        rows.append(("unfinished", listed(len(report.unfinished), fit_tasks(
            _ids([f"{t} ({w})" for w, t in report.unfinished]), vw - 6, lines, 8))))
    if report.connection_lost:
        rows.append(("connection lost", listed(len(report.connection_lost), fit_names(
            _ids(report.connection_lost), vw - 6, lines))))
    if report.steps_not_run:
        rows.append(("steps not run", listed(len(report.steps_not_run), fit_tasks(
            _ids(report.steps_not_run), vw - 6, lines, 4, noun="steps"))))
    if report.foreign:
        rows.append(("foreign messages", Text(
            f"{report.foreign} not published by this run (another publisher on these topics)",
            style="bold yellow")))
    if b.not_judged == "nothing delivered":
        balance = "- (nothing delivered)"
    else:
        balance = f"max/min {_ratio(b.max_over_min)}, max/mean {_ratio(b.max_over_mean)}"
        if b.p_value is not None:
            balance += f", chi-square p={b.p_value:.3g} vs an even split"
        if not b.judged:
            balance += f" (not judged: {b.not_judged or 'too few tasks per worker'})"
    rows.append(("balance", balance))
    for key, line in (("publishers", publishers_line(report)), ("ordering", summary_line(report))):
        if line is not None:
            rows.append((key, line))
    if report.latency_ms:
        rows.append(("latency", latency_line(report.latency_ms)))
    rows.append(("duration", f"{report.duration_s:.2f} s" + (
        " (interrupted)" if report.interrupted else
        " (timed out before settling)" if report.timed_out else "")))
    return pairs(rows, width)


def checks_view(checks: Sequence[Check], width: int) -> RenderableType:
    """One line per check: mark, name, detail; details fold, stacked under names when narrow."""
    def mark(c: Check) -> Text:
        return Text("✔", style="green") if c.passed else (
            Text("-", style="dim") if c.passed is None else Text("✘", style="bold red"))

    names = _ids([c.name for c in checks])
    details = _ids([c.detail for c in checks])
    name_w = max((cell_len(n) for n in names), default=0)
    if width - name_w - 3 >= MIN_VALUE:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for c, name, detail in zip(checks, names, details, strict=True):
            grid.add_row(mark(c), Text(name), Text(detail))
        return grid
    rows: list[Any] = [stacked(Text.assemble(mark(c), " ", (name, "bold")), Text(detail), width)
                       for c, name, detail in zip(checks, names, details, strict=True)]
    return Group(*rows)
