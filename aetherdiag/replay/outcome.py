"""A replay run -> the ``workers`` report, the timeline and the scenario's expectations.

How this works: ``build_outcome`` derives what each step caused (``effects``), runs the
same ``analyse`` as ``aetherdiag workers`` with the file's verdict knobs (``max_imbalance``,
``allow_redelivery``) and the copies the drops abandoned, then checks the file's ``expect``
block against the report. The outcome keeps the three side by side: the report as analysis
judged it, the step effects, and one ``ExpectResult`` per expectation; ``render.replay``
merges them for display (the timeline, and one more check per expectation in the table, JSON
and JUnit). The report's verdict and exit code stay the run's own. What a file contributes to
the process exit code depends on the mode: by default the verdict (``replay
scenarios/seed-bug-fanout.yaml`` exits 1: the run has duplicates); with ``check_expect`` 0 when
every expectation holds and ``EXPECTATIONS_NOT_MET`` (6) otherwise. Pure: no I/O, no fleet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..analysis import Expectations, Report, analyse
from ..exitcodes import ExitCode
from ..scenario.model import Count, Expect, Scenario
from .effects import derive
from .model import ReplayRun, StepEffect

__all__ = ["RUN_FAILURES", "ExpectResult", "ReplayOutcome", "build_outcome", "check_expect_block",
           "failed_outcome", "worst_exit_code"]


@dataclass(frozen=True, kw_only=True)
class ExpectResult:
    """One line of the file's ``expect`` block, checked against the report."""

    name: str  # "exit code", "duplicates", "worker-1 tasks", ...
    expected: str
    actual: str
    passed: bool


@dataclass(frozen=True, kw_only=True)
class ReplayOutcome:
    """One file's result: its report (None when the run could not happen) and exit code, and
    beside the report what rendering shows with it: the run's setup, the step effects (the
    timeline) and the expectations."""

    file: str
    name: str
    description: str
    report: Report | None  # as analysis judged it: no title, setup, timeline or expectations
    exit_code: ExitCode  # what this file contributes to the process exit code
    check_expect: bool
    setup: tuple[tuple[str, str], ...] = ()  # how the run was set up (file, workers, ...)
    steps: tuple[StepEffect, ...] = ()
    expectations: tuple[ExpectResult, ...] = ()
    expected_exit: int | None = None
    error: str | None = None

    @property
    def expectations_met(self) -> bool | None:
        """All expectations hold; None when the run did not happen."""
        if self.report is None:
            return None
        return all(e.passed for e in self.expectations)


def build_outcome(run: ReplayRun, *, check_expect: bool = False) -> ReplayOutcome:
    """Analyse ``run`` and check the scenario's expectations."""
    sc = run.scenario
    effects = derive(run.result, run.records, run.workers)
    result = run.result
    if run.notes:
        result = replace(result, notes=tuple(run.notes) + result.notes)
    report = analyse(
        result, run.workers,
        Expectations(max_imbalance=sc.expect.max_imbalance,
                     allow_redelivery=sc.expect.allow_redelivery),
        steps=len(sc.steps), abandoned=effects.abandoned,
    )
    protocols = "/".join(sorted({w.protocol for w in run.workers}))
    if run.result.mqtt5_refused:  # harness/negotiate.py: the broker refused 5.0
        protocols += " (the broker refused 5.0)"
    setup = (("file", sc.path), ("workers", str(len(run.workers))), ("steps", str(len(sc.steps))),
             ("tasks", str(len(sc.tasks))), ("mqtt", protocols))
    results = check_expect_block(sc.expect, report)
    code = report.exit_code
    if check_expect and results:
        code = ExitCode.OK if all(r.passed for r in results) else ExitCode.EXPECTATIONS_NOT_MET
        if code is ExitCode.OK and report.exit_code in RUN_FAILURES and (
                sc.expect.exit_code != report.exit_code):
            # Expectations can hold by chance on a run that did not do its job (cut off by
            # --timeout, broker lost, interrupted): that run proves nothing.
            code = report.exit_code
    return ReplayOutcome(
        file=sc.path, name=sc.name, description=sc.description, report=report,
        exit_code=code, check_expect=check_expect, setup=setup, steps=effects.steps,
        expectations=results, expected_exit=sc.expect.exit_code,
    )


# A run that failed in one of these ways did not do its job: no expect block can vouch for it.
RUN_FAILURES = (ExitCode.UNREACHABLE, ExitCode.INCOMPLETE, ExitCode.INTERRUPTED)


def failed_outcome(scenario: Scenario, message: str, code: ExitCode, *,
                   check_expect: bool = False) -> ReplayOutcome:
    """A file whose run could not happen (broker unreachable...)."""
    return ReplayOutcome(
        file=scenario.path, name=scenario.name, description=scenario.description, report=None,
        exit_code=code, check_expect=check_expect, expected_exit=scenario.expect.exit_code,
        error=message,
    )


def check_expect_block(expect: Expect, report: Report) -> tuple[ExpectResult, ...]:
    """Every expectation the file states, in the order the format documents them."""
    out: list[ExpectResult] = []

    def count(name: str, want: Count | None, got: int) -> None:
        if want is not None:
            out.append(ExpectResult(name=name, expected=str(want), actual=str(got),
                                    passed=want.matches(got)))

    if expect.exit_code is not None:
        got = int(report.exit_code)
        out.append(ExpectResult(name="exit code", expected=str(expect.exit_code),
                                actual=f"{got} ({report.verdict})",
                                passed=got == expect.exit_code))
    count("duplicates", expect.duplicates, len(report.cross_worker))
    count("repeats", expect.repeats, report.repeats)
    if expect.missing_tasks is not None:
        want, got_ids = expect.missing_tasks, report.missing
        out.append(ExpectResult(name="missing", expected=_list(want), actual=_list(got_ids),
                                passed=set(want) == set(got_ids)))
    else:
        count("missing", expect.missing, len(report.missing))
    count("redispatched", expect.redispatched, report.allowed_redeliveries)
    rows = {w.name: w for w in report.workers}
    for we in expect.workers:
        row = rows.get(we.name)
        unique = row.unique if row else 0
        received = row.received if row else 0
        repeats = row.repeats if row else 0
        count(f"{we.name} tasks", we.tasks, unique)
        count(f"{we.name} received", we.received, received)
        count(f"{we.name} repeats", we.repeats, repeats)
    return tuple(out)


def worst_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The process exit code for several files: the lowest non-zero code wins (DESIGN.md)."""
    failing = [c for c in codes if c != ExitCode.OK]
    return min(failing) if failing else ExitCode.OK


def _list(ids: Iterable[str]) -> str:
    items = list(ids)
    return ", ".join(items) if items else "none"
