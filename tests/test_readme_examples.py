"""Every ```console block of README.md is a real run (one case per block), or is marked
``<!-- example: not run (REASON) -->`` and counted here, so none is skipped silently.

How the blocks run and what is normalised: ``tests/support/readme_examples.py``. After a
change to what the commands print, rewrite the README from real runs with

    python tests/support/readme_examples.py --write
"""

from __future__ import annotations

import pytest
from support.readme_examples import Block, blocks, difference, normalise, run

BLOCKS = blocks()
NOT_RUN = [b for b in BLOCKS if b.not_run is not None]
# The README's blocks marked "not run": update this when marking one more (or one fewer).
NOT_RUN_COUNT = 21
# A block whose first command holds one of these takes seconds (the probes, a 2 s timeout).
SLOW = ("aetherdiag probe", "--timeout 2")


def _case(block: Block) -> object:
    first = block.commands[0][0] if block.commands else ""
    slow = block.not_run is None and any(s in first for s in SLOW)
    marks = [pytest.mark.slow] if slow else []
    if block.mosquittos is not None:  # two private Mosquittos (a missing one fails in CI)
        marks += [pytest.mark.mosquitto, pytest.mark.slow]
    return pytest.param(block, id=block.title, marks=marks)


@pytest.mark.parametrize("block", [_case(b) for b in BLOCKS])
def test_readme_example(block: Block) -> None:
    if block.not_run is not None:
        pytest.skip(f"marked not run: {block.not_run}")
    diff = difference(block, run(block))
    assert not diff, (f"{block.title}: the README differs from a real run (rewrite it with "
                      f"`python tests/support/readme_examples.py --write`)\n{diff}")


def test_the_blocks_not_run_are_counted() -> None:
    listed = "\n".join(f"{b.title}: {b.not_run}" for b in NOT_RUN)
    assert len(NOT_RUN) == NOT_RUN_COUNT, listed


def test_every_block_that_runs_has_commands_and_shows_an_exit_code_after_one() -> None:
    for block in BLOCKS:
        if block.not_run is not None:
            continue
        assert block.commands and block.body[0].startswith("$ aetherdiag "), block.title
        for before, command in zip([[""], *block.commands], block.commands, strict=False):
            if command[0] == "$ echo $?":
                assert before[0].startswith("$ aetherdiag "), block.title


def test_a_run_keeps_the_readme_command_lines_as_written() -> None:
    """The README's own command lines (comments and alignment) survive a rewrite."""
    block = next(b for b in BLOCKS if any(line == "$ echo $?" for line in b.body))
    assert [c[0] for c in block.commands] == [line for line in run(block) if line[:2] == "$ "]


@pytest.mark.parametrize(("line", "expected"), [
    ("latency                  p50 1.5, p95 1.9, p99 1.9, p99.9 1.9, max 12.25 ms",
     "latency                  p50 <n>, p95 <n>, p99 <n>, p99.9 <n>, max <n> ms"),
    ("duration                 2.01 s (timed out before settling)",
     "duration                 <n> s (timed out before settling)"),
    ("balance  max/min 1.00, max/mean 1.00, chi-square p=0.0312 vs an even split",
     "balance  max/min 1.00, max/mean 1.00, chi-square p=<p> vs an even split"),
    ("target     embedded emulator mqtt://127.0.0.1:46627 (strategy=round_robin)   ",
     "target     embedded emulator mqtt://127.0.0.1:<port> (strategy=round_robin)"),
    ("run        b28fd28c5f, 1.5 s", "run        <run id>, <n> s"),
    ("2026-11-30 14:14:40,032 aetherdiag.emulator WARNING for aetherdiag-188203b5-worker-3",
     "<time> aetherdiag.emulator WARNING for aetherdiag-<run id>-worker-3"),
    ("│ MQTT 5.0  │ CONNACK 0x00 in 12 ms │", "│ MQTT 5.0  │ CONNACK 0x00 in <n> ms │"),
    ("timed out after 2 s; task-12 on worker-2", "timed out after 2 s; task-12 on worker-2"),
])
def test_what_varies_between_runs_is_normalised(line: str, expected: str) -> None:
    assert normalise(line) == expected
