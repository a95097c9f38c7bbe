"""Reading a run record back: ``read_record(path)`` -> ``Recording`` (header and RunResult).

How this works: the first line must be a ``aetherdiag.record/1`` header, every other line an
object with a known ``type`` (write.py), and the last one the ``end`` line. Each line is
checked as it is read and the first bad one is named as ``FILE:LINE: what is wrong``
(``RecordError``). Keys this version does not know are ignored, so a newer writer's records
stay readable; a missing ``end`` line means the run was cut off before it finished writing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from ..analysis import Expectations
from ..exitcodes import ExitCode
from ..harness.model import (
    ClientIdCollision,
    ClosedAfter,
    Delivery,
    FleetEvent,
    Holder,
    LatencyRecord,
    Observed,
    ProcessExit,
    RunResult,
    WorkerSpec,
)
from .model import SCHEMA, Failure, RecordError, Recording, RunHeader, Shard

Doc = dict[str, Any]


def _get(doc: Doc, key: str, kind: type | tuple[type, ...], *, null: bool = False,
         default: Any = ...) -> Any:
    if key not in doc:
        if default is not ...:
            return default
        raise ValueError(f"{key!r} is missing")
    value = doc[key]
    if value is None and null:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        names = " or ".join({int: "an integer", float: "a number", str: "a string",
                             bool: "true or false", list: "a list", dict: "an object"}[k]
                            for k in kinds)
        raise ValueError(f"{key!r} must be {names}" + (" or null" if null else ""))
    return value


def _num(doc: Doc, key: str, *, null: bool = False, default: Any = ...) -> Any:
    value = _get(doc, key, (int, float), null=null, default=default)
    return float(value) if isinstance(value, int) else value


def _strs(doc: Doc, key: str, default: Any = ...) -> tuple[str, ...]:
    items = _get(doc, key, list, default=default if default is ... else list(default))
    if not all(isinstance(i, str) for i in items):
        raise ValueError(f"{key!r} must be a list of strings")
    return tuple(items)


def _worker_spec(doc: Any) -> WorkerSpec:
    if not isinstance(doc, dict):
        raise ValueError("'workers' must hold objects")
    known = {f.name: f for f in dataclasses.fields(WorkerSpec)}
    args: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in doc.items() if k in known}
    if not isinstance(args.get("name"), str) or not isinstance(args.get("subscriptions"),
                                                               tuple):
        raise ValueError("each worker needs a 'name' and 'subscriptions'")
    return WorkerSpec(**args)


def _header(doc: Doc) -> RunHeader:
    if doc.get("schema") != SCHEMA or doc.get("type") != "header":
        raise ValueError(f"not a run record: the first line must be a header with "
                         f"\"schema\": \"{SCHEMA}\" (is this a `workers --record` file?)")
    shard = _get(doc, "shard", dict, null=True, default=None)
    if shard is not None:
        index, count = _get(shard, "index", int), _get(shard, "count", int)
        if not 1 <= index <= count:
            raise ValueError(f"shard {index} of {count}: not a shard of the run")
        shard = Shard(index=index, count=count, workers=_strs(shard, "workers"))
    expect = _get(doc, "expect", dict)
    known = {f.name for f in dataclasses.fields(Expectations)}
    context = _get(doc, "context", list, default=[])
    if not all(isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)
               for kv in context):
        raise ValueError("'context' must be a list of [key, value] strings")
    return RunHeader(
        command=_get(doc, "command", str, default="workers"),
        run_id=_get(doc, "run_id", str), seed=_get(doc, "seed", int),
        workers=tuple(_worker_spec(w) for w in _get(doc, "workers", list)),
        tasks=_get(doc, "tasks", int),
        expect=Expectations(**{k: v for k, v in expect.items() if k in known}),
        title=_get(doc, "title", str, default=""), context=tuple((k, v) for k, v in context),
        plan=_get(doc, "plan", dict, default={}), shard=shard,
        started_unix=_num(doc, "started_unix", null=True, default=None))


class _Builder:
    """Collects the item lines of one record into the lists of a RunResult."""

    def __init__(self) -> None:
        self.items: dict[str, list[Any]] = {k: [] for k in _ITEMS}

    def add(self, doc: Doc) -> None:
        kind = doc.get("type")
        if not isinstance(kind, str) or kind not in _ITEMS:
            raise ValueError(f"unknown line type {kind!r}")
        self.items[kind].append(_ITEMS[kind](doc))

    def result(self, end: Doc) -> RunResult:
        it = self.items
        lat = _get(end, "latency", dict, null=True, default=None)
        latency = None
        if lat is not None:
            try:
                hdr = base64.b64decode(_get(lat, "hdr", str), validate=True)
            except binascii.Error:
                raise ValueError("'latency.hdr' is not base64") from None
            latency = LatencyRecord(hdr=hdr, count=_get(lat, "count", int),
                                    below_zero=_get(lat, "below_zero", int, default=0),
                                    above_range=_get(lat, "above_range", int, default=0),
                                    clock=_get(lat, "clock", str, default=""))
        emulator = _get(end, "emulator", dict, null=True, default=None)
        return RunResult(
            target=_get(end, "target", str), workers=_strs(end, "workers"),
            published=tuple(it["publish"]), publish_failures=tuple(it["publish_failure"]),
            publish_refusals=tuple(it["publish_refusal"]), unsent=tuple(it["unsent"]),
            deliveries=tuple(it["delivery"]), events=tuple(it["event"]),
            subscribe_results=tuple(it["subscribe"]), unfinished=tuple(it["unfinished"]),
            replies=tuple(it["reply"]), task_nodes=tuple(it["task_node"]),
            task_publishers=tuple(it["task_publisher"]),
            duration_s=_num(end, "duration_s"), settled=_get(end, "settled", bool),
            timeout_s=_num(end, "timeout_s", null=True, default=None),
            interrupted=_get(end, "interrupted", bool, default=False),
            connection_lost=_strs(end, "connection_lost", ()), notes=_strs(end, "notes", ()),
            steps_not_run=_strs(end, "steps_not_run", ()), emulator_stats=emulator,
            expects_replies=_get(end, "expects_replies", bool, default=False),
            own_processes=_get(end, "own_processes", bool, default=False),
            observed=_observed(_get(end, "observed", str, default="all")),
            process_exits=tuple(it["process_exit"]), collisions=tuple(it["collision"]),
            holders=tuple(it["holder"]), closed_after=tuple(it["closed_after"]),
            mqtt5_refused=_get(end, "mqtt5_refused", str, default=""),
            endpoints=_strs(end, "endpoints", ()), latency=latency)


def _observed(value: str) -> Observed:
    if value not in get_args(Observed):
        raise ValueError(f"'observed' is {value!r}, not one of {', '.join(get_args(Observed))}")
    return value  # type: ignore[return-value]


def _delivery(d: Doc) -> Delivery:
    return Delivery(worker=_get(d, "worker", str), task_id=_get(d, "task", str, null=True),
                    topic=_get(d, "topic", str), qos=_get(d, "qos", int),
                    dup=_get(d, "dup", bool), retain=_get(d, "retain", bool),
                    at=_num(d, "at"), latency_ms=_num(d, "latency_ms", null=True, default=None),
                    completed=_get(d, "completed", bool, default=True),
                    publisher=_get(d, "publisher", str, null=True, default=None),
                    seq=_get(d, "seq", int, null=True, default=None),
                    key=_get(d, "key", str, null=True, default=None))


def _event(d: Doc) -> FleetEvent:
    return FleetEvent(at=_num(d, "at"), worker=_get(d, "worker", str), kind=_get(d, "kind", str),
                      detail=_get(d, "detail", str, default=""),
                      task_ids=_strs(d, "task_ids", ()))


_ITEMS: dict[str, Callable[[Doc], Any]] = {
    "publish": lambda d: _get(d, "task", str),
    "task_node": lambda d: (_get(d, "task", str), _get(d, "node", int)),
    "task_publisher": lambda d: (_get(d, "task", str), _get(d, "publisher", str),
                                 _get(d, "seq", int)),
    "publish_failure": lambda d: _get(d, "task", str),
    "publish_refusal": lambda d: (_get(d, "task", str), _get(d, "reason", str)),
    "unsent": lambda d: (_get(d, "task", str), _get(d, "reason", str)),
    "subscribe": lambda d: (_get(d, "worker", str), _get(d, "filter", str), _get(d, "code", int)),
    "delivery": _delivery,
    "event": _event,
    "unfinished": lambda d: (_get(d, "worker", str), _get(d, "task", str)),
    "reply": lambda d: (_get(d, "worker", str), _get(d, "task", str), _get(d, "action", str)),
    "process_exit": lambda d: ProcessExit(
        name=_get(d, "worker", str), pid=_get(d, "pid", int), status=_get(d, "status", int),
        held=_strs(d, "held", ()), log=_get(d, "log", str, default=""),
        log_tail=_strs(d, "log_tail", ())),
    "collision": lambda d: ClientIdCollision(
        client_id=_get(d, "client_id", str), processes=_strs(d, "workers", ()),
        takeovers=_get(d, "takeovers", int)),
    "holder": lambda d: Holder(process=_get(d, "worker", str), pid=_get(d, "pid", int),
                               client_id=_get(d, "client_id", str),
                               topic_filter=_get(d, "filter", str)),
    "closed_after": lambda d: ClosedAfter(
        client=_get(d, "client", str), packet=_get(d, "packet", str), qos=_get(d, "qos", int),
        topic=_get(d, "topic", str), unanswered=_get(d, "unanswered", int, default=1),
        disconnect=_get(d, "disconnect", int, null=True, default=None)),
}


def is_record(first_line: bytes) -> bool:
    """Whether a file whose first line is ``first_line`` is a run record (not a report)."""
    try:
        doc = json.loads(first_line)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("schema") == SCHEMA


def read_record(path: Path) -> Recording:
    """The record in ``path``. ``RecordError`` names the first bad line (``OSError`` when the
    file cannot be read)."""
    header: RunHeader | None = None
    builder = _Builder()
    number = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    raise ValueError("not a JSON object") from None
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                if header is None:
                    header = _header(doc)
                elif doc.get("type") == "end":
                    return _end(path, header, builder, doc)
                else:
                    builder.add(doc)
            except UnicodeDecodeError:
                raise RecordError(f"{path}:{number}: not UTF-8 text") from None
            except (ValueError, TypeError) as exc:
                raise RecordError(f"{path}:{number}: {exc}") from None
    if header is None:
        raise RecordError(f"{path}:1: empty file (expected a {SCHEMA} header)")
    raise RecordError(f"{path}:{number}: the record ends without its end line (the run "
                      "was cut off before it finished writing)")


def _end(path: Path, header: RunHeader, builder: _Builder, doc: Doc) -> Recording:
    error = _get(doc, "error", str, null=True, default=None)
    if error is not None:
        code = _get(doc, "exit_code", int)
        try:
            failure = Failure(message=error, code=ExitCode(code))
        except ValueError:
            raise ValueError(f"'exit_code' {code} is not an aetherdiag exit code") from None
        return Recording(path=path, header=header, result=None, failure=failure)
    return Recording(path=path, header=header, result=builder.result(doc))
