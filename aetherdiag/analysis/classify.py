"""Pure analysis: what the workers received -> a Report with checks, causes and a verdict.

How this works: ``analyse(result, workers, expect)`` groups deliveries by pool (workers meant to
share the tasks; one pool unless a scenario declares several). For every published task and
pool it counts which workers got it and how often: a task that reached two workers of a pool
is a cross-worker duplicate, a second copy on the same worker is a repeat (DUP-flagged
redelivery or a fresh copy), a task no worker of a pool finished is missing (a copy counts as
finished unless the caller names it ``abandoned``: replay derives those from the drops and
disconnects, next to the harness's records). Balance compares the unique tasks per worker.
The checks map to exit codes; the lowest failing code wins.

A run is only judged healthy when it did all it set out to do: besides duplicates, missing
tasks and balance, the checks fail when a client lost its broker connection mid-run (3),
tasks were never sent or never finished, replay steps were not run, or the run hit its
timeout before it settled (7, incomplete). When the run asks for it (``Expectations.order_check``)
the ordering check holds it to the order its strategy promises (``ordering.py``; 6). An
interrupted run is 130 whatever else it shows.
Nothing here does I/O, and no presentation comes in: titles, the run's setup and replay
timelines are attached to the Report by the caller.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence, Set
from dataclasses import replace

from ..exitcodes import ExitCode
from ..harness.model import RunResult, WorkerSpec
from .activity import activity, shared_tasks
from .causes import exit_status, likely_causes, names, reasons, slow_and_behind, slow_verb
from .cluster import node_figures
from .latency import latency_of
from .ordering import ordering_check, ordering_of, publisher_rows
from .refusals import connections_of, refusals
from .report import (
    DEFAULT_POOL,
    Balance,
    Check,
    CopyRef,
    Expectations,
    Report,
    WorkerRow,
    verdict_text,
)
from .stats import chi_square_sf


def analyse(
    result: RunResult,
    workers: Sequence[WorkerSpec],
    expect: Expectations | None = None,
    *,
    steps: int | None = None,
    abandoned: Set[CopyRef] = frozenset(),
) -> Report:
    """Classify every delivery in ``result`` and decide the verdict.

    ``steps`` (replay) is how many steps the scenario had; it adds the "every step ran" check.
    ``abandoned`` (replay) names the copies their worker never finished: it lost its
    connection holding them. The Report comes back without presentation (title, setup,
    timeline); the caller attaches those.
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
    # copies[(worker, task)] -> list of (dup, finished by that worker)
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
        held = copies[key]
        done = d.completed and CopyRef(d.worker, d.task_id, len(held)) not in abandoned
        held.append((d.dup, done))

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
    shared = shared_tasks(cross)
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
        app = _app_level(result, name, tasks, published_set)
        rows.append(WorkerRow(
            name=name, pool=pool_of[name], received=received, unique=len(tasks),
            repeats=dup + fresh, dup_repeats=dup,
            share=(len(tasks) / total) if total else 0.0, tasks=tuple(tasks),
            subscriptions=specs[name].subscriptions if name in specs else (),
            handled=app[0], handled_twice=app[1], never_handled=app[2],
            node=specs[name].node if name in specs else 1, shared=shared[name],
        ))

    balance = balance_of(rows, pools, len(published), expect)
    unfinished = tuple((w, t) for w, t in result.unfinished if t in published_set)
    ordering = ordering_of(result, expect, published_set)
    checks = (_checks(published, missing, cross, repeats_dup, repeats_fresh, balance, expect,
                      allowed, slow_and_behind(rows, workers), lost) + _handler_checks(result, rows)
              + ordering_check(ordering, expect) + _completion_checks(result, unfinished, steps))
    failing = [c.code for c in checks if c.passed is False]
    code = min(failing) if failing else ExitCode.OK
    if result.interrupted:
        code = ExitCode.INTERRUPTED
    timed_out = not result.settled and not result.interrupted
    latency, latency_histogram, latency_clock = latency_of(result)
    report = Report(
        target=result.target, published=len(published),
        delivered=sum(r.received for r in rows), unique_delivered=len(published) - len(missing),
        missing=tuple(missing), cross_worker=tuple(cross), allowed_redeliveries=allowed,
        repeats=repeats_dup + repeats_fresh, repeats_dup=repeats_dup,
        repeats_fresh=repeats_fresh, foreign=foreign, balance=balance, workers=tuple(rows),
        checks=checks, causes=(), exit_code=code,
        verdict=verdict_text(code, timed_out=timed_out, timeout_s=result.timeout_s)
        + _judged_on(result, code),
        duration_s=result.duration_s, settled=result.settled,
        publish_failures=result.publish_failures, latency_ms=latency,
        notes=result.notes, emulator_stats=result.emulator_stats, lost_in_flight=tuple(lost),
        unsent=result.unsent, unfinished=unfinished, connection_lost=_lost(result),
        steps_not_run=result.steps_not_run, timed_out=timed_out,
        interrupted=result.interrupted, nodes=node_figures(result, rows),
        latency_histogram=latency_histogram, latency_clock=latency_clock,
        activity=activity(result, pool_of, published),
        publishers=publisher_rows(result, published), ordering=ordering,
    )
    return _with_causes(report, result, workers)


