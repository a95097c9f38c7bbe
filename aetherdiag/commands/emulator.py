"""``aetherdiag emulator``: run the embedded broker emulator on its own.

``serve`` stops on SIGINT, SIGTERM or SIGHUP and then prints its exit summary (``stopped: ...``)
on stderr. ``--exit-on-stdin-eof`` and ``--parent-pid`` make it end with the process that
started it; ``--machine`` puts JSON lines on stdout (``emulator/announce.py``) and the human
lines on stderr. ``harness/embedded.py`` passes all three to the child it starts for large runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading

import typer

from ..emulator import FAULTS, STRATEGIES, Broker, EmulatorServer, announce
from ..emulator.sharing import UnknownName
from ..exitcodes import Abort, ExitCode
from ..harness.target import host_for_url

app = typer.Typer(help="Run the embedded MQTT broker emulator.", no_args_is_help=True)

_FAULT_HELP = "; ".join(f"{k}: {v}" for k, v in FAULTS.items())
_STRATEGY_HELP = "; ".join(f"{k}: {v}" for k, v in STRATEGIES.items())


def parse_group_strategies(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        group, sep, strategy = value.partition("=")
        if not sep or not group or not strategy:
            raise Abort(f"--group-strategy {value!r}: expected GROUP=STRATEGY", ExitCode.USAGE)
        out[group] = strategy
    return out


@app.command(
    epilog="Examples:\n\n"
    "  aetherdiag emulator serve --port 0\n\n"
    "  aetherdiag emulator serve --port 1884 --strategy least_inflight\n\n"
    "  aetherdiag emulator serve --fault share-fanout --fault redeliver",
)
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told)."),
    port: int = typer.Option(1883, help="TCP port; 0 picks a free one.", min=0, max=65535),
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
    if parent_pid is not None and not _die_with_parent(parent_pid):
        raise Abort(f"parent process {parent_pid} is gone", ExitCode.UNREACHABLE)
    try:
        broker = Broker(
            strategy=strategy, group_strategies=parse_group_strategies(group_strategy),
            faults=fault, seed=seed,
        )
    except UnknownName as exc:
        raise Abort(str(exc), ExitCode.USAGE) from None
    try:
        asyncio.run(_serve(broker, host, port, exit_on_stdin_eof, parent_pid, machine))
    except OSError as exc:
        reason = exc.strerror or exc
        raise Abort(f"cannot listen on {host}:{port}: {reason}", ExitCode.USAGE) from None


def _die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGTERM when our parent dies (Linux); False if ``parent_pid`` is already gone.

    The check after prctl closes the race with a parent that died before it: then we have
    been reparented and getppid() no longer names it.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0))
    return os.getppid() == parent_pid


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches end of file (read on a daemon thread: any platform,
    any kind of stdin)."""

    def run() -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = sys.stdin.fileno()
            while os.read(fd, 65536):
                pass
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=run, name="aetherdiag-stdin-eof", daemon=True).start()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once ``parent_pid`` is no longer our parent (where PDEATHSIG is missing)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    stop.set()


async def _serve(
    broker: Broker, host: str, port: int, exit_on_stdin_eof: bool = False,
    parent_pid: int | None = None, machine: bool = False,
) -> None:
    server = EmulatorServer(broker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # before the address is printed: whoever reads it may signal us right away. Signals
    # ignored at start-up (nohup) stay ignored.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) != signal.SIG_IGN:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
    bound_host, bound_port = await server.start(host, port)
    if exit_on_stdin_eof:
        _watch_stdin(loop, stop)
    watcher = None if parent_pid is None else asyncio.create_task(_watch_parent(parent_pid, stop))
    faults = ",".join(sorted(broker.faults)) or "none"
    if machine:
        print(announce.dump(announce.Listening(host=bound_host, port=bound_port)), flush=True)
    print(
        f"aetherdiag emulator listening on mqtt://{host_for_url(bound_host)}:{bound_port} "
        f"(strategy {broker.strategy}, faults {faults}); Ctrl-C stops it",
        file=sys.stderr if machine else sys.stdout, flush=True,
    )
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await server.stop()
    s = broker.stats
    if machine:
        with contextlib.suppress(OSError):  # nobody reads it any more (the parent is gone)
            print(announce.dump(announce.Stopped(stats=s.as_dict())), flush=True)
    print(
        f"stopped: {s.messages_in} messages in, {s.deliveries} deliveries, "
        f"{s.total_dropped} dropped",
        file=sys.stderr, flush=True,
    )
