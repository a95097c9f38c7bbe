"""The HTML report's charts: small inline SVG built from the data, no plotting library.

How this works: each function takes plain figures and returns an ``<svg>`` as ``Markup`` for
the templates. Colours are CSS classes (``ok``, ``warn``, ``bad``, ``lvl1``..``lvl5``, ...)
styled by ``templates/style.css.j2`` with custom properties, so one SVG reads in light and
dark mode and in print. Sizes stay bounded: bars are ``<rect>`` elements (one ``<g
class="bar">`` per worker) up to ``BAR_LIMIT`` workers and one ``<path>`` per series beyond;
the timeline draws each intensity level, duplicates and redeliveries as one ``<path>`` each,
so its size grows with rows x buckets (both capped by the analysis), never with deliveries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from ..analysis import Activity, LatencyBucket

WIDTH = 900
BAR_LIMIT = 60  # up to this many workers: one labelled <g class="bar"> each
LEVELS = 5  # timeline shades


def _svg(height: float, body: str, label: str, cls: str) -> Markup:
    return Markup(
        f'<svg class="chart {cls}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {math.ceil(height)}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet">'
        f"{body}</svg>")


def _n(x: float) -> str:
    """A coordinate, short: ``12``, ``12.5``."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _box(x: float, y: float, w: float, h: float) -> str:
    """One rectangle as path data."""
    return f"M{_n(x)} {_n(y)}h{_n(w)}v{_n(h)}h{_n(-w)}z"


@dataclass(frozen=True)
class Bar:
    """One worker's bar: tasks only it got, tasks another worker also got, extra copies."""

    name: str
    exclusive: int
    shared: int
    repeats: int

    @property
    def total(self) -> int:
        return self.exclusive + self.shared + self.repeats


def worker_bars(bars: Sequence[Bar], even: float | None) -> Markup:
    """Per-worker bars, the warning part (shared tasks, repeats) stacked on the plain part,
    and the even-split line at ``even`` tasks."""
    if not bars:
        return Markup("")
    top = max([b.total for b in bars] + [even or 0, 1])
    if len(bars) <= BAR_LIMIT:
        return _labelled_bars(bars, even, top)
    return _column_paths(bars, even, top)


def _labelled_bars(bars: Sequence[Bar], even: float | None, top: float) -> Markup:
    left, row, right = 150, 18, 70
    scale = (WIDTH - left - right) / top
    out = []
    for i, b in enumerate(bars):
        y = 6 + i * row
        x = float(left)
        tip = (f"{b.name}: {b.exclusive + b.shared} tasks ({b.shared} also on another "
               f"worker), {b.repeats} repeats")
        parts = [f'<g class="bar"><title>{escape(tip)}</title>'
                 f'<text class="label" x="{left - 6}" y="{y + 12}" text-anchor="end">'
                 f"{escape(_clip(b.name))}</text>"]
        for cls, value in (("ok", b.exclusive), ("warn", b.shared), ("bad", b.repeats)):
            if value:
                w = value * scale
                parts.append(f'<rect class="{cls}" x="{_n(x)}" y="{y}" width="{_n(w)}" '
                             f'height="{row - 4}"/>')
                x += w
        parts.append(f'<text class="value" x="{_n(x + 4)}" y="{y + 12}">{b.total}</text></g>')
        out.append("".join(parts))
    height = 12 + len(bars) * row
    if even:
        x = left + even * scale
        out.append(f'<line class="even" x1="{_n(x)}" y1="0" x2="{_n(x)}" y2="{height - 4}">'
                   f"<title>even split: {even:.1f} tasks per worker</title></line>")
    return _svg(height, "".join(out), "tasks per worker", "bars")


