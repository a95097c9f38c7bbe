"""``--deny-subscribe FILTER``: subscriptions an access-control list would refuse.

How this works: a requested filter is denied when a deny filter covers it, that is when every
topic the requested filter can match is matched by the deny filter too (``+`` in the deny
filter covers any one level, a requested ``+`` included; ``#`` covers the rest). For a shared
subscription the filter after ``$share/{name}/`` is what is compared, as Mosquitto's ACL
check does. The broker answers a denied filter with SUBACK 0x87 (Not authorized) in v5, 0x80
in 3.1.1. Pure functions, no broker state.
"""

from __future__ import annotations

from collections.abc import Iterable


def covers(deny: str, requested: str) -> bool:
    """True when ``deny`` matches every topic ``requested`` can match."""
    d_levels = deny.split("/")
    r_levels = requested.split("/")
    for i, d in enumerate(d_levels):
        if d == "#":
            return not (i == 0 and requested.startswith("$") and not deny.startswith("$"))
        if i >= len(r_levels):
            return False
        r = r_levels[i]
        if r == "#":
            return False  # the request reaches deeper than the deny filter
        if d == "+":
            if i == 0 and r.startswith("$"):
                return False  # '+' never matches a '$' level at the start
            continue
        if d != r:
            return False
    return len(d_levels) == len(r_levels)


def denied(deny_filters: Iterable[str], requested: str) -> bool:
    """True when one of ``deny_filters`` covers ``requested``."""
    return any(covers(d, requested) for d in deny_filters)
