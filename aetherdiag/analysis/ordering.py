"""Ordering: did each publisher's tasks arrive in the order it sent them? And who got them?

How this works: every task a built-in publisher sends carries its publisher's name and a
sequence number (1, 2, ... per publisher) and, with ``--keys``, an ordering key; the workers
read them back into ``Delivery.publisher/seq/key``. ``ordering_of`` walks the deliveries in
receive order (one clock: the fleet's loop thread) and counts a delivery as out of order when
its stream already had a later task of the same publisher. Three kinds of stream:

- per worker: what one worker received (worker-2 got publisher-1's #5 after its #7);
- per publisher: a publisher's tasks across all workers, in the order they arrived;
- per key: one key's tasks across all workers (compared per publisher, as seq is).

Only the first copy of a task counts, and only when it is not DUP-flagged: a QoS 1 message
resent after a reconnect, a re-dispatch to another member after a member loss, a repeat, all
legitimately arrive late (MQTT only orders a session's messages while it is connected) and the
duplicate checks already judge them; they are counted as ``left_out``.

What is judged comes from ``promise`` (the command asks it and puts the answer in the
``Expectations``): a strategy that sends one publisher's tasks to one member (``sticky``,
``hash_clientid``) promises per-publisher order, ``hash_topic`` per-key order (one topic per
key, ``--keys``); round robin, random, least_inflight and local promise none, so their counts
are shown but not judged; on a real broker the strategy is unknown. ``--expect-order`` holds
such a run to per-worker order (each worker gets each publisher's tasks in the order sent).
A failure is exit 6 (``EXPECTATIONS_NOT_MET``: the run did not keep the order it was held to).

``publisher_rows`` gives each publisher's figures (sent, delivered, which workers got its
tasks, who got its first one); ``summary_line`` / ``publishers_line`` say both in one line
each for the table. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence, Set

from ..exitcodes import ExitCode
from ..harness.model import Delivery, RunResult
from .report import Check, Expectations, Ordering, OrderScope, PublisherRow, Report

CHECK_NAME = "ordering"
MAX_EXAMPLES = 3
MAX_PUBLISHERS_SHOWN = 4

# the strategies whose choice keeps a stream on one member, and which stream that is
PROMISES: dict[str, tuple[OrderScope, str]] = {
    "sticky": ("publisher", "sticky sends every task to one member"),
    "hash_clientid": ("publisher", "hash_clientid sends each publisher's tasks to one member"),
    "hash_topic": ("key", "hash_topic sends each key's tasks (one topic per key) to one member"),
}


def promise(strategy: str | None, *, expect_order: bool = False, keys: int = 0,
            fresh_ids: bool = False) -> tuple[OrderScope, str]:
    """The order a run is held to, and why: ``strategy`` is the dispatch strategy (None: a
    real broker's, unknown), ``keys`` how many ordering keys the tasks carry (0: none),
    ``fresh_ids`` whether every task comes from a client id of its own. ``expect_order``
    holds a run whose strategy promises nothing stronger to per-worker order: each worker
    gets each publisher's tasks in the order sent, what MQTT promises every subscriber. Order
    across workers is not judged then: workers receive in parallel, and which of two sockets
    is read first is a race, not a broker's promise."""
    scope, basis = _promise_of(strategy, keys=keys, fresh_ids=fresh_ids)
    if expect_order and scope == "none":
        return "worker", ("--expect-order: each worker gets each publisher's tasks in the order "
                          "sent")
    return scope, basis


def _promise_of(strategy: str | None, *, keys: int, fresh_ids: bool
                ) -> tuple[OrderScope, str]:
    if strategy is None:
        return "none", "the broker's dispatch strategy is unknown (--expect-order holds the " \
                       "run to per-worker order)"
    if strategy == "hash_clientid" and fresh_ids:
        return "none", ("hash_clientid with --publisher-reconnect: every task comes from a "
                        "client id of its own, so nothing keeps one publisher's tasks together")
    if strategy == "hash_topic" and not keys:
        return "none", ("hash_topic keeps order per topic, and every task has a topic of its "
                        "own (--keys K puts the tasks on K topics)")
    if strategy in PROMISES:
        return PROMISES[strategy]
    return "none", f"{strategy} promises no order"


class _Streams:
    """Out-of-order counts of one kind of stream (module doc)."""

    def __init__(self, names: Sequence[str] = (), label: str = "") -> None:
        self.counts: dict[str, int] = dict.fromkeys(names, 0)
        self.top: dict[tuple[str, str], tuple[int, str]] = {}  # -> (highest seq, its worker)
        self.examples: list[str] = []
        self.label = label  # "" for per-worker streams

    def see(self, stream: str, d: Delivery, pub: str, seq: int) -> None:
        self.counts.setdefault(stream, 0)
        prev, where = self.top.get((stream, pub), (0, ""))
        if seq >= prev:
            self.top[(stream, pub)] = (seq, d.worker)
            return
        self.counts[stream] += 1
        if len(self.examples) < MAX_EXAMPLES:
            after = f"after #{prev}" + (f" reached {where}" if where != d.worker else "")
            of = f" ({self.label} {stream})" if self.label == "key" else ""
            self.examples.append(f"{d.worker} got {pub} #{seq}{of} {after}")


def ordering_of(result: RunResult, expect: Expectations, published: Set[str]
                ) -> Ordering | None:
    """The ordering figures of ``result`` judged as ``expect`` says (module doc); None when
    no delivery carried a sequence number and the check was not asked for."""
    workers = set(result.workers)
    ours = [d for d in result.deliveries if d.task_id in published and d.worker in workers]
    if not any(d.seq is not None for d in ours) and not expect.order_check:
        return None
    names = list(dict.fromkeys(name for _, name, _ in result.task_publishers))
    by_worker = _Streams(result.workers)
    by_pub, by_key = _Streams(names, "publisher"), _Streams(label="key")
    seen: set[str] = set()
    counted = left_out = 0
    for d in sorted(ours, key=lambda d: d.at):  # stable: the harness records in receive order
        pub, seq = d.publisher, d.seq
        if pub is None or seq is None:
            continue
        if d.dup or d.task_id in seen:
            left_out += 1
            continue
        seen.add(d.task_id or "")
        counted += 1
        by_worker.see(d.worker, d, pub, seq)
        by_pub.see(pub, d, pub, seq)
        if d.key is not None:
            by_key.see(d.key, d, pub, seq)
    scope: OrderScope = expect.order or "none"
    basis = expect.order_basis or "the run does not say which order its broker promises"
    if not counted:
        scope, basis = "none", ("nothing was delivered" if not ours else
                                "no delivery carried a sequence number (--profile aethermagic "
                                "tasks carry none)")
    examples = {"publisher": by_pub.examples, "key": by_key.examples}.get(scope,
                                                                          by_worker.examples)
    return Ordering(scope=scope, basis=basis, counted=counted, left_out=left_out,
                    by_worker=tuple(by_worker.counts.items()),
                    by_publisher=tuple(by_pub.counts.items()),
                    by_key=tuple(by_key.counts.items()), examples=tuple(examples))


def ordering_check(ordering: Ordering | None, expect: Expectations) -> tuple[Check, ...]:
    """The ``ordering`` check when the run asked for it (``Expectations.order_check``)."""
    if not expect.order_check:
        return ()
    code = ExitCode.EXPECTATIONS_NOT_MET
    if ordering is None or not ordering.judged:
        why = ordering.basis if ordering is not None else "no sequence numbers"
        counts = f" ({counts_text(ordering)})" if ordering is not None and ordering.counted \
            else ""
        return (Check(name=CHECK_NAME, passed=None, code=code,
                      detail=f"not judged: {why}{counts}"),)
    bad = ordering.out_of_order or 0
    if not bad:
        detail = (f"every {ordering.scope}'s tasks arrived in the order sent "
                  f"({ordering.basis}; {counts_text(ordering)})")
    else:
        detail = (f"{bad} of {ordering.counted} deliveries out of order per {ordering.scope}, "
                  f"though {ordering.basis}: {'; '.join(ordering.examples)}")
    return (Check(name=CHECK_NAME, passed=not bad, code=code, detail=detail),)


def counts_text(o: Ordering) -> str:
    """``0 out of order per worker, 0 per publisher; 2 redelivered copies left out``."""
    parts = [f"{sum(n for _, n in o.by_worker)} out of order per worker",
             f"{sum(n for _, n in o.by_publisher)} per publisher"]
    if o.by_key:
        parts.append(f"{sum(n for _, n in o.by_key)} per key")
    text = ", ".join(parts) + f" of {o.counted}"
    if o.left_out:
        text += f"; {o.left_out} redelivered or repeated cop{'y' if o.left_out == 1 else 'ies'} " \
                "left out"
    return text


def publisher_rows(result: RunResult, published: Sequence[str]) -> tuple[PublisherRow, ...]:
    """Each publisher's figures, from what the publishers say they sent (empty when the
    source does not say)."""
    if not result.task_publishers:
        return ()
    owner = {task: (name, seq) for task, name, seq in result.task_publishers}
    sent = Counter(owner[t][0] for t in published if t in owner)
    first: dict[str, tuple[int, str]] = {}  # publisher -> (seq, task) of its first sent task
    for task in published:
        if task in owner:
            name, seq = owner[task]
            if name not in first or seq < first[name][0]:
                first[name] = (seq, task)
    workers = set(result.workers)
    got: dict[str, Counter[str]] = defaultdict(Counter)  # publisher -> worker -> its tasks
    delivered: Counter[str] = Counter()  # publisher -> its tasks some worker received
    first_at: dict[str, str] = {}  # task -> the worker that received it first
    seen: set[tuple[str, str]] = set()  # (worker, task)
    for d in sorted(result.deliveries, key=lambda d: d.at):
        tid = d.task_id
        if tid is None or tid not in owner or d.worker not in workers or (d.worker, tid) in seen:
            continue
        seen.add((d.worker, tid))
        name = owner[tid][0]
        got[name][d.worker] += 1
        if tid not in first_at:
            first_at[tid] = d.worker
            delivered[name] += 1
    rows = []
    for name in dict.fromkeys(n for n, _ in owner.values()):
        per_worker = got.get(name, Counter())
        rows.append(PublisherRow(
            name=name, sent=sent[name], delivered=delivered[name],
            workers=tuple((w, per_worker[w]) for w in result.workers if per_worker[w]),
            first_worker=first_at.get(first[name][1]) if name in first else None))
    return tuple(rows)


def publishers_line(report: Report) -> str | None:
    """The table's ``publishers`` line: per publisher, where its tasks went (None with one
    publisher)."""
    rows = report.publishers
    if len(rows) < 2:
        return None
    shown = [f"{p.name}: {p.sent} sent → " + (", ".join(f"{w} {n}" for w, n in p.workers)
                                              or "nobody")
             for p in rows[:MAX_PUBLISHERS_SHOWN]]
    text = "; ".join(shown)
    if len(rows) > MAX_PUBLISHERS_SHOWN:
        text += f"; … +{len(rows) - MAX_PUBLISHERS_SHOWN} more"
    firsts = {p.first_worker for p in rows}
    if len(firsts) == 1 and None not in firsts:
        text += f" (every publisher's first task went to {firsts.pop()})"
    return text


def summary_line(report: Report) -> str | None:
    """The table's ``ordering`` line, figures only as the balance line's are (None when the
    report has no ordering check): ``4 out of order per worker, 4 per publisher of 6 (judged
    per publisher)``; the check below it says what they are judged against, with examples."""
    o = report.ordering
    if o is None or not any(c.name == CHECK_NAME for c in report.checks):
        return None
    if not o.counted:
        return f"not judged: {o.basis}"
    return f"{counts_text(o)} ({f'judged per {o.scope}' if o.judged else 'not judged'})"
