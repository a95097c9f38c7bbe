"""The team's own worker processes (``workers --exec``): start, watch, log, stop. No MQTT here.

``parse_command`` splits a command template like a shell would (``shlex``, no shell is run)
and checks its placeholders. ``WorkerProcesses`` starts COUNT children from it, each with its
placeholders filled, the ``AETHERDIAG_*``/``MQTT_*`` environment variables set and its stdout
and stderr in a log file of its own. ``tcp_peers`` maps the TCP connections of those children
(and of their own children) to a broker port back to the child that owns them.

How children never outlive us:

- Each child leads its own session and process group (``start_new_session``): Ctrl-C in the
  terminal reaches only us, and ``stop()`` signals the whole group, so what a child started
  (a shell's background job) ends with it. SIGTERM first, SIGKILL for the group after the
  grace period, and the child is always reaped.
- On Linux, each child also asks the kernel for SIGKILL when we die, even by SIGKILL, when no
  ``finally:`` runs (PR_SET_PDEATHSIG). It is set in the child after fork, before the
  worker's program starts, by a tiny exec wrapper (``_EXEC_WRAPPER``: ``python -I -S -c``,
  about 25 ms) rather than by ``preexec_fn``: ``preexec_fn`` runs Python code between fork and
  exec, which can deadlock when another thread of ours held a lock at fork time (and this
  process has threads: the paho loop, the emulator). The wrapper calls prctl, checks that its
  parent is still us (closing the race with a parent that died before prctl), restores the
  signals Python ignores, and execs the worker: the worker keeps the wrapper's pid. The
  wrapper reports a failed exec (not found, permission) through a close-on-exec pipe, as
  ``subprocess`` itself does, so a bad command still fails ``start()`` with one line.
- PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process. It is
  therefore requested only from the main thread (``pdeathsig=None``); pass ``pdeathsig=True``
  from a thread that lives as long as the children.
- What PDEATHSIG does not cover: a grandchild (it dies with its group on ``stop()``, but not
  when we are SIGKILLed), and a child that leaves its process group (``setsid``).
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil

from .command import CommandError, parse_command

# How long start() waits for the children's wrappers to exec the worker (or report why not).
EXEC_TIMEOUT = 15.0
# After SIGKILL: how long stop() waits for the groups to end before it gives up.
KILL_WAIT = 1.0
_POLL = 0.02


def _default_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"mqtt://{shown}:{port}"


# Runs as `python -I -S -c _EXEC_WRAPPER PPID ERRFD LC_CTYPE ARGV...` in each child on Linux.
# ERRFD: the write end of a pipe the parent reads until end of file (it is closed on exec);
# LC_CTYPE: "=value" or "-" (unset), since Python's start-up may coerce the C locale and
# write LC_CTYPE into its own environment, which exec would hand on to the worker.
_EXEC_WRAPPER = r"""
import os, signal, sys
ppid, err = int(sys.argv[1]), int(sys.argv[2])
os.set_inheritable(err, False)
def fail(what, code):
    os.write(err, what.encode("utf-8", "replace"))
    os._exit(code)
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, 9, 0, 0, 0) != 0:
        fail("prctl:%d:" % ctypes.get_errno(), 126)
except (ImportError, OSError, AttributeError) as exc:
    fail("prctl:0:%s" % exc, 126)
if os.getppid() != ppid:
    os.kill(os.getpid(), signal.SIGKILL)
lc = sys.argv[3]
if lc == "-":
    os.environ.pop("LC_CTYPE", None)
else:
    os.environ["LC_CTYPE"] = lc[1:]
