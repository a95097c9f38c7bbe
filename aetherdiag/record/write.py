"""Writing a run record: JSON Lines, one header, one line per item of the run, one end line.

How this works: ``write_record(stream, header, result)`` writes

- the header: ``{"schema": "aetherdiag.record/1", "type": "header", "run_id", "seed",
  "shard", "title", "context", "workers": [every WorkerSpec], "tasks", "plan", "expect"}``;
- one line per published task (``publish``), the node each task went out on (``task_node``,
  runs against several endpoints), the publisher and sequence number of each task
  (``task_publisher``), refused or unacknowledged publish (``publish_failure``,
  ``publish_refusal``), task never sent (``unsent``), delivery (``delivery``; with
  ``publisher``, ``seq`` and ``key`` when its payload carried them), fleet event
  (``event``), SUBACK answer (``subscribe``), task still being worked on at the end
  (``unfinished``) and reply (``reply``), in the run's order;
- the end line: ``{"type": "end", ...}`` with the run's end state (settled, timed out,
  interrupted, lost connections, notes, duration, the latency histogram) or, for a run that
  could not happen, ``"error"`` and ``"exit_code"``.

Floats are written as Python's ``repr`` (JSON round-trips them exactly), so reading a record
back rebuilds the same ``RunResult`` and the same report. docs/sharding.md is the reference.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any, TextIO

from .. import __version__
from ..harness.model import RunResult
from .model import SCHEMA, Failure, RunHeader


def header_dict(header: RunHeader) -> dict[str, Any]:
    shard = header.shard
    return {
        "schema": SCHEMA, "type": "header", "version": __version__, "command": header.command,
        "run_id": header.run_id, "seed": header.seed,
        "shard": None if shard is None else {"index": shard.index, "count": shard.count,
                                             "workers": list(shard.workers)},
        "started_unix": header.started_unix,
        "title": header.title, "context": [list(kv) for kv in header.context],
        "workers": [asdict(w) for w in header.workers],
        "tasks": header.tasks, "plan": header.plan,
        "expect": asdict(header.expect),
    }


def item_lines(result: RunResult) -> list[dict[str, Any]]:
    """Every item of ``result`` as one JSON object each, in the run's order."""
    out: list[dict[str, Any]] = [{"type": "publish", "task": t} for t in result.published]
    out += [{"type": "task_node", "task": t, "node": n} for t, n in result.task_nodes]
    out += [{"type": "publish_failure", "task": t} for t in result.publish_failures]
    out += [{"type": "publish_refusal", "task": t, "reason": r}
            for t, r in result.publish_refusals]
    out += [{"type": "unsent", "task": t, "reason": r} for t, r in result.unsent]
    out += [{"type": "subscribe", "worker": w, "filter": f, "code": c}
            for w, f, c in result.subscribe_results]
    out += [{"type": "task_publisher", "task": t, "publisher": p, "seq": n}
            for t, p, n in result.task_publishers]
    out += [{"type": "delivery", "worker": d.worker, "task": d.task_id, "topic": d.topic,
             "qos": d.qos, "dup": d.dup, "retain": d.retain, "at": d.at,
             "latency_ms": d.latency_ms, "completed": d.completed,
             **({} if d.seq is None else {"publisher": d.publisher, "seq": d.seq,
                                          "key": d.key})}
            for d in result.deliveries]
    out += [{"type": "event", "at": e.at, "worker": e.worker, "kind": e.kind,
             "detail": e.detail, "task_ids": list(e.task_ids)} for e in result.events]
    out += [{"type": "unfinished", "worker": w, "task": t} for w, t in result.unfinished]
    out += [{"type": "reply", "worker": w, "task": t, "action": a}
            for w, t, a in result.replies]
    out += [{"type": "process_exit", "worker": e.name, "pid": e.pid, "status": e.status,
             "held": list(e.held), "log": e.log, "log_tail": list(e.log_tail)}
            for e in result.process_exits]
    out += [{"type": "collision", "client_id": c.client_id, "workers": list(c.processes),
             "takeovers": c.takeovers} for c in result.collisions]
    out += [{"type": "holder", "worker": h.process, "pid": h.pid, "client_id": h.client_id,
             "filter": h.topic_filter} for h in result.holders]
    out += [{"type": "closed_after", "client": c.client, "packet": c.packet, "qos": c.qos,
             "topic": c.topic, "unanswered": c.unanswered, "disconnect": c.disconnect}
            for c in result.closed_after]
    return out


def end_dict(result: RunResult | None, failure: Failure | None = None) -> dict[str, Any]:
    """The last line: the run's end state (or the failure that left no result)."""
    if result is None:
        assert failure is not None
        return {"type": "end", "error": failure.message, "exit_code": int(failure.code)}
    lat = result.latency
    return {
        "type": "end", "target": result.target, "workers": list(result.workers),
        "duration_s": result.duration_s, "settled": result.settled,
        "timed_out": not result.settled and not result.interrupted,
        "timeout_s": result.timeout_s, "interrupted": result.interrupted,
        "connection_lost": list(result.connection_lost), "notes": list(result.notes),
        "steps_not_run": list(result.steps_not_run), "emulator": result.emulator_stats,
        "expects_replies": result.expects_replies, "own_processes": result.own_processes,
        "observed": result.observed,
        "endpoints": list(result.endpoints),
        "mqtt5_refused": result.mqtt5_refused,
        "latency": None if lat is None else {
            "hdr": base64.b64encode(lat.hdr).decode("ascii"), "count": lat.count,
            "below_zero": lat.below_zero, "above_range": lat.above_range, "clock": lat.clock},
        "error": None,
    }


def write_record(stream: TextIO, header: RunHeader, result: RunResult | None,
                 failure: Failure | None = None) -> None:
    """Write the whole record of one run (or of one that failed: header and end line)."""
    def put(doc: dict[str, Any]) -> None:
        stream.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")

    put(header_dict(header))
    if result is not None:
        for line in item_lines(result):
            put(line)
    put(end_dict(result, failure))
    stream.flush()
