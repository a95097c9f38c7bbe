"""Ctrl-C at any moment of a run gives a partial report and exit 130: the run is interrupted
as it reaches each phase (``harness.phases``: a listener sends SIGINT to this process), not
after a sleep. While the report is written the interrupt waits, so the report comes out whole
(valid JSON) and the exit is still 130."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from aetherdiag.cli import main
from aetherdiag.harness import phases

RUN = ["workers", "--count", "3", "--tasks", "30", "--format", "json", "--quiet"]


def interrupted_at(phase: phases.Phase, capfd: pytest.CaptureFixture[str]
                   ) -> tuple[int, dict[str, Any], str]:
    seen: list[str] = []

    def interrupt(reached: phases.Phase) -> None:
        seen.append(reached)
        if reached == phase:
            os.kill(os.getpid(), signal.SIGINT)

    with phases.listening(interrupt), pytest.raises(SystemExit) as exited:
        main(list(RUN))
    out, err = capfd.readouterr()
    assert phase in seen, seen
    assert isinstance(exited.value.code, int)
    return exited.value.code, json.loads(out), err


def test_interrupted_while_connecting(capfd: pytest.CaptureFixture[str]) -> None:
    code, doc, err = interrupted_at("connecting", capfd)
    assert code == 130 and doc["interrupted"] is True and doc["verdict"] == "interrupted"
    assert doc["published"] == 0
    assert doc["unsent"] == [{"reason": "not sent: interrupted", "count": 30,
                              "tasks": [f"task-{n}" for n in range(1, 11)]}]
    assert err.strip().splitlines()[-1] == "aetherdiag: interrupted"


def test_interrupted_while_publishing(capfd: pytest.CaptureFixture[str]) -> None:
    code, doc, err = interrupted_at("publishing", capfd)
    assert code == 130 and doc["interrupted"] is True
    assert len(doc["workers"]) == 3  # the workers were up: they are in the report
    sent = sum(u["count"] for u in doc["unsent"])
    assert doc["published"] + sent == 30
    assert "aetherdiag: interrupted" in err


def test_interrupted_while_settling(capfd: pytest.CaptureFixture[str]) -> None:
    code, doc, _err = interrupted_at("settling", capfd)
    assert code == 130 and doc["interrupted"] is True
    assert doc["published"] == 30 and doc["unsent"] == []


def test_interrupted_while_rendering_keeps_the_whole_report(
        capfd: pytest.CaptureFixture[str]) -> None:
    code, doc, err = interrupted_at("rendering", capfd)
    assert code == 130
    assert doc["published"] == 30 and doc["exit_code"] == 0  # the run itself was whole
    assert "aetherdiag: interrupted" in err


def test_exec_interrupted_before_its_pool_is_ready(capfd: pytest.CaptureFixture[str]) -> None:
    """--exec: an interrupt while the worker processes start still gives the report (nothing
    sent) and 130; the command never started is no process left behind."""
    def interrupt(reached: phases.Phase) -> None:
        if reached == "connecting":
            os.kill(os.getpid(), signal.SIGINT)

    with phases.listening(interrupt), pytest.raises(SystemExit) as exited:
        main(["workers", "--exec", "sleep 60", "--count", "2", "--tasks", "5", "--format",
              "json", "--quiet"])
    out, err = capfd.readouterr()
    doc = json.loads(out)
    assert exited.value.code == 130 and doc["interrupted"] is True
    assert doc["published"] == 0 and doc["unsent"][0]["count"] == 5
    assert "aetherdiag: interrupted" in err
