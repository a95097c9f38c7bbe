"""Replay: run a scenario's steps, derive what each step caused, judge the outcome.

The flow is one-directional: ``run`` (network: fleet + steps -> ``ReplayRun``) ->
``effects`` (pure: what each step caused) -> ``outcome`` (pure: analysis + the expect block).
Rendering lives in ``render.replay``.
"""

from __future__ import annotations

from .run import ReplayRun, run_scenario

__all__ = ["ReplayRun", "run_scenario"]
