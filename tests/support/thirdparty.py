"""Private RabbitMQ and NATS processes for tests: brokers that speak only MQTT 3.1.1.

RabbitMQ 3.10 (``rabbitmq_mqtt``) closes an MQTT 5.0 CONNECT without a CONNACK; NATS 2.9
answers it with a 3.1.1 CONNACK, return code 1. Both take ``$share/...`` as a literal filter,
and NATS has no QoS 2. Each runs on free loopback ports with its own config, data and logs in a
throw-away directory, never a system instance:

- ``running_nats``: ``nats-server -c CONF`` with ``server_name``, ``jetstream { store_dir }``
  (its MQTT listener needs JetStream), ``mqtt { listen }`` and a client ``listen`` port;
- ``running_rabbitmq``: ``rabbitmq-server`` run directly from RabbitMQ's own ``bin``
  directory (Debian's ``/usr/sbin`` wrapper switches to the ``rabbitmq`` user, who cannot read
  the test's directory) with its own node name, distribution port, epmd (a child of the test,
  on a free port: the system epmd is never used), Erlang cookie (``HOME/.erlang.cookie``, mode
  0400), Mnesia and log directories, the MQTT plugin enabled and ``listeners.tcp = none``.
  It takes about 15 s to start.

Each is ready once its MQTT port accepts a 3.1.1 CONNECT and answers CONNACK 0, and is stopped
in ``finally`` whatever happened (``rabbitmqctl stop``, then its process group is killed).
Without a binary the tests skip with the reason, except under ``CI=true``, where they fail:
CI installs both (``.ci/run``), as it does Mosquitto (``brokers._mosquitto_missing``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import pytest

from support.brokers import free_port, wait_for_port

NATS_START_TIMEOUT = 20.0
RABBITMQ_START_TIMEOUT = 90.0  # about 15 s on an idle machine; CI runs three test processes
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # the scripts themselves, without Debian's su
# an MQTT 3.1.1 CONNECT: protocol name "MQTT", level 4, clean session, keep-alive 30 s, client
# id "adready"
_CONNECT_311 = bytes([0x10, 0x13, 0x00, 0x04, *b"MQTT", 0x04, 0x02, 0x00, 0x1E, 0x00, 0x07,
                      *b"adready"])
_DISCONNECT = bytes([0xE0, 0x00])


@dataclass
class ThirdPartyBroker:
    """A private broker process; ``port`` is its MQTT listener on ``host``."""

    kind: Literal["rabbitmq", "nats"]
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Fail the test with the broker's log when the process has died."""
        if self.proc.poll() is not None:
            pytest.fail(f"the private {self.kind} died:\n{self.log_text()[-2000:]}",
                        pytrace=False)


def missing(reason: str) -> NoReturn:
    """Skip with ``reason``; under ``CI=true`` fail instead (CI must run these tests)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the RabbitMQ and NATS tests", pytrace=False)
    pytest.skip(reason)


def connack_311(host: str, port: int, timeout: float = 2.0) -> int | None:
    """The return code a 3.1.1 CONNECT gets (the connection is closed again); None when the
    connection fails or closes first."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_CONNECT_311)
            got = b""
            while len(got) < 4:
                chunk = sock.recv(4 - len(got))
                if not chunk:
                    return None
                got += chunk
            with contextlib.suppress(OSError):
                sock.sendall(_DISCONNECT)
            return got[3] if got[:2] == b"\x20\x02" else None
    except OSError:
        return None