def _lost(result: RunResult) -> tuple[str, ...]:
    """The clients whose broker connection died mid-run, without those the broker closed as
    a refusal of a packet they had just sent (``causes.refusals``: not a lost broker)."""
    refused = {c.client for c in refusals(result)}
    return tuple(c for c in result.connection_lost if c not in refused)


def _judged_on(result: RunResult, code: ExitCode) -> str:
    """What a verdict on the team's own processes rests on, when it is not everything."""
    if not result.own_processes or result.observed == "all" or code is ExitCode.INTERRUPTED:
        return ""
    seen = "delivery and ack" if result.observed == "acks" else "delivery"
    return f" ({seen} only: add --reply-topic)"


def balance_of(
    rows: list[WorkerRow], pools: dict[str, list[str]], published: int, expect: Expectations
) -> Balance:
    """How evenly each pool's workers shared the tasks (the worst pool counts), and whether
    there were enough tasks per worker to judge it; ``watch`` judges its counts with it too."""
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
    one_worker = not any(len(m) > 1 for m in pools.values())
    delivered = any(r.unique for r in rows)
    # one worker has nothing to share with: its split is even by definition (1.00, not ∞)
    why = ("nothing delivered" if not delivered else "one worker" if one_worker
           else "" if judged else "too few tasks per worker")
    return Balance(
        judged=judged and not one_worker,
        max_over_min=worst_ratio if delivered else None,
        max_over_mean=worst_mean if any_delivered or (one_worker and delivered) else None,
        chi_square=chi, p_value=p, idle_workers=tuple(idle), not_judged=why,
    )


def _checks(
    published: list[str], missing: list[str], cross: list[tuple[str, tuple[str, ...]]],
    repeats_dup: int, repeats_fresh: int, balance: Balance, expect: Expectations,
    allowed: int, slow: Sequence[str] = (), lost: Sequence[str] = (),
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
    if balance.not_judged == "nothing delivered":
        ratio_text = "no split to measure"
    elif balance.max_over_min is None:
        ratio_text = "max/min infinite (" + ", ".join(balance.idle_workers) + " got nothing)"
    else:
        ratio_text = f"max/min {balance.max_over_min:.2f}"
    if not balance.judged:
        balance_check = Check(
            name="balance", passed=None, code=ExitCode.IMBALANCE,
            detail=f"not judged: {balance.not_judged or 'too few tasks per worker'} "
            f"({ratio_text})",
        )
    else:
        ok = balance.max_over_min is not None and balance.max_over_min <= expect.max_imbalance
        detail = f"{ratio_text}, allowed {expect.max_imbalance:g}"
        if not ok and slow:
            detail += (f" ({names(slow)} {slow_verb(slow)} slowly and got the fewest tasks: a "
                       "load-based dispatcher sends a busy member less)")
        elif not ok and balance.p_value is not None and balance.p_value >= 0.05:
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
              detail=f"{len(missing)} of {n} tasks reached no worker"
              + (f" that finished them ({len(lost)} lost in flight on a member that dropped "
                 "or died)" if lost else "") if missing
              else f"all {n} tasks delivered"),
        balance_check,
    )


