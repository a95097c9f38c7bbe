"""The typed values that flow from a plan through a run into the analysis.

How this works: frozen dataclasses only. A command (``workers``, ``replay``) builds a
``RunPlan``; the harness runs it against a broker and returns a ``RunResult`` holding every
``Delivery`` it recorded; ``analysis.analyse`` turns that into a ``Report``. Nothing here does
I/O, so analysis and rendering are tested without brokers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from ..emulator.session import Limits
from ..mqtt.protocol import Protocol
from ..mqtt.urls import host_for_url


@dataclass(frozen=True, kw_only=True)
class BrokerTarget:
    """Where the workers connect: parsed from ``--broker URL`` (or the embedded emulator)."""

    scheme: str = "mqtt"  # mqtt | mqtts | ws | wss
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    path: str = "/mqtt"  # websocket path
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    protocol: Protocol = "5"

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    @property
    def websocket(self) -> bool:
        return self.scheme in ("ws", "wss")

    def display(self) -> str:
        """The URL without the password, for reports and errors; it parses back to this
        target (``--broker``): the user name percent-encoded, an IPv6 host in brackets, a
        websocket path other than ``/mqtt`` kept."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = host_for_url(self.host)
        path = self.path if self.websocket and self.path != "/mqtt" else ""
        return f"{self.scheme}://{user}{host}:{self.port}{path}"


@dataclass(frozen=True, kw_only=True)
class EmulatorSettings:
    """How to start the embedded emulator when no ``--broker`` is given."""

    strategy: str = "round_robin"
    faults: tuple[str, ...] = ()
    group_strategies: tuple[tuple[str, str], ...] = ()
    seed: int | None = None
    journal: bool = False  # record every delivery (``--exec``: which connection got what)
    nodes: int = 1  # an emulated cluster of N nodes (one listener each, ports P..P+N-1)
    # the server policies a v5 CONNACK announces and the subscriptions it refuses
    limits: Limits = field(default_factory=Limits)

    def serve_options(self) -> list[str]:
        """The ``aetherdiag emulator serve`` options that start an emulator like this one."""
        out = ["--strategy", self.strategy]
        for fault in self.faults:
            out += ["--fault", fault]
        for group, strategy in self.group_strategies:
            out += ["--group-strategy", f"{group}={strategy}"]
        if self.seed is not None:
            out += ["--seed", str(self.seed)]
        if self.nodes > 1:
            out += ["--nodes", str(self.nodes)]
        lim, default = self.limits, Limits()
        if lim.receive_maximum != default.receive_maximum:
            out += ["--receive-maximum", str(lim.receive_maximum)]
        if lim.topic_aliases:
            out.append("--topic-aliases")
        if lim.server_keep_alive is not None:
            out += ["--server-keep-alive", str(lim.server_keep_alive)]
        for topic_filter in lim.deny_subscribe:
            out += ["--deny-subscribe", topic_filter]
        return out


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """One worker client. ``name`` is what reports show (``worker-1``)."""

    name: str
    subscriptions: tuple[str, ...]  # full filters, e.g. "$share/g/a/+/b" or "a/+/b"
    qos: int = 1
    protocol: Protocol = "5"
    clean_start: bool = True
    session_expiry: int = 0  # v5 only; seconds a persistent session outlives its connection
    work_ms: float = 0.0  # processing time per task before it is acknowledged
    work_jitter_ms: float = 0.0
    pool: str = ""  # workers of one pool are meant to share the tasks ("" = the single pool)
    node: int = 1  # which endpoint (1-based: --broker order, or the emulated cluster's node)
    # aethermagic: answers like an AetherMagic worker (idle/online on connect, status on
    # receipt, complete when its work is done; wire/profile.py)
    profile: str = "generic"


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task to publish. The payload carries ``task_id`` so deliveries can be matched, in
    the wire format of ``profile`` (``wire/profile.py``)."""

    task_id: str
    topic: str
    qos: int = 1
    retain: bool = False
    profile: str = "generic"
    node: int = 1  # which endpoint publishes it (1-based: --broker order, or a cluster's node)
    publisher: int = 1  # which of that node's publishers sends it (1-based, --publishers)
    key: str = ""  # the ordering key it carries (--keys); "": none
    fresh_connection: bool = False  # sent over a connection (and client id) of its own


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One message a worker received."""

    worker: str
    task_id: str | None  # None when the payload was not one of ours
    topic: str
    qos: int
    dup: bool
    retain: bool
    at: float  # seconds since the run started
    latency_ms: float | None = None  # publish-to-receive, when the payload carries the send time
    completed: bool = True  # False when the worker lost its connection before finishing/acking it
    # what the payload says about its sender: publisher name, its sequence number there (1,
    # 2, ...) and the ordering key; None when the payload carries none (another profile)
    publisher: str | None = None
    seq: int | None = None
    key: str | None = None


