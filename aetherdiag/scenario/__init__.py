"""Scenario files: YAML -> a validated ``Scenario`` (frozen dataclasses), errors with
file:line:column.

- ``model``: the Scenario, its steps and expectations (no YAML here);
- ``yaml_nodes``: composing a bounded YAML document and reading typed values from its nodes;
- ``reader``: the top-level keys, workers, layout, target and expect block;
- ``steps``: the ``steps:`` list, with each worker's connection state followed.
"""

from __future__ import annotations

from .model import Scenario, ScenarioError
from .reader import load_scenario, parse_scenario

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario"]
