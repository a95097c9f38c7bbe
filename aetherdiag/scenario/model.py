"""The scenario plan: what ``scenario.py`` turns a YAML file into, and what a runner executes.

How this works: frozen, keyword-only dataclasses and nothing else (no YAML, no I/O). A
``Scenario`` holds everything already resolved: worker subscriptions are full filter strings,
publish steps hold their ``TaskSpec`` objects with final topics, replica groups are expanded.
A runner walks ``Scenario.steps`` in order and dispatches on the step's class; every step
knows its position in the file so messages can say "step 3 (line 27)". ``Expect`` holds the
figures the report must show; ``Count`` is an exact number or a ``min``..``max`` range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..exitcodes import UsageError
from ..harness.model import EmulatorSettings, TaskSpec, WorkerSpec
from ..mqtt.protocol import Protocol
from ..wire.layout import Layout


class ScenarioError(UsageError, ValueError):
    """A scenario file that cannot be run; ``str()`` is ``file:line:column: message``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line  # 1-based
        self.column = column  # 1-based
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Count:
    """An expected figure: exact when ``min == max``, open-ended when ``max`` is None."""

    min: int = 0
    max: int | None = None

    def matches(self, value: int) -> bool:
        return value >= self.min and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.max is None:
            return f">= {self.min}"
        if self.min == self.max:
            return str(self.min)
        if self.min == 0:
            return f"<= {self.max}"
        return f"{self.min}..{self.max}"


# -- steps --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Step:
    """One entry of ``steps:``; ``index`` and ``line`` are 1-based."""

    kind: ClassVar[str] = "step"
    index: int
    line: int
    column: int = 1

    @property
    def label(self) -> str:
        """``step 3 (line 27)``: how reports and errors name this step."""
        return f"step {self.index} (line {self.line})"

    def describe(self) -> str:
        """A short human description, e.g. ``drop worker-2``."""
        return self.kind


@dataclass(frozen=True, kw_only=True)
class Publish(Step):
    kind: ClassVar[str] = "publish"
    tasks: tuple[TaskSpec, ...]
    rate: float | None = None  # tasks per second; None = as fast as possible

    def describe(self) -> str:
        ids = [t.task_id for t in self.tasks]
        shown = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]} .. {ids[-1]}"
        extra = " retained" if any(t.retain for t in self.tasks) else ""
        return f"publish {len(ids)}{extra} task(s) ({shown})"


@dataclass(frozen=True, kw_only=True)
class Wait(Step):
    kind: ClassVar[str] = "wait"
    seconds: float

    def describe(self) -> str:
        return f"wait {self.seconds:g}s"


@dataclass(frozen=True, kw_only=True)
class WorkerStep(Step):
    """A step that acts on one worker."""

    worker: str

    def describe(self) -> str:
        return f"{self.kind} {self.worker}"


@dataclass(frozen=True, kw_only=True)
class Disconnect(WorkerStep):
    """Clean DISCONNECT: the worker says goodbye (session kept if it is persistent)."""

    kind: ClassVar[str] = "disconnect"


@dataclass(frozen=True, kw_only=True)
class Drop(WorkerStep):
    """TCP cut without DISCONNECT, mid-flight: unfinished tasks stay unacknowledged."""

    kind: ClassVar[str] = "drop"


@dataclass(frozen=True, kw_only=True)
class Reconnect(WorkerStep):
    """Same client id and session settings; a clean-session worker re-subscribes."""

    kind: ClassVar[str] = "reconnect"


@dataclass(frozen=True, kw_only=True)
class Subscribe(WorkerStep):
    kind: ClassVar[str] = "subscribe"
    topic_filter: str
    qos: int

    def describe(self) -> str:
        return f"subscribe {self.worker} to {self.topic_filter} (QoS {self.qos})"


@dataclass(frozen=True, kw_only=True)
class Unsubscribe(WorkerStep):
    kind: ClassVar[str] = "unsubscribe"
    topic_filter: str

    def describe(self) -> str:
        return f"unsubscribe {self.worker} from {self.topic_filter}"


@dataclass(frozen=True, kw_only=True)
class Resubscribe(WorkerStep):
    """SUBSCRIBE again to a filter the worker holds, with other options (QoS): the broker
    replaces the subscription in place (MQTT 5.0 3.8.4), one membership."""

    kind: ClassVar[str] = "resubscribe"
    topic_filter: str
    qos: int

    def describe(self) -> str:
        return f"resubscribe {self.worker} to {self.topic_filter} at QoS {self.qos}"


