"""What happens to messages in flight when a member crashes (QoS 1 and QoS 2).

How this works: member A joins the group alone and never acknowledges (paho manual_ack), so
the first messages certainly go to A and stay in flight; then member B joins; then A's TCP
connection is closed without DISCONNECT, like a crashed worker. B is watched for a bounded
time: if A's messages arrive there they were re-dispatched. For a persistent member A then
comes back (same client id, clean start off) to see whether the broker held them for it.
Sessions the probe made persistent are ended before the check returns.
"""

from __future__ import annotations

from .client import V5, ProbeClient
from .context import Context, rc_text
from .model import Check, Status

EXPIRY = 60  # seconds a persistent probe session would outlive its connection


def _seqs(ctx: Context, tag: str, client: ProbeClient) -> set[int]:
    return {s for m in client.received() if (s := ctx.seq_of(tag, m.payload)) is not None}


def _setup(ctx: Context, tag: str, qos: int, count: int, made: list[ProbeClient],
           persistent: bool) -> tuple[ProbeClient, ProbeClient, str] | str:
    """A (silent) gets ``count`` messages, then B joins. Returns (A, B, filter) or why not."""
    topic_filter = f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+"
    if persistent:
        a = ctx.connected(f"{tag}-a", manual_ack=True, clean=ctx.version == V5,
                          session_expiry=EXPIRY)
    else:
        a = ctx.connected(f"{tag}-a", manual_ack=True)
    made.append(a)
    answer = a.subscribe(topic_filter, qos, ctx.wait_step())
    if answer.refused or answer.codes is None:
        code = answer.disconnect if answer.disconnect is not None else (
            answer.codes[0] if answer.codes else None)
        return f"shared SUBSCRIBE answered {rc_text(code)}"
    pub = ctx.connected(f"{tag}-p")
    made.append(pub)
    items = [(f"{ctx.base}/{tag}/t{i}", ctx.payload(tag, i), qos) for i in range(count)]
    pub.publish_many(items, ctx.wait_step())
    if not a.wait(lambda: len(_seqs(ctx, tag, a)) >= count, ctx.wait_step()):
        return f"the silent member got {len(_seqs(ctx, tag, a))} of {count} messages"
    b = ctx.connected(f"{tag}-b")
    made.append(b)
    b.subscribe(topic_filter, qos, ctx.wait_step())
    return a, b, topic_filter


def _redispatch_wait(ctx: Context) -> float:
    return ctx.budget.cap(min(3.0, max(1.0, 2.5 * ctx.quiet)))


_QOS1_SPEC = ("MQTT 5.0 4.8.2: if a member's connection breaks with QoS 1 messages "
              "unacknowledged, the server may wait for it to reconnect; if its session ends, "
              "it SHOULD send them to another member (it may do so at once).")


