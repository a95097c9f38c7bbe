"""The typed values of a run record: its header (the plan essentials), a read recording, and
the one error type readers raise.

How this works: frozen values only. A run record (``workers --record FILE``) is a header, the
run's ``RunResult`` line by line, and an end line; ``RunHeader`` is what the header carries
beyond the result: who ran (run id, seed, the shard), what was planned (every worker's spec,
the tasks, layout, strategy), and how to judge and present it (expectations, title, setup).
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis import Expectations
from ..exitcodes import ExitCode, UsageError
from ..harness.model import RunResult, WorkerSpec

SCHEMA = "aetherdiag.record/1"


class RecordError(UsageError, ValueError):
    """A record that cannot be used; ``str()`` is one line (``FILE:LINE: what is wrong``, or
    what is wrong with a set of records, naming the files)."""


@dataclass(frozen=True, kw_only=True)
class Shard:
    """Which slice of a sharded run a record holds (``--shard INDEX/COUNT``)."""

    index: int  # 1-based
    count: int
    workers: tuple[str, ...]  # the names this shard ran (global names)


@dataclass(frozen=True, kw_only=True)
class RunHeader:
    """A record's first line: what the run set out to do and how it is judged."""

    command: str = "workers"
    run_id: str
    seed: int
    workers: tuple[WorkerSpec, ...]  # every worker of the run, every shard's included
    tasks: int  # how many tasks the run planned to publish
    expect: Expectations
    title: str = ""
    context: tuple[tuple[str, str], ...] = ()  # the setup the report shows under its title
    plan: dict[str, Any] = field(default_factory=dict)  # layout, strategy, qos... as written
    shard: Shard | None = None
    started_unix: float | None = None  # wall clock when the run's clock started (merging)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A run that could not produce a result (a ``DiagError``): its one line and exit code."""

    message: str
    code: ExitCode


@dataclass(frozen=True, kw_only=True)
class Recording:
    """One record as read back: its header, and the result or the failure it ended with."""

    path: Path | None
    header: RunHeader
    result: RunResult | None
    failure: Failure | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<record>"
