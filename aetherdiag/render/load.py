"""A saved JSON report (schema ``aetherdiag.report/1``, as ``--format json`` writes it) read
back into the ``Report`` it was written from, so ``aetherdiag report FILE`` re-renders it in
any format with no broker.

How this works: the inverse of ``report.to_dict``. Keys this version does not know are
ignored (a newer writer's reports stay readable); keys an older writer did not have take the
``Report`` defaults. A value of the wrong type is a ``LoadError`` naming the key. A worker's
``share`` is written rounded to 4 decimals; it is recomputed from the task lists when that
agrees with the written value, so the table shows the same percentages as the run did.
A failed run's document (``error`` set) comes back as a ``SavedFailure``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from ..analysis import (
    Activity,
    ActivityRow,
    Balance,
    Check,
    LatencyBucket,
    NodeFigures,
    Report,
    WorkerRow,
)
from ..analysis.report import Ordering, PublisherRow
from ..exitcodes import ExitCode, UsageError
from .report import SCHEMA


class LoadError(UsageError, ValueError):
    """The document is not a report this version can read; ``str()`` says what is wrong."""


@dataclass(frozen=True)
class SavedFailure:
    """A saved report of a run that could not happen (``error`` set, no figures)."""

    title: str
    target: str
    message: str
    code: ExitCode


_KIND = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
         list: "a list", dict: "an object"}


def _get(doc: dict[str, Any], key: str, kind: type, default: Any = ..., *, null: bool = False,
         where: str = "") -> Any:
    if key not in doc or (doc[key] is None and default is not ... and not null):
        if default is ...:
            raise LoadError(f"{where}{key!r} is missing")
        return default
    value = doc[key]
    if value is None and null:
        return None
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
    if not ok:
        raise LoadError(f"{where}{key!r} must be {_KIND[kind]}" + (" or null" if null else ""))
    return float(value) if kind is float else value


def _strs(doc: dict[str, Any], key: str, where: str = "") -> tuple[str, ...]:
    items = _get(doc, key, list, [], where=where)
    if not all(isinstance(i, str) for i in items):
        raise LoadError(f"{where}{key!r} must be a list of strings")
    return tuple(items)


def _objects(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _get(doc, key, list, [])
    if not all(isinstance(i, dict) for i in items):
        raise LoadError(f"{key!r} must be a list of objects")
    return items


def _code(value: Any, where: str) -> ExitCode:
    try:
        return ExitCode(value)
    except ValueError:
        raise LoadError(f"{where}: {value!r} is not an aetherdiag exit code") from None


def load_saved(doc: Any) -> Report | SavedFailure:
    """The Report (or failure) a ``aetherdiag.report/1`` document was written from."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise LoadError(f"not an aetherdiag report: expected a JSON object with "
                        f"\"schema\": \"{SCHEMA}\" (as `workers --format json` writes)")
    if doc.get("error") is not None:
        return SavedFailure(title=_get(doc, "title", str, ""), target=_get(doc, "target", str),
                            message=_get(doc, "error", str),
                            code=_code(_get(doc, "exit_code", int), "'exit_code'"))
    rows = [_worker(w, i) for i, w in enumerate(_objects(doc, "workers"), start=1)]
    dup = _get(doc, "duplicates", dict, {})
    bal = _get(doc, "balance", dict, {})
    latency = _get(doc, "latency_ms", dict, {})
    if not all(isinstance(v, int | float) and not isinstance(v, bool)
               for v in latency.values()):
        raise LoadError("'latency_ms' must map names to numbers")
    return Report(
        title=_get(doc, "title", str, ""), target=_get(doc, "target", str),
        context=tuple((str(k), str(v)) for k, v in _get(doc, "run", dict, {}).items()),
        published=_get(doc, "published", int), delivered=_get(doc, "delivered", int),
        unique_delivered=_get(doc, "unique_delivered", int),
        missing=_strs(doc, "missing"), lost_in_flight=_strs(doc, "lost_in_flight"),
        cross_worker=tuple((_get(c, "task", str), _strs(c, "workers"))
                           for c in _objects(dup, "cross_worker_tasks")),
        repeats=_get(dup, "repeats", int, 0), repeats_dup=_get(dup, "repeats_dup", int, 0),
        repeats_fresh=_get(dup, "repeats_fresh", int, 0),
        allowed_redeliveries=_get(dup, "allowed_redeliveries", int, 0),
        foreign=_get(doc, "foreign_messages", int, 0),
        balance=Balance(judged=_get(bal, "judged", bool, False),
                        max_over_min=_get(bal, "max_over_min", float, None, null=True),
                        max_over_mean=_get(bal, "max_over_mean", float, None, null=True),
                        chi_square=_get(bal, "chi_square", float, None, null=True),
                        p_value=_get(bal, "p_value", float, None, null=True),
                        idle_workers=_strs(bal, "idle_workers"),
                        not_judged=_get(bal, "not_judged", str, "")),
        workers=_shares(rows, _objects(doc, "workers")),
        nodes=tuple(_node(n) for n in _objects(doc, "nodes")),
        checks=tuple(Check(name=_get(c, "name", str), passed=_get(c, "passed", bool, None,
                                                                    null=True),
                           detail=_get(c, "detail", str, ""),
                           code=_code(_get(c, "exit_code", int), "a check's 'exit_code'"))
                     for c in _objects(doc, "checks")),
        causes=_strs(doc, "causes"), verdict=_get(doc, "verdict", str),
        exit_code=_code(_get(doc, "exit_code", int), "'exit_code'"),
        duration_s=_get(doc, "duration_s", float, 0.0), settled=_get(doc, "settled", bool, True),
        latency_ms={str(k): v for k, v in latency.items()},
        latency_clock=_get(doc, "latency_clock", str, "", null=False),
        latency_histogram=tuple(LatencyBucket(_get(b, "upto_ms", float), _get(b, "count", int))
                                for b in _objects(doc, "latency_histogram")),
        activity=_activity(_get(doc, "activity", dict, None, null=True)),
        publish_failures=_strs(doc, "publish_failures"), notes=_strs(doc, "notes"),
        timeline=_strs(doc, "timeline"),
        emulator_stats=_get(doc, "emulator", dict, None, null=True),
        unsent=_unsent(_objects(doc, "unsent")),
        unfinished=tuple((_get(u, "worker", str), _get(u, "task", str))
                         for u in _objects(doc, "unfinished")),
        connection_lost=_strs(doc, "connection_lost"), steps_not_run=_strs(doc, "steps_not_run"),
        timed_out=_get(doc, "timed_out", bool, False),
        interrupted=_get(doc, "interrupted", bool, False),
        publishers=tuple(_publisher(p) for p in _objects(doc, "publishers")),
        ordering=_ordering(_get(doc, "ordering", dict, None, null=True)),
    )


