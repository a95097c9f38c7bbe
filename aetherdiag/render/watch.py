"""The live view of ``aetherdiag watch``: a rich table on stderr, refreshed in place.

How this works: ``live(enabled, title)`` yields ``update(snapshot)``; with a terminal on
stderr (and without ``--quiet``) each call redraws tasks seen, the per-worker counts, the
findings so far, the forgotten count, the retained messages ignored and the elapsed time, with
the last few findings under it as they happen. It is transient: the final report
(``render.report``) replaces it. Without a terminal it draws nothing at all, so logs and pipes
stay quiet.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..watch.tracker import Snapshot
from .safe import terminal

_LABELS = {"multi": "processed twice", "repeat": "same worker again", "stalled": "stalled",
           "resent": "resent", "collision": "tid collision"}


def view(snapshot: Snapshot, title: str) -> Group:
    """The renderable of one snapshot. Client ids, task ids and finding texts come off the
    wire: each is shown as ``Text`` escaped with ``safe.terminal``, never as markup."""
    head = Text(f"{terminal(title)}  ", style="bold")
    head.append(f"{snapshot.elapsed:.0f} s, {snapshot.tasks} tasks", style="")
    if snapshot.forgotten:
        head.append(f", {snapshot.forgotten} forgotten", style="dim")
    if snapshot.unparsed:
        head.append(f", {snapshot.unparsed} unparsed", style="yellow")
    if snapshot.retained:
        head.append(f", {snapshot.retained} retained ignored", style="dim")
    workers = Table(show_header=True, expand=False, box=None, padding=(0, 2))
    workers.add_column("worker", style="bold")
    workers.add_column("tasks", justify="right")
    for name, count in snapshot.workers:
        workers.add_row(Text(terminal(name)), Text(str(count)))
    if not snapshot.workers:
        workers.add_row(Text("(no answers yet)", style="dim"), "")
    counts = Text()
    for kind, n in snapshot.counts:
        counts.append(f"{_LABELS[kind]} {n}   ", style="bold red" if n else "green")
    parts: list[Text | Table] = [head, workers, counts]
    for finding in snapshot.recent:
        parts.append(Text(f"{finding.at:8.1f} s  {_LABELS[finding.kind]:<18} "
                          f"{terminal(finding.tid)}: {terminal(finding.text)}", style="red",
                          overflow="ellipsis", no_wrap=True))
    return Group(*parts)


@contextlib.contextmanager
def live(enabled: bool, title: str) -> Iterator[Callable[[Snapshot], None]]:
    """``update(snapshot)``: drawn only when ``enabled`` and stderr is a terminal."""
    console = Console(file=sys.stderr)
    if not enabled or not console.is_terminal:
        yield lambda snapshot: None
        return
    with Live(console=console, transient=True, auto_refresh=False) as display:

        def update(snapshot: Snapshot) -> None:
            display.update(view(snapshot, title), refresh=True)

        yield update
