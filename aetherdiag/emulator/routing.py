"""The subscription index and message routing: who gets a message, and how it is sent.

How this works: ``SubscriptionIndex`` maps each topic filter to a ``FilterEntry`` holding the
plain subscriptions on it (by client id) and its share groups (by share name); a topic matches
the entry filed under its own text and the wildcard entries whose compiled pattern matches it
(``topics.filter_pattern``), in the order the filters appeared. ``Router.route`` delivers one
application message: every matching plain subscription gets one copy per session (overlapping
filters merge: highest QoS, all subscription identifiers), every matching share group gets one
copy for the member its dispatcher picks (every member under the ``share-fanout`` fault).
In an emulated cluster this is already the correct cluster-wide routing (one member per group
whatever the nodes); only the cluster faults route per node, in ``route_split`` (the last section).

Delivery to a session (``deliver``; ``enqueue`` for a message handed on from another member):
a message is transmitted at once when the session is connected, not paused and has room in its
in-flight window, otherwise it waits in the session's queue (bounded by ``Limits.max_queued``;
an offline session drops QoS 0) until ``flush`` is called after an acknowledgement, a resume
or a drained socket (under the ``reorder`` fault: one message in flight, the queue drained
newest first). ``transmit`` assigns the packet id, records the in-flight message and
emits the PUBLISH (and notes it in ``state.journal`` when there is one).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import packets as pk
from .session import Message, OutMsg, Session, Subscription
from .sharing import CLUSTER_FAULTS, DispatchContext, Dispatcher, ShareGroup, anyone
from .state import BrokerState
from .topics import SHARE_PREFIX, filter_pattern, has_wildcard


def share_key(name: str | None, topic_filter: str) -> str:
    """The key of a shared subscription in ``Session.subscriptions``."""
    return f"{SHARE_PREFIX}{name}/{topic_filter}"


@dataclass(slots=True)
class FilterEntry:
    """The subscriptions on one topic filter.

    ``pattern`` matches the topics the filter covers when it has wildcards (None: it matches
    its own text only); ``dollar_blind``: it starts with a wildcard, so it never matches a
    ``$`` topic; ``seq`` orders entries by when their filter appeared.
    """

    seq: int
    pattern: re.Pattern[str] | None
    dollar_blind: bool
    plain: dict[str, Subscription] = field(default_factory=dict)
    groups: dict[str, ShareGroup] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.plain and not self.groups


def _seq(entry: FilterEntry) -> int:
    return entry.seq


class SubscriptionIndex:
    """Topic filter -> subscriptions and share groups.

    ``new_dispatcher(share_name)`` makes the dispatcher of a group created on first subscribe.
    A topic's entries are the one filed under its own text plus the wildcard filters whose
    pattern matches it. Past ``_CACHE_ABOVE`` wildcard filters, results are also cached per
    topic (until the filters change): worth it for repeated topics, a loss for the usual one
    topic per task.
    """

    _CACHE_ABOVE = 16

    def __init__(self, new_dispatcher: Callable[[str], Dispatcher]) -> None:
        self.new_dispatcher = new_dispatcher
        self.filters: dict[str, FilterEntry] = {}
        # Entries with wildcards and their patterns, in order of appearance.
        self._wild: list[tuple[FilterEntry, re.Pattern[str]]] = []
        self._seq = itertools.count()
        self._match_cache: dict[str, list[FilterEntry]] = {}

    def add(self, sub: Subscription) -> None:
        entry = self.filters.get(sub.topic_filter)
        if entry is None:
            f = sub.topic_filter
            entry = self.filters[f] = FilterEntry(
                seq=next(self._seq),
                pattern=filter_pattern(f) if has_wildcard(f) else None,
                dollar_blind=f[:1] in ("+", "#"),
            )
            if entry.pattern is not None:
                self._wild.append((entry, entry.pattern))
            self._match_cache.clear()
        if sub.share_name is None:
            entry.plain[sub.client_id] = sub
            return
        group = entry.groups.get(sub.share_name)
        if group is None:
            group = ShareGroup(
                name=sub.share_name, topic_filter=sub.topic_filter,
                dispatcher=self.new_dispatcher(sub.share_name),
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
            if entry.pattern is not None:
                self._wild.remove((entry, entry.pattern))
            self._match_cache.clear()

    def group(self, share_name: str, topic_filter: str) -> ShareGroup | None:
        entry = self.filters.get(topic_filter)
        return entry.groups.get(share_name) if entry else None

    def match(self, topic: str) -> list[FilterEntry]:
        """The entries whose filter matches ``topic`` (``topics.matches``), oldest first."""
        own = self.filters.get(topic)
        wild = self._wild
        if not wild:
            return [own] if own is not None else []
        cache = len(wild) > self._CACHE_ABOVE
        if cache:
            hit = self._match_cache.get(topic)
            if hit is not None:
                return hit
        dollar = topic[:1] == "$"
        if own is None and len(wild) == 1:  # the usual: one wildcard filter, e.g. a task pool
            e, pattern = wild[0]
            return [e] if (not dollar or not e.dollar_blind) and pattern.fullmatch(topic) else []
        hit = [
            e for e, pattern in wild
            if e is own or ((not dollar or not e.dollar_blind) and pattern.fullmatch(topic))
        ]
        if own is not None and own.pattern is None:
            hit.append(own)
            if len(hit) > 1:
                hit.sort(key=_seq)
        if cache:
            if len(self._match_cache) > 65536:
                self._match_cache.clear()
            self._match_cache[topic] = hit
        return hit


class Router:
    """Routes application messages to sessions and sends them within each session's window."""

    def __init__(self, state: BrokerState, index: SubscriptionIndex) -> None:
        self.state = state
        self.index = index
        self._fanout = "share-fanout" in state.faults
        self._redeliver = "redeliver" in state.faults
        # reorder: one message in flight per session (the window every CONNECT now gets) and
        # its backlog drained newest first (``flush``)
        self._newest_first = "reorder" in state.faults
        if self._newest_first:
            state.limits = replace(state.limits, max_inflight=1)
        # the nodes of a cluster dispatch on their own (route_split); never on one node
        self.split = state.nodes > 1 and bool(state.faults & CLUSTER_FAULTS)
        sessions = state.sessions  # never rebound: the closures below stay valid
        # One context and one predicate for every pick, not new ones per message: dispatchers
        # never keep them, and nothing picks again while a dispatcher runs.
        self.ctx = DispatchContext(
            publisher="", topic="", inflight=lambda member: sessions[member].load(),
            node_of=lambda member: sessions[member].node,
        )
        self._online: Callable[[str], bool] = lambda member: sessions[member].conn is not None
        # offline-member-keeps-share: every member keeps its turn, online or not (Mosquitto)
        self._turn = anyone if "offline-member-keeps-share" in state.faults else self._online

    def route(self, msg: Message) -> int:
        """Deliver ``msg`` to every matching subscription; return the number of deliveries."""
        if self.split:
            return route_split(self, msg)
        plain: dict[str, tuple[int, bool, tuple[int, ...]]] | None = None
        count = 0
        ctx = self.ctx  # pick(group, msg, None), inline
        ctx.publisher = msg.publisher
        ctx.topic = msg.topic
        ctx.node = msg.node
        online = self._turn
        for entry in self.index.match(msg.topic):
            if entry.plain:
                if plain is None:
                    plain = {}
                for sub in entry.plain.values():
                    if sub.no_local and sub.client_id == msg.publisher:
                        continue
                    ids: tuple[int, ...] = (sub.sub_id,) if sub.sub_id else ()
                    prev = plain.get(sub.client_id)
                    if prev is None:
                        plain[sub.client_id] = (sub.qos, sub.retain_as_published, ids)
                    else:  # overlapping filters in one session: one copy, highest QoS, all ids
                        plain[sub.client_id] = (
                            max(prev[0], sub.qos), prev[1] or sub.retain_as_published,
                            prev[2] + ids,
                        )
            for group in entry.groups.values():
                if self._fanout:
                    chosen: list[str] = list(group.members)
                else:
                    one = group.dispatcher.choose(group.members, online, ctx)
                    if one is None:  # nobody connected: queue for an offline persistent member
                        one = group.dispatcher.choose(group.members, anyone, ctx)
                        if one is None:
                            continue
                    chosen = [one]
                count += self.deliver_shared(chosen, group, msg)
        if plain:
            count += self.deliver_plain(plain, msg)
        return count

    def deliver_shared(self, members: list[str], group: ShareGroup, msg: Message) -> int:
        """Send ``msg`` to the chosen ``members`` of ``group``; returns how many."""
        sessions = self.state.sessions
        for member in members:
            session = sessions[member]
            sub = session.subscriptions[group.key]
            self.deliver(session, msg, sub.qos, False, group.share,
                         (sub.sub_id,) if sub.sub_id else ())
        return len(members)

    def deliver_plain(self, plain: dict[str, tuple[int, bool, tuple[int, ...]]],
                      msg: Message) -> int:
        """Send ``msg`` once to each plain subscriber: ``client id -> (QoS, retain as
        published, subscription ids)``; returns how many."""
        sessions = self.state.sessions
        for client_id, (qos, rap, ids) in plain.items():
            self.deliver(sessions[client_id], msg, qos, rap and msg.retain, None, ids)
        return len(plain)

    def pick(
        self, group: ShareGroup, msg: Message, exclude: str | None, node: int = 1
    ) -> str | None:
        """The member of ``group`` that gets ``msg``: a connected one if any, else offline.

        ``node``: where the copy is (the node of the member it leaves); it matters only when
        the nodes of a cluster dispatch on their own, which keeps the copy on that node.
        """
        if self.split:
            return pick_on_node(self, group, msg, node, exclude)
        ctx = self.ctx
        ctx.publisher = msg.publisher
        ctx.topic = msg.topic
        ctx.node = msg.node
        if exclude is None:
            online = self._online
            other = anyone
        else:
            sessions = self.state.sessions

            def online(member: str) -> bool:
                return member != exclude and sessions[member].conn is not None

            def other(member: str) -> bool:
                return member != exclude

        chosen = group.dispatcher.choose(group.members, online, ctx)
        if chosen is None:  # nobody connected: queue for an offline persistent member
            chosen = group.dispatcher.choose(group.members, other, ctx)
        return chosen

    def deliver(
        self, session: Session, msg: Message, granted: int, retain: bool,
        share: tuple[str, str] | None, sub_ids: tuple[int, ...],
    ) -> None:
        qos = msg.qos if msg.qos < granted else granted
        om = OutMsg(msg, qos, retain, share, sub_ids)
        if (
            session.conn is None
            or session.paused
            or session.queue
            or (qos and len(session.outflight) >= session.window)
        ):
            self._hold(session, om)
        else:
            self.transmit(session, om)

    def enqueue(self, session: Session, om: OutMsg) -> None:
        """Send ``om`` now if the session can take it, else queue it (or count the drop)."""
        if (
            session.conn is None
            or session.paused
            or session.queue
            or (om.qos and len(session.outflight) >= session.window)
        ):
            self._hold(session, om)
        else:
            self.transmit(session, om)

    def _hold(self, session: Session, om: OutMsg) -> None:
        if session.conn is None and om.qos == 0:
            self.state.drop("offline_qos0", session.client_id)
        elif len(session.queue) >= self.state.limits.max_queued:
            self.state.drop("queue_full", session.client_id)
        else:
            session.queue.append(om)

    def flush(self, session: Session) -> None:
        """Send what ``session`` has queued, as far as its window and its socket allow."""
        queue = session.queue
        if self._newest_first:  # the reorder fault
            while queue and session.conn is not None and not session.paused:
                if queue[-1].qos and len(session.outflight) >= session.window:
                    return
                self.transmit(session, queue.pop())
            return
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
        qos = om.qos
        pid = None
        if qos:
            om.packet_id = pid = session.allocate_pid()
            session.outflight[pid] = om
        if expires_at is None and not om.sub_ids:  # publish_packet(session, om, False), inline
            msg = om.message
            packet = pk.new_publish(msg.topic, msg.payload, qos, om.retain, False, pid,
                                   msg.properties)
        else:
            packet = self.publish_packet(session, om, False)
        if conn.aliases is not None:
            packet = conn.aliases.apply(packet)
        state.out.append((conn.id, packet))
        stats = state.stats
        stats.deliveries += 1
        stats.deliveries_by_client[session.client_id] += 1
        journal = state.journal
        if journal is not None:
            msg = om.message
            journal.sent(state.now, session.client_id, conn.id, msg.topic, msg.payload, qos,
                         False, pid, conn.node)
            if qos and self._redeliver:
                journal.sent(state.now, session.client_id, conn.id, msg.topic, msg.payload,
                             qos, True, pid, conn.node)
        if qos and self._redeliver:
            again = self.publish_packet(session, om, True)
            state.out.append((conn.id, again if conn.aliases is None else
                              conn.aliases.apply(again)))
            stats.dup_resends += 1

    def publish_packet(self, session: Session, om: OutMsg, dup: bool) -> pk.Publish:
        msg = om.message
        props = msg.properties
        if msg.expires_at is not None:  # 3.3.2.3.3: the lifetime left, not the original
            left = max(1, math.ceil(msg.expires_at - self.state.now))
            props = {**props, pk.PROP_MESSAGE_EXPIRY: left}
        if om.sub_ids and session.version == pk.MQTT_5:
            props = {**props, pk.PROP_SUBSCRIPTION_ID: om.sub_ids}
        return pk.new_publish(
            msg.topic, msg.payload, om.qos, om.retain, dup, om.packet_id or None, props
        )