for name in ("SIGPIPE", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
argv = sys.argv[4:]
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    fail("exec:%d:%s" % (exc.errno or 0, exc.strerror or exc), 127)
"""


def _reason(err: int, detail: str = "") -> str:
    if err == errno_mod.ENOENT:
        return "command not found"
    if err == errno_mod.EACCES:
        return "permission denied"
    if err == errno_mod.ENOEXEC:
        return "not an executable (exec format error)"
    if err:
        return os.strerror(err).lower()
    return detail or "unknown error"


class _Child:
    __slots__ = ("argv", "done", "index", "log", "name", "proc")

    def __init__(self, name: str, index: int, argv: tuple[str, ...], log: Path,
                 proc: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.index = index
        self.argv = argv
        self.log = log
        self.proc = proc
        self.done = False  # reaped and its process group found empty: never signal it again


class WorkerProcesses:
    """COUNT copies of a worker command, as child processes with a log file each.

    Use as a context manager and call ``start()`` inside it: leaving the block stops every
    child and removes the temporary log directory, unless ``keep_logs(True)`` was called
    (a failed run) or ``logs_dir`` was given (kept always).
    """

    def __init__(
        self,
        template: str,
        count: int,
        *,
        host: str,
        port: int,
        url: str | None = None,
        logs_dir: str | os.PathLike[str] | None = None,
        pdeathsig: bool | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.argv_template = parse_command(template)
        self.count = count
        self.host = host
        self.port = port
        self.url = url if url is not None else _default_url(host, port)
        self._given_dir = Path(logs_dir) if logs_dir is not None else None
        self._pdeathsig = pdeathsig
        self._names = tuple(f"worker-{i}" for i in range(1, count + 1))
        self._children: dict[str, _Child] = {}
        self._log_dir: Path | None = None
        self._temp_dir = False
        self._keep = False
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def argv_for(self, index: int) -> tuple[str, ...]:
        """The command of worker ``index`` (1..COUNT), placeholders filled."""
        values = self._values(index)
        return tuple(arg.format_map(values) for arg in self.argv_template)

    def _values(self, index: int) -> dict[str, str]:
        return {"name": f"worker-{index}", "index": str(index), "host": self.host,
                "port": str(self.port), "url": self.url}

    def _env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"AETHERDIAG_WORKER": name, "AETHERDIAG_BROKER_URL": self.url,
                    "MQTT_HOST": self.host, "MQTT_PORT": str(self.port)})
        return env

    def _use_wrapper(self) -> bool:
        if not sys.platform.startswith("linux") or not sys.executable:
            return False
        if self._pdeathsig is None:
            return threading.current_thread() is threading.main_thread()
        return self._pdeathsig

    def start(self) -> None:
        """Start every child. Raises ``CommandError`` (one line naming the worker and the
        reason) when one cannot be started; the ones already started are then stopped."""
        if self._started:
            raise RuntimeError("WorkerProcesses.start() called twice")
        if self._closed:
            raise RuntimeError("WorkerProcesses is closed")
        self._started = True
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            self._log_dir = self._given_dir
        else:
            self._log_dir = Path(tempfile.mkdtemp(prefix="aetherdiag-workers-"))
            self._temp_dir = True
        wrapper = self._use_wrapper()
        pending: list[tuple[_Child, int]] = []  # (child, read end of its exec-error pipe)
        try:
            for index, name in enumerate(self._names, start=1):
                child, errfd = self._spawn(index, name, wrapper)
                self._children[name] = child
                if errfd is not None:
                    pending.append((child, errfd))
            self._collect_exec_errors(pending)
        except BaseException:
            for _child, fd in pending:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.stop(grace_s=0.5)
            raise

    def _spawn(self, index: int, name: str, wrapper: bool) -> tuple[_Child, int | None]:
        assert self._log_dir is not None
        argv = self.argv_for(index)
        log = self._log_dir / f"{name}.log"
        env = self._env(name)
        errfd: int | None = None
        with open(log, "wb") as out:
            if wrapper:
                rfd, wfd = os.pipe()
                lc = env.get("LC_CTYPE")
                cmd = [sys.executable, "-I", "-S", "-c", _EXEC_WRAPPER, str(os.getpid()),
                       str(wfd), "-" if lc is None else "=" + lc, *argv]
                try:
                    proc = subprocess.Popen(
                        cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        env=env, start_new_session=True, pass_fds=(wfd,))
                except OSError as exc:
                    os.close(rfd)
                    raise CommandError(
                        f"{name}: cannot start the exec wrapper {sys.executable}: "
                        f"{_reason(exc.errno or 0, str(exc))}") from None
                finally:
                    os.close(wfd)
                errfd = rfd
            else:
                try:
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        env=env, start_new_session=True)
                except OSError as exc:
                    raise CommandError(
                        f"{name}: cannot start {argv[0]!r}: {_reason(exc.errno or 0, str(exc))}"
                    ) from None
        return _Child(name, index, argv, log, proc), errfd

    def _collect_exec_errors(self, pending: list[tuple[_Child, int]]) -> None:
        """Read every wrapper's error pipe to end of file: empty means the worker runs."""
        deadline = time.monotonic() + EXEC_TIMEOUT
        buffers: dict[int, bytes] = {fd: b"" for _c, fd in pending}
        by_fd = {fd: child for child, fd in pending}
        open_fds = set(buffers)
        try:
            while open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    names = ", ".join(sorted(by_fd[fd].name for fd in open_fds))
                    raise CommandError(
                        f"{names}: did not start within {EXEC_TIMEOUT:g} s")
                ready, _w, _x = select.select(list(open_fds), [], [], left)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if data:
                        buffers[fd] += data
                    else:
                        open_fds.discard(fd)
                        os.close(fd)
        finally:
            for fd in open_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            pending.clear()
        for fd, data in buffers.items():
            if not data:
                continue
            child = by_fd[fd]
            kind, _sep, rest = data.decode("utf-8", "replace").partition(":")
            code, _sep, detail = rest.partition(":")
            reason = _reason(int(code) if code.isdigit() else 0, detail.strip())
            if kind == "prctl":
                raise CommandError(
                    f"{child.name}: cannot set PR_SET_PDEATHSIG: {reason}")
            raise CommandError(f"{child.name}: cannot start {child.argv[0]!r}: {reason}")

    def stop(self, grace_s: float = 3.0) -> None:
        """End every child: SIGTERM to each process group, up to ``grace_s`` for them to end,
        then SIGKILL for what is left. Always reaps; safe to call twice."""
        live = [c for c in self._children.values() if not c.done]
        if not live:
            return
        for c in live:
            _signal_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace_s)
        while True:
            live = [c for c in live if not self._settle(c)]
            if not live or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        for c in live:
            _signal_group(c.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT
        while live:
            live = [c for c in live if not self._settle(c)]
            if not live or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        for c in live:  # cannot happen short of an unkillable (D state) process
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=KILL_WAIT)

    @staticmethod
    def _settle(c: _Child) -> bool:
        """Reap ``c`` if it ended; True once it is reaped and its group has no live member."""
        if c.done:
            return True
        if c.proc.poll() is None:
            return False
        if _group_alive(c.proc.pid):
            return False
        c.done = True
        return True

    def keep_logs(self, keep: bool = True) -> None:
        """Keep (True) or remove (False) the temporary log directory on ``close()``.

        A ``logs_dir`` given to the constructor is always kept."""
        self._keep = keep

    @property
    def logs_kept(self) -> bool:
        """Whether ``close()`` leaves the log directory in place."""
        return self._keep or not self._temp_dir

    def close(self) -> None:
        """Stop every child, then remove the temporary log directory unless kept."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            if self._temp_dir and not self._keep and self._log_dir is not None:
                shutil.rmtree(self._log_dir, ignore_errors=True)

    # -- inspection -------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """``worker-1`` .. ``worker-COUNT``."""
        return self._names

    @property
    def log_dir(self) -> Path | None:
        """Where the logs are (None before ``start()``)."""
        return self._log_dir

    def _child(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            if name in self._names:
                raise RuntimeError(f"{name} was not started") from None
            raise KeyError(name) from None

    def pid(self, name: str) -> int:
        """The process id of worker ``name``."""
        return self._child(name).proc.pid

    def pids(self) -> dict[str, int]:
        """Every started worker's process id, by name."""
        return {name: c.proc.pid for name, c in self._children.items()}

    def alive(self, name: str) -> bool:
        """Whether worker ``name`` is still running."""
        return self._child(name).proc.poll() is None

    def exited(self) -> dict[str, int]:
        """The workers that have ended, with their return codes (-N: killed by signal N)."""
        out: dict[str, int] = {}
        for name, c in self._children.items():
            code = c.proc.poll()
            if code is not None:
                out[name] = code
        return out

    def log_path(self, name: str) -> Path:
        """Worker ``name``'s log file (its stdout and stderr)."""
        return self._child(name).log

    def log_tail(self, name: str, lines: int = 10) -> list[str]:
        """The last ``lines`` lines of worker ``name``'s log ([] when it is gone or empty)."""
        if lines <= 0:
            return []
        return _tail(self._child(name).log, lines)


def _tail(path: Path, lines: int, chunk: int = 65536) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - chunk)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    if start > 0 and text:
        text = text[1:]  # the first line was cut
    return text[-lines:]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie.

    Zombies do not count: a grandchild orphaned to init stays one until init reaps it,
    which may take a while (or never, under a PID 1 that does not reap).
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False
