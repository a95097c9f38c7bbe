"""Connection and rule checks: protocol versions, retained, No Local, $share topics, $queue.

How this works: each function performs one small experiment on its own topics and clients
(see context.py for naming), waits only as long as the budget allows, cleans up what it made
(retained messages included) and returns one ``Check``. The runner may run several of these at
the same time: they share nothing but the broker.
"""

from __future__ import annotations

from typing import Any

from ..mqtt.protocol import Protocol
from ..mqtt.reasons import connack_meaning, refuses_protocol
from .client import V5, ConnectFailed
from .context import Context, StepFailed, rc_text
from .fingerprint import design
from .model import (
    BALANCED,
    FANOUT,
    LITERAL,
    REFUSED,
    Check,
    ProtocolInfo,
    Status,
    version_label,
)
from .share import share_run

# -- protocol versions -------------------------------------------------------------------------


def probe_protocol(ctx: Context, version: Protocol) -> tuple[ProtocolInfo, bool]:
    """CONNECT with ``version``; returns the answer and whether the broker was reachable."""
    client = ctx.client(f"hello{version.replace('.', '')}", version)
    try:
        ack = client.connect(ctx.wait_step())
    except ConnectFailed as exc:
        return ProtocolInfo(version=version, accepted=False, connack=None,
                            detail=str(exc)), False
    finally:
        client.close()
    ms = ack.elapsed_s * 1000.0
    if ack.reason_code is None:
        return ProtocolInfo(version=version, accepted=False, connack=None, connect_ms=ms,
                            detail="connection closed before CONNACK"), True
    shared: bool | None = None
    if version == V5 and "SharedSubscriptionAvailable" in ack.properties:
        shared = bool(ack.properties["SharedSubscriptionAvailable"])
    detail = ack.quoted(version) + (f" in {ms:.0f} ms" if ack.accepted else "")
    return ProtocolInfo(version=version, accepted=ack.accepted, connack=ack.reason_code,
                        connack_protocol=ack.protocol, detail=detail, connect_ms=ms,
                        properties=dict(ack.properties), shared_available=shared), True


def _connack_data(info: ProtocolInfo) -> dict[str, Any]:
    """The CONNACK as sent, for the JSON: the raw code, the protocol it was written in (3.1.1:
    a return code; 5: a reason code) and its meaning; all null when none came."""
    code, protocol = info.connack, info.connack_protocol
    return {"connack": code, "connack_protocol": protocol,
            "connack_meaning": (None if code is None or protocol is None
                                else connack_meaning(code, protocol))}


def connect_check(info: ProtocolInfo) -> Check:
    name = version_label(info.version)
    cid = "connect_v311" if info.version == "3.1.1" else "connect_v5"
    if info.accepted:
        return Check(id=cid, title=f"MQTT {name} connect", status=Status.PASS,
                     result="accepted", evidence=info.detail,
                     spec="A server answers CONNECT with CONNACK; " + (
                         "return code 0 accepts the session (MQTT 3.1.1 3.2.2.3)."
                         if info.version == "3.1.1" else "reason code 0x00 accepts the session."),
                     meaning=f"workers can use MQTT {name}",
                     data={**_connack_data(info), "connect_ms": round(info.connect_ms, 1)})
    code, protocol = info.connack, info.connack_protocol
    if code is not None and protocol is not None and refuses_protocol(code, protocol):
        meaning = f"workers cannot use MQTT {name} here: the broker does not speak it"
    elif code is not None and protocol is not None:
        meaning = (f"this client was refused ({connack_meaning(code, protocol)}): check the "
                   "credentials or the broker's client rules")
    else:
        meaning = f"workers cannot use MQTT {name} here (or the credentials are wrong)"
    return Check(id=cid, title=f"MQTT {name} connect", status=Status.WARN, result="refused",
                 evidence=info.detail,
                 spec="A server that does not support a protocol level answers CONNACK "
                      "0x84 (v5) / return code 1 (3.1.1), or closes the connection.",
                 meaning=meaning, data=_connack_data(info))


