"""What each replay step caused, derived from the deliveries that followed it. No I/O.

How this works: a run records deliveries, fleet events and one ``StepRecord`` per step. Here
every delivery is given a *cause*, walking them in arrival order:

- a task's first copy on a worker is dispatched by the ``publish`` step that sent it, unless
  another worker of the same pool already had it *in flight when it was lost* (a ``drop``,
  ``disconnect`` or a connection the broker closed): then it is a re-dispatch caused by that
  loss; a retained copy that arrives after a ``subscribe`` is caused by the subscribe;
- a first copy that reaches a worker on its return, of a task published while it was away, is
  a *parked* delivery caused by its ``reconnect`` (a broker kept the offline member's turn);
- a further copy on the same worker is a resumed delivery caused by the worker's
  ``reconnect`` when the task was in flight at its loss, otherwise a repeat of the publish.

From that come the timeline lines ("step 3 (line 33): drop worker-2: 5 in-flight task(s)
(...) re-dispatched to worker-1") and the per-step delivery breakdown.

Lost work is derived too, as a new value next to the harness's records (which stay as
recorded): the copies a worker still had in flight when its connection ended are
``Effects.abandoned`` (the worker never finished them), except QoS 2 copies when the worker
later reconnects with its session present — the broker completes those exchanges to the same
member (MQTT 5.0 4.8.2), so the task is done there (when the broker re-sends the PUBLISH rather
than only the PUBREL, the re-sent copy is the one that completes it). ``analysis.analyse``
takes that set as an input. The values themselves live in ``model.py``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..analysis import DEFAULT_POOL, CopyRef
from ..harness.model import Delivery, RunResult, WorkerSpec
from ..scenario.model import (
    Disconnect,
    Drop,
    Kick,
    NodeDown,
    NodeUp,
    Publish,
    Reconnect,
    Resubscribe,
    Settle,
    Step,
    Subscribe,
    Takeover,
    Unsubscribe,
)
from .churn_text import intruder_text, resubscribe_text, unsubscribe_text
from .model import Effects, StepEffect, StepRecord

__all__ = ["derive"]

ID_LIST_LIMIT = 5  # task ids quoted in one timeline line


@dataclass
class _Loss:
    """A worker's connection ended with tasks in flight."""

    worker: str
    at: float
    ids: tuple[str, ...]
    step: int  # position in the records of the step it happened in
    how: str  # "drop", "disconnect" or "lost: <why>"
    redispatched: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # tasks the worker had finished but whose acknowledgement died with the connection
    acked_redispatched: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    resumed: list[str] = field(default_factory=list)


@dataclass
class _Tally:
    """What the deliveries attributed to one step were."""

    per_worker: Counter[str] = field(default_factory=Counter)
    first: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # task->wks
    repeats: int = 0
    repeats_dup: int = 0
    resent: list[tuple[str, int, bool]] = field(default_factory=list)  # (task, qos, dup)
    retained: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)  # dealt to the worker while it was away


def derive(
    result: RunResult, records: tuple[StepRecord, ...], workers: tuple[WorkerSpec, ...]
) -> Effects:
    """One ``StepEffect`` per record, and the copies the workers' lost connections abandoned.
    ``result`` is only read."""
    return _Deriver(result, records, workers).run()


