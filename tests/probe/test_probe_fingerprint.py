"""The strategy fingerprint and share classification as pure functions: no broker, no sockets.

Delivery sequences come from the emulator's own dispatchers (sharing.py) driven over the
probe's schedule, so these tests pin the fingerprint to exactly what the emulator does.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aetherdiag.emulator.sharing import STRATEGIES, DispatchContext, make_dispatcher
from aetherdiag.probe.fingerprint import (
    Guess,
    PullResult,
    Slot,
    binom_cdf,
    chi_square_p,
    combine,
    design,
    fingerprint,
    fits,
    percent,
    publisher_blocks,
    pull_test,
)
from aetherdiag.probe.share import classify_share

MEMBERS = ["m1", "m2", "m3"]
SCHEDULE = design(96, 6, 10, 4)


def simulate(strategy: str, schedule: tuple[Slot, ...] = SCHEDULE, *, run: str = "r1",
             faults: frozenset[str] = frozenset(), seed: int | None = 3,
             load: Callable[[str], int] = lambda _m: 0) -> dict[int, int]:
    """seq -> member index, as the emulator's dispatcher would choose."""
    dispatcher = make_dispatcher(strategy, seed, faults)
    out: dict[int, int] = {}
    for slot in schedule:
        ctx = DispatchContext(publisher=f"adprobe-{run}-d-p{slot.publisher + 1}",
                              topic=f"aetherdiag-probe/{run}/d/t{slot.topic}", inflight=load)
        chosen = dispatcher.choose(MEMBERS, lambda _m: True, ctx)
        assert chosen is not None
        out[slot.seq] = MEMBERS.index(chosen)
    return out


def test_design_crosses_publishers_and_topics() -> None:
    assert [s.seq for s in SCHEDULE] == list(range(96))
    blocks = publisher_blocks(SCHEDULE)
    assert len(blocks) == 24 and all(len(b) == 4 for b in blocks)
    assert {b[0].publisher for b in blocks[:6]} == set(range(6))
    for publisher in range(6):
        assert len({s.topic for s in SCHEDULE if s.publisher == publisher}) >= 8
    for topic in range(10):
        assert len({s.publisher for s in SCHEDULE if s.topic == topic}) >= 3


@pytest.mark.parametrize("strategy", ["round_robin", "random", "sticky", "hash_clientid",
                                      "hash_topic"])
def test_each_emulator_strategy_is_recognised(strategy: str) -> None:
    guess = fingerprint(SCHEDULE, simulate(strategy), 3)
    assert guess.name == strategy, guess.evidence
    assert guess.confidence >= 0.8
    assert sum(guess.counts) == 96
    if strategy == "round_robin":
        assert guess.scope == "group"


def test_per_publisher_round_robin() -> None:
    guess = fingerprint(SCHEDULE, simulate("round_robin", faults=frozenset({"per-publisher-rr"})),
                        3)
    assert (guess.name, guess.scope) == ("round_robin", "publisher"), guess.evidence
    assert guess.confidence >= 0.9
    assert guess.label == "round_robin (per publisher)"


def test_least_inflight_needs_the_slow_member_run() -> None:
    # With every member idle it deals in turn, like round robin ...
    fast = fingerprint(SCHEDULE, simulate("least_inflight"), 3)
    assert fast.name == "round_robin"
    # ... but a member that never acknowledges gets only the very first message.
    loads = {"m1": 0, "m2": 0, "m3": 0}
    dispatcher = make_dispatcher("least_inflight", None, frozenset())
    slow = 0
    for _ in range(30):
        ctx = DispatchContext(publisher="p", topic="t", inflight=loads.__getitem__)
        chosen = dispatcher.choose(MEMBERS, lambda _m: True, ctx)
        if chosen == "m1":
            slow += 1
            loads["m1"] += 1  # m1 never acks; the others ack before the next message
    pull = pull_test(slow, 30, 3)
    assert pull.starved and slow == 1
    merged = combine(fast, pull)
    assert merged.name == "least_inflight" and merged.confidence >= 0.9


@pytest.mark.parametrize("seed", range(12))
def test_random_is_not_mistaken_for_structure(seed: int) -> None:
    guess = fingerprint(SCHEDULE, simulate("random", seed=seed), 3)
    assert guess.name == "random", guess.evidence
    assert 0.5 <= guess.confidence <= 1.0


@pytest.mark.parametrize("run", [f"run{i}" for i in range(8)])
def test_hash_clientid_with_any_run_id(run: str) -> None:
    guess = fingerprint(SCHEDULE, simulate("hash_clientid", run=run), 3)
    # 6 publishers all hashing to one member (p = 1/243) looks sticky; the runner then asks
    # fresh publishers (dispatch.sticky_run). Any other outcome must be hash_clientid.
    assert guess.name in ("hash_clientid", "sticky"), guess.evidence


def test_hash_topic_is_not_confused_with_round_robin() -> None:
    rr = fits(SCHEDULE, simulate("round_robin"))
    assert rr.topic_purity < 0.6 and rr.publisher_purity < 0.6
    ht = fits(SCHEDULE, simulate("hash_topic"))
    assert ht.topic_purity == 1.0 and ht.rr_group < 0.9


def test_missing_messages_still_fingerprint() -> None:
    got = simulate("round_robin")
    for seq in (5, 17, 40, 41):
        del got[seq]
    guess = fingerprint(SCHEDULE, got, 3)
    assert guess.name == "round_robin" and guess.messages == 92