def shared_available_check(info: ProtocolInfo | None) -> Check:
    spec = ("MQTT 5.0 3.2.2.3.13: CONNACK property 0x2A Shared Subscription Available; "
            "absent means available. If 0, a $share SUBSCRIBE is answered with 0x9E.")
    title = "CONNACK Shared Subscription Available (0x2A)"
    if info is None or not info.accepted:
        return Check(id="shared_sub_available", title=title, status=Status.SKIP,
                     result="no v5 session", evidence="MQTT 5.0 was not accepted", spec=spec,
                     meaning="-")
    value = info.shared_available
    if value is None:
        return Check(id="shared_sub_available", title=title, status=Status.PASS,
                     result="absent (= available)",
                     evidence="the v5 CONNACK carries no 0x2A property", spec=spec,
                     meaning="the broker claims $share support", data={"value": None})
    if value:
        return Check(id="shared_sub_available", title=title, status=Status.PASS,
                     result="1 (available)", evidence="the v5 CONNACK carries 0x2A = 1",
                     spec=spec, meaning="the broker claims $share support", data={"value": 1})
    return Check(id="shared_sub_available", title=title, status=Status.WARN,
                 result="0 (not available)", evidence="the v5 CONNACK carries 0x2A = 0",
                 spec=spec, meaning="the broker says it has no shared subscriptions: "
                 "a worker pool on it needs another way to split tasks", data={"value": 0})


# -- retained ----------------------------------------------------------------------------------


def retained_check(ctx: Context) -> Check:
    """A retained message, then a new shared subscription: is it sent? (It should not be.)"""
    tag = "ret"
    topic = f"{ctx.base}/{tag}/x"
    title = "Retained message on a new shared subscription"
    spec = "MQTT 5.0 4.8.2: retained messages are NOT sent to a shared subscription when it " \
           "is made."

    def skip(result: str, evidence: str) -> Check:
        return Check(id="retained", title=title, status=Status.SKIP, result=result,
                     evidence=evidence, spec=spec, meaning="-")

    with ctx.clients() as made:
        pub = ctx.connected(f"{tag}-p")
        made.append(pub)
        sent = pub.publish(topic, ctx.payload(tag, 1), 1, ctx.wait_step(), retain=True)
        try:
            if sent.codes is None or sent.refused:
                return skip("publish refused",
                            f"retained PUBLISH answered {rc_text(_first(sent))}")
            shared = ctx.connected(f"{tag}-s")
            made.append(shared)
            answer = shared.subscribe(f"$share/{ctx.group(tag)}/{topic}", 1, ctx.wait_step())
            if answer.refused or answer.codes is None:
                return skip("not applicable",
                            f"shared SUBSCRIBE answered {rc_text(_first(answer))}")
            control = ctx.connected(f"{tag}-c")
            made.append(control)
            control.subscribe(topic, 1, ctx.wait_step())
            control_got = control.wait(lambda: bool(control.messages), ctx.wait_step())
            shared_got = shared.wait(lambda: bool(shared.messages), ctx.wait_quiet(
                0.5 if control_got else 1.0))
        finally:
            pub.publish(topic, b"", 1, ctx.wait_step(), retain=True)  # clear it
    control_text = ("a plain subscriber got it" if control_got
                    else "a plain subscriber did not get it either")
    if shared_got:
        msg = shared.received()[0]
        return Check(
            id="retained", title=title, status=Status.WARN, result="sent",
            evidence=f"the new shared member received the retained message "
                     f"(retain flag {int(msg.retain)}); {control_text}",
            spec=spec,
            meaning="every worker that (re)subscribes gets the retained task again: "
                    "do not publish tasks with retain",
            data={"sent_to_shared": True, "sent_to_plain": control_got})
    if not control_got:
        return Check(id="retained", title=title, status=Status.INFO, result="no retain",
                     evidence=f"the shared member got nothing, but {control_text}",
                     spec=spec, meaning="the broker does not seem to keep retained messages",
                     data={"sent_to_shared": False, "sent_to_plain": False})
    return Check(id="retained", title=title, status=Status.PASS, result="not sent",
                 evidence=f"the new shared member got nothing; {control_text}", spec=spec,
                 meaning="a retained task is not handed to each worker that subscribes",
                 data={"sent_to_shared": False, "sent_to_plain": True})


def _first(answer: Any) -> int | None:
    if answer.disconnect is not None:
        return int(answer.disconnect)
    return int(answer.codes[0]) if answer.codes else None


# -- No Local ----------------------------------------------------------------------------------