def _column_paths(bars: Sequence[Bar], even: float | None, top: float) -> Markup:
    """Many workers: one thin column each, drawn as one path per series."""
    height, base = 220.0, 200.0
    step = WIDTH / len(bars)
    scale = (base - 10) / top
    paths: dict[str, list[str]] = {"ok": [], "warn": [], "bad": []}
    for i, b in enumerate(bars):
        y = base
        for cls, value in (("ok", b.exclusive), ("warn", b.shared), ("bad", b.repeats)):
            if value:
                h = value * scale
                paths[cls].append(_box(i * step, y - h, max(step * 0.8, 0.5), h))
                y -= h
    body = "".join(f'<path class="{cls}" d="{"".join(d)}"/>' for cls, d in paths.items() if d)
    body += f'<line class="axis" x1="0" y1="{base}" x2="{WIDTH}" y2="{base}"/>'
    if even:
        y = base - even * scale
        body += (f'<line class="even" x1="0" y1="{_n(y)}" x2="{WIDTH}" y2="{_n(y)}">'
                 f"<title>even split: {even:.1f} tasks per worker</title></line>")
    body += (f'<text class="label" x="0" y="{height - 4}">{len(bars)} workers, one column '
             f"each, in worker order</text>")
    return _svg(height, body, "tasks per worker", "bars columns")


