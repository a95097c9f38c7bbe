"""The probe's results: frozen values that flow from the checks to rendering.

How this works: every check returns one ``Check`` (what was observed, what the spec says, what
it means for a worker pool, plus machine-readable ``data``); the runner collects them with the
protocol answers and the strategy guess into a ``ProbeReport`` whose ``exit_code`` is decided
in one place (``verdict``). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..exitcodes import ExitCode
from ..mqtt.protocol import Protocol
from .fingerprint import Guess

BALANCED = "balanced"
FANOUT = "fanout"
LITERAL = "literal"
REFUSED = "refused"
# The broker refused (or silently dropped) the probe's OWN plain subscriptions or publishes,
# e.g. an ACL: nothing about $share can be concluded, so this is never "literal" or "refused".
DENIED = "denied"

TOPIC_PREFIX_HINT = (
    "hint: the broker refused the probe's own subscriptions or publishes (an ACL?); rerun "
    "with --topic-prefix PREFIX, a topic tree this client may publish and subscribe to, "
    "with $share subscriptions allowed on it")


def version_label(version: str) -> str:
    """How reports name a protocol version: ``"5"`` -> ``"5.0"``, ``"3.1.1"`` unchanged."""
    return "5.0" if version == "5" else version


class Status(StrEnum):
    PASS = "pass"  # behaves as the spec says / safe for a worker pool
    WARN = "warn"  # legal or harmless for exclusivity, but worth knowing
    FAIL = "fail"  # a message can reach more than one member, or shared subs do not work
    INFO = "info"  # an observation without a right answer
    SKIP = "skip"  # not run (not applicable, out of time, or the step failed)


@dataclass(frozen=True, kw_only=True)
class Check:
    id: str
    title: str
    status: Status
    result: str  # a few words: "DISCONNECT 0x82", "redispatched", ...
    evidence: str  # what the probe did and saw
    spec: str  # what MQTT 5.0 (or the broker convention) says
    meaning: str  # what it means for a worker pool
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ProtocolInfo:
    version: Protocol
    accepted: bool
    connack: int | None  # the CONNACK's code as sent; None: closed before CONNACK
    detail: str
    # the protocol the CONNACK was written in: a 3.1.1 return code or a v5 reason code (a v5
    # CONNECT may get a 3.1.1 CONNACK back: NATS answers return code 1); None: no CONNACK
    connack_protocol: Protocol | None = None
    connect_ms: float = 0.0
    properties: Mapping[str, Any] = field(default_factory=dict)
    shared_available: bool | None = None  # v5 property 0x2A; None when absent (= available)


@dataclass(frozen=True, kw_only=True)
class ProbeReport:
    target: str
    run_id: str
    endpoints: tuple[str, ...] = ()  # every endpoint's URL, node 1 first
    topic_prefix: str  # every topic the probe used starts with this
    protocols: tuple[ProtocolInfo, ...]
    share_behaviour: Mapping[str, str | None]  # "3.1.1" / "5" -> one of the behaviours above
    strategy: Guess | None
    checks: tuple[Check, ...]
    duration_s: float
    notes: tuple[str, ...] = ()
    # MQTT 5.0 was refused and the runs and checks used 3.1.1: how, in one line ("": no)
    fallback: str = ""

    @property
    def exactly_once(self) -> bool:
        """Shared subscriptions work and no message reached two members or one member twice."""
        behaviours = [b for b in self.share_behaviour.values() if b is not None]
        return (
            BALANCED in behaviours
            and all(b in (BALANCED, REFUSED) for b in behaviours)
            and not any(c.status is Status.FAIL for c in self.checks)
        )

    @property
    def denied(self) -> bool:
        """The broker refused the probe's own subscriptions or publishes (see ``DENIED``)."""
        return any(b == DENIED for b in self.share_behaviour.values())

    @property
    def exit_code(self) -> ExitCode:
        """0 exactly once; 1 a finding against $share (fanout, literal, a failed check);
        3 (like an unreachable broker) when the broker refused the probe's own topics and
        nothing else failed: the probe could not do its job there."""
        if self.exactly_once:
            return ExitCode.OK
        if self.denied and not _findings(self.share_behaviour, self.checks):
            return ExitCode.UNREACHABLE
        return ExitCode.DUPLICATES

    @property
    def verdict(self) -> str:
        return verdict(self.share_behaviour, self.checks)


def _findings(share: Mapping[str, str | None], checks: Sequence[Check]) -> bool:
    """Something observed that is wrong for a worker pool (not merely untested)."""
    return (any(b in (FANOUT, LITERAL) for b in share.values())
            or any(c.status is Status.FAIL for c in checks))


def verdict(share: Mapping[str, str | None], checks: Sequence[Check]) -> str:
    """One sentence for the bottom of the report."""
    behaviours = {v: b for v, b in share.items() if b is not None}
    failed = [c.title for c in checks if c.status is Status.FAIL]
    if DENIED in behaviours.values() and not _findings(share, checks):
        which = ", ".join(f"MQTT {version_label(v)}" for v, b in behaviours.items()
                          if b == DENIED)
        rest = "; ".join(f"MQTT {version_label(v)}: {DESCRIBE[b]}"
                         for v, b in behaviours.items() if b != DENIED)
        return (f"not tested: the broker refused the probe's own subscriptions or publishes "
                f"({which}), so $share could not be judged there" + (f" ({rest})" if rest
                                                                      else ""))
    if behaviours and all(b == BALANCED for b in behaviours.values()) and not failed:
        return "shared subscriptions deliver each message to exactly one member"
    parts = []
    for version, b in behaviours.items():
        if b != BALANCED:
            parts.append(f"MQTT {version_label(version)}: {DESCRIBE[b]}")
    if failed:
        parts.append("failed: " + "; ".join(failed))
    if BALANCED in behaviours.values() and all(
            b in (BALANCED, REFUSED) for b in behaviours.values()) and not failed:
        return ("shared subscriptions deliver each message to exactly one member ("
                + "; ".join(parts) + ")")
    return "shared subscriptions do NOT deliver each message to exactly one member: " + (
        "; ".join(parts) or "no protocol version could be tested")


DESCRIBE: dict[str, str] = {
    BALANCED: "each message to exactly one member",
    FANOUT: "every member gets the messages ($share fanned out)",
    LITERAL: "$share subscription accepted but nothing arrives (taken literally)",
    REFUSED: "$share subscription refused",
    DENIED: "the probe's own subscriptions or publishes were refused (not authorized / ACL)",
}
