"""Pure rules behind issue 8 item 3 for the probe: no broker, no sockets.

- nothing reaching the members is "literal" only when a plain subscriber of the same topics
  got the messages; otherwise the publishes went nowhere ("denied");
- a report whose share runs were denied exits 3 unless something was really wrong (1);
- messages held for the busy member (queued behind an in-flight limit) count as given to it,
  so such a broker is not a pull queue;
- ``--topic-prefix`` values.
"""

from __future__ import annotations

import pytest

from aetherdiag.exitcodes import ExitCode
from aetherdiag.probe.context import check_topic_prefix
from aetherdiag.probe.fingerprint import Guess, combine, pull_test
from aetherdiag.probe.model import Check, ProbeReport, Status
from aetherdiag.probe.share import classify_share, plain_filter


def _none(n: int) -> dict[int, list[tuple[int, bool]]]:
    return {seq: [] for seq in range(n)}


def test_nothing_anywhere_is_denied_not_literal() -> None:
    assert classify_share(9, _none(9), 3, control=0).behaviour == "denied"


def test_control_got_them_is_literal() -> None:
    assert classify_share(9, _none(9), 3, control=9).behaviour == "literal"


def test_refused_publishes_or_plain_subscription_is_denied() -> None:
    out = classify_share(0, {}, 3, denied="every PUBLISH was refused: PUBACK 0x87")
    assert out.behaviour == "denied"


def test_plain_filter() -> None:
    assert plain_filter("$share/g/a/b/+") == "a/b/+"
    assert plain_filter("$queue/a/+") == "a/+"
    assert plain_filter("a/b") == "a/b"


def _report(share: dict[str, str | None], status: Status = Status.PASS) -> ProbeReport:
    check = Check(id="x", title="x", status=status, result="-", evidence="-", spec="-",
                  meaning="-")
    return ProbeReport(target="t", run_id="r", topic_prefix="p/r", protocols=(),
                       share_behaviour=share, strategy=None, checks=(check,), duration_s=0.0)


@pytest.mark.parametrize(("share", "status", "code"), [
    ({"3.1.1": "denied", "5": "denied"}, Status.PASS, ExitCode.UNREACHABLE),
    ({"3.1.1": "denied", "5": "balanced"}, Status.PASS, ExitCode.UNREACHABLE),
    ({"3.1.1": None, "5": "denied"}, Status.SKIP, ExitCode.UNREACHABLE),
    ({"3.1.1": "denied", "5": "fanout"}, Status.PASS, ExitCode.DUPLICATES),
    ({"3.1.1": "denied", "5": "denied"}, Status.FAIL, ExitCode.DUPLICATES),
    ({"3.1.1": "balanced", "5": "balanced"}, Status.PASS, ExitCode.OK),
    ({"3.1.1": "literal", "5": "literal"}, Status.PASS, ExitCode.DUPLICATES),
])
def test_exit_code_of_denied_runs(share: dict[str, str | None], status: Status,
                                  code: ExitCode) -> None:
    report = _report(share, status)
    assert report.exit_code == code
    assert not (code != ExitCode.OK and report.exactly_once)


def test_held_for_the_busy_member_is_not_a_pull_queue() -> None:
    """Mosquitto with max_inflight_messages 1: the busy member had 1 message in flight and 9
    queued for it; they arrive once it acknowledges."""
    pull = pull_test(10, 30, 3, held=9)
    assert not pull.starved
    guess = combine(Guess(name="round_robin", scope="group", confidence=0.99), pull)
    assert (guess.name, guess.scope) == ("round_robin", "group")
    # a real pull queue: the busy member got its first message and nothing more
    assert combine(Guess(name="round_robin", scope="group"), pull_test(1, 30, 3)).name \
        == "least_inflight"


@pytest.mark.parametrize(("given", "expected"), [
    ("ok", "ok"), ("team/ci/", "team/ci"), ("/lead", "/lead"), ("a b/ü", "a b/ü"),
])
def test_topic_prefix_accepted(given: str, expected: str) -> None:
    assert check_topic_prefix(given) == expected


@pytest.mark.parametrize("bad", ["", "//", "a/+", "#", "$share/x", "a\nb", "\ud800", "y" * 201])
def test_topic_prefix_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        check_topic_prefix(bad)
