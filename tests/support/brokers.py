"""Brokers for tests: free loopback ports and private Mosquitto processes.

Real-broker tests start their own ``mosquitto`` on a free loopback port (never a system one).
Without the binary they skip with a reason, except when ``CI=true``: then they fail, because
CI must prove the emulator against the real thing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import pytest

from aetherdiag.emulator import Emulator

MOSQUITTO_START_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago: nothing listens there, so connecting
    to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
                  ) -> bool:
    """True once ``host:port`` accepts TCP connections (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` (kill it if it will not go) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class MosquittoProcess:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def _mosquitto_missing() -> NoReturn:
    reason = "the mosquitto binary is not installed (needed for the real-broker comparison)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the Mosquitto tests", pytrace=False)
    pytest.skip(reason)


def start_mosquitto(workdir: Path, extra_config: str = "") -> MosquittoProcess:
    """A private mosquitto on a free 127.0.0.1 port, with a throw-away config in ``workdir``.
    The caller stops it with ``stop_process(broker.proc)``."""
    binary = shutil.which("mosquitto")
    if binary is None:
        _mosquitto_missing()
    last_log = ""
    for attempt in range(3):
        port = free_port()
        conf = workdir / f"mosquitto-{attempt}.conf"
        log = workdir / f"mosquitto-{attempt}.log"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            + extra_config
        )
        with log.open("wb") as out:
            proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
        if wait_for_port("127.0.0.1", port, MOSQUITTO_START_TIMEOUT, proc):
            time.sleep(0.1)  # a mosquitto that lost the port race exits at once: not ours
            if proc.poll() is None:
                return MosquittoProcess("127.0.0.1", port, proc, log)
        stop_process(proc)
        last_log = log.read_text(errors="replace")
    pytest.fail(f"mosquitto did not start on a free port after 3 tries:\n{last_log}",
                pytrace=False)


@contextlib.contextmanager
def running_mosquitto(workdir: Path, extra_config: str = "") -> Iterator[MosquittoProcess]:
    """``start_mosquitto`` for a ``with`` block: the process is stopped when it ends."""
    broker = start_mosquitto(workdir, extra_config)
    try:
        yield broker
    finally:
        stop_process(broker.proc)


@contextlib.contextmanager
def readable_tempdir(prefix: str) -> Iterator[Path]:
    """A throw-away directory that other users can read, removed afterwards.

    Mosquitto started as root drops to its own user before it reads the files its config names
    (password, ACL, certificates): keep them there with mode 0o644.
    """
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass(frozen=True)
class BrokerUnderTest:
    """What the ``broker`` fixture hands a test: an emulator or the private Mosquitto."""

    host: str
    port: int
    kind: Literal["emulator", "mosquitto"]
    emulator: Emulator | None = None

    @property
    def is_emulator(self) -> bool:
        return self.kind == "emulator"


def readable_file(directory: Path, name: str, text: str | None = None) -> Path:
    """``directory/name`` (written with ``text`` when given) with mode 0o644, so Mosquitto can
    read it after dropping to its own user."""
    path = directory / name
    if text is not None:
        path.write_text(text)
    path.chmod(0o644)
    return path