def _worker(w: dict[str, Any], i: int) -> WorkerRow:
    where = f"worker {i}: "
    return WorkerRow(
        name=_get(w, "name", str, where=where), pool=_get(w, "pool", str, "", where=where),
        received=_get(w, "received", int, where=where),
        unique=_get(w, "unique", int, where=where),
        repeats=_get(w, "repeats", int, 0, where=where),
        dup_repeats=_get(w, "dup_repeats", int, 0, where=where),
        share=_get(w, "share", float, 0.0, where=where), tasks=_strs(w, "tasks", where),
        subscriptions=_strs(w, "subscriptions", where),
        handled=_get(w, "handled", int, None, null=True, where=where),
        handled_twice=_strs(w, "handled_twice", where),
        never_handled=_strs(w, "never_handled", where), node=_get(w, "node", int, 1, where=where),
        shared=_get(w, "shared", int, 0, where=where))


def _shares(rows: list[WorkerRow], docs: list[dict[str, Any]]) -> tuple[WorkerRow, ...]:
    """Each share recomputed from the pool's task lists (as ``analyse`` computed it) when that
    agrees with the rounded value written."""
    pool_tasks: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        pool_tasks[r.pool].update(r.tasks)
    out = []
    for r in rows:
        total = len(pool_tasks[r.pool])
        exact = r.unique / total if total else 0.0
        out.append(replace(r, share=exact) if round(exact, 4) == r.share else r)
    return tuple(out)


