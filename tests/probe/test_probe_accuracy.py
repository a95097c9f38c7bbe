"""The probe's own accuracy test: every emulator strategy and every fault mode, recognised.

Each case starts a fresh emulator on a free port, runs the whole probe against it and checks
the verdicts a user would read. Run ids are fixed per case so hashes (and therefore results)
are reproducible. A strategy that only shows across nodes (``local``) is probed on a 2-node
emulated cluster, with both endpoints; the cluster faults on one endpoint change nothing (the
cross-node checks are in test_probe_cross_node.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.probe import explain, rows

from aetherdiag.emulator import FAULTS, STRATEGIES, Emulator
from aetherdiag.harness.model import BrokerTarget
from aetherdiag.probe import ProbeOptions, ProbeReport, run_probe

# What a spec-following broker shows in the rule checks (the emulator without faults).
COMPLIANT: dict[str, tuple[str, str]] = {
    "connect_v311": ("pass", "accepted"),
    "connect_v5": ("pass", "accepted"),
    "shared_sub_available": ("pass", "1 (available)"),
    "share_v311": ("pass", "balanced"),
    "share_v5": ("pass", "balanced"),
    "duplicates": ("pass", "none"),
    "retained": ("pass", "not sent"),
    "no_local": ("pass", "DISCONNECT 0x82 (protocol error)"),
    "publish_to_share": ("pass", "refused (PUBACK 0x87 (not authorized))"),
    "malformed_share": ("pass", "all refused (SUBACK 0x8F (topic filter invalid))"),
    "qos1_drop_clean": ("pass", "redispatched to another member"),
    "qos1_drop_persistent": ("pass", "redispatched to another member"),
    "qos2_drop": ("pass", "not moved"),
    "offline_member": ("pass", "connected members only"),
    "expired_session": ("pass", "handed to another member"),
    "redispatch_wildcard": ("pass", "same for both"),
    "queue_prefix": ("info", "supported"),
}

# fault -> the rows that change (status, result), the share behaviour per version, exit code
FAULT_EXPECT: dict[str, dict[str, Any]] = {
    "share-fanout": {
        "share": ("fanout", "fanout"), "exit": 1, "strategy": None,
        "rows": {"share_v311": ("fail", "fanout"), "share_v5": ("fail", "fanout"),
                 "queue_prefix": ("warn", "fanout")},
    },
    "share-literal": {
        "share": ("literal", "literal"), "exit": 1, "strategy": None,
        "rows": {"share_v311": ("fail", "literal"), "share_v5": ("fail", "literal"),
                 "publish_to_share": ("warn", "delivered literally"),
                 "no_local": ("warn", "accepted (SUBACK 0x01)"),
                 "queue_prefix": ("info", "not supported (taken literally)"),
                 "retained": ("skip", "not tested"), "qos2_drop": ("skip", "not tested")},
    },
    "share-unsupported": {
        "share": ("refused", "refused"), "exit": 1, "strategy": None,
        "rows": {"shared_sub_available": ("warn", "0 (not available)"),
                 "share_v311": ("fail", "refused"), "share_v5": ("fail", "refused"),
                 "queue_prefix": ("info", "refused (0x9E (shared subscriptions not "
                                          "supported))")},
    },
    "redeliver": {
        "share": ("balanced", "balanced"), "exit": 1, "strategy": ("round_robin", "group"),
        "rows": {"duplicates": ("fail", None)},
    },
    "lose-on-disconnect": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {"qos1_drop_clean": ("warn", "lost"),
                 "qos1_drop_persistent": ("warn", "held for the member"),
                 "expired_session": ("warn", "dropped at expiry"),
                 "redispatch_wildcard": ("info", "not redispatched (either)")},
    },
    "offline-member-keeps-share": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {"offline_member": ("warn", "keeps its turn (parked)"),
                 "qos1_drop_persistent": ("warn", "held for the member")},
    },
    "expired-session-drops": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {"expired_session": ("warn", "dropped at expiry")},
    },
    "redispatch-misses-wildcards": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {"redispatch_wildcard": ("warn", "lost for wildcard filters"),
                 # the probe's other groups use '+' filters too
                 "qos1_drop_clean": ("warn", "lost"),
                 "qos1_drop_persistent": ("warn", "held for the member"),
                 "expired_session": ("warn", "dropped at expiry")},
    },
    "share-retained": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {"retained": ("warn", "sent")},
    },
    "per-publisher-rr": {
        "share": ("balanced", "balanced"), "exit": 0,
        "strategy": ("round_robin", "publisher"), "rows": {},
    },
    # one message in flight per member: the drop checks' silent member holds only one
    "reorder": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {"qos1_drop_clean": ("skip", "not tested"),
                 "qos1_drop_persistent": ("skip", "not tested")},
    },
    # cluster faults change nothing on one node (the probe here sees one endpoint)
    "cluster-node-local": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {},
    },
    "cluster-no-route": {
        "share": ("balanced", "balanced"), "exit": 0, "strategy": ("round_robin", "group"),
        "rows": {},
    },
}
# strategies only several endpoints show: on one node EMQX's local deals in turn among that
# node's members
ACROSS_NODES = {"local"}


def probe(strategy: str = "round_robin", faults: tuple[str, ...] = (), run_id: str = "acc",
          protocol: str | None = None, nodes: int = 1) -> ProbeReport:
    with Emulator(strategy=strategy, faults=faults, seed=11, nodes=nodes) as em:
        started = time.monotonic()
        report = run_probe(BrokerTarget(host=em.host, port=em.port),
                           ProbeOptions(timeout=30.0, run_id=run_id, protocol=protocol),
                           targets=[BrokerTarget(host=em.host, port=p) for p in em.ports]
                           if nodes > 1 else ())
        elapsed = time.monotonic() - started
    assert elapsed < 15.0, f"probe took {elapsed:.1f} s"
    return report


def test_fault_table_covers_every_fault() -> None:
    assert set(FAULT_EXPECT) == set(FAULTS)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_recognises_strategy(strategy: str) -> None:
    report = probe(strategy, run_id=f"acc{list(STRATEGIES).index(strategy)}s",
                   nodes=2 if strategy in ACROSS_NODES else 1)
    assert report.strategy is not None, explain(report)
    assert report.strategy.name == strategy, report.strategy.evidence
    assert report.strategy.scope == ("group" if strategy == "round_robin" else None)
    assert report.strategy.confidence >= 0.8, report.strategy.evidence
    assert dict(report.share_behaviour) == {"3.1.1": "balanced", "5": "balanced"}
    assert report.exit_code == 0 and report.exactly_once
    got = rows(report)
    assert {k: got[k] for k in COMPLIANT} == COMPLIANT, explain(report)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_recognises_fault(fault: str) -> None:
    expect = FAULT_EXPECT[fault]
    report = probe(faults=(fault,), run_id=f"acc{list(FAULTS).index(fault)}f")
    assert (report.share_behaviour["3.1.1"], report.share_behaviour["5"]) == expect["share"]
    assert int(report.exit_code) == expect["exit"], explain(report)
    if expect["strategy"] is None:
        assert report.strategy is None
    else:
        assert report.strategy is not None
        assert (report.strategy.name, report.strategy.scope) == expect["strategy"]
        assert report.strategy.confidence >= 0.8
    got = rows(report)
    for cid, (status, result) in expect["rows"].items():
        assert got[cid][0] == status, explain(report)
        if result is not None:
            assert got[cid][1] == result, explain(report)
    # every row the fault does not touch still reads like a compliant broker
    untouched = {k: v for k, v in COMPLIANT.items() if k not in expect["rows"]}
    if expect["share"] == ("balanced", "balanced"):
        assert {k: got[k] for k in untouched} == untouched, explain(report)


@pytest.mark.parametrize(("strategy", "faults", "qos1"), [
    ("round_robin", (), ("pass", "redispatched to another member")),
    ("least_inflight", ("lose-on-disconnect",), ("warn", "held for the member")),
])
def test_main_run_on_mqtt_311(strategy: str, faults: tuple[str, ...],
                              qos1: tuple[str, str]) -> None:
    """--mqtt 3.1.1: the fingerprint, manual acks and persistent sessions of 3.1.1 clients."""
    report = probe(strategy, faults, run_id=f"acc{strategy[:2]}v3", protocol="3.1.1")
    assert report.strategy is not None and report.strategy.name == strategy, explain(report)
    share_v311 = next(c for c in report.checks if c.id == "share_v311")
    assert share_v311.data["published"] == 96  # the main run used 3.1.1
    got = rows(report)
    assert got["qos1_drop_persistent"] == qos1, explain(report)
    assert got["malformed_share"] == ("pass", "all refused (SUBACK 0x80 (unspecified error / "
                                              "failure))")
    assert got["publish_to_share"] == ("info", "accepted, delivered to nobody")
    assert got["no_local"][0] == "pass"  # still asked with a 5.0 client
    assert report.exit_code == 0
