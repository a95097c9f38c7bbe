"""Renderables laid out for the width rich draws them at, shared by the report, replay and
probe tables.

How this works: ``Sized`` learns the width only when rich draws it (``__rich_console__``)
and hands it to a builder, which picks a layout for it. ``pairs`` lays out keys and values as
a grid whose values fold (never cut with "…"), or as stacked lines (``key  value``, or the
value indented under its key) when the values would get fewer than ``MIN_VALUE`` cells.
``boxed_width`` is the width of a rich ``Table`` whose columns do not wrap, so a builder can
tell whether a table fits before choosing it. ``Guarded`` keeps a report's verdict line the
only line that starts with ``verdict:``, whatever its values hold.

Values from outside (names, topics, task ids, setup values) reach rich here only inside
``Text`` objects, escaped with ``safe.terminal``: ``pairs`` escapes its keys and its string
values itself; a ``Text`` value a caller builds is escaped by that caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from .safe import terminal

MIN_VALUE = 24  # below this many cells for a grid's values, stacked lines
VERDICT = "verdict:"  # how a report's verdict line starts; no other line may


class Sized:
    """A renderable built for the width it is drawn at: ``build(width)`` gives its parts."""

    def __init__(self, build: Callable[[int], Sequence[RenderableType]]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.build(max(1, options.max_width))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(20, options.max_width), options.max_width)


class Guarded:
    """``renderable`` drawn so that none of its lines starts with ``verdict:`` (such a line is
    moved one cell to the right; what no longer fits goes on a line of its own), except its
    first line when ``first``: a name at the start of a line, or a long value wrapped at the
    space before the word, can never pass for the report's verdict line."""

    def __init__(self, renderable: RenderableType, *, first: bool = False) -> None:
        self.renderable = renderable
        self.first = first

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        for i, line in enumerate(console.render_lines(self.renderable, options, pad=False)):
            text = "".join(s.text for s in line if not s.control)
            if not text.startswith(VERDICT) or (self.first and i == 0):
                yield from line
                yield Segment.line()
                continue
            moved = [Segment(" "), *line]
            total = Segment.get_line_length(moved)
            for part in (Segment.divide(moved, [width, total]) if total > width else [moved]):
                yield from part
                yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


def verdict_line(verdict: str, code: int) -> Guarded:
    """``verdict: healthy (exit 0)``, green when the code is 0: the one line of a report that
    starts with ``verdict:`` (``verdict`` escaped; a long one folds onto lines that do not)."""
    style = "bold green" if code == 0 else "bold red"
    return Guarded(Text(f"{VERDICT} {terminal(verdict)} (exit {int(code)})", style=style),
                   first=True)


def boxed_width(heads: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """The width of a default rich ``Table`` (box, padding 1) whose columns do not wrap."""
    widths = [cell_len(h) for h in heads]
    for row in rows:
        widths = [max(w, cell_len(c)) for w, c in zip(widths, row, strict=True)]
    return sum(widths) + 3 * len(heads) + 1


def room(keys: Iterable[str], width: int, gap: int = 2) -> int:
    """The cells a value gets beside its key in a grid."""
    return width - max((cell_len(k) for k in keys), default=0) - gap


def value_width(keys: Iterable[str], width: int, gap: int = 2) -> int:
    """The cells a value gets beside its key in a grid, or under it when stacked."""
    cells = room(keys, width, gap)
    return cells if cells >= MIN_VALUE else max(1, width - 2)


def stacked(head: Text, value: Text, width: int, gap: int = 2) -> RenderableType:
    """``head  value`` on one line when it fits, else the value indented under its head."""
    if cell_len(head.plain) + gap + cell_len(value.plain) <= width and "\n" not in value.plain:
        return Text.assemble(head, " " * gap, value, overflow="fold")
    head.overflow = value.overflow = "fold"
    return Group(head, Padding(value, (0, 0, 0, 2)))


def break_paths(text: str, width: int) -> str:
    """``text`` with each word longer than ``width`` that holds ``/`` (a topic, a filter, a
    path) broken into lines after a ``/``, so it folds at a level, not inside one; a level
    longer than the width still folds where it must."""
    words = []
    for word in text.split(" "):
        if cell_len(word) <= width or "/" not in word:
            words.append(word)
            continue
        lines, line = [], ""
        for level in re.findall(r"[^/]*/|[^/]+$", word):
            if line and cell_len(line + level) > width:
                lines.append(line)
                line = level
            else:
                line += level
        words.append("\n".join([*lines, line]))
    return " ".join(words)


def pairs(rows: Sequence[tuple[str, str | Text]], width: int, key_style: str = "bold",
          value_style: str = "") -> RenderableType:
    """Keys and values: a grid whose values fold (never cut), or stacked lines when narrow;
    topics and paths fold after a ``/`` (``break_paths``). Keys and string values are text
    from outside as far as this knows: escaped with ``safe.terminal``; a ``Text`` value is
    drawn as given."""
    keys = [terminal(k) for k, _ in rows]
    cells = value_width(keys, width)
    values = [v if isinstance(v, Text) else Text(break_paths(terminal(v), cells),
                                                 style=value_style)
              for _, v in rows]
    if room(keys, width) >= MIN_VALUE:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style=key_style, no_wrap=True)
        grid.add_column(overflow="fold")
        for key, value in zip(keys, values, strict=True):
            grid.add_row(Text(key), value)
        return grid
    return Group(*(stacked(Text(key, style=key_style), value, width)
                   for key, value in zip(keys, values, strict=True)))
