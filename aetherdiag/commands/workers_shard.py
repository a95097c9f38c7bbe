"""``workers --record FILE``, ``--shard I/N`` and ``--run-id ID``: a run written as a record,
and one slice of a run spread over several processes or hosts (docs/sharding.md).

How this works: ``shard_setup`` checks the options (``--shard`` needs ``--broker`` and
``--run-id``; exit 2 otherwise) and says which workers this process runs (global names,
contiguous blocks: ``harness.shard.slice_of``). ``write`` puts the record (``record``) in a
file or on stdout (``-``). A shard's own report (``shard_report``) covers its workers only:
published counts the tasks they received, so nothing looks missing that another shard's
workers took; the run as a whole is judged by ``aetherdiag report`` on every shard's record.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from ..analysis import Report, analyse
from ..exitcodes import Abort, ExitCode
from ..harness.model import RunResult, WorkerSpec
from ..harness.shard import ShardSpec, check_run_id, parse_shard, slice_of
from ..record import Failure, RunHeader, write_record

RECORD_OPTION: Any = typer.Option(
    None, "--record", metavar="FILE",
    help="Write the run's record (JSON Lines: plan, every delivery and event, end state) to "
    "FILE ('-': stdout, the report then goes only to --output). `aetherdiag report FILE` "
    "judges and renders it later, several shards' records as one run.")
SHARD_OPTION: Any = typer.Option(
    None, "--shard", metavar="I/N",
    help="Run the I-th of N slices of the workers (worker names stay global); the N shards "
    "meet through the --broker under test and shard 1 publishes once all are ready. Needs "
    "--broker and --run-id.")
RUN_ID_OPTION: Any = typer.Option(
    None, "--run-id", metavar="ID",
    help="The run's id (letters, digits, . _ -): the same for every shard of a run; topics "
    "and client ids use it. Default: a fresh one.")


def shard_setup(shard: str | None, run_id: str | None, *, brokers: list[str], count: int,
                exec_command: str | None, nodes: int | None) -> ShardSpec | None:
    """The checked ``--shard``/``--run-id`` (``Abort`` with exit 2 for bad input)."""
    try:
        if run_id is not None:
            check_run_id(run_id)
        if shard is None:
            return None
        index, total = parse_shard(shard)
    except ValueError as exc:
        raise Abort(str(exc)) from None
    if not brokers or nodes is not None:
        raise Abort("--shard needs --broker: the shards meet on a broker every host reaches "
                    "(the embedded emulator lives inside one process)")
    if run_id is None:
        raise Abort("--shard needs --run-id ID, the same for every shard of the run")
    if exec_command is not None:
        raise Abort("--shard runs the built-in workers; it cannot be used with --exec")
    if total > count:
        raise Abort(f"--shard {shard}: {total} shards need at least {total} workers "
                    f"(--count {count})")
    return ShardSpec(index=index, count=total, run_id=run_id)


def my_workers(specs: tuple[WorkerSpec, ...], shard: ShardSpec | None) -> tuple[WorkerSpec, ...]:
    """The workers this process runs: all of them, or its shard's slice."""
    if shard is None:
        return specs
    numbers = slice_of(len(specs), shard.index, shard.count)
    return tuple(specs[i - 1] for i in numbers)


def check_record(path: Path | None) -> None:
    """``--record FILE`` is checked (and emptied) before the run, like ``--output``."""
    if path is None or str(path) == "-":
        return
    try:
        if path.is_dir():
            raise Abort(f"--record {path}: is a directory", ExitCode.USAGE)
        with path.open("w", encoding="utf-8"):
            pass
    except OSError as exc:
        raise Abort(f"--record {path}: {exc.strerror or exc}", ExitCode.USAGE) from None


def write(path: Path | None, header: RunHeader, result: RunResult | None,
          failure: Failure | None = None) -> None:
    """Write the record to ``path`` (``-``: stdout); nothing without ``--record``."""
    if path is None:
        return
    if str(path) == "-":
        write_record(sys.stdout, header, result, failure)
        return
    try:
        with path.open("w", encoding="utf-8") as stream:
            write_record(stream, header, result, failure)
    except OSError as exc:
        raise Abort(f"--record {path}: {exc.strerror or exc}", ExitCode.NOT_WRITTEN) from None


def shard_report(header: RunHeader, result: RunResult, shard: ShardSpec,
                 mine: tuple[WorkerSpec, ...], task_order: list[str]) -> Report:
    """This shard's own report: its workers, and the tasks they received (module doc)."""
    received = {d.task_id for d in result.deliveries if d.task_id is not None}
    order = list(result.published) or task_order
    view = replace(result, published=tuple(t for t in order if t in received))
    names = [w.name for w in mine]
    judged = analyse(view, mine, header.expect)
    span = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
    return replace(judged, title=f"{header.title} (shard {shard.index} of {shard.count})",
                   context=(*header.context, ("shard", (
                       f"{shard.index} of {shard.count}, run {shard.run_id}: {span}; counts "
                       "the tasks these workers received (aetherdiag report on every "
                       "shard's record judges the run)"))))
