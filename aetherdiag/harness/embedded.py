"""Start the embedded broker emulator for one run: in a thread, or in its own process.

How this works: small runs start ``Emulator`` on a background thread of this process (a few
milliseconds, nothing to spawn), which keeps ``aetherdiag workers --count 3 --tasks 9`` well
inside its cold-start budget. Large runs start ``python -m aetherdiag emulator serve --port 0``
as a child process, so the broker and the fleet each get a core instead of sharing one GIL:
measured on two cores, 1,000 workers x 100,000 QoS 1 tasks took 29 s with the emulator on a
thread and 21 s with it in its own process (see benchmarks/README.md); spawning the child
costs about 0.5 s, which small runs cannot afford. The child runs with ``--machine``: its
stdout carries JSON lines (``emulator/announce.py``). The first names its port, and the wait
for it is bounded; the child is terminated with SIGTERM (then killed) on ``stop()``, and its
``stopped`` line becomes ``stats()``. Both modes give ``stats()`` one shape (``report_stats``).

An emulated cluster (``EmulatorSettings.nodes``) listens on one port per node in either mode
(``ports``, node 1 first); with ``transport="websocket"`` the target and ``ports`` are its
WebSocket listeners' (``ws://``; ``--ws-port 0`` for the child). ``node_down``/``node_up``
take a node off the network and back: a direct call in thread mode, a command line on the
child's stdin (answered on its stdout, waited for, bounded) in process mode.

The child never outlives this process, even when this process is killed with SIGKILL and no
``finally:`` runs: its stdin is a pipe from us and it stops when that pipe reaches end of file
(``--exit-on-stdin-eof``: the kernel closes our end whatever way we die), and when started
from the main thread it also asks the kernel for SIGTERM on our death (``--parent-pid``:
PR_SET_PDEATHSIG on Linux, then a getppid() check that closes the start-up race, then a
periodic check elsewhere). PR_SET_PDEATHSIG fires when the *thread* that started the child
ends, so it is only requested from the main thread, which lives as long as the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from ..emulator import announce
from ..mqtt import protocol as mqtt_protocol
from .clients import BrokerUnreachable
from .model import BrokerTarget, EmulatorSettings

if TYPE_CHECKING:
    from ..emulator import Emulator

Mode = Literal["auto", "thread", "process"]
Transport = Literal["tcp", "websocket"]  # how the run's clients reach the emulator

# "auto" picks a process at or above either threshold (see the module docstring)
PROCESS_MIN_CLIENTS = 500
PROCESS_MIN_MESSAGES = 20_000
START_TIMEOUT = 15.0


class EmulatorStartError(BrokerUnreachable):
    """The embedded emulator could not be started; the message says why (one line)."""


class EmbeddedBroker(Protocol):
    """What ``start_emulator`` returns next to the target."""

    @property
    def mode(self) -> Literal["thread", "process"]:
        """Where the emulator runs."""

    def stop(self) -> None:
        """Stop the emulator (bounded; safe to call twice)."""

    def stats(self) -> dict[str, object] | None:
        """The emulator's counters (``report_stats``), or None when unavailable."""

    @property
    def ports(self) -> tuple[int, ...]:
        """Every node's port, node 1 first (one for a single node)."""

    def node_down(self, node: int) -> None:
        """Cut node ``node``'s connections and refuse new ones (``EmulatorStartError`` when
        the emulator does not answer)."""

    def node_up(self, node: int) -> None:
        """Let node ``node`` accept connections again."""

    def backlog(self) -> int | None:
        """Messages the emulator still owes its connected clients (queued or unacknowledged),
        or None when it cannot say (stopped, or no answer in time)."""


def report_stats(
    mode: Literal["thread", "process"], counters: Mapping[str, Any],
) -> dict[str, object]:
    """The report's ``emulator`` object, the same in both modes: ``mode`` first, then
    ``Stats.as_dict()`` (read from the emulator in thread mode, from the child's ``stopped``
    line in process mode)."""
    return {"mode": mode, **counters}


def ensure_fd_limit(needed: int) -> None:
    """Raise this process's open-file soft limit towards ``needed`` (children inherit it)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_file_limit() -> int | None:
    """This process's open-file soft limit (None when unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def choose_mode(expected_clients: int, expected_messages: int) -> Literal["thread", "process"]:
    """Thread for small runs, a separate process for large ones."""
    if expected_clients >= PROCESS_MIN_CLIENTS or expected_messages >= PROCESS_MIN_MESSAGES:
        return "process"
    return "thread"


