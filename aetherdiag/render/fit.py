"""Text sized to a width: lists that summarise instead of wrapping one word per line, and
shares precise enough to tell a large pool's workers apart.

How this works: a list is shown whole when it fits in ``lines`` lines of ``width`` cells
(wrapped at spaces, as rich wraps), otherwise as its first few items, the last and the count
(``task-1, task-4, … task-300 (100 tasks)``) or, for names, the first few and ``and N more``.
Everything here is a pure function of strings and numbers; the renderables that use them
live in ``report_view``. The full lists stay in the JSON report.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len

TASK_LIMIT = 12  # a table cell never lists more task ids than this
NAME_LIMIT = 3  # worker names shown per example before "and N more"
EXAMPLE_LIMIT = 2  # example tasks shown on a summary line


def lines_needed(text: str, width: int) -> int:
    """How many lines ``text`` takes in ``width`` cells, wrapped at spaces the way rich wraps
    (a word longer than the width folds over several lines)."""
    width = max(1, width)
    count, used = 1, 0
    for word in text.split(" "):
        size = cell_len(word)
        if used and used + 1 + size <= width:
            used += 1 + size
            continue
        if used:
            count, used = count + 1, 0
        folds, rest = divmod(size, width)
        if size > width:
            count += folds - (0 if rest else 1)
            used = rest or width
        else:
            used = size
    return count


def _best(full: str | None, candidates: list[str], width: int, lines: int) -> str:
    """``full`` when it fits, else the first candidate that fits (they come most items first),
    else the shortest of them all: too narrow a space still shows something whole."""
    if full is not None and lines_needed(full, width) <= lines:
        return full
    for text in candidates:
        if lines_needed(text, width) <= lines:
            return text
    return min([*candidates, *([full] if full is not None else [])], key=cell_len)


def fit_tasks(tasks: Sequence[str], width: int, lines: int = 1, limit: int = TASK_LIMIT,
              noun: str = "tasks") -> str:
    """``task-1, task-4, task-7`` whole when it fits (and has at most ``limit`` ids), else the
    first few, the last and the count: ``task-1, task-4, … task-300 (100 tasks)``."""
    n = len(tasks)
    if not n:
        return "-"
    full = ", ".join(tasks) if n <= limit else None
    candidates = [f"{', '.join(tasks[:k])}, … {tasks[-1]} ({n} {noun})"
                  for k in range(min(limit - 1, n - 2), 0, -1)]
    if full is not None and candidates and cell_len(candidates[-1]) >= cell_len(full):
        candidates = []  # a summary no shorter than the list itself says less for nothing
    return _best(full, candidates, width, lines)


def fit_names(names: Sequence[str], width: int, lines: int = 1, limit: int = 8) -> str:
    """``worker-1, worker-2`` whole when it fits (at most ``limit`` names), else the first
    few and the rest counted: ``worker-1, worker-2, worker-3 and 297 more``."""
    n = len(names)
    if not n:
        return "-"
    full = ", ".join(names) if n <= limit else None
    candidates = [f"{', '.join(names[:k])} and {n - k} more"
                  for k in range(min(limit, n - 1), 0, -1)]
    return _best(full, candidates, width, lines)


def some_names(names: Sequence[str], limit: int = NAME_LIMIT) -> str:
    """At most ``limit`` names, then ``and N more``: a line that stays short at any size."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


def duplicate_examples(cross_worker: Sequence[tuple[str, Sequence[str]]],
                       limit: int = EXAMPLE_LIMIT) -> str:
    """``task-1 -> worker-1, worker-2, worker-3 and 297 more; task-2 -> …; and 854 more
    tasks``: at most ``limit`` tasks, each with at most ``NAME_LIMIT`` workers."""
    text = "; ".join(f"{t} -> {some_names(ws)}" for t, ws in cross_worker[:limit])
    if len(cross_worker) > limit:
        text += f"; and {len(cross_worker) - limit} more tasks"
    return text


def share_text(share: float) -> str:
    """A worker's share of the pool to two significant figures, so a large pool's workers
    differ: ``33%``, ``4.2%``, ``0.37%``; ``<0.01%`` below that: never ``0%`` for a worker
    that got tasks."""
    if share <= 0:
        return "0%"
    if share < 0.0001:
        return "<0.01%"
    if share < 0.00995:
        return f"{share:.2%}"
    if share < 0.0995:
        return f"{share:.1%}"
    return f"{share:.0%}"
