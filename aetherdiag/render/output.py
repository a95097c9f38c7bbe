"""The shared output layer: formats, where output goes, stderr lines and the progress bar.

How this works: every command writes through ``write`` (table, JSON, JUnit, HTML or
Markdown to stdout or ``--output``), prints its error, warning and interrupted lines through
the functions here, and shows progress with ``progress``. The report renderers (``report``,
``replay``, ``probe``, ``html``, ``markdown``) only build text and rich renderables; nothing
else in the program prints. A message or label may name a value from outside (a file, a
client id, a topic): it is printed through ``safe.terminal``, one line with no control
character, and never handed to rich as markup.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import TextIO, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..exitcodes import Abort, ExitCode
from .safe import terminal

TASK_LIST_LIMIT = 12


class Format(StrEnum):
    table = "table"
    json = "json"
    junit = "junit"
    html = "html"  # one self-contained page (render.html)
    markdown = "markdown"  # a compact summary, e.g. for $GITHUB_STEP_SUMMARY (render.markdown)


def shorten_tasks(tasks: tuple[str, ...] | list[str], limit: int = TASK_LIST_LIMIT) -> str:
    """``task-1, task-4, task-7`` or the first ``limit`` ids and ``… +N more``."""
    if len(tasks) <= limit:
        return ", ".join(tasks) if tasks else "-"
    return ", ".join(tasks[:limit]) + f", … +{len(tasks) - limit} more"


def latency_line(lat: dict[str, float]) -> str:
    """``p50 2.3, p95 2.8, p99 3.1, p99.9 3.4, max 3.4 ms`` (the keys a report has: a saved
    one may lack the newer ones)."""
    text = ", ".join(f"{label} {lat[key]:.1f}" for key, label in (
        ("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))
        if key in lat)
    return f"{text} ms" if text else ""


def write(
    fmt: Format, output: TextIO | None, *, json_text: Callable[[], str],
    junit_text: Callable[[], str], draw: Callable[[Console], None], width: int = 120,
    html_text: Callable[[], str] | None = None, markdown_text: Callable[[], str] | None = None,
) -> None:
    """Write one of the formats to ``output`` (stdout by default).

    A table written to a file gets a fixed ``width`` and no colour codes. A renderer that
    gives no ``html_text`` / ``markdown_text`` does not offer that format: asking for it is
    a usage error (exit 2).
    """
    stream = output or sys.stdout
    if fmt is Format.json:
        stream.write(json_text())
    elif fmt is Format.junit:
        stream.write(junit_text())
    elif fmt in (Format.html, Format.markdown):
        text = html_text if fmt is Format.html else markdown_text
        if text is None:
            raise Abort(f"--format {fmt} is not available for this command", ExitCode.USAGE)
        stream.write(text())
    else:
        is_file = output is not None
        plain = is_file or not _isatty(stream)
        trimmed = _TrimmedLines(stream) if plain else None
        draw(Console(file=cast(TextIO, trimmed) if trimmed is not None else stream,
                     width=width if is_file else None,
                     force_terminal=False if is_file else None, soft_wrap=False))
        if trimmed is not None:
            trimmed.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _TrimmedLines(io.TextIOBase):
    """Text written to a file or a pipe without the spaces rich pads its grid cells with at
    the end of a line (``close`` writes a last line that has no newline)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        if self._pending:
            self._stream.write(self._pending.rstrip(" "))
            self._pending = ""
        self._stream.flush()


def error(message: str) -> None:
    """One line on stderr (``message`` escaped: ``safe.terminal``)."""
    print(f"aetherdiag: error: {terminal(message)}", file=sys.stderr)


def verdict_note(verdict: str, code: int, where: str) -> None:
    """The one line a report written to a file leaves on stderr: ``verdict: healthy (exit
    0); report in r.html`` (values escaped: ``safe.terminal``)."""
    print(f"verdict: {terminal(verdict)} (exit {code}); report in {terminal(where)}",
          file=sys.stderr)


def warning(message: str) -> None:
    """One line on stderr (``message`` escaped: ``safe.terminal``)."""
    print(f"aetherdiag: warning: {terminal(message)}", file=sys.stderr)


def hint(message: str) -> None:
    """One line on stderr that is not an error (``aetherdiag: hint: ...``); ``message``
    starts with ``hint:`` (escaped: ``safe.terminal``)."""
    print(f"aetherdiag: {terminal(message)}", file=sys.stderr)


def interrupted() -> None:
    """The one line an interrupted run prints on stderr (its partial report goes to stdout)."""
    print("aetherdiag: interrupted", file=sys.stderr)


@contextlib.contextmanager
def progress(total: int, label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, drawn only when ``enabled`` and stderr is a terminal.

    Yields ``update(published, delivered)``. ``label`` may be a file's name: it is shown as
    text (``safe.terminal``), never read as markup.
    """
    console = Console(file=sys.stderr)
    if not enabled or not console.is_terminal:
        yield lambda published, delivered: None
        return
    bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                   MofNCompleteColumn(),
                   TextColumn("{task.fields[delivered]} delivered", markup=False),
                   TimeElapsedColumn(), console=console, transient=True)
    with bar:
        task = bar.add_task(terminal(label), total=total, delivered=0)

        def update(published: int, delivered: int) -> None:
            bar.update(task, completed=published, delivered=delivered)

        yield update
