"""The typer application: registers every command and maps failures to exit codes.

Commands raise ``Abort`` for expected failures; ``main`` prints one line on stderr and exits
with its code. Unexpected exceptions print one line too, unless ``--debug`` asks for the
traceback.

Interruptions: during a CLI run (``main``, in the main thread) SIGINT, SIGTERM and SIGHUP all
behave like Ctrl-C. The first one raises ``KeyboardInterrupt`` in the main thread, so every
``finally:`` runs (the fleet disconnects, the emulator child is stopped) and the run ends with
exit code 130 and one line, ``aetherdiag: interrupted``, on stderr: printed by the command when
it catches the interrupt and finishes with 130 (after its partial report), else by ``main``
(the interrupt escaped the command, or the command ended with another code). A second signal
while that cleanup runs ends the process at once, also with 130 and that one line; the emulator
child still ends, because it watches its parent (see ``harness/embedded.py``). Signals that
were ignored when the run started (``nohup``, background jobs) stay ignored. Once the exit code
is decided, further signals are ignored, so the code stands. Importing the module installs
nothing; ``main(argv)`` called with arguments (embedding, tests) restores the previous handlers
before it returns, while ``main()`` run as the program ignores these signals from then on
(SIG_IGN, which interpreter shutdown leaves in place, unlike a Python handler), so a late
signal cannot turn the decided exit code into "killed by signal".
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

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

_state = {"debug": False, "finished": False}  # finished: a command callback ended normally


def _noting_completion(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, recording in ``_state`` that it ended without a ``KeyboardInterrupt``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException:  # typer.Exit with the command's code, Abort, ...
            _state["finished"] = True
            raise
        _state["finished"] = True
        return result

    return wrapper


def _note_completions(typer_app: typer.Typer) -> None:
    """Wrap every command of ``typer_app`` (sub-apps included) with ``_noting_completion``:
    typer turns a ``KeyboardInterrupt`` that escapes a command into a silent 130, the same
    code an interrupted command returns after printing its partial report and the line."""
    for info in typer_app.registered_commands:
        if info.callback is not None:
            info.callback = _noting_completion(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _note_completions(group.typer_instance)


_note_completions(app)

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


INTERRUPTED = 130  # exit code of an interrupted run (128 + SIGINT, as shells report Ctrl-C)
_INTERRUPT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
_INTERRUPTED_LINE = "aetherdiag: interrupted\n"


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP handlers for one CLI run (see the module docstring)."""

    def __init__(self) -> None:
        self.received = 0
        self.active = False
        self.interrupted = False  # a signal came before the run was over
        self._reported = False
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        """Take over the interrupt signals; a no-op outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in _INTERRUPT_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:  # SIGHUP does not exist on Windows
                continue
            try:
                previous = signal.getsignal(signum)
                if previous == signal.SIG_IGN:
                    continue
                signal.signal(signum, self._handle)
            except (OSError, ValueError):
                continue
            self._saved[signum] = previous
        self.active = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if not self.active:  # the run is over and its exit code decided
            return
        if self.received == 1:
            raise KeyboardInterrupt
        # Another signal while the first one's cleanup runs: leave now, without a traceback.
        self.report()
        os._exit(INTERRUPTED)

    def finish(self) -> None:
        """The run is over and its exit code decided: later signals are ignored."""
        self.active = False
        self.interrupted = self.received > 0

    def report(self) -> None:
        """Print the one ``interrupted`` line (once, whoever asks first)."""
        if self._reported:
            return
        self._reported = True
        for stream in (sys.stdout, sys.stderr):  # a partial report may be in a buffer
            with contextlib.suppress(Exception):  # in a signal handler: maybe a reentrant call
                stream.flush()
        with contextlib.suppress(OSError):
            os.write(2, _INTERRUPTED_LINE.encode())

    def ignore(self) -> None:
        """Ignore the signals taken over, until the process exits (``main()`` as a program)."""
        for signum in self._saved:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the handlers found by ``install`` (``main(argv)`` as a library)."""
        for signum, previous in self._saved.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._saved.clear()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``aetherdiag`` script."""
    interrupts = _Interrupts()
    _state["finished"] = False
    interrupts.install()
    try:
        try:
            code = _run(argv)
            interrupts.finish()
        except KeyboardInterrupt:
            interrupts.finish()
            code = INTERRUPTED
        if code == INTERRUPTED or interrupts.interrupted:
            if not (code == INTERRUPTED and _state["finished"]):  # else the command said it
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
    except Abort as exc:
        print(f"aetherdiag: error: {exc}", file=sys.stderr)
        return int(exc.code)
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0))
    except (typer.Abort, KeyboardInterrupt):
        return INTERRUPTED
    except Exception as exc:
        if _is_usage_error(exc):
            message = exc.format_message()  # type: ignore[attr-defined]
            if message:  # empty when no arguments were given and the help was shown
                print(f"aetherdiag: error: {message} (see --help)", file=sys.stderr)
            return int(ExitCode.USAGE)
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            print("aetherdiag: error: too many open files: raise the limit (ulimit -n) or run "
                  "fewer workers", file=sys.stderr)
            return int(ExitCode.USAGE)
        # Not a broker problem: a bug in aetherdiag, with its own exit code (never 3).
        print(f"aetherdiag: error: internal error: {type(exc).__name__}: {exc} (please report "
              "it; run with --debug for the traceback)", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    return code if isinstance(code, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error (bad option, missing argument, ...).

    Recognised by shape, because typer releases differ: older ones raise click's exceptions,
    newer ones those of their vendored copy of click, and neither is a subclass of the other.
    """
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", 0) == 2
