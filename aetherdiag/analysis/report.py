"""The values analysis takes and produces: the verdict knobs, the copies a run derived as
abandoned, the Report with its checks, rows and balance. Frozen values only; nothing here
computes or does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from ..exitcodes import ExitCode

DEFAULT_POOL = "workers"

# What order a run is held to (analysis/ordering.py): each worker's tasks from each publisher,
# each publisher's, each key's, or none (the figures are shown, not judged); "" when the source
# does not say.
OrderScope = Literal["", "none", "worker", "publisher", "key"]


@dataclass(frozen=True, kw_only=True)
class Expectations:
    """Verdict knobs (``--max-imbalance``, ``--allow-redelivery``)."""

    max_imbalance: float = 1.5
    allow_redelivery: bool = False
    min_share_to_judge: float = 3.0  # balance is judged when each worker's even share >= this
    # ordering (analysis/ordering.py ``promise``): the scope the run is held to and what it
    # rests on (the strategy's promise, --expect-order) or why order is not judged; with
    # ``order_check`` the report lists the ordering check
    order: OrderScope = ""
    order_basis: str = ""
    order_check: bool = False


class CopyRef(NamedTuple):
    """One copy of a task on a worker: the ``nth`` (0-based) delivery of ``task`` to ``worker``.

    ``analyse`` takes a set of these as the copies their worker never finished (replay derives
    them from drops and disconnects); the harness's own ``Delivery`` records stay as recorded.
    """

    worker: str
    task: str
    nth: int


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
    handled: int | None = None  # tasks it answered (--exec with replies); None: not known
    handled_twice: tuple[str, ...] = ()  # tasks whose handler it ran more than once
    never_handled: tuple[str, ...] = ()  # tasks it received and never answered
    node: int = 1  # the endpoint it was connected to (1-based)
    shared: int = 0  # of its unique tasks, those another worker of its pool also got


@dataclass(frozen=True, kw_only=True)
class NodeFigures:
    """One endpoint of a run against several (a cluster's node, one of bridged brokers)."""

    node: int  # 1-based, --broker order
    endpoint: str  # its URL (display form)
    workers: int  # workers connected to it
    published: int  # tasks published on it
    delivered: int  # copies its workers received, repeats included
    unique: int  # distinct tasks its workers received
    idle_workers: tuple[str, ...] = ()  # its workers that got nothing


@dataclass(frozen=True, kw_only=True)
class Balance:
    judged: bool
    max_over_min: float | None  # None when a worker got nothing (infinitely unbalanced)
    max_over_mean: float | None
    chi_square: float | None = None
    p_value: float | None = None  # of an even split; None when the run is too small
    idle_workers: tuple[str, ...] = ()
    # why it was not judged: "nothing delivered", "one worker", "too few tasks per worker"
    not_judged: str = ""


@dataclass(frozen=True)
class LatencyBucket:
    """One bar of the latency histogram: ``count`` deliveries in (previous bound, ``upto_ms``]."""

    upto_ms: float
    count: int


@dataclass(frozen=True, kw_only=True)
class ActivityRow:
    """One worker's deliveries per time bucket (or, ``workers`` > 1, several summed)."""

    name: str
    deliveries: tuple[int, ...]  # every copy received in each bucket
    duplicates: tuple[int, ...]  # ... of a task another worker of its pool had already got
    redeliveries: tuple[int, ...]  # ... of a task this worker had already got (DUP or fresh)
    workers: int = 1


@dataclass(frozen=True, kw_only=True)
class Activity:
    """Deliveries over time per worker, in fixed buckets from the start of the run.

    Bounded whatever the run's size: at most ``activity.MAX_BUCKETS`` buckets and
    ``activity.MAX_ROWS`` rows; past that the workers with the most duplicates and
    redeliveries (then the most deliveries) keep their own row and the rest are summed into
    a last row naming how many it holds (``hidden``).
    """

    bucket_s: float
    rows: tuple[ActivityRow, ...]
    hidden: int = 0  # workers summed into the last row


@dataclass(frozen=True, kw_only=True)
class PublisherRow:
    """One publisher of the run (``--publishers``): what it sent and where that went."""

    name: str  # publisher, publisher-2, publisher-node2...
    sent: int  # tasks it handed to the broker
    delivered: int  # of those, the distinct tasks some worker received
    workers: tuple[tuple[str, int], ...]  # (worker, distinct tasks of this publisher it got)
    first_worker: str | None = None  # who got the first task it sent (None: nobody)


@dataclass(frozen=True, kw_only=True)
class Ordering:
    """Did deliveries arrive in the order each publisher sent them? (analysis/ordering.py)

    A delivery is counted when it is the first copy of its task anywhere and not DUP-flagged;
    it is out of order when the same stream (a worker, a publisher, a key) already had a
    later task of the same publisher (a higher ``seq``). ``by_*`` list every stream with a
    count, zero included.
    """

    scope: OrderScope  # what is judged; "none" or "": figures shown, not judged
    basis: str  # the promise judged against, or why there is none
    counted: int  # deliveries the counts are taken over
    left_out: int  # copies not counted: DUP-flagged, or of a task already delivered
    by_worker: tuple[tuple[str, int], ...]
    by_publisher: tuple[tuple[str, int], ...]
    by_key: tuple[tuple[str, int], ...] = ()
    examples: tuple[str, ...] = ()  # a few of the deliveries out of order, in words

    @property
    def judged(self) -> bool:
        return self.scope in ("worker", "publisher", "key")

    @property
    def out_of_order(self) -> int | None:
        """Deliveries out of order in the judged scope (None when not judged)."""
        if self.scope == "worker":
            return sum(n for _, n in self.by_worker)
        if self.scope == "publisher":
            return sum(n for _, n in self.by_publisher)
        if self.scope == "key":
            return sum(n for _, n in self.by_key)
        return None


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    passed: bool | None  # None: not judged
    detail: str
    code: ExitCode


@dataclass(frozen=True, kw_only=True)
class Report:
    """What a run showed and the verdict on it, as ``analyse`` returns it.

    ``title``, ``context`` and ``timeline`` are presentation: ``analyse`` leaves them empty and
    the caller attaches them to a new value (``dataclasses.replace``) before rendering.
    """

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
    emulator_stats: dict[str, object] | None = None
    unsent: tuple[tuple[str, str], ...] = ()  # (task, reason): never handed to the broker
    unfinished: tuple[tuple[str, str], ...] = ()  # (worker, task) still being worked on
    connection_lost: tuple[str, ...] = ()  # clients whose broker connection died mid-run
    steps_not_run: tuple[str, ...] = ()
    timed_out: bool = False  # a deadline (--timeout, a settle's timeout) cut the run short
    interrupted: bool = False
    nodes: tuple[NodeFigures, ...] = ()  # per endpoint; empty for a run against one
    # latency_ms holds count, min, mean, p50, p90, p95, p99, p99_9 and max (from an HDR
    # histogram); the histogram itself in log-spaced buckets, and the clocks it was taken on
    latency_histogram: tuple[LatencyBucket, ...] = ()
    latency_clock: str = ""
    activity: Activity | None = None  # deliveries over time per worker (None: no deliveries)
    publishers: tuple[PublisherRow, ...] = ()  # empty when the source does not say
    ordering: Ordering | None = None  # None when no delivery carried a sequence number
    # presentation, attached by the caller (never by analyse):
    title: str = ""
    context: tuple[tuple[str, str], ...] = ()  # how the run was set up, shown under the title
    timeline: tuple[str, ...] = ()  # replay: what each step caused


_VERDICTS = {
    ExitCode.OK: "healthy",
    ExitCode.DUPLICATES: "duplicates",
    ExitCode.UNREACHABLE: "broker lost",
    ExitCode.MISSING: "missing",
    ExitCode.IMBALANCE: "imbalanced",
    ExitCode.EXPECTATIONS_NOT_MET: "out of order",  # the one check of analyse with code 6
    ExitCode.INCOMPLETE: "incomplete",
    ExitCode.INTERRUPTED: "interrupted",
}


def verdict_text(code: ExitCode, *, timed_out: bool, timeout_s: float | None) -> str:
    """``healthy``, ``missing (timed out after 2 s)``, ``interrupted`` ..."""
    text = _VERDICTS.get(code, code.name.lower())
    if timed_out and code is not ExitCode.INTERRUPTED:
        text += f" (timed out after {round(timeout_s, 1):g} s)" if timeout_s else " (timed out)"
    return text