def _approx_size(om: OutMsg) -> int:
    return 16 + len(om.message.topic.encode("utf-8")) + len(om.message.payload)


# --- an emulated cluster whose nodes dispatch on their own (the cluster faults) ---------
#
# Routing in an emulated cluster whose nodes dispatch on their own (the cluster faults).
#
# How this works: an emulated cluster of N nodes is ONE broker state; every connection, session
# and message carries the node (1-based) it came in on as plain data (``Conn.node``,
# ``Session.node``, ``Message.node``). Correct cluster routing is then the ordinary routing of
# ``routing.Router`` over every node at once: one member per share group, cluster-wide, with the
# group's strategy (``local`` prefers the publisher's node through ``DispatchContext.node``).
#
# Only the faults ``cluster-node-local`` and ``cluster-no-route`` (``sharing.CLUSTER_FAULTS``)
# route per node, here, as separate brokers would: each node has its own dispatcher per share
# group (``ShareGroup.per_node``, made on first use) and picks among the members on that node.
# Under ``cluster-node-local`` (bridged brokers) every node that has members of a group gets its
# copy, and plain subscribers get theirs wherever they are; under ``cluster-no-route`` (brokers
# that are not clustered) only the publisher's node routes the message at all. A copy handed on
# after a member loss stays on its node (``pick_on_node``). Sans-IO: nothing here knows sockets.


