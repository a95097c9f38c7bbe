"""The shared-subscription run: the experiment behind the ``$share`` verdicts and the strategy
fingerprint.

How this works: ``share_run`` connects its members, publishers and a plain "control"
subscriber through the ``Context`` (context.py); members subscribe (in order) to a filter,
publishers send a schedule in acknowledged blocks so the broker sees a known order, and the
result says which member got which message. The control subscriber of the same topics tells a
broker that takes ``$share`` literally (the control gets the messages, the members do not)
from one that refused or dropped the probe's own publishes. ``classify_share`` (pure) turns
that into balanced / fanout / literal / refused / denied.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..mqtt.protocol import Protocol
from .client import Answer, ProbeClient
from .context import Context, rc_text, sleep, wait_until
from .fingerprint import Slot, publisher_blocks
from .model import BALANCED, DENIED, FANOUT, LITERAL, REFUSED

NOT_AUTHORIZED = 0x87


@dataclass(frozen=True, kw_only=True)
class ShareOutcome:
    """``classify_share``'s verdict on one run."""

    behaviour: str  # balanced | fanout | literal | refused | denied
    detail: str
    published: int  # messages the broker accepted (refused publishes do not count)
    delivered: int  # deliveries counted with repeats
    distinct: int  # messages that reached at least one member
    cross_member: int  # messages that reached more than one member
    repeats: int  # extra copies to a member that already had the message
    repeats_dup: int  # ... of which carried the DUP flag
    missing: int


def classify_share(
    published: int, deliveries: Mapping[int, Sequence[tuple[int, bool]]], members: int,
    refusal: str | None = None, *, denied: str | None = None, control: int | None = None,
) -> ShareOutcome:
    """balanced / fanout / literal / refused / denied from who got what (seq -> [(member,
    dup)]).

    ``denied``: why the broker refused the probe's own plain subscription or its publishes.
    ``control``: how many of the messages a plain subscriber of the same topics got (None:
    not asked). Nothing reaching the members is "literal" only when the control got messages;
    when the control got nothing either, the publishes went nowhere: "denied".
    """
    delivered = sum(len(v) for v in deliveries.values())
    distinct = sum(1 for v in deliveries.values() if v)
    cross = sum(1 for v in deliveries.values() if len({m for m, _ in v}) > 1)
    repeats = repeats_dup = 0
    for got in deliveries.values():
        seen: set[int] = set()
        for member, dup in got:
            if member in seen:
                repeats += 1
                repeats_dup += int(dup)
            seen.add(member)
    everyone = sum(1 for v in deliveries.values() if len({m for m, _ in v}) >= members)
    missing = max(0, published - distinct)
    common = dict(published=published, delivered=delivered, distinct=distinct,
                  cross_member=cross, repeats=repeats, repeats_dup=repeats_dup, missing=missing)
    if denied is not None:
        return ShareOutcome(behaviour=DENIED, detail=denied, **common)
    if refusal is not None:
        return ShareOutcome(behaviour=REFUSED, detail=refusal, **common)
    if not distinct:
        if control == 0 and published:
            return ShareOutcome(
                behaviour=DENIED,
                detail=f"none of {published} messages arrived, not even at a plain subscriber "
                       "of the same topics: the broker dropped the probe's publishes", **common)
        seen_by = f"; a plain subscriber of the same topics got {control}" if control else ""
        return ShareOutcome(
            behaviour=LITERAL,
            detail=f"subscriptions accepted, none of {published} messages arrived{seen_by}",
            **common)
    if cross:
        if everyone == published and members > 1:
            detail = f"every one of {members} members got every message ({delivered} " \
                     f"deliveries for {published} messages)"
        else:
            detail = f"{cross} of {published} messages reached more than one member"
        return ShareOutcome(behaviour=FANOUT, detail=detail, **common)
    detail = f"each of {distinct} messages reached exactly one of {members} members"
    if missing:
        detail += f"; {missing} of {published} never arrived"
    return ShareOutcome(behaviour=BALANCED, detail=detail, **common)


@dataclass(frozen=True, kw_only=True)
class ShareRun:
    version: Protocol
    topic_filter: str
    members: int
    schedule: tuple[Slot, ...]
    suback: tuple[int, ...]  # first SUBACK code of each member that got one
    refusal: str | None
    refused_code: int | None
    deliveries: dict[int, list[tuple[int, bool]]]  # seq -> [(member index, dup)]
    publish_failures: int  # publishes refused or not acknowledged in time
    outcome: ShareOutcome
    accepted: frozenset[int] = frozenset()  # seqs whose PUBLISH the broker accepted
    control: int | None = None  # messages the plain control subscriber got
    released: int = 0  # slow_first: messages member 0 got only once it acknowledged

    def recipients(self) -> dict[int, int]:
        """seq -> the first member that got it (for the fingerprint)."""
        return {seq: got[0][0] for seq, got in self.deliveries.items() if got}


