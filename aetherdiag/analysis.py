"""Pure analysis: what the workers received -> a Report with checks, causes and a verdict.

How this works: ``analyse(result, workers, expect)`` groups deliveries by pool (workers meant to
share the tasks; one pool unless a scenario declares several). For every published task and
pool it counts which workers got it and how often: a task that reached two workers of a pool
is a cross-worker duplicate, a second copy on the same worker is a repeat (DUP-flagged
redelivery or a fresh copy), a task no worker of a pool got is missing. Balance compares the
unique tasks per worker. The checks map to exit codes; the lowest failing code wins.

A run is only judged healthy when it did all it set out to do: besides duplicates, missing
tasks and balance, the checks fail when a client lost its broker connection mid-run (3),
tasks were never sent or never finished, replay steps were not run, or the run hit its
timeout before it settled (7, incomplete). An interrupted run is 130 whatever else it shows.
Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .exitcodes import ExitCode
from .harness.model import RunResult, WorkerSpec

DEFAULT_POOL = "workers"


@dataclass(frozen=True, kw_only=True)
class Expectations:
    """Verdict knobs (``--max-imbalance``, ``--allow-redelivery``)."""

    max_imbalance: float = 1.5
    allow_redelivery: bool = False
    min_share_to_judge: float = 3.0  # balance is judged when each worker's even share >= this


@dataclass(frozen=True, kw_only=True)
class WorkerRow:
    name: str
    pool: str
    received: int  # every copy, repeats included
    unique: int
    repeats: int  # copies beyond the first of a task on this worker (allowed ones excluded)
    dup_repeats: int  # ... of which had the DUP flag (redeliveries)
    share: float  # unique / unique tasks delivered to the pool
    tasks: tuple[str, ...]  # unique task ids in the order first received
    subscriptions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Balance:
    judged: bool
    max_over_min: float | None  # None when a worker got nothing (infinitely unbalanced)
    max_over_mean: float | None
    chi_square: float | None = None
    p_value: float | None = None  # of an even split; None when the run is too small
    idle_workers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    passed: bool | None  # None: not judged
    detail: str
    code: ExitCode


@dataclass(frozen=True, kw_only=True)
class Report:
    title: str
    target: str
    published: int
    delivered: int
    unique_delivered: int
    missing: tuple[str, ...]  # no worker of a pool finished it (never received, or lost)
    cross_worker: tuple[tuple[str, tuple[str, ...]], ...]  # (task, workers that got it)
    allowed_redeliveries: int
    repeats: int
    repeats_dup: int
    repeats_fresh: int
    foreign: int  # deliveries whose payload was not one of our tasks
    lost_in_flight: tuple[str, ...] = ()  # missing tasks a dropped member had received
    balance: Balance
    workers: tuple[WorkerRow, ...]
    checks: tuple[Check, ...]
    causes: tuple[str, ...]
    verdict: str
    exit_code: ExitCode
    duration_s: float
    settled: bool
    publish_failures: tuple[str, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    timeline: tuple[str, ...] = ()
    emulator_stats: dict[str, object] | None = None
    context: tuple[tuple[str, str], ...] = ()  # how the run was set up, shown under the title
    unsent: tuple[tuple[str, str], ...] = ()  # (task, reason): never handed to the broker
    unfinished: tuple[tuple[str, str], ...] = ()  # (worker, task) still being worked on
    connection_lost: tuple[str, ...] = ()  # clients whose broker connection died mid-run
    steps_not_run: tuple[str, ...] = ()
    timed_out: bool = False  # a deadline (--timeout, a settle's timeout) cut the run short
    interrupted: bool = False


_VERDICTS = {
    ExitCode.OK: "healthy",
    ExitCode.DUPLICATES: "duplicates",
    ExitCode.UNREACHABLE: "broker lost",
    ExitCode.MISSING: "missing",
    ExitCode.IMBALANCE: "imbalanced",
    ExitCode.INCOMPLETE: "incomplete",
    ExitCode.INTERRUPTED: "interrupted",
}


def verdict_text(code: ExitCode, *, timed_out: bool, timeout_s: float | None) -> str:
    """``healthy``, ``missing (timed out after 2 s)``, ``interrupted`` ..."""
    text = _VERDICTS.get(code, code.name.lower())
    if timed_out and code is not ExitCode.INTERRUPTED:
        text += f" (timed out after {timeout_s:g} s)" if timeout_s else " (timed out)"
    return text


def analyse(
    result: RunResult,
    workers: Sequence[WorkerSpec],
    expect: Expectations | None = None,
    *,
    title: str = "aetherdiag workers",
    timeline: Sequence[str] = (),
    context: Mapping[str, str] | None = None,
    steps: int | None = None,
) -> Report:
    """Classify every delivery in ``result`` and decide the verdict.

    ``steps`` (replay) is how many steps the scenario had; it adds the "every step ran" check.
    """
    expect = expect or Expectations()
    specs = {w.name: w for w in workers}
    pool_of = {name: (specs[name].pool if name in specs else "") or DEFAULT_POOL
               for name in result.workers}
    pools: dict[str, list[str]] = defaultdict(list)
    for name in result.workers:
        pools[pool_of[name]].append(name)

    published = list(dict.fromkeys(result.published))
    published_set = set(published)
    # copies[(worker, task)] -> list of (dup, completed)
    copies: dict[tuple[str, str], list[tuple[bool, bool]]] = defaultdict(list)
    order: dict[str, list[str]] = defaultdict(list)
    foreign = 0
    for d in result.deliveries:
        if d.task_id is None or d.task_id not in published_set or d.worker not in pool_of:
            foreign += 1
            continue
        key = (d.worker, d.task_id)
        if key not in copies:
            order[d.worker].append(d.task_id)
        copies[key].append((d.dup, d.completed))

    receivers: dict[tuple[str, str], list[str]] = defaultdict(list)  # (pool, task) -> workers
    for (worker, task) in copies:
        receivers[(pool_of[worker], task)].append(worker)

    missing: list[str] = []
    cross: list[tuple[str, tuple[str, ...]]] = []
    allowed = 0
    lost: list[str] = []
    for task in published:
        for pool in pools:
            got = receivers.get((pool, task), [])
            finished = [w for w in got if any(c for _, c in copies[(w, task)])]
            if not finished:
                # Nobody got it, or only members that dropped before finishing it.
                if task not in missing:
                    missing.append(task)
                    if got:
                        lost.append(task)
            elif len(got) > 1:
                if expect.allow_redelivery and len(finished) <= 1:
                    allowed += len(got) - 1
                else:
                    cross.append((task, tuple(sorted(got, key=result.workers.index))))

    rows: list[WorkerRow] = []
    repeats_dup = repeats_fresh = 0
    pool_unique = {p: sum(1 for (pp, _t) in receivers if pp == p) for p in pools}
    for name in result.workers:
        tasks = order.get(name, [])
        received = sum(len(copies[(name, t)]) for t in tasks)
        dup = fresh = 0
        for t in tasks:
            held = copies[(name, t)]
            extra = held[1:]
            n_dup = sum(1 for is_dup, _ in extra if is_dup)
            if expect.allow_redelivery and not all(done for _, done in held):
                # The worker lost its connection holding this task; the broker re-sent it
                # with DUP when it came back: the redelivery that was asked to be allowed.
                allowed += n_dup
            else:
                dup += n_dup
            fresh += len(extra) - n_dup
        repeats_dup += dup
        repeats_fresh += fresh
        total = pool_unique.get(pool_of[name], 0)
        rows.append(WorkerRow(
            name=name, pool=pool_of[name], received=received, unique=len(tasks),
            repeats=dup + fresh, dup_repeats=dup,
            share=(len(tasks) / total) if total else 0.0, tasks=tuple(tasks),
            subscriptions=specs[name].subscriptions if name in specs else (),
        ))

    balance = _balance(rows, pools, len(published), expect)
    unfinished = tuple((w, t) for w, t in result.unfinished if t in published_set)
    checks = _checks(published, missing, cross, repeats_dup, repeats_fresh, balance, expect,
                     allowed) + _completion_checks(result, unfinished, steps)
    failing = [c.code for c in checks if c.passed is False]
    code = min(failing) if failing else ExitCode.OK
    if result.interrupted:
        code = ExitCode.INTERRUPTED
    timed_out = not result.settled and not result.interrupted
    latencies = sorted(d.latency_ms for d in result.deliveries if d.latency_ms is not None)
    report = Report(
        title=title, target=result.target, published=len(published),
        delivered=sum(r.received for r in rows), unique_delivered=len(published) - len(missing),
        missing=tuple(missing), cross_worker=tuple(cross), allowed_redeliveries=allowed,
        repeats=repeats_dup + repeats_fresh, repeats_dup=repeats_dup,
        repeats_fresh=repeats_fresh, foreign=foreign, balance=balance, workers=tuple(rows),
        checks=checks, causes=(), exit_code=code,
        verdict=verdict_text(code, timed_out=timed_out, timeout_s=result.timeout_s),
        duration_s=result.duration_s, settled=result.settled,
        publish_failures=result.publish_failures, latency_ms=_percentiles(latencies),
        notes=result.notes, timeline=tuple(timeline), emulator_stats=result.emulator_stats,
        lost_in_flight=tuple(lost), context=tuple(context.items()) if context else (),
        unsent=result.unsent, unfinished=unfinished, connection_lost=result.connection_lost,
        steps_not_run=result.steps_not_run, timed_out=timed_out,
        interrupted=result.interrupted,
    )
    return _with_causes(report, result, workers)


def _balance(
    rows: list[WorkerRow], pools: dict[str, list[str]], published: int, expect: Expectations
) -> Balance:
    worst_ratio: float | None = 1.0
    worst_mean: float | None = 1.0
    idle: list[str] = []
    chi_total = 0.0
    dof = 0
    enough_for_chi = True
    any_delivered = False
    for members in pools.values():
        counts = [r.unique for r in rows if r.name in members]
        if not counts or len(counts) < 2 or sum(counts) == 0:
            continue
        any_delivered = True
        hi, lo = max(counts), min(counts)
        mean = sum(counts) / len(counts)
        idle += [r.name for r in rows if r.name in members and r.unique == 0]
        ratio = None if lo == 0 else hi / lo
        if worst_ratio is not None:
            worst_ratio = None if ratio is None else max(worst_ratio, ratio)
        if worst_mean is not None:
            worst_mean = max(worst_mean, hi / mean)
        if mean < 5:
            enough_for_chi = False
        chi_total += sum((n - mean) ** 2 / mean for n in counts)
        dof += len(counts) - 1
    n_workers = max((len(m) for m in pools.values()), default=1)
    judged = any_delivered and published / max(n_workers, 1) >= expect.min_share_to_judge
    chi = p = None
    if any_delivered and dof and enough_for_chi:
        chi = chi_total
        p = chi_square_sf(chi_total, dof)
    return Balance(
        judged=judged and any(len(m) > 1 for m in pools.values()),
        max_over_min=worst_ratio, max_over_mean=worst_mean if any_delivered else None,
        chi_square=chi, p_value=p, idle_workers=tuple(idle),
    )


def _checks(
    published: list[str], missing: list[str], cross: list[tuple[str, tuple[str, ...]]],
    repeats_dup: int, repeats_fresh: int, balance: Balance, expect: Expectations,
    allowed: int,
) -> tuple[Check, ...]:
    n = len(published)
    cross_detail = (
        f"{len(cross)} of {n} tasks reached more than one worker"
        if cross else "every task reached at most one worker of its pool"
    )
    if allowed:
        cross_detail += f" ({allowed} re-dispatch(es) after a member loss allowed)"
    repeat_detail = (
        f"{repeats_dup + repeats_fresh} extra copies on the same worker "
        f"({repeats_dup} DUP redeliveries, {repeats_fresh} fresh copies)"
        if repeats_dup + repeats_fresh else "no worker got a task twice"
    )
    if balance.max_over_min is None:
        ratio_text = "max/min infinite (" + ", ".join(balance.idle_workers) + " got nothing)"
    else:
        ratio_text = f"max/min {balance.max_over_min:.2f}"
    if not balance.judged:
        balance_check = Check(
            name="balance", passed=None, code=ExitCode.IMBALANCE,
            detail=f"not judged: too few tasks per worker ({ratio_text})",
        )
    else:
        ok = balance.max_over_min is not None and balance.max_over_min <= expect.max_imbalance
        detail = f"{ratio_text}, allowed {expect.max_imbalance:g}"
        if not ok and balance.p_value is not None and balance.p_value >= 0.05:
            detail += (f" (chi-square p={balance.p_value:.2f}: a split this uneven is common "
                       "for a random dispatcher at this size; publish more tasks or raise "
                       "--max-imbalance)")
        balance_check = Check(name="balance", passed=ok, code=ExitCode.IMBALANCE, detail=detail)
    return (
        Check(name="no cross-worker duplicates", passed=not cross, code=ExitCode.DUPLICATES,
              detail=cross_detail),
        Check(name="no same-worker repeats", passed=not (repeats_dup + repeats_fresh),
              code=ExitCode.DUPLICATES, detail=repeat_detail),
        Check(name="no missing tasks", passed=not missing, code=ExitCode.MISSING,
              detail=f"{len(missing)} of {n} tasks reached no worker" if missing
              else f"all {n} tasks delivered"),
        balance_check,
    )


def _completion_checks(
    result: RunResult, unfinished: tuple[tuple[str, str], ...], steps: int | None
) -> tuple[Check, ...]:
    """Did the run do all it set out to do? Each shortfall is a failing check of its own."""
    planned = len(result.published) + len(result.unsent)
    lost = result.connection_lost
    checks = [
        Check(name="broker connection held", passed=not lost, code=ExitCode.UNREACHABLE,
              detail=f"{len(lost)} client(s) lost the broker connection mid-run: "
              f"{_names(lost)}" if lost else "no client lost its broker connection"),
        Check(name="every task sent", passed=not result.unsent, code=ExitCode.INCOMPLETE,
              detail=f"{len(result.unsent)} of {planned} tasks never sent "
              f"({_reasons([r for _, r in result.unsent])})" if result.unsent else
              f"all {planned} tasks sent"),
        Check(name="every task finished", passed=not unfinished, code=ExitCode.INCOMPLETE,
              detail=f"{len(unfinished)} task(s) still being worked on when the run ended "
              f"({_names([f'{t} on {w}' for w, t in unfinished])})" if unfinished
              else "no worker was still working on a task at the end"),
    ]
    if steps is not None:
        skipped = result.steps_not_run
        checks.append(Check(
            name="every step ran", passed=not skipped, code=ExitCode.INCOMPLETE,
            detail=f"{len(skipped)} of {steps} steps not run: {_names(skipped)}" if skipped
            else f"all {steps} steps ran"))
    bound = f" after {result.timeout_s:g} s" if result.timeout_s else ""
    if result.interrupted:
        checks.append(Check(name="run not interrupted", passed=False,
                            code=ExitCode.INTERRUPTED,
                            detail="interrupted (Ctrl-C, SIGTERM or SIGHUP): figures are partial"))
    else:
        checks.append(Check(
            name="settled within the timeout", passed=result.settled, code=ExitCode.INCOMPLETE,
            detail="deliveries settled" if result.settled else
            f"timed out{bound} before deliveries settled: figures are partial"))
    return tuple(checks)


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … +{len(items) - limit} more" if len(items) > limit else "")


def _reasons(reasons: Sequence[str]) -> str:
    """``3 not sent: ...; 1 refused ...``: each distinct reason once, with its count."""
    counts: dict[str, int] = defaultdict(int)
    for reason in reasons:
        counts[reason] += 1
    return "; ".join(f"{n} {reason}" for reason, n in counts.items())


def _with_causes(report: Report, result: RunResult, workers: Sequence[WorkerSpec]) -> Report:
    return replace(report, causes=tuple(likely_causes(report, result, workers)))


def likely_causes(
    report: Report, result: RunResult, workers: Sequence[WorkerSpec]
) -> list[str]:
    """Plain-words explanations derived from the delivery pattern."""
    causes: list[str] = _shortfall_causes(report, result)
    n = report.published
    rows = report.workers
    if n == 0:
        return causes or ["no task was published"]
    subs = [s for w in workers for s in w.subscriptions]
    shared = [s for s in subs if s.startswith("$share/") or s.startswith("$queue/")]
    groups = {s.split("/")[1] for s in shared if s.startswith("$share/")}
    refused = [(w, f, rc) for (w, f, rc) in result.subscribe_results if rc >= 0x80]
    everyone = len(rows) > 1 and all(r.unique == n for r in rows)

    if everyone:
        if not shared:
            causes.append("every worker got every task: the workers subscribed without $share "
                          "(plain subscriptions), so each one is its own consumer")
        elif len(groups) > 1 and len(groups) >= len(rows):
            causes.append("every worker got every task: each worker is in a different share "
                          f"group ({', '.join(sorted(groups))}); members must use the same "
                          "group name")
        else:
            causes.append("every worker got every task although they share one group: the "
                          "broker treats $share/... like a plain subscription (no real "
                          "shared-subscription support, or a fan-out bug)")
    elif report.cross_worker:
        causes.append(f"{len(report.cross_worker)} task(s) reached several workers: overlapping "
                      "pools or groups, partial fan-out, or a QoS 1 re-dispatch after a member "
                      "dropped (use --allow-redelivery if that is acceptable)")

    refusal_causes = _publish_refusal_causes(result)
    if report.unique_delivered == 0 or len(report.missing) == n:
        if refusal_causes:
            causes.append("nothing arrived: " + refusal_causes[0])
            causes += refusal_causes[1:]
            refusal_causes = []
        elif refused:
            codes = "; ".join(f"0x{rc:02X} = {_SUBACK_MEANING.get(rc, 'refused')}"
                              for rc in sorted({rc for *_, rc in refused}))
            causes.append(f"nothing arrived: the broker refused the subscriptions ({codes})")
        elif report.connection_lost and not report.delivered:
            pass  # the broker was lost before anything could arrive: said above
        else:
            # The emulator has no ACLs; a real broker may accept a subscription its ACL then
            # keeps silent (Mosquitto answers SUBACK success and filters at delivery).
            options = [] if result.emulator_stats is not None else [
                "an ACL accepts the subscription but denies reading the task topics (Mosquitto "
                "grants such subscriptions and delivers nothing)"]
            if shared:
                options.append("the broker takes $share/... as a literal topic filter (no "
                               "shared-subscription support)")
            options.append("the filter does not match the task topics")
            accepted = " although every subscription was accepted" if shared else ""
            causes.append(f"nothing arrived{accepted}: " + ", or ".join(options))
    elif report.missing and report.lost_in_flight:
        causes.append(f"{len(report.lost_in_flight)} task(s) were in flight on a member whose "
                      "connection dropped and the broker did not hand them to another member "
                      "(Mosquitto-like discard); persistent sessions or a re-dispatching broker "
                      "avoid the loss")
    elif report.missing:
        qos0 = all(w.qos == 0 for w in workers)
        cause = (f"{len(report.missing)} task(s) never arrived: messages were lost — a member "
                 "dropped with QoS 1 in flight and the broker discarded instead of re-dispatching"
                 ", a broker queue limit (Mosquitto's max_queued_messages), or the run timed out")
        if qos0:
            cause += "; at QoS 0 the broker may drop for slow consumers"
        causes.append(cause)
    causes += refusal_causes
    if report.repeats_dup:
        causes.append(f"{report.repeats_dup} DUP-flagged redelivery(ies): acknowledgements are "
                      "not reaching the broker in time (or the worker reconnected), so it sent "
                      "them again — workers must be idempotent or ack faster")
    if report.repeats_fresh:
        causes.append(f"{report.repeats_fresh} fresh copy(ies) on one worker: that client holds "
                      "overlapping subscriptions (plain + shared, or two groups) and receives a "
                      "copy per subscription")
    active = [r for r in rows if r.unique]
    if len(rows) > 1 and len(active) == 1 and report.unique_delivered > 1 and not everyone:
        causes.append(f"one worker ({active[0].name}) got everything: a sticky or hash-based "
                      "dispatch strategy (hash by publisher client id with one publisher), or a "
                      "round robin whose turn is kept per publisher")
    elif report.balance.judged and any(c.name == "balance" and c.passed is False
                                       for c in report.checks):
        slow = [w.name for w in workers if w.work_ms > 0]
        text = "the split is uneven: a random or load-based strategy, or slow members"
        if slow:
            text += f" ({', '.join(slow)} process slowly)"
        if report.foreign:
            text += (f"; the workers also took {report.foreign} message(s) that this run did not "
                     "publish, and each one uses up a worker's turn")
        causes.append(text)
    if report.foreign:
        causes.append(f"{report.foreign} message(s) on the task topics were not published by "
                      "this run: another publisher (a live pool?) uses the same topics, so this "
                      "run's workers consumed its messages and its workers may get ours")
    return causes


# What a SUBACK failure code means for a worker pool (MQTT 5.0 3.9.3; 0x80 is also the only
# failure code MQTT 3.1.1 has, so an ACL denial looks like it there).
_SUBACK_MEANING = {
    0x80: "unspecified error (in MQTT 3.1.1 also an ACL denial)",
    0x83: "implementation specific error",
    0x87: "not authorized: an ACL denies this subscription",
    0x8F: "topic filter invalid",
    0x91: "packet identifier in use",
    0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


def _publish_refusal_causes(result: RunResult) -> list[str]:
    """What the publisher's refused or unacknowledged publishes say, grouped by reason."""
    share = [t for t, r in result.publish_refusals if "$share" in r]
    denied = [t for t, r in result.publish_refusals
              if "$share" not in r and "0x87" in r and r.startswith("refused")]
    other = [r for _, r in result.publish_refusals
             if r.startswith("refused") and "$share" not in r and "0x87" not in r]
    unacked = [r for _, r in result.publish_refusals if not r.startswith("refused")]
    out: list[str] = []
    if share:
        out.append(f"the broker refused {len(share)} publish(es) to a $share/... topic: a "
                   "publisher must publish to the plain topic, never to the $share/... filter")
    if denied:
        out.append(f"the broker refused {len(denied)} publish(es) as not authorized (0x87): an "
                   "ACL denies publishing to the task topics; use topics the ACL allows "
                   "(--topic, --union) or grant this client publish access")
    if other:
        out.append(f"the broker refused {len(other)} publish(es): {_reasons(other)}")
    if unacked:
        out.append(f"{len(unacked)} publish(es) were never acknowledged "
                   f"({_reasons(unacked)}): not a refusal, the broker did not "
                   "answer before the run ended")
    return out


