"""Every command's ``--help`` as an 80-column terminal shows it: whole lines, whole words.

The commands are found by walking the app, so a new command is checked without being listed
here. What is checked: exit 0; no line over 80 columns; nothing cut short ("…", or a command
summary ending in "..."); no type metavars on flags (``<bool>``, ``BOOLEAN``) or typer's
``<int range>``-style names; prose paragraphs rewrapped to the width (not the source's hard line
breaks); the epilogs' example command lines one per line; the broker URL syntax, whole, in
the help of every command that takes ``--broker``, with the default ports the parser uses.
"""

from __future__ import annotations

import inspect
import itertools
import re
from typing import Any

import pytest
import typer.main
from support.cli import invoke

from aetherdiag.cli import app
from aetherdiag.commands import probe as probe_cmd
from aetherdiag.emulator import FAULTS, STRATEGIES
from aetherdiag.harness.target import DEFAULT_PORTS

WIDTH = 80


def _walk(command: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """``(words after aetherdiag, click command)`` for ``command`` and every command below it."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            found += _walk(sub, (*path, name))
    return found


COMMANDS = _walk(typer.main.get_command(app), ())
ALL = [path for path, _ in COMMANDS]
WITH_BROKER = [path for path, command in COMMANDS
               if any("--broker" in getattr(p, "opts", ()) for p in command.params)]
WITH_EXAMPLES = [path for path, command in COMMANDS if "Examples:" in (command.epilog or "")]


def ids(paths: list[tuple[str, ...]]) -> list[str]:
    return [" ".join(path) or "aetherdiag" for path in paths]


def help_lines(*path: str) -> list[str]:
    """``aetherdiag PATH --help`` at 80 columns: exit 0, its lines."""
    result = invoke(*path, "--help", env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def section(lines: list[str], heading: str) -> list[str]:
    """The lines after ``heading`` up to the next line at its indentation or less."""
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    depth = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth:
            break
        body.append(line)
    return body


def paragraphs(lines: list[str]) -> list[list[str]]:
    """Runs of non-blank lines."""
    found: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            found[-1].append(line)
        elif found[-1]:
            found.append([])
    return [p for p in found if p]


def assert_rewrapped(paragraph: list[str], width: int = WIDTH - 2) -> None:
    """Each line of ``paragraph`` is as full as the width allows: the next line's first word
    would not have fitted (greedy wrapping, as opposed to the source's own line breaks)."""
    for line, following in itertools.pairwise(paragraph):
        word = following.split()[0]
        assert len(line) + 1 + len(word) > width, f"{line!r} could have taken {word!r}"


def test_the_walk_finds_every_command() -> None:
    assert {" ".join(p) for p in ALL} >= {
        "", "workers", "probe", "replay", "watch", "report", "emulator", "emulator serve"}
    assert {" ".join(p) for p in WITH_BROKER} == {"workers", "probe", "replay", "watch"}
    assert {" ".join(p) for p in WITH_EXAMPLES} == {
        "workers", "probe", "replay", "watch", "report", "emulator serve"}


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_help_fits_80_columns(path: tuple[str, ...]) -> None:
    lines = help_lines(*path)
    text = "\n".join(lines)
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long, "\n".join(too_long)
    assert "…" not in text
    assert not re.search(r"<bool>|BOOLEAN", text)
    assert not re.search(r"<(int|float|str|path|list\[[^]]*\])( range)?>", text), text
    if "Commands:" in text:
        summaries = " ".join(section(lines, "Commands:"))
        assert not summaries.endswith("..."), summaries


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_prose_is_rewrapped_to_the_width(path: tuple[str, ...]) -> None:
    """The description (the docstring) and every epilog paragraph that is not an indented
    block (examples, listings) fill their lines."""
    lines = help_lines(*path)
    end = next(i for i, line in enumerate(lines) if line in ("Options:", "Arguments:"))
    prose = paragraphs(lines[1:end])
    prose += [p for p in paragraphs(lines[end:]) if p[0].startswith("  ")
              and not p[0].startswith("   ") and not p[0].rstrip().endswith(":")]
    assert prose
    for paragraph in prose:
        assert_rewrapped(paragraph)


def test_a_docstring_is_not_wrapped_where_its_source_is() -> None:
    """probe's docstring breaks its source line between "dispatch" and "strategy"."""
    source = inspect.getdoc(probe_cmd.command) or ""
    assert "dispatch\nstrategy" in source
    lines = help_lines("probe")
    assert any("dispatch strategy" in line for line in lines), "\n".join(lines)


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=ids(WITH_EXAMPLES))
def test_example_command_lines_stay_one_per_line(path: tuple[str, ...]) -> None:
    lines = help_lines(*path)
    examples = [line.strip() for line in section(lines, "Examples:") if line.strip()]
    assert examples
    for before, line in zip(["", *examples], examples, strict=False):
        assert line.startswith("aetherdiag ") or before.endswith("\\"), line


@pytest.mark.parametrize("path", WITH_BROKER, ids=ids(WITH_BROKER))
def test_the_broker_url_syntax_is_shown_whole(path: tuple[str, ...]) -> None:
    lines = [line.strip() for line in help_lines(*path)]
    for scheme, port in DEFAULT_PORTS.items():
        syntax = f"{scheme}://[user[:pass]@]host[:port]"
        if scheme.startswith("ws"):
            syntax += "[/path]"
        line = next((line for line in lines if line.startswith(syntax + " ")), None)
        assert line is not None, f"no line starts with {syntax}"
        assert f"port {port}" in line, line


def test_the_emulator_faults_and_strategies_are_described_in_serve_help() -> None:
    """Where the docs send readers for them: ``aetherdiag emulator serve --help``."""
    lines = [line.strip() for line in help_lines("emulator", "serve")]
    for name in [*FAULTS, *STRATEGIES]:
        assert name in lines, f"{name} is not listed on a line of its own"
