"""The churn steps of issue 14: takeover, kick, resubscribe (and unsubscribe in flight)."""

from __future__ import annotations

import pytest
from support.cli import invoke

from aetherdiag.scenario import model as sm
from aetherdiag.scenario import parse_scenario

HEAD = ("name: t\nworkers:\n  - name: w-1\n  - name: w-2\n    session: persistent\n"
        "steps:\n  - publish: {count: 2}\n")


def steps(text: str) -> tuple[sm.Step, ...]:
    return parse_scenario(HEAD + text, "s.yaml").steps


def error(text: str) -> str:
    with pytest.raises(sm.ScenarioError) as info:
        parse_scenario(HEAD + text, "s.yaml")
    return str(info.value)


def test_churn_steps_parse() -> None:
    got = steps("  - takeover: w-2\n  - reconnect: w-2\n  - kick: w-1\n  - kick: w-1\n"
                "  - reconnect: w-1\n  - resubscribe: {worker: w-1, filter: shared, qos: 0}\n")
    assert [s.describe() for s in got[1:5]] == ["takeover w-2", "reconnect w-2", "kick w-1",
                                                "kick w-1"]
    last = got[-1]
    assert isinstance(last, sm.Resubscribe) and last.qos == 0
    assert last.describe().startswith("resubscribe w-1 to $share/") and "QoS 0" in \
        last.describe()


@pytest.mark.parametrize(("text", "message"), [
    ("  - takeover: w-2\n  - takeover: w-2\n", "takeover: w-2 is not connected (since step 2"),
    ("  - kick: w-2\n  - drop: w-2\n", "drop: w-2 is not connected (since step 2"),
    ("  - resubscribe: {worker: w-1, filter: plain, qos: 0}\n",
     "resubscribe: w-1 does not hold"),
    ("  - resubscribe: {worker: w-1, filter: shared}\n", "qos"),
    ("  - subscribe: {worker: w-1, filter: shared}\n", "(resubscribe changes its QoS in place)"),
    ("  - takeover: w-9\n", "unknown worker 'w-9'"),
])
def test_churn_step_errors(text: str, message: str) -> None:
    assert message in error(text)


def test_emulator_serve_documents_the_new_options_and_faults() -> None:
    result = invoke("emulator", "serve", "--help", env={"COLUMNS": "400"})
    out = " ".join(result.output.split())
    for name in ("--receive-maximum", "--topic-aliases", "--server-keep-alive",
                 "--deny-subscribe", "offline-member-keeps-share", "expired-session-drops",
                 "redispatch-misses-wildcards"):
        assert name in out, name


def test_emulator_serve_refuses_a_bad_deny_filter() -> None:
    result = invoke("emulator", "serve", "--port", "0", "--deny-subscribe", "a/#/b")
    assert result.exit_code == 2, result.output
    assert "--deny-subscribe 'a/#/b'" in result.output