def plain_filter(topic_filter: str) -> str:
    """``$share/{group}/{filter}`` and ``$queue/{filter}`` -> ``{filter}``."""
    if topic_filter.startswith("$share/") and topic_filter.count("/") >= 2:
        return topic_filter.split("/", 2)[2]
    if topic_filter.startswith("$queue/"):
        return topic_filter[len("$queue/"):]
    return topic_filter


def _answer_code(answer: Answer) -> int | None:
    if answer.disconnect is not None:
        return answer.disconnect
    return answer.codes[0] if answer.codes else None


def _suback_text(answer: Answer, topic_filter: str) -> str:
    """``SUBACK 0x87 (not authorized) for '...'`` / ``DISCONNECT ...`` / ``no SUBACK ...``."""
    if answer.codes is None and answer.disconnect is None:
        return f"no SUBACK for {topic_filter!r}"
    how = "DISCONNECT" if answer.disconnect is not None else "SUBACK"
    return f"{how} {rc_text(_answer_code(answer))} for {topic_filter!r}"


def share_run(
    ctx: Context,
    *,
    tag: str,
    version: Protocol,
    topic_filter: str,
    topic_of: Callable[[Slot], str],
    schedule: Sequence[Slot],
    members: int = 3,
    qos: int = 1,
    slow_first: bool = False,
    sequential: bool = False,
) -> ShareRun:
    """Subscribe ``members`` clients to ``topic_filter`` and publish ``schedule``.

    A plain control client subscribes to the same topics first: if the broker refuses it, or
    refuses the publishes, or the control gets none of them, the broker is refusing the
    probe's own topics (``denied``), whatever it does with ``$share``.
    ``slow_first``: member 0 does not acknowledge until every message is sent (paho
    manual_ack), for the pull test; then it acknowledges everything, and messages the broker
    had queued for it arrive (``released``).
    ``sequential``: publish a few messages at a time and wait for them to arrive before the
    next, so the broker knows every fast member is idle again.
    """
    with ctx.clients() as made:
        subs: list[ProbeClient] = []
        codes: list[int] = []
        refusal: str | None = None
        refused_code: int | None = None
        denied: str | None = None
        roles = [f"{tag}-m{i + 1}" for i in range(members)] + [f"{tag}-c"]
        connected = ctx.connected_many(roles, version, manual_ack_first=slow_first)
        made.extend(connected)
        control = connected[-1]
        plain = plain_filter(topic_filter)
        answer = control.subscribe(plain, qos, ctx.wait_step())
        if answer.refused or answer.codes is None:
            refused_code = _answer_code(answer)
            denied = f"even a plain subscription was refused: {_suback_text(answer, plain)}"
        for member in connected[:members] if denied is None else ():
            subs.append(member)  # subscribe in order: the group's member order
            answer = member.subscribe(topic_filter, qos, ctx.wait_step())
            if answer.codes:
                codes.append(answer.codes[0])
            if answer.refused or answer.codes is None:
                refused_code = _answer_code(answer)
                text = _suback_text(answer, topic_filter)
                if refused_code == NOT_AUTHORIZED:  # an ACL, not a verdict on $share
                    denied = f"the shared subscription was not authorized: {text}"
                else:
                    refusal = text
                break
        publishers: dict[int, ProbeClient] = {}
        answers: dict[int, Answer] = {}
        released: set[int] = set()
        accepted: set[int] = set()
        if refusal is None and denied is None:
            indexes = sorted({s.publisher for s in schedule})
            pubs = ctx.connected_many([f"{tag}-p{i + 1}" for i in indexes], version)
            made.extend(pubs)
            publishers.update(zip(indexes, pubs, strict=True))
            answers = _publish(ctx, tag, schedule, publishers, topic_of, qos, subs, sequential)
            refused = {seq: a for seq, a in answers.items()
                       if a.codes is not None and a.codes[0] >= 0x80}
            accepted = {s.seq for s in schedule if s.seq not in refused}
            if not accepted:
                first = next(iter(refused.values()))
                refused_code = _answer_code(first)
                denied = (f"every PUBLISH to {plain!r} was refused: "
                          f"PUBACK {rc_text(refused_code)}")
            else:
                if not sequential:  # a sequential run waited for each burst already
                    _settle(ctx, tag, subs, control, len(accepted))
                if slow_first and subs:
                    released = _release(ctx, tag, subs, accepted)
        deliveries: dict[int, list[tuple[int, bool]]] = {s: [] for s in sorted(accepted)}
        for index, member in enumerate(subs):
            for msg in member.received():
                seq = ctx.seq_of(tag, msg.payload)
                if seq is not None and seq in deliveries:
                    deliveries[seq].append((index, msg.dup))
        control_got = None if denied is not None or refusal is not None else len(
            _seqs(ctx, tag, [control]) & accepted)
        if slow_first and subs:
            subs[0].ack_all()
            sleep(ctx.wait_quiet(0.25))
        outcome = classify_share(len(accepted), deliveries, members, refusal, denied=denied,
                                 control=control_got)
        failures = sum(1 for a in answers.values() if a.codes is None or a.codes[0] >= 0x80)
        return ShareRun(version=version, topic_filter=topic_filter, members=members,
                        schedule=tuple(schedule), suback=tuple(codes), refusal=refusal,
                        refused_code=refused_code, deliveries=deliveries,
                        publish_failures=failures, outcome=outcome,
                        accepted=frozenset(accepted), control=control_got,
                        released=len(released))


