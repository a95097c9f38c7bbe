"""``aetherdiag workers --exec``: the team's own worker processes, judged like built-in ones.

Builds the ``ExecPlan`` from the parsed ``workers`` options, runs it (``harness.execrun``),
analyses the record with each process as a worker (its subscriptions as the emulator saw
them), renders the report with a process table in its setup, and decides what happens to the
workers' logs: removed after a healthy run, kept (and named) after a failed one or with
``--logs DIR``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import typer

from .. import interrupts, render
from ..analysis import Expectations, analyse
from ..exitcodes import Abort, ExitCode
from ..harness import phases
from ..harness.clients import BrokerUnreachable
from ..harness.command import CommandError, parse_command
from ..harness.execrun import ExecError, ExecPlan, run_exec
from ..harness.model import BrokerTarget, EmulatorSettings, TaskSpec, WorkerSpec
from ..layout import Layout
from ..mqtt.protocol import Protocol
from ..wire.profile import Profile, check_layout, replies_for
from ..workload import default_timeout
from .common import emit_failure, emit_report


def run_exec_command(
    *, command: str, count: int, tasks: int, target: BrokerTarget | None, layout: Layout,
    profile: str, qos: int, protocol: Protocol, strategy: str, faults: list[str],
    groups: dict[str, str], seed: int | None, rate: float | None, timeout: float | None,
    settle_ms: float, connect_timeout: float, warmup: float, ready_timeout: float,
    reply_topic: str | None, worker_field: str | None,
    logs: Path | None, max_imbalance: float, allow_redelivery: bool, fmt: render.Format,
    output: Path | None, quiet: bool, run_id: str,
) -> None:
    """Run ``--exec`` and exit with the verdict's code (``typer.Exit``)."""
    try:
        parse_command(command)
    except CommandError as exc:
        raise Abort(f"--exec: {exc}") from None
    chosen: Profile = "aethermagic" if profile == "aethermagic" else "generic"
    try:
        check_layout(chosen, layout)
        replies = replies_for(chosen, layout, reply_topic, worker_field)
    except ValueError as exc:
        raise Abort(str(exc)) from None
    if target is not None and replies.kind == "none":
        raise Abort("--exec on a real broker needs a reply channel: without one nothing your "
                    "workers do can be seen there (only the embedded emulator sees deliveries); "
                    "give --reply-topic TEMPLATE --worker-field POINTER, or drop --broker to "
                    "judge deliveries on the emulator")
    if target is not None and replies.kind == "template" and not replies.names_worker:
        raise Abort("--reply-topic on a real broker needs --worker-field: only the embedded "
                    "emulator sees which connection published a reply")
    if logs is not None and logs.exists() and not logs.is_dir():
        raise Abort(f"--logs {logs}: not a directory")
    task_specs = tuple(
        TaskSpec(task_id=f"task-{n}", topic=layout.topic(f"task-{n}", n), qos=qos,
                 profile=chosen)
        for n in range(1, tasks + 1))
    plan = ExecPlan(
        command=command, count=count, target=target,
        emulator=EmulatorSettings(strategy=strategy, faults=tuple(faults),
                                  group_strategies=tuple(groups.items()), seed=seed),
        layout=layout, profile=chosen, replies=replies, tasks=task_specs, rate=rate,
        timeout_s=timeout if timeout is not None else default_timeout(tasks, rate),
        ready_timeout_s=ready_timeout, warmup_s=warmup, quiet_s=max(0.3, settle_ms / 1000.0),
        connect_timeout_s=connect_timeout, protocol=protocol, seed=seed or 0, run_id=run_id,
        logs_dir=logs)
    where = target.display() if target is not None else "emulator"
    try:
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        with render.progress(tasks, "publishing", enabled=not quiet) as update:
            outcome = run_exec(plan, on_progress=update)
    except ExecError as exc:
        abort = Abort(str(exc), ExitCode.INCOMPLETE)
        emit_failure("aetherdiag workers --exec", where, abort, fmt, output)
        render.error(str(exc))
        for line in exc.detail[-10:]:
            print(f"  | {line}", file=sys.stderr)
        raise typer.Exit(int(ExitCode.INCOMPLETE)) from None
    except CommandError as exc:
        raise Abort(f"--exec: {exc}") from None
    except BrokerUnreachable as exc:
        abort = Abort(str(exc), ExitCode.UNREACHABLE)
        emit_failure("aetherdiag workers --exec", where, abort, fmt, output)
        raise abort from None
    except OSError as exc:
        raise Abort(f"--logs {logs}: {exc.strerror or exc}") from None
    specs = tuple(WorkerSpec(name=p.name, subscriptions=p.subscriptions, qos=qos,
                             protocol=protocol) for p in outcome.processes)
    judged = analyse(outcome.result, specs,
                     Expectations(max_imbalance=max_imbalance,
                                  allow_redelivery=allow_redelivery))
    setup = [("workers", f"{count} x {command}"), ("profile", chosen),
             *([("replies", f"{reply_topic}" + (f" (worker: {worker_field})" if worker_field
                                               else ""))] if reply_topic else []),
             ("tasks", f"{tasks} to {layout.topic('task-N', 0)}"),
             ("qos", str(qos)), ("mqtt", protocol)]
    for p in outcome.processes:
        clients = f"{len(p.clients)} clients" if len(p.clients) > 1 else (
            p.clients[0] if p.clients else "no client seen")
        setup.append((p.name, f"pid {p.pid}, {clients}, "
                              f"{', '.join(p.subscriptions) or 'no subscription seen'}"))
    failed = judged.exit_code != ExitCode.OK
    if outcome.log_dir is not None and (failed or logs is not None):
        setup.append(("logs", str(outcome.log_dir)))
    report = replace(judged, title="aetherdiag workers --exec", context=tuple(setup))
    with interrupts.deferred():  # a Ctrl-C now still leaves the whole report, then 130
        phases.reached("rendering")
        emit_report(report, fmt, output, quiet)
    if outcome.log_dir is not None and not failed and logs is None:
        shutil.rmtree(outcome.log_dir, ignore_errors=True)
    if report.interrupted:
        render.interrupted()
    raise typer.Exit(int(report.exit_code))
