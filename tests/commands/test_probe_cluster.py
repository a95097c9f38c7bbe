"""``aetherdiag probe`` with several endpoints, through the CLI: ``--broker`` repeated,
``--nodes N`` (the embedded emulator as a cluster), the new rows in table, JSON and JUnit, and
the usage errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from support.brokers import free_port
from support.cli import invoke, one_error_line, report_of

from aetherdiag.emulator import Emulator

CROSS = ["cross_node_delivery", "cross_node_once", "local_preference"]


def test_nodes_with_node_local_dispatch_is_exit_1_in_json() -> None:
    result = invoke("probe", "--nodes", "2", "--fault", "cluster-node-local", "--format", "json",
                    "--quiet")
    assert result.exit_code == 1, result.output
    doc = report_of(result)
    assert len(doc["endpoints"]) == 2
    assert "2 nodes" in doc["target"] and "cluster-node-local" in doc["target"]
    checks = {c["id"]: c for c in doc["checks"]}
    ids = [c["id"] for c in doc["checks"]]
    assert ids[ids.index("strategy") + 1:ids.index("strategy") + 4] == CROSS
    assert (checks["cross_node_once"]["status"], checks["cross_node_once"]["result"]) == (
        "fail", "one copy per node: bridged or node-local dispatch")
    assert checks["cross_node_delivery"]["status"] == "pass"
    assert doc["exactly_once"] is False
    assert "failed: One copy across nodes" in doc["verdict"]


def test_two_brokers_of_one_emulated_cluster_pass_and_show_the_nodes() -> None:
    with Emulator(nodes=2) as em:
        first, second = em.urls
        result = invoke("probe", "--broker", first, "--broker", second)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"nodes      1: {first}, 2: {second}" in out
    assert "Cross-node" in out  # titles wrap in the check column
    assert "✔ exactly once" in out and "✔ one copy" in out and "✔ no preference" in out


def test_local_strategy_is_the_reported_strategy() -> None:
    result = invoke("probe", "--nodes", "2", "--strategy", "local", "--format", "json",
                    "--quiet")
    assert result.exit_code == 0, result.output
    doc = report_of(result)
    assert doc["strategy"]["name"] == "local", doc["strategy"]["evidence"]
    assert doc["strategy"]["scores"]["local"] >= 0.8
    local = next(c for c in doc["checks"] if c["id"] == "local_preference")
    assert local["status"] == "warn" and local["data"]["preference"] == "local"


def test_junit_has_a_test_case_per_cross_node_check() -> None:
    result = invoke("probe", "--nodes", "2", "--fault", "cluster-no-route", "--format",
                    "junit", "--quiet")
    assert result.exit_code == 1, result.output
    suite = ET.fromstring(result.stdout.split("\n", 1)[1])
    cases = {c.get("name", "").split(":")[0]: c for c in suite.iter("testcase")}
    assert set(CROSS) <= set(cases)
    failure = cases["cross_node_delivery"].find("failure")
    assert failure is not None
    assert failure.get("message") == ("never arrived: the endpoints are not one cluster "
                                      "(no route between them)")
    assert cases["local_preference"].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert str(props["node.1"]).startswith("mqtt://127.0.0.1:") and "node.2" in props


def test_one_endpoint_keeps_the_one_broker_report() -> None:
    with Emulator(nodes=2) as em:
        result = invoke("probe", "--broker", em.url, "--format", "json", "--quiet")
    doc = report_of(result)
    assert result.exit_code == 0
    assert doc["target"] == em.url and doc["endpoints"] == [em.url]
    assert not set(CROSS) & {c["id"] for c in doc["checks"]}


def test_an_unreachable_second_broker_is_exit_3() -> None:
    dead = free_port()
    with Emulator() as em:
        result = invoke("probe", "--broker", em.url, "--broker", f"mqtt://127.0.0.1:{dead}",
                        "--format", "json", "--quiet")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert f"node 2 (mqtt://127.0.0.1:{dead})" in doc["error"]
    assert doc["endpoints"] == []


def test_nodes_and_emulator_options_refuse_broker() -> None:
    result = invoke("probe", "--broker", "mqtt://127.0.0.1:1", "--nodes", "2")
    assert result.exit_code == 2
    assert "--nodes" in one_error_line(result)
    result = invoke("probe", "--nodes", "0")
    assert result.exit_code == 2