def start_emulator(
    settings: EmulatorSettings,
    *,
    protocol: mqtt_protocol.Protocol = "5",
    expected_clients: int = 0,
    expected_messages: int = 0,
    mode: Mode = "auto",
    transport: Transport = "tcp",
) -> tuple[BrokerTarget, EmbeddedBroker]:
    """Start the emulator for a run; returns the target to connect to and its handle.

    ``expected_clients`` (workers + publisher) and ``expected_messages`` (tasks, or
    deliveries when known) choose between a thread and a process when ``mode`` is "auto".
    Raises ``EmulatorStartError`` when it cannot start (bad strategy or fault names are
    rejected the same way).
    """
    ensure_fd_limit(2 * expected_clients + 256)
    if mode == "auto":
        mode = choose_mode(expected_clients, expected_messages)
    handle: ThreadEmulator | ProcessEmulator
    websocket = transport == "websocket"
    handle = (ThreadEmulator if mode == "thread" else ProcessEmulator)(settings,
                                                                      websocket=websocket)
    host, port = handle.start()
    return BrokerTarget(scheme="ws" if websocket else "mqtt", host=host, port=port,
                        protocol=protocol), handle


@contextlib.contextmanager
def quiet_emulator_logs() -> Iterator[None]:
    """The embedded emulator's warnings (e.g. messages a fault drops) stay off stderr.

    What a fault does is the point of the run and shows in the report; ``--debug`` (which
    sets the root logger to DEBUG) keeps them.
    """
    log = logging.getLogger("aetherdiag.emulator")
    level = log.level
    if logging.getLogger().level > logging.DEBUG:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def describe(settings: EmulatorSettings, transport: Transport = "tcp") -> str:
    """``emulator (strategy round_robin, faults none, group g: sticky, 3 nodes)``."""
    extra = "".join(f", group {g}: {s}" for g, s in settings.group_strategies) + (
        f", {settings.nodes} nodes" if settings.nodes > 1 else "") + (
        ", over WebSocket" if transport == "websocket" else "")
    faults = ",".join(settings.faults) or "none"
    return f"emulator (strategy {settings.strategy}, faults {faults}{extra})"


class ThreadEmulator:
    """The emulator on a background thread of this process."""

    mode: Literal["thread"] = "thread"

    def __init__(self, settings: EmulatorSettings, *, websocket: bool = False) -> None:
        self.settings = settings
        self.websocket = websocket  # ports are the WebSocket listeners'
        self._emulator: object | None = None
        self._final: dict[str, object] | None = None
        self._ports: tuple[int, ...] = ()

    @property
    def emulator(self) -> Emulator | None:
        """The running emulator (its journal and client views), or None once stopped."""
        from ..emulator import Emulator

        em = self._emulator
        return em if isinstance(em, Emulator) else None

    def start(self) -> tuple[str, int]:
        from ..emulator import Emulator
        from ..emulator.sharing import UnknownName

        s = self.settings
        try:
            em = Emulator(strategy=s.strategy, group_strategies=dict(s.group_strategies),
                          faults=s.faults, seed=s.seed, journal=s.journal, nodes=s.nodes,
                          ws_port=0 if self.websocket else None, limits=s.limits)
            em.start()
        except (UnknownName, ValueError) as exc:
            raise EmulatorStartError(str(exc)) from None
        except OSError as exc:
            raise EmulatorStartError(f"cannot start the emulator: {exc.strerror or exc}") from None
        self._emulator = em
        self._ports = em.ws_ports if self.websocket else em.ports
        return em.host, self._ports[0]

    @property
    def ports(self) -> tuple[int, ...]:
        return self._ports

    def node_down(self, node: int) -> None:
        em = self.emulator
        if em is None:
            raise EmulatorStartError("the emulator is not running")
        em.node_down(node)

    def node_up(self, node: int) -> None:
        em = self.emulator
        if em is None:
            raise EmulatorStartError("the emulator is not running")
        em.node_up(node)

    def backlog(self) -> int | None:
        em = self.emulator
        try:
            return em.backlog() if em is not None else None
        except Exception:  # the loop is gone or did not answer in time
            return None

    def stats(self) -> dict[str, object] | None:
        from ..emulator import Emulator

        em = self._emulator
        if isinstance(em, Emulator):
            try:
                return report_stats(self.mode, em.stats().as_dict())
            except Exception:  # the loop is gone: fall back to the last snapshot
                return self._final
        return self._final

    def stop(self) -> None:
        from ..emulator import Emulator

        em = self._emulator
        if isinstance(em, Emulator):
            self._final = self.stats()
            em.stop()
        self._emulator = None


