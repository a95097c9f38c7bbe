"""The one place exit codes are defined (documented in README)."""

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


class Abort(Exception):
    """Stop the command with a one-line message on stderr and ``code``."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code
