"""The plain values a replay passes along, in the order they are made. No I/O, no fleet.

``run`` produces a ``StepRecord`` per step and one ``ReplayRun``; ``effects`` derives
``Effects`` from them (a ``StepEffect`` per record, and the copies a lost connection left
unfinished); ``outcome`` judges them. Each stage reads the earlier stages' values and makes
new ones; nothing here imports the harness's fleet or paho, so the pure stages stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.report import CopyRef
from ..harness.model import RunResult, WorkerSpec
from ..scenario.model import Scenario, Step

__all__ = ["Effects", "ReplayRun", "StepEffect", "StepRecord"]


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """What one step did at the fleet level. ``step`` is None for the implicit final settle.

    Times are seconds since the run started (the clock of ``Delivery.at``). Only the fields
    that belong to the step's kind are set; ``skipped`` names why a step did not run.
    """

    step: Step | None
    started: float
    ended: float
    sent: int | None = None  # publish: tasks handed to the broker
    in_flight: tuple[str, ...] = ()  # drop / disconnect: received, not yet acknowledged
    session_present: bool | None = None  # reconnect
    reason_code: int | None = None  # subscribe: the SUBACK code (None: no answer)
    confirmed: bool | None = None  # unsubscribe: UNSUBACK received
    settled: bool | None = None  # settle: False when its timeout cut the wait short
    skipped: str = ""


@dataclass(frozen=True, kw_only=True)
class ReplayRun:
    """Everything one scenario run observed, before analysis."""

    scenario: Scenario
    result: RunResult
    records: tuple[StepRecord, ...]
    workers: tuple[WorkerSpec, ...]  # as run (``--mqtt`` may have changed the protocol)
    target: str  # display form of where it ran
    notes: tuple[str, ...] = ()  # about the run as a whole (overrides, deadline)


@dataclass(frozen=True, kw_only=True)
class StepEffect:
    """One timeline entry: a step (or the final settle), what it caused, who got what."""

    index: int | None  # None: the implicit final settle
    line: int | None
    kind: str
    description: str  # the step itself, e.g. "drop worker-2"
    effect: str  # what it caused; "" when there is nothing to add
    started: float
    ended: float
    deliveries: tuple[tuple[str, int], ...] = ()  # (worker, copies this step caused)

    @property
    def label(self) -> str:
        if self.index is None:
            return "after the last step"
        return f"step {self.index} (line {self.line})"

    @property
    def text(self) -> str:
        """``step 3 (line 33): drop worker-2: 5 in-flight task(s) ... re-dispatched ...``."""
        head = f"{self.label}: {self.description}"
        return f"{head}: {self.effect}" if self.effect else head


@dataclass(frozen=True, kw_only=True)
class Effects:
    """What ``effects.derive`` found: one ``StepEffect`` per ``StepRecord`` (the timeline), and
    the delivered copies whose worker lost its connection before finishing them (an input of
    ``analysis.analyse``; the harness's ``Delivery`` records are left as recorded)."""

    steps: tuple[StepEffect, ...]
    abandoned: frozenset[CopyRef] = frozenset()
