"""The emulator as a process of its own (``aetherdiag emulator serve``): one asyncio loop
serving until SIGINT, SIGTERM or SIGHUP, stdin end of file (``--exit-on-stdin-eof``) or the
death of the process that started it (``--parent-pid``); the address and final stats as
human lines and, with ``--machine``, as JSON lines (``announce``). Imported only by ``serve``,
so the CLI starts without asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading

from ..mqtt.urls import host_for_url
from . import announce
from .broker import Broker
from .server import EmulatorServer


def serve_until_stopped(broker: Broker, host: str, port: int, *, exit_on_stdin_eof: bool = False,
                        parent_pid: int | None = None, machine: bool = False) -> None:
    """Serve ``broker`` on ``host:port`` until told to stop; ``OSError`` if it cannot listen."""
    asyncio.run(_serve(broker, host, port, exit_on_stdin_eof, parent_pid, machine))


def die_with_parent(parent_pid: int) -> bool:
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
