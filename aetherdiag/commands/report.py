"""``aetherdiag report FILE...``: judge and render saved runs with no broker.

How this works: each FILE is a run record (``workers --record``: JSON Lines, schema
``aetherdiag.record/1``) or a saved JSON report (``--format json``: schema
``aetherdiag.report/1``). Records are read (``record.read_record``), the shards of one run
merged (``record.merge``: same run id, every shard once) and judged exactly as the run judged
itself (``workers.judge_record``); a saved report is loaded back into its ``Report``
(``render.load``). Either way the report is rendered in any format ``render`` offers and the
exit code is the report's. Bad input is exit 2 with one line (``FILE:LINE: ...`` for records).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .. import render
from ..analysis import Report
from ..exitcodes import Abort, ExitCode
from ..record import Recording, is_record, merge, read_record
from ..render.load import LoadError, SavedFailure, load_saved
from ..workers.judge import judge_record
from . import common

EPILOG = """Examples:

  aetherdiag report run.jsonl                    # a run record, judged again
  aetherdiag report shard-*.jsonl --format junit -o junit.xml   # one run
  aetherdiag report report.json --format table   # a saved JSON report

Exit codes: the report's (0 healthy, 1 duplicates, 3 broker lost, 4 missing, 5 imbalance,
7 incomplete, 130 interrupted); 2 for input that cannot be read, records that do not make
one run, or -o naming one of the inputs; 9 when the report cannot be written to -o (it goes
to a file named on stderr instead).
"""

Loaded = Recording | Report | SavedFailure
_FORMAT_HELP = "Output format: " + ", ".join(render.Format) + "."


def command(
    files: list[Path] = typer.Argument(
        ..., metavar="FILE", show_default=False,
        help="Run records (workers --record; every shard's record of a sharded run) or one "
        "saved JSON report (workers --format json)."),
    fmt: render.Format = typer.Option(render.Format.table, "--format",
                                      help=_FORMAT_HELP),
    output: Path | None = common.OUTPUT_OPTION,
    debug: bool = common.DEBUG_OPTION,
) -> None:
    """Judge and render saved runs: run records (shards merged) or a saved JSON report."""
    common.check_output(output, inputs=files)  # before reading: -o must not name an input
    loaded = [(path, _load(path)) for path in files]
    records = [item for _, item in loaded if isinstance(item, Recording)]
    saved = [(path, item) for path, item in loaded if not isinstance(item, Recording)]
    if records and saved:
        raise Abort(f"{saved[0][0]} is a saved report and {records[0].name} a run record: give "
                    "the records of one run, or one saved report")
    if len(saved) > 1:
        raise Abort(f"{saved[0][0]} and {saved[1][0]} are both saved reports: give one at a "
                    "time")
    if saved:
        item = saved[0][1]
    else:
        run = merge(records)
        if run.failure is not None:
            item = SavedFailure(title=run.header.title, target=str(run.header.plan.get(
                "target", "")), message=run.failure.message, code=run.failure.code)
        else:
            assert run.result is not None
            item = judge_record(run.header, run.result)
    if isinstance(item, SavedFailure):
        failure = item
        common.emit(lambda stream: render.render_failure(
            failure.title, failure.target, failure.message, failure.code, fmt, stream),
            fmt, output, quiet=False)
        render.error(failure.message)
        raise typer.Exit(int(failure.code))
    report = item
    common.emit_report(report, fmt, output, quiet=False)
    raise typer.Exit(int(report.exit_code))


def _load(path: Path) -> Loaded:
    """One FILE: a run record or a saved JSON report (``Abort`` with one line otherwise)."""
    try:
        with path.open("rb") as stream:
            first = stream.readline()
        if is_record(first):
            return read_record(path)
        data = path.read_bytes()
    except OSError as exc:
        raise Abort(f"{path}: {exc.strerror or exc}", ExitCode.USAGE) from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Abort(f"{path}:1: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        if exc.lineno > 1 and _is_object_line(first):
            raise Abort(f"{path}:1: not a run record or a saved report (a JSON Lines file "
                        f"whose first line has no \"schema\": \"aetherdiag.record/1\")") from None
        raise Abort(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    try:
        return load_saved(doc)
    except LoadError as exc:
        raise Abort(f"{path}: {exc}") from None


def _is_object_line(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
