"""--format html: one self-contained page per report kind, checked as text and in a real
browser (headless Chromium: the DOM after load, console messages, network requests, a
screenshot kept as a test artifact)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from support.browser import Page, keep_artifact, load, screenshot
from support.cli import invoke
from support.synthetic import probe_report, replay_outcome, synthetic_report

from aetherdiag.render import html
from aetherdiag.render.replay import shown


def pages() -> dict[str, tuple[str, str]]:
    """name -> (page, verdict text shown)."""
    healthy = synthetic_report(3, 30)
    fanout = synthetic_report(3, 30, fanout=True)
    outcome = replay_outcome()
    probe = probe_report()
    assert outcome.report is not None
    return {
        "healthy": (html.report_page(healthy), "verdict: healthy (exit 0)"),
        "fanout": (html.report_page(fanout), "verdict: duplicates (exit 1)"),
        "replay": (html.replay_page([outcome, outcome], shown),
                   f"verdict: {outcome.report.verdict} (exit 1)"),
        "probe": (html.probe_page(probe), f"verdict: {probe.verdict} (exit 0)"),
    }


PAGES = pages()


def self_contained(text: str) -> None:
    """No reference to anything outside the file, dark mode and print styles present."""
    assert not re.search(r"https?://", text), re.findall(r".{30}https?://.{30}", text)
    assert not re.search(r"\b(src|href)=\"(?!#)", text)  # only in-page anchors
    assert "<script" not in text and "@import" not in text and "url(" not in text
    assert "@media (prefers-color-scheme: dark)" in text
    assert "@media print" in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_is_self_contained(name: str) -> None:
    text, verdict = PAGES[name]
    self_contained(text)
    assert verdict in text


def test_healthy_page_parts() -> None:
    text, _ = PAGES["healthy"]
    assert text.count('<g class="bar">') == 3  # one bar per worker
    assert 'class="even"' in text  # the even-split line
    assert 'class="chart timeline"' in text and 'class="dup"' not in text
    for label in ("p50", "p95", "p99", "p99.9", "max"):
        assert f'<th class="num">{label}</th>' in text
    assert 'class="chart latency"' in text


def test_fanout_page_marks_duplicates() -> None:
    text, _ = PAGES["fanout"]
    assert text.count('<g class="bar">') == 3
    assert '<rect class="warn"' in text  # shared tasks stacked in the warning colour
    assert '<path class="dup"' in text  # the timeline marks them
    assert "Likely causes" in text


def test_replay_page_has_a_section_per_file_and_step_markers() -> None:
    text, _ = PAGES["replay"]
    assert text.count('<section class="run"') == 2
    assert text.count('<g class="step">') == 2 * 3  # three steps (not the final settle)
    assert '<path class="redelivery"' in text
    assert "drop worker-2" in text and "expectations: all 1 met" in text
    assert 'href="#file-1"' in text and 'id="file-2"' in text


def test_probe_page_has_matrix_and_scores() -> None:
    text, _ = PAGES["probe"]
    assert '<table class="matrix">' in text and "MQTT 3.1.1" in text and "MQTT 5.0" in text
    assert 'class="chart scores"' in text
    assert text.count('<g class="bar">') == 4 + 3  # four strategy scores, three members


def test_text_that_looks_like_markup_is_escaped() -> None:
    report = synthetic_report(2, 6)
    page = html.report_page(replace(report, title='<img src="https://x.invalid/a.png">',
                                    causes=("<script>alert(1)</script>",)))
    assert "<script>" not in page and '<img src="https' not in page
    assert "&lt;script&gt;" in page


def test_workers_command_writes_html(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = invoke("workers", "--count", "3", "--tasks", "12", "--format", "html",
                    "--output", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    self_contained(text)
    assert "verdict: healthy (exit 0)" in text and text.count('<g class="bar">') == 3


# --- in the browser ------------------------------------------------------------------------

def open_page(name: str, text: str, tmp_path: Path) -> Page:
    path = tmp_path / f"report-{name}.html"
    path.write_text(text, encoding="utf-8")
    page = load(path, tmp_path)
    png = tmp_path / f"report-{name}.png"
    screenshot(path, png, tmp_path)
    keep_artifact(png)
    return page


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_in_the_browser(name: str, tmp_path: Path) -> None:
    text, verdict = PAGES[name]
    page = open_page(name, text, tmp_path)
    assert page.console == ()
    assert page.requests == ()
    assert verdict in page.dom
    bars = {"healthy": 3, "fanout": 3, "replay": 6, "probe": 7}[name]
    assert page.dom.count('<g class="bar">') == bars  # one bar per worker (per member/score)
    if name != "probe":
        assert 'class="chart timeline"' in page.dom and "p99.9" in page.dom
    if name == "fanout":
        assert '<path class="dup"' in page.dom
    if name == "replay":
        assert '<path class="redelivery"' in page.dom and '<g class="step">' in page.dom


def test_browser_check_sees_console_and_requests(tmp_path: Path) -> None:
    """The checks above are not vacuous: a page that logs and fetches is caught (the fetch
    goes to a closed loopback port)."""
    path = tmp_path / "noisy.html"
    path.write_text('<!doctype html><img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom")</script><p>hi</p>')
    page = load(path, tmp_path)
    assert any("boom" in line for line in page.console)
    assert page.requests == ("http://127.0.0.1:9/x.png",)
    assert "<p>hi</p>" in page.dom


def test_page_names_the_publishers_and_tells_a_large_pools_shares_apart(tmp_path: Path) -> None:
    """--publishers: the page says where each publisher's tasks went, as the table does; a
    worker of a 300-worker pool has a share above 0% (two significant figures)."""
    out = tmp_path / "report.html"
    result = invoke("workers", "--publishers", "2", "--count", "3", "--tasks", "6",
                    "--format", "html", "--output", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert re.search(r"publishers: publisher-1: 3 sent → worker-\d", text), text[-3000:]
    large = html.report_page(synthetic_report(300, 3000))
    assert ">0.33%<" in large and ">0%<" not in large
