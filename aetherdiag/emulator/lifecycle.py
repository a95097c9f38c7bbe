"""Session lifecycle: CONNECT, takeover, detach, expiry and will messages.

How this works: ``Lifecycle.connect`` authenticates a CONNECT, takes an existing session over
(the old connection is closed; a clean session ends with it and a pending will is published
or, on a resume within the Will Delay Interval, cancelled), creates or resumes the session,
answers CONNACK and, on a resume, re-sends what was in flight with DUP before the queue.

When a connection goes away, ``detach`` keeps a persistent session (until its expiry time) or
ends it. Either way the member's unacknowledged shared QoS 0/1 messages are handed to another
member of their group (MQTT 5.0 4.8.2; QoS 2 is never moved): ``release_shared``. A session
that ends (``end_session``) leaves the subscription index, and whatever it still held is
counted as dropped. ``expire`` (called from ``Broker.tick``) publishes delayed wills and ends
sessions whose expiry interval has run out. The faults ``offline-member-keeps-share`` (a
persistent member keeps what it held while away), ``expired-session-drops`` (an expired
session's tasks are dropped) and ``redispatch-misses-wildcards`` (the group is looked up by
the message topic) change ``release_shared`` and ``end_session``.
"""

from __future__ import annotations

from typing import Any

from . import packets as pk
from .aliases import TopicAliases
from .journal import Takeover
from .routing import Router, SubscriptionIndex
from .session import NEVER_EXPIRES, Message, Session
from .state import FORWARDED, BrokerState, Conn
from .topics import valid_topic_name


