"""The live view draws a snapshot; without a terminal it draws nothing."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from watch.synthetic import complete, feed, handled, status

from aetherdiag.render.watch import live, view
from aetherdiag.watch.tracker import Tracker


def test_view_shows_counts_findings_and_time() -> None:
    t = feed(Tracker(), *handled(0, "t1", "w1"), status(0.1, "t1", "w2"),
             complete(0.2, "t1", "w2"))
    out = io.StringIO()
    Console(file=out, width=120).print(view(t.snapshot(12.0), "aetherdiag watch"))
    text = out.getvalue()
    assert "12 s, 1 tasks" in text and "h/w1" in text and "processed twice 1" in text
    assert "t1: h/w1, h/w2" in text


def test_no_terminal_no_output(capsys: pytest.CaptureFixture[str]) -> None:
    with live(True, "x") as update:
        update(Tracker().snapshot(1.0))
    assert capsys.readouterr().err == ""
