"""``aetherdiag emulator``: run the embedded broker emulator on its own.

``serve`` stops on SIGINT, SIGTERM or SIGHUP and then prints its exit summary (``stopped: ...``)
on stderr. ``--exit-on-stdin-eof`` and ``--parent-pid`` make it end with the process that
started it; ``--machine`` puts JSON lines on stdout (``emulator/announce.py``) and the human
lines on stderr. ``harness/embedded.py`` passes all three to the child it starts for large runs.
"""

from __future__ import annotations

import textwrap

import typer

from ..emulator import FAULTS, STRATEGIES, Broker, Limits
from ..exitcodes import Abort, ExitCode
from ..workers.options import parse_group_strategies

app = typer.Typer(help="Run the embedded MQTT broker emulator.", no_args_is_help=True)

MAX_NODES = 64  # an emulated cluster's nodes (each a listener of one process)


def _listing(title: str, entries: dict[str, str]) -> str:
    """``title`` and each entry's name on a line of its own with its text below, wrapped for an
    80-column help (the epilog keeps these lines as they are)."""
    lines = [title, ""]
    for name, text in entries.items():
        lines.append(f"  {name}")
        lines += textwrap.wrap(text, 72, initial_indent="      ",
                               subsequent_indent="      ", break_on_hyphens=False)
    return "\n".join(lines)


SERVE_EPILOG = f"""Examples:

  aetherdiag emulator serve --port 0
  aetherdiag emulator serve --port 1884 --strategy least_inflight
  aetherdiag emulator serve --fault share-fanout --fault redeliver
  aetherdiag emulator serve --nodes 3 --port 1883 --strategy local
  aetherdiag emulator serve --port 1883 --ws-port 8080

Clients connect to mqtt://HOST:PORT (node N: PORT+N-1) and, with --ws-port, to
ws://HOST:WS_PORT (any path). Ctrl-C, SIGTERM or SIGHUP stops it.

{_listing("Strategies (--strategy, --group-strategy GROUP=STRATEGY):", STRATEGIES)}

{_listing("Faults (--fault, repeatable; all off by default):", FAULTS)}
"""


def check_deny_filters(values: list[str]) -> tuple[str, ...]:
    """``--deny-subscribe`` values, each a valid topic filter (else a usage error)."""
    from ..emulator.topics import InvalidFilter, parse_filter

    for value in values:
        try:
            parse_filter(value)
        except InvalidFilter as exc:
            raise Abort(f"--deny-subscribe {value!r}: {exc}", ExitCode.USAGE) from None
    return tuple(values)


def check_ws_port(port: int, ws_port: int | None, nodes: int) -> None:
    """``--ws-port``: in range, and no port of it shared with the MQTT listeners'."""
    if ws_port is None:
        return
    if not 0 <= ws_port <= 65535:
        raise Abort(f"--ws-port {ws_port}: expected 0 to 65535", ExitCode.USAGE)
    if ws_port and ws_port + nodes - 1 > 65535:
        raise Abort(f"--ws-port {ws_port} --nodes {nodes}: node {nodes} would need port "
                    f"{ws_port + nodes - 1}, above 65535", ExitCode.USAGE)
    if ws_port and port and ws_port == port:
        raise Abort(f"--ws-port {ws_port}: the same port as --port; give the WebSocket "
                    "listener a port of its own", ExitCode.USAGE)
    if ws_port and port and abs(ws_port - port) < nodes:
        raise Abort(f"--ws-port {ws_port} --nodes {nodes}: the WebSocket ports "
                    f"{ws_port}..{ws_port + nodes - 1} overlap the MQTT ports "
                    f"{port}..{port + nodes - 1}", ExitCode.USAGE)


@app.command(epilog=SERVE_EPILOG)
def serve(
    host: str = typer.Option("127.0.0.1", metavar="HOST",
                             help="Address to bind (loopback unless told)."),
    port: int = typer.Option(
        1883, metavar="PORT",
        help="TCP port (node 1's: node N listens on PORT+N-1); 0 picks free ones.",
        min=0, max=65535,
    ),
    ws_port: int | None = typer.Option(
        None, "--ws-port", metavar="WS_PORT",
        help="Also serve MQTT over WebSocket (subprotocol mqtt, any path) on this TCP port "
        "(node N's: WS_PORT+N-1); 0 picks free ones.",
    ),
    nodes: int = typer.Option(
        1, "--nodes", metavar="N",
        help="Emulate a cluster of N nodes, one listener each, with one routing state: a "
        "share group has one member chosen cluster-wide (see the cluster-* faults).",
    ),
    strategy: str = typer.Option(
        "round_robin", "--strategy", "-s", metavar="STRATEGY",
        help="How a share group picks a member: one of the strategies below.",
    ),
    group_strategy: list[str] = typer.Option(
        [], "--group-strategy", metavar="GROUP=STRATEGY",
        help="Per-group strategy, GROUP=STRATEGY (repeatable)."
    ),
    fault: list[str] = typer.Option(
        [], "--fault", "-f", metavar="FAULT",
        help="Misbehave on purpose (repeatable): one of the faults below."
    ),
    seed: int | None = typer.Option(None, help="Seed for the random and sticky strategies."),
    receive_maximum: int = typer.Option(
        65535, "--receive-maximum", min=1, max=65535,
        help="Receive Maximum the v5 CONNACK advertises (65535: not advertised); a client "
        "with more unacknowledged QoS 2 PUBLISHes gets DISCONNECT 0x93.",
    ),
    topic_aliases: bool = typer.Option(
        False, "--topic-aliases",
        help="Send v5 clients that allow them (Topic Alias Maximum > 0) topic aliases "
        "instead of repeating topics.",
    ),
    server_keep_alive: int | None = typer.Option(
        None, "--server-keep-alive", metavar="SECONDS", min=0, max=65535,
        help="Server Keep Alive in the v5 CONNACK: replaces the keep-alive v5 clients ask for.",
    ),
    deny_subscribe: list[str] = typer.Option(
        [], "--deny-subscribe", metavar="FILTER",
        help="Refuse subscriptions this filter covers with SUBACK 0x87 (0x80 in 3.1.1), as "
        "an ACL would; for $share/G/F the F part is checked (repeatable).",
    ),
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
    check_ws_port(port, ws_port, nodes)
    if parent_pid is not None and not die_with_parent(parent_pid):
        raise Abort(f"parent process {parent_pid} is gone", ExitCode.UNREACHABLE)
    broker = Broker(
        strategy=strategy, group_strategies=parse_group_strategies(group_strategy),
        faults=fault, seed=seed, nodes=nodes,
        limits=Limits(receive_maximum=receive_maximum, topic_aliases=topic_aliases,
                      server_keep_alive=server_keep_alive,
                      deny_subscribe=check_deny_filters(deny_subscribe)),
    )
    try:
        serve_until_stopped(broker, host, port, exit_on_stdin_eof=exit_on_stdin_eof,
                            parent_pid=parent_pid, machine=machine, ws_port=ws_port)
    except OSError as exc:
        reason = exc.strerror or exc
        where = f"{host}:{port}" if nodes == 1 or not port else \
            f"{host}:{port}..{port + nodes - 1}"
        if ws_port is not None:
            where += f" (WebSocket: {ws_port}" + (
                f"..{ws_port + nodes - 1})" if nodes > 1 and ws_port else ")")
        raise Abort(f"cannot listen on {where}: {reason}", ExitCode.USAGE) from None