class Lifecycle:
    """Creates, resumes, detaches and ends sessions; publishes wills."""

    def __init__(
        self, state: BrokerState, index: SubscriptionIndex, router: Router,
        users: dict[str, str] | None,
    ) -> None:
        self.state = state
        self.index = index
        self.router = router
        self.users = users
        self._auto_id = 0

    # -- CONNECT ------------------------------------------------------------------------------

    def connect(self, conn: Conn, p: pk.Connect) -> None:
        state = self.state
        conn.version = p.protocol_level
        v5 = p.protocol_level == pk.MQTT_5
        if self.users is not None and (
            p.username is None
            or self.users.get(p.username) != (p.password or b"").decode("utf-8", "replace")
        ):
            state.send(conn, pk.ConnAck(reason_code=0x86 if v5 else 4))
            state.close(conn)
            return
        if p.will is not None and not valid_topic_name(p.will.topic):
            if v5:
                state.send(conn, pk.ConnAck(reason_code=pk.RC_TOPIC_NAME_INVALID))
            state.close(conn)
            return
        if v5 and (
            p.properties.get(pk.PROP_RECEIVE_MAXIMUM) == 0
            or p.properties.get(pk.PROP_MAXIMUM_PACKET_SIZE) == 0
        ):  # 3.1.2.11: a Protocol Error; refuse before any session is touched
            state.send(conn, pk.ConnAck(reason_code=pk.RC_PROTOCOL_ERROR))
            state.close(conn)
            return
        client_id = p.client_id
        assigned = None
        if not client_id:
            if not v5 and not p.clean_start:
                state.send(conn, pk.ConnAck(reason_code=pk.RC311_ID_REJECTED))
                state.close(conn)
                return
            self._auto_id += 1
            client_id = assigned = f"aetherdiag-auto-{self._auto_id}"
        if v5:
            expiry = int(p.properties.get(pk.PROP_SESSION_EXPIRY, 0))
        else:
            expiry = 0 if p.clean_start else NEVER_EXPIRES

        session = state.sessions.get(client_id)
        if session is not None and session.conn is not None:
            if state.journal is not None:
                old = state.conns.get(session.conn)
                state.journal.takeover(Takeover(
                    at=state.now, client_id=client_id, old_conn=session.conn, new_conn=conn.id,
                    old_peer=old.peer if old is not None else None, new_peer=conn.peer))
            session = self._take_over(session, p)
        if session is not None and p.clean_start:
            self.end_session(session)
            session = None
        present = session is not None
        if session is None:
            session = Session(client_id=client_id, version=p.protocol_level)
            state.sessions[client_id] = session
        session.version = p.protocol_level
        session.conn = conn.id
        session.node = conn.node
        session.expiry = expiry
        session.expires_at = None
        session.will = p.will
        session.will_at = None
        session.paused = False
        receive_max = int(p.properties.get(pk.PROP_RECEIVE_MAXIMUM, 65535))
        session.window = max(1, min(receive_max, state.limits.max_inflight))
        conn.session = session
        conn.keepalive = p.keepalive
        conn.max_packet = int(p.properties.get(pk.PROP_MAXIMUM_PACKET_SIZE, 0))
        state.stats.connected += 1

        props: dict[int, Any] = {}
        if v5:
            props = {
                pk.PROP_RETAIN_AVAILABLE: 1,
                pk.PROP_WILDCARD_SUB_AVAILABLE: 1,
                pk.PROP_SUB_ID_AVAILABLE: 1,
                pk.PROP_SHARED_SUB_AVAILABLE: 0 if "share-unsupported" in state.faults else 1,
                pk.PROP_MAXIMUM_PACKET_SIZE: state.limits.max_packet_size,
            }
            if assigned:
                props[pk.PROP_ASSIGNED_CLIENT_ID] = assigned
            self._policies(conn, p, props)
        state.send(conn, pk.ConnAck(session_present=present, properties=props))
        if present:
            # Resume: resend what was in flight (DUP), then whatever queued while away.
            for om in list(session.outflight.values()):
                if om.released:
                    state.send(conn, pk.PubRel(packet_id=om.packet_id))
                else:
                    again = self.router.publish_packet(session, om, dup=True)
                    state.send(conn, again if conn.aliases is None else conn.aliases.apply(again))
                    if state.journal is not None:
                        msg = om.message
                        state.journal.sent(state.now, session.client_id, conn.id, msg.topic,
                                           msg.payload, om.qos, True, om.packet_id, conn.node)
            self.router.flush(session)

    def _policies(self, conn: Conn, p: pk.Connect, props: dict[int, Any]) -> None:
        """The v5 CONNACK properties of the ``emulator serve`` options, and their effect on
        the connection: Receive Maximum (absent: 65535), Server Keep Alive (replaces the
        client's keep-alive, 3.2.2.3.14) and server-to-client topic aliases."""
        limits = self.state.limits
        if limits.receive_maximum < 65535:
            props[pk.PROP_RECEIVE_MAXIMUM] = limits.receive_maximum
        if limits.server_keep_alive is not None:
            props[pk.PROP_SERVER_KEEP_ALIVE] = conn.keepalive = limits.server_keep_alive
        allowed = int(p.properties.get(pk.PROP_TOPIC_ALIAS_MAXIMUM, 0))
        if limits.topic_aliases and allowed:
            conn.aliases = TopicAliases(allowed)

    def _take_over(self, session: Session, p: pk.Connect) -> Session | None:
        """A CONNECT for a connected session: close the old link; None if the session ended."""
        state = self.state
        assert session.conn is not None
        old = state.conns.get(session.conn)
        if old is not None:
            if old.version == pk.MQTT_5:
                state.send(old, pk.Disconnect(reason_code=pk.RC_SESSION_TAKEN_OVER))
            state.close(old)
        state.stats.connected -= 1
        session.conn = None
        ends = p.clean_start or session.expiry == 0  # a clean session ends with its link
        if session.will is not None:
            if ends or not session.will.properties.get(pk.PROP_WILL_DELAY, 0):
                self.publish_will(session)
            else:  # resumed within the Will Delay Interval: no will (3.1.3.2.2)
                session.will = None
        if ends:
            self.end_session(session)
            return None
        return session

    # -- sessions ending ----------------------------------------------------------------------

    def detach(self, session: Session, clean: bool, now: float) -> None:
        """The session's connection is gone; ``clean``: it sent DISCONNECT without a will."""
        session.conn = None
        session.paused = False
        if clean:
            session.will = None
        elif session.will is not None:
            delay = int(session.will.properties.get(pk.PROP_WILL_DELAY, 0))
            if delay and session.expiry:
                session.will_at = now + min(delay, session.expiry)
            else:
                self.publish_will(session)
        ending = session.expiry == 0
        self.release_shared(session, ending)
        if ending:
            self.end_session(session)
        elif session.expiry != NEVER_EXPIRES:
            session.expires_at = now + session.expiry

    def expire(self, now: float) -> None:
        """Publish delayed wills and end expired sessions of disconnected clients."""
        for session in list(self.state.sessions.values()):
            if session.conn is not None:
                continue
            if session.will_at is not None and session.will_at <= now:
                self.publish_will(session)
            if session.expires_at is not None and session.expires_at <= now:
                self.end_session(session, expired=True)

    def release_shared(self, session: Session, ending: bool) -> None:
        """A member's connection broke: hand its unacknowledged shared QoS 0/1 messages on.

        MQTT 5.0 4.8.2: QoS 1 may be sent to another member; QoS 2 must not be moved.
        """
        state = self.state
        lose = "lose-on-disconnect" in state.faults
        if not ending and (lose or "offline-member-keeps-share" in state.faults):
            return  # Mosquitto-like: a persistent member keeps them for its return
        by_topic = "redispatch-misses-wildcards" in state.faults  # emqx PR #9094
        movable = [om for om in session.outflight.values() if om.share and om.qos < 2]
        movable += [om for om in session.queue if om.share and om.qos < 2]
        for om in movable:
            target = None
            if not lose:
                assert om.share is not None
                group = self.index.group(om.share[0],
                                         om.message.topic if by_topic else om.share[1])
                if group is not None:
                    target = self.router.pick(group, om.message, exclude=session.client_id,
                                              node=session.node)
            if not ending and (target is None or state.sessions[target].conn is None):
                # Nobody else is connected: keep it where it is, so that an in-flight message
                # is re-sent with DUP and its original packet id on resume (4.4).
                continue
            if om.packet_id and session.outflight.get(om.packet_id) is om:
                del session.outflight[om.packet_id]
            else:
                session.queue.remove(om)
            if target is None:
                state.drop("lost_on_disconnect" if lose else "no_member_for_redispatch",
                           session.client_id)
                continue
            om.packet_id = 0
            om.released = False
            state.stats.redispatched += 1
            self.router.enqueue(state.sessions[target], om)

    def end_session(self, session: Session, expired: bool = False) -> None:
        state = self.state
        if session.will is not None and session.conn is None and session.will_at is not None:
            self.publish_will(session)
        # 4.8.2: a member's session ending (expiry, or a clean-start takeover) SHOULD hand its
        # unacknowledged shared QoS 1 messages to another member rather than lose them.
        drops = expired and "expired-session-drops" in state.faults  # emqx#12257
        if not drops:
            self.release_shared(session, ending=True)
        for sub in list(session.subscriptions.values()):
            self.index.remove(sub)
        session.subscriptions.clear()
        left = len(session.outflight) + len(session.queue)
        if left:
            state.drop("expired_session_dropped" if drops else "session_ended",
                       session.client_id, left)
        session.outflight.clear()
        session.queue.clear()
        if state.sessions.get(session.client_id) is session:
            del state.sessions[session.client_id]

    def publish_will(self, session: Session) -> None:
        state = self.state
        will = session.will
        session.will = None
        session.will_at = None
        if will is None:
            return
        props = {k: v for k, v in will.properties.items() if k in FORWARDED}
        msg = Message(topic=will.topic, payload=will.payload, qos=will.qos, retain=will.retain,
                      publisher=session.client_id, properties=props,
                      expires_at=state.expiry(props), node=session.node)
        state.stats.messages_in += 1
        if will.retain:
            state.retain(msg)
        self.router.route(msg)
