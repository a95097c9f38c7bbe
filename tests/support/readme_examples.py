"""The README's console examples, produced by real runs: checked by
``tests/test_readme_examples.py``, rewritten from fresh runs by

    python tests/support/readme_examples.py --write

(only the blocks a fresh run disagrees with: one that differs in its figures alone is kept;
``python tests/support/readme_examples.py [TEXT...]`` checks, and shows each difference).

How this works: every ```console block of README.md is run, unless the line before it is a
marker ``<!-- example: not run (REASON) -->`` (a real broker, your own worker command, a long
benchmark, a command that runs until Ctrl-C, ...). In a block that runs, each ``$ aetherdiag
...`` line (``\\`` continues it; ``NAME=value`` before it sets the environment; ``# ...`` is a
comment) runs in-process through typer's CliRunner, as ``tests/support/cli.py`` does, with
``COLUMNS=100``, on the embedded emulator (or, after ``<!-- example: two Mosquittos, bridged
-->`` or ``... not bridged -->``, on two private Mosquittos that the block's two
``mqtt://127.0.0.1:PORT`` URLs are pointed at), in a fresh temporary directory that links to the
repository's ``scenarios/``. What it prints follows it as a terminal shows it: stdout and
stderr in the order written, log lines included. ``$ echo $?`` prints the exit code of the
command before it. The commands of one block share their directory (a file the first writes,
the second reads).

Figures that differ from run to run (latencies, durations, chi-square p, ports, run ids,
pids, timestamps, the temporary directory) are replaced by placeholders on both sides before
comparing (``normalise``). A marker may also trim a long output:
``<!-- example: trim "A" to "B" (LABEL) -->`` (several joined with ``;``) replaces the lines
from the first that matches the regular expression A up to, not including, the next that
matches B, with one line ``…  (LABEL: trimmed)``.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from aetherdiag.cli import app

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
COLUMNS = "100"  # the width every README example is shown at

_MARKER = re.compile(r"^<!-- example: (?P<text>.*) -->$")
_NOT_RUN = re.compile(r"^not run \((?P<reason>.+)\)$")
_TRIM = re.compile(r'^trim "(?P<start>[^"]+)" to "(?P<stop>[^"]+)" \((?P<label>[^)]+)\)$')
_PAIR = re.compile(r"^two Mosquittos, (?P<kind>bridged|not bridged)$")
_URL_PORT = re.compile(r"(?<=mqtt://127\.0\.0\.1:)\d+")
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # as cli._root configures it

# (pattern, placeholder): what may differ between two runs of the same command
VARYING: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", "<time>"),
    (r"(?<=127\.0\.0\.1:)\d+", "<port>"),
    (r"\b\d+\.\d+ (ms|s)\b", r"<n> \1"),
    (r"\bin \d+ ms\b", "in <n> ms"),
    (r"\bp=[\d.e-]+", "p=<p>"),
    (r"(?<=aetherdiag-)[0-9a-f]{8}\b", "<run id>"),
    (r"(?<=aetherdiag/)[0-9a-f]{8}\b", "<run id>"),
    (r"(?<=aetherdiag-probe/)[0-9a-f]{10}\b", "<run id>"),
    (r"(?<=-)[0-9a-f]{8}(?=/| |$)", "<run id>"),
    (r"^(run\s+)[0-9a-f]{10}\b", r"\1<run id>"),
    (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
    (r"\bpid \d+", "pid <pid>"),
]]
_LATENCY = re.compile(r"\b(p50|p90|p95|p99|p99\.9|max|min|mean) \d+(\.\d+)?")


def normalise(line: str) -> str:
    """``line`` with what differs between runs replaced by placeholders."""
    line = line.rstrip()
    if re.match(r"^\s*latency\b", line):  # p50 1.5, p95 1.9, p99 1.9, p99.9 1.9, max 1.9 ms
        line = _LATENCY.sub(r"\1 <n>", line)
    for pattern, placeholder in VARYING:
        line = pattern.sub(placeholder, line)
    return line


@dataclass(frozen=True)
class Trim:
    """Lines from one matching ``start`` up to one matching ``stop`` become one line."""

    start: str
    stop: str
    label: str

    def apply(self, lines: list[str], since: int) -> tuple[list[str], int]:
        """``lines`` trimmed (searching from index ``since``), and where the search goes on."""
        first = next((i for i in range(since, len(lines)) if re.search(self.start, lines[i])),
                     None)
        if first is None:
            raise AssertionError(f"trim: no line matches {self.start!r}")
        stop = next((i for i in range(first + 1, len(lines)) if re.search(self.stop, lines[i])),
                    None)
        if stop is None:
            raise AssertionError(f"trim: no line after {self.start!r} matches {self.stop!r}")
        return [*lines[:first], f"…  ({self.label}: trimmed)", *lines[stop:]], first + 1


@dataclass(frozen=True)
class Block:
    """One ```console block of the README: ``body`` is README lines ``start`` to ``end``
    (0-based, the fences excluded); ``marker`` the ``<!-- example: ... -->`` text before it."""

    start: int
    end: int
    body: tuple[str, ...]
    marker: str

    @property
    def line(self) -> int:
        """The README line (1-based) of the opening fence."""
        return self.start

    @property
    def not_run(self) -> str | None:
        """Why the block is not run, or ``None`` when it runs."""
        match = _NOT_RUN.match(self.marker)
        return match.group("reason") if match else None

    @property
    def mosquittos(self) -> str | None:
        """``bridged`` / ``not bridged``: the block runs against two private Mosquittos
        (``<!-- example: two Mosquittos, bridged -->``), else ``None``."""
        for part in self.marker.split("; ") if self.not_run is None else ():
            match = _PAIR.match(part)
            if match:
                return match["kind"]
        return None

    @property
    def trims(self) -> list[Trim]:
        if not self.marker or self.not_run is not None:
            return []
        trims = []
        for part in self.marker.split("; "):
            if _PAIR.match(part):
                continue
            match = _TRIM.match(part)
            if match is None:
                raise ValueError(f"README.md:{self.line}: unknown example marker {part!r}")
            trims.append(Trim(match["start"], match["stop"], match["label"]))
        return trims

    @property
    def commands(self) -> list[list[str]]:
        """Each ``$`` command as its README lines (a ``\\`` line continues)."""
        found: list[list[str]] = []
        going_on = False
        for line in self.body:
            if going_on:
                found[-1].append(line)
            elif line.startswith("$ "):
                found.append([line])
            going_on = (going_on or line.startswith("$ ")) and line.endswith("\\")
        return found

    @property
    def title(self) -> str:
        """``README.md:LINE $ first command`` (the test id)."""
        first = self.commands[0][0] if self.commands else self.body[0] if self.body else ""
        return f"README.md:{self.line} {first}"


def blocks(text: str | None = None) -> list[Block]:
    """Every ```console block of the README (or of ``text``)."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(before)
        found.append(Block(i + 1, end, tuple(lines[i + 1:end]),
                           marker.group("text") if marker else ""))
        i = end + 1
    return found


