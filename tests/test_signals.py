"""SIGTERM, SIGHUP and SIGINT end a run like Ctrl-C, and no child outlives its parent.

Real processes, no mocks: ``python -m aetherdiag ...`` runs in its own session, the emulator
child is found by walking /proc, and every test kills whatever is left in a ``finally``.
The large runs (600 workers, so the emulator runs as a child process) take a few seconds
each and are marked ``slow``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aetherdiag.cli import main
from aetherdiag.harness.embedded import PROCESS_MIN_CLIENTS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

INTERRUPTED = 130
LARGE_RUN = ["workers", "--count", str(PROCESS_MIN_CLIENTS + 100), "--tasks", "200000",
             "--quiet"]
EXIT_BOUND = 20.0  # seconds from the signal to the parent's exit (fleet close + child stop)
CHILD_GONE_BOUND = 5.0


# --- /proc helpers -----------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1]), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw.rsplit(")", 1)[1].split()


def _identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time): tells a process apart from a later one that reuses its pid."""
    fields = _stat(pid)
    return None if fields is None else (pid, fields[19])


def _alive(ident: tuple[int, str]) -> bool:
    """Running (not gone, not a zombie, not a new process under a reused pid)."""
    fields = _stat(ident[0])
    return fields is not None and fields[0] != "Z" and fields[19] == ident[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[1] == str(pid) and fields[0] != "Z":
                out.append(int(entry))
    return out


def _sockets(pid: int) -> int:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    n = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return n


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- running aetherdiag --------------------------------------------------------------------------

Identity = tuple[int, str]


@contextlib.contextmanager
def aetherdiag(
    args: list[str], cwd: Path,
) -> Iterator[tuple[subprocess.Popen[str], list[Identity]]]:
    """Start ``python -m aetherdiag ARGS`` in its own session; yields the process and a list
    the test fills with the identities of its children. Everything is killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "aetherdiag", *args], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: list[tuple[int, str]] = []
    try:
        yield proc, seen
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the session's group: parent and child
        for ident in seen:
            if _alive(ident):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ident[0], signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)


def emulator_child(proc: subprocess.Popen[str], seen: list[tuple[int, str]],
                   connected: int = 0) -> tuple[int, str]:
    """Wait for the emulator child of ``proc`` (and, with ``connected``, for that many sockets
    in it: the fleet is connected and the run under way)."""
    found: list[int] = []

    def child_exists() -> bool:
        found[:] = _children(proc.pid)
        return bool(found)

    assert _wait_for(child_exists, 30), "no emulator child appeared"
    ident = _identity(found[0])
    assert ident is not None
    seen.append(ident)
    cmdline = Path(f"/proc/{ident[0]}/cmdline").read_bytes().split(b"\0")
    assert b"emulator" in cmdline and b"serve" in cmdline
    if connected:
        assert _wait_for(lambda: _sockets(ident[0]) >= connected, 30), "the fleet never connected"
    return ident


def assert_interrupted(proc: subprocess.Popen[str], started: float) -> str:
    _, err = proc.communicate(timeout=EXIT_BOUND)
    assert time.monotonic() - started < EXIT_BOUND
    assert proc.returncode == INTERRUPTED, err
    assert "Traceback" not in err
    assert err.count("aetherdiag: interrupted") == 1, err
    return err


# --- the CLI's signal handlers -----------------------------------------------------------------

def test_main_restores_the_signal_handlers_it_found() -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not expected")

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP)}
    previous_term = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["--version"])
        assert exit_.value.code == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def test_importing_the_cli_installs_no_handlers() -> None:
    code = ("import signal; before = [signal.getsignal(s) for s in "
            "(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]; import aetherdiag.cli; "
            "after = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)];"
            " assert before == after, (before, after)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_small_run_in_thread_mode_is_interrupted_by(sig: signal.Signals, tmp_path: Path) -> None:
    # 3 workers, paced at 2 tasks/s: the emulator runs on a thread of the same process
    with aetherdiag(["workers", "--count", "3", "--tasks", "40", "--rate", "2", "--quiet"],
                    tmp_path) as (proc, _):
        # listening socket + 3 workers + publisher, and the emulator's ends of those
        assert _wait_for(lambda: _sockets(proc.pid) >= 9, 30), "the run never started"
        started = time.monotonic()
        os.kill(proc.pid, sig)
        assert_interrupted(proc, started)
        assert time.monotonic() - started < 10


# --- the emulator child ends with its parent -------------------------------------------------

def _serve(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "emulator", "serve", "--port", "0", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def test_serve_stops_at_the_end_of_stdin_and_still_reports() -> None:
    with _serve("--exit-on-stdin-eof") as proc:  # the with block closes the pipes
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert "listening on mqtt://" in proc.stdout.readline()
            time.sleep(0.3)
            assert proc.poll() is None  # still serving while the pipe is open
            proc.stdin.close()
            assert proc.wait(CHILD_GONE_BOUND) == 0
            assert proc.stderr is not None
            err = proc.stderr.read()
            assert "stopped: 0 messages in, 0 deliveries, 0 dropped" in err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_serve_stops_cleanly_on(sig: signal.Signals) -> None:
    proc = _serve()
    try:
        assert proc.stdout is not None
        assert "listening on mqtt://" in proc.stdout.readline()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=CHILD_GONE_BOUND)
        assert proc.returncode == 0
        assert "stopped: " in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_refuses_to_start_when_its_parent_is_already_gone() -> None:
    # --parent-pid names a process that is not our parent: as if it had died before prctl
    proc = _serve("--parent-pid", "1")
    try:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode not in (0, None)
        assert "listening" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_large_run_is_interrupted_and_stops_its_emulator_child(
    sig: signal.Signals, tmp_path: Path,
) -> None:
    with aetherdiag(LARGE_RUN, tmp_path) as (proc, seen):
        child = emulator_child(proc, seen, connected=200)
        started = time.monotonic()
        os.kill(proc.pid, sig)  # the parent only, not its process group
        assert_interrupted(proc, started)
        assert _wait_for(lambda: not _alive(child), CHILD_GONE_BOUND), "emulator child left"


@pytest.mark.slow
def test_a_signal_while_the_emulator_child_starts_leaves_no_child(tmp_path: Path) -> None:
    with aetherdiag(LARGE_RUN, tmp_path) as (proc, seen):
        child = emulator_child(proc, seen)  # the parent still waits for its address
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert_interrupted(proc, started)
        assert _wait_for(lambda: not _alive(child), CHILD_GONE_BOUND), "emulator child left"


@pytest.mark.slow
def test_a_second_signal_during_cleanup_still_exits_130_without_a_traceback(
    tmp_path: Path,
) -> None:
    with aetherdiag(LARGE_RUN, tmp_path) as (proc, seen):
        child = emulator_child(proc, seen, connected=200)
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGHUP)
        assert_interrupted(proc, started)
        assert _wait_for(lambda: not _alive(child), CHILD_GONE_BOUND), "emulator child left"


@pytest.mark.slow
def test_the_emulator_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    with aetherdiag(LARGE_RUN, tmp_path) as (proc, seen):
        child = emulator_child(proc, seen, connected=200)
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no finally: only the child can act
        proc.communicate(timeout=EXIT_BOUND)
        assert proc.returncode == -signal.SIGKILL
        assert _wait_for(lambda: not _alive(child), CHILD_GONE_BOUND), "emulator child left"
