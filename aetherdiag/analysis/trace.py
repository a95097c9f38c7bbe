"""What happened to one task: the first question of every incident report ("problem-task-123
was processed by every worker: by whom, when, and why?").

How this works: ``trace(result, task_id, report)`` reads one task's lines out of a run's
record and its judged report: whether and how it was published (publisher, sequence number,
node, a refusal or the reason it was never sent), every copy a worker received (time, QoS,
DUP, whether that worker finished it, publish-to-delivery latency), every answer a worker
process gave (``--exec``), the fleet events that held it in flight (a drop, a disconnect), a
process that died holding it, and the report's verdict on it in one sentence. Pure: no I/O,
no presentation; ``render/trace.py`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..harness.model import RunResult
from .report import Report


@dataclass(frozen=True, kw_only=True)
class Copy:
    """One copy of the task a worker received."""

    at: float  # seconds since the run started
    worker: str
    topic: str
    qos: int
    dup: bool
    finished: bool  # the worker finished it (acknowledged, or did not lose it with a drop)
    latency_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class Moment:
    """Something that happened to a worker while it held the task (a drop, a disconnect)."""

    at: float
    worker: str
    kind: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class TaskTrace:
    task_id: str
    known: bool  # the run planned this task (published it, or failed to)
    published: bool
    publisher: str | None = None  # who sent it, and its sequence number there
    seq: int | None = None
    node: int | None = None  # the endpoint it went out on (runs against several)
    not_sent: str = ""  # why it was never handed to the broker
    refused: str = ""  # the broker refused or never acknowledged the publish
    copies: tuple[Copy, ...] = ()
    answers: tuple[tuple[str, str], ...] = ()  # (worker, "status" | "complete"), in order
    moments: tuple[Moment, ...] = ()
    unfinished: tuple[str, ...] = ()  # workers still working on it when the run ended
    died_with: tuple[str, ...] = ()  # worker processes that ended holding it
    outcome: str = ""  # the verdict on this task, in one sentence

    @property
    def workers(self) -> tuple[str, ...]:
        """The workers that received it, in the order they first did."""
        return tuple(dict.fromkeys(c.worker for c in self.copies))


def known_tasks(result: RunResult) -> list[str]:
    """The task ids of the run, published or not, in publish order (for "did you mean")."""
    ids = list(dict.fromkeys(result.published))
    ids += [t for t, _ in result.unsent if t not in ids]
    return ids


def trace(result: RunResult, task_id: str, report: Report | None = None) -> TaskTrace:
    """One task's story in ``result`` (the ``report`` of the same run adds the verdict)."""
    published = task_id in set(result.published)
    not_sent = next((why for t, why in result.unsent if t == task_id), "")
    refused = next((why for t, why in result.publish_refusals if t == task_id), "")
    if not refused and task_id in result.publish_failures:
        refused = "the publish was not acknowledged"
    pub = next(((p, n) for t, p, n in result.task_publishers if t == task_id), (None, None))
    node = next((n for t, n in result.task_nodes if t == task_id), None)
    copies = tuple(
        Copy(at=d.at, worker=d.worker, topic=d.topic, qos=d.qos, dup=d.dup,
             finished=d.completed, latency_ms=d.latency_ms)
        for d in result.deliveries if d.task_id == task_id)
    moments = tuple(Moment(at=e.at, worker=e.worker, kind=e.kind, detail=e.detail)
                    for e in result.events if task_id in e.task_ids)
    found = TaskTrace(
        task_id=task_id, known=published or bool(not_sent) or bool(refused),
        published=published, publisher=pub[0], seq=pub[1], node=node, not_sent=not_sent,
        refused=refused, copies=copies,
        answers=tuple((w, a) for w, t, a in result.replies if t == task_id),
        moments=moments,
        unfinished=tuple(w for w, t in result.unfinished if t == task_id),
        died_with=tuple(e.name for e in result.process_exits if task_id in e.held))
    return _with_outcome(found, report)


def _with_outcome(t: TaskTrace, report: Report | None) -> TaskTrace:
    return replace(t, outcome=outcome_of(t, report))


def outcome_of(t: TaskTrace, report: Report | None) -> str:
    """The verdict on one task, from what the trace and the report say of it."""
    if not t.known:
        return "this run has no such task"
    if t.not_sent:
        return f"never sent ({t.not_sent})"
    if t.refused and not t.copies:
        return f"refused by the broker ({t.refused}); no worker got it"
    workers = t.workers
    completes = [w for w, a in t.answers if a == "complete"]
    twice = sorted({w for w in completes if completes.count(w) > 1})
    cross = report is not None and any(task == t.task_id for task, _ in report.cross_worker)
    missing = report is not None and t.task_id in report.missing
    if t.died_with and missing:
        return (f"lost: {', '.join(t.died_with)} ended holding it and no other worker "
                "finished it")
    if not workers:
        return "missing: no worker received it"
    if missing:
        return (f"missing: {', '.join(workers)} received it but lost it in flight (the "
                "connection dropped before it was finished)")
    if t.unfinished:
        return f"unfinished: {', '.join(t.unfinished)} was still working on it at the end"
    if cross or len(workers) > 1:
        return (f"a duplicate: {len(workers)} workers received it ({', '.join(workers)}); "
                "each task should reach one worker of its pool")
    if twice:
        return f"handled twice by {', '.join(twice)}"
    if len(t.copies) > 1:
        dups = sum(1 for c in t.copies if c.dup)
        return (f"a repeat: {workers[0]} received it {len(t.copies)} times "
                f"({dups} DUP-flagged)")
    return f"handled once, by {workers[0]}"
