"""A watch's ``Summary`` -> the ``workers``-style ``Report``: checks, likely causes, verdict.
Pure: no I/O.

How this works: each finding of the tracker is one check with the exit code ``workers`` uses
for it (1: processed by several workers, by one worker twice, or a tid shared by two tasks;
4: stalled; 5: imbalance, judged by ``analysis``'s own balance rule over the per-worker
counts). The lowest failing code wins; a broker lost mid-watch is 3, an interrupted watch 130
(with a note of what the verdict would have been). A watch that saw no task could not judge
what it set out to judge: 7 (incomplete) with the verdict "no tasks observed" and a hint
naming the filters it subscribed to. So is a recording read back without its end line (the
watch was killed, or the file cut short): 7 unless a lower code applies. Resent performs alone
fail nothing (an at-least-once caller may resend); they are a cause when a resent task was
also processed twice. Retained messages were ignored by the tracker; a note says how many.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from ..analysis.causes import names
from ..analysis.classify import balance_of
from ..analysis.report import (
    DEFAULT_POOL,
    Balance,
    Check,
    Expectations,
    Report,
    WorkerRow,
    verdict_text,
)
from ..exitcodes import ExitCode
from .tracker import Summary

# how the watch ended: "input" is a recording read back that ended in order; "cut" one that
# ends without its end line
Ended = Literal["duration", "tasks", "interrupted", "lost", "input", "cut"]
NO_TASKS = "no tasks observed"


def judge(summary: Summary, *, target: str, ended: Ended, max_imbalance: float = 1.5,
          lost: str = "", filters: tuple[str, ...] = (), recording: str = "") -> Report:
    """The report of one watch (or of a recording read back: ``recording`` names the file).
    ``filters``: what the watch subscribed to (named when it saw nothing)."""
    rows = _rows(summary)
    expect = Expectations(max_imbalance=max_imbalance)
    balance = balance_of(rows, {DEFAULT_POOL: [r.name for r in rows]}, summary.tasks, expect)
    checks = _checks(summary, balance_check(balance, expect), ended, lost, recording)
    # what the watch found, the interrupt itself aside (it wins the exit code anyway)
    failing = [c.code for c in checks if c.passed is False and c.code != ExitCode.INTERRUPTED]
    findings = min(failing, default=ExitCode.OK)
    code = ExitCode.INTERRUPTED if ended == "interrupted" else findings
    notes = _notes(summary)
    if not observed(summary):
        notes.insert(0, no_tasks_hint(filters))
    if ended == "cut":
        notes.insert(0, f"{recording or 'the recording'} ends without the watch's end record "
                     "(the watch was killed, or the file was cut short): judged as cut off, "
                     "with the figures up to its last line")
    if ended == "interrupted":
        notes.insert(0, f"interrupted: without the interrupt the verdict is "
                     f"{_verdict(summary, findings)} (exit {int(findings)})")
    examples = summary.examples
    return Report(
        target=target, published=summary.tasks,
        delivered=sum(r.received for r in rows), unique_delivered=summary.handled,
        missing=tuple(t for t, _ in examples["stalled"]),
        cross_worker=tuple((t, tuple(text.split(", "))) for t, text in examples["multi"]),
        allowed_redeliveries=0, repeats=summary.repeats, repeats_dup=0,
        repeats_fresh=summary.repeats, foreign=0, balance=balance, workers=tuple(rows),
        checks=checks, causes=tuple(causes(summary)), verdict=_verdict(summary, code),
        exit_code=code, duration_s=summary.duration_s, settled=True, notes=tuple(notes),
        connection_lost=(lost,) if lost else (), interrupted=ended == "interrupted",
    )


def observed(summary: Summary) -> bool:
    """Whether the watch saw any task at all (a perform, or an answer about one)."""
    return bool(summary.tasks or summary.handled or summary.unperformed)


def no_tasks_hint(filters: tuple[str, ...]) -> str:
    """The one-line hint of a watch that saw no task: what it subscribed to, what to check."""
    subscribed = ", ".join(filters) if filters else "its filters"
    # always quoted: the shell must not expand a + or # filter
    quoted = "'" + filters[0].replace("'", "'\\''") + "'" if filters else ""
    check = f", or check with mosquitto_sub -v -t {quoted}" if filters else ""
    return (f"hint: no task arrived on {subscribed}: wrong --union/--job/--task/--context (or "
            f"--task-topic/--reply-topic), or an idle pool; run longer{check}")


def pool_seen(summary: Summary) -> tuple[tuple[str, str], ...]:
    """The pool as the watch saw it, for the report's ``run`` block (JSON ``run``): processes
    that announced themselves since the watch started, and workers seen answering tasks.

    Only these two can be known. AetherMagic (0.2.23) workers announce ``online`` once when
    they connect and ``idle`` when they start listening, never retained, and nothing in the
    library answers a question about who is there: the only message a worker reacts to is a
    ``perform``, i.e. a task, which a passive watch must never send. A process that was already
    running when the watch started is therefore seen only when it answers a task."""
    return (("announced since start", str(len(summary.pool))),
            ("workers answering", str(len(summary.workers))))


def _verdict(summary: Summary, code: ExitCode) -> str:
    if code is ExitCode.INCOMPLETE and not observed(summary):
        return NO_TASKS
    return verdict_text(code, timed_out=False, timeout_s=None)


def _rows(summary: Summary) -> list[WorkerRow]:
    """One row per worker that answered a task, and one per worker that announced itself idle
    for a scope where tasks were seen but answered none (it got nothing)."""
    total = summary.handled
    rows = [WorkerRow(name=w.name, pool=DEFAULT_POOL, received=w.received, unique=w.unique,
                      repeats=w.received - w.unique, dup_repeats=0,
                      share=w.unique / total if total else 0.0, tasks=w.tasks,
                      shared=w.shared)
            for w in summary.workers]
    seen = {r.name for r in rows}
    scopes = set(summary.task_scopes)
    for who, announced in summary.idle_scopes.items():
        if who not in seen and scopes.intersection(announced):
            rows.append(WorkerRow(name=who, pool=DEFAULT_POOL, received=0, unique=0,
                                  repeats=0, dup_repeats=0, share=0.0, tasks=()))
    return rows


def balance_check(balance: Balance, expect: Expectations) -> Check:
    """The balance check, worded as ``workers`` words it."""
    if balance.not_judged == "nothing delivered":
        ratio = "no split to measure"
    elif balance.max_over_min is None:
        ratio = "max/min infinite (" + ", ".join(balance.idle_workers) + " got nothing)"
    else:
        ratio = f"max/min {balance.max_over_min:.2f}"
    if not balance.judged:
        return Check(name="balance", passed=None, code=ExitCode.IMBALANCE,
                     detail=f"not judged: {balance.not_judged or 'too few tasks per worker'} "
                     f"({ratio})")
    ok = balance.max_over_min is not None and balance.max_over_min <= expect.max_imbalance
    return Check(name="balance", passed=ok, code=ExitCode.IMBALANCE,
                 detail=f"{ratio}, allowed {expect.max_imbalance:g}")


def _listed(pairs: tuple[tuple[str, str], ...], limit: int = 3) -> str:
    return names([f"{t} ({text})" for t, text in pairs], limit)


def _checks(s: Summary, balance: Check, ended: Ended, lost: str, recording: str
            ) -> tuple[Check, ...]:
    n, ex, counts = s.tasks, s.examples, s.counts
    checks = [
        Check(name="each task processed by one worker", passed=not counts["multi"],
              code=ExitCode.DUPLICATES,
              detail=f"{counts['multi']} task(s) answered by more than one worker: "
              f"{_listed(ex['multi'])}" if counts["multi"]
              else "no task was answered by two workers"),
        Check(name="no worker got a task twice", passed=not counts["repeat"],
              code=ExitCode.DUPLICATES,
              detail=f"{counts['repeat']} task(s) received again by the same worker "
              f"({s.repeats} extra copies): {_listed(ex['repeat'])}" if counts["repeat"]
              else "no worker received a task twice"),
        Check(name="no task id collisions", passed=not counts["collision"],
              code=ExitCode.DUPLICATES,
              detail=f"{counts['collision']} tid(s) carried two different tasks: "
              f"{_listed(ex['collision'])}" if counts["collision"]
              else "no tid was reused for another task"),
        Check(name="resent tasks processed once", passed=not s.resent_doubled,
              code=ExitCode.DUPLICATES,
              detail=f"{counts['resent']} task(s) performed again with the same payload "
              f"({s.resent_performs} resends); {s.resent_doubled} of them processed twice"
              if counts["resent"] else "no perform was resent"),
    ]
    if s.limits.expects_replies:
        late = f" ({s.late} answered later)" if s.late else ""
        checks.append(Check(
            name="no stalled tasks", passed=not counts["stalled"], code=ExitCode.MISSING,
            detail=f"{counts['stalled']} of {n} task(s) got no answer within "
            f"{s.limits.stall_after:g} s{late}: {names([t for t, _ in ex['stalled']])}"
            if counts["stalled"] else f"every task answered within {s.limits.stall_after:g} s"
            + (f" ({s.waiting} still waiting at the end)" if s.waiting else "")))
    else:
        checks.append(Check(name="no stalled tasks", passed=None, code=ExitCode.MISSING,
                            detail="not judged: no --reply-topic, so answers are not seen"))
    if not observed(s):  # nothing seen is nothing vouched for: no ✔ for an empty watch
        checks = [replace(c, passed=None, detail="not judged: no task observed")
                  for c in checks]
    checks.append(balance)
    if not observed(s):
        checks.append(Check(name="tasks observed", passed=False, code=ExitCode.INCOMPLETE,
                            detail=f"{NO_TASKS} in {s.duration_s:.1f} s: nothing to judge"
                            + (f" ({s.retained} retained message(s) ignored)" if s.retained
                               else "")))
    if ended == "cut":
        checks.append(Check(name="recording complete", passed=False, code=ExitCode.INCOMPLETE,
                            detail=f"{recording or 'the recording'} has no end record: the "
                            "watch was cut off"))
    if lost:
        checks.append(Check(name="broker connection held", passed=False,
                            code=ExitCode.UNREACHABLE, detail=f"lost mid-watch: {lost}"))
    if ended == "interrupted":
        checks.append(Check(name="watch not interrupted", passed=False,
                            code=ExitCode.INTERRUPTED,
                            detail="ended by Ctrl-C, SIGTERM or SIGHUP: figures so far"))
    return tuple(checks)


def causes(s: Summary) -> list[str]:
    """Likely causes in plain words, from the findings."""
    out: list[str] = []
    counts = s.counts
    if counts["multi"]:
        out.append(f"{counts['multi']} task(s) were processed by several workers: something "
                   "besides the share group's members receives the perform topic (a process "
                   "with a plain subscription to .../+/perform, a second share group, or a "
                   "broker that fans $share out to every member)")
    if counts["repeat"]:
        out.append("a worker received the same task again: it holds the task topic twice "
                   "(a shared and a plain subscription on one connection), or the task was "
                   "sent twice")
    if s.resent_doubled:
        out.append(f"{s.resent_doubled} resent perform(s) were processed twice: an "
                   "at-least-once caller resent a task still being worked on and the resend "
                   "went to a worker again (AetherMagic workers keep no shared de-dup state; "
                   "resend only after the status timeout, or make the handler idempotent)")
    if counts["collision"]:
        out.append(f"{counts['collision']} tid(s) were used by two different tasks: "
                   "AetherMagic's de-dup set (job:task:context:tid, never pruned) swallows "
                   "every later task with a tid a worker has seen, so one of them never runs; "
                   "give every perform a fresh tid (uuid4)")
    if counts["stalled"]:
        out.append(f"{counts['stalled']} perform(s) got no status within "
                   f"{s.limits.stall_after:g} s: no worker holds that job/task/context, the "
                   "workers are down or all busy, or a reused tid was swallowed")
    return out


def _notes(s: Summary) -> list[str]:
    limits = s.limits
    notes = [f"{s.retained} retained message(s) ignored: stale state from before the watch, "
             "not live tasks"] if s.retained else []
    if s.forgotten:
        notes.append(f"{s.forgotten} finished task(s) forgotten after {limits.forget_after:g} s "
                     "(counted above; a later answer to one is still recognised)")
    if s.finished_dropped:
        notes.append(f"finished-task memory full after {limits.max_finished:,} tasks "
                     f"({s.finished_dropped:,} older ones dropped): a second answer to a task "
                     "older than that cannot be recognised")
    before = ("sent before the watch started, outside the filters, or finished before the "
              "finished-task memory dropped it" if s.finished_dropped
              else "sent before the watch started, or outside the filters")
    for count, text in (
            (s.recalled, "finished and forgotten task(s) heard from again, recognised from "
             "the finished-task memory"),
            (s.evicted, "task(s) dropped unfinished: more than "
             f"{limits.max_tracked} live at once"),
            (s.unparsed, "message(s) unparsed (not the profile's format)"),
            (s.unattributed, "answer(s) naming no worker"),
            (s.unperformed, f"task(s) answered whose perform was not seen ({before})"),
            (s.in_progress, "task(s) still being worked on at the end"),
            (s.waiting, "perform(s) still waiting for an answer at the end")):
        if count:
            notes.append(f"{count} {text}")
    if s.pool or s.workers:
        online = sum(1 for _, kinds in s.pool if "online" in kinds)
        idle = sum(1 for _, kinds in s.pool if "idle" in kinds)
        announced = (f"{len(s.pool)} process(es) announced themselves since the watch started "
                     f"({online} online, {idle} idle)" if s.pool
                     else "no process announced itself since the watch started")
        answering = ""
        if s.workers:
            names = {who for who, _ in s.pool}
            unannounced = sum(1 for w in s.workers if w.name not in names)
            answering = f"; {len(s.workers)} worker(s) seen answering tasks" + (
                f", {unannounced} of them not announced (a process announces itself when it "
                "connects: one already running when the watch started is seen only when it "
                "answers)" if unannounced else "")
        notes.append(f"pool: {announced}{answering}")
    listed = s.limits.max_tasks_listed
    if any(w.unique > listed for w in s.workers):
        notes.append(f"task lists show the first {listed} tasks of each worker")
    return notes
