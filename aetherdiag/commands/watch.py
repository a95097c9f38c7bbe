"""``aetherdiag watch``: a live pool seen passively (plain subscriptions), or a recording of
one read back; the report and exit code of ``workers``."""

from __future__ import annotations

import contextlib
import datetime
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from .. import render
from ..analysis import Report
from ..exitcodes import Abort, ExitCode
from ..harness.clients import BrokerUnreachable
from ..mqtt.protocol import parse_protocol
from ..render import watch as live_view
from ..watch.events import AetherMagicWatch, GenericWatch, Watched
from ..watch.judge import Ended as EndedHow
from ..watch.judge import judge, no_tasks_hint, observed, pool_seen
from ..watch.record import Ended, Header, RecordError, RecordFile, Rollover, read
from ..watch.tracker import FINISHED_ENTRY_BYTES, Limits, Summary, Tracker
from ..watch.values import METRICS_MAX_WORKERS
from . import common

if TYPE_CHECKING:  # loaded when used: paho and prometheus_client are not needed for --input
    from ..watch.metrics import MetricsServer
    from ..watch.observe import WatchPlan

EPILOG = """Examples:

  aetherdiag watch --broker mqtt://broker --duration 600
  aetherdiag watch -b mqtt://broker --job engine --tasks 1000
  aetherdiag watch -b mqtt://broker --profile generic \\
      --task-topic 'jobs/{task_id}' --reply-topic 'results/{task_id}' \\
      --worker-field /worker
  aetherdiag watch -b mqtt://broker --duration 3600 --record pool.jsonl
  aetherdiag watch -b mqtt://broker --duration 0 --metrics-port 9464 --quiet \\
      --record pool.jsonl --record-max-mb 100 --record-keep 5
  aetherdiag watch --input pool.jsonl --format json   # a recording, no broker

watch only subscribes (plain, never $share), so the pool is untouched. Without --duration
(or with --duration 0) and without --tasks it runs until Ctrl-C or SIGTERM, then prints the
report. A live table is shown on stderr when it is a terminal. --metrics-port serves
Prometheus metrics while it watches (docs/metrics.md). With --record, SIGHUP reopens the file
(logrotate moved it away) instead of ending the watch. Retained messages (stale state the
broker kept from before the watch) are ignored and counted, never taken for live tasks. A
task finished and forgotten (--forget-after) stays in the finished-task memory
(--max-finished tasks, about 320 bytes each), so a second worker answering it later is still
a duplicate.

Exit codes: 0 healthy, 1 processed more than once (by two workers, twice by one, or a tid
reused), 2 usage or a bad --input file, 3 broker unreachable or lost, 4 stalled,
5 imbalance, 7 incomplete (no task seen at all: verdict "no tasks observed", with a hint
naming the filters; or an --input recording cut off before its end), 8 internal error,
130 interrupted (the report is still printed). The lowest non-zero code wins; 130 always
wins.
"""

TITLE = "aetherdiag watch"


