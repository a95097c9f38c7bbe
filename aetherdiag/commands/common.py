"""Helpers shared by the report-producing commands (workers, replay, probe).

``TargetOptions`` (TLS and password options as one value) lives in ``harness.target``."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import typer

from .. import render
from ..analysis import Report
from ..exitcodes import Abort, DiagError, ExitCode
from ..harness.target import TargetOptions as TargetOptions  # the commands use common.TargetOptions
from ..mqtt.protocol import Protocol, UnknownProtocol, parse_protocol
from ..workers.judge import not_recorded as not_recorded  # workers' and watch's

# Options shared by every command that can talk to a real broker.
CA_FILE_OPTION: Any = typer.Option(None, "--ca-file", help="CA bundle for mqtts/wss.")
CERT_FILE_OPTION: Any = typer.Option(None, "--cert-file", help="Client certificate.")
KEY_FILE_OPTION: Any = typer.Option(None, "--key-file", help="Client private key.")
INSECURE_OPTION: Any = typer.Option(False, "--insecure", help="Skip TLS certificate checks.")
def _debug_logging(value: bool) -> bool:
    if value:
        logging.getLogger().setLevel(logging.DEBUG)
    return value


# --debug is accepted before the command (``aetherdiag --debug workers``) and after it; either
# way debug logs go on here and ``cli.main`` shows tracebacks instead of one-line errors.
DEBUG_OPTION: Any = typer.Option(False, "--debug", callback=_debug_logging,
                                 help="Debug logs, and tracebacks instead of one-line errors.")
def broker_option(default: str) -> Any:
    """``--broker URL`` with what happens without it (``default``)."""
    return typer.Option(None, "--broker", "-b", metavar="URL",
                        help=f"The broker: mqtt://, mqtts://, ws:// or wss:// (see Broker URLs "
                        f"below). Default: {default}.")


# The end of the help of every command that takes --broker URL (harness/target.py reads them;
# tests/test_help.py checks the default ports against it).
BROKER_URLS_EPILOG = """

Broker URLs (--broker):

  mqtt://[user[:pass]@]host[:port]         MQTT over TCP, port 1883
  mqtts://[user[:pass]@]host[:port]        over TLS, port 8883
  ws://[user[:pass]@]host[:port][/path]    over WebSocket, port 80, path /mqtt
  wss://[user[:pass]@]host[:port][/path]   over WebSocket and TLS, port 443

  mqtt://localhost
  mqtt://[::1]:1884
  mqtts://ops@broker.example.com
  wss://ops:s%40cret@broker.example.com:8443/mqtt

A user without a password takes it from $AETHERDIAG_PASSWORD if set (or from the variable
--password-env names). Percent-encode '/', '?', '#' and '@' in user names and passwords (%2F,
%3F, %23, %40); write IPv6 addresses in brackets. --ca-file, --cert-file, --key-file and
--insecure need mqtts:// or wss://.
"""


def mqtt_option(meaning: str) -> Any:
    """``--mqtt VERSION`` (3.1.1 or 5, parsed by ``mqtt_version``) and what it sets."""
    return typer.Option(None, "--mqtt", metavar="VERSION", callback=mqtt_version,
                        help=f"{meaning}: 3.1.1 or 5.")


def _stdout_dash(value: Path | None) -> Path | None:
    """``-o -`` is stdout, as in most command-line tools (not a file named ``-``)."""
    return None if value is not None and str(value) == "-" else value


OUTPUT_OPTION: Any = typer.Option(
    None, "--output", "-o", metavar="FILE", callback=_stdout_dash,
    help="Write the report to FILE instead of stdout ('-' is stdout; a FILE is checked, and "
    "emptied, before the run).")
PASSWORD_ENV_OPTION: Any = typer.Option(
    None, "--password-env", metavar="VAR", show_default=False,
    help="Environment variable holding the password when the URL names a user but no "
    "password (default: AETHERDIAG_PASSWORD, used if set). A VAR given here must be set.")


def finite(value: float | None) -> float | None:
    """Typer callback for float options: NaN and infinities are usage errors (exit 2).

    click's FloatRange lets them through (every comparison with NaN is False), so every float
    option of every command takes ``callback=finite``.
    """
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value!r} is not a finite number")
    return value


def mqtt_version(value: str | None) -> Protocol | None:
    """Typer callback for ``--mqtt``: ``3.1.1``, ``311``, ``5`` or ``5.0`` -> the Protocol."""
    if value is None:
        return None
    try:
        return parse_protocol(value)
    except UnknownProtocol as exc:
        raise typer.BadParameter(str(exc)) from None


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (``./a`` and ``a``, a symlink and its target)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_output(output: Path | None, *, inputs: Sequence[Path] = (),
                 records: Sequence[Path] = ()) -> None:
    """``--output FILE`` is checked before the run: it must be a writable file path, and not
    one of the run's ``inputs`` or ``records`` (the report would replace them: exit 2). It is
    truncated now, so a run that dies on the way never leaves an earlier run's report there."""
    if output is None:
        return
    for what, paths in (("input", inputs), ("--record file", records)):
        for path in paths:
            if str(path) != "-" and same_file(output, path):
                raise Abort(f"--output {output} is also the {what} {path}: the report would "
                            "replace it; write the report to another file", ExitCode.USAGE)
    if output.is_dir():
        raise Abort(f"--output {output}: is a directory", ExitCode.USAGE)
    if not output.parent.is_dir():
        raise Abort(f"--output {output}: directory {output.parent} does not exist",
                    ExitCode.USAGE)
    try:
        with output.open("w", encoding="utf-8"):
            pass
    except OSError as exc:
        raise Abort(f"--output {output}: {exc.strerror or exc}", ExitCode.USAGE) from None


