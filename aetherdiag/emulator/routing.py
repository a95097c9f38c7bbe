"""The subscription index and message routing: who gets a message, and how it is sent.

How this works: ``SubscriptionIndex`` maps each topic filter to a ``FilterEntry`` holding the
plain subscriptions on it (by client id) and its share groups (by share name); a topic's
matching entries are cached until the set of filters changes. ``Router.route`` delivers one
application message: every matching plain subscription gets one copy per session (overlapping
filters merge: highest QoS, all subscription identifiers), every matching share group gets one
copy for the member its dispatcher picks (every member under the ``share-fanout`` fault).

Delivery to a session goes through ``enqueue``: a message is transmitted at once when the
session is connected, not paused and has room in its in-flight window, otherwise it waits in
the session's queue (bounded by ``Limits.max_queued``; an offline session drops QoS 0) until
``flush`` is called after an acknowledgement, a resume or a drained socket. ``transmit``
assigns the packet id, records the in-flight message and emits the PUBLISH.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from . import codec as c
from .session import Message, OutMsg, Session, Subscription
from .sharing import DispatchContext, Dispatcher, ShareGroup
from .state import BrokerState
from .topics import SHARE_PREFIX, matches


def share_key(name: str | None, topic_filter: str) -> str:
    """The key of a shared subscription in ``Session.subscriptions``."""
    return f"{SHARE_PREFIX}{name}/{topic_filter}"


@dataclass(slots=True)
class FilterEntry:
    plain: dict[str, Subscription] = field(default_factory=dict)
    groups: dict[str, ShareGroup] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.plain and not self.groups


class SubscriptionIndex:
    """Topic filter -> subscriptions and share groups, with a per-topic match cache.

    ``new_dispatcher(share_name)`` makes the dispatcher of a group created on first subscribe.
    """

    def __init__(self, new_dispatcher: Callable[[str], Dispatcher]) -> None:
        self._new_dispatcher = new_dispatcher
        self.filters: dict[str, FilterEntry] = {}
        self._match_cache: dict[str, list[FilterEntry]] = {}

    def add(self, sub: Subscription) -> None:
        entry = self.filters.get(sub.topic_filter)
        if entry is None:
            entry = self.filters[sub.topic_filter] = FilterEntry()
            self._match_cache.clear()
        if sub.share_name is None:
            entry.plain[sub.client_id] = sub
            return
        group = entry.groups.get(sub.share_name)
        if group is None:
            group = ShareGroup(
                name=sub.share_name, topic_filter=sub.topic_filter,
                dispatcher=self._new_dispatcher(sub.share_name),
            )
            entry.groups[sub.share_name] = group
        group.add(sub.client_id)

    def remove(self, sub: Subscription) -> None:
        entry = self.filters.get(sub.topic_filter)
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
            del self.filters[sub.topic_filter]
            self._match_cache.clear()

    def group(self, share_name: str, topic_filter: str) -> ShareGroup | None:
        entry = self.filters.get(topic_filter)
        return entry.groups.get(share_name) if entry else None

    def match(self, topic: str) -> list[FilterEntry]:
        """The entries whose filter matches ``topic``, in the order the filters appeared."""
        hit = self._match_cache.get(topic)
        if hit is None:
            if len(self._match_cache) > 65536:
                self._match_cache.clear()
            hit = [e for f, e in self.filters.items() if matches(f, topic)]
            self._match_cache[topic] = hit
        return hit


class Router:
    """Routes application messages to sessions and sends them within each session's window."""

    def __init__(self, state: BrokerState, index: SubscriptionIndex) -> None:
        self.state = state
        self.index = index

    def route(self, msg: Message) -> int:
        """Deliver ``msg`` to every matching subscription; return the number of deliveries."""
        sessions = self.state.sessions
        plain: dict[str, tuple[int, bool, tuple[int, ...]]] = {}
        count = 0
        for entry in self.index.match(msg.topic):
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
                if "share-fanout" in self.state.faults:
                    chosen: list[str] = list(group.members)
                else:
                    one = self.pick(group, msg, exclude=None)
                    chosen = [one] if one is not None else []
                for member in chosen:
                    session = sessions[member]
                    sub = session.subscriptions[share_key(group.name, group.topic_filter)]
                    self.deliver(session, msg, sub.qos, False, (group.name, group.topic_filter),
                                 (sub.sub_id,) if sub.sub_id else ())
                    count += 1
        for client_id, (qos, rap, ids) in plain.items():
            self.deliver(sessions[client_id], msg, qos, rap and msg.retain, None, ids)
            count += 1
        return count

    def pick(self, group: ShareGroup, msg: Message, exclude: str | None) -> str | None:
        """The member of ``group`` that gets ``msg``: a connected one if any, else offline."""
        sessions = self.state.sessions

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

    def deliver(
        self, session: Session, msg: Message, granted: int, retain: bool,
        share: tuple[str, str] | None, sub_ids: tuple[int, ...],
    ) -> None:
        om = OutMsg(message=msg, qos=min(msg.qos, granted), retain=retain, share=share,
                    sub_ids=sub_ids)
        self.enqueue(session, om)

    def enqueue(self, session: Session, om: OutMsg) -> None:
        if (
            session.conn is None
            or session.paused
            or session.queue
            or (om.qos and len(session.outflight) >= session.window)
        ):
            if session.conn is None and om.qos == 0:
                self.state.drop("offline_qos0", session.client_id)
            elif len(session.queue) >= self.state.limits.max_queued:
                self.state.drop("queue_full", session.client_id)
            else:
                session.queue.append(om)
            return
        self.transmit(session, om)

    def flush(self, session: Session) -> None:
        """Send what ``session`` has queued, as far as its window and its socket allow."""
        queue = session.queue
        while queue and session.conn is not None and not session.paused:
            if queue[0].qos and len(session.outflight) >= session.window:
                return
            self.transmit(session, queue.popleft())

    def transmit(self, session: Session, om: OutMsg) -> None:
        assert session.conn is not None
        state = self.state
        conn = state.conns[session.conn]
        if conn.max_packet and _approx_size(om) > conn.max_packet:
            state.drop("client_max_packet_size", session.client_id)
            return
        expires_at = om.message.expires_at
        if expires_at is not None and expires_at <= state.now:
            state.drop("message_expired", session.client_id)  # 3.3.2.3.3: never started
            return
        if om.qos:
            om.packet_id = session.allocate_pid()
            session.outflight[om.packet_id] = om
        packet = self.publish_packet(session, om, dup=False)
        state.out.append((conn.id, packet))
        state.stats.deliveries += 1
        state.stats.deliveries_by_client[session.client_id] += 1
        if om.qos and "redeliver" in state.faults:
            state.out.append((conn.id, self.publish_packet(session, om, dup=True)))
            state.stats.dup_resends += 1

    def publish_packet(self, session: Session, om: OutMsg, dup: bool) -> c.Publish:
        msg = om.message
        props = msg.properties
        if msg.expires_at is not None:  # 3.3.2.3.3: the lifetime left, not the original
            left = max(1, math.ceil(msg.expires_at - self.state.now))
            props = {**props, c.PROP_MESSAGE_EXPIRY: left}
        if om.sub_ids and session.version == c.MQTT_5:
            props = {**props, c.PROP_SUBSCRIPTION_ID: om.sub_ids}
        return c.Publish(
            topic=msg.topic, payload=msg.payload, qos=om.qos, retain=om.retain, dup=dup,
            packet_id=om.packet_id or None, properties=props,
        )


def _approx_size(om: OutMsg) -> int:
    return 16 + len(om.message.topic.encode("utf-8")) + len(om.message.payload)
