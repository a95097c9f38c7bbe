"""What a broker does with the share of a member that is away: the session checks.

How this works, one check each (they run beside the others, each on its own topics):

- ``offline_member``: persistent member A and member B share a group; A leaves with a clean
  DISCONNECT (its session stays); 4 QoS 1 messages follow. A broker that deals only to
  connected members gives B all 4; one where A keeps its turn (Mosquitto, emqx#3243) parks
  some for A, which gets them when it comes back.
- ``expired_session``: (MQTT 5) A, whose session lives 1 s after its connection, leaves
  alone; 2 messages wait in its session; B joins; A's session expires. MQTT 5.0 4.8.2: the
  messages SHOULD go to B; a broker that drops them (emqx#12257, nanomq#2355) loses them.
- ``redispatch_wildcard``: the clean-member drop of ``inflight`` twice, on a group with an
  exact filter and on one with a ``+`` filter: a broker that looks the group up by the message
  topic when it re-dispatches (the bug emqx PR #9094 fixed) loses the wildcard group's tasks.

Sessions the checks made persistent are ended before they return.
"""

from __future__ import annotations

from .client import V5, ProbeClient
from .context import Context
from .inflight import _end_session, _seqs
from .model import Check, Status

AWAY = 60  # seconds the offline member's session outlives its connection

_OFFLINE_SPEC = ("MQTT 5.0 4.8.2: each message goes to one session of the group, chosen by "
                 "any rule; a persistent session that is offline may be chosen (its messages "
                 "then wait for it).")
_EXPIRY_SPEC = ("MQTT 5.0 4.8.2: if the chosen member's session terminates before it "
                "reconnects, the server SHOULD send the message to another member.")
_WILDCARD_SPEC = ("MQTT 5.0 4.8.2: a message re-dispatched after a member loss goes to another "
                  "member of the same shared subscription, whatever its filter.")


def _persistent(ctx: Context, role: str, expiry: int) -> ProbeClient:
    return ctx.connected(role, manual_ack=True, clean=ctx.version == V5, session_expiry=expiry)


def offline_member_check(ctx: Context) -> Check:
    tag, count = "off", 4
    cid, title = "offline_member", "A persistent member offline: does it keep its turn?"
    topic_filter = f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+"
    with ctx.clients() as made:
        a = _persistent(ctx, f"{tag}-a", AWAY)
        made.append(a)
        a.subscribe(topic_filter, 1, ctx.wait_step())
        b = ctx.connected(f"{tag}-b")
        made.append(b)
        b.subscribe(topic_filter, 1, ctx.wait_step())
        a.close()  # clean DISCONNECT: the session stays
        pub = ctx.connected(f"{tag}-p")
        made.append(pub)
        pub.publish_many([(f"{ctx.base}/{tag}/t{i}", ctx.payload(tag, i), 1)
                          for i in range(count)], ctx.wait_step())
        b.wait(lambda: len(_seqs(ctx, tag, b)) >= count, ctx.wait_quiet(2.0))
        here = _seqs(ctx, tag, b)
        parked: set[int] = set()
        if len(here) < count:
            back = ctx.client(f"{tag}-a", clean=False, session_expiry=AWAY)
            made.append(back)
            if back.connect(ctx.wait_step()).accepted:
                back.wait(lambda: len(_seqs(ctx, tag, back)) >= count - len(here),
                          ctx.wait_quiet(2.0))
                parked = _seqs(ctx, tag, back) - here
                back.ack_all()
                back.unsubscribe(topic_filter, ctx.wait_step())
                back.close(end_session=True)
        _end_session(ctx, tag)
    data = {"published": count, "to_connected": len(here), "parked": len(parked)}
    evidence = (f"persistent member A left with a clean DISCONNECT; of {count} QoS 1 messages "
                f"published then, connected member B got {len(here)}")
    if parked:
        evidence += f" and A got {len(parked)} when it came back"
    if len(here) == count:
        return Check(id=cid, title=title, status=Status.PASS, result="connected members only",
                     evidence=evidence, spec=_OFFLINE_SPEC,
                     meaning="a stopped worker's share goes to the running ones", data=data)
    if parked:
        return Check(id=cid, title=title, status=Status.WARN, result="keeps its turn (parked)",
                     evidence=evidence, spec=_OFFLINE_SPEC,
                     meaning="a stopped persistent worker's share of the tasks waits for it: "
                     "late, or lost if it never returns", data=data)
    return Check(id=cid, title=title, status=Status.WARN, result="lost", evidence=evidence,
                 spec=_OFFLINE_SPEC, meaning="tasks dealt to an offline member are lost",
                 data=data)