class _ToStderr(logging.Handler):
    """Log records as the CLI prints them, to whatever ``sys.stderr`` is at the time (the
    runner's own stream while a command runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(_LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


@contextmanager
def _session() -> Iterator[Path]:
    """A temporary working directory linking to ``scenarios/``, and the CLI's log lines in the
    output (the handler also keeps ``logging.basicConfig`` in ``cli._root`` from adding one
    bound to the first command's stream)."""
    handler = _ToStderr()
    root = logging.getLogger()
    root.addHandler(handler)
    before = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="aetherdiag-readme-") as tmp:
        where = Path(tmp)
        (where / "scenarios").symlink_to(REPO / "scenarios")
        os.chdir(where)
        try:
            yield where
        finally:
            os.chdir(before)
            root.removeHandler(handler)


def _run_command(lines: list[str], last_code: int, where: Path,
                 ports: dict[str, str] | None = None) -> tuple[list[str], int]:
    """One ``$`` command: its output lines and its exit code. ``ports`` maps the README's
    broker ports to the private brokers' (the output says the README's again)."""
    text = " ".join(line.removesuffix("\\").strip() for line in lines).removeprefix("$ ")
    ports = ports or {}
    text = _URL_PORT.sub(lambda m: ports.get(m.group(0), m.group(0)), text)
    words = shlex.split(text, comments=True)
    if words == ["echo", "$?"]:
        return [str(last_code)], last_code
    env = {"COLUMNS": COLUMNS}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or words[0] != "aetherdiag":
        raise ValueError(f"{text!r} is not an aetherdiag command: mark the block "
                         "'<!-- example: not run (REASON) -->'")
    result = CliRunner().invoke(app, words[1:], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    output = result.output.replace(f"{where}/", "").replace(str(where), ".")
    back = {mine: readme for readme, mine in ports.items()}
    output = re.sub(r"(?<=127\.0\.0\.1:)\d+", lambda m: back.get(m.group(0), m.group(0)),
                    output)
    return [line.rstrip() for line in output.splitlines()], result.exit_code


@contextmanager
def _brokers(block: Block) -> Iterator[dict[str, str]]:
    """For a block marked ``two Mosquittos, ...``: two private Mosquittos (bridged both ways
    on ``aetherdiag/#``, or not), and the README's ports (in order of appearance) mapped to
    theirs; nothing for any other block."""
    if block.mosquittos is None:
        yield {}
        return
    from support.brokers import readable_tempdir, running_mosquitto_pair

    readme_ports = list(dict.fromkeys(
        _URL_PORT.findall(" ".join(" ".join(c) for c in block.commands))))
    if len(readme_ports) != 2:
        raise ValueError(f"{block.title}: expected two mqtt://127.0.0.1:PORT URLs")
    bridge = "aetherdiag/#" if block.mosquittos == "bridged" else None
    with readable_tempdir("aetherdiag-readme-") as workdir, \
            running_mosquitto_pair(workdir, bridge) as (first, second):
        yield dict(zip(readme_ports, (str(first.port), str(second.port)), strict=True))


def run(block: Block) -> list[str]:
    """The block as a real run writes it: each command's README lines, then what it printed
    (trimmed as the marker says)."""
    if block.not_run is not None:
        raise ValueError(f"{block.title}: not run ({block.not_run})")
    transcript: list[str] = []
    code = 0
    with _session() as where, _brokers(block) as ports:
        for command in block.commands:
            output, code = _run_command(command, code, where, ports)
            transcript += [*command, *output]
    since = 0
    for trim in block.trims:
        transcript, since = trim.apply(transcript, since)
    return transcript


def difference(block: Block, actual: list[str]) -> str:
    """A unified diff of the README's block and a run (placeholders on both sides); empty
    when they agree."""
    expected = [normalise(line) for line in block.body]
    got = [normalise(line) for line in actual]
    while got and not got[-1]:
        got.pop()
    return "\n".join(difflib.unified_diff(expected, got, "README.md", "a real run", lineterm=""))


def write(selected: list[Block] | None = None) -> list[str]:
    """Rewrite the README's run blocks (all, or ``selected``) that a real run no longer agrees
    with (a block that differs only in its figures is left alone); their titles."""
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    changed = []
    todo = [b for b in blocks(text) if b.not_run is None]
    wanted = {b.start for b in selected} if selected is not None else None
    for block in reversed(todo):  # from the end: earlier line numbers stay valid
        if wanted is not None and block.start not in wanted:
            continue
        actual = run(block)
        while actual and not actual[-1]:
            actual.pop()
        if difference(block, actual):
            changed.append(block.title)
            lines[block.start:block.end] = actual
    README.write_text("\n".join(lines) + ("\n" if text.endswith("\n") else ""), encoding="utf-8")
    return changed[::-1]


def main(argv: list[str] | None = None) -> int:
    if str(REPO / "tests") not in sys.path:  # run as a script: ``support`` as pytest sees it
        sys.path.insert(0, str(REPO / "tests"))
    parser = argparse.ArgumentParser(description="Check (default) or rewrite (--write) the "
                                     "README's console examples from real runs.")
    parser.add_argument("--write", action="store_true",
                        help="rewrite README.md's run blocks from fresh runs")
    parser.add_argument("match", nargs="*",
                        help="only the blocks whose first command contains one of these")
    args = parser.parse_args(argv)
    chosen = [b for b in blocks() if b.not_run is None
              and (not args.match or any(m in b.title for m in args.match))]
    if args.write:
        changed = write(chosen)
        for block in chosen:
            done = "rewritten" if block.title in changed else "agrees  "
            print(f"{done} {block.title}")
        return 0
    failed = 0
    for block in chosen:
        started = time.monotonic()
        diff = difference(block, run(block))
        print(f"{'ok' if not diff else 'DIFFERS'} {time.monotonic() - started:5.1f} s  "
              f"{block.title}")
        if diff:
            failed += 1
            print(diff)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
