"""One task's story (``analysis.trace.TaskTrace``) as terminal lines or a JSON object.

Every value from the run (worker names, topics, reasons) goes through ``safe.terminal`` in
the lines; the JSON keeps the raw values (``json.dumps`` escapes them)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ..analysis.trace import TaskTrace
from .safe import terminal


def trace_dict(t: TaskTrace) -> dict[str, Any]:
    """The trace as JSON-ready data (schema: the ``TaskTrace`` fields)."""
    return {
        "task": t.task_id, "known": t.known, "published": t.published,
        "publisher": t.publisher, "seq": t.seq, "node": t.node, "not_sent": t.not_sent,
        "refused": t.refused,
        "copies": [{"at": round(c.at, 6), "worker": c.worker, "topic": c.topic, "qos": c.qos,
                    "dup": c.dup, "finished": c.finished,
                    "latency_ms": None if c.latency_ms is None else round(c.latency_ms, 3)}
                   for c in t.copies],
        "answers": [{"worker": w, "action": a} for w, a in t.answers],
        "moments": [{"at": round(m.at, 6), "worker": m.worker, "kind": m.kind,
                     "detail": m.detail} for m in t.moments],
        "unfinished": list(t.unfinished), "died_with": list(t.died_with),
        "outcome": t.outcome,
    }


def trace_lines(t: TaskTrace) -> list[Text]:
    """``task-123: a duplicate: ...`` then one line per thing that happened, in time order."""
    head = Text(terminal(t.task_id), style="bold")
    head.append(f": {terminal(t.outcome)}")
    lines = [head]
    sent = "published" if t.published else ("never sent" if t.not_sent else "not published")
    if t.publisher is not None:
        sent += f" by {terminal(t.publisher)}" + (f" (#{t.seq})" if t.seq is not None else "")
    if t.node is not None:
        sent += f" on node {t.node}"
    if t.refused:
        sent += f"; {terminal(t.refused)}"
    lines.append(Text(f"  {sent}"))
    events: list[tuple[float, str]] = []
    for c in t.copies:
        text = f"{terminal(c.worker)} received it (QoS {c.qos}{', DUP' if c.dup else ''})"
        if c.latency_ms is not None:
            text += f" {c.latency_ms:.1f} ms after it was sent"
        if not c.finished:
            text += ", never finished it"
        events.append((c.at, text))
    for m in t.moments:
        detail = f" ({terminal(m.detail)})" if m.detail else ""
        events.append((m.at, f"{terminal(m.worker)} {terminal(m.kind)}{detail} holding it"))
    for at, text in sorted(events, key=lambda e: e[0]):
        lines.append(Text(f"  {at:8.3f} s  {text}"))
    for w, action in t.answers:
        lines.append(Text(f"  answered: {terminal(w)} sent {terminal(action)}"))
    for w in t.unfinished:
        lines.append(Text(f"  still being worked on by {terminal(w)} when the run ended"))
    for w in t.died_with:
        lines.append(Text(f"  {terminal(w)} ended while holding it"))
    return lines
