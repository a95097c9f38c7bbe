"""Bad scenario documents are refused up front with exit 2 and one line (issue 8, items 6
and 7): NaN, infinities, out-of-range numbers, sizes, id and topic templates, YAML nesting and
alias bombs. Nothing here needs a broker: every failure happens before a run starts.
Assertions are on the exception type or exit code and on "one line, no traceback", not on
wording. Bad targets (TLS files, ``--password-env``, URLs) are in
tests/harness/test_target_input.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.cli import replay_refuses

from aetherdiag.scenario import load_scenario, parse_scenario
from aetherdiag.scenario import steps as scenario_steps
from aetherdiag.scenario import yaml_nodes as scenario_yaml
from aetherdiag.scenario.model import ScenarioError

HEAD = "name: t\nworkers: [w1, w2]\n"
OK_STEPS = "steps:\n  - publish: {count: 2}\n"


def doc(steps: str = OK_STEPS, *, top: str = "", workers: str = "workers: [w1, w2]\n") -> str:
    return f"name: t\n{top}{workers}{steps}"


def one_line_error(text: str) -> ScenarioError:
    """Parse ``text``; it must fail with a one-line ScenarioError naming file:line:column."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.yaml")
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith(f"bad.yaml:{err.line}:{err.column}: ")
    assert err.line >= 1
    return err


# -- numbers -------------------------------------------------------------------------------------

NUMERIC_FIELDS = {  # field -> a document where VALUE stands for its value
    "timeout": doc(top="timeout: VALUE\n"),
    "work_ms": doc(workers="workers:\n  - {name: w1, work_ms: VALUE}\n"),
    "work_jitter_ms": doc(workers="workers:\n  - {name: w1, work_jitter_ms: VALUE}\n"),
    "wait": doc("steps:\n  - publish: {count: 2}\n  - wait: VALUE\n"),
    "rate": doc("steps:\n  - publish: {count: 2, rate: VALUE}\n"),
    "settle timeout": doc("steps:\n  - publish: {count: 2}\n  - settle: {timeout: VALUE}\n"),
    "settle quiet": doc("steps:\n  - publish: {count: 2}\n  - settle: {quiet: VALUE}\n"),
    "slow": doc("steps:\n  - publish: {count: 2}\n  - slow: {worker: w1, work_ms: VALUE}\n"),
    "max_imbalance": doc(OK_STEPS + "expect: {max_imbalance: VALUE}\n"),
    "count": doc("steps:\n  - publish: {count: VALUE}\n"),
    "start": doc("steps:\n  - publish: {count: 2, start: VALUE}\n"),
    "replicas": doc(workers="workers:\n  - {name: w, replicas: VALUE}\n"),
    "qos": doc(top="qos: VALUE\n"),
    "session_expiry": doc(workers="workers:\n  - {name: w1, session_expiry: VALUE}\n"),
    "seed": doc(top="target: {emulator: {seed: VALUE}}\n"),
    "exit_code": doc(OK_STEPS + "expect: {exit_code: VALUE}\n"),
    "duplicates": doc(OK_STEPS + "expect: {duplicates: VALUE}\n"),
    "missing max": doc(OK_STEPS + "expect: {missing: {max: VALUE}}\n"),
}
BAD_NUMBERS = [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1e309", "-1e309", "1e300",
               "99999999999999999999999999", "9" * 5000, "-1", "2001-13-45"]


@pytest.mark.parametrize("field", sorted(NUMERIC_FIELDS))
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=lambda v: v[:12])
def test_numbers_must_be_finite_and_in_range(field: str, value: str) -> None:
    text = NUMERIC_FIELDS[field]
    parse_scenario(text.replace("VALUE", "1"), "good.yaml")  # the document is fine otherwise
    one_line_error(text.replace("VALUE", value))


def test_nan_is_not_a_valid_timeout_even_though_nan_compares_false() -> None:
    err = one_line_error(doc(top="timeout: .nan\n"))
    assert (err.line, err.column) == (2, 10)


# -- sizes ---------------------------------------------------------------------------------------


def test_task_counts_far_beyond_memory_fail_before_any_id_is_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    one_line_error(doc("steps:\n  - publish: {count: 1000000000000}\n"))
    monkeypatch.setattr(scenario_steps, "MAX_TASKS", 10)  # the bound, not 1,000,000 ids each
    steps = "steps:\n" + "".join(f"  - publish: {{count: 6, start: {i * 6}}}\n"
                                 for i in range(1000))
    err = one_line_error(doc(steps))
    assert err.line == 5  # the second step already brings the file past MAX_TASKS
    alias = "steps:\n  - &p {publish: {count: 6}}\n" + "  - *p\n" * 1000
    one_line_error(doc(alias))
    assert time.monotonic() - started < 5


def test_the_task_total_is_checked_before_running(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario_steps, "MAX_TASKS", 10)
    replay_refuses(tmp_path, doc("steps:\n  - publish: {count: 6}\n  - publish: {count: 6}\n"))