def command(
    broker: str | None = common.broker_option("none: required unless --input"),
    profile: str = typer.Option(
        "aethermagic", "--profile",
        help="aethermagic (the library's perform/status/complete topics) or generic "
        "(--task-topic, --reply-topic, --worker-field)."),
    union: str = typer.Option("production", "--union", help="AetherMagic union."),
    job: str | None = typer.Option(None, "--job", help="AetherMagic job (default: any)."),
    task: str | None = typer.Option(None, "--task", help="AetherMagic task (default: any)."),
    context: str | None = typer.Option(None, "--context",
                                       help="AetherMagic context (default: any)."),
    task_topic: str | None = typer.Option(
        None, "--task-topic", metavar="TEMPLATE",
        help="Generic: the task topics, {task_id} as one level (+ for any level), e.g. "
        "'jobs/{task_id}'."),
    reply_topic: str | None = typer.Option(
        None, "--reply-topic", metavar="TEMPLATE",
        help="Generic: where workers answer, e.g. 'results/{task_id}'. Without it no answers "
        "are seen (no stall check)."),
    worker_field: str | None = typer.Option(
        None, "--worker-field", metavar="POINTER",
        help="Generic: the JSON pointer naming the worker in a reply, e.g. /worker (default: "
        "the reply's host and client)."),
    duration: float | None = typer.Option(
        None, "--duration", min=0, max=31 * 86_400, callback=common.finite,
        metavar="SECONDS", help="Stop after SECONDS; 0: run until stopped (default: until "
        "Ctrl-C, SIGTERM or --tasks)."),
    tasks: int | None = typer.Option(
        None, "--tasks", metavar="N", min=1, max=1_000_000_000,
        help="Stop once N tasks were seen and each completed or stalled."),
    stall_after: float = typer.Option(
        10.0, "--stall-after", min=0.01, max=86_400, callback=common.finite, metavar="SECONDS",
        help="A perform with no status within SECONDS is stalled."),
    forget_after: float = typer.Option(
        60.0, "--forget-after", min=0.0, max=86_400, callback=common.finite, metavar="SECONDS",
        help="Forget a task SECONDS after it finished (bounded memory; counted as forgotten; "
        "the finished-task memory still recognises a later answer to it)."),
    max_finished: int = typer.Option(
        1_000_000, "--max-finished", metavar="N", min=1, max=1_000_000_000,
        help=f"Finished tasks remembered after they are forgotten, so a late second answer is "
        f"still a duplicate (about {FINISHED_ENTRY_BYTES} bytes each; beyond N the oldest "
        "are dropped and the report says so)."),
    max_imbalance: float = typer.Option(1.5, "--max-imbalance", min=1.0, callback=common.finite,
                                        help="Largest max/min split allowed."),
    record: Path | None = typer.Option(
        None, "--record", metavar="FILE",
        help="Write every observed event as JSON Lines (no payload bodies). SIGHUP reopens "
        "it (logrotate)."),
    record_max_mb: float | None = typer.Option(
        None, "--record-max-mb", min=0.001, max=1_000_000, callback=common.finite,
        metavar="MB", help="With --record: past MB megabytes (10^6 bytes) the file becomes "
        "FILE.1 (FILE.1 becomes FILE.2, ...) and a new FILE starts, each a recording of its "
        "own."),
    record_keep: int | None = typer.Option(
        None, "--record-keep", metavar="K", min=1, max=10_000,
        help="With --record-max-mb: keep K files, the current one included (default 5); "
        "older ones are deleted."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", metavar="PORT", min=0, max=65_535,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics while watching (0: a free "
        "port; the address is printed on stderr). docs/metrics.md lists them."),
    metrics_host: str | None = typer.Option(
        None, "--metrics-host", metavar="HOST",
        help="Where --metrics-port listens (default 127.0.0.1: this machine only)."),
    metrics_max_workers: int = typer.Option(
        METRICS_MAX_WORKERS, "--metrics-max-workers", metavar="N", min=1, max=10_000,
        help="Workers named in the per-worker metrics (the first N to answer); later ones "
        "are counted as worker=\"other\"."),
    input_file: Path | None = typer.Option(
        None, "--input", metavar="FILE", help="Judge a --record file instead of a broker."),
    fmt: render.Format = typer.Option(render.Format.table, "--format",
                                      help="table, json, junit, html or markdown."),
    output: Path | None = common.OUTPUT_OPTION,
    quiet: bool = typer.Option(False, "--quiet",
                               help="No live view; with --format table, no report either."),
    connect_timeout: float = typer.Option(5.0, "--connect-timeout", min=0.1, max=600,
                                          callback=common.finite,
                                          help="Seconds to wait for the broker."),
    mqtt: str | None = common.mqtt_option("Protocol of the watching client (default 3.1.1)"),
    ca_file: Path | None = common.CA_FILE_OPTION,
    cert_file: Path | None = common.CERT_FILE_OPTION,
    key_file: Path | None = common.KEY_FILE_OPTION,
    insecure: bool = common.INSECURE_OPTION,
    password_env: str | None = common.PASSWORD_ENV_OPTION,
    debug: bool = common.DEBUG_OPTION,
) -> None:
    """Watch a live pool without joining it: who processed each task, duplicates, stalls and
    balance, from plain subscriptions only (or from a --record file with --input)."""
    watched = _watched(profile, union, job, task, context, task_topic, reply_topic,
                       worker_field)
    tls = common.TargetOptions(ca_file, cert_file, key_file, insecure, password_env)
    limits = Limits(stall_after=stall_after, forget_after=forget_after,
                    max_finished=max_finished,
                    expects_replies=not isinstance(watched, GenericWatch)
                    or watched.expects_replies)
    setup = (("profile", watched.profile), ("filters", ", ".join(watched.filters())),
             ("stall after", f"{stall_after:g} s"), ("forget after", f"{forget_after:g} s"))
    metrics = None
    if metrics_port is not None:
        metrics = Metrics(metrics_host or "127.0.0.1", metrics_port, metrics_max_workers)
    elif metrics_host is not None:
        raise Abort("--metrics-host needs --metrics-port PORT")
    rollover = _rollover(record, record_max_mb, record_keep)
    if input_file is not None:
        given = [f for f, v in (("--broker", broker), ("--record", record),
                                ("--duration", duration), ("--tasks", tasks),
                                ("--metrics-port", metrics_port)) if v is not None]
        if given:
            raise Abort(f"{', '.join(given)} cannot be used with --input (it reads a "
                        "recording, no broker)")
        tls.refuse_tls("--broker (not --input)")
        common.check_output(output, inputs=[input_file])
        report, summary, header = _from_recording(input_file, limits, max_imbalance)
        # what the recorded watch subscribed to, not these options (unless it does not say)
        filters = header.filters or watched.filters()
        setup = (("profile", header.profile or watched.profile),
                 ("filters", ", ".join(filters)), *setup[2:])
    else:
        if broker is None:
            raise Abort("--broker URL is required (or --input FILE to judge a recording)")
        target = tls.target(broker, parse_protocol(mqtt or "3.1.1"))
        common.check_output(output, records=[record] if record is not None else [])
        from ..watch.observe import WatchPlan

        plan = WatchPlan(target=target, protocol=target.protocol,
                         connect_timeout=connect_timeout,
                         duration=duration or None,  # 0: until stopped
                         tasks=tasks)
        filters = watched.filters()
        summary, report = _watch(plan, watched, limits, Recording(record, rollover), metrics,
                                 quiet=quiet, fmt=fmt, output=output,
                                 max_imbalance=max_imbalance)
    report = replace(report, title=TITLE, context=(*setup, *pool_seen(summary)))
    common.emit_report(report, fmt, output, quiet)
    if not observed(summary):
        render.hint(no_tasks_hint(filters))
    if report.interrupted:
        render.interrupted()
    raise typer.Exit(int(report.exit_code))