def no_local_check(ctx: Context, v5_ok: bool) -> Check:
    title = "No Local on a shared subscription"
    spec = "MQTT 5.0 3.8.3.1: No Local = 1 on a shared subscription is a Protocol Error " \
           "(DISCONNECT 0x82)."
    if not v5_ok:
        return Check(id="no_local", title=title, status=Status.SKIP, result="no v5 session",
                     evidence="No Local exists only in MQTT 5.0", spec=spec, meaning="-")
    tag = "nl"
    topic_filter = f"$share/{ctx.group(tag)}/{ctx.base}/{tag}"
    with ctx.clients() as made:
        client = ctx.connected(f"{tag}-m", V5)
        made.append(client)
        answer = client.subscribe(topic_filter, 1, ctx.wait_step(), no_local=True)
    data: dict[str, Any] = {"suback": list(answer.codes or ()), "disconnect": answer.disconnect}
    if answer.disconnect is not None:
        how = ("connection closed" if answer.disconnect < 0
               else f"DISCONNECT {rc_text(answer.disconnect)}")
        return Check(id="no_local", title=title, status=Status.PASS, result=how,
                     evidence=f"SUBSCRIBE {topic_filter!r} with No Local: {how}", spec=spec,
                     meaning="clients that set No Local on $share find out at once", data=data)
    if answer.codes is None:
        return Check(id="no_local", title=title, status=Status.INFO, result="no answer",
                     evidence="no SUBACK in time", spec=spec, meaning="-", data=data)
    code = answer.codes[0]
    if code >= 0x80:
        status = Status.INFO if code == 0x9E else Status.PASS
        return Check(id="no_local", title=title, status=status,
                     result=f"SUBACK {rc_text(code)}",
                     evidence=f"SUBSCRIBE {topic_filter!r} with No Local was refused in the "
                              "SUBACK (the spec asks for a DISCONNECT)", spec=spec,
                     meaning="the subscription is refused, so No Local cannot silently drop "
                             "tasks", data=data)
    return Check(id="no_local", title=title, status=Status.WARN,
                 result=f"accepted (SUBACK {rc_text(code)})",
                 evidence=f"SUBSCRIBE {topic_filter!r} with No Local was accepted", spec=spec,
                 meaning="a worker that also publishes may silently skip tasks it sent itself; "
                         "do not set No Local on $share", data=data)


# -- publishing to $share/... ------------------------------------------------------------------


def publish_to_share_check(ctx: Context) -> Check:
    title = "Publishing to a $share/... topic"
    spec = ("A topic name is not a filter: publishing to '$share/{group}/{topic}' does not "
            "reach the group. Mosquitto refuses it (PUBACK 0x87 in v5).")
    tag = "pub"
    plain_topic = f"{ctx.base}/{tag}/x"
    share_topic = f"$share/{ctx.group(tag)}/{plain_topic}"
    with ctx.clients() as made:
        member = ctx.connected(f"{tag}-s")
        made.append(member)
        member.subscribe(share_topic, 1, ctx.wait_step())
        plain = ctx.connected(f"{tag}-c")
        made.append(plain)
        plain.subscribe(plain_topic, 1, ctx.wait_step())
        pub = ctx.connected(f"{tag}-p")
        made.append(pub)
        answer = pub.publish(share_topic, ctx.payload(tag, 1), 1, ctx.wait_step())
        member.wait(lambda: bool(member.messages), ctx.wait_quiet())
        to_member = len(member.received())
        to_plain = len(plain.received())
    data: dict[str, Any] = {"puback": list(answer.codes or ()), "disconnect": answer.disconnect,
                            "delivered_to_share_subscriber": to_member,
                            "delivered_to_plain_subscriber": to_plain}
    evidence = f"QoS 1 PUBLISH to {share_topic!r}: "
    if answer.disconnect is not None:
        how = ("connection closed" if answer.disconnect < 0
               else f"DISCONNECT {rc_text(answer.disconnect)}")
        return Check(id="publish_to_share", title=title, status=Status.PASS, result=how,
                     evidence=evidence + how, spec=spec,
                     meaning="a publisher that gets the topic wrong finds out at once",
                     data=data)
    code = answer.codes[0] if answer.codes else None
    if code is not None and code >= 0x80:
        return Check(id="publish_to_share", title=title, status=Status.PASS,
                     result=f"refused (PUBACK {rc_text(code)})",
                     evidence=evidence + f"PUBACK {rc_text(code)}; nothing delivered",
                     spec=spec, meaning="a publisher that gets the topic wrong is told so "
                     "(v5 only: a 3.1.1 publisher cannot see reason codes)", data=data)
    ack = "no PUBACK" if code is None else f"PUBACK {rc_text(code)}"
    if code is not None and ctx.version != V5:
        ack = "PUBACK (3.1.1 has no reason codes)"
    if to_member:
        return Check(id="publish_to_share", title=title, status=Status.WARN,
                     result="delivered literally",
                     evidence=evidence + f"{ack}; the subscriber of the same $share string got "
                                         "it", spec=spec,
                     meaning="the broker treats $share/... as an ordinary topic: it has no "
                             "real shared subscriptions", data=data)
    if to_plain:
        return Check(id="publish_to_share", title=title, status=Status.WARN,
                     result="delivered to the plain topic",
                     evidence=evidence + f"{ack}; a plain subscriber of {plain_topic!r} got it",
                     spec=spec, meaning="the broker strips the prefix: unusual, not portable",
                     data=data)
    return Check(id="publish_to_share", title=title, status=Status.INFO,
                 result="accepted, delivered to nobody",
                 evidence=evidence + f"{ack}; no subscriber got it", spec=spec,
                 meaning="a publisher that gets the topic wrong loses its tasks silently",
                 data=data)