def test_an_explicit_task_list_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario_steps, "MAX_TASK_LIST", 10)
    ten = ", ".join(f"t{i}" for i in range(10))
    parse_scenario(doc(f"steps:\n  - publish: {{tasks: [{ten}]}}\n"))
    err = one_line_error(doc(f"steps:\n  - publish: {{tasks: [{ten}, t10]}}\n"))
    assert err.line == 4
    assert "10" in err.message  # the bound is in the message


def test_replica_totals_are_bounded() -> None:
    workers = "workers:\n" + "".join(f"  - {{name: w{i}, replicas: 100000}}\n" for i in range(3))
    one_line_error(doc(workers=workers))


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from aetherdiag.scenario import reader as scenario

    monkeypatch.setattr(scenario, "MAX_FILE_CHARS", 1000)
    path = tmp_path / "big.yaml"
    path.write_text(doc() + "#" * 2000 + "\n")
    with pytest.raises(ScenarioError):
        load_scenario(path)


# -- YAML nesting and aliases ------------------------------------------------------------------


@pytest.mark.parametrize("depth", [60, 5000, 200_000])
def test_deep_nesting_is_an_error_not_a_stack_overflow(depth: int) -> None:
    one_line_error(doc("steps: " + "[" * depth + "]" * depth + "\n"))
    one_line_error(doc("steps: " + "{a: " * depth + "1" + "}" * depth + "\n"))


def test_nesting_through_aliases_is_counted() -> None:
    levels = "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 60))
    one_line_error("l0: &l0 [x]\n" + levels + HEAD + OK_STEPS)


def test_a_billion_laughs_alias_bomb_is_stopped_early() -> None:
    bomb = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))
    started = time.monotonic()
    err = one_line_error(bomb + HEAD + OK_STEPS)
    assert err.line <= 10
    assert time.monotonic() - started < 2


def test_a_recursive_alias_is_an_error() -> None:
    one_line_error(HEAD + "steps: &s [*s]\n")


def test_nesting_up_to_the_bound_composes() -> None:
    depth = scenario_yaml.MAX_DEPTH
    scenario_yaml.compose("[" * depth + "]" * depth, "ok.yaml")
    with pytest.raises(ScenarioError):
        scenario_yaml.compose("[" * (depth + 1) + "]" * (depth + 1), "bad.yaml")


# -- id and topic templates ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "{n:>999999999}", "t-{n:,}", "t-{n:x}", "t-{n:{n}}", "t-{n:021d}", "{0}", "{}-{n}",
    "{n.__class__}", "{n[0]}", "{n!r}", "{task_id}-{n}", "{n}{", "{n}}", "{{n}}", "t",
])
def test_id_patterns_only_substitute_n(pattern: str) -> None:
    err = one_line_error(doc(f"steps:\n  - publish: {{count: 2, id_pattern: '{pattern}'}}\n"))
    assert err.line == 4


@pytest.mark.parametrize("pattern", ["t-{n}", "t-{n:04d}", "t{n:3}", "{n:020d}", "{{x}}-{n}"])
def test_documented_id_patterns_still_work(pattern: str) -> None:
    sc = parse_scenario(doc(f"steps:\n  - publish: {{count: 2, id_pattern: '{pattern}'}}\n"))
    ids = [t.task_id for t in sc.tasks]
    assert ids == [pattern.format(n=1), pattern.format(n=2)]


@pytest.mark.parametrize("topic", ["jobs/{task_id:>99999999}", "jobs/{task_id!s}",
                                   "jobs/{task_id.upper}", "jobs/{0}", "jobs/{n:<9999}"])
def test_topic_templates_only_substitute_task_id_and_n(topic: str) -> None:
    one_line_error(doc(f"steps:\n  - publish: {{count: 2, topic: '{topic}'}}\n"))
    layout = f"layout: {{generic: {{topic: '{topic}', filter: 'jobs/+'}}}}\n"
    one_line_error(doc(top=layout))


def test_documented_topic_templates_still_work() -> None:
    sc = parse_scenario(doc("steps:\n  - publish: {count: 2, topic: 'jobs/{n:03d}/{task_id}'}\n"))
    assert [t.topic for t in sc.tasks] == ["jobs/001/task-1", "jobs/002/task-2"]


# -- the CLI: exit 2, one line, no traceback ------------------------------------------------------


@pytest.mark.parametrize("text", [
    doc(top="timeout: .nan\n"),
    doc("steps:\n  - publish: {count: 2}\n  - wait: .inf\n"),
    doc("steps:\n  - publish: {count: 2, id_pattern: '{n:>999999999}'}\n"),
    doc("steps:\n  - publish: {count: 2, id_pattern: '{n.__class__}'}\n"),
    doc("steps: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10)),
    doc("steps:\n  - publish: {count: " + "9" * 5000 + "}\n"),
    doc("steps:\n  - publish: {count: 2}\n  - wait: 2001-13-45\n"),
], ids=["nan", "inf", "width", "attribute", "deep", "bomb", "bigint", "baddate"])
def test_replay_refuses_bad_documents_before_running(tmp_path: Path, text: str) -> None:
    replay_refuses(tmp_path, text)
