"""Broker-side records: messages, subscriptions, sessions, limits, counters and read-only views.

How this works: plain mutable records owned by ``broker.Broker``; no behaviour beyond small
helpers (packet-id allocation, load). Kept apart so broker.py holds only the protocol rules.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .packets import Will

NEVER_EXPIRES = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one client from exhausting the emulator, and the few server policies
    a v5 CONNACK announces (``emulator serve`` options).

    The defaults let a 100,000-task run through without a single drop.
    """

    max_inflight: int = 100  # outgoing QoS>0 messages awaiting an ack, per session
    max_queued: int = 200_000  # messages waiting for the window or a reconnect, per session
    max_packet_size: int = 1 << 20
    max_inbound_qos2: int = 65535
    connect_timeout: float = 10.0  # seconds a new connection may take to send CONNECT
    # v5 Receive Maximum: advertised in CONNACK when below 65535; a client with more QoS 2
    # PUBLISHes awaiting PUBREL gets DISCONNECT 0x93 (3.3.4; QoS 1 is acknowledged at once)
    receive_maximum: int = 65535
    server_keep_alive: int | None = None  # v5 Server Keep Alive: overrides the client's
    topic_aliases: bool = False  # server-to-client topic aliases when the client allows them
    deny_subscribe: tuple[str, ...] = ()  # filters refused with SUBACK 0x87, as an ACL would

    def inbound_limit(self, v5: bool) -> int:
        """QoS 2 PUBLISHes a client may have awaiting PUBREL."""
        return min(self.max_inbound_qos2, self.receive_maximum) if v5 else self.max_inbound_qos2


@dataclass(frozen=True, slots=True)
class Message:
    """An application message as received from a publisher."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    publisher: str
    properties: dict[int, Any]
    expires_at: float | None = None  # broker clock time its Message Expiry Interval ends
    node: int = 1  # the cluster node it was published on (1-based)


_M_SET = tuple(
    Message.__dict__[name].__set__
    for name in ("topic", "payload", "qos", "retain", "publisher", "properties", "expires_at",
                 "node")
)


def new_message(
    topic: str, payload: bytes, qos: int, retain: bool, publisher: str,
    properties: dict[int, Any], expires_at: float | None, node: int = 1,
) -> Message:
    """``Message(...)`` with every field given, without the frozen ``__init__``'s cost."""
    m: Message = object.__new__(Message)
    s_topic, s_payload, s_qos, s_retain, s_publisher, s_props, s_expires, s_node = _M_SET
    s_topic(m, topic)
    s_payload(m, payload)
    s_qos(m, qos)
    s_retain(m, retain)
    s_publisher(m, publisher)
    s_props(m, properties)
    s_expires(m, expires_at)
    s_node(m, node)
    return m


@dataclass(slots=True)
class Subscription:
    client_id: str
    topic_filter: str
    share_name: str | None
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    sub_id: int | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """One subscription as ``Broker.clients()`` shows it (``share_name`` None: not shared)."""

    topic_filter: str
    share_name: str | None
    qos: int


@dataclass(frozen=True, slots=True)
class ClientView:
    """One session as ``Broker.clients()`` shows it; ``peer`` is the TCP (host, port) of
    its connection, when connected over a transport that knows it; ``node`` the cluster node
    (1-based) its connection came in on (its last one, when disconnected)."""

    client_id: str
    connected: bool
    peer: tuple[str, int] | None
    subscriptions: tuple[SubscriptionView, ...]
    node: int = 1
    conn_id: int | None = None  # its live connection (None: disconnected)


@dataclass(slots=True)
class OutMsg:
    """A message on its way to one session: queued, or in flight under ``packet_id``."""

    message: Message
    qos: int
    retain: bool
    share: tuple[str, str] | None  # (share name, filter) when sent through a share group
    sub_ids: tuple[int, ...] = ()
    packet_id: int = 0
    released: bool = False  # QoS 2: PUBREC received, PUBREL sent


@dataclass(slots=True)
class Session:
    client_id: str
    version: int
    conn: int | None = None
    node: int = 1  # the cluster node of its connection (its last one, when disconnected)
    expiry: int = 0
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    outflight: dict[int, OutMsg] = field(default_factory=dict)
    queue: deque[OutMsg] = field(default_factory=deque)
    inbound_qos2: set[int] = field(default_factory=set)
    window: int = 100
    paused: bool = False
    next_pid: int = 1
    expires_at: float | None = None
    will: Will | None = None
    will_at: float | None = None

    def load(self) -> int:
        return len(self.outflight) + len(self.queue)

    def allocate_pid(self) -> int:
        pid = self.next_pid
        while pid in self.outflight:
            pid = pid % 65535 + 1
        self.next_pid = pid % 65535 + 1
        return pid


@dataclass
class Stats:
    """Counters callers can read (``Emulator.stats()``); a snapshot is a copy."""

    connections: int = 0
    connected: int = 0
    messages_in: int = 0
    deliveries: int = 0
    acked: int = 0
    redispatched: int = 0
    dup_resends: int = 0
    protocol_errors: int = 0
    retained: int = 0
    deliveries_by_client: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> Stats:
        return Stats(
            connections=self.connections, connected=self.connected,
            messages_in=self.messages_in, deliveries=self.deliveries, acked=self.acked,
            redispatched=self.redispatched, dup_resends=self.dup_resends,
            protocol_errors=self.protocol_errors, retained=self.retained,
            deliveries_by_client=Counter(self.deliveries_by_client),
            dropped=Counter(self.dropped),
        )

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        """Every counter, JSON-ready; ``dropped`` maps a reason to a count."""
        return {
            "connections": self.connections,
            "connected": self.connected,
            "messages_in": self.messages_in,
            "deliveries": self.deliveries,
            "acked": self.acked,
            "redispatched": self.redispatched,
            "dup_resends": self.dup_resends,
            "protocol_errors": self.protocol_errors,
            "retained": self.retained,
            "deliveries_by_client": dict(self.deliveries_by_client),
            "dropped": dict(self.dropped),
            "dropped_total": self.total_dropped,
        }
