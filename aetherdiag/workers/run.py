"""``run(planned) -> Ran``: the one entry point of a ``workers`` run; it picks the runner.

How this works: before anything connects, ``--record FILE`` is checked (and emptied) and the
open-file limit is raised to what the run's sockets need (or a usage error now rather than a
failure half-way through connecting); the plan's warnings go to stderr. Then the runner that
fits ``planned.runner``: the built-in fleet (``builtin.run_workers``), this shard's slice of
it (``builtin.run_shard``, the wall-clock start kept for merging), or the team's worker
processes (``exec.run.run_exec``). A run that fails once started raises ``RunFailed``: the
command still writes its failure report (and a fleet's ``--record`` says the failure). After
a fleet run the record is written; one that cannot be is a warning and a note in the report,
never a lost verdict. ``tidy`` removes ``--exec``'s logs after a healthy run.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

from .. import render
from ..exitcodes import DiagError, ExitCode, UsageError
from ..harness.model import RunResult
from ..harness.negotiate import Negotiated
from ..record import Failure, RunHeader
from . import records
from .model import Planned, Ran


class RunFailed(DiagError):
    """A run that failed after it started (broker lost, worker processes unusable): the
    command writes a failure report before the one-line error; ``detail`` is the log tail
    that explains it (``--exec``)."""

    def __init__(self, message: str, code: ExitCode, detail: tuple[str, ...] = ()) -> None:
        super().__init__(message, code)
        self.detail = detail


def run(planned: Planned, *, progress: bool = True) -> Ran:
    """Run ``planned`` with the runner it needs (module doc); ``progress``: the progress bar
    on stderr (hidden anyway when stderr is not a terminal)."""
    records.check_record(planned.record)
    check_fd_limit(planned.clients, embedded=planned.embedded)
    for warning in planned.warnings:
        render.warning(warning)
    if planned.exec is not None:
        return _run_exec(planned, progress)
    return _run_fleet(planned, progress)


def _run_fleet(planned: Planned, progress: bool) -> Ran:
    from .builtin import run_shard, run_workers

    assert planned.fleet is not None
    header = planned.header

    def fell_back(found: Negotiated) -> None:  # before any worker connects
        nonlocal header
        render.warning(found.message())
        header = with_protocol(header, found)

    result: RunResult
    try:
        with render.progress(len(planned.fleet.tasks), "publishing", enabled=progress) as update:
            if planned.shard is None:
                result = run_workers(planned.fleet, on_progress=update, on_fallback=fell_back)
            else:
                result, started = run_shard(planned.fleet, planned.shard, on_progress=update,
                                            on_fallback=fell_back)
                header = replace(header, started_unix=started)
    except DiagError as exc:  # the broker lost, the shards not met, a bad endpoint ...
        if exc.exit_code is ExitCode.INTERNAL:
            raise  # a bug (a FleetError ...): cli says so, no failure report
        records.write(planned.record, header, None, Failure(message=str(exc), code=exc.code))
        raise RunFailed(str(exc), exc.code) from None
    try:
        records.write(planned.record, header, result)
    except DiagError as exc:  # the run is judged all the same: the report says the record is lost
        render.warning(str(exc))
        return Ran(header=header, result=result, record_error=str(exc))
    return Ran(header=header, result=result)


def _run_exec(planned: Planned, progress: bool) -> Ran:
    from ..harness.clients import BrokerUnreachable
    from .exec.command import CommandError
    from .exec.model import ExecError
    from .exec.run import run_exec

    plan = planned.exec
    assert plan is not None
    try:
        if plan.logs_dir is not None:
            plan.logs_dir.mkdir(parents=True, exist_ok=True)
        with render.progress(len(plan.tasks), "publishing", enabled=progress) as update:
            outcome = run_exec(plan, on_progress=update)
    except ExecError as exc:
        raise RunFailed(str(exc), exc.exit_code, exc.detail) from None
    except CommandError as exc:
        raise UsageError(f"--exec: {exc}") from None
    except BrokerUnreachable as exc:
        raise RunFailed(str(exc), exc.exit_code) from None
    except OSError as exc:
        raise UsageError(f"--logs {plan.logs_dir}: {exc.strerror or exc}") from None
    return Ran(header=planned.header, result=outcome.result, exec=outcome)


def tidy(planned: Planned, ran: Ran, code: ExitCode) -> None:
    """After the report: ``--exec``'s worker logs go after a healthy run unless ``--logs DIR``
    asked to keep them (a failed run names them in its setup)."""
    outcome = ran.exec
    if outcome is None or outcome.log_dir is None or code != ExitCode.OK:
        return
    if planned.exec is not None and planned.exec.logs_dir is None:
        shutil.rmtree(outcome.log_dir, ignore_errors=True)


def with_protocol(header: RunHeader, used: Negotiated) -> RunHeader:
    """The header of a run that fell back to ``used.protocol``: its ``mqtt`` row says so
    (``3.1.1 (the broker refused 5.0)``), the plan and the workers name the version used."""
    context = tuple((key, used.label() if key == "mqtt" else value)
                    for key, value in header.context)
    return replace(header, context=context,
                   plan={**header.plan, "mqtt": used.protocol, "mqtt5_refused": used.refusal},
                   workers=tuple(replace(w, protocol=used.protocol, session_expiry=0)
                                 for w in header.workers))


def check_fd_limit(count: int, *, embedded: bool) -> None:
    """Enough open files for every client socket (and the emulator's end of each when it runs
    in this process), or a usage error now instead of a failure half-way through connecting."""
    from ..harness.embedded import ensure_fd_limit, open_file_limit

    needed = (count + 1) * (2 if embedded else 1) + 16
    ensure_fd_limit(needed)
    limit = open_file_limit()
    if limit is not None and limit < needed:
        raise UsageError(f"--count {count}: needs about {needed} open files, but the limit is "
                         f"{limit}; raise it (ulimit -n {needed}) or run fewer workers")