def check_record(record: Path | None, *, inputs: Sequence[Path] = ()) -> None:
    """``--record FILE`` must not be one of the run's inputs (it would replace them)."""
    if record is None:
        return
    for path in inputs:
        if str(path) != "-" and same_file(record, path):
            raise Abort(f"--record {record} is also the input {path}: recording would "
                        "replace it; record to another file", ExitCode.USAGE)


_SUFFIX = {"json": ".json", "junit": ".xml", "html": ".html", "markdown": ".md",
           "table": ".txt"}


def _fallback(draw: Callable[[TextIO | None], None], fmt: render.Format) -> str:
    """Write the report somewhere else than the output that failed: a new file in the temp
    directory, or stderr when that fails too. Returns where it went, in words."""
    name: str | None = None
    try:
        fd, name = tempfile.mkstemp(prefix="aetherdiag-report-",
                                    suffix=_SUFFIX.get(fmt.value, ".txt"))
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            draw(stream)
        return f"the report is in {name}"
    except OSError:
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)
    draw(sys.stderr)
    sys.stderr.flush()
    return "the report was written to stderr above"


def emit_failure(title: str, target: str, exc: DiagError, fmt: render.Format,
                 output: Path | None) -> None:
    """A run that failed still writes its report: JSON/JUnit with the error and exit code
    (to ``--output`` or stdout), so CI artifacts never hold a stale or missing file."""
    if output is None and fmt is render.Format.table:
        return
    emit(lambda stream: render.render_failure(title, target, str(exc), exc.code, fmt, stream),
         fmt, output, quiet=False)


def emit(draw: Callable[[TextIO | None], None], fmt: render.Format, output: Path | None,
         quiet: bool) -> None:
    """Call ``draw(stream)`` for ``--output FILE`` or stdout (``None``); ``--quiet`` silences
    only a table on stdout."""
    if output is not None:
        try:
            with output.open("w", encoding="utf-8") as stream:
                draw(stream)
        except OSError as exc:
            where = _fallback(draw, fmt)
            raise Abort(f"--output {output}: {exc.strerror or exc}: {where}",
                        ExitCode.NOT_WRITTEN) from None
        return
    if quiet and fmt is render.Format.table:
        return
    draw(None)


def emit_report(report: Report, fmt: render.Format, output: Path | None, quiet: bool) -> None:
    """Render a ``workers``-style report to ``output`` (or stdout; with ``--output`` the
    verdict still reaches stderr in one line, unless ``--quiet``). When it cannot be written
    there, the ``Abort`` (exit 9, the fallback named) carries the verdict's code instead if
    that is lower and not 0 (the lowest non-zero code wins; 130 always)."""
    try:
        emit(lambda stream: render.render(report, fmt, stream), fmt, output, quiet)
    except Abort as exc:
        verdict = report.exit_code
        if exc.code is ExitCode.NOT_WRITTEN and verdict is not ExitCode.OK and (
                verdict is ExitCode.INTERRUPTED or verdict < exc.code):
            exc.code = verdict
        raise
    if output is not None and not quiet:  # the terminal still learns the verdict
        render.verdict_note(report.verdict, int(report.exit_code), str(output))

