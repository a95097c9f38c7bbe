"""Tail latency from the HDR histogram: percentiles agree with exact ones within the
histogram's precision; the harness records into it; the analysis and JSON carry it."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from support.synthetic import specs, synthetic_run

from aetherdiag import render
from aetherdiag.analysis import analyse
from aetherdiag.analysis.latency import PERCENTILES, buckets, figures, histogram_of
from aetherdiag.harness.model import LATENCY_HIGHEST_US
from aetherdiag.harness.recorder import Recorder


def exact(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` with HdrHistogram's rank rule: the value at rank
    ``round(pct / 100 * n)`` (at least 1), from a full sort."""
    ordered = sorted(values)
    rank = max(1, int(pct / 100 * len(ordered) + 0.5))
    return ordered[rank - 1]


def recorded(values: list[float]) -> Recorder:
    rec = Recorder()
    for n, ms in enumerate(values):
        rec.delivery("w", f"task-{n}", "t", 1, False, False, 0.0, ms)
    return rec


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", ["lognormal", "uniform", "spiky"])
def test_hdr_percentiles_agree_with_exact(seed: int, shape: str) -> None:
    rng = random.Random(seed)
    n = rng.choice([7, 100, 1_000, 20_000])
    if shape == "lognormal":
        values = [rng.lognormvariate(1.0, 1.2) for _ in range(n)]
    elif shape == "uniform":
        values = [rng.uniform(0.05, 50.0) for _ in range(n)]
    else:  # mostly fast, a slow tail three orders of magnitude up
        values = [rng.uniform(1, 2) if rng.random() > 0.01 else rng.uniform(1000, 3000)
                  for _ in range(n)]
    rec = recorded(values)
    record = rec.latency()
    assert record is not None and record.count == n
    result = replace(synthetic_run(1, 1), latency=record)
    hist = histogram_of(result)
    assert hist is not None
    got = figures(hist)
    micros = [round(v * 1000) for v in values]  # the recorder's resolution: 1 us
    for key, pct in PERCENTILES:
        want = exact(micros, pct) / 1000
        # 3 significant digits: within 0.1 % of the value, plus the 1 us the ms are rounded to
        assert abs(got[key] - want) <= want * 1e-3 + 1e-3, (key, got[key], want)
    assert abs(got["max"] - max(micros) / 1000) <= max(micros) / 1000 * 1e-3 + 1e-3
    assert abs(got["min"] - min(micros) / 1000) <= min(micros) / 1000 * 1e-3 + 1e-3
    assert got["count"] == n
    assert sum(b.count for b in buckets(hist)) == n


def test_recorder_clamps_what_the_histogram_cannot_hold() -> None:
    rec = recorded([-3.0, 1.0, LATENCY_HIGHEST_US / 1000 * 2])
    record = rec.latency()
    assert record is not None
    assert (record.count, record.below_zero, record.above_range) == (3, 1, 1)
    assert "time.time()" in record.clock


def test_no_latency_recorded() -> None:
    assert Recorder().latency() is None
    rec = Recorder()
    rec.delivery("w", "t", "t", 1, False, False, 0.0, None)
    assert rec.latency() is None


def test_analysis_from_the_record_or_the_deliveries_agree() -> None:
    result = synthetic_run(4, 2_000)
    from_record = analyse(result, specs(result))
    from_deliveries = analyse(replace(result, latency=None), specs(result))
    assert from_record.latency_ms == from_deliveries.latency_ms
    assert from_record.latency_histogram == from_deliveries.latency_histogram
    assert set(from_record.latency_ms) == {"count", "min", "mean", "p50", "p90", "p95", "p99",
                                           "p99_9", "max"}
    assert from_record.latency_ms["p99_9"] >= from_record.latency_ms["p99"] >= \
        from_record.latency_ms["p50"]


def test_json_carries_the_new_keys() -> None:
    result = synthetic_run(3, 300)
    doc = json.loads(render.to_json(analyse(result, specs(result))))
    assert doc["schema"] == "aetherdiag.report/1"
    assert {"p50", "p95", "p99", "p99_9", "max", "count"} <= set(doc["latency_ms"])
    assert doc["latency_clock"].startswith("publisher's wall clock")
    assert sum(b["count"] for b in doc["latency_histogram"]) == 300
    assert doc["activity"]["rows"][0]["name"] == "worker-1"
    assert all(w["shared"] == 0 for w in doc["workers"])


def test_table_shows_the_tail() -> None:
    import io
    result = synthetic_run(3, 300)
    out = io.StringIO()
    render.render(analyse(result, specs(result)), render.Format.table, out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("latency"))
    for label in ("p50", "p95", "p99", "p99.9", "max"):
        assert f"{label} " in line