def _seqs(ctx: Context, tag: str, clients: Sequence[ProbeClient]) -> set[int]:
    seqs = set()
    for client in clients:
        for msg in client.received():
            seq = ctx.seq_of(tag, msg.payload)
            if seq is not None:
                seqs.add(seq)
    return seqs


def _distinct(ctx: Context, tag: str, subs: Sequence[ProbeClient]) -> int:
    return len(_seqs(ctx, tag, subs))


def _settle(ctx: Context, tag: str, subs: Sequence[ProbeClient], control: ProbeClient,
            expected: int) -> None:
    """Wait (bounded) until the members have every message or nothing more arrives."""
    # Silence first costs at most a few quiet periods (literal brokers deliver nothing; the
    # control having everything while the members have nothing cuts that short); once
    # messages flow, wait up to a full step for the rest.
    def started() -> bool:
        return _distinct(ctx, tag, subs) > 0 or _distinct(ctx, tag, [control]) >= expected

    if wait_until(started, ctx.budget.cap(max(1.0, 3 * ctx.quiet))):
        if _distinct(ctx, tag, subs):
            wait_until(lambda: _distinct(ctx, tag, subs) >= expected, ctx.wait_step())
        else:
            wait_until(lambda: _distinct(ctx, tag, subs) > 0, ctx.wait_quiet())
    sleep(ctx.wait_quiet(0.5 if _distinct(ctx, tag, subs) else 0.0))


def _release(ctx: Context, tag: str, subs: Sequence[ProbeClient], accepted: set[int]
             ) -> set[int]:
    """Member 0 acknowledges what it holds, and each message it gets from now on, until every
    accepted message has arrived somewhere or nothing more comes. A broker that queued
    messages for the busy member (round robin with an in-flight limit) hands them over now; a
    pull queue has nothing left for it. Returns the seqs member 0 got only now."""
    slow = subs[0]
    before = _seqs(ctx, tag, [slow])
    end = time.monotonic() + ctx.budget.cap(ctx.step)
    idle = max(0.1, ctx.quiet * 0.5)
    while True:
        slow.ack_all()
        arrived = _seqs(ctx, tag, subs)
        if accepted <= arrived:
            break
        left = end - time.monotonic()
        if left <= 0 or not wait_until(
                functools.partial(_more_than, ctx, tag, subs, len(arrived)), min(idle, left),
                poll=0.002):
            break
    slow.ack_all()
    return _seqs(ctx, tag, [slow]) - before


def _more_than(ctx: Context, tag: str, subs: Sequence[ProbeClient], count: int) -> bool:
    return _distinct(ctx, tag, subs) > count


def _publish(
    ctx: Context, tag: str, schedule: Sequence[Slot], publishers: Mapping[int, ProbeClient],
    topic_of: Callable[[Slot], str], qos: int, subs: Sequence[ProbeClient], sequential: bool,
) -> dict[int, Answer]:
    """Send ``schedule``; each block is acknowledged before the next publisher starts.
    Returns each seq's PUBACK (or what answered instead)."""
    answers: dict[int, Answer] = {}
    if sequential:
        # Bursts of (members - 1): a pull queue can serve every idle member once, so only a
        # broker that ignores load sends any of them to the member that never acknowledges.
        burst = max(1, len(subs) - 1)
        gap = min(0.1, 0.02 + ctx.rtt * 0.1)
        latency = 0.0  # the slowest complete burst so far, PUBACKs to last arrival
        for start in range(0, len(schedule), burst):
            chunk = schedule[start:start + burst]
            pub = publishers[chunk[0].publisher]
            items = [(topic_of(s), ctx.payload(tag, s.seq), qos) for s in chunk]
            answers.update(zip((s.seq for s in chunk),
                               pub.publish_many(items, ctx.wait_step()), strict=True))
            acked = time.monotonic()
            wanted = {s.seq for s in chunk}

            def arrived(wanted: set[int] = wanted) -> bool:
                got = {ctx.seq_of(tag, m.payload) for s in subs for m in s.received()[-8:]}
                return wanted <= got

            # A message that does not come is held for the busy member (a broker that queues
            # per member): wait a few delivery times for it, not a whole step, so neither the
            # broker's in-flight limit nor --timeout decides how much of this run is done.
            cap = min(ctx.step, max(0.1, 4 * ctx.rtt, 3 * latency))
            if wait_until(arrived, ctx.budget.cap(cap), poll=0.002):
                latency = max(latency, time.monotonic() - acked)
            sleep(gap)  # let the members' PUBACKs reach the broker first
        return answers
    for block in publisher_blocks(schedule):
        pub = publishers[block[0].publisher]
        items = [(topic_of(s), ctx.payload(tag, s.seq), qos) for s in block]
        answers.update(zip((s.seq for s in block), pub.publish_many(items, ctx.wait_step()),
                           strict=True))
    return answers