def _node(n: dict[str, Any]) -> NodeFigures:
    return NodeFigures(node=_get(n, "node", int), endpoint=_get(n, "endpoint", str, ""),
                       workers=_get(n, "workers", int, 0), published=_get(n, "published", int, 0),
                       delivered=_get(n, "delivered", int, 0), unique=_get(n, "unique", int, 0),
                       idle_workers=_strs(n, "idle_workers"))


def _counts(doc: dict[str, Any], key: str, where: str) -> tuple[tuple[str, int], ...]:
    items = _get(doc, key, dict, {}, where=where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items.values()):
        raise LoadError(f"{where}{key!r} must map names to integers")
    return tuple((str(k), v) for k, v in items.items())


def _publisher(p: dict[str, Any]) -> PublisherRow:
    where = "a publisher: "
    return PublisherRow(name=_get(p, "name", str, where=where),
                        sent=_get(p, "sent", int, 0, where=where),
                        delivered=_get(p, "delivered", int, 0, where=where),
                        workers=_counts(p, "workers", where),
                        first_worker=_get(p, "first_worker", str, None, null=True, where=where))


def _ordering(doc: dict[str, Any] | None) -> Ordering | None:
    if doc is None:
        return None
    where = "ordering: "
    scope = _get(doc, "scope", str, "", where=where)
    if scope not in ("", "none", "worker", "publisher", "key"):
        raise LoadError(f"{where}'scope' must be worker, publisher, key or none")
    return Ordering(scope=scope, basis=_get(doc, "basis", str, "", where=where),
                    counted=_get(doc, "counted", int, 0, where=where),
                    left_out=_get(doc, "left_out", int, 0, where=where),
                    by_worker=_counts(doc, "by_worker", where),
                    by_publisher=_counts(doc, "by_publisher", where),
                    by_key=_counts(doc, "by_key", where), examples=_strs(doc, "examples", where))


def _ints(doc: dict[str, Any], key: str) -> tuple[int, ...]:
    items = _get(doc, key, list, [])
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise LoadError(f"activity: {key!r} must be a list of integers")
    return tuple(items)


MAX_UNSENT = 10_000_000  # a saved report's unsent count this reader will expand
UNLISTED = "…"  # a task id a JSON report did not list (it gives a count per reason)


def _unsent(entries: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """``unsent`` of a saved report: one entry per reason with a count and some task ids
    (the ids not listed come back as ``UNLISTED``), or one per task (reports before that)."""
    out: list[tuple[str, str]] = []
    for u in entries:
        reason = _get(u, "reason", str, "")
        if "count" not in u:
            out.append((_get(u, "task", str), reason))
            continue
        tasks = _strs(u, "tasks")
        count = _get(u, "count", int)
        if not 0 <= count <= MAX_UNSENT:
            raise LoadError(f"'unsent' count {count} is not between 0 and {MAX_UNSENT:,}")
        out += [(t, reason) for t in tasks[:count]]
        out += [(UNLISTED, reason)] * max(0, count - len(tasks))
    return tuple(out)


def _activity(doc: dict[str, Any] | None) -> Activity | None:
    if doc is None:
        return None
    return Activity(bucket_s=_get(doc, "bucket_s", float), hidden=_get(doc, "hidden", int, 0),
                    rows=tuple(ActivityRow(name=_get(r, "name", str),
                                           workers=_get(r, "workers", int, 1),
                                           deliveries=_ints(r, "deliveries"),
                                           duplicates=_ints(r, "duplicates"),
                                           redeliveries=_ints(r, "redeliveries"))
                               for r in _objects(doc, "rows")))
