"""The emulator as a process of its own (``aetherdiag emulator serve``): one asyncio loop
serving until SIGINT, SIGTERM or SIGHUP, stdin end of file (``--exit-on-stdin-eof``) or the
death of the process that started it (``--parent-pid``); the address and final stats as
human lines and, with ``--machine``, as JSON lines (``announce``). An emulated cluster
(``--nodes N``) prints every node's URL; ``--ws-port`` adds a WebSocket listener (per node), whose
URL follows the MQTT one; with ``--machine --exit-on-stdin-eof`` the stdin lines
may carry node commands (``announce.NodeCommand``: take a node down, bring it up), each
answered by a ``node`` line once done. Imported only by ``serve``, so the CLI starts without
asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

from ..mqtt.urls import host_for_url
from . import announce
from .broker import Broker
from .server import EmulatorServer


def serve_until_stopped(broker: Broker, host: str, port: int, *, exit_on_stdin_eof: bool = False,
                        parent_pid: int | None = None, machine: bool = False,
                        ws_port: int | None = None) -> None:
    """Serve ``broker`` on ``host:port`` (and MQTT over WebSocket on ``ws_port``) until told
    to stop; ``OSError`` if it cannot listen."""
    asyncio.run(_serve(broker, host, port, exit_on_stdin_eof, parent_pid, machine, ws_port))


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


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                 obey: Callable[[announce.Command], None] | None = None) -> None:
    """Set ``stop`` when stdin reaches end of file (read on a daemon thread: any platform,
    any kind of stdin); with ``obey``, each node command line read is handed to it on the
    loop (anything else read is ignored)."""

    def run() -> None:
        pending = b""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = sys.stdin.fileno()
            while chunk := os.read(fd, 65536):
                if obey is None:
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                pending = pending[-65536:]  # a runaway line stays bounded
                for line in lines:
                    command = announce.load_command(line.decode("utf-8", "replace"))
                    if command is not None:
                        loop.call_soon_threadsafe(obey, command)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=run, name="aetherdiag-stdin-eof", daemon=True).start()


def _obeyer(server: EmulatorServer) -> Callable[[announce.Command], None]:
    """Carry out a command on the loop, then say so on stdout: a node command (a bad node:
    one line on stderr and no answer), or a backlog query (answered at once)."""

    async def change(command: announce.Command) -> None:
        if isinstance(command, announce.BacklogQuery):
            with contextlib.suppress(OSError):
                print(announce.dump(announce.Backlog(id=command.id,
                                                     messages=server.backlog())), flush=True)
            return
        try:
            if command.up:
                await server.node_up(command.node)
            else:
                server.node_down(command.node)
        except (ValueError, OSError) as exc:
            print(f"node command refused: {exc}", file=sys.stderr, flush=True)
            return
        with contextlib.suppress(OSError):
            print(announce.dump(announce.NodeChanged(node=command.node, up=command.up)),
                  flush=True)

    running: set[asyncio.Task[None]] = set()

    def obey(command: announce.Command) -> None:
        task = asyncio.ensure_future(change(command))
        running.add(task)
        task.add_done_callback(running.discard)

    return obey


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once ``parent_pid`` is no longer our parent (where PDEATHSIG is missing)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    stop.set()


async def _serve(
    broker: Broker, host: str, port: int, exit_on_stdin_eof: bool = False,
    parent_pid: int | None = None, machine: bool = False, ws_port: int | None = None,
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
    bound_host, bound_port = await server.start(host, port, ws_port)
    if exit_on_stdin_eof:
        _watch_stdin(loop, stop, _obeyer(server) if machine else None)
    watcher = None if parent_pid is None else asyncio.create_task(_watch_parent(parent_pid, stop))
    faults = ",".join(sorted(broker.faults)) or "none"
    if machine:
        print(announce.dump(announce.Listening(host=bound_host, port=bound_port,
                                               ports=tuple(server.ports),
                                               ws_ports=tuple(server.ws_ports))), flush=True)
    human = sys.stderr if machine else sys.stdout
    urls = [f"mqtt://{host_for_url(bound_host)}:{p}" for p in server.ports]
    ws_urls = [f"ws://{host_for_url(bound_host)}:{p}/mqtt" for p in server.ws_ports]
    also = f" and {ws_urls[0]}" if ws_urls else ""
    print(
        f"aetherdiag emulator listening on {urls[0]}{also} "
        f"(strategy {broker.strategy}, faults {faults}"
        f"{f', {len(urls)} nodes' if len(urls) > 1 else ''}); Ctrl-C stops it",
        file=human, flush=True,
    )
    if len(urls) > 1:
        for node, url in enumerate(urls, 1):
            ws = f" and {ws_urls[node - 1]}" if ws_urls else ""
            print(f"  node {node}: {url}{ws}", file=human, flush=True)
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
        f"{s.total_dropped} dropped"
        + (" (" + ", ".join(f"{n} {reason}" for reason, n in s.dropped.most_common()) + ")"
           if s.total_dropped else ""),
        file=sys.stderr, flush=True,
    )
