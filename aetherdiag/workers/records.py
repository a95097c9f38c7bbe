"""``workers --record FILE``: the run written as a record (docs/sharding.md).

How this works: ``check_record`` checks (and empties) the file before the run, like
``--output``; ``write`` puts the record (``record.write_record``) in the file or on stdout
(``-``), and is a no-op without ``--record``. A record that cannot be written is a ``DiagError``
with exit 9 (``NOT_WRITTEN``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..exitcodes import DiagError, ExitCode, UsageError
from ..harness.model import RunResult
from ..record import Failure, RunHeader, write_record


def check_record(path: Path | None) -> None:
    """``--record FILE`` is checked (and emptied) before the run, like ``--output``."""
    if path is None or str(path) == "-":
        return
    try:
        if path.is_dir():
            raise UsageError(f"--record {path}: is a directory")
        with path.open("w", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"--record {path}: {exc.strerror or exc}") from None


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
        raise DiagError(f"--record {path}: {exc.strerror or exc}", ExitCode.NOT_WRITTEN) from None
