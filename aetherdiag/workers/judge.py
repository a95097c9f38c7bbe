"""The one judge step of a ``workers`` run: analyse, then attach the title and setup rows.

How this works: ``judged`` is the step (``analysis.analyse`` on the result, then the header's
title and setup rows with ``dataclasses.replace``); ``judge_record`` applies it to a recorded
run exactly as the run did (``aetherdiag report``); ``judge`` applies it to a run that just
ended, whichever runner ran it: the whole run, one shard's slice (its workers and the tasks
they received, docs/sharding.md), or the worker processes of ``--exec`` (one setup row per
process, and where their logs are kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..analysis import Expectations, Report, analyse
from ..exitcodes import ExitCode
from ..harness.model import RunResult, WorkerSpec
from ..record import RunHeader
from .exec.model import ExecOutcome, ExecPlan
from .model import Planned, Ran
from .shard import ShardSpec


def judged(result: RunResult, workers: Sequence[WorkerSpec], expect: Expectations,
           title: str, context: tuple[tuple[str, str], ...]) -> Report:
    """Analyse ``result``, then attach ``title`` and the setup rows (``context``)."""
    return replace(analyse(result, tuple(workers), expect), title=title, context=context)


def judge_record(header: RunHeader, result: RunResult) -> Report:
    """The report of a recorded run, exactly as the run itself judged and titled it."""
    return judged(result, header.workers, header.expect, header.title, header.context)


def judge(planned: Planned, ran: Ran) -> Report:
    """The report of a run that just ended (module doc); a record that could not be written
    is said in its notes (and exit 9 when nothing worse holds)."""
    if ran.exec is not None and planned.exec is not None:
        report = _judge_exec(ran.header, planned.exec, ran.exec)
    elif planned.shard is not None and planned.fleet is not None:
        report = _judge_shard(ran.header, ran.result, planned.shard, planned.fleet.workers,
                              planned.task_ids)
    else:
        report = judge_record(ran.header, ran.result)
    return report if ran.record_error is None else not_recorded(report, ran.record_error)


def _judge_shard(header: RunHeader, result: RunResult, shard: ShardSpec,
                 mine: tuple[WorkerSpec, ...], task_order: Sequence[str]) -> Report:
    """This shard's own report: its workers, and the tasks they received. Published counts
    those only, so nothing looks missing that another shard's workers took; the run as a whole
    is judged by ``aetherdiag report`` on every shard's record."""
    received = {d.task_id for d in result.deliveries if d.task_id is not None}
    order = list(result.published) or list(task_order)
    view = replace(result, published=tuple(t for t in order if t in received))
    names = [w.name for w in mine]
    span = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
    return judged(view, mine, header.expect,
                  f"{header.title} (shard {shard.index} of {shard.count})",
                  (*header.context, ("shard", (
                      f"{shard.index} of {shard.count}, run {shard.run_id}: {span}; counts "
                      "the tasks these workers received (aetherdiag report on every "
                      "shard's record judges the run)"))))


def _judge_exec(header: RunHeader, plan: ExecPlan, outcome: ExecOutcome) -> Report:
    """Each process is a worker, with its subscriptions as the emulator saw them."""
    specs = tuple(WorkerSpec(name=p.name, subscriptions=p.subscriptions, qos=plan.qos,
                             protocol=plan.protocol) for p in outcome.processes)
    report = judged(outcome.result, specs, header.expect, header.title, header.context)
    setup = list(header.context)
    for p in outcome.processes:
        clients = f"{len(p.clients)} clients" if len(p.clients) > 1 else (
            p.clients[0] if p.clients else "no client seen")
        setup.append((p.name, f"pid {p.pid}, {clients}, "
                              f"{', '.join(p.subscriptions) or 'no subscription seen'}"))
    if outcome.log_dir is not None and (report.exit_code != ExitCode.OK
                                       or plan.logs_dir is not None):
        setup.append(("logs", str(outcome.log_dir)))
    return replace(report, context=tuple(setup))


def not_recorded(report: Report, why: str) -> Report:
    """The report of a run whose ``--record`` could not be written: a note, and exit 9 when
    nothing worse holds (the lowest non-zero code wins)."""
    note = f"{why}: the recording stopped there and is incomplete"
    if report.exit_code is not ExitCode.OK:
        return replace(report, notes=(*report.notes, note))
    return replace(report, notes=(*report.notes, note), exit_code=ExitCode.NOT_WRITTEN,
                   verdict=f"{report.verdict}, but the record was not written")