def test_too_few_messages_is_unknown() -> None:
    schedule = design(6, 1, 6, 6)
    guess = fingerprint(schedule, {s.seq: s.seq % 3 for s in schedule}, 3)
    assert guess.name == "unknown" and guess.confidence == 0.0


def test_two_explanations_halve_the_confidence() -> None:
    # Members 1 and 2 alternate and member 3 gets nothing: with 10 topics the topic's parity
    # predicts the member as well as the 2-cycle does, so both fit and neither is sure.
    guess = fingerprint(SCHEDULE, {s.seq: s.seq % 2 for s in SCHEDULE}, 3)
    assert guess.name in ("hash_topic", "round_robin")
    assert guess.confidence < 0.6 and "also consistent with" in guess.evidence
    assert guess.counts == (48, 48, 0)


def test_unexplained_pattern_is_unknown() -> None:
    # Member 1 gets every other message, members 2 and 3 share the rest in runs: no cycle,
    # no key, not uniform.
    got = {s.seq: (0 if s.seq % 2 else 1 + (s.seq // 10) % 2) for s in SCHEDULE}
    guess = fingerprint(SCHEDULE, got, 3)
    assert guess.name == "unknown" and guess.confidence == 0.0
    assert "closest" in guess.evidence


def test_confidence_is_reproducible() -> None:
    got = simulate("random", seed=1)
    assert fingerprint(SCHEDULE, got, 3) == fingerprint(SCHEDULE, got, 3)


def test_pull_test_even_split_is_not_a_pull_queue() -> None:
    result = pull_test(10, 30, 3)
    assert not result.starved and result.confidence > 0.95
    guess = Guess(name="round_robin", scope="group", confidence=0.99)
    assert combine(guess, result).name == "round_robin"
    assert combine(guess, None) is guess


def test_pull_does_not_override_sticky_or_hash() -> None:
    starved = PullResult(starved=True, slow=0, total=30, confidence=0.99, evidence="x")
    for name in ("sticky", "hash_topic", "hash_clientid"):
        assert combine(Guess(name=name, confidence=0.9), starved).name == name
    assert combine(Guess(name="round_robin", scope="publisher"), starved).scope == "publisher"


def test_pull_test_too_few() -> None:
    assert not pull_test(0, 5, 3).starved


def test_statistics_helpers() -> None:
    assert binom_cdf(30, 30, 0.3) == pytest.approx(1.0)
    assert binom_cdf(0, 3, 0.5) == pytest.approx(0.125)
    assert chi_square_p([10, 10, 10]) == pytest.approx(1.0)
    assert chi_square_p([30, 0, 0]) < 1e-9
    assert chi_square_p([5, 15]) == pytest.approx(0.0253, abs=1e-3)  # df 1: odd branch
    assert chi_square_p([]) == 1.0
    assert percent(0.995) == "99%" and percent(1.0) == "100%" and percent(0.0) == "0%"


def test_strategy_names_are_the_emulators() -> None:
    from aetherdiag.probe.fingerprint import STRATEGIES as NAMES
    from aetherdiag.probe.fingerprint import strategy_names

    assert set(NAMES) == set(STRATEGIES)
    # local (prefer the publisher's node) only shows across endpoints: one node sees the
    # members of that node only, so a probe of one endpoint never names it
    assert set(strategy_names(1)) == set(STRATEGIES) - {"local"}
    assert set(strategy_names(2)) == set(STRATEGIES)


# -- classify_share ----------------------------------------------------------------------------


def _spread(n: int, members: int) -> dict[int, list[tuple[int, bool]]]:
    return {seq: [(seq % members, False)] for seq in range(n)}


def test_classify_balanced() -> None:
    out = classify_share(9, _spread(9, 3), 3)
    assert out.behaviour == "balanced" and out.distinct == 9 and not out.missing


def test_classify_fanout_every_member() -> None:
    got = {seq: [(m, False) for m in range(3)] for seq in range(9)}
    out = classify_share(9, got, 3)
    assert out.behaviour == "fanout" and "every one of 3 members" in out.detail
    assert out.cross_member == 9 and out.delivered == 27


def test_classify_partial_fanout() -> None:
    got = _spread(9, 3)
    got[4].append((0, False))
    out = classify_share(9, got, 3)
    assert out.behaviour == "fanout" and out.cross_member == 1


def test_classify_literal_and_refused() -> None:
    empty: dict[int, list[tuple[int, bool]]] = {seq: [] for seq in range(9)}
    assert classify_share(9, empty, 3).behaviour == "literal"
    refused = classify_share(9, empty, 3, refusal="SUBACK 0x9E")
    assert refused.behaviour == "refused" and refused.detail == "SUBACK 0x9E"


def test_classify_repeats_and_missing() -> None:
    got = _spread(9, 3)
    got[2].append((2, True))
    got[3] = []
    out = classify_share(9, got, 3)
    assert out.behaviour == "balanced"
    assert (out.repeats, out.repeats_dup, out.missing) == (1, 1, 1)
    assert "1 of 9 never arrived" in out.detail


def test_a_cycle_must_visit_every_member_in_use() -> None:
    f = fits(SCHEDULE, {s.seq: [0, 1, 0, 2][s.seq % 4] for s in SCHEDULE})
    assert not f.rr_group_cycle  # member 0's successor alternates: no single cycle
    g = fits(SCHEDULE, {s.seq: s.seq % 3 for s in SCHEDULE})
    assert g.rr_group == 1.0 and g.rr_group_cycle
