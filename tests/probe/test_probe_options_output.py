"""Issue 8, items 5/6 for ``aetherdiag probe``: bad options are exit 2 before anything runs,
``--output`` is checked before the run, and a failed run still writes its report (or at least
never leaves an earlier run's file behind). Verdicts and exit codes, not wording."""

from __future__ import annotations

import json
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.brokers import free_port
from typer.testing import CliRunner

from aetherdiag.cli import app

runner = CliRunner()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    return free_port()


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port that accepts TCP and never answers: a probe there would take seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "+inf", "1e999"])
def test_timeout_rejects_non_finite_values(value: str) -> None:
    result = runner.invoke(app, ["probe", "--timeout", value])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("prefix", ["", "/", "a/+/b", "a/#", "$SYS/probe", "a\x00b", "x" * 300])
def test_bad_topic_prefix_is_usage_error(prefix: str) -> None:
    result = runner.invoke(app, ["probe", "--topic-prefix", prefix])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_topic_prefix_sets_the_run_prefix() -> None:
    result = runner.invoke(app, ["probe", "--topic-prefix", "team/ci/", "--format", "json",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["topic_prefix"] == f"team/ci/{doc['run_id']}"


@pytest.mark.parametrize("kind", ["directory", "missing-parent"])
def test_bad_output_is_rejected_before_the_run(tmp_path: Path, silent_broker: int,
                                               kind: str) -> None:
    output = tmp_path if kind == "directory" else tmp_path / "nope" / "probe.json"
    started = time.monotonic()
    result = runner.invoke(app, ["probe", "--broker", f"mqtt://127.0.0.1:{silent_broker}",
                                 "--output", str(output), "--format", "json"])
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < 2.0  # no CONNECT was waited for
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fmt", ["json", "junit", "table"])
def test_failed_run_replaces_a_stale_report(tmp_path: Path, closed_port: int, fmt: str) -> None:
    output = tmp_path / f"probe.{fmt}"
    output.write_text("STALE report of an earlier run\n")
    result = runner.invoke(app, ["probe", "--broker", f"mqtt://127.0.0.1:{closed_port}",
                                 "--format", fmt, "--output", str(output)])
    assert result.exit_code == 3, result.output
    text = output.read_text()
    assert "STALE" not in text
    if fmt == "json":
        doc = json.loads(text)
        assert doc["schema"] == "aetherdiag.probe/1"
        assert doc["exit_code"] == 3 and doc["exactly_once"] is False and doc["error"]
    elif fmt == "junit":
        suite = ET.fromstring(text.split("\n", 1)[1])
        assert suite.get("errors") == "1"
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["exit_code"] == "3"
        assert any(case.find("error") is not None for case in suite.iter("testcase"))
    else:
        assert "exit 3" in text


def test_failed_run_prints_json_on_stdout(closed_port: int) -> None:
    result = runner.invoke(app, ["probe", "--broker", f"mqtt://127.0.0.1:{closed_port}",
                                 "--format", "json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 3 and doc["exactly_once"] is False


def test_usage_error_after_output_check_writes_the_error(tmp_path: Path) -> None:
    output = tmp_path / "probe.json"
    output.write_text("STALE")
    result = runner.invoke(app, ["probe", "--strategy", "nope", "--format", "json",
                                 "--output", str(output)])
    assert result.exit_code == 2, result.output
    assert json.loads(output.read_text())["exit_code"] == 2