def _watched(profile: str, union: str, job: str | None, task: str | None,
             context: str | None, task_topic: str | None, reply_topic: str | None,
             worker_field: str | None) -> Watched:
    """The profile from its options; a usage error (one line) when they do not fit."""
    try:
        if profile == "aethermagic":
            generic = [f for f, v in (("--task-topic", task_topic), ("--reply-topic",
                       reply_topic), ("--worker-field", worker_field)) if v is not None]
            if generic:
                raise ValueError(f"{', '.join(generic)}: for --profile generic (AetherMagic "
                                 "workers answer on .../{tid}/status and .../complete)")
            return AetherMagicWatch(union, job, task, context)
        if profile == "generic":
            if task_topic is None:
                raise ValueError("--profile generic needs --task-topic TEMPLATE, e.g. "
                                 "'jobs/{task_id}'")
            return GenericWatch(task_topic, reply_topic, worker_field)
        raise ValueError(f"--profile {profile!r}: choose aethermagic or generic")
    except ValueError as exc:
        raise Abort(str(exc)) from None


@dataclass(frozen=True)
class Recording:
    """``--record FILE`` and its roll-over (``--record-max-mb``, ``--record-keep``)."""

    path: Path | None
    rollover: Rollover


@dataclass(frozen=True)
class Metrics:
    """``--metrics-port``, ``--metrics-host``, ``--metrics-max-workers``."""

    host: str
    port: int
    max_workers: int


def _rollover(record: Path | None, max_mb: float | None, keep: int | None) -> Rollover:
    if max_mb is None:
        if keep is not None:
            raise Abort("--record-keep needs --record-max-mb MB (files are kept when the "
                        "recording rolls over)")
        return Rollover()
    if record is None:
        raise Abort("--record-max-mb needs --record FILE")
    return Rollover(max_bytes=max(1, round(max_mb * 1_000_000)),
                    keep=keep if keep is not None else 5)