def qos1_drop_check(ctx: Context, persistent: bool) -> Check:
    tag = "q1p" if persistent else "q1c"
    cid = "qos1_drop_persistent" if persistent else "qos1_drop_clean"
    kind = "persistent-session" if persistent else "clean-session"
    title = f"QoS 1 in flight when a {kind} member drops"
    count = 2
    with ctx.clients() as made:
        ready = _setup(ctx, tag, 1, count, made, persistent)
        if isinstance(ready, str):
            if persistent:
                _end_session(ctx, tag)
            return Check(id=cid, title=title, status=Status.SKIP, result="not tested",
                         evidence=ready, spec=_QOS1_SPEC, meaning="-")
        a, b, topic_filter = ready
        a.drop()
        b.wait(lambda: len(_seqs(ctx, tag, b)) >= count, _redispatch_wait(ctx))
        moved = _seqs(ctx, tag, b)
        dup = sum(1 for m in b.received() if m.dup)
        held: set[int] = set()
        session_present = None
        if persistent:
            back = ctx.client(f"{tag}-a", clean=False, session_expiry=EXPIRY)
            made.append(back)
            ack = back.connect(ctx.wait_step())
            session_present = ack.session_present
            if ack.accepted:
                back.wait(lambda: len(_seqs(ctx, tag, back)) >= count,
                          ctx.wait_quiet(1.0 if moved else 2.0))
                held = _seqs(ctx, tag, back)
                back.unsubscribe(topic_filter, ctx.wait_step())
                back.close(end_session=True)
            _end_session(ctx, tag)
    data = {"in_flight": count, "redispatched": len(moved), "redispatched_dup": dup,
            "resent_on_return": len(held) if persistent else None,
            "session_present": session_present}
    evidence = (f"a {kind} member received {count} QoS 1 messages without acknowledging and "
                f"dropped its TCP connection; another member then got {len(moved)}"
                + (f" ({dup} with DUP)" if dup else ""))
    if persistent:
        evidence += f"; the member came back and got {len(held)} resent"
    if moved and held:
        return Check(id=cid, title=title, status=Status.WARN, result="redispatched AND resent",
                     evidence=evidence, spec=_QOS1_SPEC,
                     meaning="a crashed worker's tasks are processed twice when it returns",
                     data=data)
    if len(moved) == count:
        return Check(id=cid, title=title, status=Status.PASS,
                     result="redispatched to another member", evidence=evidence,
                     spec=_QOS1_SPEC, meaning="a crashed worker's tasks are picked up by the "
                     "rest of the pool", data=data)
    if held:
        return Check(id=cid, title=title, status=Status.WARN,
                     result="held for the member", evidence=evidence, spec=_QOS1_SPEC,
                     meaning="a crashed worker's tasks wait until it reconnects; if it never "
                     "does they are lost when its session expires", data=data)
    if moved:
        return Check(id=cid, title=title, status=Status.WARN,
                     result=f"{len(moved)} of {count} redispatched", evidence=evidence,
                     spec=_QOS1_SPEC, meaning="some of a crashed worker's tasks are lost",
                     data=data)
    return Check(id=cid, title=title, status=Status.WARN, result="lost", evidence=evidence,
                 spec=_QOS1_SPEC,
                 meaning="a crashed worker's unacknowledged tasks are lost: re-publish tasks "
                 "that time out", data=data)


def _end_session(ctx: Context, tag: str) -> None:
    """Connect with a clean start and leave, so no probe session outlives the run."""
    cleaner = ctx.client(f"{tag}-a", clean=True)
    try:
        ack = cleaner.connect(ctx.budget.cap(2.0) or 0.5)
        if ack.accepted:
            cleaner.close(end_session=True)
    except Exception:  # best effort: the session still expires after EXPIRY seconds
        pass
    finally:
        cleaner.close()


_QOS2_SPEC = ("MQTT 5.0 4.8.2: a QoS 2 delivery that was interrupted is completed with the "
              "SAME member when it reconnects; if its session ends the message is NOT sent to "
              "another member.")


def qos2_drop_check(ctx: Context) -> Check:
    tag = "q2"
    title = "QoS 2 in flight when a member drops"
    with ctx.clients() as made:
        ready = _setup(ctx, tag, 2, 1, made, persistent=False)
        if isinstance(ready, str):
            return Check(id="qos2_drop", title=title, status=Status.SKIP, result="not tested",
                         evidence=ready, spec=_QOS2_SPEC, meaning="-")
        a, b, _ = ready
        a.drop()
        b.wait(lambda: bool(_seqs(ctx, tag, b)), _redispatch_wait(ctx))
        moved = _seqs(ctx, tag, b)
    data = {"moved": bool(moved)}
    evidence = ("a clean-session member received a QoS 2 message (PUBREC sent, PUBCOMP "
                "withheld) and dropped its TCP connection; another member "
                + ("then got it" if moved else "did not get it"))
    if moved:
        return Check(id="qos2_drop", title=title, status=Status.FAIL,
                     result="moved to another member", evidence=evidence, spec=_QOS2_SPEC,
                     meaning="an exactly-once task can be processed by two workers", data=data)
    return Check(id="qos2_drop", title=title, status=Status.PASS, result="not moved",
                 evidence=evidence, spec=_QOS2_SPEC,
                 meaning="exactly-once tasks stay with the worker that had them", data=data)
