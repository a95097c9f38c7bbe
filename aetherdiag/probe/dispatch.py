"""The dispatch experiments: does ``$share`` work per protocol, and which strategy is it?

How this works: ``main_run`` subscribes three members and publishes the fingerprint schedule
(6 publishers taking turns in blocks of 4, 10 topics) through ``share.share_run``; its
outcome is the ``$share`` behaviour for that protocol and its sequence feeds
``fingerprint.fingerprint``. A short 9-message run covers the other protocol version. When the
sequence looks like round robin or random, ``pull_run`` repeats it with one member that does
not acknowledge until the end (a pull queue stops feeding it; a broker that queues per member,
like Mosquitto with ``max_inflight_messages``, holds its turn for it and hands the held
messages over once it acknowledges, which still counts as "given to the busy member"); when it
looks sticky, ``sticky_run`` asks fresh publishers, to rule out a client-id hash that happened
to map every publisher to one member. When a follow-up the guess needs cannot run (out of
time, a helper refused), the strategy is "not tested" rather than the unconfirmed guess, so
``--timeout`` never changes which strategy is named. The ``*_check`` functions turn runs into
report rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..mqtt.protocol import Protocol
from .context import Context, StepFailed
from .fingerprint import Guess, Slot, combine, design, fingerprint, percent, pull_test
from .model import BALANCED, DENIED, FANOUT, LITERAL, REFUSED, Check, Status
from .share import ShareRun, share_run

MEMBERS = 3
PUBLISHERS = 6
TOPICS = 10  # no common factor with MEMBERS, so round robin does not look like a topic hash
BLOCK = 4
PULL_MESSAGES = 30
STICKY_PUBLISHERS = 12


def main_run(ctx: Context, version: Protocol, messages: int) -> ShareRun:
    """Three members, the fingerprint schedule."""
    tag = "d"
    schedule = design(messages, PUBLISHERS, TOPICS, BLOCK)
    return share_run(
        ctx, tag=tag, version=version,
        topic_filter=f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+",
        topic_of=lambda s: f"{ctx.base}/{tag}/t{s.topic}", schedule=schedule, members=MEMBERS,
    )


def small_run(ctx: Context, version: Protocol) -> ShareRun:
    """Three members, nine messages from one publisher: enough to tell the four behaviours."""
    tag = "s" + version.replace(".", "")
    schedule = design(9, 1, 9, 9)
    return share_run(
        ctx, tag=tag, version=version,
        topic_filter=f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+",
        topic_of=lambda s: f"{ctx.base}/{tag}/t{s.topic}", schedule=schedule, members=MEMBERS,
    )


def pull_run(ctx: Context, version: Protocol) -> ShareRun:
    """Member 1 never acknowledges; messages go one at a time."""
    tag = "pull"
    schedule = design(PULL_MESSAGES, 1, TOPICS, PULL_MESSAGES)
    return share_run(
        ctx, tag=tag, version=version,
        topic_filter=f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+",
        topic_of=lambda s: f"{ctx.base}/{tag}/t{s.topic}", schedule=schedule,
        members=MEMBERS, slow_first=True, sequential=True,
    )


def sticky_run(ctx: Context, version: Protocol) -> ShareRun:
    """One message from each of several fresh publishers, on one topic."""
    tag = "stk"
    schedule = tuple(Slot(seq=i, publisher=i, topic=0) for i in range(STICKY_PUBLISHERS))
    return share_run(
        ctx, tag=tag, version=version,
        topic_filter=f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+",
        topic_of=lambda s: f"{ctx.base}/{tag}/t0", schedule=schedule, members=MEMBERS,
    )


def pull_cost(ctx: Context) -> float:
    """A generous estimate, in seconds, of ``pull_run`` (bursts that each may wait for a
    message held for the busy member, then the release)."""
    bursts = -(-PULL_MESSAGES // (MEMBERS - 1))
    gap = min(0.1, 0.02 + ctx.rtt * 0.1)
    return 0.5 + bursts * (0.1 + gap + 4 * ctx.rtt) + ctx.quiet


def sticky_cost(ctx: Context) -> float:
    return 0.5 + 4 * ctx.rtt + 3 * ctx.quiet


def pull_counts(pull: ShareRun) -> tuple[int, int, int]:
    """(given to the busy member, accepted, of which held for it): a message counts as given to
    member 0 when it arrived there, before or after it acknowledged, or never arrived anywhere
    (held for it and then dropped); a pull queue hands none of those to a busy member."""
    accepted = len(pull.accepted)
    slow = sum(1 for got in pull.deliveries.values() if got and got[0][0] == 0)
    never = sum(1 for got in pull.deliveries.values() if not got)
    return slow + never, accepted, pull.released + never


def guess_strategy(ctx: Context, run: ShareRun) -> Guess:
    """Fingerprint ``run``, adding the pull or sticky follow-up when it can change the answer.

    ``StepFailed`` when that follow-up is needed but cannot run or be judged."""
    guess = fingerprint(run.schedule, run.recipients(), run.members)
    if guess.name in ("random", "unknown") or (guess.name == "round_robin"
                                               and guess.scope == "group"):
        if ctx.budget.left() < pull_cost(ctx):
            raise StepFailed(f"out of time (--timeout) before the busy-member run that tells "
                             f"{guess.label} from least_inflight")
        pull = pull_run(ctx, run.version)
        if pull.outcome.behaviour != BALANCED or ctx.budget.left() <= 0:
            raise StepFailed("the busy-member run that tells "
                             f"{guess.label} from least_inflight did not complete: "
                             f"{pull.outcome.detail if ctx.budget.left() else 'out of time'}")
        slow, total, held = pull_counts(pull)
        guess = combine(guess, pull_test(slow, total, pull.members, held=held))
    elif guess.name == "sticky":
        if ctx.budget.left() < sticky_cost(ctx):
            raise StepFailed("out of time (--timeout) before the fresh-publisher run that tells "
                             "sticky from hash_clientid")
        extra = sticky_run(ctx, run.version)
        used = {got[0][0] for got in extra.deliveries.values() if got}
        arrived = sum(1 for got in extra.deliveries.values() if got)
        if len(used) >= 2:
            guess = Guess(
                name="hash_clientid", confidence=round(guess.confidence * 0.9, 3),
                evidence=f"{guess.evidence}; but {arrived} fresh publishers went to "
                         f"{len(used)} different members, so the choice follows the "
                         f"publisher (the first publishers all hashed to one member)",
                scores=guess.scores, counts=guess.counts, messages=guess.messages)
        elif arrived:
            guess = Guess(
                name="sticky", confidence=guess.confidence,
                evidence=f"{guess.evidence}; {arrived} fresh publishers also all went to "
                         "that member", scores=guess.scores, counts=guess.counts,
                messages=guess.messages)
    return guess


# -- report rows -------------------------------------------------------------------------------

_SHARE_SPEC = ("MQTT 5.0 4.8.2: each message matching $share/{group}/{filter} goes to ONE "
               "session of the group. MQTT 3.1.1 has no $share, but most brokers apply the "
               "5.0 rule to 3.1.1 clients too.")

_SHARE_MEANING = {
    BALANCED: "workers subscribed to one $share group split the tasks: each task is "
              "processed once",
    FANOUT: "every worker receives every task: each task is processed N times (the "
            "'problem-task-123' bug)",
    LITERAL: "workers subscribe without error but receive nothing: the pool silently idles",
    REFUSED: "workers cannot use $share with this protocol version on this broker",
    DENIED: "unknown: the broker refused the probe's own topics (an ACL?); rerun with "
            "--topic-prefix set to a topic tree this client may use",
}


def share_check(version: Protocol, run: ShareRun | None, other_balanced: bool,
                skipped: str | None = None) -> Check:
    """``share_v311`` / ``share_v5``."""
    cid = "share_v311" if version == "3.1.1" else "share_v5"
    title = f"$share with MQTT {'3.1.1' if version == '3.1.1' else '5.0'} clients"
    if run is None:
        return Check(id=cid, title=title, status=Status.SKIP, result="not tested",
                     evidence=skipped or "not tested", spec=_SHARE_SPEC,
                     meaning="unknown for this protocol version")
    out = run.outcome
    b = out.behaviour
    if b == BALANCED:
        status = Status.PASS if not out.missing else Status.WARN
    elif b == REFUSED:
        status = Status.WARN if other_balanced else Status.FAIL
    elif b == DENIED:
        status = Status.SKIP  # nothing was learnt about $share: not a finding against it
    else:
        status = Status.FAIL
    meaning = _SHARE_MEANING[b]
    if b == REFUSED and version == "3.1.1":
        meaning += " (3.1.1 has no $share in its spec; use MQTT 5 workers)"
    if b == REFUSED:
        evidence = f"members tried to subscribe to {run.topic_filter!r}: {out.detail}"
    elif b == DENIED:
        evidence = f"probing {run.topic_filter!r}: {out.detail}"
    else:
        evidence = (f"{run.members} members subscribed to {run.topic_filter!r}; "
                    f"{out.published} QoS 1 messages: {out.detail}")
    data = {
        "behaviour": b, "filter": run.topic_filter, "members": run.members,
        "published": out.published, "delivered": out.delivered, "distinct": out.distinct,
        "cross_member": out.cross_member, "repeats": out.repeats, "missing": out.missing,
        "suback": list(run.suback), "refused_code": run.refused_code,
        "control": run.control, "publish_failures": run.publish_failures,
    }
    return Check(id=cid, title=title, status=status, result=b, evidence=evidence,
                 spec=_SHARE_SPEC, meaning=meaning, data=data)


def duplicates_check(runs: Sequence[ShareRun]) -> Check:
    """Same-member repeats during the share runs (nobody disconnected)."""
    runs = [r for r in runs if r.outcome.behaviour in (BALANCED, FANOUT)]
    spec = ("QoS 1 is at-least-once, but a broker resends (DUP=1) only after a reconnect; "
            "with steady connections each message arrives once per subscription.")
    if not runs:
        return Check(id="duplicates", title="Same message twice to one member",
                     status=Status.SKIP, result="not tested",
                     evidence="no share run delivered anything", spec=spec, meaning="-")
    repeats = sum(r.outcome.repeats for r in runs)
    dup = sum(r.outcome.repeats_dup for r in runs)
    delivered = sum(r.outcome.delivered for r in runs)
    if repeats:
        return Check(
            id="duplicates", title="Same message twice to one member", status=Status.FAIL,
            result=f"{repeats} repeats",
            evidence=f"{repeats} of {delivered} deliveries were a second copy to a member that "
                     f"already had the message ({dup} with DUP=1) while every connection was "
                     "up",
            spec=spec,
            meaning="workers process tasks twice unless they de-duplicate by task id; "
                    "acknowledgements may be getting lost",
            data={"repeats": repeats, "repeats_dup": dup, "delivered": delivered})
    return Check(id="duplicates", title="Same message twice to one member",
                 status=Status.PASS, result="none",
                 evidence=f"{delivered} deliveries, no member got a message twice", spec=spec,
                 meaning="no redelivery noise while connections are healthy",
                 data={"repeats": 0, "repeats_dup": 0, "delivered": delivered})


_STRATEGY_MEANING: dict[str, str] = {
    "round_robin/group": "tasks are dealt out in turn, evenly; a slow worker still gets its "
                         "turn, so its backlog grows",
    "round_robin/publisher": "the turn is kept per publisher: many publishers sending a task "
                             "or two each all start at the same worker, which gets most work",
    "random": "even on average, lumpy in small batches",
    "sticky": "one worker does everything until it disconnects; the others idle",
    "hash_clientid": "all tasks from one publisher go to one worker; with few publishers "
                     "most workers idle",
    "hash_topic": "all tasks on one topic go to one worker; the spread depends on how task "
                  "ids hash",
    "least_inflight": "busy workers are skipped: the best fit for tasks of uneven length",
    "local": "tasks stay with the workers on the publisher's node while it has any: the other "
             "nodes' workers idle unless every node publishes",
    "unknown": "no known pattern; look at the per-member counts",
}


def strategy_check(guess: Guess | None, why_not: str = "") -> Check:
    spec = ("MQTT 5.0 4.8.2 lets the server choose the member by any rule, per message; "
            "brokers differ (Mosquitto: round robin; EMQX: configurable, local prefers the "
            "publisher's node; HiveMQ: pull).")
    if guess is None:
        return Check(id="strategy", title="Dispatch strategy", status=Status.SKIP,
                     result="not tested", evidence=why_not or "no balanced share run",
                     spec=spec, meaning="-")
    key = f"round_robin/{guess.scope}" if guess.name == "round_robin" else guess.name
    status = {
        "round_robin/group": Status.PASS, "random": Status.PASS,
        "least_inflight": Status.PASS, "unknown": Status.INFO,
    }.get(key, Status.WARN)
    return Check(
        id="strategy", title="Dispatch strategy", status=status,
        result=f"{guess.label}, confidence {percent(guess.confidence)}", evidence=guess.evidence,
        spec=spec, meaning=_STRATEGY_MEANING.get(key, ""),
        data={"name": guess.name, "scope": guess.scope, "confidence": guess.confidence,
              "counts": list(guess.counts), "scores": dict(guess.scores)})


__all__ = ["duplicates_check", "guess_strategy", "main_run", "share_check",
           "small_run", "strategy_check"]