def _watch(plan: WatchPlan, watched: Watched, limits: Limits, recording: Recording,
           metrics: Metrics | None, *, quiet: bool, fmt: render.Format, output: Path | None,
           max_imbalance: float) -> tuple[Summary, Report]:
    """A live watch: the recorder and the metrics endpoint up before anything connects (a
    usage error when they cannot be), both ended before the report; the summary and report."""
    from ..watch.observe import observe

    tracker = Tracker(limits)
    target = plan.target.display()
    with _recorder(recording, watched, target) as recorder, _sighup_reopens(recorder), \
            _metrics(metrics, tracker) as server, live_view.live(not quiet, TITLE) as update:

        def tick(now: float) -> None:
            update(tracker.snapshot(now))
            if server is not None and metrics is not None:
                server.publish(tracker.totals(now, metrics.max_workers))
            if recorder is not None:  # a killed watch leaves all but the last tick
                if recorder.reopen_requested:
                    recorder.reopen(now)
                recorder.flush()

        try:
            outcome = observe(
                plan, watched, tracker,
                on_event=recorder.write if recorder is not None else None, on_tick=tick)
        except BrokerUnreachable as exc:
            failure = Abort(str(exc), ExitCode.UNREACHABLE)
            common.emit_failure(TITLE, target, failure, fmt, output)
            raise failure from None
        if recorder is not None:
            recorder.close(outcome.elapsed, f"lost: {outcome.lost}" if outcome.lost
                           else outcome.ended)
    summary = tracker.summary(outcome.elapsed)
    report = judge(summary, target=target, ended=outcome.ended, max_imbalance=max_imbalance,
                   lost=outcome.lost, filters=watched.filters())
    if recorder is not None and recorder.failed is not None:
        report = common.not_recorded(report, f"--record {recording.path}: {recorder.failed}")
    return summary, report


@contextlib.contextmanager
def _recorder(recording: Recording, watched: Watched, target: str
              ) -> Iterator[RecordFile | None]:
    """``--record FILE`` opened before anything connects (a usage error when it cannot be)."""
    path = recording.path
    if path is None:
        yield None
        return

    def stopped(why: str) -> None:
        render.warning(f"--record {path}: {why}: recording stopped; the watch goes on")

    try:
        recorder = RecordFile(path, {
            "profile": watched.profile, "filters": list(watched.filters()), "target": target,
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
            recording.rollover, on_error=stopped)
    except OSError as exc:
        raise Abort(f"--record {path}: {exc.strerror or exc}") from None
    try:
        yield recorder
    finally:
        recorder.release()


@contextlib.contextmanager
def _sighup_reopens(recorder: RecordFile | None) -> Iterator[None]:
    """With ``--record``, SIGHUP reopens the file (logrotate) instead of ending the watch
    like Ctrl-C: the handler only sets a flag, the watch thread reopens at its next tick."""
    signum = getattr(signal, "SIGHUP", None)  # not on Windows
    if (recorder is None or signum is None
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def reopen(_signum: int, _frame: FrameType | None) -> None:
        recorder.reopen_requested = True

    previous = signal.signal(signum, reopen)
    try:
        yield
    finally:
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _metrics(metrics: Metrics | None, tracker: Tracker) -> Iterator[MetricsServer | None]:
    """``--metrics-port``: the endpoint, listening before anything connects (exit 2 when it
    cannot), with the tracker's counts from the start; closed when the watch ends."""
    if metrics is None:
        yield None
        return
    from ..watch.metrics import MetricsServer

    try:
        server = MetricsServer(metrics.host, metrics.port)
    except OSError as exc:
        raise Abort(f"--metrics-port {metrics.port}: cannot listen on {metrics.host}: "
                    f"{exc.strerror or exc}") from None
    try:
        server.publish(tracker.totals(0.0, metrics.max_workers))
        print(f"aetherdiag watch: metrics on {server.url}", file=sys.stderr, flush=True)
        yield server
    finally:
        server.close()


def _from_recording(path: Path, limits: Limits, max_imbalance: float
                    ) -> tuple[Report, Summary, Header]:
    """Replay a recording through a tracker: the same report the watch would have given
    (its end line says how it ended; without one it was cut off: incomplete). Also the
    summary and the recording's header (what the recorded watch subscribed to)."""
    tracker = Tracker(limits)
    end: Ended | None = None
    header = Header(profile="", filters=(), target="")
    try:
        for item in read(path):
            if isinstance(item, Header):
                header = item
            elif isinstance(item, Ended):
                end = item
            else:
                end = None  # an event after an end line: the end was not the end
                tracker.tick(item.at)
                tracker.observe(item)
    except RecordError as exc:
        raise Abort(str(exc)) from None
    except OSError as exc:
        raise Abort(f"--input {path}: {exc.strerror or exc}") from None
    at = tracker.now if end is None else max(end.at, tracker.now)
    tracker.tick(at)
    how: EndedHow = "input"
    lost = ""
    if end is None:
        how = "cut"
    elif end.reason == "interrupted":
        how = "interrupted"
    elif end.reason.startswith("lost"):  # written as "lost: WHY"
        how, lost = "lost", end.reason.removeprefix("lost").lstrip(": ") or "lost"
    summary = tracker.summary(at)
    return judge(summary, target=f"recording {path}", ended=how, max_imbalance=max_imbalance,
                 lost=lost, filters=header.filters, recording=str(path)), summary, header
