"""Reading a ProbeReport in assertions."""

from __future__ import annotations

from aetherdiag.probe import ProbeReport


def rows(report: ProbeReport) -> dict[str, tuple[str, str]]:
    """Check id -> (status, result)."""
    return {c.id: (str(c.status), c.result) for c in report.checks}


def explain(report: ProbeReport) -> str:
    """Every check on one line each, for an assertion message."""
    return "\n".join(f"{c.id}: {c.status} {c.result} | {c.evidence}" for c in report.checks)