def _shortfall_causes(report: Report, result: RunResult) -> list[str]:
    """Why the run did not do all it set out to do (broker lost, timeout, interrupt)."""
    out: list[str] = []
    if report.connection_lost:
        out.append(f"the broker connection was lost mid-run ({_names(report.connection_lost)}): "
                   "the broker stopped or restarted, or the network dropped; figures after "
                   "that point are partial")
    if report.interrupted:
        out.append("the run was interrupted before it finished; figures are partial")
    elif report.timed_out:
        bound = f" ({result.timeout_s:g} s)" if result.timeout_s else ""
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
        reasons = _reasons([r for _, r in report.unsent])
        out.append(f"{len(report.unsent)} task(s) were never sent: {reasons}")
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(values[-1], 3)}


def chi_square_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square distribution with ``dof`` degrees of freedom."""
    if x <= 0:
        return 1.0
    return 1.0 - _regularized_gamma_p(dof / 2.0, x / 2.0)


def _regularized_gamma_p(a: float, x: float) -> float:
    if x < a + 1:  # series expansion
        term = total = 1.0 / a
        ap = a
        for _ in range(500):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-12:
                break
        return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    # continued fraction (Lentz) for Q, then P = 1 - Q
    b = x + 1 - a
    cc = 1.0 / 1e-300
    d = 1.0 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        cc = b + an / cc
        cc = 1e-300 if abs(cc) < 1e-300 else cc
        d = 1.0 / d
        delta = d * cc
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    q = math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
    return 1.0 - q
