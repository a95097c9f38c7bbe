"""The docs name what the code has, both ways: the README's scenario summary names exactly the
keys the scenario reader accepts (a key is never documented that the validator calls unknown,
or the reverse), and README.md and docs/*.md name exactly the emulator's faults and
strategies (below)."""

from __future__ import annotations

import re

import pytest
from support.paths import REPO

from aetherdiag.emulator.sharing import FAULTS, STRATEGIES
from aetherdiag.scenario.reader import EMULATOR_KEYS, EXPECT_KEYS, WORKER_KEYS
from aetherdiag.scenario.steps import STEP_KINDS


def listed(label: str) -> set[str]:
    """The backticked names after "- `SECTION` keys:" (or "kinds:") up to the dash."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^- `{label.split()[0]}` {label.split()[1]}:(.*?) —\s", text,
                      re.MULTILINE | re.DOTALL)
    assert match is not None, f"README has no '- `{label}`' list"
    return set(re.findall(r"`([a-z_]+)`", match.group(1)))


@pytest.mark.parametrize(("label", "code"), [
    ("workers keys", WORKER_KEYS), ("steps kinds", STEP_KINDS), ("expect keys", EXPECT_KEYS),
])
def test_readme_scenario_keys_are_the_readers(label: str, code: tuple[str, ...]) -> None:
    assert listed(label) == set(code)


def test_the_emulator_keys_the_docs_list_are_the_readers() -> None:
    """README's ``target: emulator:`` list and docs/scenario-format.md's ``emulator.*`` rows
    name exactly the keys the reader accepts."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"^- `target`: `emulator:` \((.*?)\) or", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "README has no '- `target`: `emulator:` (...)' line"
    assert set(re.findall(r"`([a-z_]+)`", match.group(1))) == set(EMULATOR_KEYS)
    rows = set(re.findall(r"^\| `emulator\.([a-z_]+)` \|",
                          (REPO / "docs" / "scenario-format.md").read_text(), re.MULTILINE))
    assert rows == set(EMULATOR_KEYS)


# -- the emulator's faults and strategies ------------------------------------------------------
#
# Their home in the docs is the README's two tables under "The broker emulator" ("| fault |" and
# "| strategy |"): every fault and strategy of the code has a row there. Everywhere else in
# README.md and docs/*.md a name used as one (`--fault X`, `faults: [X]`, `strategy: X`, a
# table row, "the `X` fault", ...) must exist in the code; docs/scenario-format.md's
# `emulator.faults` / `emulator.strategy` rows enumerate them all.

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NAME = r"[a-z][a-z0-9_-]*[a-z0-9]"
USES: dict[str, list[str]] = {
    "fault": [rf"--fault[ =]({NAME})", rf"--fault {NAME}` / `({NAME})`", rf"`({NAME})` fault\b",
              rf"\bfault `({NAME})`", r"\bfaults?: *\[([^\]]*)\]", r"\bfaults=\[([^\]]*)\]"],
    "strategy": [rf"--strategy[ =]({NAME})", rf"--group-strategy \w+=({NAME})",
                 rf"^\s*strategy: ({NAME})", rf"\bstrategy=\"?({NAME})", rf"`({NAME})` strategy",
                 rf"\bstrategy `({NAME})`", r"group_strategies: \{([^}]*)\}"],
}


def _names(found: str) -> list[str]:
    """``share-fanout`` or a list ``"a", 'b', c`` or a mapping ``g: a, h: b`` -> the names."""
    return [part.split(":")[-1].strip(" '\"`") for part in found.split(",") if part.strip()]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the rows of every markdown table whose first header cell is ``header``."""
    rows: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            inside = False
        elif cells[0] == header:
            inside = True
        elif inside and not set(line) <= set("|-: "):
            rows.append(cells)
    return rows


def first_name(cell: str) -> str:
    """A table cell's name: its first backticked word (```round_robin` (default)``)."""
    match = re.search(r"`([^`]+)`", cell)
    return match.group(1) if match else cell.split()[0]


def uses(kind: str) -> dict[str, list[str]]:
    """Every name used as a ``kind`` in README.md and docs/*.md -> where (``FILE:LINE``)."""
    found: dict[str, list[str]] = {}
    for path in DOCS:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            for pattern in USES[kind]:
                for match in re.finditer(pattern, line):
                    for name in _names(match.group(1)):
                        found.setdefault(name, []).append(f"{path.name}:{number}")
        for row in table_rows("\n".join(lines), kind):
            found.setdefault(first_name(row[0]), []).append(f"{path.name}: table")
    return found


def documented(kind: str) -> set[str]:
    """The names with a row in the README's ``| kind |`` table (the home of the list)."""
    return {first_name(row[0]) for row in table_rows((REPO / "README.md").read_text(), kind)}


@pytest.mark.parametrize(("kind", "code"), [("fault", FAULTS), ("strategy", STRATEGIES)])
def test_every_fault_and_strategy_the_docs_name_exists(kind: str, code: dict[str, str]) -> None:
    named = uses(kind)
    assert named, f"no {kind} found in the docs: the patterns are stale"
    unknown = {name: where for name, where in named.items() if name not in code}
    assert not unknown, f"not a {kind} of aetherdiag/emulator/sharing.py: {unknown}"


@pytest.mark.parametrize(("kind", "code"), [("fault", FAULTS), ("strategy", STRATEGIES)])
def test_every_fault_and_strategy_has_a_row_in_the_readme(kind: str, code: dict[str, str]) -> None:
    assert documented(kind) == set(code)


@pytest.mark.parametrize(("key", "code"), [("emulator.faults", FAULTS),
                                            ("emulator.strategy", STRATEGIES)])
def test_the_scenario_format_lists_every_fault_and_strategy(key: str, code: dict[str, str]) -> None:
    row = next(r for r in table_rows((REPO / "docs" / "scenario-format.md").read_text(), "key")
               if r[0] == f"`{key}`")
    assert set(re.findall(r"`([^`]+)`", row[1])) == set(code)


def test_the_docs_send_readers_to_emulator_serve_help_for_the_faults() -> None:
    """The faults and strategies are described in ``aetherdiag emulator serve --help``; the
    ``emulator`` group's own help only lists ``serve``."""
    for path in DOCS:
        assert not re.search(r"emulator (-h|--help)", path.read_text()), path.name


def test_share_retained_is_described_alike_everywhere() -> None:
    """What share-retained reproduces is what Mosquitto 2.0.11 does (the conformance tests'
    Mosquitto): every line of the docs that ties the fault to Mosquitto names that release."""
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "share-retained" in line and "Mosquitto" in line:
                assert "2.0.11" in line, f"{path.name}:{number}: {line}"
