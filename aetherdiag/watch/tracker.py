"""Per-task state of a watch, from events to findings. Pure and sans-IO: the clock comes in
with every call (``observe(event)`` uses ``event.at``, ``tick(now)``), nothing here sleeps,
reads a socket or prints.

How this works: each task (scope + tid) gets a small ``_Task`` record while it is live. A
``perform`` starts it; ``status``/``complete`` from a worker answer it. Findings are decided
the moment the evidence arrives and counted once per task: *multi* (a second distinct worker
answered), *repeat* (one worker received it again: more progress-0 statuses, or completes,
than one), *resent* (the perform came again with the same payload digest), *collision* (it
came again with another digest or from another caller), *stalled* (``tick`` found no answer
``stall_after`` seconds after the perform). A retained message (delivered because the watch
subscribed: stale state from before it) is no live task: counted, never tracked.

Memory stays bounded on a long watch. A task finished (completed or stalled) and quiet for
``forget_after`` seconds leaves the live table (``forgotten`` counts it); what is needed to
judge a later message about it exactly stays in the *finished-task memory*: one compact entry
per task, ``"len(tid):tid/scope" -> (digest, caller, flags, worker, receipts, completes,
...)``, about 320 bytes with 36-character tids (``FINISHED_ENTRY_BYTES``; the caller and
worker names are shared, not copied). A late answer from a second worker, a resend or a
reused tid is then recognised for the whole watch (the task comes back to the live table,
``recalled``), never mistaken for a task whose perform came before the watch. That memory
holds at most ``max_finished`` tasks: beyond it the oldest entries are dropped and counted
(``finished_dropped``), and the report says a second answer to a task older than that cannot
be recognised. At most ``max_tracked`` tasks are live (the oldest go first: finished ones are
forgotten early, unfinished ones counted as ``evicted``), and examples, task lists per worker
and the pool are capped; per-worker counts are plain counters.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TypeAlias

from .events import Event
from .values import (
    FINISHED_ENTRY_BYTES,
    METRICS_MAX_WORKERS,
    OTHER,
    Finding,
    Kind,
    Limits,
    Snapshot,
    Summary,
    Totals,
    WorkerCount,
    WorkerTotals,
)

__all__ = ["FINISHED_ENTRY_BYTES", "Finding", "Kind", "Limits", "Snapshot", "Summary",
           "Totals", "Tracker", "WorkerCount"]

PERFORMED, ANSWERED, COMPLETED, MULTI, REPEAT, STALLED, RESENT, COLLISION, DOUBLED, RECALLED = (
    1 << n for n in range(10))
KEPT = RECALLED - 1  # the flags a finished-task entry keeps (RECALLED is the live table's)

Key: TypeAlias = tuple[str, str]  # (scope, tid)
# a finished task as the memory keeps it: (digest, caller, flags, then per worker who
# answered: name, receipts, completes)
_Entry: TypeAlias = tuple[str | int | None, ...]


def _finished_key(key: Key) -> str:
    """One string for (scope, tid), cheaper than the tuple; the tid's length first keeps it
    unambiguous whatever the strings hold (a recording's are any text)."""
    scope, tid = key
    return f"{len(tid)}:{tid}/{scope}"


@dataclass(slots=True)
class _Task:
    tid: str
    first_at: float
    digest: str = ""
    caller: str | None = None
    flags: int = 0
    copies: dict[str, list[int]] = field(default_factory=dict)  # who -> [receipts, completes]


@dataclass(slots=True)
class _Worker:
    received: int = 0  # copies, repeats included
    unique: int = 0
    shared: int = 0  # of its tasks, those another worker answered too
    tasks: list[str] = field(default_factory=list)  # the first few, in order


class Tracker:
    """Feed ``observe(event)`` in arrival order and ``tick(now)`` now and then."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._tasks: dict[Key, _Task] = {}
        self._pending: OrderedDict[Key, float] = OrderedDict()  # no answer yet
        self._done: OrderedDict[Key, float] = OrderedDict()  # finished: last seen
        # the finished-task memory (see the module docstring): _finished_key -> entry, oldest
        # first in _finished_order (a plain dict's front deletes would make eviction O(n))
        self._finished: dict[str, _Entry] = {}
        self._finished_order: deque[str] = deque()
        self._names: dict[str, str] = {}  # callers and workers, so entries share one string
        self._workers: dict[str, _Worker] = {}
        self._pool: dict[str, set[str]] = {}
        self._idle: dict[str, set[str]] = {}
        self._scopes: dict[str, None] = {}
        self.counts: dict[Kind, int] = dict.fromkeys(
            ("multi", "repeat", "stalled", "resent", "collision"), 0)
        self._examples: dict[Kind, dict[str, str]] = {k: {} for k in self.counts}
        self.recent: deque[Finding] = deque(maxlen=self.limits.recent)
        self.tasks = self.handled = self.performs = self.repeats = 0
        self.resent_performs = self.resent_doubled = self.late = 0
        self.unperformed = self.unparsed = self.unattributed = 0
        self.forgotten = self.evicted = 0
        self.retained = self.recalled = self.finished_dropped = 0
        self.completed = 0  # tasks completed by at least one worker
        self.last_task_at: float | None = None  # the last new task's perform
        self.now = 0.0

    # -- input --------------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        self.now = max(self.now, event.at)
        if event.retained:  # sent before the watch (delivered because it subscribed)
            self.retained += 1
            return
        if not event.parsed:
            self.unparsed += 1
        if event.action in ("online", "idle"):
            self._announce(event)
            return
        key = event.key
        if key is None or event.action not in ("perform", "status", "complete"):
            return
        task = self._tasks.get(key)
        if task is None:
            task = self._recall(key, event.at)
        if task is None:
            task = self._new(key, event)
        if key in self._done:
            self._done.move_to_end(key)
            self._done[key] = event.at
        if event.action == "perform":
            self._perform(key, task, event)
        else:
            self._answer(key, task, event)

    def tick(self, now: float) -> None:
        """Decide stalls and forget old tasks as of ``now``."""
        self.now = max(self.now, now)
        limits = self.limits
        while self._pending:
            key, at = next(iter(self._pending.items()))
            if now - at < limits.stall_after:
                break
            del self._pending[key]
            task = self._tasks[key]
            task.flags |= STALLED
            self._found("stalled", key, task, f"no answer {limits.stall_after:g} s after "
                        f"its perform at {at:.1f} s", now)
            self._done[key] = now
        while self._done:
            key, at = next(iter(self._done.items()))
            if now - at < limits.forget_after:
                break
            del self._done[key]
            self._forget(key)

    # -- the steps ----------------------------------------------------------------------------

    def _new(self, key: Key, event: Event) -> _Task:
        task = _Task(tid=key[1], first_at=event.at)
        self._add(key, task)
        if len(self._scopes) < self.limits.max_pool:
            self._scopes.setdefault(key[0])
        return task

    def _add(self, key: Key, task: _Task) -> None:
        self._tasks[key] = task
        if len(self._tasks) > self.limits.max_tracked:
            self._evict()

    def _evict(self) -> None:
        """Make room in the live table: a finished task is forgotten early (remembered as
        usual); an unfinished one is dropped and counted."""
        if self._done:
            key, _ = self._done.popitem(last=False)
            self._forget(key)
            return
        if self._pending:
            key, _ = self._pending.popitem(last=False)
        else:
            key = next(iter(self._tasks))
        self._tasks.pop(key, None)
        self.evicted += 1

    # -- the finished-task memory -------------------------------------------------------------

    def _name(self, name: str | None) -> str | None:
        """One shared string per caller/worker name (up to ``max_pool`` names)."""
        if name is None:
            return None
        shared = self._names.get(name)
        if shared is None:
            if len(self._names) >= self.limits.max_pool:
                return name
            shared = self._names[name] = name
        return shared

    def _forget(self, key: Key) -> None:
        """Drop a finished task from the live table, keeping its finished-task entry."""
        task = self._tasks.pop(key, None)
        if task is None:
            return
        if not task.flags & RECALLED:  # counted the first time only
            self.forgotten += 1
        head = (task.digest, self._name(task.caller), task.flags & KEPT)
        entry: _Entry
        if len(task.copies) == 1:  # the usual: one worker
            [(who, (receipts, completes))] = task.copies.items()
            entry = (*head, self._name(who), receipts, completes)
        else:
            entry = head + tuple(x for who, (receipts, completes) in task.copies.items()
                                 for x in (self._name(who), receipts, completes))
        name = _finished_key(key)
        finished = self._finished
        if name in finished:  # a recalled task forgotten again: same place in the order
            finished[name] = entry
            return
        finished[name] = entry
        self._finished_order.append(name)
        if len(finished) > self.limits.max_finished:
            del finished[self._finished_order.popleft()]
            self.finished_dropped += 1

    def _recall(self, key: Key, at: float) -> _Task | None:
        """A message about a finished, forgotten task: the task back in the live table as it
        was (finished, quiet since ``at``), so the message is judged like any other."""
        entry = self._finished.get(_finished_key(key))
        if entry is None:
            return None
        digest, caller, flags, *copies = entry
        assert isinstance(digest, str) and isinstance(flags, int)
        assert caller is None or isinstance(caller, str)
        task = _Task(tid=key[1], first_at=at, digest=digest, caller=caller,
                     flags=flags | RECALLED)
        for n in range(0, len(copies), 3):
            who, receipts, completes = copies[n:n + 3]
            assert isinstance(who, str) and isinstance(receipts, int)
            assert isinstance(completes, int)
            task.copies[who] = [receipts, completes]
        self.recalled += 1
        self._add(key, task)
        self._done[key] = at
        return task

    def _perform(self, key: Key, task: _Task, event: Event) -> None:
        self.performs += 1
        if not task.flags & PERFORMED:
            task.flags |= PERFORMED
            task.digest, task.caller = event.digest, event.who
            self.tasks += 1
            self.last_task_at = event.at
            if task.flags & ANSWERED:  # the answer overtook the perform
                self.unperformed -= 1
                return
            if self.limits.expects_replies:
                self._pending[key] = event.at
            else:
                self._done[key] = event.at
            return
        if event.digest == task.digest and event.who == task.caller:
            self.resent_performs += 1
            if not task.flags & RESENT:
                task.flags |= RESENT
                self._found("resent", key, task, "the same perform again", event.at)
                self._doubled(task)
        elif not task.flags & COLLISION:
            task.flags |= COLLISION
            what = ("another caller" if event.who != task.caller else "another payload")
            self._found("collision", key, task, f"{what}: {task.caller or '?'} then "
                        f"{event.who or '?'}", event.at)

    def _answer(self, key: Key, task: _Task, event: Event) -> None:
        if not task.flags & ANSWERED:
            task.flags |= ANSWERED
            if self._pending.pop(key, None) is None and not task.flags & PERFORMED:
                self.unperformed += 1
            if task.flags & STALLED:
                self.late += 1
        if event.action == "complete" and not task.flags & COMPLETED:
            task.flags |= COMPLETED
            self.completed += 1
            self._done[key] = event.at
        who = event.who
        if who is None:
            self.unattributed += 1
            return
        counts = task.copies.get(who)
        if counts is None:
            counts = task.copies[who] = [0, 0]
            worker = self._workers.get(who)
            if worker is None:
                worker = self._workers[who] = _Worker()
            worker.unique += 1
            if len(worker.tasks) < self.limits.max_tasks_listed:
                worker.tasks.append(task.tid)
            if len(task.copies) == 1:
                self.handled += 1
            else:  # now on several workers: count it as shared on each, once
                for other in (task.copies if len(task.copies) == 2 else (who,)):
                    self._workers[other].shared += 1
                names = ", ".join(task.copies)
                if not task.flags & MULTI:
                    task.flags |= MULTI
                    self._found("multi", key, task, names, event.at)
                    self._doubled(task)
                elif task.tid in self._examples["multi"]:  # the example names them all
                    self._examples["multi"][task.tid] = names
        before = max(counts)
        if event.action == "complete":
            counts[1] += 1
        elif not event.progress:  # progress 0 (or none given): the task arrived
            counts[0] += 1
        if max(counts) > before:
            self._workers[who].received += 1
            if before >= 1:
                self.repeats += 1
                if not task.flags & REPEAT:
                    task.flags |= REPEAT
                    self._found("repeat", key, task, f"{who} got it {max(counts)} times",
                                event.at)
                    self._doubled(task)

    def _doubled(self, task: _Task) -> None:
        if task.flags & RESENT and task.flags & (MULTI | REPEAT) and not task.flags & DOUBLED:
            task.flags |= DOUBLED
            self.resent_doubled += 1

    def _found(self, kind: Kind, key: Key, task: _Task, text: str, at: float
               ) -> None:
        self.counts[kind] += 1
        examples = self._examples[kind]
        if len(examples) < self.limits.max_examples:
            examples[task.tid] = text
        self.recent.append(Finding(at=at, kind=kind, tid=task.tid, text=text))

    def _announce(self, event: Event) -> None:
        who = event.who
        if who is None:
            return
        kinds = self._pool.get(who)
        if kinds is None:
            if len(self._pool) >= self.limits.max_pool:
                return
            kinds = self._pool[who] = set()
        kinds.add(event.action)
        if event.action == "idle":
            scopes = self._idle.setdefault(who, set())
            if len(scopes) < 100:
                scopes.add(event.scope)

    # -- output -------------------------------------------------------------------------------

    def snapshot(self, elapsed: float, top: int = 12) -> Snapshot:
        busiest = sorted(self._workers.items(), key=lambda kv: -kv[1].unique)[:top]
        return Snapshot(
            elapsed=elapsed, tasks=self.tasks,
            workers=tuple((name, w.unique) for name, w in busiest),
            counts=tuple(self.counts.items()), forgotten=self.forgotten,
            unparsed=self.unparsed, recent=tuple(self.recent), retained=self.retained)

    def totals(self, now: float, max_workers: int = METRICS_MAX_WORKERS) -> Totals:
        """The running counts as of ``now`` (see ``Totals``): O(workers), not O(tasks), so the
        watch can publish them every tick. The first ``max_workers`` workers that answered
        are named, the others summed under ``OTHER``."""
        named: dict[str, list[int]] = {}
        for n, (name, w) in enumerate(self._workers.items()):
            row = named.setdefault(name if n < max_workers else OTHER, [0, 0, 0])
            row[0] += w.unique
            row[1] += w.received
            row[2] += w.shared
        since = now - (self.last_task_at if self.last_task_at is not None else 0.0)
        return Totals(
            elapsed=now, tasks=self.tasks, answered=self.handled, processed=self.completed,
            counts=tuple(self.counts.items()), unparsed=self.unparsed, retained=self.retained,
            forgotten=self.forgotten, evicted=self.evicted,
            finished_dropped=self.finished_dropped,
            # live and not done: waiting for an answer, or answered and not completed
            in_flight=max(0, len(self._tasks) - len(self._done)), tracked=len(self._tasks),
            remembered=len(self._finished), workers_seen=len(self._workers),
            since_last_task=max(0.0, since),
            workers=tuple(WorkerTotals(name=name, tasks=t, received=r, shared=sh)
                          for name, (t, r, sh) in named.items()))

    def open_keys(self) -> frozenset[Key]:
        """Tasks performed and not finished yet (neither completed nor stalled)."""
        return frozenset(k for k, t in self._tasks.items()
                         if t.flags & PERFORMED and not t.flags & (COMPLETED | STALLED))

    def settled(self, keys: frozenset[Key]) -> bool:
        """Whether every task of ``keys`` completed, stalled or was forgotten."""
        return all((t := self._tasks.get(k)) is None or t.flags & (COMPLETED | STALLED)
                   for k in keys)

    def summary(self, duration_s: float) -> Summary:
        live = self._tasks.values()
        return Summary(
            duration_s=duration_s, limits=self.limits, tasks=self.tasks, handled=self.handled,
            performs=self.performs,
            workers=tuple(WorkerCount(name=n, received=w.received, unique=w.unique,
                                      tasks=tuple(w.tasks), shared=w.shared)
                          for n, w in sorted(self._workers.items())),
            counts=dict(self.counts),
            examples={k: tuple(v.items()) for k, v in self._examples.items()},
            repeats=self.repeats, resent_performs=self.resent_performs,
            resent_doubled=self.resent_doubled, late=self.late,
            waiting=len(self._pending),
            in_progress=sum(1 for t in live if t.flags & ANSWERED
                            and not t.flags & (COMPLETED | STALLED)),
            unperformed=self.unperformed, unparsed=self.unparsed,
            unattributed=self.unattributed, forgotten=self.forgotten, evicted=self.evicted,
            pool=tuple((who, tuple(sorted(kinds))) for who, kinds in sorted(self._pool.items())),
            idle_scopes={who: tuple(sorted(s)) for who, s in self._idle.items()},
            task_scopes=tuple(self._scopes), retained=self.retained, recalled=self.recalled,
            finished_dropped=self.finished_dropped,
        )
