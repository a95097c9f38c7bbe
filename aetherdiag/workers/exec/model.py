"""The typed values of a ``workers --exec`` run: its plan, the processes as the report shows
them, the outcome, and the one error a run of worker processes raises. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...exitcodes import DiagError, ExitCode
from ...harness.model import BrokerTarget, EmulatorSettings, RunResult, TaskSpec
from ...mqtt.protocol import Protocol
from ...wire.layout import Layout
from ...wire.profile import Profile, Replies, Reply


class ExecError(DiagError):
    """The worker processes could not be tested (exit 7, incomplete); ``str()`` is one line,
    ``detail`` the log tail that explains it."""

    exit_code = ExitCode.INCOMPLETE

    def __init__(self, message: str, detail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class ExecPlan:
    command: str
    count: int
    target: BrokerTarget | None  # None: the embedded emulator
    emulator: EmulatorSettings
    layout: Layout
    profile: Profile
    replies: Replies
    tasks: tuple[TaskSpec, ...]
    qos: int = 1  # the tasks' and, in the report, the workers'
    rate: float | None = None
    timeout_s: float = 30.0
    ready_timeout_s: float = 20.0
    warmup_s: float = 3.0  # real brokers: how long the pool gets to subscribe
    quiet_s: float = 0.5
    connect_timeout_s: float = 5.0
    protocol: Protocol = "5"
    seed: int = 0
    run_id: str | None = None
    logs_dir: Path | None = None


@dataclass(frozen=True, kw_only=True)
class ProcessInfo:
    """One worker process as the report shows it."""

    name: str
    pid: int
    clients: tuple[str, ...]  # MQTT client ids of its connections (emulator only)
    subscriptions: tuple[str, ...]  # full filters it holds, "$share/g/..." or plain
    exit_code: int | None  # None: still running when the run ended
    log: Path
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ExecOutcome:
    result: RunResult
    processes: tuple[ProcessInfo, ...]
    replies: tuple[Reply, ...]
    log_dir: Path | None