# Latency is recorded in an HDR histogram (HdrHistogram, ``hdrh``) in microseconds, from 1 us
# to an hour, 3 significant digits: a value is kept within 0.1 % whatever its size.
LATENCY_LOWEST_US = 1
LATENCY_HIGHEST_US = 3_600_000_000
LATENCY_DIGITS = 3
LATENCY_CLOCK = ("publisher's wall clock (time.time() in the payload's sent_at) to the "
                 "worker's wall clock on receipt, same host")


@dataclass(frozen=True, kw_only=True)
class LatencyRecord:
    """Every publish-to-delivery latency of a run as one HDR histogram (``LATENCY_*`` above).

    ``hdr`` is HdrHistogram's own compressed encoding (``HdrHistogram.encode()``), so the
    record stays a plain, frozen value of a few KB however many deliveries it counts.
    ``below_zero`` counts latencies recorded as 0 because the receiving clock was behind the
    sending one (a wall-clock step); ``above_range`` those clamped to an hour.
    """

    hdr: bytes
    count: int
    below_zero: int = 0
    above_range: int = 0
    clock: str = LATENCY_CLOCK


@dataclass(frozen=True, kw_only=True)
class FleetEvent:
    """Something that happened to one client during a run (for replay timelines).

    ``kind``: connected, disconnected (clean DISCONNECT), dropped (TCP cut), lost (the broker
    closed the connection), reconnected, subscribed, unsubscribed, work_ms, publish_started,
    publish_finished. ``task_ids`` lists the tasks the worker had received but not yet
    acknowledged at that moment (what a drop leaves in flight).
    """

    at: float  # seconds since the run started
    worker: str  # worker name, or "publisher"
    kind: str
    detail: str = ""
    task_ids: tuple[str, ...] = ()


# What a run could see of the work its workers did (``--exec``): ``all`` (built-in workers, or
# workers that answer: each task's end is seen), ``acks`` (no replies, QoS 1/2: the broker's
# acknowledgements say a task was finished; the handling itself is not seen), ``deliveries``
# (no replies, QoS 0: only which process got each task; nothing says when it was done).
Observed = Literal["all", "acks", "deliveries"]


@dataclass(frozen=True, kw_only=True)
class ProcessExit:
    """A worker process (``--exec``) that ended on its own before the run stopped it."""

    name: str
    pid: int
    status: int  # its exit status; -N: killed by signal N
    held: tuple[str, ...] = ()  # tasks it had received and not finished: lost with it
    log: str = ""  # its log file
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ClientIdCollision:
    """Several connections with one client id kept taking the session over from each other."""

    client_id: str
    processes: tuple[str, ...]  # the worker processes seen using it
    takeovers: int


@dataclass(frozen=True, kw_only=True)
class Holder:
    """One subscription as the broker saw it, with the process and client that hold it."""

    process: str
    pid: int
    client_id: str
    topic_filter: str  # the full filter: "$share/g/..." or plain


