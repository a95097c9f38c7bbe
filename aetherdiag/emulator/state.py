"""What the broker's parts share: connections, sessions, retained messages, counters, output.

How this works: one ``BrokerState`` is created by ``broker.Broker`` and handed to the parts
that implement the protocol rules (``routing.Router``, ``lifecycle.Lifecycle``). It holds the
state they all touch and the plumbing they all need: queueing output (``send``, ``close``),
counting drops without ever dropping silently (``drop``), answering protocol violations and
keeping the retained-message store. It decides nothing about MQTT by itself.

Output is a list of ``(connection id, packet)`` pairs, in the order they must be sent; a
``None`` packet means "close that connection after sending what precedes". The broker's entry
points hand that list to the transport (``drain``) after every input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import packets as pk
from .aliases import TopicAliases
from .journal import Journal
from .session import Limits, Message, Session, Stats

Out = tuple[int, pk.Packet | None]
log = logging.getLogger("aetherdiag.emulator")

# Properties a broker forwards from a PUBLISH to its subscribers (MQTT 5.0 3.3.2.3).
FORWARDED = frozenset({
    pk.PROP_PAYLOAD_FORMAT, pk.PROP_MESSAGE_EXPIRY, pk.PROP_CONTENT_TYPE, pk.PROP_RESPONSE_TOPIC,
    pk.PROP_CORRELATION_DATA, pk.PROP_USER_PROPERTY,
})


class ProtocolViolation(Exception):
    """Raised by a packet handler: the connection broke a rule; answer ``reason_code``."""

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(slots=True)
class Conn:
    """One network connection as the broker sees it (its session may outlive it)."""

    id: int
    last_seen: float
    version: int | None = None
    session: Session | None = None
    keepalive: int = 0
    clean_disconnect: bool = False
    closing: bool = False
    max_packet: int = 0  # client's Maximum Packet Size (0: no limit)
    peer: tuple[str, int] | None = None  # the TCP peer (host, port), when the transport knows
    node: int = 1  # the cluster node (1-based) whose listener it came in on
    aliases: TopicAliases | None = None  # server-to-client topic aliases (``aliases.py``)


class BrokerState:
    """State and plumbing shared by the broker's parts (see the module docstring)."""

    def __init__(
        self, faults: frozenset[str], limits: Limits, journal: Journal | None = None,
        nodes: int = 1,
    ) -> None:
        self.faults = faults
        self.nodes = nodes  # an emulated cluster's node count (one listener each)
        self.down: set[int] = set()  # nodes taken down (``cluster.NodeControl``)
        self.limits = limits
        self.stats = Stats()
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self.conns: dict[int, Conn] = {}
        self.out: list[Out] = []
        self.now = 0.0  # time of the input being handled (for message expiry)
        self.journal = journal  # the send journal; None (the default): nothing recorded
        self._warned: set[str] = set()

    def drain(self) -> list[Out]:
        out, self.out = self.out, []
        return out

    def send(self, conn: Conn, packet: pk.Packet) -> None:
        self.out.append((conn.id, packet))

    def close(self, conn: Conn) -> None:
        if not conn.closing:
            conn.closing = True
            self.out.append((conn.id, None))

    def violation(self, conn: Conn, reason_code: int, message: str) -> None:
        self.stats.protocol_errors += 1
        log.info("connection %d: protocol error 0x%02X: %s", conn.id, reason_code, message)
        if conn.version == pk.MQTT_5 and conn.session is not None:
            props = {pk.PROP_REASON_STRING: message[:200]}
            self.send(conn, pk.Disconnect(reason_code=reason_code, properties=props))
        self.close(conn)

    def drop(self, reason: str, client_id: str, count: int = 1) -> None:
        self.stats.dropped[reason] += count
        if reason not in self._warned:  # one line per reason, however many clients
            self._warned.add(reason)
            log.warning("dropped message(s) for %s: %s (this and later drops for this reason "
                        "are counted in stats.dropped, not logged)", client_id, reason)

    def expiry(self, props: Mapping[int, Any]) -> float | None:
        """Broker clock time a message with these properties expires (None: never)."""
        interval = props.get(pk.PROP_MESSAGE_EXPIRY)
        return None if interval is None else self.now + int(interval)

    def retain(self, msg: Message) -> None:
        if msg.payload:
            self.retained[msg.topic] = msg
        else:
            self.retained.pop(msg.topic, None)
        self.stats.retained = len(self.retained)