def expired_session_check(ctx: Context) -> Check:
    tag, count = "exp", 2
    cid, title = "expired_session", "Tasks queued for a member whose session expires"
    if ctx.version != V5:
        return Check(id=cid, title=title, status=Status.SKIP, result="not tested",
                     evidence=f"not judged with MQTT {ctx.version}: needs MQTT 5.0 (Session "
                              "Expiry Interval)", spec=_EXPIRY_SPEC,
                     meaning="-")
    topic_filter = f"$share/{ctx.group(tag)}/{ctx.base}/{tag}/+"
    with ctx.clients() as made:
        a = _persistent(ctx, f"{tag}-a", 1)
        made.append(a)
        a.subscribe(topic_filter, 1, ctx.wait_step())
        a.close()  # its session lives 1 s more, the group's only member
        pub = ctx.connected(f"{tag}-p")
        made.append(pub)
        pub.publish_many([(f"{ctx.base}/{tag}/t{i}", ctx.payload(tag, i), 1)
                          for i in range(count)], ctx.wait_step())
        b = ctx.connected(f"{tag}-b")
        made.append(b)
        b.subscribe(topic_filter, 1, ctx.wait_step())
        b.wait(lambda: len(_seqs(ctx, tag, b)) >= count, ctx.budget.cap(3.5))
        moved = _seqs(ctx, tag, b)
    data = {"queued": count, "handed_on": len(moved)}
    evidence = (f"member A (Session Expiry 1 s) left; {count} QoS 1 messages waited in its "
                f"session; member B joined; after A's session expired B got {len(moved)}")
    if len(moved) == count:
        return Check(id=cid, title=title, status=Status.PASS, result="handed to another member",
                     evidence=evidence, spec=_EXPIRY_SPEC,
                     meaning="tasks waiting for a worker that never returns are not lost",
                     data=data)
    return Check(id=cid, title=title, status=Status.WARN,
                 result="dropped at expiry" if not moved else f"{len(moved)} of {count} moved",
                 evidence=evidence, spec=_EXPIRY_SPEC,
                 meaning="tasks queued for a worker that never returns are lost when its "
                 "session expires", data=data)


def _clean_drop(ctx: Context, tag: str, topic_filter: str, topic: str,
                made: list[ProbeClient]) -> bool | None:
    """A silent clean member gets one QoS 1 message and drops; did B get it? None: not run."""
    a = ctx.connected(f"{tag}-a", manual_ack=True)
    made.append(a)
    answer = a.subscribe(topic_filter, 1, ctx.wait_step())
    if answer.refused or answer.codes is None:
        return None
    pub = ctx.connected(f"{tag}-p")
    made.append(pub)
    pub.publish_many([(topic, ctx.payload(tag, 0), 1)], ctx.wait_step())
    if not a.wait(lambda: bool(_seqs(ctx, tag, a)), ctx.wait_step()):
        return None
    b = ctx.connected(f"{tag}-b")
    made.append(b)
    b.subscribe(topic_filter, 1, ctx.wait_step())
    a.drop()
    return b.wait(lambda: bool(_seqs(ctx, tag, b)), ctx.budget.cap(2.0))


def wildcard_redispatch_check(ctx: Context) -> Check:
    cid, title = "redispatch_wildcard", "Redispatch for a wildcard group vs an exact filter"
    with ctx.clients() as made:
        exact = _clean_drop(ctx, "wx", f"$share/{ctx.group('wx')}/{ctx.base}/wx/t0",
                            f"{ctx.base}/wx/t0", made)
        wild = _clean_drop(ctx, "ww", f"$share/{ctx.group('ww')}/{ctx.base}/ww/+",
                           f"{ctx.base}/ww/t0", made)
    data = {"exact": exact, "wildcard": wild}
    if exact is None or wild is None:
        return Check(id=cid, title=title, status=Status.SKIP, result="not tested",
                     evidence="a member could not subscribe or got nothing", spec=_WILDCARD_SPEC,
                     meaning="-", data=data)
    evidence = (f"a clean member dropped with one QoS 1 message in flight: re-dispatched on the "
                f"exact filter: {'yes' if exact else 'no'}; on the '+' filter: "
                f"{'yes' if wild else 'no'}")
    if exact and not wild:
        return Check(id=cid, title=title, status=Status.WARN, result="lost for wildcard filters",
                     evidence=evidence, spec=_WILDCARD_SPEC,
                     meaning="the broker looks the group up by the message topic: a crashed "
                     "worker's tasks are lost for groups on wildcard filters (AetherMagic's "
                     "all use '+')", data=data)
    if exact == wild:
        result = "same for both" if exact else "not redispatched (either)"
        return Check(id=cid, title=title, status=Status.PASS if exact else Status.INFO,
                     result=result, evidence=evidence, spec=_WILDCARD_SPEC,
                     meaning="the filter's form does not change what happens to a crashed "
                     "worker's tasks", data=data)
    return Check(id=cid, title=title, status=Status.INFO, result="wildcard filters only",
                 evidence=evidence, spec=_WILDCARD_SPEC, meaning="-", data=data)
