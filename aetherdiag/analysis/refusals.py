"""What the broker would not take, in plain words: a connection it closed right after a packet
(``RunResult.closed_after``) read as the refusal of that packet, naming the packet and its QoS
(NATS closes a publisher's connection after a QoS 2 PUBLISH; brokers set to disconnect on an
ACL denial close it after the denied PUBLISH or SUBSCRIBE), and SUBACKs that granted less QoS
than a worker asked for. Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..harness.model import ClosedAfter, RunResult, WorkerSpec
from ..mqtt.reasons import granted_text, reason_text
from .words import names


def refusals(result: RunResult) -> tuple[ClosedAfter, ...]:
    """The connections the broker closed right after a packet it had not answered
    (``RunResult.closed_after``), read as refusals of that packet: while another client of the
    run stayed connected, the broker itself was there. When every client's connection ended,
    the broker or the network went: no refusal is read into that. One per client."""
    if not result.closed_after:
        return ()
    clients = set(result.workers) | {e.worker for e in result.events if e.kind == "connected"}
    gone = set(result.connection_lost) | {c.client for c in result.closed_after}
    if not clients - gone:
        return ()
    first: dict[str, ClosedAfter] = {}
    for c in result.closed_after:
        first.setdefault(c.client, c)
    return tuple(first.values())


def connections_of(clients: Sequence[str]) -> str:
    """``the publisher's connection``, ``worker-2's connection``, ``the connections of ...``."""
    if list(clients) == ["publisher"]:
        return "the publisher's connection"
    if len(clients) == 1:
        return f"{clients[0]}'s connection"
    return f"the connections of {names(list(clients))}"


def _refused_because(c: ClosedAfter) -> str:
    """Why a broker closes a connection after this packet, from the packet, its QoS and the
    DISCONNECT reason when there was one (the reason, when given, decides)."""
    if c.disconnect == 0x9B or (c.packet == "PUBLISH" and c.qos == 2 and c.disconnect is None):
        lower = "--qos 1" if c.qos == 2 else "--qos 0"
        return (f"it does not support QoS {c.qos} (NATS does this, and Mosquitto with max_qos "
                f"below {c.qos}); use {lower}")
    if c.packet == "PUBLISH" and c.disconnect == 0x87:
        return ("an ACL denies publishing to the task topics; publish where the ACL allows "
                "(--topic-prefix) or grant this client publish access")
    if c.packet == "PUBLISH" and c.disconnect is not None:
        return "it will not take this publish"
    if c.packet == "PUBLISH":
        return ("it will not take this publish: an ACL that denies publishing to the task "
                "topics (brokers set to disconnect on a denial, instead of PUBACK 0x87), or a "
                "topic it does not allow; publish where the ACL allows (--topic-prefix)")
    share = c.topic.startswith(("$share/", "$queue/"))
    return ("it will not take this subscription: an ACL that denies the filter (brokers set to "
            "disconnect on a denial, instead of SUBACK 0x80/0x87)"
            + (", or no support for shared subscriptions" if share else "")
            + (f", or no QoS {c.qos} subscriptions" if c.qos == 2 else ""))


def closed_after_causes(closed: Sequence[ClosedAfter]) -> list[str]:
    """One cause per refused packet kind: ``the broker closed the publisher's connection right
    after a QoS 2 PUBLISH: it does not support QoS 2 (NATS does this); use --qos 1``. A
    SUBSCRIBE answered with a DISCONNECT reason is left to the SUBACK causes: the worker's
    result carries that code, and ``causes`` spells it out as the subscription's refusal."""
    groups: dict[tuple[str, int, int | None, str], list[str]] = defaultdict(list)
    for c in closed:
        if c.packet == "SUBSCRIBE" and c.disconnect is not None:
            continue
        groups[(c.packet, c.qos, c.disconnect, _refused_because(c))].append(c.client)
    out = []
    for (packet, qos, disconnect, because), clients in groups.items():
        said = f" (DISCONNECT {reason_text(disconnect)})" if disconnect is not None else ""
        out.append(f"the broker closed {connections_of(clients)} right after a QoS {qos} {packet}"
                   f"{said}: {because}")
    return out


def granted_causes(result: RunResult, workers: Sequence[WorkerSpec]) -> list[str]:
    """SUBACKs that granted less QoS than the workers asked for, per worker: what each
    worker then gets, and what to do about it."""
    asked = {w.name: w for w in workers}
    low: dict[tuple[int, int], list[str]] = defaultdict(list)
    for worker, topic_filter, code in result.subscribe_results:
        spec = asked.get(worker)
        if spec is None or topic_filter not in spec.subscriptions or not 0 <= code < spec.qos:
            continue
        if worker not in low[(spec.qos, code)]:
            low[(spec.qos, code)].append(worker)
    out = []
    for (want, got), who in low.items():
        if got == 1:
            effect = ("each task reaches them at least once, not exactly once: a redelivery can "
                      "repeat a task, so the workers must be idempotent; --qos 1 matches what "
                      "the broker does (NATS has no QoS 2; Mosquitto's max_qos 1 caps it)")
        else:
            effect = ("each task reaches them at most once: a message lost on the way is gone "
                      "and nothing acknowledges the work; --qos 0 matches what the broker does, "
                      "or lift its cap")
        out.append(f"the broker granted {granted_text(got)} where QoS {want} was asked, to "
                   f"{names(who)}: {effect}")
    return out
