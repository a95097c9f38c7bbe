"""YAML 1.1 leftovers in scenario files: ``1e9`` is a number (YAML 1.2), merge keys work."""

from __future__ import annotations

import pytest

from aetherdiag.scenario import model as sm
from aetherdiag.scenario import parse_scenario

S = "steps:\n  - publish: {count: 3}\n"


def error_of(text: str) -> str:
    with pytest.raises(sm.ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    return str(caught.value)


def test_an_exponent_without_a_dot_is_a_number() -> None:
    text = "name: t\nworkers:\n  - name: w\nsteps:\n  - wait: 1e9\n"
    assert error_of(text).endswith("5:11: wait: must be at most 86400, got 1e+09")
    ok = parse_scenario("name: t\nworkers:\n  - name: w\n" + S + "  - wait: 5e-1\n", "s.yaml")
    assert isinstance(ok.steps[1], sm.Wait) and ok.steps[1].seconds == 0.5


def test_a_quoted_exponent_stays_text() -> None:
    text = "name: t\nworkers:\n  - name: w\nsteps:\n  - wait: '1e9'\n"
    assert "expected a number, got the text '1e9'" in error_of(text)


def test_merge_keys_share_worker_settings_and_own_keys_win() -> None:
    s = parse_scenario(
        "name: t\nworkers:\n  - &w\n    name: a\n    qos: 2\n    work_ms: 5\n"
        "  - <<: *w\n    name: b\n    work_ms: 7\n" + S, "s.yaml")
    a, b = s.workers
    assert (a.name, a.qos, a.work_ms) == ("a", 2, 5)
    assert (b.name, b.qos, b.work_ms) == ("b", 2, 7)


def test_merging_a_list_of_mappings_the_first_wins() -> None:
    s = parse_scenario(
        "name: t\nworkers:\n  - &x {name: x, qos: 0}\n  - &y {name: y, qos: 2, work_ms: 3}\n"
        "  - <<: [*x, *y]\n    name: z\n" + S, "s.yaml")
    z = s.workers[2]
    assert (z.qos, z.work_ms) == (0, 3)


def test_a_merge_of_a_scalar_is_one_line_at_its_place() -> None:
    assert error_of("name: t\nworkers:\n  - <<: [1]\n    name: w\n" + S).endswith(
        "3:5: a merge key (<<) takes a mapping or a list of mappings, got the number 1")
