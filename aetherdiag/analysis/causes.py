"""Likely causes: plain-words explanations derived from a Report and what the broker answered.

Each cause follows the evidence: refused publishes by their reason code, SUBACK failures
spelled out, a connection the broker closed right after a packet it would not take (a refusal
naming the packet and its QoS, not a lost network), a SUBACK granting less QoS than asked, a
lost broker, a timeout, foreign messages. When nothing arrives and the broker refused nothing,
an ACL is not guessed at: the literal-``$share`` reading comes first (with the MQTT 5.0
refusal of a 3.1.1-only broker when the run fell back), and ``aetherdiag probe`` is named as
the way to tell the readings apart. Pure: no I/O.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Sequence

from ..emulator.topics import matches
from ..harness.model import ClosedAfter, RunResult, WorkerSpec
from ..mqtt.reasons import reason_text
from .cluster import cluster_causes
from .refusals import closed_after_causes, granted_causes, refusals
from .report import Report, WorkerRow
from .words import names as names
from .words import reasons as reasons


def slow_verb(slow: Sequence[str]) -> str:
    return "processes" if len(slow) == 1 else "process"


def slow_and_behind(rows: Sequence[WorkerRow], workers: Sequence[WorkerSpec]) -> list[str]:
    """The slow workers (``work_ms`` > 0) that got fewer tasks than their pool's mean: what a
    load-based dispatcher (least_inflight, or a broker that waits for acknowledgements) does."""
    slow = {w.name for w in workers if w.work_ms > 0}
    by_pool: dict[str, list[WorkerRow]] = defaultdict(list)
    for r in rows:
        by_pool[r.pool].append(r)
    behind = []
    for pool in by_pool.values():
        mean = sum(r.unique for r in pool) / len(pool)
        behind += [r.name for r in pool if r.name in slow and r.unique < mean]
    return behind


def likely_causes(
    report: Report, result: RunResult, workers: Sequence[WorkerSpec]
) -> list[str]:
    """Plain-words explanations derived from the delivery pattern."""
    causes: list[str] = _exit_causes(report, result) + _shortfall_causes(report, result)
    n = report.published
    rows = report.workers
    if n == 0:
        return causes or ["no task was published"]
    subs = [s for w in workers for s in w.subscriptions]
    shared = [s for s in subs if s.startswith("$share/") or s.startswith("$queue/")]
    groups = {s.split("/")[1] for s in shared if s.startswith("$share/")}
    refused = [(w, f, rc) for (w, f, rc) in result.subscribe_results if rc >= 0x80]
    everyone = len(rows) > 1 and all(r.unique == n for r in rows)
    cluster = cluster_causes(report, result)  # several endpoints: explained per node first
    causes += cluster.causes

    if cluster.duplicates:
        pass
    elif everyone:
        if not shared:
            causes.append("every worker got every task: the workers subscribed without $share "
                          "(plain subscriptions), so each one is its own consumer")
        elif len(groups) > 1 and len(groups) >= len(rows):
            causes.append("every worker got every task: each worker is in a different share "
                          f"group ({', '.join(sorted(groups))}); members must use the same "
                          "group name")
        elif result.own_processes and offending_plain(result, subs):
            causes.append("every process got every task: some hold a plain subscription to "
                          "the task topics besides (or instead of) the shared one (named below)")
        else:
            causes.append("every worker got every task although they share one group: the "
                          "broker treats $share/... like a plain subscription (no real "
                          "shared-subscription support, or a fan-out bug)")
    elif report.cross_worker and result.own_processes and offending_plain(result, subs):
        causes.append(f"{len(report.cross_worker)} task(s) reached several processes: a process "
                      "holds a plain subscription to the task topics besides the shared one "
                      "(named below)")
    elif report.cross_worker:
        causes.append(f"{len(report.cross_worker)} task(s) reached several workers: overlapping "
                      "pools or groups, partial fan-out, or a QoS 1 re-dispatch after a member "
                      "dropped (use --allow-redelivery if that is acceptable)")

    closed = refusals(result)
    refusal_causes = closed_after_causes(closed) + _publish_refusal_causes(result, closed)
    died = [e for e in result.process_exits if e.held]
    if cluster.missing:
        pass
    elif report.missing and report.lost_in_flight:
        # The journal shows them in the hands of a member that dropped or died: that comes
        # before any guess about filters or broker support.
        explained = {t for e in died for t in e.held}
        rest = [t for t in report.lost_in_flight if t not in explained]
        if rest or not died:
            causes.append(f"{len(rest or report.lost_in_flight)} task(s) were in flight on a "
                          "member whose connection dropped and the broker did not hand them to "
                          "another member (Mosquitto-like discard); persistent sessions or a "
                          "re-dispatching broker avoid the loss")
    elif report.unique_delivered == 0 or len(report.missing) == n:
        if refusal_causes:
            causes.append("nothing arrived: " + refusal_causes[0])
            causes += refusal_causes[1:]
            refusal_causes = []
        elif refused:
            codes = "; ".join(_suback_text(rc) for rc in sorted({rc for *_, rc in refused}))
            causes.append(f"nothing arrived: the broker refused the subscriptions ({codes})")
        elif report.connection_lost and not report.delivered:
            pass  # the broker was lost before anything could arrive: said above
        else:
            causes.append(_nothing_arrived(result, bool(shared)))
    elif report.missing and report.timed_out and not report.connection_lost:
        causes.append(f"{len(report.missing)} task(s) had not reached any worker when the run "
                      "was cut off")
    elif report.missing:
        qos0 = all(w.qos == 0 for w in workers)
        cause = (f"{len(report.missing)} task(s) never arrived: messages were lost — a member "
                 "dropped with QoS 1 in flight and the broker discarded instead of re-dispatching"
                 ", a broker queue limit (Mosquitto's max_queued_messages), or the run timed out")
        if qos0:
            cause += "; at QoS 0 the broker may drop for slow consumers"
        causes.append(cause)
    causes += refusal_causes
    causes += granted_causes(result, workers)
    if report.repeats_dup:
        causes.append(f"{report.repeats_dup} DUP-flagged redelivery(ies): acknowledgements are "
                      "not reaching the broker in time (or the worker reconnected), so it sent "
                      "them again — workers must be idempotent or ack faster")
    if report.repeats_fresh and result.own_processes:
        causes.append(f"{report.repeats_fresh} fresh copy(ies) on one process: it holds "
                      "overlapping subscriptions (plain + shared, or two groups, on one client "
                      "or on several) and receives a copy per subscription")
    elif report.repeats_fresh:
        causes.append(f"{report.repeats_fresh} fresh copy(ies) on one worker: that client holds "
                      "overlapping subscriptions (plain + shared, or two groups) and receives a "
                      "copy per subscription")
    active = [r for r in rows if r.unique]
    if cluster.idle:
        pass
    elif len(rows) > 1 and len(active) == 1 and report.unique_delivered > 1 and not everyone:
        pubs = report.publishers
        if len(pubs) > 1:
            causes.append(f"one worker ({active[0].name}) got everything from all {len(pubs)} "
                          "publishers: a sticky or hash-based dispatch strategy, or a round "
                          "robin whose turn is kept per publisher connection, so short-lived "
                          "publishers always start at the first member (EMQX's round_robin); "
                          "publishers that stay connected, or a turn the group shares, spread "
                          "the tasks")
        else:
            causes.append(f"one worker ({active[0].name}) got everything: a sticky or "
                          "hash-based dispatch strategy (hash by publisher client id with one "
                          "publisher), or a round robin whose turn is kept per publisher")
    elif result.own_processes and (offending_plain(result, subs) or result.process_exits
                                   or result.collisions):
        pass  # a plain subscriber's extra copies, or a process that died: named below
    elif report.balance.judged and any(c.name == "balance" and c.passed is False
                                       for c in report.checks):
        behind = slow_and_behind(rows, workers)
        if behind:
            text = (f"the split is uneven because {names(behind)} {slow_verb(behind)} slowly: the "
                    "dispatcher hands tasks to members with room (least_inflight, or a broker "
                    "whose in-flight window for a busy member is full), so a slow member gets "
                    "fewer; that is the strategy working, not a fault (raise --max-imbalance)")
        else:
            text = "the split is uneven: a random or load-based strategy, or slow members"
        if report.foreign:
            text += (f"; the workers also took {report.foreign} message(s) that this run did not "
                     "publish, and each one uses up a worker's turn")
        causes.append(text)
    o = report.ordering
    if o is not None and o.judged and o.out_of_order:
        causes.append(f"{o.out_of_order} task(s) arrived out of the order their {o.scope} sent "
                      f"them, though {o.basis}: the broker sends a member's backlog out of "
                      "order (queued messages sent after later ones), or hands one stream to "
                      "several members; workers that need order must not assume "
                      "it from this broker and strategy, or must reorder by sequence number")
    if result.own_processes:
        causes += _process_causes(report, result)
    if report.foreign:
        causes.append(f"{report.foreign} message(s) on the task topics were not published by "
                      "this run: another publisher (a live pool?) uses the same topics, so this "
                      "run's workers consumed its messages and its workers may get ours")
    return causes


def exit_status(status: int) -> str:
    """``status 3``, ``SIGKILL (-9)``: how a process ended, in words."""
    if status < 0:
        try:
            return f"{signal.Signals(-status).name} ({status})"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


def task_topics(result: RunResult) -> set[str]:
    """The topics the run's tasks were delivered on (what a filter must match to matter)."""
    return {d.topic for d in result.deliveries if d.task_id is not None and d.topic}


