"""The options of a ``workers`` run as frozen groups, each with its own ``check()``.

How this works: the command fills one group per concern straight from its parameters
(``EmulatorOptions``, ``EndpointOptions``, ``TopicOptions``, ``WireOptions``, ``LoadOptions``,
``JudgeOptions``, ``PublishOptions``, ``ShardOptions``, ``ExecOptions``) and bundles them in
``WorkersOptions``. Each ``check()`` raises an ``UsageError`` (exit 2, one line) for input that
cannot work; ``WorkersOptions.check()`` runs them in the order the command always has, with the
checks that span groups in between. Nothing here connects or writes; ``plan()`` reads the
checked values. ``parse_pairs`` is the one ``NAME=VALUE`` option parser (``--group-strategy``,
``--slow-worker``), shared with ``emulator serve``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..emulator.sharing import check_fault, check_strategy
from ..exitcodes import ExitCode, UsageError
from ..harness.model import BrokerTarget
from ..harness.target import TargetOptions
from ..mqtt.protocol import Protocol, parse_protocol
from ..wire.layout import Layout, aethermagic, generic
from ..wire.profile import PROFILES
from .exec.command import CommandError, parse_command
from .placement import EndpointKind, Placement, node_count, place
from .publishing import Publishing, publishing
from .shard import ShardSpec, check_run_id, parse_shard

MAX_TASKS = 1_000_000
MAX_FANOUT_DELIVERIES = 20_000_000  # --plain / share-fanout: every worker gets every task


def parse_pairs(values: Sequence[str], flag: str, example: str, *,
                check: Callable[[str, str], None] | None = None,
                duplicate: str = "{name!r} already has {old!r}") -> dict[str, str]:
    """``NAME=VALUE`` options (``flag``, repeatable) -> {NAME: VALUE}: both sides non-empty
    (else "expected ``example``"), ``check(name, text)`` for what else a pair needs (it raises
    ``UsageError``), and one value per name (else ``duplicate``, formatted with name and old)."""
    out: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"{flag} {text!r}: expected {example}")
        if check is not None:
            check(name, text)
        if name in out and out[name] != value:
            raise UsageError(f"{flag} {text!r}: " + duplicate.format(name=name, old=out[name]),
                             ExitCode.USAGE)
        out[name] = value
    return out


def _share_name(group: str, text: str) -> None:
    bad = [ch for ch in "/+#" if ch in group]
    if bad:  # a share name is one topic level without wildcards [MQTT-4.8.2-2]
        raise UsageError(f"--group-strategy {text!r}: a share group name has no '/', '+' or "
                         f"'#' (found {bad[0]!r}), so {group!r} can never match a group",
                         ExitCode.USAGE)


def parse_group_strategies(values: Sequence[str]) -> dict[str, str]:
    """``--group-strategy GROUP=STRATEGY`` (repeatable) -> {group: strategy}."""
    return parse_pairs(values, "--group-strategy", "GROUP=STRATEGY", check=_share_name,
                       duplicate="group {name!r} already has strategy {old!r}")


@dataclass(frozen=True, kw_only=True)
class EmulatorOptions:
    """How the embedded emulator dispatches (``--strategy``, ``--group-strategy``,
    ``--fault``, ``--seed``); shared with ``probe`` and ``emulator serve``."""

    strategy: str = "round_robin"
    faults: tuple[str, ...] = ()
    group_strategies: tuple[str, ...] = ()  # GROUP=STRATEGY as given
    seed: int | None = None

    def groups(self) -> dict[str, str]:
        return parse_group_strategies(self.group_strategies)

    def check(self, *, broker: bool = False) -> None:
        """Known names; and none of these options with a real broker (``broker``)."""
        for name in self.faults:
            check_fault(name)
        check_strategy(self.strategy)
        groups = self.groups()
        for name in groups.values():
            check_strategy(name)
        if broker and (self.faults or self.strategy != "round_robin" or groups):
            raise UsageError("--fault, --strategy and --group-strategy configure the embedded "
                             "emulator; they cannot be used with --broker")


@dataclass(frozen=True, kw_only=True)
class EndpointOptions:
    """Where the run connects: ``--broker`` URLs (node 1 first) with their TLS options, or
    ``--nodes N`` of an emulated cluster; ``--place`` and ``--publish-to``."""

    brokers: tuple[str, ...] = ()
    nodes: int | None = None
    place: tuple[str, ...] = ()
    publish_to: str = "first"
    tls: TargetOptions = field(default_factory=TargetOptions)

    @property
    def count(self) -> int:
        return node_count(list(self.brokers), self.nodes)

    def placement(self, workers: int) -> Placement:
        kind: EndpointKind = ("brokers" if self.brokers else "emulator" if self.nodes is None
                              else "cluster")
        return place(workers, self.count, list(self.place), self.publish_to, endpoints=kind)

    def targets(self, protocol: Protocol) -> tuple[BrokerTarget, ...]:
        """The ``--broker`` URLs parsed (TLS files loaded): a usage error for a bad one."""
        if not self.brokers:
            self.tls.refuse_tls()
        return tuple(self.tls.target(url, protocol) for url in self.brokers)


@dataclass(frozen=True, kw_only=True)
class TopicOptions:
    """The topic layout: AetherMagic's (``--union`` ... ``--workgroup``) or a generic one
    (``--topic``, ``--filter``, ``--group``), ``--plain``, and the run-scoped tree on a real
    broker (``--topic-prefix``, ``--use-production-topics``)."""

    union: str = "production"
    job: str = "engine"
    task: str = "process-data"
    context: str = "batch1"
    action: str = "perform"
    workgroup: str = "workers"
    topic: str | None = None
    topic_filter: str | None = None
    group: str = "workers"
    plain: bool = False
    topic_prefix: str = "aetherdiag"
    use_production_topics: bool = False

    def layout(self) -> Layout:
        """The layout as given (not yet scoped to the run)."""
        return (generic(self.topic, self.topic_filter, self.group) if self.topic is not None
                else aethermagic(union=self.union, job=self.job, task=self.task,
                                 context=self.context, action=self.action,
                                 workgroup=self.workgroup))

    def scoped(self, layout: Layout, run_id: str) -> Layout:
        return layout.scoped(self.topic_prefix, run_id)

    def check(self) -> None:
        self.layout()
        if self.topic is None and self.topic_filter is not None:
            raise UsageError("--filter needs --topic (the generic layout)")


@dataclass(frozen=True, kw_only=True)
class WireOptions:
    """What goes over the wire: ``--profile``, ``--qos``, ``--mqtt``."""

    profile: str = "generic"
    qos: int | None = None
    mqtt: str | None = None

    @property
    def library(self) -> bool:
        return self.profile == "aethermagic"

    @property
    def protocol(self) -> Protocol:
        return parse_protocol(self.mqtt or ("3.1.1" if self.library else "5"))

    @property
    def pinned(self) -> bool:
        """``--mqtt`` given (or the library's 3.1.1): no fallback to 3.1.1 on a refusal."""
        return self.mqtt is not None or self.library

    @property
    def task_qos(self) -> int:
        return self.qos if self.qos is not None else (0 if self.library else 1)

    def check(self) -> None:
        if self.profile not in PROFILES:
            raise UsageError(f"--profile {self.profile!r}: choose {' or '.join(PROFILES)}")


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """How much and how fast: workers, tasks, rate, the built-in workers' work, and the
    bounds on connecting, publishing and settling."""

    count: int = 3
    tasks: int = 9
    rate: float | None = None
    work_ms: float = 0.0
    work_jitter_ms: float = 0.0
    slow_worker: tuple[str, ...] = ()  # NAME=MS as given
    timeout: float | None = None
    settle_ms: float = 300.0
    connect_timeout: float = 5.0

    def slow(self) -> dict[str, float]:
        """``--slow-worker worker-2=200`` -> {"worker-2": 200.0}."""
        out: dict[str, float] = {}
        names = {f"worker-{i}" for i in range(1, self.count + 1)}
        for text in self.slow_worker:
            name, sep, ms = text.partition("=")
            try:
                delay = float(ms)
            except ValueError:
                delay = -1.0
            if not sep or not math.isfinite(delay) or not 0 <= delay <= 3_600_000:
                raise UsageError(f"--slow-worker {text!r}: expected NAME=MS, e.g. worker-2=200")
            if name not in names:
                raise UsageError(f"--slow-worker {text!r}: no worker named {name!r} "
                                 f"(workers are worker-1 ... worker-{self.count})")
            out[name] = delay
        return out


@dataclass(frozen=True, kw_only=True)
class JudgeOptions:
    """How the run is judged: ``--max-imbalance``, ``--allow-redelivery``."""

    max_imbalance: float = 1.5
    allow_redelivery: bool = False


@dataclass(frozen=True, kw_only=True)
class PublishOptions:
    """``--publishers``, ``--publisher-reconnect``, ``--keys``, ``--expect-order``."""

    publishers: int | None = None
    reconnect: bool = False
    keys: int | None = None
    expect_order: bool = False

    def publishing(self, *, exec_command: str | None, profile: str) -> Publishing:
        """The checked options (``UsageError`` for combinations that cannot work)."""
        return publishing(self.publishers, self.reconnect, self.keys, self.expect_order,
                          exec_command=exec_command, profile=profile)


@dataclass(frozen=True, kw_only=True)
class ShardOptions:
    """``--record FILE``, ``--shard I/N``, ``--run-id ID``."""

    record: Path | None = None
    shard: str | None = None
    run_id: str | None = None

    def spec(self, *, brokers: bool, count: int, exec_command: str | None) -> ShardSpec | None:
        """The checked ``--shard``/``--run-id`` (``brokers``: a real broker, not ``--nodes``)."""
        if self.run_id is not None:
            check_run_id(self.run_id)
        if self.shard is None:
            return None
        index, total = parse_shard(self.shard)
        if not brokers:
            raise UsageError("--shard needs --broker: the shards meet on a broker every host "
                             "reaches (the embedded emulator lives inside one process)")
        if self.run_id is None:
            raise UsageError("--shard needs --run-id ID, the same for every shard of the run")
        if exec_command is not None:
            raise UsageError("--shard runs the built-in workers; it cannot be used with --exec")
        if total > count:
            raise UsageError(f"--shard {self.shard}: {total} shards need at least {total} workers "
                             f"(--count {count})")
        return ShardSpec(index=index, count=total, run_id=self.run_id)


@dataclass(frozen=True, kw_only=True)
class ExecOptions:
    """``--exec`` and what only it uses: ``--reply-topic``, ``--worker-field``, ``--logs``,
    ``--warmup``, ``--ready-timeout``."""

    command: str | None = None
    reply_topic: str | None = None
    worker_field: str | None = None
    logs: Path | None = None
    warmup: float | None = None
    ready_timeout: float = 20.0

    def check(self) -> None:
        if self.command is None:
            for flag, given in (("--logs", self.logs), ("--reply-topic", self.reply_topic),
                                ("--worker-field", self.worker_field)):
                if given is not None:
                    raise UsageError(f"{flag} needs --exec (it is about your own worker processes)")
            return
        try:
            parse_command(self.command)
        except CommandError as exc:
            raise UsageError(f"--exec: {exc}") from None
        if self.logs is not None and self.logs.exists() and not self.logs.is_dir():
            raise UsageError(f"--logs {self.logs}: not a directory")


@dataclass(frozen=True, kw_only=True)
class WorkersOptions:
    """Every option of ``aetherdiag workers`` but the output ones, in groups."""

    load: LoadOptions = field(default_factory=LoadOptions)
    endpoints: EndpointOptions = field(default_factory=EndpointOptions)
    emulator: EmulatorOptions = field(default_factory=EmulatorOptions)
    topics: TopicOptions = field(default_factory=TopicOptions)
    wire: WireOptions = field(default_factory=WireOptions)
    judging: JudgeOptions = field(default_factory=JudgeOptions)
    publish: PublishOptions = field(default_factory=PublishOptions)
    shard: ShardOptions = field(default_factory=ShardOptions)
    exec: ExecOptions = field(default_factory=ExecOptions)

    def check(self) -> None:
        """Every usage error the options alone can show (``UsageError``, exit 2), before anything
        is written or connected."""
        command = self.exec.command
        self.emulator.check(broker=bool(self.endpoints.brokers))
        self.wire.check()
        self.publish.publishing(exec_command=command, profile=self.wire.profile)
        if command is not None:
            builtin = [flag for flag, given in (
                ("--plain", self.topics.plain), ("--work-ms", self.load.work_ms),
                ("--work-jitter-ms", self.load.work_jitter_ms),
                ("--slow-worker", self.load.slow_worker)) if given]
            if builtin:
                raise UsageError(f"{', '.join(builtin)} configure the built-in workers; they "
                                 "cannot be used with --exec (your workers decide how they "
                                 "subscribe and work)")
        self.exec.check()
        self.shard.spec(brokers=bool(self.endpoints.brokers) and self.endpoints.nodes is None,
                        count=self.load.count, exec_command=command)
        if self.shard.record is not None and command is not None:
            raise UsageError("--record writes the built-in workers' run; it cannot be used with "
                             "--exec")
        self.endpoints.placement(self.load.count)
        if command is not None and self.endpoints.count > 1:
            raise UsageError("--exec runs against one endpoint; several --broker URLs and --nodes "
                             "need the built-in workers")
        self.endpoints.targets(self.wire.protocol)
        self.topics.check()
        self._check_groups()
        self._check_fanout()
        if command is not None and self.endpoints.brokers and \
                not self.topics.use_production_topics:
            raise UsageError("--exec with --broker publishes to the topics your workers listen on; "
                             "add --use-production-topics to confirm (on a shared broker, point "
                             "your workers and --union or --topic at a test tree first)")
        if command is None:
            self.load.slow()

    @property
    def fanout(self) -> bool:
        """Every worker gets every task (``--plain`` or the seed bug's fault)."""
        return self.topics.plain or "share-fanout" in self.emulator.faults

    def _check_groups(self) -> None:
        groups = self.emulator.groups()
        layout = self.topics.layout()
        plain = self.topics.plain
        unknown = [g for g in groups if plain or g != layout.group]
        if unknown and self.exec.command is None:  # --exec: the workers choose their groups
            joined = "no group (--plain)" if plain else f"only group {layout.group!r}"
            raise UsageError(f"--group-strategy {unknown[0]}={groups[unknown[0]]}: no worker of "
                             f"this run joins group {unknown[0]!r} (they join {joined}), so it "
                             "would change nothing")

    def _check_fanout(self) -> None:
        count, tasks = self.load.count, self.load.tasks
        if self.fanout and count * tasks > MAX_FANOUT_DELIVERIES:
            raise UsageError(f"--count {count} x --tasks {tasks}: with every worker getting every "
                             f"task that is {count * tasks:,} deliveries to record, above the "
                             f"{MAX_FANOUT_DELIVERIES:,} one run keeps in memory")