def _app_level(result: RunResult, worker: str, tasks: list[str], published: set[str]
               ) -> tuple[int | None, tuple[str, ...], tuple[str, ...]]:
    """What a worker process did with its tasks, from its replies (``--exec`` profiles):
    how many it handled (a ``complete``, or a reply to a ``--reply-topic``; AetherMagic's
    automatic ``status`` is receipt, not handling), those it handled more than once (every
    client of the process counted), those it got and never handled. A task still being
    worked on when the run ended (``unfinished``), or held by a process that ended on its
    own, is not "never handled": those are failures of their own."""
    if not result.expects_replies:
        return None, (), ()
    completes: dict[str, int] = defaultdict(int)
    for who, task, action in result.replies:
        if who == worker and task in published and action == "complete":
            completes[task] += 1
    twice = tuple(t for t, n in completes.items() if n > 1)
    elsewhere = {t for w, t in result.unfinished if w == worker}
    elsewhere.update(t for e in result.process_exits if e.name == worker for t in e.held)
    never = tuple(t for t in tasks if t not in completes and t not in elsewhere)
    return len(completes), twice, never


NOT_OBSERVED = "not observed"
_NO_REPLIES = ("no reply channel: give --reply-topic (and --worker-field on a real broker) "
               "so the workers' answers can be seen")


def _handler_checks(result: RunResult, rows: list[WorkerRow]) -> tuple[Check, ...]:
    """App-level checks of ``--exec`` workers: every task a process received was handled,
    and no process ran its handler twice for one task. Without replies neither can be seen:
    both are listed as not observed, never passed."""
    if not result.own_processes and not result.expects_replies:
        return ()
    if not result.expects_replies:
        return (
            Check(name="every delivered task handled", passed=None, code=ExitCode.MISSING,
                  detail=f"{NOT_OBSERVED}: {_NO_REPLIES}"),
            Check(name="each task handled once", passed=None, code=ExitCode.DUPLICATES,
                  detail=f"{NOT_OBSERVED}: {_NO_REPLIES}"),
        )
    never = [(r.name, t) for r in rows for t in r.never_handled]
    twice = [(r.name, t) for r in rows for t in r.handled_twice]
    pending = len(result.unfinished) + sum(len(e.held) for e in result.process_exits)
    if never:
        handled = Check(name="every delivered task handled", passed=False,
                        code=ExitCode.MISSING,
                        detail=f"{len(never)} task(s) delivered to a process that never handled "
                        f"them: {names([f'{t} on {w}' for w, t in never])}")
    elif pending:
        handled = Check(name="every delivered task handled", passed=None,
                        code=ExitCode.MISSING,
                        detail=f"{NOT_OBSERVED} for {pending} task(s) that were not finished "
                        "(still being worked on, or held by a process that ended; see below); "
                        "every other delivered task was completed")
    else:
        handled = Check(name="every delivered task handled", passed=True, code=ExitCode.MISSING,
                        detail="every process completed every task it received")
    return (
        handled,
        Check(name="each task handled once", passed=not twice, code=ExitCode.DUPLICATES,
              detail=f"{len(twice)} task(s) handled more than once by one process: "
              f"{names([f'{t} on {w}' for w, t in twice])}" if twice
              else "no process ran its handler twice for a task"),
    )


