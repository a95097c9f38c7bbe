"""Lists and reasons in plain words, as every cause and check writes them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence


def names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … +{len(items) - limit} more" if len(items) > limit else "")


def reasons(reasons: Sequence[str]) -> str:
    """``3 not sent: ...; 1 refused ...``: each distinct reason once, with its count."""
    counts: dict[str, int] = defaultdict(int)
    for reason in reasons:
        counts[reason] += 1
    return "; ".join(f"{n} {reason}" for reason, n in counts.items())
