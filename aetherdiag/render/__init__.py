"""Every way results leave the program. Commands import this package and nothing from rich.

- ``output``: formats, the one writer for stdout/``--output``, stderr lines, the progress bar;
- ``report``: a ``workers``-style Report as table, JSON (schema ``aetherdiag.report/1``), JUnit;
- ``replay``: several replay outcomes, with their timelines and expectations;
- ``probe``: the probe report;
- ``html``: one self-contained page (Jinja2 templates in ``templates/``, inline SVG from
  ``charts``) for workers-style reports, replay files and the probe;
- ``markdown``: a compact summary for CI job pages (``$GITHUB_STEP_SUMMARY``).
"""

from __future__ import annotations

from .output import (
    Format,
    error,
    hint,
    interrupted,
    progress,
    shorten_tasks,
    verdict_note,
    warning,
    write,
)
from .report import (
    SCHEMA,
    failure_dict,
    failure_suite,
    junit_suite,
    render,
    render_failure,
    table,
    to_dict,
    to_json,
    to_junit,
)

__all__ = ["SCHEMA", "Format", "error", "failure_dict", "failure_suite", "hint", "interrupted",
           "junit_suite", "progress", "render", "render_failure", "shorten_tasks", "table",
           "to_dict", "to_json", "to_junit", "verdict_note", "warning", "write"]
