"""The send journal: every PUBLISH the broker sent to a subscriber, and whether it was acked.

How this works: off by default (``BrokerState.journal`` is None, and the broker's hot path pays
one ``is None`` check). When on, ``routing.Router.transmit`` (and the resend of in-flight
messages on resume, in ``lifecycle``) calls ``sent`` with what went out, which appends one tuple;
the broker calls ``acked`` when a PUBACK (QoS 1) or PUBCOMP (QoS 2) completes a delivery, which
marks the latest unacknowledged send of that (client id, packet id). The records become frozen
``SentMessage`` objects only in ``snapshot``. The journal is bounded: past ``max_entries``
sends it only counts them in ``dropped``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("aetherdiag.emulator")

MAX_ENTRIES = 2_000_000

# (at, client_id, conn_id, topic, payload, qos, dup, packet_id, node)
_Entry = tuple[float, str, int, str, bytes, int, bool, "int | None", int]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One PUBLISH sent to a subscriber.

    ``at`` is the broker's clock (``time.monotonic()`` under the TCP server) when it was sent;
    ``acked`` is None for QoS 0, else whether the client completed it (PUBACK / PUBCOMP);
    ``node`` is the cluster node (1-based) the connection came in on.
    """

    at: float
    client_id: str
    conn_id: int
    topic: str
    payload: bytes
    qos: int
    dup: bool
    packet_id: int | None
    acked: bool | None
    node: int = 1


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    """One PUBLISH a client sent to the broker (``node``: the cluster node it came in on)."""

    at: float
    client_id: str
    conn_id: int
    topic: str
    payload: bytes
    node: int = 1


@dataclass(frozen=True, slots=True)
class Takeover:
    """A CONNECT that took over the session of a live connection with the same client id
    (``old_peer`` and ``new_peer``: the TCP peers of the connection closed and of the new
    one, when the transport knows them)."""

    at: float
    client_id: str
    old_conn: int
    new_conn: int
    old_peer: tuple[str, int] | None
    new_peer: tuple[str, int] | None


class Journal:
    """A bounded record of the PUBLISH packets sent to subscribers (see the module docstring)."""

    __slots__ = ("_ack_log", "_acked", "_entries", "_pending", "_published", "_takeovers",
                 "dropped", "max_entries")

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self.dropped = 0  # sends not recorded: the journal was full
        self._entries: list[_Entry] = []
        # what clients published: (at, client_id, conn_id, topic, payload, node), e.g. a
        # worker's replies, attributed to the connection that sent them
        self._published: list[tuple[float, str, int, str, bytes, int]] = []
        self._acked: set[int] = set()  # indices into _entries
        self._ack_log: list[int] = []  # the same, in the order the acks came
        # (client id, packet id) -> index of its latest unacknowledged send
        self._pending: dict[tuple[str, int], int] = {}
        self._takeovers: list[Takeover] = []

    def __len__(self) -> int:
        return len(self._entries)

    def sent(
        self, at: float, client_id: str, conn_id: int, topic: str, payload: bytes, qos: int,
        dup: bool, packet_id: int | None, node: int = 1,
    ) -> None:
        entries = self._entries
        n = len(entries)
        if n >= self.max_entries:
            if not self.dropped:
                log.warning("send journal full (%d entries): further sends only counted",
                            self.max_entries)
            self.dropped += 1
            if packet_id is not None:  # an ack must not mark an older send of this id
                self._pending.pop((client_id, packet_id), None)
            return
        entries.append((at, client_id, conn_id, topic, payload, qos, dup, packet_id, node))
        if packet_id is not None:
            self._pending[(client_id, packet_id)] = n

    def published(self, at: float, client_id: str, conn_id: int, topic: str,
                  payload: bytes, node: int = 1) -> None:
        """A client published ``topic`` (bounded like the sends)."""
        if len(self._published) >= self.max_entries:
            return  # the sends' counter tells that the journal is full
        self._published.append((at, client_id, conn_id, topic, payload, node))

    def takeover(self, record: Takeover) -> None:
        """A session was taken over (bounded like the sends)."""
        if len(self._takeovers) < self.max_entries:
            self._takeovers.append(record)

    def takeovers_snapshot(self, start: int = 0) -> tuple[Takeover, ...]:
        """Every recorded takeover, oldest first, from the ``start``-th on."""
        return tuple(self._takeovers[start:])

    def published_snapshot(self, start: int = 0) -> tuple[PublishedMessage, ...]:
        """Every recorded publish from a client, oldest first, from the ``start``-th on."""
        return tuple(PublishedMessage(*row) for row in self._published[start:])

    def acked(self, client_id: str, packet_id: int) -> None:
        """The delivery of ``packet_id`` to ``client_id`` is complete (PUBACK / PUBCOMP)."""
        i = self._pending.pop((client_id, packet_id), None)
        if i is not None:
            self._acked.add(i)
            self._ack_log.append(i)

    def acks(self, start: int = 0) -> tuple[int, ...]:
        """Indices (into ``snapshot()``) of the sends acknowledged, in ack order, from the
        ``start``-th ack on: a reader that keeps its place reads each ack once."""
        return tuple(self._ack_log[start:])

    def snapshot(self, start: int = 0) -> tuple[SentMessage, ...]:
        """Every recorded send, oldest first, from the ``start``-th on (a reader that keeps
        its place reads each send once; ``acks`` tells which were acknowledged since)."""
        acked = self._acked
        return tuple(
            SentMessage(at, client_id, conn_id, topic, payload, qos, dup, pid,
                        None if not qos else i in acked, node)
            for i, (at, client_id, conn_id, topic, payload, qos, dup, pid, node)
            in enumerate(self._entries[start:], start)
        )
