"""``aetherdiag emulator``: run the embedded broker emulator on its own.

``serve`` stops on SIGINT, SIGTERM or SIGHUP and then prints its exit summary (``stopped: ...``)
on stderr. ``--exit-on-stdin-eof`` and ``--parent-pid`` make it end with the process that
started it; ``--machine`` puts JSON lines on stdout (``emulator/announce.py``) and the human
lines on stderr. ``harness/embedded.py`` passes all three to the child it starts for large runs.
"""

from __future__ import annotations

import typer

from ..emulator import FAULTS, STRATEGIES, Broker
from ..emulator.sharing import UnknownName
from ..exitcodes import Abort, ExitCode

app = typer.Typer(help="Run the embedded MQTT broker emulator.", no_args_is_help=True)

MAX_NODES = 64  # an emulated cluster's nodes (each a listener of one process)
_FAULT_HELP = "; ".join(f"{k}: {v}" for k, v in FAULTS.items())
_STRATEGY_HELP = "; ".join(f"{k}: {v}" for k, v in STRATEGIES.items())


def parse_group_strategies(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        group, sep, strategy = value.partition("=")
        if not sep or not group or not strategy:
            raise Abort(f"--group-strategy {value!r}: expected GROUP=STRATEGY", ExitCode.USAGE)
        bad = [ch for ch in "/+#" if ch in group]
        if bad:  # a share name is one topic level without wildcards [MQTT-4.8.2-2]
            raise Abort(f"--group-strategy {value!r}: a share group name has no '/', '+' or "
                        f"'#' (found {bad[0]!r}), so {group!r} can never match a group",
                        ExitCode.USAGE)
        if group in out and out[group] != strategy:
            raise Abort(f"--group-strategy {value!r}: group {group!r} already has strategy "
                        f"{out[group]!r}", ExitCode.USAGE)
        out[group] = strategy
    return out


@app.command(
    epilog="Examples:\n\n"
    "  aetherdiag emulator serve --port 0\n\n"
    "  aetherdiag emulator serve --port 1884 --strategy least_inflight\n\n"
    "  aetherdiag emulator serve --fault share-fanout --fault redeliver\n\n"
    "  aetherdiag emulator serve --nodes 3 --port 1883 --strategy local",
)
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told)."),
    port: int = typer.Option(
        1883, help="TCP port (node 1's: node N listens on PORT+N-1); 0 picks free ones.",
        min=0, max=65535,
    ),
    nodes: int = typer.Option(
        1, "--nodes",
        help="Emulate a cluster of N nodes, one listener each, with one routing state: a "
        "share group has one member chosen cluster-wide (see the cluster-* faults).",
    ),
    strategy: str = typer.Option(
        "round_robin", "--strategy", "-s",
        help=f"How a share group picks a member. {_STRATEGY_HELP}.",
    ),
    group_strategy: list[str] = typer.Option(
        [], "--group-strategy", help="Per-group strategy, GROUP=STRATEGY (repeatable)."
    ),
    fault: list[str] = typer.Option(
        [], "--fault", "-f", help=f"Misbehave on purpose (repeatable). {_FAULT_HELP}."
    ),
    seed: int | None = typer.Option(None, help="Seed for the random and sticky strategies."),
    exit_on_stdin_eof: bool = typer.Option(
        False, "--exit-on-stdin-eof",
        help="Also stop when standard input reaches end of file (what is read is ignored), "
        "e.g. when the process that feeds it a pipe exits.",
    ),
    parent_pid: int | None = typer.Option(
        None, "--parent-pid", min=1, hidden=True,
        help="Stop when process PID is no longer this process's parent (PR_SET_PDEATHSIG "
        "on Linux, plus a check every half second). Used by the workers harness.",
    ),
    machine: bool = typer.Option(
        False, "--machine",
        help='For programs: stdout carries one JSON object per line, '
        '{"event": "listening", "host": ..., "port": ...} once bound and '
        '{"event": "stopped", "stats": {...}} at exit; the human lines go to stderr.',
    ),
) -> None:
    """Serve MQTT 3.1.1 and 5.0 on HOST:PORT until Ctrl-C (or SIGTERM, SIGHUP)."""
    from ..emulator.standalone import die_with_parent, serve_until_stopped

    if not 1 <= nodes <= MAX_NODES:
        raise Abort(f"--nodes {nodes}: expected 1 to {MAX_NODES}", ExitCode.USAGE)
    if not host.strip():  # asyncio binds every interface for an empty host: never by accident
        raise Abort("--host '': give an address (127.0.0.1 for loopback, 0.0.0.0 for every "
                    "interface)", ExitCode.USAGE)
    if port and port + nodes - 1 > 65535:
        raise Abort(f"--port {port} --nodes {nodes}: node {nodes} would need port "
                    f"{port + nodes - 1}, above 65535", ExitCode.USAGE)
    if parent_pid is not None and not die_with_parent(parent_pid):
        raise Abort(f"parent process {parent_pid} is gone", ExitCode.UNREACHABLE)
    try:
        broker = Broker(
            strategy=strategy, group_strategies=parse_group_strategies(group_strategy),
            faults=fault, seed=seed, nodes=nodes,
        )
    except UnknownName as exc:
        raise Abort(str(exc), ExitCode.USAGE) from None
    try:
        serve_until_stopped(broker, host, port, exit_on_stdin_eof=exit_on_stdin_eof,
                            parent_pid=parent_pid, machine=machine)
    except OSError as exc:
        reason = exc.strerror or exc
        where = f"{host}:{port}" if nodes == 1 or not port else \
            f"{host}:{port}..{port + nodes - 1}"
        raise Abort(f"cannot listen on {where}: {reason}", ExitCode.USAGE) from None