@dataclass(frozen=True, kw_only=True)
class ClosedAfter:
    """The broker closed a client's connection right after a packet it had not answered.

    That is how brokers refuse what they cannot honour: NATS closes the connection of a client
    that publishes at QoS 2, a broker set to disconnect on an ACL denial closes it after the
    denied PUBLISH or SUBSCRIBE. The analysis reads it as a refusal when other clients of the
    run stayed connected (the broker itself was not gone), and never as a lost network.
    """

    client: str  # "publisher", "worker-2"
    packet: str  # "PUBLISH" or "SUBSCRIBE"
    qos: int
    topic: str  # the PUBLISH's topic, or the SUBSCRIBE's filter
    unanswered: int = 1  # packets of this client the broker had left unanswered then
    disconnect: int | None = None  # the v5 DISCONNECT's reason code, when the broker sent one


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Everything the harness observed."""

    target: str  # display form of the broker URL ("emulator" details included)
    workers: tuple[str, ...]  # worker names in order
    published: tuple[str, ...]  # task ids in publish order (each counted once)
    publish_failures: tuple[str, ...] = ()  # task ids whose publish was refused or not acked
    deliveries: tuple[Delivery, ...] = ()
    duration_s: float = 0.0
    settled: bool = True  # False when --timeout cut the wait short
    subscribe_results: tuple[tuple[str, str, int], ...] = ()  # (worker, filter, reason code)
    notes: tuple[str, ...] = ()  # things the harness noticed (refused subscriptions, ...)
    emulator_stats: dict[str, object] | None = field(default=None)
    events: tuple[FleetEvent, ...] = ()  # connects, drops, reconnects... in time order
    # What the run set out to do and did not (each a failure of its own in the analysis):
    unsent: tuple[tuple[str, str], ...] = ()  # (task id, reason): never handed to the broker
    unfinished: tuple[tuple[str, str], ...] = ()  # (worker, task id): still being worked on
    publish_refusals: tuple[tuple[str, str], ...] = ()  # (task id, reason) of publish_failures
    connection_lost: tuple[str, ...] = ()  # clients whose connection died under them (no
    #                                        DISCONNECT from the broker: killed, network)
    steps_not_run: tuple[str, ...] = ()  # replay steps skipped when its deadline passed
    timeout_s: float | None = None  # the bound that cut the run short (settled is False)
    interrupted: bool = False  # Ctrl-C / SIGTERM / SIGHUP stopped the run
    # --exec with a profile whose workers answer: (worker, task id, "status" | "complete")
    replies: tuple[tuple[str, str, str], ...] = ()
    expects_replies: bool = False
    own_processes: bool = False  # the workers are the team's own processes (--exec)
    observed: Observed = "all"  # what could be seen of the workers' work (see Observed)
    process_exits: tuple[ProcessExit, ...] = ()  # --exec: processes that ended on their own
    collisions: tuple[ClientIdCollision, ...] = ()  # --exec: client ids shared by processes
    holders: tuple[Holder, ...] = ()  # --exec on the emulator: who holds which subscription
    # several endpoints (--broker given more than once, an emulated cluster): each one's
    # display, node 1 first, and the node each published task went out on; both empty for
    # a run against one endpoint
    endpoints: tuple[str, ...] = ()
    task_nodes: tuple[tuple[str, int], ...] = ()  # (task id, node)
    # (task id, publisher name, its sequence number there) of every task a publisher took
    task_publishers: tuple[tuple[str, str, int], ...] = ()
    # every delivery's latency in an HDR histogram (recorded by the harness as it went); None
    # when the source recorded none (analysis then builds one from ``Delivery.latency_ms``)
    latency: LatencyRecord | None = None
    # connections the broker closed right after a packet it had not answered (refusals)
    closed_after: tuple[ClosedAfter, ...] = ()
    # how the broker refused MQTT 5.0 when the run fell back to 3.1.1 (harness/negotiate.py);
    # "" when it did not
    mqtt5_refused: str = ""
