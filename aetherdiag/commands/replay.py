"""``aetherdiag replay FILE...``: run scenario files, report each, exit with the worst code.

``--broker URL`` may be repeated: each URL is a node, node 1 first, and a scenario's workers
with ``node: N`` connect to the Nth (one ``--broker`` is one broker, as always). Whether the
endpoints fit each file (enough nodes; no ``node_down``/``node_up``, which need the embedded
emulator's cluster) is checked for every file before anything connects.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from .. import render
from ..exitcodes import Abort, DiagError, ExitCode, UsageError
from ..harness.model import BrokerTarget
from ..harness.negotiate import Negotiated
from ..mqtt.protocol import Protocol, parse_protocol
from ..render.replay import render_outcomes
from ..replay import run_scenario
from ..replay.outcome import ReplayOutcome, build_outcome, failed_outcome, worst_exit_code
from ..scenario import Scenario, ScenarioError, load_scenario
from ..scenario import model as sm
from . import common

EPILOG = """Examples:

  aetherdiag replay scenarios/problem-task.yaml
  aetherdiag replay scenarios/seed-bug-fanout.yaml    # the seed bug: exit 1
  aetherdiag replay --check-expect scenarios/*.yaml   # CI: exit 0 or 6
  aetherdiag replay scenarios/plain-by-mistake.yaml -b mqtt://localhost
  aetherdiag replay mine-2-nodes.yaml -b mqtt://node1 -b mqtt://node2
  aetherdiag replay - < mine.yaml                     # a scenario on stdin

Every file is validated before anything connects (errors: file:line:column, exit 2).

Exit codes: 0 healthy, 1 duplicates, 2 usage, 3 broker unreachable, 4 missing, 5 imbalance;
with several files the lowest non-zero code wins. With --check-expect: 0 when every file's
`expect` block holds, 6 when one does not (3 when a broker is unreachable).
"""


BROKERS_OPTION: Any = typer.Option(
    [], "--broker", "-b", metavar="URL",
    help="The broker: mqtt://, mqtts://, ws:// or wss:// (see Broker URLs below). Repeat it "
    "for the nodes of a cluster or bridged brokers (node 1 first): workers with node: N "
    "connect to the Nth. Default: each file's own target.")


def command(
    files: list[Path] = typer.Argument(..., metavar="FILE", show_default=False,
                                       help="Scenario YAML files (see "
                                       "docs/scenario-format.md); - reads one from stdin."),
    broker: list[str] = BROKERS_OPTION,
    mqtt: str | None = common.mqtt_option(
        "Override the files' protocol for every client, pinned (without it, a --broker that "
        "refuses 5 gets the run in 3.1.1)"),
    ca_file: Path | None = common.CA_FILE_OPTION,
    cert_file: Path | None = common.CERT_FILE_OPTION,
    key_file: Path | None = common.KEY_FILE_OPTION,
    insecure: bool = common.INSECURE_OPTION,
    password_env: str = common.PASSWORD_ENV_OPTION,
    check_expect: bool = typer.Option(
        False, "--check-expect",
        help="Exit 0 when every file's expect block holds, 6 otherwise (instead of the "
        "runs' verdicts)."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, max=86_400, callback=common.finite,
        help="Upper bound in seconds on each scenario run (steps after it are skipped). "
        "Each settle is also bounded by the file's timeout."),
    connect_timeout: float = typer.Option(5.0, "--connect-timeout", min=0.1, max=600,
                                          callback=common.finite,
                                          help="Seconds to wait for the broker."),
    seed: int | None = typer.Option(None, "--seed",
                                    help="Seed for work-time jitter (default: per scenario)."),
    fmt: render.Format = typer.Option(render.Format.table, "--format",
                                      help="table, json (one object, or a list for several "
                                      "files), junit (one testsuite per file), html (one "
                                      "page, a section per file) or markdown."),
    output: Path | None = common.OUTPUT_OPTION,
    quiet: bool = typer.Option(False, "--quiet",
                               help="No progress bar; with --format table, no report either."),
    debug: bool = common.DEBUG_OPTION,
) -> None:
    """Run scenario files (workers, steps such as drop/reconnect, expectations) and report
    each like `workers` does, with a timeline of what every step caused."""
    tls = common.TargetOptions(ca_file, cert_file, key_file, insecure, password_env)
    code = _replay(files, broker, mqtt, tls, check_expect, timeout, connect_timeout, seed, fmt,
                   output, quiet)
    raise typer.Exit(int(code))


def _replay(files: list[Path], broker: list[str], mqtt: str | None, tls: common.TargetOptions,
            check_expect: bool, timeout: float | None, connect_timeout: float,
            seed: int | None, fmt: render.Format, output: Path | None,
            quiet: bool) -> ExitCode:
    protocol = parse_protocol(mqtt) if mqtt is not None else None  # checked by the callback
    scenarios = _load_all(files)
    targets = _targets(scenarios, broker, protocol, tls)
    common.check_output(output)
    outcomes: list[ReplayOutcome] = []
    unreachable: dict[str, str] = {}  # target -> error, so one dead broker costs one timeout
    interrupted = False
    for sc, endpoints in zip(scenarios, targets, strict=True):
        if interrupted:
            outcomes.append(failed_outcome(sc, "not run: interrupted", ExitCode.INTERRUPTED,
                                           check_expect=check_expect))
            continue
        key = ", ".join(t.display() for t in endpoints)
        if key in unreachable:
            message = f"{unreachable[key]} (not tried again)"
            render.error(f"{sc.path}: {message}")
            outcomes.append(failed_outcome(sc, message, ExitCode.UNREACHABLE,
                                           check_expect=check_expect))
            continue
        try:
            with render.progress(len(sc.tasks), sc.name, enabled=not quiet) as update:
                run = run_scenario(sc, endpoints[0] if len(endpoints) == 1 else None,
                                   targets=endpoints if len(endpoints) > 1 else (),
                                   protocol=protocol, timeout_s=timeout,
                                   connect_timeout_s=connect_timeout, seed=seed,
                                   on_progress=update, on_fallback=_fallback_warning(sc))
            outcomes.append(build_outcome(run, check_expect=check_expect))
            interrupted = run.result.interrupted
        except DiagError as exc:  # the broker lost (3), a fleet failure (8) ...
            code = exc.exit_code
            render.error(f"{sc.path}: {exc}")
            if code == ExitCode.UNREACHABLE and endpoints:
                unreachable[key] = str(exc)
            outcomes.append(failed_outcome(sc, str(exc), code, check_expect=check_expect))
    common.emit(lambda stream: render_outcomes(outcomes, fmt, stream), fmt, output, quiet)
    if interrupted:
        render.interrupted()
        return ExitCode.INTERRUPTED
    return worst_exit_code(o.exit_code for o in outcomes)


def _fallback_warning(scenario: Scenario) -> Callable[[Negotiated], None]:
    """The one stderr line of a file whose broker refused MQTT 5.0 (the run uses 3.1.1)."""
    def warn(found: Negotiated) -> None:
        render.warning(f"{scenario.path}: {found.message()}")

    return warn


def _load_all(files: list[Path]) -> list[Scenario]:
    """Every file validated before anything connects; each bad file is one stderr line."""
    scenarios: list[Scenario] = []
    errors: list[str] = []
    for path in files:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as exc:
            errors.append(str(exc))
    if errors:  # compiler-style lines an editor can jump to; nothing was run
        for line in errors:
            print(line, file=sys.stderr)
        raise typer.Exit(int(ExitCode.USAGE))
    return scenarios


def _targets(scenarios: list[Scenario], broker: list[str], protocol: Protocol | None,
             tls: common.TargetOptions) -> list[tuple[BrokerTarget, ...]]:
    """Where each file runs: the ``--broker`` endpoints, else its own ``broker:`` URL, else
    the emulator (no endpoint). Usage errors (exit 2) when the endpoints do not fit a file."""
    if broker:
        given = tuple(tls.target(url, protocol or "5") for url in broker)
        for sc in scenarios:
            _fits(sc, len(given), "--broker")
        return [given] * len(scenarios)
    if not any(sc.broker_url for sc in scenarios):
        tls.refuse_tls("--broker mqtts://... (or a file whose target is a broker)")
    out: list[tuple[BrokerTarget, ...]] = []
    for sc in scenarios:
        if sc.broker_url is None:
            out.append(())
            continue
        try:
            out.append((tls.target(sc.broker_url, protocol or sc.protocol),))
        except UsageError as exc:
            raise Abort(f"{sc.path}: target {exc}", ExitCode.USAGE) from None
        _fits(sc, 1, "its broker: URL")
    return out


def _fits(sc: Scenario, endpoints: int, given: str) -> None:
    """A real broker: enough endpoints for the file's nodes, and no node steps."""
    steps = [s for s in sc.steps if isinstance(s, sm.NodeDown | sm.NodeUp)]
    if steps:
        raise Abort(f"{sc.path}: {steps[0].label}: {steps[0].kind} needs the embedded "
                    "emulator's cluster, not a real broker", ExitCode.USAGE)
    if sc.nodes_used > endpoints:
        raise Abort(f"{sc.path}: the scenario puts clients on node {sc.nodes_used} but "
                    f"{given} gives {endpoints} endpoint(s); give one --broker per node, "
                    "node 1 first", ExitCode.USAGE)


__all__ = ["EPILOG", "command"]
