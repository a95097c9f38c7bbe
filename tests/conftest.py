"""Shared fixtures: a private Mosquitto, the ``broker`` fixture over emulator and Mosquitto,
and factories for recording paho-mqtt clients and raw socket clients.

Real-broker tests start their own ``mosquitto`` on a free loopback port (never a system one).
Without the binary they skip with a reason, except when ``CI=true``: then they fail, because
CI must prove the emulator against the real thing.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aetherdiag.emulator import Emulator

try:  # tests/ may or may not be a package; work either way
    from . import mqttclient
except ImportError:
    import mqttclient  # type: ignore[no-redef]
sys.modules.setdefault("mqttclient", mqttclient)  # test modules say `from mqttclient import`

MOSQUITTO_START_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
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


def _mosquitto_missing() -> None:
    reason = "the mosquitto binary is not installed (needed for the real-broker comparison)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the Mosquitto tests", pytrace=False)
    pytest.skip(reason)


def start_mosquitto(workdir: Path, extra_config: str = "") -> MosquittoProcess:
    """A private mosquitto on a free 127.0.0.1 port, with a throw-away config."""
    binary = shutil.which("mosquitto")
    if binary is None:
        _mosquitto_missing()
        raise AssertionError("unreachable")
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


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoProcess]:
    """One private mosquitto for the whole run; tests keep apart by unique topics and ids."""
    with tempfile.TemporaryDirectory(prefix="aetherdiag-mosquitto-") as tmp:
        broker = start_mosquitto(Path(tmp))
        try:
            yield broker
        finally:
            stop_process(broker.proc)


@dataclass(frozen=True)
class BrokerTarget:
    """What a test connects to: ``kind`` is "emulator" or "mosquitto"."""

    host: str
    port: int
    kind: str
    emulator: Emulator | None = None

    @property
    def is_emulator(self) -> bool:
        return self.kind == "emulator"


@pytest.fixture(
    params=[
        pytest.param("emulator"),
        pytest.param("mosquitto", marks=pytest.mark.mosquitto),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerTarget]:
    """The same behaviour test, once against a fresh emulator and once against Mosquitto."""
    if request.param == "emulator":
        with Emulator() as em:
            yield BrokerTarget(em.host, em.port, "emulator", em)
    else:
        mosq: MosquittoProcess = request.getfixturevalue("mosquitto")
        if mosq.proc.poll() is not None:
            pytest.fail(f"the private mosquitto died:\n{mosq.log_text()}", pytrace=False)
        yield BrokerTarget(mosq.host, mosq.port, "mosquitto")


@pytest.fixture(params=[mqttclient.V311, mqttclient.V5], ids=["v311", "v5"])
def version(request: pytest.FixtureRequest) -> int:
    """MQTT protocol level: 4 (3.1.1) or 5 (5.0)."""
    return int(request.param)


_counter = itertools.count()


@pytest.fixture
def uid() -> str:
    """A short unique token for topics and client ids (the Mosquitto process is shared)."""
    return f"{uuid.uuid4().hex[:8]}{next(_counter)}"


@pytest.fixture
def topic(uid: str) -> str:
    """A topic prefix no other test uses."""
    return f"ad/{uid}"


ClientFactory = Callable[..., mqttclient.PahoClient]
RawFactory = Callable[..., mqttclient.RawClient]


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """Every client a test made; all are closed afterwards."""
    made: list[Any] = []
    yield made
    for c in reversed(made):
        c.close()


@pytest.fixture
def connect(broker: BrokerTarget, version: int, clients: list[Any], uid: str) -> ClientFactory:
    """``connect(name, **options)``: a connected recording paho client on ``broker``.

    The client id is ``{name}-{uid}`` unless ``client_id=`` is given; ``version`` defaults to
    the test's protocol version.
    """
    return make_connector(broker, version, clients, uid)


def make_connector(target: BrokerTarget | Emulator, version: int, clients: list[Any], uid: str
                   ) -> ClientFactory:
    def factory(name: str = "c", *, connect: bool = True, **kwargs: Any) -> mqttclient.PahoClient:
        kwargs.setdefault("version", version)
        kwargs.setdefault("client_id", f"{name}-{uid}")
        client = mqttclient.PahoClient(target.host, target.port, **kwargs)
        clients.append(client)
        if connect:
            result = client.connect()
            assert result.reason_code == 0, f"CONNACK {result}"
        return client

    return factory


@pytest.fixture
def raw(broker: BrokerTarget, version: int, clients: list[Any]) -> RawFactory:
    """``raw(version=...)``: a raw socket client on ``broker`` (not yet connected)."""

    def factory(**kwargs: Any) -> mqttclient.RawClient:
        kwargs.setdefault("version", version)
        client = mqttclient.RawClient(broker.host, broker.port, **kwargs)
        clients.append(client)
        return client

    return factory


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """``emulator_factory(**options)``: a started Emulator, stopped after the test."""
    started: list[Emulator] = []

    def start(**kwargs: Any) -> Emulator:
        em = Emulator(**kwargs).start()
        started.append(em)
        return em

    yield start
    for em in started:
        em.stop()


@pytest.fixture
def emu(emulator_factory: Callable[..., Emulator], clients: list[Any], version: int, uid: str
        ) -> Callable[..., tuple[Emulator, ClientFactory]]:
    """``em, connect = emu(strategy=..., faults=[...])``: a configured emulator and a client
    factory for it (clients are closed before the emulator stops)."""

    def start(**kwargs: Any) -> tuple[Emulator, ClientFactory]:
        em = emulator_factory(**kwargs)
        return em, make_connector(em, version, clients, uid)

    return start


@pytest.fixture
def mosquitto_differs(request: pytest.FixtureRequest, broker: BrokerTarget
                      ) -> Callable[[str], None]:
    """``mosquitto_differs(reason)``: on the Mosquitto run, expect the spec check to fail.

    For places where the Mosquitto release under test predates a fix or departs from the
    spec while the emulator follows it. The xfail is not strict, so a Mosquitto that gets it
    right shows up as XPASS instead of breaking the run.
    """

    def mark(reason: str) -> None:
        if broker.kind == "mosquitto":
            request.applymarker(pytest.mark.xfail(reason=f"Mosquitto differs: {reason}",
                                                  strict=False))

    return mark
