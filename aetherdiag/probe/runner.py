"""Run every probe step against one broker and assemble the ``ProbeReport``.

How this works: ``run_probe`` owns the ``Context`` (run id, time budget, clients). Order:
1. CONNECT with 5.0 and 3.1.1 (nothing reachable -> ``ProbeUnreachable``); the CONNECT time
   sets the round-trip estimate and how long "nothing more arrives" is waited for. The runs
   and checks below use 5.0, or 3.1.1 when the broker refuses 5.0 (``ProbeReport.fallback``
   says so); ``--mqtt`` pins the version: when the broker refuses a pinned version, what
   needs it is "not tested" (the short run on the other version still runs);
2. at the same time: the main dispatch run on the preferred version (5.0 when accepted) and a
   short run on the other -> ``$share`` behaviour per protocol and duplicates;
3. at the same time, each on its own thread (they mostly wait, for answers or for silence):
   the strategy fingerprint with its pull / sticky follow-up run, and the rule checks
   (retained, No Local, $share topic, malformed names, in-flight QoS 1/2, $queue).
Runs never share topics, groups or clients, so running them together changes no result.
With several endpoints (``targets``, node 1 first) every step above runs on node 1; the other
nodes must answer a CONNECT, and the cross-node runs (cluster.py) join step 3. Their local
preference row, derived afterwards, can name ``local`` as the strategy. Each cross-node run
adds ``cluster.SECONDS_PER_CHECK`` to the time budget.
Every step catches its own failure and becomes a "skip" row; a step that ran out of budget
says so instead of reporting what the cut-short wait seemed to show. All clients are closed
at the end whatever happened.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from ..exitcodes import Unreachable
from ..harness.model import BrokerTarget
from . import checks, cluster, dispatch, inflight, sessions
from .client import V5, V311
from .context import Budget, Context, StepFailed, check_topic_prefix
from .fingerprint import Guess
from .model import (
    BALANCED,
    DENIED,
    FANOUT,
    REFUSED,
    TOPIC_PREFIX_HINT,
    Check,
    ProbeReport,
    ProtocolInfo,
    Status,
    version_label,
)
from .share import NOT_AUTHORIZED, ShareRun

log = logging.getLogger("aetherdiag.probe")

DEFAULT_MESSAGES = 96


class ProbeUnreachable(Unreachable):
    """Neither protocol version could connect; the message is one line for the user."""


@dataclass(frozen=True, kw_only=True)
class ProbeOptions:
    timeout: float = 30.0  # the whole probe, seconds
    messages: int = DEFAULT_MESSAGES  # messages in the main dispatch run
    run_id: str | None = None
    parallel: bool = True
    protocol: str | None = None  # version for the main run and rule checks (default: 5)
    topic_prefix: str | None = None  # the run's topics go under {topic_prefix}/{run id}


def run_probe(
    target: BrokerTarget,
    options: ProbeOptions | None = None,
    *,
    label: str | None = None,
    on_step: Callable[[str], None] | None = None,
    targets: Sequence[BrokerTarget] = (),
) -> ProbeReport:
    """Probe ``target`` (see the module comment). ``label`` replaces the URL in the report.
    ``targets``: every endpoint, node 1 first (``target`` is then ignored for ``targets[0]``);
    two or more add the cross-node checks."""
    opts = options or ProbeOptions()
    if targets:
        target = targets[0]
    budget = Budget(opts.timeout + cluster.budget_extra(len(targets)))

    def step(text: str) -> None:
        log.info("%.2f s: %s", budget.elapsed(), text)
        if on_step is not None:
            on_step(text)

    ctx = Context(target=target, budget=budget, targets=tuple(targets))
    if opts.run_id:
        ctx.run_id = opts.run_id
    if opts.topic_prefix is not None:
        ctx.prefix = check_topic_prefix(opts.topic_prefix)  # ValueError: the caller's mistake
    try:
        return _run(ctx, opts, label or target.display(), step)
    finally:
        ctx.close_everything()


def _run(ctx: Context, opts: ProbeOptions, label: str, step: Callable[[str], None]
         ) -> ProbeReport:
    step("connecting (MQTT 3.1.1 and 5.0)")
    v5, reach5 = checks.probe_protocol(ctx, V5)
    v311, reach311 = checks.probe_protocol(ctx, V311)
    if not reach5 and not reach311:
        raise ProbeUnreachable(f"cannot connect to {ctx.target.display()}: {v5.detail}")
    if not v5.accepted and not v311.accepted:
        raise ProbeUnreachable(
            f"{ctx.target.display()} accepted no MQTT session (5.0: {v5.detail}; "
            f"3.1.1: {v311.detail})")
    if ctx.nodes > 1:
        step(f"connecting to nodes 2 ... {ctx.nodes}")
        try:
            cluster.reach(ctx)
        except StepFailed as exc:
            raise ProbeUnreachable(f"cannot connect to {exc}") from None
    accepted = [p for p in (v5, v311) if p.accepted]
    slowest = max(p.connect_ms for p in accepted)
    ctx.rtt = slowest / 2000.0  # CONNECT costs about two round trips (TCP, then MQTT)
    ctx.quiet = min(2.0, max(0.3, 0.3 + slowest * 0.008))
    ctx.step = min(5.0, max(2.0, 2.0 + slowest * 0.02))
    preferred = V311 if opts.protocol == V311 else V5
    answer = {V5: v5, V311: v311}
    # MQTT 5.0 first; a broker that refuses it gets the runs and checks in 3.1.1, unless
    # --mqtt pinned the version: then what needs it is not tested
    pinned_refused = opts.protocol is not None and not answer[preferred].accepted
    ctx.version = preferred if answer[preferred].accepted or pinned_refused else (
        V311 if preferred == V5 else V5)
    other = V311 if ctx.version == V5 else V5
    other_ok = answer[other].accepted
    fallback = ""
    if ctx.version != preferred:
        fallback = (f"MQTT {version_label(preferred)} was refused ({answer[preferred].detail}); "
                    f"the dispatch runs and rule checks used MQTT {version_label(ctx.version)}"
                    " (--mqtt pins a version)")
    pinned = (f"--mqtt {preferred}: the broker refused MQTT "
              f"{version_label(preferred)} ({answer[preferred].detail}); without --mqtt the "
              f"probe uses MQTT {version_label(other)}" if pinned_refused else "")

    rows: dict[str, Check] = {
        "connect_v311": checks.connect_check(v311),
        "connect_v5": checks.connect_check(v5),
        "shared_sub_available": checks.shared_available_check(v5 if v5.accepted else None),
    }
    runs: dict[str, ShareRun | None] = {V311: None, V5: None}
    why: dict[str, str] = {V311: "MQTT 3.1.1 not accepted", V5: "MQTT 5.0 not accepted"}

    step(f"dispatch runs: 3 members, {opts.messages} messages on MQTT {ctx.version}"
         + (f", 9 on MQTT {other}" if other_ok else ""))
    share_jobs: dict[str, Callable[[], ShareRun]] = {}
    if pinned_refused:
        why[ctx.version] = pinned
    else:
        share_jobs[ctx.version] = lambda: dispatch.main_run(ctx, ctx.version, opts.messages)
    if other_ok:
        share_jobs[other] = lambda: dispatch.small_run(ctx, other)
    for version, outcome in _together(share_jobs, opts.parallel).items():
        if isinstance(outcome, BaseException):
            why[version] = f"step failed: {outcome}"
        else:
            runs[version] = outcome
    _same_refusal(runs)
    balanced = {v: r is not None and r.outcome.behaviour == BALANCED for v, r in runs.items()}
    rows["share_v311"] = dispatch.share_check(V311, runs[V311], balanced[V5], why[V311])
    rows["share_v5"] = dispatch.share_check(V5, runs[V5], balanced[V311], why[V5])
    rows["duplicates"] = dispatch.duplicates_check([r for r in runs.values() if r])

    main = runs[ctx.version]
    main_behaviour = main.outcome.behaviour if main is not None else None
    needs_share = (None if main_behaviour in (BALANCED, FANOUT) else
                   f"not applicable: $share subscriptions are {main_behaviour or 'untested'} "
                   f"with MQTT {ctx.version} here")
    # The broker refuses the probe's own topics: every rule check would only measure that.
    needs_topics = (None if main_behaviour != DENIED else
                    f"the broker refused the probe's own subscriptions or publishes with "
                    f"MQTT {version_label(ctx.version)} (see the $share rows)")
    step("strategy follow-up and rule checks (retained, No Local, $share topics, in-flight "
         "QoS 1/2, $queue)" + (f"; cross-node runs on {ctx.nodes} endpoints"
                               if ctx.nodes > 1 else ""))
    found: list[Guess] = []
    tasks: dict[str, tuple[str, Callable[[], Check]]] = {
        "strategy": ("Dispatch strategy", lambda: _strategy(ctx, main, found)),
        "retained": ("Retained message on a new shared subscription",
                     lambda: checks.retained_check(ctx)),
        "no_local": ("No Local on a shared subscription",
                     lambda: checks.no_local_check(ctx, v5.accepted)),
        "publish_to_share": ("Publishing to a $share/... topic",
                             lambda: checks.publish_to_share_check(ctx)),
        "malformed_share": ("Malformed share names", lambda: checks.malformed_check(ctx)),
        "qos1_drop_clean": ("QoS 1 in flight when a clean-session member drops",
                            lambda: inflight.qos1_drop_check(ctx, persistent=False)),
        "qos1_drop_persistent": ("QoS 1 in flight when a persistent-session member drops",
                                 lambda: inflight.qos1_drop_check(ctx, persistent=True)),
        "qos2_drop": ("QoS 2 in flight when a member drops",
                      lambda: inflight.qos2_drop_check(ctx)),
        "offline_member": ("A persistent member offline: does it keep its turn?",
                           lambda: sessions.offline_member_check(ctx)),
        "expired_session": ("Tasks queued for a member whose session expires",
                            lambda: sessions.expired_session_check(ctx)),
        "redispatch_wildcard": ("Redispatch for a wildcard group vs an exact filter",
                                lambda: sessions.wildcard_redispatch_check(ctx)),
        "queue_prefix": ("$queue/ prefix (EMQX style)", lambda: checks.queue_check(ctx)),
    }
    split: list[cluster.NodeRun] = []
    if ctx.nodes > 1:
        tasks[cluster.DELIVERY] = (cluster.TITLES[cluster.DELIVERY],
                                   lambda: cluster.delivery_check(ctx))
        tasks[cluster.ONCE] = (cluster.TITLES[cluster.ONCE], lambda: _once(ctx, split))
    if pinned_refused:
        for cid in list(tasks):
            rows[cid] = _skipped(cid, tasks.pop(cid)[0], pinned)
    if needs_topics is not None:
        for cid in [c for c in tasks if c != "strategy"]:
            rows[cid] = _skipped(cid, tasks.pop(cid)[0], needs_topics)
    if needs_share is not None:
        for cid in ("retained", "qos1_drop_clean", "qos1_drop_persistent", "qos2_drop",
                    "offline_member", "expired_session", "redispatch_wildcard",
                    cluster.DELIVERY, cluster.ONCE):
            if cid in tasks:
                rows[cid] = _skipped(cid, tasks.pop(cid)[0], needs_share)
    jobs: dict[str, Callable[[], Check]] = {
        cid: functools.partial(_guarded, ctx, cid, title, fn)
        for cid, (title, fn) in tasks.items()}
    for cid, result in _together(jobs, opts.parallel).items():
        rows[cid] = (result if isinstance(result, Check)
                     else _skipped(cid, tasks[cid][0], f"error: {result}"))
    guess = found[0] if found and rows["strategy"].status is not Status.SKIP else None
    across: list[str] = []
    if ctx.nodes > 1:
        across = [cluster.DELIVERY, cluster.ONCE, cluster.LOCAL]
        once = rows[cluster.ONCE]
        rows[cluster.LOCAL] = cluster.local_check(
            split[0] if split and once.status is not Status.SKIP else None,
            rows[cluster.DELIVERY], why_not=once.evidence if once.status is Status.SKIP else "")
        local = cluster.local_guess(rows[cluster.LOCAL], guess)
        if local is not None:
            guess = local
            rows["strategy"] = dispatch.strategy_check(local)

    order = ["connect_v311", "connect_v5", "shared_sub_available", "share_v311", "share_v5",
             "duplicates", "strategy", *across, "retained", "no_local", "publish_to_share",
             "malformed_share", "qos1_drop_clean", "qos1_drop_persistent", "qos2_drop",
             "offline_member", "expired_session", "redispatch_wildcard", "queue_prefix"]
    share = {v: (r.outcome.behaviour if r is not None else None) for v, r in runs.items()}
    notes = [n for n in (fallback, pinned) if n]
    if ctx.budget.left() <= 0:
        notes.append("the --timeout budget ran out; some checks were skipped")
    if any(r is not None and r.outcome.behaviour == DENIED for r in runs.values()):
        notes.append(TOPIC_PREFIX_HINT)
    shown = tuple(replace(rows[c], evidence=ctx.shorten(rows[c].evidence)) for c in order)
    return ProbeReport(
        target=label, endpoints=tuple(ctx.endpoint(n).display() for n in range(1, ctx.nodes + 1)),
        run_id=ctx.run_id, topic_prefix=ctx.base, protocols=(v311, v5),
        share_behaviour=share, strategy=guess, checks=shown,
        duration_s=ctx.budget.elapsed(), notes=tuple(notes), fallback=fallback)


def _same_refusal(runs: dict[str, ShareRun | None]) -> None:
    """A 3.1.1 SUBACK can only say 0x80 ("failure"). When the other version's identical
    subscription was denied as not authorized, that 0x80 is the same ACL, not a verdict on
    $share: the run becomes ``denied`` too."""
    denied = [r for r in runs.values() if r is not None and r.outcome.behaviour == DENIED
              and NOT_AUTHORIZED in r.suback]
    if not denied:
        return
    for version, run in runs.items():
        if run is not None and run.outcome.behaviour == REFUSED and run.refused_code == 0x80:
            detail = (f"{run.outcome.detail}; with MQTT {version_label(denied[0].version)} "
                      f"the same subscription was refused as not authorized")
            runs[version] = replace(run, outcome=replace(run.outcome, behaviour=DENIED,
                                                         detail=detail))


T = TypeVar("T")


def _together(jobs: dict[str, Callable[[], T]], parallel: bool
              ) -> dict[str, T | BaseException]:
    """Run ``jobs`` on threads (or one by one); each result or the exception it raised."""
    out: dict[str, T | BaseException] = {}
    if not parallel or len(jobs) < 2:
        for key, fn in jobs.items():
            try:
                out[key] = fn()
            except Exception as exc:
                out[key] = exc
        return out
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="probe") as pool:
        futures = {key: pool.submit(fn) for key, fn in jobs.items()}
        for key, future in futures.items():
            try:
                out[key] = future.result()
            except Exception as exc:
                out[key] = exc
    return out


def _strategy(ctx: Context, main: ShareRun | None, found: list[Guess]) -> Check:
    """The fingerprint with its follow-up run; the Guess is appended to ``found``."""
    if main is None or main.outcome.behaviour != BALANCED:
        return dispatch.strategy_check(
            None, "the main run did not deliver each message to one member")
    try:
        guess = dispatch.guess_strategy(ctx, main)
    except StepFailed as exc:
        # Not the unconfirmed sequence guess: that would name a different strategy for a
        # shorter --timeout (round robin for a pull queue).
        log.info("strategy follow-up failed: %s", exc)
        return dispatch.strategy_check(None, str(exc))
    found.append(guess)
    return dispatch.strategy_check(guess)


def _once(ctx: Context, split: list[cluster.NodeRun]) -> Check:
    """The one-copy run; the run is kept in ``split`` for the local preference row."""
    run = cluster.once_run(ctx)
    split.append(run)
    return cluster.once_check(run)


def _guarded(ctx: Context, cid: str, title: str, fn: Callable[[], Check]) -> Check:
    """Run one check; failures and budget exhaustion become a "skip" row."""
    if ctx.budget.left() < 1.0:
        return _skipped(cid, title, "out of time (--timeout)")
    started = time.monotonic()
    try:
        check = fn()
    except StepFailed as exc:
        return _skipped(cid, title, f"step failed: {exc}")
    except Exception as exc:  # a broken check must not take the report down
        log.debug("check %s failed", cid, exc_info=True)
        return _skipped(cid, title, f"error: {type(exc).__name__}: {exc}")
    if ctx.budget.left() <= 0 and check.status is not Status.SKIP:
        return _skipped(cid, title, f"out of time (--timeout) after "
                                    f"{time.monotonic() - started:.1f} s")
    return check


def _skipped(cid: str, title: str, why: str) -> Check:
    return Check(id=cid, title=title, status=Status.SKIP, result="not tested", evidence=why,
                 spec="-", meaning="-")


__all__ = ["ProbeOptions", "ProbeUnreachable", "ProtocolInfo", "run_probe"]
