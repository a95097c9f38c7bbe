"""``aetherdiag probe``: what does this broker really do with shared subscriptions?

Parses options, starts the embedded emulator when no ``--broker`` is given, runs
``probe.run_probe`` and hands the report to ``render.probe``. Exit code: 0 when shared
subscriptions deliver each message to exactly one member, 1 when they do not, 2 usage,
3 unreachable, or the broker refused the probe's own subscriptions or publishes (an ACL: the
report says so and a one-line hint on stderr offers ``--topic-prefix``).

``--output`` is checked (and truncated) before anything runs, so a bad path costs no run and
no earlier report survives there; a probe that fails (usage error after that point,
unreachable broker) still writes its JSON/JUnit document with the error and the exit code, to
``--output`` or, for json/junit, to stdout.

Several endpoints (``--broker`` repeated, node 1 first, or ``--nodes N``: the embedded emulator
as an N-node cluster) add the cross-node checks (``probe/cluster.py``); every other check runs
on node 1.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import typer

from .. import render
from ..emulator import FAULTS, STRATEGIES
from ..emulator.sharing import check_fault, check_strategy
from ..exitcodes import Abort, DiagError, ExitCode
from ..harness.model import BrokerTarget, EmulatorSettings
from ..harness.run import OpenBroker, open_broker
from ..probe import ProbeOptions, ProbeReport, run_probe
from ..probe.context import DEFAULT_PREFIX, check_topic_prefix
from ..probe.model import TOPIC_PREFIX_HINT
from ..render import Format
from ..render import probe as render_probe
from . import common

EPILOG = """Examples:

  aetherdiag probe                           # the embedded emulator: a demo
  aetherdiag probe --fault share-fanout      # the seed bug: exit 1
  aetherdiag probe -b mqtt://localhost --format json -o probe.json
  aetherdiag probe -b mqtt://ci@broker --topic-prefix ci/aetherdiag   # ACLs
  aetherdiag probe -b mqtt://node1 -b mqtt://node2                # a cluster
  aetherdiag probe --nodes 2 --fault cluster-node-local      # like bridges

