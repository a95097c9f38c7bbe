"""Pure analysis: a RunResult -> a Report with checks, causes and a verdict. No I/O.

- ``report``: the Report and its parts (frozen dataclasses), verdict names, ``CopyRef``;
- ``classify``: ``analyse``: duplicates, repeats, missing, balance, whether the run did its job;
- ``causes``: likely causes in plain words, from the evidence;
- ``cluster``: runs against several endpoints: per-node figures, the cluster causes;
- ``stats``: the chi-square test of an even split;
- ``latency``: tail latency from an HDR histogram (percentiles, log-spaced buckets);
- ``activity``: deliveries over time per worker, duplicates and redeliveries marked (bounded).
"""

from __future__ import annotations

from .classify import analyse
from .report import (
    DEFAULT_POOL,
    Activity,
    ActivityRow,
    Balance,
    Check,
    CopyRef,
    Expectations,
    LatencyBucket,
    NodeFigures,
    Report,
    WorkerRow,
)
from .stats import chi_square_sf

__all__ = ["DEFAULT_POOL", "Activity", "ActivityRow", "Balance", "Check", "CopyRef",
           "Expectations", "LatencyBucket", "NodeFigures",
           "Report", "WorkerRow",
           "analyse", "chi_square_sf"]