def pick_on_node(
    router: Router, group: ShareGroup, msg: Message, node: int, exclude: str | None,
) -> str | None:
    """The member of ``group`` on ``node`` that gets ``msg`` (connected first, then offline),
    chosen by that node's own dispatcher; None when the node has no member (but ``exclude``)."""
    sessions = router.state.sessions
    dispatcher = group.per_node.get(node)
    if dispatcher is None:
        dispatcher = group.per_node[node] = router.index.new_dispatcher(group.name)
    ctx = router.ctx
    ctx.publisher = msg.publisher
    ctx.topic = msg.topic
    ctx.node = msg.node

    def here(member: str) -> bool:
        return member != exclude and sessions[member].node == node

    def online(member: str) -> bool:
        return here(member) and sessions[member].conn is not None

    chosen = dispatcher.choose(group.members, online, ctx)
    return chosen if chosen is not None else dispatcher.choose(group.members, here, ctx)


def route_split(router: Router, msg: Message) -> int:
    """``Router.route`` under a cluster fault; returns the number of deliveries."""
    sessions = router.state.sessions
    origin = msg.node
    everywhere = "cluster-node-local" in router.state.faults  # bridged: every node routes it
    fanout = "share-fanout" in router.state.faults
    plain: dict[str, tuple[int, bool, tuple[int, ...]]] = {}
    count = 0
    for entry in router.index.match(msg.topic):
        for sub in entry.plain.values():
            if sub.no_local and sub.client_id == msg.publisher:
                continue
            if not everywhere and sessions[sub.client_id].node != origin:
                continue
            ids: tuple[int, ...] = (sub.sub_id,) if sub.sub_id else ()
            prev = plain.get(sub.client_id)
            plain[sub.client_id] = (sub.qos, sub.retain_as_published, ids) if prev is None else (
                max(prev[0], sub.qos), prev[1] or sub.retain_as_published, prev[2] + ids)
        for group in entry.groups.values():
            # bridged: every node with members routes its copy; else the origin alone
            nodes = sorted({sessions[m].node for m in group.members}) if everywhere else [origin]
            chosen: list[str] = []
            for node in nodes:
                if fanout:
                    chosen += [m for m in group.members if sessions[m].node == node]
                elif (one := pick_on_node(router, group, msg, node, None)) is not None:
                    chosen.append(one)
            count += router.deliver_shared(chosen, group, msg)
    return count + router.deliver_plain(plain, msg)