Exit codes: 0 each message reaches exactly one member, 1 it does not, 2 usage, 3 broker
unreachable or it refused the probe's own topics (try --topic-prefix).
"""

_STRATEGY_HELP = ("Embedded emulator dispatch strategy: " + ", ".join(STRATEGIES)
                  + " (see aetherdiag emulator serve --help).")
_FAULT_HELP = ("Embedded emulator fault mode (repeatable): " + ", ".join(FAULTS)
               + " (see aetherdiag emulator serve --help).")


BROKERS_OPTION: Any = typer.Option(
    [], "--broker", "-b", metavar="URL",
    help="The broker: mqtt://, mqtts://, ws:// or wss:// (see Broker URLs below). Repeat it "
    "for the nodes of a cluster or bridged brokers (node 1 first): the probe adds cross-node "
    "checks. Default: the embedded emulator on a free loopback port.")
NODES_OPTION: Any = typer.Option(
    None, "--nodes", metavar="N", min=1, max=16,
    help="Embedded emulator: an emulated cluster of N nodes (with --strategy local and the "
    "cluster faults); two or more add the cross-node checks.")


def command(
    broker: list[str] = BROKERS_OPTION,
    nodes: int | None = NODES_OPTION,
    strategy: str = typer.Option(
        "round_robin", "--strategy", "-s", metavar="STRATEGY",
        help=_STRATEGY_HELP),
    fault: list[str] = typer.Option(
        [], "--fault", "-f", metavar="FAULT",
        help=_FAULT_HELP),
    seed: int | None = typer.Option(None, "--seed",
                                    help="Seed for the emulator's random/sticky strategies."),
    ca_file: Path | None = common.CA_FILE_OPTION,
    cert_file: Path | None = common.CERT_FILE_OPTION,
    key_file: Path | None = common.KEY_FILE_OPTION,
    insecure: bool = common.INSECURE_OPTION,
    password_env: str | None = common.PASSWORD_ENV_OPTION,
    mqtt: str | None = common.mqtt_option(
        "Protocol for the strategy fingerprint and rule checks, pinned (default: 5, and 3.1.1 "
        "when the broker refuses 5; both versions are always tried for $share)"),
    messages: int = typer.Option(96, "--messages", min=30, max=2000,
                                 help="Messages in the strategy fingerprint run."),
    timeout: float = typer.Option(30.0, "--timeout", min=5.0, max=600.0, callback=common.finite,
                                  help="Upper bound in seconds on the whole probe."),
    topic_prefix: str = typer.Option(
        DEFAULT_PREFIX, "--topic-prefix", metavar="PREFIX",
        help="Topic tree for the probe's topics: PREFIX/{run id}/... (for brokers with ACLs: "
        "a tree this client may publish and subscribe to, $share included)."),
    fmt: Format = typer.Option(Format.table, "--format",
                               help="table, json, junit, html (one self-contained page) or "
                               "markdown."),
    output: Path | None = common.OUTPUT_OPTION,
    quiet: bool = typer.Option(False, "--quiet",
                               help="No spinner; with --format table, no report either."),
    debug: bool = common.DEBUG_OPTION,
) -> None:
    """Probe a broker's shared subscriptions: protocol support, $share behaviour, dispatch
    strategy, retained / No Local / in-flight rules. Safe on a shared broker (unique topics,
    cleans up)."""
    common.check_output(output)
    started = time.monotonic()
    where = {"target": "embedded emulator" if not broker else "-"}
    try:
        report = _probe(broker, nodes, strategy, fault, seed,
                        common.TargetOptions(ca_file, cert_file, key_file, insecure, password_env),
                        mqtt, messages, timeout, topic_prefix, quiet, where)
    except DiagError as exc:  # a broker unreachable (3), an unknown strategy (2) ...
        _emit_failure(where["target"], exc, fmt, output, time.monotonic() - started)
        raise
    if report.fallback:
        render.warning(f"{where['target']}: {report.fallback}")
    common.emit(lambda stream: render_probe.render(report, fmt, stream), fmt, output, quiet)
    if report.denied and report.exit_code is ExitCode.UNREACHABLE:
        render.hint(TOPIC_PREFIX_HINT)
    raise typer.Exit(int(report.exit_code))


def _emit_failure(target: str, exc: DiagError, fmt: Format, output: Path | None,
                  duration_s: float) -> None:
    """The report of a probe that could not run: to ``--output`` in its format, or to stdout
    for json/junit (a table on stdout is the error line alone)."""
    if output is None and fmt is Format.table:
        return
    with contextlib.suppress(Abort):  # the error line below is what matters then
        common.emit(lambda stream: render_probe.render_failure(target, str(exc), int(exc.code), fmt,
                                                        stream, duration_s),
             fmt, output, quiet=False)


def _probe(broker: list[str], nodes: int | None, strategy: str, fault: list[str],
           seed: int | None,
           tls: common.TargetOptions, mqtt: str | None, messages: int,
           timeout: float, topic_prefix: str, quiet: bool,
           where: dict[str, str]) -> ProbeReport:
    try:
        prefix = check_topic_prefix(topic_prefix)
    except ValueError as exc:
        raise Abort(f"--topic-prefix {topic_prefix!r}: {exc}") from None
    check_strategy(strategy)
    for name in fault:
        check_fault(name)
    if broker and (fault or strategy != "round_robin" or seed is not None or nodes is not None):
        raise Abort("--strategy, --fault, --seed and --nodes configure the embedded emulator; "
                    "they cannot be used with --broker (give one --broker per node instead)")
    if not broker:
        tls.refuse_tls()
    protocol = mqtt  # parsed by the option's callback
    options = ProbeOptions(timeout=timeout, messages=messages, protocol=protocol,
                           topic_prefix=prefix)
    with render_probe.status(enabled=not quiet) as update:
        if broker:
            targets = [tls.target(url, "5") for url in broker]
            where["target"] = ", ".join(t.display() for t in targets)
            return run_probe(targets[0], options, on_step=update,
                             label=where["target"], targets=_several(targets))
        settings = EmulatorSettings(strategy=strategy, faults=tuple(fault), seed=seed,
                                    nodes=nodes or 1)
        with open_broker(None, settings, mode="thread") as embedded:
            label = _label(embedded, strategy, fault)
            where["target"] = label
            return run_probe(embedded.target, options, label=label, on_step=update,
                             targets=_several(list(embedded.targets)))


def _several(targets: list[BrokerTarget]) -> list[BrokerTarget]:
    """The endpoints for ``run_probe(targets=...)``: none unless there are two or more."""
    return targets if len(targets) > 1 else []


def _label(broker: OpenBroker, strategy: str, faults: list[str]) -> str:
    """``embedded emulator mqtt://127.0.0.1:PORT (strategy=round_robin)`` for the report; an
    emulated cluster lists its nodes' endpoints."""
    detail = f"strategy={strategy}" + (f", faults={','.join(faults)}" if faults else "")
    where = ", ".join(f"mqtt://{t.host}:{t.port}" for t in broker.targets or (broker.target,))
    if broker.nodes > 1:
        detail = f"{broker.nodes} nodes, {detail}"
    return f"embedded emulator {where} ({detail})"


__all__ = ["EPILOG", "command"]