def _ready(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once ``host:port`` answers a 3.1.1 CONNECT with CONNACK 0 (bounded)."""
    deadline = time.monotonic() + timeout
    if not wait_for_port(host, port, timeout, proc):
        return False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if connack_311(host, port) == 0:
            return True
        time.sleep(0.2)
    return False


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Terminate ``proc``'s process group (it was started in a session of its own), kill it
    if it will not go, and reap ``proc``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # children the leader left behind
        return


@contextlib.contextmanager
def running_nats(workdir: Path) -> Iterator[ThirdPartyBroker]:
    """A private ``nats-server`` with its MQTT listener on a free 127.0.0.1 port."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if binary is None:
        missing("nats-server is not installed (needed for the MQTT 3.1.1-only broker tests)")
    last = ""
    for attempt in range(3):
        mqtt_port, client_port = free_port(), free_port()
        conf = workdir / f"nats-{attempt}.conf"
        log = workdir / f"nats-{attempt}.log"
        conf.write_text(
            f"listen: 127.0.0.1:{client_port}\n"
            f"server_name: aetherdiag_{uuid.uuid4().hex[:8]}\n"
            f'jetstream {{ store_dir: "{workdir / f"js-{attempt}"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n")
        with log.open("wb") as out:
            proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out,
                                    start_new_session=True)
        try:
            if _ready("127.0.0.1", mqtt_port, proc, NATS_START_TIMEOUT):
                yield ThirdPartyBroker("nats", "127.0.0.1", mqtt_port, proc, log)
                return
            last = log.read_text(errors="replace")[-2000:]
        finally:
            _stop_group(proc)
    pytest.fail(f"nats-server did not start on a free port after 3 tries:\n{last}",
                pytrace=False)


def _rabbitmq_tools() -> tuple[str, str, str]:
    """``rabbitmq-server``, ``rabbitmqctl`` and ``epmd``, or skip (fail in CI)."""
    def tool(name: str) -> str | None:
        own = RABBITMQ_BIN / name
        return str(own) if own.exists() else shutil.which(name)

    server, ctl, epmd = tool("rabbitmq-server"), tool("rabbitmqctl"), shutil.which("epmd")
    if server is None or ctl is None or epmd is None:
        missing("RabbitMQ (rabbitmq-server, rabbitmqctl and epmd) is not installed")
    if not any(Path("/usr/lib/rabbitmq/lib").glob("*/plugins/rabbitmq_mqtt*")):
        missing("RabbitMQ's MQTT plugin (rabbitmq_mqtt) is not installed")
    return server, ctl, epmd


@contextlib.contextmanager
def running_rabbitmq(workdir: Path) -> Iterator[ThirdPartyBroker]:
    """A private RabbitMQ node with the MQTT plugin on a free 127.0.0.1 port (module doc)."""
    server, ctl, epmd = _rabbitmq_tools()
    mqtt_port, node_port, dist_port, epmd_port = (free_port() for _ in range(4))
    node = f"aetherdiag-{uuid.uuid4().hex[:8]}@localhost"
    (workdir / "rabbitmq.conf").write_text(
        "listeners.tcp = none\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n"
        "mqtt.allow_anonymous = true\n"
        "loopback_users = none\n")
    (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    cookie = workdir / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex.upper())
    cookie.chmod(0o400)
    env = {
        **os.environ, "HOME": str(workdir), "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(node_port), "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"), "RABBITMQ_LOGS": "-",
        "RABBITMQ_PID_FILE": str(workdir / "rabbit.pid"),
    }
    log = workdir / "rabbitmq.log"
    with log.open("wb") as out:
        epmd_proc = subprocess.Popen([epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
                                     stdout=out, stderr=out, env=env, start_new_session=True)
        proc = subprocess.Popen([server], stdout=out, stderr=out, env=env, cwd=workdir,
                                start_new_session=True)
    try:
        if not _ready("127.0.0.1", mqtt_port, proc, RABBITMQ_START_TIMEOUT):
            pytest.fail(f"the private RabbitMQ did not answer a 3.1.1 CONNECT within "
                        f"{RABBITMQ_START_TIMEOUT:g} s:\n"
                        + log.read_text(errors="replace")[-3000:], pytrace=False)
        yield ThirdPartyBroker("rabbitmq", "127.0.0.1", mqtt_port, proc, log)
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run([ctl, "-n", node, "stop"], env=env, cwd=workdir, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        _stop_group(proc)
        _stop_group(epmd_proc, timeout=5.0)