def offending_plain(result: RunResult, subs: Sequence[str]) -> list[str]:
    """The plain (not shared) filters among ``subs`` that match a task topic of the run: a
    filter that matches none (AetherMagic's ``.../batch1//perform``) takes no task copy."""
    topics = task_topics(result)
    return [f for f in dict.fromkeys(subs)
            if not f.startswith(("$share/", "$queue/")) and any(matches(f, t) for t in topics)]


def _who(result: RunResult, process: str, topic_filter: str | None = None) -> str:
    """``worker-3 (pid 4242, client 'abc')``: a process and the client that holds a filter."""
    held = [h for h in result.holders if h.process == process
            and (topic_filter is None or h.topic_filter == topic_filter)]
    if not held:
        return process
    clients = ", ".join(repr(c) for c in dict.fromkeys(h.client_id for h in held))
    return f"{process} (pid {held[0].pid}, client {clients})"


def _exit_causes(report: Report, result: RunResult) -> list[str]:
    """Worker processes (``--exec``) that ended on their own, first: what they held is the
    first explanation of what went missing."""
    out: list[str] = []
    missing = set(report.missing)
    for e in result.process_exits:
        lost = [t for t in e.held if t in missing]
        handed = len(e.held) - len(lost)
        fate = ("they were lost with it" if not handed else
                f"the broker handed {handed} on to another worker"
                + (f" and {len(lost)} were lost" if lost else ""))
        held = (f" holding {len(e.held)} task(s) it had not finished ({names(list(e.held))}): "
                f"{fate}" if e.held else "")
        tail = f"; its log ({e.log}) ends: {e.log_tail[-1]}" if e.log_tail else ""
        out.append(f"{e.name} (pid {e.pid}) exited with {exit_status(e.status)} during the "
                   f"run{held}{tail}")
    return out


