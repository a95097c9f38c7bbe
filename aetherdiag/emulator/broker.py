"""The broker state machine: packets in, packets out, no I/O.

How this works: the transport tells the broker about connections (``open``, ``lost``), hands it
decoded packets (``handle``) or decoding failures (``reject``), tells it when a socket's send
buffer is full (``set_paused``) and calls ``tick`` now and then for keep-alive, session expiry
and delayed wills. Every call returns a list of ``(connection id, packet)`` pairs to send, in
order; a ``None`` packet means "close that connection after sending what precedes".

The broker owns sessions (which outlive connections when persistent), the subscription index,
share groups (see sharing.py), retained messages and every in-flight QoS 1/2 exchange. Time is
passed in by the caller, so tests drive it without clocks or sockets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import codec as c
from .session import NEVER_EXPIRES, Limits, Message, OutMsg, Session, Stats, Subscription
from .sharing import DispatchContext, ShareGroup, check_fault, make_dispatcher
from .topics import (
    SHARE_PREFIX,
    InvalidFilter,
    ParsedFilter,
    literal_filter,
    matches,
    parse_filter,
    valid_topic_name,
)

Out = tuple[int, c.Packet | None]
log = logging.getLogger("aetherdiag.emulator")

# Properties a broker forwards from a PUBLISH to its subscribers (MQTT 5.0 3.3.2.3).
_FORWARDED = frozenset({
    c.PROP_PAYLOAD_FORMAT, c.PROP_MESSAGE_EXPIRY, c.PROP_CONTENT_TYPE, c.PROP_RESPONSE_TOPIC,
    c.PROP_CORRELATION_DATA, c.PROP_USER_PROPERTY,
})


class _ProtocolViolation(Exception):
    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(slots=True)
class _Conn:
    id: int
    last_seen: float
    version: int | None = None
    session: Session | None = None
    keepalive: int = 0
    clean_disconnect: bool = False
    closing: bool = False
    max_packet: int = 0  # client's Maximum Packet Size (0: no limit)


@dataclass(slots=True)
class _FilterEntry:
    plain: dict[str, Subscription] = field(default_factory=dict)
    groups: dict[str, ShareGroup] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.plain and not self.groups


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
    ) -> None:
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
        self.stats = Stats()
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self._conns: dict[int, _Conn] = {}
        self._filters: dict[str, _FilterEntry] = {}
        self._match_cache: dict[str, list[_FilterEntry]] = {}
        self._out: list[Out] = []
        self._auto_id = 0
        self._warned: set[str] = set()
        self._now = 0.0  # time of the input being handled (for message expiry)

    # -- transport entry points ----------------------------------------------------------------

    def open(self, conn_id: int, now: float) -> None:
        self._now = now
        self._conns[conn_id] = _Conn(id=conn_id, last_seen=now)
        self.stats.connections += 1

    def version(self, conn_id: int) -> int:
        conn = self._conns.get(conn_id)
        return (conn.version or c.MQTT_3_1_1) if conn else c.MQTT_3_1_1

    def handle(self, conn_id: int, packet: c.Packet, now: float) -> list[Out]:
        conn = self._conns.get(conn_id)
        if conn is None or conn.closing:
            return []
        self._now = now
        conn.last_seen = now
        try:
            self._dispatch(conn, packet, now)
        except _ProtocolViolation as exc:
            self._violation(conn, exc.reason_code, str(exc))
        return self._drain()

    def reject(self, conn_id: int, error: c.MalformedPacket, now: float) -> list[Out]:
        """The bytes from ``conn_id`` could not be decoded: answer per spec and close."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.closing:
            return []
        if conn.version is None:
            self.stats.protocol_errors += 1
            log.info("connection %d: bad CONNECT: %s", conn_id, error)
            if isinstance(error, c.UnsupportedVersion):
                if error.level == c.MQTT_5:
                    conn.version = c.MQTT_5  # so the CONNACK is encoded with its properties
                    self._send(conn, c.ConnAck(reason_code=c.RC_UNSUPPORTED_PROTOCOL_VERSION))
                else:
                    self._send(conn, c.ConnAck(reason_code=c.RC311_BAD_PROTOCOL))
            self._close(conn)
        else:
            self._violation(conn, error.reason_code, str(error))
        return self._drain()

    def lost(self, conn_id: int, now: float) -> list[Out]:
        """The connection is gone (closed by either side)."""
        self._now = now
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return []
        session = conn.session
        if session is not None and session.conn == conn_id:
            self.stats.connected -= 1
            self._detach(session, clean=conn.clean_disconnect, now=now)
        return self._drain()

    def set_paused(self, conn_id: int, paused: bool) -> list[Out]:
        """The transport's send buffer is full (True) or drained again (False)."""
        conn = self._conns.get(conn_id)
        if conn is not None and conn.session is not None and conn.session.conn == conn_id:
            conn.session.paused = paused
            if not paused:
                self._flush(conn.session)
        return self._drain()

    def tick(self, now: float) -> list[Out]:
        """Enforce keep-alive, expire sessions, publish delayed wills."""
        self._now = now
        for conn in list(self._conns.values()):
            if (
                conn.version is None
                and not conn.closing
                and now - conn.last_seen > self.limits.connect_timeout
            ):  # 3.1.4: no CONNECT within a reasonable time: close the network connection
                log.info("connection %d: no CONNECT within %ss", conn.id,
                         self.limits.connect_timeout)
                self._close(conn)
            if conn.keepalive and not conn.closing and now - conn.last_seen > 1.5 * conn.keepalive:
                log.info("connection %d: keep-alive timeout", conn.id)
                if conn.version == c.MQTT_5:
                    self._send(conn, c.Disconnect(reason_code=c.RC_KEEP_ALIVE_TIMEOUT))
                self._close(conn)
        for session in list(self.sessions.values()):
            if session.conn is not None:
                continue
            if session.will_at is not None and session.will_at <= now:
                self._publish_will(session)
            if session.expires_at is not None and session.expires_at <= now:
                self._end_session(session)
        return self._drain()

    def shutdown(self) -> list[Out]:
        for conn in list(self._conns.values()):
            if conn.version == c.MQTT_5 and conn.session is not None:
                self._send(conn, c.Disconnect(reason_code=c.RC_SERVER_SHUTTING_DOWN))
            self._close(conn)
        return self._drain()

    def pending(self, client_id: str) -> int:
        """Messages held for ``client_id``: in flight plus queued."""
        session = self.sessions.get(client_id)
        return session.load() if session else 0

    # -- plumbing -----------------------------------------------------------------------------

    def _drain(self) -> list[Out]:
        out, self._out = self._out, []
        return out

    def _send(self, conn: _Conn, packet: c.Packet) -> None:
        self._out.append((conn.id, packet))

    def _close(self, conn: _Conn) -> None:
        if not conn.closing:
            conn.closing = True
            self._out.append((conn.id, None))

    def _violation(self, conn: _Conn, reason_code: int, message: str) -> None:
        self.stats.protocol_errors += 1
        log.info("connection %d: protocol error 0x%02X: %s", conn.id, reason_code, message)
        if conn.version == c.MQTT_5 and conn.session is not None:
            props = {c.PROP_REASON_STRING: message[:200]}
            self._send(conn, c.Disconnect(reason_code=reason_code, properties=props))
        self._close(conn)

    def _drop(self, reason: str, client_id: str, count: int = 1) -> None:
        self.stats.dropped[reason] += count
        key = f"{reason}:{client_id}"
        if key not in self._warned:
            self._warned.add(key)
            log.warning("dropped message(s) for %s: %s (counted in stats.dropped)",
                        client_id, reason)

    def _dispatch(self, conn: _Conn, p: c.Packet, now: float) -> None:
        if isinstance(p, c.Connect):
            if conn.version is not None:
                raise _ProtocolViolation(c.RC_PROTOCOL_ERROR, "second CONNECT on one connection")
            self._on_connect(conn, p)
            return
        session = conn.session
        if session is None:
            raise _ProtocolViolation(c.RC_PROTOCOL_ERROR, "packet before CONNECT")
        if isinstance(p, c.Publish):
            self._on_publish(conn, session, p)
        elif isinstance(p, c.PubAck):
            om = session.outflight.get(p.packet_id)
            if om is not None and om.qos == 1:
                del session.outflight[p.packet_id]
                self.stats.acked += 1
                self._flush(session)
        elif isinstance(p, c.PubRec):
            self._on_pubrec(conn, session, p)
        elif isinstance(p, c.PubComp):
            om = session.outflight.get(p.packet_id)
            if om is not None and om.qos == 2 and om.released:
                del session.outflight[p.packet_id]
                self.stats.acked += 1
                self._flush(session)
        elif isinstance(p, c.PubRel):
            if p.packet_id in session.inbound_qos2:
                session.inbound_qos2.discard(p.packet_id)
                self._send(conn, c.PubComp(packet_id=p.packet_id))
            else:
                rc = c.RC_PACKET_ID_NOT_FOUND if conn.version == c.MQTT_5 else 0
                self._send(conn, c.PubComp(packet_id=p.packet_id, reason_code=rc))
        elif isinstance(p, c.Subscribe):
            self._on_subscribe(conn, session, p)
        elif isinstance(p, c.Unsubscribe):
            self._on_unsubscribe(conn, session, p)
        elif isinstance(p, c.PingReq):
            self._send(conn, c.PingResp())
        elif isinstance(p, c.Disconnect):
            if p.reason_code != c.RC_DISCONNECT_WITH_WILL:
                conn.clean_disconnect = True
            expiry = p.properties.get(c.PROP_SESSION_EXPIRY)
            if expiry is not None:
                if session.expiry == 0 and expiry != 0:
                    raise _ProtocolViolation(
                        c.RC_PROTOCOL_ERROR, "session expiry set on DISCONNECT after 0"
                    )
                session.expiry = expiry
            self._close(conn)
        else:
            raise _ProtocolViolation(
                c.RC_PROTOCOL_ERROR, f"{type(p).__name__} is not sent to a server"
            )

    # -- CONNECT ------------------------------------------------------------------------------

    def _on_connect(self, conn: _Conn, p: c.Connect) -> None:
        conn.version = p.protocol_level
        v5 = p.protocol_level == c.MQTT_5
        if self.users is not None and (
            p.username is None
            or self.users.get(p.username) != (p.password or b"").decode("utf-8", "replace")
        ):
            self._send(conn, c.ConnAck(reason_code=0x86 if v5 else 4))
            self._close(conn)
            return
        if p.will is not None and not valid_topic_name(p.will.topic):
            if v5:
                self._send(conn, c.ConnAck(reason_code=c.RC_TOPIC_NAME_INVALID))
            self._close(conn)
            return
        if v5 and (
            p.properties.get(c.PROP_RECEIVE_MAXIMUM) == 0
            or p.properties.get(c.PROP_MAXIMUM_PACKET_SIZE) == 0
        ):  # 3.1.2.11: a Protocol Error; refuse before any session is touched
            self._send(conn, c.ConnAck(reason_code=c.RC_PROTOCOL_ERROR))
            self._close(conn)
            return
        client_id = p.client_id
        assigned = None
        if not client_id:
            if not v5 and not p.clean_start:
                self._send(conn, c.ConnAck(reason_code=c.RC311_ID_REJECTED))
                self._close(conn)
                return
            self._auto_id += 1
            client_id = assigned = f"aetherdiag-auto-{self._auto_id}"
        if v5:
            expiry = int(p.properties.get(c.PROP_SESSION_EXPIRY, 0))
        else:
            expiry = 0 if p.clean_start else NEVER_EXPIRES

        session = self.sessions.get(client_id)
        if session is not None and session.conn is not None:
            old = self._conns.get(session.conn)
            if old is not None:
                if old.version == c.MQTT_5:
                    self._send(old, c.Disconnect(reason_code=c.RC_SESSION_TAKEN_OVER))
                self._close(old)
            self.stats.connected -= 1
            session.conn = None
            ends = p.clean_start or session.expiry == 0  # a clean session ends with its link
            if session.will is not None:
                if ends or not session.will.properties.get(c.PROP_WILL_DELAY, 0):
                    self._publish_will(session)
                else:  # resumed within the Will Delay Interval: no will (3.1.3.2.2)
                    session.will = None
            if ends:
                self._end_session(session)
                session = None
        if session is not None and p.clean_start:
            self._end_session(session)
            session = None
        present = session is not None
        if session is None:
            session = Session(client_id=client_id, version=p.protocol_level)
            self.sessions[client_id] = session
        session.version = p.protocol_level
        session.conn = conn.id
        session.expiry = expiry
        session.expires_at = None
        session.will = p.will
        session.will_at = None
        session.paused = False
        receive_max = int(p.properties.get(c.PROP_RECEIVE_MAXIMUM, 65535))
        session.window = max(1, min(receive_max, self.limits.max_inflight))
        conn.session = session
        conn.keepalive = p.keepalive
        conn.max_packet = int(p.properties.get(c.PROP_MAXIMUM_PACKET_SIZE, 0))
        self.stats.connected += 1

        props: dict[int, Any] = {}
        if v5:
            props = {
                c.PROP_RETAIN_AVAILABLE: 1,
                c.PROP_WILDCARD_SUB_AVAILABLE: 1,
                c.PROP_SUB_ID_AVAILABLE: 1,
                c.PROP_SHARED_SUB_AVAILABLE: 0 if "share-unsupported" in self.faults else 1,
                c.PROP_MAXIMUM_PACKET_SIZE: self.limits.max_packet_size,
            }
            if assigned:
                props[c.PROP_ASSIGNED_CLIENT_ID] = assigned
        self._send(conn, c.ConnAck(session_present=present, properties=props))
        if present:
            # Resume: resend what was in flight (DUP), then whatever queued while away.
            for om in list(session.outflight.values()):
                if om.released:
                    self._send(conn, c.PubRel(packet_id=om.packet_id))
                else:
                    self._send(conn, self._publish_packet(session, om, dup=True))
            self._flush(session)

    # -- PUBLISH in ---------------------------------------------------------------------------

    def _on_publish(self, conn: _Conn, session: Session, p: c.Publish) -> None:
        v5 = conn.version == c.MQTT_5
        if c.PROP_TOPIC_ALIAS in p.properties:
            raise _ProtocolViolation(0x94, "topic alias used but Topic Alias Maximum is 0")
        if not valid_topic_name(p.topic):
            raise _ProtocolViolation(c.RC_TOPIC_NAME_INVALID, f"invalid topic name {p.topic!r}")
        if p.qos == 2 and p.packet_id in session.inbound_qos2:
            self._send(conn, c.PubRec(packet_id=p.packet_id or 0))
            return
        rc = 0
        if p.topic.startswith(SHARE_PREFIX) and "share-literal" not in self.faults:
            # A topic name may not be a shared-subscription filter; Mosquitto refuses it too.
            self._drop("publish_to_share_topic", session.client_id)
            rc = c.RC_NOT_AUTHORIZED
        else:
            props = {k: v for k, v in p.properties.items() if k in _FORWARDED}
            msg = Message(
                topic=p.topic, payload=p.payload, qos=p.qos, retain=p.retain,
                publisher=session.client_id, properties=props, expires_at=self._expiry(props),
            )
            self.stats.messages_in += 1
            if p.retain:
                self._retain(msg)
            if not self._route(msg) and v5:
                rc = c.RC_NO_MATCHING_SUBSCRIBERS
        if not v5:
            rc = 0
        if p.qos == 1:
            self._send(conn, c.PubAck(packet_id=p.packet_id or 0, reason_code=rc))
        elif p.qos == 2:
            if rc < 0x80:
                if len(session.inbound_qos2) >= self.limits.max_inbound_qos2:
                    raise _ProtocolViolation(
                        c.RC_RECEIVE_MAXIMUM_EXCEEDED, "too many QoS 2 messages awaiting PUBREL"
                    )
                session.inbound_qos2.add(p.packet_id or 0)
            self._send(conn, c.PubRec(packet_id=p.packet_id or 0, reason_code=rc))

    def _expiry(self, props: Mapping[int, Any]) -> float | None:
        interval = props.get(c.PROP_MESSAGE_EXPIRY)
        return None if interval is None else self._now + int(interval)

    def _retain(self, msg: Message) -> None:
        if msg.payload:
            self.retained[msg.topic] = msg
        else:
            self.retained.pop(msg.topic, None)
        self.stats.retained = len(self.retained)

    def _match(self, topic: str) -> list[_FilterEntry]:
        hit = self._match_cache.get(topic)
        if hit is None:
            if len(self._match_cache) > 65536:
                self._match_cache.clear()
            hit = [e for f, e in self._filters.items() if matches(f, topic)]
            self._match_cache[topic] = hit
        return hit

    def _route(self, msg: Message) -> int:
        """Deliver ``msg`` to every matching subscription; return the number of deliveries."""
        plain: dict[str, tuple[int, bool, tuple[int, ...]]] = {}
        count = 0
        for entry in self._match(msg.topic):
            for sub in entry.plain.values():
                if sub.no_local and sub.client_id == msg.publisher:
                    continue
                ids: tuple[int, ...] = (sub.sub_id,) if sub.sub_id else ()
                prev = plain.get(sub.client_id)
                if prev is None:
                    plain[sub.client_id] = (sub.qos, sub.retain_as_published, ids)
                else:  # overlapping filters in one session: one copy, highest QoS, all ids
                    plain[sub.client_id] = (
                        max(prev[0], sub.qos), prev[1] or sub.retain_as_published, prev[2] + ids
                    )
            for group in entry.groups.values():
                if "share-fanout" in self.faults:
                    chosen: list[str] = list(group.members)
                else:
                    one = self._pick(group, msg, exclude=None)
                    chosen = [one] if one is not None else []
                for member in chosen:
                    session = self.sessions[member]
                    sub = session.subscriptions[_share_key(group.name, group.topic_filter)]
                    self._deliver(session, msg, sub.qos, False, (group.name, group.topic_filter),
                                  (sub.sub_id,) if sub.sub_id else ())
                    count += 1
        for client_id, (qos, rap, ids) in plain.items():
            self._deliver(self.sessions[client_id], msg, qos, rap and msg.retain, None, ids)
            count += 1
        return count

    def _pick(self, group: ShareGroup, msg: Message, exclude: str | None) -> str | None:
        sessions = self.sessions

        def online(member: str) -> bool:
            return member != exclude and sessions[member].conn is not None

        def other(member: str) -> bool:
            return member != exclude

        ctx = DispatchContext(
            publisher=msg.publisher, topic=msg.topic, inflight=lambda m: sessions[m].load()
        )
        chosen = group.dispatcher.choose(group.members, online, ctx)
        if chosen is None:  # nobody connected: queue for an offline persistent member
            chosen = group.dispatcher.choose(group.members, other, ctx)
        return chosen

    # -- PUBLISH out --------------------------------------------------------------------------

    def _deliver(
        self, session: Session, msg: Message, granted: int, retain: bool,
        share: tuple[str, str] | None, sub_ids: tuple[int, ...],
    ) -> None:
        om = OutMsg(message=msg, qos=min(msg.qos, granted), retain=retain, share=share,
                    sub_ids=sub_ids)
        self._enqueue(session, om)

    def _enqueue(self, session: Session, om: OutMsg) -> None:
        if (
            session.conn is None
            or session.paused
            or session.queue
            or (om.qos and len(session.outflight) >= session.window)
        ):
            if session.conn is None and om.qos == 0:
                self._drop("offline_qos0", session.client_id)
            elif len(session.queue) >= self.limits.max_queued:
                self._drop("queue_full", session.client_id)
            else:
                session.queue.append(om)
            return
        self._transmit(session, om)

    def _flush(self, session: Session) -> None:
        queue = session.queue
        while queue and session.conn is not None and not session.paused:
            if queue[0].qos and len(session.outflight) >= session.window:
                return
            self._transmit(session, queue.popleft())

    def _transmit(self, session: Session, om: OutMsg) -> None:
        assert session.conn is not None
        conn = self._conns[session.conn]
        if conn.max_packet and _approx_size(om) > conn.max_packet:
            self._drop("client_max_packet_size", session.client_id)
            return
        expires_at = om.message.expires_at
        if expires_at is not None and expires_at <= self._now:
            self._drop("message_expired", session.client_id)  # 3.3.2.3.3: never started
            return
        if om.qos:
            om.packet_id = session.allocate_pid()
            session.outflight[om.packet_id] = om
        packet = self._publish_packet(session, om, dup=False)
        self._out.append((conn.id, packet))
        self.stats.deliveries += 1
        self.stats.deliveries_by_client[session.client_id] += 1
        if om.qos and "redeliver" in self.faults:
            self._out.append((conn.id, self._publish_packet(session, om, dup=True)))
            self.stats.dup_resends += 1

    def _publish_packet(self, session: Session, om: OutMsg, dup: bool) -> c.Publish:
        msg = om.message
        props = msg.properties
        if msg.expires_at is not None:  # 3.3.2.3.3: the lifetime left, not the original
            left = max(1, math.ceil(msg.expires_at - self._now))
            props = {**props, c.PROP_MESSAGE_EXPIRY: left}
        if om.sub_ids and session.version == c.MQTT_5:
            props = {**props, c.PROP_SUBSCRIPTION_ID: om.sub_ids}
        return c.Publish(
            topic=msg.topic, payload=msg.payload, qos=om.qos, retain=om.retain, dup=dup,
            packet_id=om.packet_id or None, properties=props,
        )

    def _on_pubrec(self, conn: _Conn, session: Session, p: c.PubRec) -> None:
        om = session.outflight.get(p.packet_id)
        if om is None or om.qos != 2:
            rc = c.RC_PACKET_ID_NOT_FOUND if conn.version == c.MQTT_5 else 0
            self._send(conn, c.PubRel(packet_id=p.packet_id, reason_code=rc))
            return
        if p.reason_code >= 0x80:  # refused: discard, never try another member
            del session.outflight[p.packet_id]
            self._flush(session)
            return
        om.released = True
        self._send(conn, c.PubRel(packet_id=p.packet_id))

    # -- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

    def _parse(self, raw: str) -> ParsedFilter:
        if "share-literal" in self.faults:
            return literal_filter(raw)
        return parse_filter(raw, queue_prefix=self.queue_prefix)

    def _on_subscribe(self, conn: _Conn, session: Session, p: c.Subscribe) -> None:
        v5 = conn.version == c.MQTT_5
        sub_ids = p.properties.get(c.PROP_SUBSCRIPTION_ID, ())
        sub_id = sub_ids[0] if sub_ids else None
        if sub_id == 0:
            raise _ProtocolViolation(c.RC_PROTOCOL_ERROR, "subscription identifier 0")
        codes: list[int] = []
        retained: list[tuple[Subscription, Message]] = []
        for req in p.subscriptions:
            try:
                pf = self._parse(req.topic_filter)
            except InvalidFilter:
                codes.append(c.RC_TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            if pf.share_name is not None:
                if "share-unsupported" in self.faults:
                    codes.append(c.RC_SHARED_SUBS_NOT_SUPPORTED if v5 else 0x80)
                    continue
                if req.no_local and v5:
                    raise _ProtocolViolation(
                        c.RC_PROTOCOL_ERROR, "No Local set on a shared subscription"
                    )
            key = _share_key(pf.share_name, pf.topic_filter) if pf.shared else pf.topic_filter
            existed = key in session.subscriptions
            sub = Subscription(
                client_id=session.client_id, raw=key, topic_filter=pf.topic_filter,
                share_name=pf.share_name, qos=req.qos, no_local=req.no_local,
                retain_as_published=req.retain_as_published, sub_id=sub_id,
            )
            session.subscriptions[key] = sub
            self._index_add(sub)
            codes.append(req.qos)
            if pf.shared and "share-retained" not in self.faults:
                continue  # MQTT 5.0 4.8.2: retained messages are not sent to shared subs
            if req.retain_handling == 2 or (req.retain_handling == 1 and existed):
                continue
            for topic, msg in list(self.retained.items()):
                if msg.expires_at is not None and msg.expires_at <= self._now:
                    del self.retained[topic]  # expired: no longer retained (3.3.2.3.3)
                    self.stats.retained = len(self.retained)
                elif matches(pf.topic_filter, topic):
                    retained.append((sub, msg))
        self._send(conn, c.SubAck(packet_id=p.packet_id, reason_codes=tuple(codes)))
        for sub, msg in retained:
            share = (sub.share_name, sub.topic_filter) if sub.share_name is not None else None
            self._deliver(session, msg, sub.qos, True, share, (sub.sub_id,) if sub.sub_id else ())

    def _on_unsubscribe(self, conn: _Conn, session: Session, p: c.Unsubscribe) -> None:
        codes: list[int] = []
        for raw in p.topic_filters:
            try:
                pf = self._parse(raw)
            except InvalidFilter:
                codes.append(c.RC_TOPIC_FILTER_INVALID)
                continue
            key = _share_key(pf.share_name, pf.topic_filter) if pf.shared else pf.topic_filter
            sub = session.subscriptions.pop(key, None)
            if sub is None:
                codes.append(c.RC_NO_SUBSCRIPTION_EXISTED)
            else:
                self._index_remove(sub)
                codes.append(c.RC_SUCCESS)
        self._send(conn, c.UnsubAck(packet_id=p.packet_id, reason_codes=tuple(codes)))

    def _index_add(self, sub: Subscription) -> None:
        entry = self._filters.get(sub.topic_filter)
        if entry is None:
            entry = self._filters[sub.topic_filter] = _FilterEntry()
            self._match_cache.clear()
        if sub.share_name is None:
            entry.plain[sub.client_id] = sub
            return
        group = entry.groups.get(sub.share_name)
        if group is None:
            strategy = self.group_strategies.get(sub.share_name, self.strategy)
            group = ShareGroup(
                name=sub.share_name, topic_filter=sub.topic_filter,
                dispatcher=make_dispatcher(strategy, self.seed, self.faults),
            )
            entry.groups[sub.share_name] = group
        group.add(sub.client_id)

    def _index_remove(self, sub: Subscription) -> None:
        entry = self._filters.get(sub.topic_filter)
        if entry is None:
            return
        if sub.share_name is None:
            entry.plain.pop(sub.client_id, None)
        else:
            group = entry.groups.get(sub.share_name)
            if group is not None:
                group.remove(sub.client_id)
                if not group.members:
                    del entry.groups[sub.share_name]
        if entry.empty():
            del self._filters[sub.topic_filter]
            self._match_cache.clear()

    # -- sessions ending ----------------------------------------------------------------------

    def _detach(self, session: Session, clean: bool, now: float) -> None:
        session.conn = None
        session.paused = False
        if clean:
            session.will = None
        elif session.will is not None:
            delay = int(session.will.properties.get(c.PROP_WILL_DELAY, 0))
            if delay and session.expiry:
                session.will_at = now + min(delay, session.expiry)
            else:
                self._publish_will(session)
        ending = session.expiry == 0
        self._release_shared(session, ending)
        if ending:
            self._end_session(session)
        elif session.expiry != NEVER_EXPIRES:
            session.expires_at = now + session.expiry

    def _release_shared(self, session: Session, ending: bool) -> None:
        """A member's connection broke: hand its unacknowledged shared QoS 0/1 messages on.

        MQTT 5.0 4.8.2: QoS 1 may be sent to another member; QoS 2 must not be moved.
        """
        lose = "lose-on-disconnect" in self.faults
        if lose and not ending:
            return  # Mosquitto-like: a persistent member keeps them for its return
        movable = [om for om in session.outflight.values() if om.share and om.qos < 2]
        movable += [om for om in session.queue if om.share and om.qos < 2]
        for om in movable:
            target = None
            if not lose:
                assert om.share is not None
                entry = self._filters.get(om.share[1])
                group = entry.groups.get(om.share[0]) if entry else None
                if group is not None:
                    target = self._pick(group, om.message, exclude=session.client_id)
            if not ending and (target is None or self.sessions[target].conn is None):
                # Nobody else is connected: keep it where it is, so that an in-flight message
                # is re-sent with DUP and its original packet id on resume (4.4).
                continue
            if om.packet_id and session.outflight.get(om.packet_id) is om:
                del session.outflight[om.packet_id]
            else:
                session.queue.remove(om)
            if target is None:
                self._drop("lost_on_disconnect" if lose else "no_member_for_redispatch",
                           session.client_id)
                continue
            om.packet_id = 0
            om.released = False
            self.stats.redispatched += 1
            self._enqueue(self.sessions[target], om)

    def _end_session(self, session: Session) -> None:
        if session.will is not None and session.conn is None and session.will_at is not None:
            self._publish_will(session)
        # 4.8.2: a member's session ending (expiry, or a clean-start takeover) SHOULD hand its
        # unacknowledged shared QoS 1 messages to another member rather than lose them.
        self._release_shared(session, ending=True)
        for sub in list(session.subscriptions.values()):
            self._index_remove(sub)
        session.subscriptions.clear()
        left = len(session.outflight) + len(session.queue)
        if left:
            self._drop("session_ended", session.client_id, left)
        session.outflight.clear()
        session.queue.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def _publish_will(self, session: Session) -> None:
        will = session.will
        session.will = None
        session.will_at = None
        if will is None:
            return
        props = {k: v for k, v in will.properties.items() if k in _FORWARDED}
        msg = Message(topic=will.topic, payload=will.payload, qos=will.qos, retain=will.retain,
                      publisher=session.client_id, properties=props,
                      expires_at=self._expiry(props))
        self.stats.messages_in += 1
        if will.retain:
            self._retain(msg)
        self._route(msg)


def _share_key(name: str | None, topic_filter: str) -> str:
    return f"{SHARE_PREFIX}{name}/{topic_filter}"


def _approx_size(om: OutMsg) -> int:
    return 16 + len(om.message.topic.encode("utf-8")) + len(om.message.payload)
