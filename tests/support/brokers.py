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
from aetherdiag.harness.clients import release

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


def _crosses(src: MosquittoProcess, dst: MosquittoProcess, topic: str, timeout: float) -> bool:
    """True once a message published on ``src`` arrives at a subscriber on ``dst``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[bytes] = []
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    sub.on_message = lambda client, userdata, msg: got.append(bytes(msg.payload))
    try:
        sub.connect(dst.host, dst.port)
        pub.connect(src.host, src.port)
        sub.loop_start()
        pub.loop_start()
        sub.subscribe(topic, 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not got:
            pub.publish(topic, b"bridge-check", 1)
            time.sleep(0.2)
        return bool(got)
    finally:
        for client in (sub, pub):
            client.disconnect()
            release(client)


@contextlib.contextmanager
def running_mosquitto_pair(workdir: Path, bridge_topic: str | None = "aetherdiag/#",
                           timeout: float = 15.0
                           ) -> Iterator[tuple[MosquittoProcess, MosquittoProcess]]:
    """Two private Mosquittos on free ports (node 1, node 2), stopped when the block ends.

    With ``bridge_topic`` the second one bridges to the first both ways on that pattern
    (``topic PATTERN both 1``, as teams bridge brokers), and this waits until a message
    crosses the bridge in each direction; ``None``: two brokers that know nothing of each
    other.
    """
    (workdir / "node1").mkdir(exist_ok=True)
    (workdir / "node2").mkdir(exist_ok=True)
    with running_mosquitto(workdir / "node1") as first:
        bridge = "" if bridge_topic is None else (
            "connection aetherdiag-bridge\n"
            f"address {first.host}:{first.port}\n"
            f"topic {bridge_topic} both 1\n"
            "cleansession true\n"
            "notifications false\n"
            "restart_timeout 1\n")
        with running_mosquitto(workdir / "node2", bridge) as second:
            if bridge_topic is not None:
                check = bridge_topic.replace("#", "bridge-check").replace("+", "x")
                for src, dst in ((first, second), (second, first)):
                    if not _crosses(src, dst, check, timeout):
                        pytest.fail(f"the Mosquitto bridge did not connect within {timeout:g} s:"
                                    f"\n{second.log_text()}", pytrace=False)
            yield first, second