def _process_causes(report: Report, result: RunResult) -> list[str]:
    """Findings about the team's own worker processes (``--exec``), naming each one and only
    from evidence: a filter is blamed only when it matches the run's task topics."""
    out: list[str] = []
    rows = report.workers
    for c in result.collisions:
        users = " and ".join(c.processes)
        out.append(f"{users} connect with the same client id {c.client_id!r}: the broker took "
                   f"the session over {c.takeovers} time(s), each new connection closing the "
                   "other's; give every process a client id of its own (e.g. with {name} or "
                   "the pid in it)" if len(c.processes) > 1 else
                   f"{users}'s client id {c.client_id!r} was taken over {c.takeovers} "
                   "time(s) by another connection with the same id (another process of the "
                   "pool, or one outside the run): give every process a client id of its own")
    groups = {r.name: {s.split("/")[1] for s in r.subscriptions if s.startswith("$share/")}
              for r in rows}
    for r in rows:
        plain = offending_plain(result, r.subscriptions)
        if plain and groups[r.name]:
            out.append(f"{_who(result, r.name, plain[0])} also holds the plain subscription "
                       f"{plain[0]!r} next to its $share subscription, so it gets a copy of "
                       "every task besides its share")
        elif plain and any(groups.values()):
            out.append(f"{_who(result, r.name, plain[0])} subscribes without $share "
                       f"({plain[0]!r}) while the others share a group: it gets every task")
    all_groups = {g for gs in groups.values() for g in gs}
    if len(all_groups) > 1:
        by_group = ", ".join(f"{r.name} in {sorted(groups[r.name])}" for r in rows
                             if groups[r.name])
        out.append(f"the processes are in different share groups ({by_group}): each group gets "
                   "its own copy of every task")
    for r in rows:
        if r.never_handled:
            out.append(f"{r.name} received {len(r.never_handled)} task(s) and never handled them "
                       f"(e.g. {r.never_handled[0]}): its client drops them before the handler, "
                       "e.g. a handler registered with message_callback_add on the $share/... "
                       "filter never fires, because messages arrive with the plain topic")
        if r.handled_twice:
            out.append(f"{r.name} handled {len(r.handled_twice)} task(s) more than once (e.g. "
                       f"{r.handled_twice[0]}): its handler runs twice per message (registered "
                       "twice, or a second client or subscription in the process that "
                       "overlaps the first)")
    return out


