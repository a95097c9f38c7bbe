"""The broker state machine: packets in, packets out, no I/O.

How this works: the transport tells the broker about connections (``open``, ``lost``), hands it
decoded packets (``handle``) or decoding failures (``reject``), tells it when a socket's send
buffer is full (``set_paused``) and calls ``tick`` now and then for keep-alive, session expiry
and delayed wills. Every call returns a list of ``(connection id, packet)`` pairs to send, in
order; a ``None`` packet means "close that connection after sending what precedes".

``Broker`` is the facade: it dispatches each packet to its handler and keeps the rules of
PUBLISH, SUBSCRIBE and UNSUBSCRIBE from clients here. The rest lives in its parts, which share
one ``state.BrokerState`` (sessions, connections, retained messages, counters, output):
``routing`` (the subscription index, share groups and delivery within in-flight windows),
``subscribing`` (SUBSCRIBE, UNSUBSCRIBE) and ``lifecycle`` (CONNECT, takeover, detach, session
expiry, wills). Time is passed in by the caller, so tests drive it without clocks or sockets.

An emulated cluster (``nodes=N``) is this one broker with every connection tagged with the
node whose listener it came in on (``open(..., node=)``); ``node_down`` cuts a node's
connections as a network failure would, and ``routing.route_split`` says how routing uses the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import packets as pk
from .journal import Journal, PublishedMessage, SentMessage, Takeover
from .lifecycle import Lifecycle
from .properties import check_client_publish
from .routing import Router, SubscriptionIndex
from .session import ClientView, Limits, Message, Session, Stats, SubscriptionView, new_message
from .sharing import Dispatcher, check_fault, make_dispatcher
from .state import FORWARDED, BrokerState, Conn, Out, ProtocolViolation, log
from .subscribing import Subscriptions
from .topics import SHARE_PREFIX, valid_topic_name

__all__ = ["Broker", "Out"]


class Broker:
    """A sans-IO MQTT 3.1.1 / 5.0 broker with faithful shared subscriptions."""

    def __init__(
        self,
        *,
        strategy: str = "round_robin",
        group_strategies: Mapping[str, str] | None = None,
        faults: Iterable[str] = (),
        seed: int | None = None,
        limits: Limits | None = None,
        users: Mapping[str, str] | None = None,
        queue_prefix: bool = True,
        journal: bool | Journal = False,
        nodes: int = 1,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {nodes}")
        self.faults = frozenset(check_fault(f) for f in faults)
        make_dispatcher(strategy, seed, self.faults)  # validates the name early
        self.strategy = strategy
        self.group_strategies = dict(group_strategies or {})
        for name in self.group_strategies.values():
            make_dispatcher(name, seed, self.faults)
        self.seed = seed
        self.limits = limits or Limits()
        self.users = dict(users) if users is not None else None
        self.queue_prefix = queue_prefix
        sends: Journal | None = None
        if isinstance(journal, Journal):
            sends = journal
        elif journal:
            sends = Journal()
        self.nodes = nodes
        self._state = BrokerState(self.faults, self.limits, sends, nodes)
        self._index = SubscriptionIndex(self._new_dispatcher)
        self._router = Router(self._state, self._index)
        self._life = Lifecycle(self._state, self._index, self._router, self.users)
        self._subs = Subscriptions(self._state, self._index, self._router, queue_prefix)

    # The state the parts share, read by callers and tests.
    @property
    def stats(self) -> Stats:
        return self._state.stats

    @property
    def sessions(self) -> dict[str, Session]:
        return self._state.sessions

    @property
    def retained(self) -> dict[str, Message]:
        return self._state.retained

    @property
    def journal(self) -> Journal | None:
        """The send journal (None unless the broker was made with ``journal=True``)."""
        return self._state.journal

    def sent(self, start: int = 0) -> tuple[SentMessage, ...]:
        """PUBLISHes sent to subscribers, oldest first, from the ``start``-th (journal.py)."""
        return self._journal().snapshot(start)

    def published(self, start: int = 0) -> tuple[PublishedMessage, ...]:
        """PUBLISHes clients sent, oldest first, from the ``start``-th on."""
        return self._journal().published_snapshot(start)

    def acks(self, start: int = 0) -> tuple[int, ...]:
        """Indices into ``sent()`` of acknowledged sends, in ack order, from ``start``."""
        return self._journal().acks(start)

    def takeovers(self, start: int = 0) -> tuple[Takeover, ...]:
        """Sessions taken over by a new connection with the same client id, from ``start``."""
        return self._journal().takeovers_snapshot(start)

    def _journal(self) -> Journal:
        if (journal := self._state.journal) is None:
            raise RuntimeError("the send journal is off: make the broker with journal=True")
        return journal

    def clients(self) -> tuple[ClientView, ...]:
        """Every session, read-only: connected, TCP peer, subscriptions in order made, node."""
        conns = self._state.conns
        views = []
        for session in self._state.sessions.values():
            conn = conns.get(session.conn) if session.conn is not None else None
            views.append(ClientView(
                client_id=session.client_id,
                connected=conn is not None,
                peer=conn.peer if conn is not None else None,
                subscriptions=tuple(
                    SubscriptionView(sub.topic_filter, sub.share_name, sub.qos)
                    for sub in session.subscriptions.values()
                ),
                node=session.node,
                conn_id=conn.id if conn is not None else None,
            ))
        return tuple(views)

    def _new_dispatcher(self, share_name: str) -> Dispatcher:
        strategy = self.group_strategies.get(share_name, self.strategy)
        return make_dispatcher(strategy, self.seed, self.faults)

    # -- transport entry points ----------------------------------------------------------------

    def open(
        self, conn_id: int, now: float, peer: tuple[str, int] | None = None, node: int = 1
    ) -> None:
        """A new connection; ``peer`` is its TCP peer address (host, port) when known, ``node``
        the cluster node whose listener took it (the transport refuses a down node's; one
        that comes anyway is ignored)."""
        state = self._state
        state.now = now
        conn = state.conns[conn_id] = Conn(id=conn_id, last_seen=now, peer=peer,
                                           node=self.check_node(node))
        conn.closing = node in state.down
        state.stats.connections += 1

    def check_node(self, node: int) -> int:
        """``node`` when it is one of this cluster's nodes; else ``ValueError``."""
        if not 1 <= node <= self.nodes:
            raise ValueError(f"node {node} is not one of this cluster's 1..{self.nodes}")
        return node

    def node_down(self, node: int, now: float) -> list[Out]:
        """Take ``node`` down: every connection that came in on it ends as in a network
        failure (no DISCONNECT: wills are published, in-flight shared QoS 1 messages handed
        on as the session rules say). The transport must refuse the node's new connections
        until ``node_up``. Returns the closes and whatever the losses caused."""
        state = self._state
        state.down.add(self.check_node(node))
        state.now = now
        # Every connection of the node goes at once, before any loss is handled: what one
        # member held is never handed to another member that is going down with it.
        cut: list[tuple[Session, bool]] = []
        for conn in [c for c in state.conns.values() if c.node == node]:
            state.close(conn)
            del state.conns[conn.id]
            session = conn.session
            if session is not None and session.conn == conn.id:
                session.conn = None
                state.stats.connected -= 1
                cut.append((session, conn.clean_disconnect))
        for session, clean in cut:
            self._life.detach(session, clean=clean, now=now)
        return state.drain()

    def node_up(self, node: int) -> None:
        """``node`` accepts connections again (sessions that outlived it are still here)."""
        self._state.down.discard(self.check_node(node))

    @property
    def nodes_down(self) -> frozenset[int]:
        return frozenset(self._state.down)

    def version(self, conn_id: int) -> int:
        conn = self._state.conns.get(conn_id)
        return (conn.version or pk.MQTT_3_1_1) if conn else pk.MQTT_3_1_1

    def handle(self, conn_id: int, packet: pk.Packet, now: float) -> list[Out]:
        state = self._state
        conn = state.conns.get(conn_id)
        if conn is None or conn.closing:
            return []
        state.now = now
        conn.last_seen = now
        session = conn.session
        try:
            # The packets of every message first; then the rest, in _dispatch.
            if type(packet) is pk.Publish and session is not None:
                self._on_publish(conn, session, packet)
            elif type(packet) is pk.PubAck and session is not None:
                self._on_puback(session, packet)
            else:
                self._dispatch(conn, packet)
        except ProtocolViolation as exc:
            state.violation(conn, exc.reason_code, str(exc))
        out, state.out = state.out, []  # state.drain(), inline on the hot path
        return out

    def reject(self, conn_id: int, error: pk.MalformedPacket, now: float) -> list[Out]:
        """The bytes from ``conn_id`` could not be decoded: answer per spec and close."""
        state = self._state
        conn = state.conns.get(conn_id)
        if conn is None or conn.closing:
            return []
        if conn.version is None:
            state.stats.protocol_errors += 1
            log.info("connection %d: bad CONNECT: %s", conn_id, error)
            if isinstance(error, pk.UnsupportedVersion):
                if error.level == pk.MQTT_5:
                    conn.version = pk.MQTT_5  # so the CONNACK is encoded with its properties
                    state.send(conn, pk.ConnAck(reason_code=pk.RC_UNSUPPORTED_PROTOCOL_VERSION))
                else:
                    state.send(conn, pk.ConnAck(reason_code=pk.RC311_BAD_PROTOCOL))
            state.close(conn)
        else:
            state.violation(conn, error.reason_code, str(error))
        return state.drain()

    def lost(self, conn_id: int, now: float) -> list[Out]:
        """The connection is gone (closed by either side)."""
        state = self._state
        state.now = now
        conn = state.conns.pop(conn_id, None)
        if conn is None:
            return []
        session = conn.session
        if session is not None and session.conn == conn_id:
            state.stats.connected -= 1
            self._life.detach(session, clean=conn.clean_disconnect, now=now)
        return state.drain()

    def set_paused(self, conn_id: int, paused: bool, now: float | None = None) -> list[Out]:
        """The transport's send buffer is full (True) or drained again (False)."""
        if now is not None:
            self._state.now = now
        conn = self._state.conns.get(conn_id)
        if conn is not None and conn.session is not None and conn.session.conn == conn_id:
            conn.session.paused = paused
            if not paused:
                self._router.flush(conn.session)
        return self._state.drain()

    def tick(self, now: float) -> list[Out]:
        """Enforce keep-alive, expire sessions, publish delayed wills."""
        state = self._state
        state.now = now
        for conn in list(state.conns.values()):
            if (
                conn.version is None
                and not conn.closing
                and now - conn.last_seen > self.limits.connect_timeout
            ):  # 3.1.4: no CONNECT within a reasonable time: close the network connection
                log.info("connection %d: no CONNECT within %ss", conn.id,
                         self.limits.connect_timeout)
                state.close(conn)
            if conn.keepalive and not conn.closing and now - conn.last_seen > 1.5 * conn.keepalive:
                log.info("connection %d: keep-alive timeout", conn.id)
                if conn.version == pk.MQTT_5:
                    state.send(conn, pk.Disconnect(reason_code=pk.RC_KEEP_ALIVE_TIMEOUT))
                state.close(conn)
        self._life.expire(now)
        return state.drain()

    def shutdown(self) -> list[Out]:
        state = self._state
        for conn in list(state.conns.values()):
            if conn.version == pk.MQTT_5 and conn.session is not None:
                state.send(conn, pk.Disconnect(reason_code=pk.RC_SERVER_SHUTTING_DOWN))
            state.close(conn)
        return state.drain()

    def pending(self, client_id: str) -> int:
        """Messages held for ``client_id``: in flight plus queued."""
        session = self._state.sessions.get(client_id)
        return session.load() if session else 0

    # -- packets from clients -----------------------------------------------------------------

    def _dispatch(self, conn: Conn, p: pk.Packet) -> None:
        state = self._state
        if isinstance(p, pk.Connect):
            if conn.version is not None:
                raise ProtocolViolation(pk.RC_PROTOCOL_ERROR, "second CONNECT on one connection")
            self._life.connect(conn, p)
            return
        session = conn.session
        if session is None:
            raise ProtocolViolation(pk.RC_PROTOCOL_ERROR, "packet before CONNECT")
        if isinstance(p, pk.Publish):
            self._on_publish(conn, session, p)
        elif isinstance(p, pk.PubAck):
            self._on_puback(session, p)
        elif isinstance(p, pk.PubRec):
            self._on_pubrec(conn, session, p)
        elif isinstance(p, pk.PubComp):
            om = session.outflight.get(p.packet_id)
            if om is not None and om.qos == 2 and om.released:
                del session.outflight[p.packet_id]
                state.stats.acked += 1
                if state.journal is not None:
                    state.journal.acked(session.client_id, p.packet_id)
                self._router.flush(session)
        elif isinstance(p, pk.PubRel):
            if p.packet_id in session.inbound_qos2:
                session.inbound_qos2.discard(p.packet_id)
                state.send(conn, pk.PubComp(packet_id=p.packet_id))
            else:
                rc = pk.RC_PACKET_ID_NOT_FOUND if conn.version == pk.MQTT_5 else 0
                state.send(conn, pk.PubComp(packet_id=p.packet_id, reason_code=rc))
        elif isinstance(p, pk.Subscribe):
            self._subs.subscribe(conn, session, p)
        elif isinstance(p, pk.Unsubscribe):
            self._subs.unsubscribe(conn, session, p)
        elif isinstance(p, pk.PingReq):
            state.send(conn, pk.PingResp())
        elif isinstance(p, pk.Disconnect):
            if p.reason_code != pk.RC_DISCONNECT_WITH_WILL:
                conn.clean_disconnect = True
            expiry = p.properties.get(pk.PROP_SESSION_EXPIRY)
            if expiry is not None:
                if session.expiry == 0 and expiry != 0:
                    raise ProtocolViolation(
                        pk.RC_PROTOCOL_ERROR, "session expiry set on DISCONNECT after 0"
                    )
                session.expiry = expiry
            state.close(conn)
        else:
            raise ProtocolViolation(
                pk.RC_PROTOCOL_ERROR, f"{type(p).__name__} is not sent to a server"
            )

    def _on_publish(self, conn: Conn, session: Session, p: pk.Publish) -> None:
        state = self._state
        v5 = conn.version == pk.MQTT_5
        given = p.properties
        if given:
            check_client_publish(given)  # topic alias, subscription identifier
        topic = p.topic
        if not valid_topic_name(topic):
            raise ProtocolViolation(pk.RC_TOPIC_NAME_INVALID, f"invalid topic name {topic!r}")
        qos = p.qos
        journal = state.journal
        if journal is not None:
            journal.published(state.now, session.client_id, conn.id, topic, p.payload, conn.node)
        if qos == 2 and p.packet_id in session.inbound_qos2:
            state.send(conn, pk.PubRec(packet_id=p.packet_id or 0))
            return
        rc = 0
        if topic.startswith(SHARE_PREFIX) and "share-literal" not in self.faults:
            # A topic name may not be a shared-subscription filter; Mosquitto refuses it too.
            state.drop("publish_to_share_topic", session.client_id)
            rc = pk.RC_NOT_AUTHORIZED
        else:
            if given:
                props = {k: v for k, v in given.items() if k in FORWARDED}
                expires_at = state.expiry(props)
            else:
                props, expires_at = {}, None
            msg = new_message(
                topic, p.payload, qos, p.retain, session.client_id, props, expires_at, conn.node
            )
            state.stats.messages_in += 1
            if p.retain:
                state.retain(msg)
            if not self._router.route(msg) and v5:
                rc = pk.RC_NO_MATCHING_SUBSCRIBERS
        if not v5:
            rc = 0
        if qos == 1:
            state.out.append((conn.id, pk.new_puback(p.packet_id or 0, rc, {})))
        elif qos == 2:
            if rc < 0x80:
                if len(session.inbound_qos2) >= self.limits.inbound_limit(v5):
                    raise ProtocolViolation(
                        pk.RC_RECEIVE_MAXIMUM_EXCEEDED, "too many QoS 2 messages awaiting PUBREL"
                    )
                session.inbound_qos2.add(p.packet_id or 0)
            state.send(conn, pk.PubRec(packet_id=p.packet_id or 0, reason_code=rc))

    def _on_puback(self, session: Session, p: pk.PubAck) -> None:
        om = session.outflight.get(p.packet_id)
        if om is not None and om.qos == 1:
            del session.outflight[p.packet_id]
            state = self._state
            state.stats.acked += 1
            if state.journal is not None:
                state.journal.acked(session.client_id, p.packet_id)
            self._router.flush(session)

    def _on_pubrec(self, conn: Conn, session: Session, p: pk.PubRec) -> None:
        state = self._state
        om = session.outflight.get(p.packet_id)
        if om is None or om.qos != 2:
            rc = pk.RC_PACKET_ID_NOT_FOUND if conn.version == pk.MQTT_5 else 0
            state.send(conn, pk.PubRel(packet_id=p.packet_id, reason_code=rc))
            return
        if p.reason_code >= 0x80:  # refused: discard, never try another member
            del session.outflight[p.packet_id]
            self._router.flush(session)
            return
        om.released = True
        state.send(conn, pk.PubRel(packet_id=p.packet_id))
