"""Paths in the repository the tests read."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
SCENARIOS = REPO / "scenarios"  # the shipped scenario library
