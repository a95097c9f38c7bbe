"""SIGINT, SIGTERM and SIGHUP during a CLI run: all behave like Ctrl-C.

Interruptions: during a CLI run (``cli.main``, in the main thread) SIGINT, SIGTERM and SIGHUP all
behave like Ctrl-C. The first one raises ``KeyboardInterrupt`` in the main thread, so every
``finally:`` runs (the fleet disconnects, the emulator child is stopped) and the run ends with
exit code 130 and one line, ``aetherdiag: interrupted``, on stderr: printed by the command when
it catches the interrupt and finishes with 130 (after its partial report), else by ``cli.main``
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
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from .exitcodes import ExitCode

INTERRUPTED = int(ExitCode.INTERRUPTED)  # 128 + SIGINT, as shells report Ctrl-C
_INTERRUPT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
_INTERRUPTED_LINE = "aetherdiag: interrupted\n"


_current: Interrupts | None = None  # the CLI run's handlers, while installed


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold an interrupt back while the block runs (a report being written must come out
    whole); one that came meanwhile is raised as ``KeyboardInterrupt`` when it ends. Outside
    a CLI run (no handlers installed) it does nothing."""
    handlers = _current
    if handlers is None or not handlers.active:
        yield
        return
    handlers.deferring = True
    try:
        yield
    finally:
        handlers.deferring = False
    if handlers.pending:
        handlers.pending = False
        raise KeyboardInterrupt


class Interrupts:
    """SIGINT/SIGTERM/SIGHUP handlers for one CLI run (see the module docstring)."""

    def __init__(self) -> None:
        self.received = 0
        self.deferring = False  # inside ``deferred()``: the first signal waits
        self.pending = False  # ... and came
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
        global _current
        _current = self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if not self.active:  # the run is over and its exit code decided
            return
        if self.received == 1:
            if self.deferring:
                self.pending = True
                return
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
        global _current
        if _current is self:
            _current = None
        for signum, previous in self._saved.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._saved.clear()
