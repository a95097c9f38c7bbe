"""The typer application: registers every command and maps failures to exit codes.

Commands raise ``Abort`` for expected failures; ``main`` prints one line on stderr and exits
with its code. Unexpected exceptions print one line too, unless ``--debug`` asks for the
traceback.
"""

from __future__ import annotations

import logging
import sys

import typer

from . import __version__
from .commands import emulator as emulator_cmd
from .commands import probe as probe_cmd
from .commands import replay as replay_cmd
from .commands import workers as workers_cmd
from .exitcodes import Abort, ExitCode

app = typer.Typer(
    name="aetherdiag",
    help="Diagnose MQTT shared-subscription load balancing: does every task reach exactly one "
    "worker, and is the work spread evenly?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("workers", epilog=workers_cmd.EPILOG)(workers_cmd.command)
app.add_typer(emulator_cmd.app, name="emulator")
app.command("probe", epilog=probe_cmd.EPILOG)(probe_cmd.command)
app.command("replay", epilog=replay_cmd.EPILOG)(replay_cmd.command)

_state = {"debug": False}

def _version(value: bool) -> None:
    if value:
        typer.echo(f"aetherdiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``aetherdiag`` script."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # standalone_mode=False makes click *return* a command's typer.Exit code
        code = app(args=argv, standalone_mode=False)
    except Abort as exc:
        print(f"aetherdiag: error: {exc}", file=sys.stderr)
        sys.exit(int(exc.code))
    except typer.Exit as exc:
        sys.exit(int(getattr(exc, "exit_code", 0)))
    except typer.Abort:
        print("aetherdiag: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("aetherdiag: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):
            message = exc.format_message()  # type: ignore[attr-defined]
            if message:  # empty when no arguments were given and the help was shown
                print(f"aetherdiag: error: {message} (see --help)", file=sys.stderr)
            sys.exit(int(ExitCode.USAGE))
        if debug:
            raise
        print(f"aetherdiag: error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        sys.exit(int(ExitCode.UNREACHABLE))
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error (bad option, missing argument, ...).

    Recognised by shape, because typer releases differ: older ones raise click's exceptions,
    newer ones those of their vendored copy of click, and neither is a subclass of the other.
    """
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", 0) == 2
