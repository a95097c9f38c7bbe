"""cli.main: the one place failures become exit codes."""

from __future__ import annotations

from typing import Any

import pytest

from aetherdiag.cli import main
from aetherdiag.exitcodes import ExitCode
from aetherdiag.workers import judge as judging  # the module (the face exports no judge)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def _broken_analysis(*args: Any, **kwargs: Any) -> Any:
    raise ZeroDivisionError("injected into the analysis")


def test_an_internal_error_is_exit_8_never_unreachable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(judging, "analyse", _broken_analysis)  # workers judges here
    code, out, err = run(["workers", "--count", "2", "--tasks", "2"], capsys)
    assert code == ExitCode.INTERNAL
    assert code != ExitCode.UNREACHABLE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "internal error" in lines[0] and "--debug" in lines[0], err
    assert "Traceback" not in err and out == ""


def test_debug_shows_the_traceback_of_an_internal_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judging, "analyse", _broken_analysis)  # workers judges here
    with pytest.raises(ZeroDivisionError):
        main(["workers", "--count", "2", "--tasks", "2", "--debug"])


@pytest.mark.parametrize("argv", [["--debug", "workers", "--tasks", "0"],
                                  ["workers", "--tasks", "0", "--debug"]])
def test_debug_is_one_option_before_or_after_the_command(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(argv, capsys)
    assert code == ExitCode.USAGE, err


def test_an_abort_is_one_line_and_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["workers", "--filter", "x/+"], capsys)  # --filter needs --topic
    assert code == ExitCode.USAGE
    assert err.startswith("aetherdiag: error: ") and len(err.strip().splitlines()) == 1
    assert out == ""


@pytest.mark.parametrize("version", ["5.0", "311", "v5", "3.1.1"])
def test_every_command_takes_the_same_protocol_spellings(
        version: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["workers", "--count", "2", "--tasks", "2", "--mqtt", version,
                        "--quiet"], capsys)
    assert code == 0, err
    code, _, err = run(["workers", "--mqtt", "4"], capsys)
    assert code == ExitCode.USAGE and "3.1.1 or 5" in err


def test_output_dash_means_stdout(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``-o -`` writes the report to stdout, as most tools do, not to a file named ``-``."""
    import json

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["workers", "--count", "2", "--tasks", "4", "--format", "json", "-o", "-",
              "--quiet"])
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)["published"] == 4
    assert not (tmp_path / "-").exists()


def test_debug_logging_lasts_one_run_not_the_process() -> None:
    """Runs in one process (tests, the README check) each get the logging they ask for: a
    --debug run does not leave the next one logging at DEBUG."""
    import logging

    from support.cli import invoke

    invoke("--debug", "workers", "--tasks", "0")
    assert logging.getLogger().level == logging.DEBUG
    invoke("workers", "--tasks", "0")
    assert logging.getLogger().level == logging.WARNING