def _clip(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def timeline(activity: Activity, markers: Sequence[tuple[float, str]] = ()) -> Markup:
    """Deliveries over time per worker: a shaded cell per (row, bucket) with any delivery,
    a warning mark where duplicates arrived, a bad mark where redeliveries did, and a
    vertical line per marker (replay steps: start time, label)."""
    left, row, top_pad = 150, 16, 22
    buckets = len(activity.rows[0].deliveries) if activity.rows else 0
    if not buckets:
        return Markup("")
    cell = (WIDTH - left - 10) / buckets
    busiest = max(max(r.deliveries) / r.workers for r in activity.rows) or 1
    levels: list[list[str]] = [[] for _ in range(LEVELS)]
    dups: list[str] = []
    again: list[str] = []
    labels = []
    for i, r in enumerate(activity.rows):
        y = top_pad + i * row
        tip = (f"{r.name}: {sum(r.deliveries)} deliveries, {sum(r.duplicates)} duplicates, "
               f"{sum(r.redeliveries)} redeliveries")
        labels.append(f'<g class="row"><title>{escape(tip)}</title><text class="label" '
                      f'x="{left - 6}" y="{y + 11}" text-anchor="end">'
                      f"{escape(_clip(r.name))}</text></g>")
        for b, n in enumerate(r.deliveries):
            x = left + b * cell
            if n:  # a summed row is shaded by its per-worker mean
                level = min(LEVELS - 1, int(LEVELS * n / r.workers / (busiest + 1)))
                levels[level].append(_box(x, y, cell - 1, row - 3))
            if r.duplicates[b]:
                dups.append(_box(x, y + row - 7, cell - 1, 4))
            if r.redeliveries[b]:
                again.append(_box(x + (cell - 1) / 2, y, (cell - 1) / 2, 5))
    body = "".join(labels)
    body += "".join(f'<path class="lvl{k + 1}" d="{"".join(d)}"/>'
                    for k, d in enumerate(levels) if d)
    if dups:
        body += f'<path class="dup" d="{"".join(dups)}"><title>duplicates</title></path>'
    if again:
        body += (f'<path class="redelivery" d="{"".join(again)}"><title>redeliveries'
                 "</title></path>")
    height = top_pad + len(activity.rows) * row + 18
    span = buckets * activity.bucket_s
    for k in range(0, 6):  # time axis: 6 ticks
        t = span * k / 5
        x = left + (WIDTH - left - 10) * k / 5
        anchor = "start" if k == 0 else ("end" if k == 5 else "middle")
        body += (f'<text class="tick" x="{_n(x)}" y="{height - 4}" text-anchor="{anchor}">'
                 f"{_seconds(t)}</text>")
    for n, (at, label) in enumerate(markers, 1):
        x = left + min(at, span) / span * (WIDTH - left - 10)
        body += (f'<g class="step"><title>{escape(label)}</title><line x1="{_n(x)}" y1="12" '
                 f'x2="{_n(x)}" y2="{height - 16}"/><text x="{_n(x)}" y="10" '
                 f'text-anchor="middle">{n}</text></g>')
    return _svg(height, body, "deliveries over time per worker", "timeline")


def _seconds(t: float) -> str:
    return f"{t * 1000:.3g} ms" if 0 < t < 1 else f"{t:.3g} s"


def latency_histogram(buckets: Sequence[LatencyBucket], figures: dict[str, float]) -> Markup:
    """The latency histogram (log-spaced buckets, as the analysis made them) with p50, p95,
    p99 and p99.9 marked."""
    if not buckets:
        return Markup("")
    height, base, left = 200.0, 160.0, 10.0
    step = (WIDTH - 2 * left) / len(buckets)
    top = max(b.count for b in buckets) or 1
    body = []
    low = figures.get("min", 0.0)
    for i, b in enumerate(buckets):
        h = (base - 30) * b.count / top
        if b.count:
            h = max(h, 1.5)
        lower = buckets[i - 1].upto_ms if i else low
        body.append(f'<rect class="ok" x="{_n(left + i * step)}" y="{_n(base - h)}" '
                    f'width="{_n(step - 1)}" height="{_n(h)}"><title>{lower:.3g} to '
                    f"{b.upto_ms:.3g} ms: {b.count}</title></rect>")
    body.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{WIDTH - left}" y2="{base}"/>')
    ticks = ((left, "start", low), (left + len(buckets) // 2 * step, "middle",
                                     buckets[len(buckets) // 2 - 1].upto_ms if len(buckets) > 1
                                     else low),
             (WIDTH - left, "end", buckets[-1].upto_ms))
    for x, anchor, value in ticks:
        body.append(f'<text class="tick" x="{_n(x)}" y="{base + 14}" '
                    f'text-anchor="{anchor}">{value:.3g} ms</text>')
    marks = [("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99_9", "p99.9")]
    for n, (key, label) in enumerate(marks):
        if key not in figures:
            continue
        x = left + _position(buckets, figures[key]) * step
        end = x > WIDTH - 160  # label on the line's left near the right edge
        anchor = "end" if end else "start"
        body.append(f'<g class="pct"><line x1="{_n(x)}" y1="{14 + n * 12}" x2="{_n(x)}" '
                    f'y2="{base}"/><text x="{_n(x - 3 if end else x + 3)}" y="{24 + n * 12}" '
                    f'text-anchor="{anchor}">{label} {figures[key]:.3g} ms</text></g>')
    body.append(f'<text class="label" x="{left}" y="{height - 6}">copies per latency bucket '
                "(log-spaced); lines: percentiles</text>")
    return _svg(height, "".join(body), "latency histogram", "latency")


def _position(buckets: Sequence[LatencyBucket], value: float) -> float:
    """Where ``value`` falls along the bucket axis (0..len), interpolated in its bucket."""
    prev = 0.0
    for i, b in enumerate(buckets):
        if value <= b.upto_ms:
            span = b.upto_ms - prev
            return i + (1.0 if span <= 0 else (value - prev) / span)
        prev = b.upto_ms
    return float(len(buckets))


def score_bars(scores: Sequence[tuple[str, float]], best: str | None = None) -> Markup:
    """Horizontal bars of scores between 0 and 1 (the probe's strategy fit)."""
    if not scores:
        return Markup("")
    left, row = 150, 20
    span = WIDTH - left - 70
    body = []
    for i, (name, score) in enumerate(scores):
        y = 4 + i * row
        w = max(0.0, min(1.0, score)) * span
        cls = "ok" if name == best else "muted"
        body.append(f'<g class="bar"><text class="label" x="{left - 6}" y="{y + 13}" '
                    f'text-anchor="end">{escape(_clip(name))}</text><rect class="{cls}" '
                    f'x="{left}" y="{y}" width="{_n(w)}" height="{row - 5}"/><text '
                    f'class="value" x="{_n(left + w + 4)}" y="{y + 13}">{score:.2f}</text></g>')
    return _svg(8 + len(scores) * row, "".join(body), "strategy scores", "scores")