def _process_checks(result: RunResult) -> tuple[Check, ...]:
    """``--exec``: every process ran until the run stopped it, with a client id of its own."""
    if not result.own_processes:
        return ()
    exits = result.process_exits
    checks = [Check(
        name="worker processes kept running", passed=not exits, code=ExitCode.INCOMPLETE,
        detail="; ".join(f"{e.name} exited with {exit_status(e.status)}"
                         + (f" holding {len(e.held)} task(s) ({names(list(e.held))})"
                            if e.held else "") for e in exits)
        if exits else "no worker process ended before the run stopped it")]
    if result.collisions:
        checks.append(Check(
            name="one client id per process", passed=False, code=ExitCode.INCOMPLETE,
            detail="; ".join(f"client id {c.client_id!r} used by {' and '.join(c.processes)}"
                             f" (session taken over {c.takeovers} time(s))"
                             for c in result.collisions)))
    elif result.emulator_stats is None:  # a real broker does not say who took over whom
        checks.append(Check(
            name="one client id per process", passed=None, code=ExitCode.INCOMPLETE,
            detail=f"{NOT_OBSERVED}: only the embedded emulator sees a session taken over"))
    else:
        checks.append(Check(
            name="one client id per process", passed=True, code=ExitCode.INCOMPLETE,
            detail="no session was taken over by another connection"))
    return tuple(checks)


def _completion_checks(
    result: RunResult, unfinished: tuple[tuple[str, str], ...], steps: int | None
) -> tuple[Check, ...]:
    """Did the run do all it set out to do? Each shortfall is a failing check of its own."""
    planned = len(result.published) + len(result.unsent)
    lost = _lost(result)
    refused = [c.client for c in refusals(result)]
    if unfinished:
        finished = Check(name="every task finished", passed=False, code=ExitCode.INCOMPLETE,
                         detail=f"{len(unfinished)} task(s) still being worked on when the run "
                         f"ended ({names([f'{t} on {w}' for w, t in unfinished])})")
    elif result.own_processes and result.observed == "deliveries":
        finished = Check(name="every task finished", passed=None, code=ExitCode.INCOMPLETE,
                         detail=f"{NOT_OBSERVED}: at QoS 0 without replies nothing says when a "
                         "worker is done (give --reply-topic, or --qos 1 for acknowledgements)")
    elif result.own_processes and result.observed == "acks":
        finished = Check(name="every task finished", passed=True, code=ExitCode.INCOMPLETE,
                         detail="every delivery was acknowledged (the handling itself is not "
                         "observed without replies)")
    else:
        finished = Check(name="every task finished", passed=True, code=ExitCode.INCOMPLETE,
                         detail="no worker was still working on a task at the end")
    checks = [
        Check(name="broker connection held", passed=not lost, code=ExitCode.UNREACHABLE,
              detail=(f"{len(lost)} client(s) lost the broker connection mid-run: "
                      f"{names(lost)}" if lost else "no client lost its broker connection")
              + (f"; the broker closed {connections_of(refused)} as a refusal (see the "
                 "likely causes)" if refused else "")),
        Check(name="every task sent", passed=not result.unsent, code=ExitCode.INCOMPLETE,
              detail=f"{len(result.unsent)} of {planned} tasks never sent "
              f"({reasons([r for _, r in result.unsent])})" if result.unsent else
              f"all {planned} tasks sent"),
        finished,
        *_process_checks(result),
    ]
    if steps is not None:
        skipped = result.steps_not_run
        checks.append(Check(
            name="every step ran", passed=not skipped, code=ExitCode.INCOMPLETE,
            detail=f"{len(skipped)} of {steps} steps not run: {names(skipped)}" if skipped
            else f"all {steps} steps ran"))
    bound = f" after {round(result.timeout_s, 1):g} s" if result.timeout_s else ""
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


def _with_causes(report: Report, result: RunResult, workers: Sequence[WorkerSpec]) -> Report:
    return replace(report, causes=tuple(likely_causes(report, result, workers)))