class _Deriver:
    def __init__(self, result: RunResult, records: tuple[StepRecord, ...],
                 workers: tuple[WorkerSpec, ...]) -> None:
        self.result = result
        self.records = list(records)
        self.pool = {w.name: w.pool or DEFAULT_POOL for w in workers}
        self.published = set(result.published)
        self.publish_step: dict[str, int] = {}
        for i, rec in enumerate(self.records):
            step = _step(rec)
            if isinstance(step, Publish):
                for task in step.tasks:
                    self.publish_step.setdefault(task.task_id, i)
        self.losses = self._losses()
        self.tallies = [_Tally() for _ in self.records]

    # -- losses and reconnects -------------------------------------------------------------------

    def _step_at(self, at: float) -> int:
        """The position of the record whose window contains time ``at``."""
        pos = 0
        for i, rec in enumerate(self.records):
            if rec.started <= at:
                pos = i
        return pos

    def _losses(self) -> list[_Loss]:
        events = self.result.events
        losses: list[_Loss] = []
        for i, rec in enumerate(self.records):
            step = _step(rec)
            if not isinstance(step, Drop | Disconnect):
                continue
            kind = "dropped" if isinstance(step, Drop) else "disconnected"
            started = rec.started
            match = [e for e in events
                     if e.worker == step.worker and e.kind == kind and e.at >= started]
            at = match[0].at if match else started
            ids = rec.in_flight
            losses.append(_Loss(worker=step.worker, at=at, ids=ids, step=i, how=step.kind))
        for ev in events:
            if ev.kind == "lost":
                pos = self._step_at(ev.at)
                rec = self.records[pos]
                # a node_down cuts at once: the broker hands the copies on before the
                # clients notice, so the loss counts from the step's start
                at = min(ev.at, rec.started) if isinstance(_step(rec), NodeDown) else ev.at
                losses.append(_Loss(worker=ev.worker, at=at, ids=ev.task_ids,
                                    step=pos, how=f"lost: {ev.detail}"))
        # simultaneous losses (one node_down) in the workers' order
        losses.sort(key=lambda loss: (loss.at, self._worker_order((loss.worker, 0))))
        return losses

    def _reconnect_after(self, worker: str, at: float) -> tuple[int, bool] | None:
        """(record position, session present) of ``worker``'s first reconnect after ``at``."""
        for i, rec in enumerate(self.records):
            step = _step(rec)
            if (isinstance(step, Reconnect) and step.worker == worker
                    and rec.started >= at):
                return i, bool(rec.session_present)
        return None

    # -- abandoned copies ------------------------------------------------------------------------

    def _abandoned(self) -> frozenset[CopyRef]:
        """The copies in flight at a loss were not finished by that worker. Exception: a QoS 2
        copy whose exchange the broker completes when the worker returns to its session by
        PUBREL alone (the worker had answered PUBREC, so the message is its own); when the
        broker re-sends the PUBLISH instead, the re-sent copy is the one that counts."""
        deliveries = self.result.deliveries
        lost: set[int] = set()  # positions in ``deliveries``
        for loss in self.losses:
            back = self._reconnect_after(loss.worker, loss.at)
            returned = self.records[back[0]].started if back is not None and back[1] else None
            for task, n in Counter(t for t in loss.ids if t in self.published).items():
                mine = [i for i, d in enumerate(deliveries)
                        if d.worker == loss.worker and d.task_id == task and d.at <= loss.at]
                resent = returned is not None and any(
                    d.worker == loss.worker and d.task_id == task and d.at >= returned
                    for d in deliveries)
                for i in mine[-n:]:
                    if not (returned is not None and deliveries[i].qos == 2 and not resent):
                        lost.add(i)
        return frozenset(_copy_refs(deliveries, lost))

    # -- attribution -----------------------------------------------------------------------------

    def run(self) -> Effects:
        seen: Counter[tuple[str, str]] = Counter()
        # (pool, task) -> [(worker, time of its first copy)]
        holders: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
        for d in self.result.deliveries:
            task = d.task_id
            if task is None or task not in self.published or d.worker not in self.pool:
                continue
            pool = self.pool[d.worker]
            if seen[(d.worker, task)]:
                self._repeat(d, task)
            else:
                self._first(d, task, holders[(pool, task)])
                holders[(pool, task)].append((d.worker, d.at))
            seen[(d.worker, task)] += 1
        steps = tuple(self._effect(i, rec) for i, rec in enumerate(self.records))
        return Effects(steps=steps, abandoned=self._abandoned())

    def _repeat(self, d: Delivery, task: str) -> None:
        for loss in reversed(self.losses):
            if loss.worker == d.worker and task in loss.ids and loss.at < d.at:
                back = self._reconnect_after(d.worker, loss.at)
                if back is not None and self.records[back[0]].started \
                        <= d.at:
                    tally = self.tallies[back[0]]
                    tally.per_worker[d.worker] += 1
                    tally.resent.append((task, d.qos, d.dup))
                    if task not in loss.resumed:
                        loss.resumed.append(task)
                    return
                break
        tally = self.tallies[self.publish_step.get(task, 0)]
        tally.per_worker[d.worker] += 1
        tally.repeats += 1
        tally.repeats_dup += d.dup

    def _first(self, d: Delivery, task: str, others: list[tuple[str, float]]) -> None:
        holders = {w for w, _ in others}
        for loss in reversed(self.losses):
            if loss.worker in holders and task in loss.ids and loss.at <= d.at:
                loss.redispatched[d.worker].append(task)
                self.tallies[loss.step].per_worker[d.worker] += 1
                return
        for loss in reversed(self.losses):  # finished there, but the ack was cut off
            if any(w == loss.worker and at <= loss.at <= d.at for w, at in others):
                loss.acked_redispatched[d.worker].append(task)
                self.tallies[loss.step].per_worker[d.worker] += 1
                return
        back = self._parked(d, task)
        if back is not None:
            self.tallies[back].per_worker[d.worker] += 1
            self.tallies[back].parked.append(task)
            return
        if d.retain:
            for i in range(len(self.records) - 1, -1, -1):
                step = _step(self.records[i])
                if (isinstance(step, Subscribe) and step.worker == d.worker
                        and self.records[i].started <= d.at):
                    self.tallies[i].per_worker[d.worker] += 1
                    self.tallies[i].retained.append(task)
                    return
        tally = self.tallies[self.publish_step.get(task, 0)]
        tally.per_worker[d.worker] += 1
        tally.first[task].append(d.worker)

    def _parked(self, d: Delivery, task: str) -> int | None:
        """The record position of the reconnect that brought ``task`` to ``d.worker``, when
        the task was published while the worker was away and first reached it on its return
        (a broker that keeps an offline persistent member's turn parks it there)."""
        pub = self.publish_step.get(task)
        if pub is None:
            return None
        published_at = self.records[pub].started
        for loss in self.losses:
            if loss.worker != d.worker or loss.at > published_at:
                continue
            back = self._reconnect_after(d.worker, loss.at)
            if back is not None and published_at <= self.records[back[0]].started <= d.at:
                return back[0]
        return None

    # -- text ------------------------------------------------------------------------------------

    def _effect(self, i: int, rec: StepRecord) -> StepEffect:
        step = _step(rec)
        tally = self.tallies[i]
        parts: list[str] = []
        skipped = rec.skipped
        if skipped:
            parts.append(f"not run ({skipped})")
        elif isinstance(step, Publish):
            parts.append(self._publish_text(step, tally))
        elif isinstance(step, Drop | Disconnect):
            parts.append(self._loss_text(next(x for x in self.losses if x.step == i
                                              and not x.how.startswith("lost"))))
        elif isinstance(step, Reconnect):
            parts.append(self._reconnect_text(step, rec, tally))
        elif isinstance(step, Subscribe):
            parts.append(_suback_text(rec.reason_code))
            if tally.retained:
                parts.append(f"{len(tally.retained)} retained task(s) delivered "
                             f"({_ids(tally.retained)})")
        elif isinstance(step, Unsubscribe):
            parts.append(unsubscribe_text(rec, self._finished(step.worker, rec)))
        elif isinstance(step, Takeover | Kick):
            parts.append(intruder_text(step.kind, step.worker, rec))
        elif isinstance(step, Resubscribe):
            parts.append(resubscribe_text(rec.reason_code, step.qos))
        elif isinstance(step, NodeDown):
            cut = sum(1 for x in self.losses if x.step == i and x.how.startswith("lost"))
            parts.append(f"{cut} worker connection(s) cut, new ones refused" if cut
                         else "no worker was connected there; new connections refused")
        elif isinstance(step, NodeUp):
            parts.append("accepts connections again")
        elif step is None or isinstance(step, Settle):
            took = rec.ended - rec.started
            parts.append(f"settled in {took:.2f} s" if rec.settled is not False
                         else f"not settled after {took:.2f} s (timeout)")
        for loss in self.losses:
            if loss.step == i and loss.how.startswith("lost"):
                parts.append(f"{loss.worker} lost its connection ({loss.how[6:]}): "
                             + self._loss_text(loss))
        return StepEffect(
            index=step.index if step is not None else None,
            line=step.line if step is not None else None,
            kind=step.kind if step is not None else "settle",
            description=step.describe() if step is not None else "settle",
            effect="; ".join(p for p in parts if p),
            started=rec.started,
            ended=rec.ended,
            deliveries=tuple(sorted(tally.per_worker.items(), key=self._worker_order)),
        )

    def _finished(self, worker: str, rec: StepRecord) -> list[str]:
        """Tasks in flight at ``rec`` that ``worker`` did not abandon at a later loss."""
        lost = {t for x in self.losses if x.worker == worker and x.at >= rec.started
                for t in x.ids}
        return [t for t in dict.fromkeys(rec.in_flight) if t not in lost]

    def _worker_order(self, item: tuple[str, int]) -> int:
        names = list(self.pool)
        return names.index(item[0]) if item[0] in names else len(names)

    def _publish_text(self, step: Publish, tally: _Tally) -> str:
        firsts: Counter[str] = Counter(w for ws in tally.first.values() for w in ws)
        ordered = sorted(firsts.items(), key=self._worker_order)
        text = ", ".join(f"{w} {n}" for w, n in ordered) if ordered else "none delivered"
        extra: list[str] = []
        several = sum(1 for ws in tally.first.values()
                      if len(ws) > len({self.pool[w] for w in ws}))
        if several:
            extra.append(f"{several} reached more than one worker of a pool")
        if tally.repeats:
            dup = (f"{tally.repeats_dup} with DUP" if tally.repeats_dup
                   else "no DUP flag: a copy per subscription")
            extra.append(f"{tally.repeats} extra copies on the same worker ({dup})")
        ids = [t.task_id for t in step.tasks]
        refused = set(self.result.publish_failures)
        failed = [t for t in ids if t in refused]
        if failed:
            extra.append(f"{len(failed)} refused or not acknowledged by the broker")
        unsent = [t for t in ids if t not in self.published]
        if unsent:
            extra.append(f"{len(unsent)} not sent")
        if ordered:
            nowhere = [t for t in ids if t in self.published and t not in tally.first]
            if nowhere:
                extra.append(f"{len(nowhere)} not delivered by this step ({_ids(nowhere)})")
        return "; ".join([text, *extra])

    def _loss_text(self, loss: _Loss) -> str:
        text = self._in_flight_text(loss)
        for worker, tasks in loss.acked_redispatched.items():
            text += (f"; {len(tasks)} task(s) it had already finished re-dispatched to {worker} "
                     f"({_ids(tasks)}): their acknowledgement was lost with the connection")
        return text

    def _in_flight_text(self, loss: _Loss) -> str:
        ids = list(dict.fromkeys(t for t in loss.ids if t in self.published))
        if not ids:
            return "nothing in flight"
        back = self._reconnect_after(loss.worker, loss.at)
        moved = {t: w for w, ts in loss.redispatched.items() for t in ts}
        kept = [t for t in ids if t not in moved and (
            t in loss.resumed or (back is not None and back[1] and self._qos_at_loss(loss, t)
                                  == 2))]
        lost = [t for t in ids if t not in moved and t not in kept]
        groups: list[str] = []
        for worker, tasks in loss.redispatched.items():
            tasks = [t for t in tasks if t in ids]
            if tasks:
                groups.append(f"{len(tasks)} re-dispatched to {worker} ({_ids(tasks)})")
        if kept:
            groups.append(f"{len(kept)} kept in its session for its return ({_ids(kept)})")
        if lost:
            groups.append(f"{len(lost)} lost: no other worker received them ({_ids(lost)})")
        head = f"{len(ids)} in-flight task(s)"
        if len(groups) == 1:
            only = groups[0].split(" ", 1)[1]  # "re-dispatched to worker-1 (...)"
            return f"{head} {only}"
        return f"{head}: " + ", ".join(groups)

    def _qos_at_loss(self, loss: _Loss, task: str) -> int:
        copies = [d.qos for d in self.result.deliveries
                  if d.worker == loss.worker and d.task_id == task and d.at <= loss.at]
        return copies[-1] if copies else 0

    def _reconnect_text(self, step: Reconnect, rec: StepRecord, tally: _Tally) -> str:
        present = bool(rec.session_present)
        parts = ["session present" if present else "new session"]
        started = rec.started
        before = [x for x in self.losses if x.worker == step.worker and x.at <= started]
        loss = before[-1] if before else None
        if loss is not None and present:
            ids = list(dict.fromkeys(t for t in loss.ids if t in self.published))
            qos2 = [t for t in ids if self._qos_at_loss(loss, t) == 2]
            resent = {t for t, _, _ in tally.resent}
            if qos2:
                again = [t for t in qos2 if t in resent]
                parts.append(f"{len(qos2)} interrupted QoS 2 exchange(s) completed on "
                             f"{step.worker} ({len(qos2) - len(again)} by PUBREL only, "
                             f"{len(again)} PUBLISH re-sent with DUP)")
            qos1 = [t for t in ids if t in resent and t not in qos2]
            if qos1:
                parts.append(f"{len(qos1)} in-flight task(s) re-sent ({_ids(qos1)})")
        if tally.parked:
            parts.append(f"{len(tally.parked)} task(s) dealt to it while it was away "
                         f"delivered late ({_ids(tally.parked)})")
        return ", ".join(parts)


