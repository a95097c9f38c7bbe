"""``aetherdiag`` through typer's CliRunner, and reading the report it prints.

Whatever the exit code, a command never ends in a traceback: ``invoke`` asserts that for
every call, so a test only says what it expects of the output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from aetherdiag.cli import app
from aetherdiag.exitcodes import ExitCode

runner = CliRunner()

# ``workers --count 3 --tasks 9`` on a healthy broker
ALL = [f"task-{n}" for n in range(1, 10)]
ROUND_ROBIN = [["task-1", "task-4", "task-7"], ["task-2", "task-5", "task-8"],
               ["task-3", "task-6", "task-9"]]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """``aetherdiag ARGS``; never a traceback, whatever the exit code. The table gets 200
    columns so a worker's task list stays on one line; ``env`` adds to the environment."""
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    assert "Traceback" not in result.output, result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def workers(*args: str, env: dict[str, str] | None = None) -> Result:
    """``aetherdiag workers ARGS`` (see ``invoke``)."""
    return invoke("workers", *args, env=env)


def report_of(result: Result) -> dict[str, Any]:
    """The JSON document a ``--format json`` run printed; its exit code is the run's."""
    assert result.stdout.startswith("{"), result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["exit_code"] == result.exit_code
    return doc


def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[Result, dict[str, Any]]:
    """``aetherdiag workers --format json ARGS``: the result and the parsed document."""
    result = workers("--format", "json", *args, env=env)
    return result, report_of(result)


def tasks_of(doc: dict[str, Any]) -> list[list[str]]:
    """Each worker's task ids, in worker order."""
    return [w["tasks"] for w in doc["workers"]]


def causes(doc: dict[str, Any]) -> str:
    """The report's likely causes, one per line."""
    return "\n".join(doc["causes"])


def failed_checks(doc: dict[str, Any]) -> set[str]:
    """The names of the report's checks that failed (not the ones not judged)."""
    return {c["name"] for c in doc["checks"] if c["passed"] is False}


def one_error_line(result: Result) -> str:
    """A failed command's only output: one ``aetherdiag: error:`` line on stderr."""
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aetherdiag: error: "), lines[0]
    return str(lines[0])


def replay_refuses(tmp_path: Path, text: str, *args: str) -> None:
    """``aetherdiag replay --quiet ARGS FILE`` (``text`` written to FILE) must end with exit 2,
    one line on stderr and no traceback, before any run starts."""
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    result = invoke("replay", "--quiet", *args, str(path))
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert time.monotonic() - started < 30
