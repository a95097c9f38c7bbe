"""``aetherdiag probe`` through typer's CliRunner: exit codes, JSON schema, JUnit, errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.brokers import free_port
from typer.testing import CliRunner

from aetherdiag.cli import app

runner = CliRunner()

CHECK_IDS = [
    "connect_v311", "connect_v5", "shared_sub_available", "share_v311", "share_v5",
    "duplicates", "strategy", "retained", "no_local", "publish_to_share", "malformed_share",
    "qos1_drop_clean", "qos1_drop_persistent", "qos2_drop", "offline_member",
    "expired_session", "redispatch_wildcard", "queue_prefix",
]


def test_json_on_the_default_emulator() -> None:
    result = runner.invoke(app, ["probe", "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "aetherdiag.probe/1"
    assert doc["target"].startswith("embedded emulator mqtt://127.0.0.1:")
    assert doc["topic_prefix"] == f"aetherdiag-probe/{doc['run_id']}"
    assert doc["share_behaviour"] == {"3.1.1": "balanced", "5": "balanced"}
    assert doc["strategy"]["name"] == "round_robin" and doc["strategy"]["scope"] == "group"
    assert doc["strategy"]["confidence"] >= 0.8
    assert doc["protocols"]["5"]["shared_subscription_available"] is True
    assert doc["protocols"]["3.1.1"]["accepted"] is True
    assert doc["exactly_once"] is True and doc["exit_code"] == 0
    assert [c["id"] for c in doc["checks"]] == CHECK_IDS
    for check in doc["checks"]:
        assert check["status"] in ("pass", "warn", "fail", "info", "skip")
        assert set(check) == {"id", "title", "status", "result", "evidence", "spec", "meaning",
                              "data"}
    assert doc["duration_s"] < 30


def test_fanout_fault_exits_1_and_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    result = runner.invoke(app, ["probe", "--fault", "share-fanout", "--format", "json",
                                 "--output", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["share_behaviour"] == {"3.1.1": "fanout", "5": "fanout"}
    assert doc["strategy"]["name"] is None
    assert doc["exit_code"] == 1 and doc["exactly_once"] is False
    assert "do NOT deliver" in doc["verdict"]


def test_junit_and_table_for_a_broker_without_shared_subscriptions() -> None:
    result = runner.invoke(app, ["probe", "--fault", "share-unsupported", "--format", "junit"])
    assert result.exit_code == 1, result.output
    suite = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert suite.get("tests") == str(len(CHECK_IDS))
    failures = [case.get("name") for case in suite.iter("testcase")
                if case.find("failure") is not None]
    assert any(str(name).startswith("share_v5") for name in failures)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["share_behaviour.5"] == "refused" and props["exit_code"] == "1"

    table = runner.invoke(app, ["probe", "--fault", "share-unsupported"])
    assert table.exit_code == 1
    assert "verdict:" in table.stdout and "Available" in table.stdout
    assert "refused" in table.stdout


def test_unreachable_broker_exits_3_with_one_line() -> None:
    port = free_port()  # nothing listens there: refused
    result = runner.invoke(app, ["probe", "--broker", f"mqtt://127.0.0.1:{port}"])
    assert result.exit_code == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aetherdiag: error: cannot connect")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [
    ["--strategy", "nope"],
    ["--fault", "nope"],
    ["--broker", "mqtt://127.0.0.1:1", "--fault", "share-fanout"],
    ["--broker", "ftp://example"],
    ["--insecure"],
    ["--timeout", "1"],
    ["--format", "yaml"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, ["probe", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_help_lists_the_probe() -> None:
    result = runner.invoke(app, ["probe", "--help"])
    assert result.exit_code == 0
    assert "--broker" in result.stdout and "share-fanout" in result.stdout


def test_console_script_passes_the_exit_code_on() -> None:
    """``aetherdiag`` (cli.main) must exit with the command's code, not 0."""
    from aetherdiag.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["probe", "--fault", "share-unsupported", "--quiet"])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["probe", "--strategy", "nope"])
    assert exc.value.code == 2


def test_unusable_tls_files_are_one_line_exit_2(tmp_path: Path) -> None:
    """A local file mistake is a usage error (issue 8 item 6), not an unreachable broker."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    result = CliRunner().invoke(app, ["probe", "--broker", "mqtts://127.0.0.1:1",
                                      "--ca-file", str(bad)])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
