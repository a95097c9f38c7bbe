"""The README's scenario summary names exactly the keys the scenario reader accepts (both
ways), so a key is never documented that the validator calls unknown, or the reverse."""

from __future__ import annotations

import re

import pytest
from support.paths import REPO

from aetherdiag.scenario.reader import EXPECT_KEYS, WORKER_KEYS
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