def _step(rec: StepRecord) -> Step | None:
    return rec.step


def _copy_refs(deliveries: tuple[Delivery, ...], positions: set[int]) -> list[CopyRef]:
    """The deliveries at ``positions`` as ``CopyRef`` (the how-manieth copy of its task that
    worker got), the way ``analysis.analyse`` counts them."""
    nth: Counter[tuple[str, str | None]] = Counter()
    refs: list[CopyRef] = []
    for i, d in enumerate(deliveries):
        key = (d.worker, d.task_id)
        if i in positions and d.task_id is not None:
            refs.append(CopyRef(d.worker, d.task_id, nth[key]))
        nth[key] += 1
    return refs


def _ids(ids: list[str]) -> str:
    """``a, b, c`` or the first ``ID_LIST_LIMIT`` ids and ``… +N more``."""
    if len(ids) <= ID_LIST_LIMIT:
        return ", ".join(ids)
    return ", ".join(ids[:ID_LIST_LIMIT]) + f", … +{len(ids) - ID_LIST_LIMIT} more"


def _suback_text(code: object) -> str:
    if not isinstance(code, int):
        return "no SUBACK (not connected, or no answer in time)"
    if code >= 0x80:
        return f"refused by the broker (SUBACK 0x{code:02X})"
    return f"granted QoS {code}"