@dataclass(frozen=True, kw_only=True)
class Takeover(WorkerStep):
    """A second client connects with the worker's client id while it is live: the broker
    closes the worker's connection and the newcomer holds the session (emqx#1501)."""

    kind: ClassVar[str] = "takeover"


@dataclass(frozen=True, kw_only=True)
class Kick(WorkerStep):
    """The worker's session is kicked: a client with its id connects with Clean Start and
    leaves, so the broker closes the worker's connection and discards its session."""

    kind: ClassVar[str] = "kick"


@dataclass(frozen=True, kw_only=True)
class Slow(WorkerStep):
    """Change a worker's processing time per task from now on."""

    kind: ClassVar[str] = "slow"
    work_ms: float

    def describe(self) -> str:
        return f"slow {self.worker} to {self.work_ms:g} ms per task"


@dataclass(frozen=True, kw_only=True)
class NodeDown(Step):
    """An emulated cluster node goes off the network: its connections are cut (no
    DISCONNECT) and it refuses new ones until a ``node_up``."""

    kind: ClassVar[str] = "node_down"
    node: int

    def describe(self) -> str:
        return f"node_down {self.node}"


@dataclass(frozen=True, kw_only=True)
class NodeUp(Step):
    """The node accepts connections again (its workers come back with ``reconnect``)."""

    kind: ClassVar[str] = "node_up"
    node: int

    def describe(self) -> str:
        return f"node_up {self.node}"


@dataclass(frozen=True, kw_only=True)
class Settle(Step):
    """Wait until every publish is acknowledged and deliveries go quiet (bounded)."""

    kind: ClassVar[str] = "settle"
    timeout_s: float
    quiet_s: float

    def describe(self) -> str:
        return f"settle (at most {self.timeout_s:g}s)"


# -- expectations and the plan -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WorkerExpect:
    """Per-worker figures: ``tasks`` = unique tasks, ``received`` = every copy."""

    name: str
    tasks: Count | None = None
    received: Count | None = None
    repeats: Count | None = None


@dataclass(frozen=True, kw_only=True)
class Expect:
    """What the report must show. None means "not checked".

    ``duplicates``: tasks that reached more than one worker of a pool (not allowed ones);
    ``repeats``: extra copies on the same worker; ``missing``: tasks no worker got
    (``missing_tasks`` names them when the file lists ids); ``redispatched``: re-dispatches
    after a member loss that ``allow_redelivery`` accepted. ``max_imbalance`` and
    ``allow_redelivery`` are verdict knobs, passed to the analysis.
    """

    exit_code: int | None = None
    duplicates: Count | None = None
    repeats: Count | None = None
    missing: Count | None = None
    missing_tasks: tuple[str, ...] | None = None
    redispatched: Count | None = None
    max_imbalance: float = 1.5
    allow_redelivery: bool = False
    workers: tuple[WorkerExpect, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A validated scenario: run ``steps`` in order against the target, then check ``expect``.

    ``broker_url`` is None for the embedded emulator (configured by ``emulator``); otherwise
    it is the URL as written (already validated) and ``emulator`` holds only defaults.
    ``publish_to`` is the node (1-based endpoint) publish steps publish on unless they name
    their own (``TaskSpec.node``); each worker's is ``WorkerSpec.node``.
    """

    name: str
    description: str
    path: str
    broker_url: str | None
    emulator: EmulatorSettings
    layout: Layout
    protocol: Protocol  # the publisher's, and the workers' default
    timeout_s: float  # bound on each settle, including the final one
    workers: tuple[WorkerSpec, ...]
    steps: tuple[Step, ...]
    expect: Expect
    publish_to: int = 1

    @property
    def publish_nodes(self) -> tuple[int, ...]:
        """The nodes tasks are published on, in order of first use (``publish_to`` when
        nothing is published)."""
        return tuple(dict.fromkeys(t.node for t in self.tasks)) or (self.publish_to,)

    @property
    def nodes_used(self) -> int:
        """The highest node a worker or a publish step uses: the endpoints a run needs."""
        return max(1, *self.publish_nodes, *(w.node for w in self.workers))

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """Every task of every publish step, in publish order."""
        return tuple(t for s in self.steps if isinstance(s, Publish) for t in s.tasks)

    def worker(self, name: str) -> WorkerSpec:
        for w in self.workers:
            if w.name == name:
                return w
        raise KeyError(name)
