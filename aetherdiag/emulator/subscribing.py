"""SUBSCRIBE and UNSUBSCRIBE: filters parsed, the index updated, retained messages sent.

How this works: ``Subscriptions`` is the part of ``broker.Broker`` that handles the two
packets for a connected session: each filter is parsed (``$share/...`` and ``$queue/...``;
taken literally under the ``share-literal`` fault), filed in the ``routing.SubscriptionIndex``
and answered in one SUBACK / UNSUBACK (a filter ``Limits.deny_subscribe`` covers is refused
with 0x87, ``acl.py``; subscribing again to a filter held replaces its options in place, one
membership, 3.8.4); retained messages follow the SUBACK (never for a shared
subscription, MQTT 5.0 4.8.2, unless the ``share-retained`` fault; under ``cluster-no-route``
only those published on the subscriber's node). Sans-IO, like the rest of the core.
"""

from __future__ import annotations

from . import packets as pk
from .acl import denied
from .routing import Router, SubscriptionIndex, share_key
from .session import Message, Session, Subscription
from .state import BrokerState, Conn, ProtocolViolation
from .topics import InvalidFilter, ParsedFilter, literal_filter, matches, parse_filter


class Subscriptions:
    """Handles SUBSCRIBE and UNSUBSCRIBE for ``broker.Broker``."""

    def __init__(self, state: BrokerState, index: SubscriptionIndex, router: Router,
                 queue_prefix: bool) -> None:
        self.state = state
        self.index = index
        self.router = router
        self.queue_prefix = queue_prefix
        self.deny = state.limits.deny_subscribe
        # messages never cross nodes: a retained one only reaches its own node's subscribers
        self.own_node_retained = router.split and "cluster-no-route" in state.faults

    def parse(self, raw: str) -> ParsedFilter:
        if "share-literal" in self.state.faults:
            return literal_filter(raw)
        return parse_filter(raw, queue_prefix=self.queue_prefix)

    def subscribe(self, conn: Conn, session: Session, p: pk.Subscribe) -> None:
        state = self.state
        v5 = conn.version == pk.MQTT_5
        sub_ids = p.properties.get(pk.PROP_SUBSCRIPTION_ID, ())
        sub_id = sub_ids[0] if sub_ids else None
        if sub_id == 0:
            raise ProtocolViolation(pk.RC_PROTOCOL_ERROR, "subscription identifier 0")
        codes: list[int] = []
        retained: list[tuple[Subscription, Message]] = []
        for req in p.subscriptions:
            try:
                pf = self.parse(req.topic_filter)
            except InvalidFilter:
                codes.append(pk.RC_TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            if self.deny and denied(self.deny, pf.topic_filter):  # --deny-subscribe
                codes.append(pk.RC_NOT_AUTHORIZED if v5 else 0x80)
                continue
            if pf.share_name is not None:
                if "share-unsupported" in self.state.faults:
                    codes.append(pk.RC_SHARED_SUBS_NOT_SUPPORTED if v5 else 0x80)
                    continue
                if req.no_local and v5:
                    raise ProtocolViolation(
                        pk.RC_PROTOCOL_ERROR, "No Local set on a shared subscription"
                    )
            key = share_key(pf.share_name, pf.topic_filter) if pf.shared else pf.topic_filter
            existed = key in session.subscriptions
            sub = Subscription(
                client_id=session.client_id, topic_filter=pf.topic_filter,
                share_name=pf.share_name, qos=req.qos, no_local=req.no_local,
                retain_as_published=req.retain_as_published, sub_id=sub_id,
            )
            session.subscriptions[key] = sub
            self.index.add(sub)
            codes.append(req.qos)
            if pf.shared and "share-retained" not in self.state.faults:
                continue  # MQTT 5.0 4.8.2: retained messages are not sent to shared subs
            if req.retain_handling == 2 or (req.retain_handling == 1 and existed):
                continue
            for topic, msg in list(state.retained.items()):
                if msg.expires_at is not None and msg.expires_at <= state.now:
                    del state.retained[topic]  # expired: no longer retained (3.3.2.3.3)
                    state.stats.retained = len(state.retained)
                elif matches(pf.topic_filter, topic) and (
                        not self.own_node_retained or msg.node == session.node):
                    retained.append((sub, msg))
        state.send(conn, pk.SubAck(packet_id=p.packet_id, reason_codes=tuple(codes)))
        for sub, msg in retained:
            share = (sub.share_name, sub.topic_filter) if sub.share_name is not None else None
            self.router.deliver(session, msg, sub.qos, True, share,
                                 (sub.sub_id,) if sub.sub_id else ())

    def unsubscribe(self, conn: Conn, session: Session, p: pk.Unsubscribe) -> None:
        codes: list[int] = []
        for raw in p.topic_filters:
            try:
                pf = self.parse(raw)
            except InvalidFilter:
                codes.append(pk.RC_TOPIC_FILTER_INVALID)
                continue
            key = share_key(pf.share_name, pf.topic_filter) if pf.shared else pf.topic_filter
            sub = session.subscriptions.pop(key, None)
            if sub is None:
                codes.append(pk.RC_NO_SUBSCRIPTION_EXISTED)
            else:
                self.index.remove(sub)
                codes.append(pk.RC_SUCCESS)
        self.state.send(conn, pk.UnsubAck(packet_id=p.packet_id, reason_codes=tuple(codes)))
