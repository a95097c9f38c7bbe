"""The one place exit codes are defined (documented in README), and the errors that carry them.

Every failure a user can cause or meet is a ``DiagError`` that knows its exit code (h11's
``error_status_hint``): a ``UsageError`` is 2 wherever it is raised, an ``Unreachable`` broker
3, and ``cli`` maps them in one place. Domain errors (a bad layout, an unknown fault, a broker
that cannot be reached ...) subclass these, so nothing catches one only to re-raise it with a
code. ``Abort`` is the command's own stop: a one-line message and any code (default 2).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DUPLICATES = 1
    USAGE = 2
    UNREACHABLE = 3
    MISSING = 4
    IMBALANCE = 5
    EXPECTATIONS_NOT_MET = 6  # replay --check-expect: a scenario's `expect` block did not hold
    INCOMPLETE = 7  # the run did not finish its job: tasks not sent or not finished, steps
    #                 not run, --timeout reached before the run settled
    INTERNAL = 8  # a bug in aetherdiag (rerun with --debug for the traceback)
    NOT_WRITTEN = 9  # the report or record could not be written where asked (disk full, no
    #                  permission): the report went to a fallback named on stderr
    INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP


class DiagError(Exception):
    """A failure with its exit code; ``str()`` is one line for the user. ``exit_code`` is the
    class's unless one is given; ``INTERNAL`` means a bug (``cli`` says so and hints at
    ``--debug``)."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str = "", code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.exit_code = code

    @property
    def code(self) -> ExitCode:
        return self.exit_code

    @code.setter
    def code(self, value: ExitCode) -> None:
        self.exit_code = value


class UsageError(DiagError):
    """Input that cannot work (an option, a file, a template): exit 2."""

    exit_code = ExitCode.USAGE


class Unreachable(DiagError):
    """The broker could not be reached, refused us, or was lost: exit 3."""

    exit_code = ExitCode.UNREACHABLE


class Abort(DiagError):
    """Stop the command with a one-line message on stderr and ``code`` (default 2)."""

    exit_code = ExitCode.USAGE
