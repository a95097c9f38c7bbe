"""Replay: run a scenario's steps, derive what each step caused, judge the outcome.

The flow is one-directional: ``run`` (network: fleet + steps -> ``ReplayRun``) ->
``effects`` (pure: what each step caused, which copies a lost connection abandoned) ->
``outcome`` (pure: analysis + the expect block, side by side) -> ``render.replay``. The values
passed along live in ``model``. Only ``run`` imports the fleet (and paho); this face loads it
on first use of ``run_scenario``, so ``import aetherdiag.replay.outcome`` stays pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import ReplayRun

if TYPE_CHECKING:
    from .run import run_scenario

__all__ = ["ReplayRun", "run_scenario"]


def __getattr__(name: str) -> Any:
    if name == "run_scenario":
        from .run import run_scenario

        return run_scenario
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