# What a SUBACK failure code means for a worker pool, beyond its name (MQTT 5.0 3.9.3; 0x80 is
# the only failure code MQTT 3.1.1 has, so an ACL denial looks like it there).
_SUBACK_ADVICE = {
    0x80: "in MQTT 3.1.1 also an ACL denial",
    0x87: "an ACL denies this subscription",
}


def _suback_text(code: int) -> str:
    advice = _SUBACK_ADVICE.get(code)
    return reason_text(code) + (f": {advice}" if advice else "")


def _nothing_arrived(result: RunResult, shared: bool) -> str:
    """Nothing arrived and the broker refused nothing: the readings the evidence allows, the
    literal ``$share`` first, and on a real broker the probe that tells them apart. No ACL is
    named here: an ACL that lets a subscription through and hides its messages leaves no sign
    in a run (the probe's control subscriber sees it)."""
    options = []
    if shared and result.mqtt5_refused:
        options.append("the broker takes $share/... as a literal topic filter (it speaks only "
                       "MQTT 3.1.1: it refused MQTT 5.0, and 3.1.1-only brokers such as "
                       "RabbitMQ and NATS have no shared subscriptions)")
    elif shared:
        options.append("the broker takes $share/... as a literal topic filter (no "
                       "shared-subscription support)")
    options.append("the filter does not match the task topics")
    accepted = " although every subscription was accepted" if shared else ""
    text = f"nothing arrived{accepted}: " + ", or ".join(options)
    if result.emulator_stats is None:
        url = result.endpoints[0] if result.endpoints else result.target
        text += f"; `aetherdiag probe --broker {url}` tells these apart"
    return text


def _publish_refusal_causes(result: RunResult, closed: Sequence[ClosedAfter] = ()
                            ) -> list[str]:
    """What the publisher's refused or unacknowledged publishes say, grouped by reason; the
    publishes left unacknowledged by a connection the broker closed as a refusal (``closed``)
    are that refusal, said once by ``refusals.closed_after_causes``."""
    explained = any(c.packet == "PUBLISH" for c in closed)
    share = [t for t, r in result.publish_refusals if "$share" in r]
    denied = [t for t, r in result.publish_refusals
              if "$share" not in r and "0x87" in r and r.startswith("refused")]
    other = [r for _, r in result.publish_refusals
             if r.startswith("refused") and "$share" not in r and "0x87" not in r]
    unacked = [r for _, r in result.publish_refusals if not r.startswith("refused")
               and not (explained and "closed the publisher's connection right after" in r)]
    out: list[str] = []
    if share:
        out.append(f"the broker refused {len(share)} publish(es) to a $share/... topic: a "
                   "publisher must publish to the plain topic, never to the $share/... filter")
    if denied:
        out.append(f"the broker refused {len(denied)} publish(es) as not authorized (0x87): an "
                   "ACL denies publishing to the task topics; use topics the ACL allows "
                   "(--topic, --union) or grant this client publish access")
    if other:
        out.append(f"the broker refused {len(other)} publish(es): {reasons(other)}")
    if unacked:
        out.append(f"{len(unacked)} publish(es) were never acknowledged "
                   f"({reasons(unacked)}): not a refusal, the broker did not "
                   "answer before the run ended")
    return out


def _shortfall_causes(report: Report, result: RunResult) -> list[str]:
    """Why the run did not do all it set out to do (broker lost, timeout, interrupt)."""
    out: list[str] = []
    if report.connection_lost:
        out.append(f"the broker connection was lost mid-run ({names(report.connection_lost)}): "
                   "the broker stopped or restarted, or the network dropped; figures after "
                   "that point are partial")
    if report.interrupted:
        out.append("the run was interrupted before it finished; figures are partial")
    elif report.timed_out:
        bound = f" ({round(result.timeout_s, 1):g} s)" if result.timeout_s else ""
        pending = []
        if report.unsent:
            pending.append(f"{len(report.unsent)} task(s) not yet sent")
        if report.unfinished:
            pending.append(f"{len(report.unfinished)} task(s) still being worked on")
        if report.steps_not_run:
            pending.append(f"{len(report.steps_not_run)} step(s) not run")
        what = ": " + ", ".join(pending) if pending else ""
        out.append(f"the run hit its timeout{bound} before it settled{what}; raise --timeout "
                   "(slow workers and --rate pacing need time) or publish fewer tasks")
    elif report.unsent and not report.connection_lost:
        why = reasons([r for _, r in report.unsent])
        out.append(f"{len(report.unsent)} task(s) were never sent: {why}")
    return out