class ProcessEmulator:
    """``python -m aetherdiag emulator serve --port 0`` as a child process."""

    mode: Literal["process"] = "process"

    def __init__(self, settings: EmulatorSettings, start_timeout: float = START_TIMEOUT, *,
                 websocket: bool = False) -> None:
        self.settings = settings
        self.websocket = websocket  # ports are the WebSocket listeners'
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: deque[str] = deque(maxlen=200)
        self._stdout: deque[str] = deque(maxlen=200)  # JSON lines after "listening"
        self._drains: list[threading.Thread] = []
        self._stats: dict[str, object] | None = None
        self._ports: tuple[int, ...] = ()
        self._queries = 0  # backlog queries sent (their ids)

    def command(self) -> list[str]:
        s = self.settings
        cmd = [sys.executable, "-m", "aetherdiag", "emulator", "serve",
               "--host", "127.0.0.1", "--port", "0", *s.serve_options(),
               "--exit-on-stdin-eof", "--machine"]
        if threading.current_thread() is threading.main_thread():
            cmd += ["--parent-pid", str(os.getpid())]
        if self.websocket:
            cmd += ["--ws-port", "0"]
        return cmd

    @property
    def ports(self) -> tuple[int, ...]:
        return self._ports

    def node_down(self, node: int) -> None:
        self._command(announce.NodeCommand(node=node, up=False))

    def node_up(self, node: int) -> None:
        self._command(announce.NodeCommand(node=node, up=True))

    def backlog(self, timeout: float = 2.0) -> int | None:
        proc = self.proc
        self._queries += 1
        query = announce.BacklogQuery(id=self._queries)
        try:
            assert proc is not None and proc.stdin is not None
            proc.stdin.write(announce.dump_command(query) + "\n")
            proc.stdin.flush()
        except (AssertionError, OSError, ValueError):
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            for line in reversed(list(self._stdout)):
                event = announce.load(line)
                if isinstance(event, announce.Backlog) and event.id == query.id:
                    return event.messages
            time.sleep(0.002)
        return None

    def _command(self, command: announce.NodeCommand, timeout: float = 5.0) -> None:
        """Send ``command`` to the child and wait (bounded) for its answer line."""
        proc = self.proc
        done = announce.NodeChanged(node=command.node, up=command.up)

        def answers() -> int:
            return sum(1 for line in list(self._stdout) if announce.load(line) == done)

        before = answers()
        try:
            assert proc is not None and proc.stdin is not None
            proc.stdin.write(announce.dump_command(command) + "\n")
            proc.stdin.flush()
        except (AssertionError, OSError, ValueError):
            raise EmulatorStartError("the emulator process is not running") from None
        deadline = time.monotonic() + timeout
        while answers() == before:
            if time.monotonic() > deadline or proc.poll() is not None:
                what = "up" if command.up else "down"
                raise EmulatorStartError(f"the emulator process did not take node "
                                         f"{command.node} {what} within {timeout:g} s")
            time.sleep(0.005)

    def start(self) -> tuple[str, int]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            # stdin is a pipe we never write to: the child stops when it reaches EOF, i.e. when
            # stop() closes it or this process dies (see the module docstring)
            proc = subprocess.Popen(
                self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=env,
            )
        except OSError as exc:
            raise EmulatorStartError(
                f"cannot start the emulator process: {exc.strerror or exc}"
            ) from None
        self.proc = proc
        try:
            return self._await_address(proc)
        except BaseException:  # KeyboardInterrupt (a signal) included: no child left behind
            self.stop()
            raise

    def _await_address(self, proc: subprocess.Popen[str]) -> tuple[str, int]:
        assert proc.stdout is not None and proc.stderr is not None
        self._drain(proc.stderr, self._stderr)
        line = self._first_line(proc, proc.stdout)
        event = announce.load(line) if line else None
        if not isinstance(event, announce.Listening):
            self.stop()
            detail = " ".join(x.strip() for x in list(self._stderr)[-3:] if x.strip())
            what = f"said {line.strip()!r}" if line else "printed no address"
            raise EmulatorStartError(
                f"the emulator process {what}" + (f": {detail}" if detail else "")
            )
        self._drain(proc.stdout, self._stdout)
        self._ports = (event.ws_ports if self.websocket else event.ports) or (event.port,)
        return event.host, self._ports[0]

    def _first_line(self, proc: subprocess.Popen[str], stream: IO[str]) -> str | None:
        """The child's first stdout line, or None if it exits or the wait runs out."""
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stream, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(min(0.1, max(0.0, deadline - time.monotonic()))):
                    line = stream.readline()
                    return line or None
                if proc.poll() is not None:
                    return None
        return None

    def _drain(self, stream: IO[str], sink: deque[str] | None) -> None:
        def run() -> None:
            with contextlib.suppress(OSError, ValueError):
                for line in stream:
                    if sink is not None:
                        sink.append(line)

        t = threading.Thread(target=run, name="aetherdiag-emulator-output", daemon=True)
        t.start()
        self._drains.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()  # end of file: the child stops on its own
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        for t in self._drains:
            t.join(1.0)
        if not any(t.is_alive() for t in self._drains):  # a reader still blocked keeps its pipe
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for line in self._stdout:
            event = announce.load(line)
            if isinstance(event, announce.Stopped):
                self._stats = report_stats(self.mode, event.stats)

    def stats(self) -> dict[str, object] | None:
        """The counters of the child's ``stopped`` line; the child is stopped first if still
        running."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        return self._stats