# -- malformed share names ---------------------------------------------------------------------


def malformed_check(ctx: Context) -> Check:
    title = "Malformed share names"
    v5 = ctx.version == V5
    spec = ("MQTT 5.0 4.8.2: ShareName is at least one character without '/', '+' or '#', "
            "followed by '/' and a filter; otherwise SUBACK 0x8F (3.1.1: 0x80).")
    tail = f"{ctx.base}/mal"
    filters = [f"$share//{tail}", f"$share/a+/{tail}", f"$share/a#/{tail}",
               f"$share/{ctx.group('mal')}"]
    results: dict[str, str] = {}
    accepted: list[str] = []
    with ctx.clients() as made:
        for i, topic_filter in enumerate(filters):
            client = ctx.connected(f"mal{i}")
            made.append(client)
            answer = client.subscribe_raw(topic_filter, 1, ctx.wait_step())
            if answer.disconnect is not None:
                results[topic_filter] = ("connection closed" if answer.disconnect < 0
                                         else f"DISCONNECT {rc_text(answer.disconnect)}")
            elif answer.codes is None:
                results[topic_filter] = "no answer"
            elif answer.codes[0] >= 0x80:
                results[topic_filter] = f"SUBACK {rc_text(answer.codes[0])}"
            else:
                results[topic_filter] = f"accepted (SUBACK 0x{answer.codes[0]:02X})"
                accepted.append(topic_filter)
            client.close()
    shown = "; ".join(f"{f.replace(tail, '…')}: {r}" for f, r in results.items())
    expected = "0x8F" if v5 else "0x80"
    if accepted:
        return Check(id="malformed_share", title=title, status=Status.WARN,
                     result=f"{len(accepted)} of {len(filters)} accepted", evidence=shown,
                     spec=spec, meaning="a typo in the group name is not reported: workers may "
                     "silently end up outside the pool", data={"results": results})
    codes = sorted(set(results.values()))
    result = f"all refused ({', '.join(codes)})"
    status = Status.PASS
    if not all(expected in r or "DISCONNECT" in r or "closed" in r for r in codes):
        shown += f" (the spec's code is {expected})"
    return Check(id="malformed_share", title=title, status=status, result=result,
                 evidence=shown, spec=spec,
                 meaning="a typo in the share name is reported at subscribe time",
                 data={"results": results})


# -- $queue/ -----------------------------------------------------------------------------------


def queue_check(ctx: Context) -> Check:
    title = "$queue/ prefix (EMQX style)"
    spec = "Not in the MQTT spec: EMQX reads $queue/t as $share/$queue/t; other brokers take " \
           "it literally."
    tag = "q"
    topic_filter = f"$queue/{ctx.base}/{tag}/+"
    run = share_run(ctx, tag=tag, version=ctx.version, topic_filter=topic_filter,
                    topic_of=lambda s: f"{ctx.base}/{tag}/t{s.topic}",
                    schedule=design(6, 1, 6, 6), members=2)
    out = run.outcome
    data = {"behaviour": out.behaviour, "delivered": out.delivered,
            "refused_code": run.refused_code}
    evidence = f"2 members on {topic_filter!r}, 6 messages: {out.detail}"
    if out.behaviour == BALANCED:
        return Check(id="queue_prefix", title=title, status=Status.INFO, result="supported",
                     evidence=evidence, spec=spec,
                     meaning="$queue/ works as a shared subscription here (not portable)",
                     data=data)
    if out.behaviour == FANOUT:
        return Check(id="queue_prefix", title=title, status=Status.WARN, result="fanout",
                     evidence=evidence, spec=spec,
                     meaning="$queue/ subscribers each get every task", data=data)
    if out.behaviour == LITERAL:
        return Check(id="queue_prefix", title=title, status=Status.INFO,
                     result="not supported (taken literally)", evidence=evidence, spec=spec,
                     meaning="workers using $queue/ receive nothing here: use $share/",
                     data=data)
    assert out.behaviour == REFUSED
    return Check(id="queue_prefix", title=title, status=Status.INFO,
                 result=f"refused ({rc_text(run.refused_code)})", evidence=evidence, spec=spec,
                 meaning="workers using $queue/ are refused here: use $share/", data=data)


__all__ = ["StepFailed", "connect_check", "malformed_check", "no_local_check", "probe_protocol",
           "publish_to_share_check", "queue_check", "retained_check", "shared_available_check"]
