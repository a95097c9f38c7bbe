"""The typer application: registers every command; the one place failures become exit codes.

Every command is wrapped once (``_command``): a ``DiagError`` it raises becomes one
``aetherdiag: error: ...`` line on stderr and its exit code. ``main`` maps what escapes the
app: usage errors (2), an interrupt (130, see ``interrupts``), too many open files (2), and
anything else, which is a bug: exit 8 (``INTERNAL``) with a hint to rerun with ``--debug``,
never 3 ("broker unreachable"). ``--debug`` (anywhere on the command line) shows the traceback
and debug logs.

Help is plain text made for an 80-column terminal (``render.help``).
"""

from __future__ import annotations

import errno
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand

from . import __version__, render
from .commands import emulator as emulator_cmd
from .commands import probe as probe_cmd
from .commands import replay as replay_cmd
from .commands import report as report_cmd
from .commands import watch as watch_cmd
from .commands import workers as workers_cmd
from .commands.common import BROKER_URLS_EPILOG, DEBUG_OPTION
from .exitcodes import DiagError, ExitCode
from .interrupts import INTERRUPTED, Interrupts
from .render.help import HelpCommand, HelpGroup

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    name="aetherdiag",
    help="Diagnose MQTT shared-subscription load balancing: does every task reach exactly one "
    "worker, and is the work spread evenly?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# the commands that take --broker URL end their help with the URL syntax
app.command("workers", epilog=workers_cmd.EPILOG + BROKER_URLS_EPILOG)(workers_cmd.command)
app.add_typer(emulator_cmd.app, name="emulator", cls=HelpGroup)
app.command("probe", epilog=probe_cmd.EPILOG + BROKER_URLS_EPILOG)(probe_cmd.command)
app.command("replay", epilog=replay_cmd.EPILOG + BROKER_URLS_EPILOG)(replay_cmd.command)
app.command("watch", epilog=watch_cmd.EPILOG + BROKER_URLS_EPILOG)(watch_cmd.command)
app.command("report", epilog=report_cmd.EPILOG)(report_cmd.command)


class _Run:
    """What ``main`` learns from the command it ran."""

    finished = False  # the command ended without a KeyboardInterrupt (it printed its own line)


def _command(func: Callable[..., Any]) -> Callable[..., Any]:
    """The one wrapper every command runs in: ``Abort`` -> one stderr line and its code; and
    whether the command finished (an interrupted command that returns 130 has printed its
    partial report and the interrupted line itself)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except DiagError as exc:
            _Run.finished = True
            if exc.exit_code is ExitCode.INTERNAL:
                raise  # a bug: ``_run`` says so (or shows the traceback with --debug)
            render.error(str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except BaseException:  # typer.Exit with the command's code, ...
            _Run.finished = True
            raise
        _Run.finished = True
        return result

    return wrapper


def _wrap_commands(typer_app: typer.Typer) -> None:
    """Run every command of ``typer_app`` (sub-apps included) inside ``_command``, its help
    written by ``HelpCommand``."""
    for info in typer_app.registered_commands:
        if info.callback is not None:
            info.callback = _command(info.callback)
        if info.cls in (None, TyperCommand):  # typer's default
            info.cls = HelpCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _wrap_commands(group.typer_instance)


_wrap_commands(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aetherdiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = DEBUG_OPTION,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    level = logging.DEBUG if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(level)  # also when configured before (one process, many runs)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``aetherdiag`` script."""
    interrupts = Interrupts()
    _Run.finished = False
    interrupts.install()
    try:
        try:
            code = _run(argv)
            interrupts.finish()
        except KeyboardInterrupt:
            interrupts.finish()
            code = INTERRUPTED
        if code == INTERRUPTED or interrupts.interrupted:
            if not (code == INTERRUPTED and _Run.finished):  # else the command said it
                interrupts.report()
            code = INTERRUPTED
    finally:
        if argv is not None:  # called as a library: leave the process as we found it
            interrupts.restore()
        else:  # the program is about to exit with ``code``: keep it so
            interrupts.ignore()
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    """Run the app; returns the exit code (``INTERRUPTED`` when interrupted)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # standalone_mode=False makes click *return* a command's typer.Exit code (and typer
        # turns a KeyboardInterrupt into 130)
        code = app(args=argv, standalone_mode=False)
    except DiagError as exc:  # from a callback outside any command
        if exc.exit_code is not ExitCode.INTERNAL:
            render.error(str(exc))
            return int(exc.exit_code)
        if debug:
            raise
        return _internal(exc)
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0))
    except (typer.Abort, KeyboardInterrupt):
        return INTERRUPTED
    except Exception as exc:
        if _is_usage_error(exc):
            message = exc.format_message()  # type: ignore[attr-defined]
            if message:  # empty when no arguments were given and the help was shown
                render.error(f"{message} (see --help)")
            return int(ExitCode.USAGE)
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            render.error("too many open files: raise the limit (ulimit -n) or run fewer workers")
            return int(ExitCode.USAGE)
        return _internal(exc)
    return code if isinstance(code, int) else 0


def _internal(exc: Exception) -> int:
    """Not a broker problem: a bug in aetherdiag, with its own exit code (never 3)."""
    render.error(f"internal error: {type(exc).__name__}: {exc} (please report it; run "
                 "with --debug for the traceback)")
    return int(ExitCode.INTERNAL)


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error (bad option, missing argument, ...).

    Recognised by shape, because typer releases differ: older ones raise click's exceptions,
    newer ones those of their vendored copy of click, and neither is a subclass of the other.
    """
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", 0) == 2
