"""Tail latency from an HDR histogram: percentiles, and the histogram in log-spaced buckets.

How this works: the harness records every publish-to-delivery latency into an HDR histogram
as it goes (``harness.model.LatencyRecord``: microseconds, 3 significant digits). A run that
comes with no such record (a replay built elsewhere, shards, a watch) gets one built here from
its deliveries' ``latency_ms``; either way the figures come from the histogram, so a
percentile is exact to within the histogram's precision (0.1 % of the value) whatever the
run's size. Pure: no I/O.
"""

from __future__ import annotations

import math

from hdrh.histogram import HdrHistogram

from ..harness.model import (
    LATENCY_CLOCK,
    LATENCY_DIGITS,
    LATENCY_HIGHEST_US,
    LATENCY_LOWEST_US,
    RunResult,
)
from .report import LatencyBucket

# (key in Report.latency_ms, percentile); p99_9 is the 99.9th
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99_9", 99.9))
HISTOGRAM_BARS = 30  # at most this many log-spaced buckets in the latency histogram


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LATENCY_LOWEST_US, LATENCY_HIGHEST_US, LATENCY_DIGITS)


def histogram_of(result: RunResult) -> HdrHistogram | None:
    """The run's latency histogram: the harness's record, or one built from the deliveries;
    None when no delivery carried a send time."""
    if result.latency is not None and result.latency.count:
        return HdrHistogram.decode(result.latency.hdr)
    hist = new_histogram()
    for d in result.deliveries:
        if d.latency_ms is not None:
            hist.record_value(min(LATENCY_HIGHEST_US, max(0, round(d.latency_ms * 1000.0))))
    return hist if hist.get_total_count() else None


def _ms(micros: float) -> float:
    return round(micros / 1000.0, 3)


def figures(hist: HdrHistogram) -> dict[str, float]:
    """count, min, mean, p50, p90, p95, p99, p99_9 and max, in milliseconds (count: copies).

    Each percentile is HdrHistogram's value at that percentile: the highest value equivalent
    (within the precision) to the one an exact sort would give.
    """
    out: dict[str, float] = {"count": int(hist.get_total_count()),
                             "min": _ms(hist.get_min_value()),
                             "mean": _ms(hist.get_mean_value())}
    for key, pct in PERCENTILES:
        out[key] = _ms(hist.get_value_at_percentile(pct))
    out["max"] = _ms(hist.get_max_value())
    return out


def buckets(hist: HdrHistogram, bars: int = HISTOGRAM_BARS) -> tuple[LatencyBucket, ...]:
    """The recorded values in at most ``bars`` buckets, log-spaced from min to max (linear
    when the spread is small), each with its upper bound in ms."""
    lo = max(1, int(hist.get_min_value()))
    hi = max(lo, int(hist.get_max_value()))
    if hi <= lo * 1.05 or bars < 2:
        return (LatencyBucket(_ms(hi), int(hist.get_total_count())),)
    ratio = hi / lo
    if ratio < 4:  # a narrow spread reads better on a linear axis
        bounds = [lo + (hi - lo) * (i + 1) / bars for i in range(bars)]
    else:
        bounds = [lo * ratio ** ((i + 1) / bars) for i in range(bars)]
    counts = [0] * bars
    for item in hist.get_recorded_iterator():
        value = hist.get_highest_equivalent_value(item.value_iterated_to)
        i = _index(bounds, min(value, hi))
        counts[i] += int(item.count_at_value_iterated_to)
    return tuple(LatencyBucket(_ms(b), n) for b, n in zip(bounds, counts, strict=True))


def _index(bounds: list[float], value: float) -> int:
    """The first bucket whose bound holds ``value``."""
    lo, hi = 0, len(bounds) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if value <= bounds[mid] or math.isclose(value, bounds[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def latency_of(result: RunResult
               ) -> tuple[dict[str, float], tuple[LatencyBucket, ...], str]:
    """(figures, histogram buckets, clock) for the Report; empty when nothing was timed."""
    hist = histogram_of(result)
    if hist is None:
        return {}, (), ""
    clock = result.latency.clock if result.latency is not None else LATENCY_CLOCK
    return figures(hist), buckets(hist), clock
