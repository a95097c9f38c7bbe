"""Text from the wire, from files and from the command line is data in every output format.

Reports whose worker names, task ids, subscriptions, notes, causes, setup values, check texts,
timeline lines and titles hold rich markup, terminal escapes, a fake verdict line or HTML go
through the real renderers: the table shows each value verbatim on one line (escaped with
``safe.terminal``) and keeps exactly one ``verdict:`` line, Markdown holds no raw HTML
(``safe.markdown``), JSON gives back the exact strings, JUnit parses, HTML escapes.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text
from support.synthetic import probe_report

from aetherdiag import render
from aetherdiag.analysis import Check, Report, analyse
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import Delivery, RunResult, WorkerSpec
from aetherdiag.probe.model import Check as ProbeCheck
from aetherdiag.probe.model import ProbeReport, Status
from aetherdiag.render import html, markdown
from aetherdiag.render import probe as render_probe
from aetherdiag.render import replay as render_replay
from aetherdiag.render import watch as live_view
from aetherdiag.render.blocks import Guarded
from aetherdiag.render.safe import markdown as md
from aetherdiag.render.safe import terminal, xml
from aetherdiag.replay.model import StepEffect
from aetherdiag.replay.outcome import ExpectResult, ReplayOutcome
from aetherdiag.watch.tracker import Finding, Snapshot

HOSTILE = ["[/]", "[bold]x[/bold]", "\x1b]0;t\x07", "x\nverdict: healthy (exit 0)",
           "<img src=x onerror=alert(1)>"]
ALL = "".join(HOSTILE)  # every trick in one value
VALUES = [*HOSTILE, ALL]
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # all but the newline
SGR = re.compile(r"\x1b\[[0-9;]*m")


def hostile_report(value: str, *, verdict: str | None = None) -> Report:
    """Two workers named after ``value`` that both get every task (so duplicates, examples and
    causes name them), ``value`` in every presentation field and in one more check."""
    names = (value, f"w-{value}")
    tasks = tuple(f"{value}-{n}" for n in range(3))
    deliveries = tuple(Delivery(worker=w, task_id=t, topic=f"t/{t}", qos=1, dup=False,
                                retain=False, at=0.1, latency_ms=1.0)
                       for w in names for t in tasks)
    result = RunResult(target=value, workers=names, published=tasks, deliveries=deliveries,
                       duration_s=0.5, connection_lost=(value,))
    report = analyse(result, [WorkerSpec(name=n, subscriptions=(f"$share/g/{value}/+",))
                              for n in names])
    return replace(
        report, title=value, context=((value, value), ("subscription", f"$share/g/{value}/+")),
        notes=(value,), causes=(*report.causes, value), timeline=(value,),
        checks=(*report.checks, Check(name=value, passed=False, detail=value,
                                      code=ExitCode.DUPLICATES)),
        verdict=report.verdict if verdict is None else verdict)


def draw(renderable: object, width: int = 120, *, tty: bool = False) -> str:
    """What rich prints for ``renderable`` at ``width`` (on a terminal: colour codes taken
    out again, after checking they are the only escape sequences)."""
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=tty, color_system="truecolor" if tty else None,
            soft_wrap=False).print(renderable)
    text = out.getvalue()
    return SGR.sub("", text) if tty else text


def verdict_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("verdict:")]


def assert_terminal_safe(text: str, value: str) -> None:
    """No control character but the newline; ``value`` visible as its escaped self."""
    assert not RAW_CONTROL.search(text), repr(text)
    assert terminal(value) in text


# -- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("width", [40, 80, 200])
def test_table_shows_values_verbatim_on_one_line(value: str, width: int) -> None:
    report = hostile_report(value)
    text = draw(render.table(report), width)
    assert_terminal_safe(text, value if width == 200 else "")  # narrow widths fold values
    assert verdict_lines(text) == ["verdict: duplicates (exit 1)"]
    if width == 200:
        assert text.count(terminal(value)) >= 8  # title, setup, names, tasks, checks, notes ...


@pytest.mark.parametrize("value", VALUES)
def test_table_to_a_file_and_on_a_terminal(value: str) -> None:
    report = hostile_report(value)
    out = io.StringIO()
    render.render(report, render.Format.table, out)
    assert_terminal_safe(out.getvalue(), value)
    assert verdict_lines(out.getvalue()) == ["verdict: duplicates (exit 1)"]
    tty = draw(render.table(report), 200, tty=True)
    assert "\x1b" not in tty and "\x07" not in tty
    assert terminal(value) in tty


def test_markup_is_shown_not_applied() -> None:
    text = draw(render.table(hostile_report("[bold]x[/bold]")), 200, tty=True)
    assert "[bold]x[/bold]" in text
    raw = io.StringIO()
    Console(file=raw, width=200, force_terminal=True, color_system="truecolor").print(
        render.table(hostile_report("plain")))
    bold_plain = raw.getvalue().count("\x1b[1m")
    raw = io.StringIO()
    Console(file=raw, width=200, force_terminal=True, color_system="truecolor").print(
        render.table(hostile_report("[bold]x[/bold]")))
    assert raw.getvalue().count("\x1b[1m") == bold_plain  # no value turned anything bold


def test_a_hostile_verdict_stays_on_the_one_verdict_line() -> None:
    report = hostile_report("w", verdict="x\nverdict: healthy (exit 0)\x1b]0;t\x07")
    text = draw(render.table(report), 80)
    assert verdict_lines(text) == [
        "verdict: x\\nverdict: healthy (exit 0)\\x1b]0;t\\x07 (exit 1)"]


@pytest.mark.parametrize("width", [30, 40, 60, 80])
def test_no_value_starts_a_verdict_line(width: int) -> None:
    """A worker named like a verdict (at the start of a line when the table becomes blocks)
    and a note that wraps at the space before ``verdict:`` still leave one verdict line."""
    fake = "verdict: healthy (exit 0)"
    report = replace(hostile_report(fake), notes=("n" * (width - 8) + " " + fake,),
                     verdict="x " * width + fake)
    text = draw(render.table(report), width)
    assert len(verdict_lines(text)) == 1, text
    assert verdict_lines(text)[0].startswith("verdict: x x")
    assert all(len(line) <= width for line in text.splitlines())


# -- the other formats -------------------------------------------------------------------------


@pytest.mark.parametrize("value", VALUES)
def test_json_gives_back_the_exact_strings(value: str) -> None:
    doc = json.loads(render.to_json(hostile_report(value)))
    assert [w["name"] for w in doc["workers"]] == [value, f"w-{value}"]
    assert doc["workers"][0]["subscriptions"] == [f"$share/g/{value}/+"]
    assert doc["workers"][0]["tasks"] == [f"{value}-{n}" for n in range(3)]
    assert doc["title"] == doc["target"] == value
    assert doc["run"][value] == value
    assert doc["notes"] == [value] and doc["causes"][-1] == value
    assert doc["checks"][-1]["name"] == doc["checks"][-1]["detail"] == value
    assert doc["timeline"] == [value] and doc["connection_lost"] == [value]


@pytest.mark.parametrize("value", [*VALUES, "\x00\x08\x0b\x0c\ufffe\uffff"])
def test_junit_parses(value: str) -> None:
    root = ET.fromstring(render.to_junit(hostile_report(value)))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["target"] == xml(value)
    failure = root.findall("testcase")[-1].find("failure")
    assert failure is not None and failure.get("message") == xml(value)
    assert xml(value) in (root.findtext("system-out") or "")


@pytest.mark.parametrize("value", VALUES)
def test_markdown_holds_no_html_and_reads_the_value(value: str) -> None:
    text = markdown.report_summary(hostile_report(value))
    assert "<img" not in text and "<" not in text.replace("<0.01%", "")
    assert not RAW_CONTROL.search(text)
    assert md(value) in text
    assert md(f"w-{value}") in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert all(line.endswith(" |") for line in rows)
    worker_rows = [line for line in rows if line.split(" | ")[1:2] in (["2"], ["3"])]
    assert len(worker_rows) == 2  # both workers, one row each
    if "img" in value:
        assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_markdown_escapes() -> None:
    assert md("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md("a|b`c`[d](e)![f](g)") == "a\\|b\\`c\\`\\[d\\](e)!\\[f\\](g)"
    assert md("x\nverdict: healthy") == "x\\\\nverdict: healthy"
    assert md("\x1b]0;t\x07") == "\\\\x1b\\]0;t\\\\x07"
    assert md("worker_1 _x_ *y* ~z~") == "worker_1 \\_x\\_ \\*y\\* \\~z\\~"
    assert md("# h") == "\\# h" and md("1. x") == "1\\. x" and md("- x") == "\\- x"
    assert md("a & b") == "a &amp; b"


@pytest.mark.parametrize("value", VALUES)
def test_html_escapes(value: str) -> None:
    page = html.report_page(hostile_report(value))
    assert "<img src=x" not in page
    if "img" in value:
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize("fmt", list(render.Format))
def test_failure_documents(fmt: render.Format) -> None:
    out = io.StringIO()
    render.render_failure(ALL, ALL, ALL, ExitCode.UNREACHABLE, fmt, out)
    text = out.getvalue()
    if fmt is render.Format.table:
        assert_terminal_safe(text, ALL)
        assert verdict_lines(text) == ["verdict: broker unreachable (exit 3)"]
    elif fmt is render.Format.json:
        assert json.loads(text)["error"] == ALL
    elif fmt is render.Format.junit:
        assert ET.fromstring(text).find("testcase/error") is not None
    else:
        assert "<img src=x" not in text


# -- replay, probe, watch ----------------------------------------------------------------------


def hostile_outcomes(value: str) -> list[ReplayOutcome]:
    report = hostile_report(value)
    step = StepEffect(index=1, line=3, kind="publish", description=value, effect=value,
                      started=0.0, ended=0.1)
    ran = ReplayOutcome(
        file=value, name=value, description=value, report=report, exit_code=report.exit_code,
        check_expect=False, setup=((value, value),), steps=(step,), expected_exit=0,
        expectations=(ExpectResult(name=value, expected=value, actual=value, passed=False),))
    failed = ReplayOutcome(file=f"2-{value}", name=value, description=value, report=None,
                           exit_code=ExitCode.USAGE, check_expect=False, error=value)
    return [ran, failed]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("width", [40, 120])
def test_replay(value: str, width: int) -> None:
    outcomes = hostile_outcomes(value)
    out = io.StringIO()
    render_replay.render_outcomes(outcomes, render.Format.table, out)
    assert_terminal_safe(out.getvalue(), value)
    assert len(verdict_lines(out.getvalue())) == 1  # the one file that ran
    text = draw(render_replay.summary(outcomes), width)
    assert not RAW_CONTROL.search(text) and not verdict_lines(text)
    docs = json.loads(render_replay.to_json(outcomes))
    assert [d["scenario"]["file"] for d in docs] == [value, f"2-{value}"]
    assert docs[1]["error"] == value
    ET.fromstring(render_replay.to_junit(outcomes))
    summary = markdown.replay_summary(outcomes, render_replay.shown)
    assert "<img" not in summary and not RAW_CONTROL.search(summary)
    assert md(value) in summary
    assert "<img src=x" not in html.replay_page(outcomes, render_replay.shown)


def hostile_probe(value: str) -> ProbeReport:
    check = ProbeCheck(id="x", title=value, status=Status.FAIL, result=value, evidence=value,
                       spec=value, meaning=value)
    return replace(probe_report(), target=value, endpoints=(value, f"2-{value}"),
                   notes=(value,), checks=(*probe_report().checks, check))


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("width", [60, 160])
def test_probe(value: str, width: int) -> None:
    report = hostile_probe(value)
    text = draw(render_probe.table(report), width)
    assert_terminal_safe(text, value if width == 160 else "")
    assert len(verdict_lines(text)) == 1
    assert json.loads(render_probe.to_json(report))["target"] == value
    ET.fromstring(render_probe.to_junit(report))
    summary = markdown.probe_summary(report)
    assert "<img" not in summary and md(value) in summary
    assert "<img src=x" not in html.probe_page(report)
    out = io.StringIO()
    render_probe.render_failure(value, value, int(ExitCode.UNREACHABLE), render.Format.table,
                                out)
    assert_terminal_safe(out.getvalue(), value)
    assert len(verdict_lines(out.getvalue())) == 1
    ET.fromstring(render_probe.failure_junit(value, value, int(ExitCode.UNREACHABLE)))


@pytest.mark.parametrize("value", VALUES)
def test_watch_live_view(value: str) -> None:
    snapshot = Snapshot(elapsed=3.0, tasks=2, workers=((value, 2), (f"w-{value}", 1)),
                        counts=(("multi", 1),), forgotten=0, unparsed=0,
                        recent=(Finding(at=1.0, kind="multi", tid=value, text=value),))
    text = draw(live_view.view(snapshot, value), 200, tty=True)
    assert "\x1b" not in text and "\x07" not in text
    assert terminal(value) in text


# -- stderr: error lines, the progress bar and the live view on a terminal --------------------


@pytest.mark.parametrize("value", VALUES)
def test_stderr_lines(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    render.error(f"cannot read {value}")
    render.warning(value)
    render.hint(f"hint: {value}")
    err = capsys.readouterr().err
    assert err.splitlines() == [f"aetherdiag: error: cannot read {terminal(value)}",
                                f"aetherdiag: warning: {terminal(value)}",
                                f"aetherdiag: hint: {terminal(value)}"]


def test_progress_and_live_view_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws on the captured stderr as on a tty
    with render.progress(3, ALL, enabled=True) as update:
        update(1, 1)
    snapshot = Snapshot(elapsed=1.0, tasks=1, workers=((ALL, 1),), counts=(), forgotten=0,
                        unparsed=0, recent=())
    with live_view.live(True, ALL) as show:
        show(snapshot)
    with render_probe.status(True) as step:
        step(ALL)
    err = capsys.readouterr().err  # drawn at 80 columns: the value is cut, never read as markup
    assert "[/][bold]x[/bold]\\x1b]0;t\\x07x\\nverdict" in err
    assert "\x07" not in err and "\x1b]" not in err


# -- any string --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=24), client=st.text(max_size=24))
def test_any_name_is_shown_verbatim(name: str, client: str) -> None:
    """Any worker name and client id (a connection-lost client): the table and Markdown show
    each as its escaped self, hold no raw control character, and keep one verdict line."""
    workers = (f"a{name}", f"b{name}")
    task = "task-1"
    result = RunResult(target="emulator", workers=workers, published=(task,),
                       deliveries=tuple(Delivery(worker=w, task_id=task, topic="t", qos=1,
                                                 dup=False, retain=False, at=0.1,
                                                 latency_ms=1.0) for w in workers),
                       duration_s=0.1, connection_lost=(client,))
    report = analyse(result, [WorkerSpec(name=w, subscriptions=("$share/g/t",))
                              for w in workers])
    text = draw(render.table(report), 300)
    assert not RAW_CONTROL.search(text)
    assert terminal(f"a{name}") in text and terminal(f"b{name}") in text
    assert terminal(client) in text
    assert len(verdict_lines(text)) == 1
    summary = markdown.report_summary(report)
    assert not RAW_CONTROL.search(summary)
    assert md(f"a{name}") in summary and md(f"b{name}") in summary
    assert len([line for line in summary.splitlines() if line.startswith("| a")]) == 1


@pytest.mark.parametrize("width", [20, 41])
def test_guarded_moves_a_full_line_and_keeps_every_character(width: int) -> None:
    """A word folded so that a full line starts with ``verdict:``: moved one cell right, and
    the character that no longer fits goes on a line of its own."""
    word = "a" * width + "verdict:" + "b" * (width - 8) + "c"
    text = draw(Guarded(Text(word, overflow="fold")), width)
    lines = text.splitlines()
    assert not verdict_lines(text)
    assert all(len(line) <= width for line in lines)
    assert "".join(line.strip() for line in lines) == word
