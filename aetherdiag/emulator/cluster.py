"""Routing in an emulated cluster whose nodes dispatch on their own (the cluster faults).

How this works: an emulated cluster of N nodes is ONE broker state; every connection, session
and message carries the node (1-based) it came in on as plain data (``Conn.node``,
``Session.node``, ``Message.node``). Correct cluster routing is then the ordinary routing of
``routing.Router`` over every node at once: one member per share group, cluster-wide, with the
group's strategy (``local`` prefers the publisher's node through ``DispatchContext.node``).

Only the faults ``cluster-node-local`` and ``cluster-no-route`` (``sharing.CLUSTER_FAULTS``)
route per node, here, as separate brokers would: each node has its own dispatcher per share
group (``ShareGroup.per_node``, made on first use) and picks among the members on that node.
Under ``cluster-node-local`` (bridged brokers) every node that has members of a group gets its
copy, and plain subscribers get theirs wherever they are; under ``cluster-no-route`` (brokers
that are not clustered) only the publisher's node routes the message at all. A copy handed on
after a member loss stays on its node (``pick_on_node``). Sans-IO: nothing here knows sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .session import Message
from .sharing import ShareGroup

if TYPE_CHECKING:
    from .routing import Router


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
