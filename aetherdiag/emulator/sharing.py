"""Share groups, dispatch strategies and fault modes.

How this works: a ``ShareGroup`` is one ``(share name, topic filter)`` pair with its members in
subscription order. For each message the broker asks the group's ``Dispatcher`` to pick one
member among the eligible ones (connected members first; offline persistent members only
when nobody is connected). Dispatchers keep only their own small state (a turn counter, a
seeded RNG, a sticky choice) and never see packets or sockets.

In an emulated cluster every member also has a node (the node its session's connection
came in on): ``DispatchContext.node`` is the publisher's node and ``node_of`` a member's, which
only the ``local`` strategy looks at.

Fault modes are names the broker checks at the few places where real brokers go wrong; they
are listed here, with what each reproduces, so the CLI and the docs share one table.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..exitcodes import UsageError
from .topics import SHARE_PREFIX

STRATEGIES: dict[str, str] = {
    "round_robin": "each member in turn, in subscription order (Mosquitto-like; the default)",
    "random": "a seeded random member per message (reproducible with --seed)",
    "sticky": "the same member until it leaves, then another one",
    "hash_clientid": "a member chosen by a hash of the publisher's client id",
    "hash_topic": "a member chosen by a hash of the message topic",
    "least_inflight": "the member with the fewest unacknowledged messages (a pull queue)",
    "local": "a member connected to the publisher's node, in turn; the other nodes' members "
    "only when that node has none (EMQX's local; on one node: round_robin)",
}

FAULTS: dict[str, str] = {
    "share-fanout": "$share subscriptions behave like plain ones: every member gets every "
    "message (the original bug)",
    "share-literal": "$share/... is taken as a literal filter: nothing arrives (brokers "
    "without shared-subscription support)",
    "share-unsupported": "v5 CONNACK says Shared Subscription Available = 0 and shared "
    "SUBSCRIBE is refused with 0x9E",
    "redeliver": "every QoS>=1 message is sent twice to the same client, the copy with DUP "
    "set (acknowledgements 'lost')",
    "lose-on-disconnect": "in-flight messages of a member whose connection drops are "
    "discarded instead of re-dispatched (Mosquitto-like)",
    "share-retained": "retained messages are sent to new shared subscriptions (what "
    "Mosquitto 2.0.11 does; MQTT 5 says they must not be)",
    "per-publisher-rr": "the round-robin turn is kept per publisher: one publisher's tasks "
    "always start at the first member (the EMQX round_robin pitfall)",
    "offline-member-keeps-share": "a persistent member that goes offline keeps its turn: "
    "its share of the tasks (and what it had in flight) is parked until it returns "
    "(Mosquitto; mosquitto#1747, emqx#3243)",
    "expired-session-drops": "when a member's session expires, the tasks queued for it are "
    "dropped instead of handed to another member (emqx#12257, nanomq#2355)",
    "redispatch-misses-wildcards": "redispatch after a member loss looks the group up by "
    "the message topic, not its filter: groups on wildcard filters lose those tasks "
    "(emqx PR #9094)",
    "reorder": "each member gets one QoS 1/2 message in flight at a time and the rest of its "
    "backlog newest first: one publisher's tasks reach a sticky or hashed member out of order "
    "(a broker dispatching through parallel queues)",
    "cluster-node-local": "each node of an emulated cluster picks among its own members: one "
    "copy per node that has members, as bridged brokers do (no effect on one node)",
    "cluster-no-route": "messages never cross the nodes of an emulated cluster: a subscriber, "
    "plain or shared, gets only what is published on its own node (no effect on one node)",
}

# Faults under which the nodes of a cluster dispatch on their own (see ``routing.route_split``).
CLUSTER_FAULTS = frozenset({"cluster-node-local", "cluster-no-route"})


class UnknownName(UsageError, ValueError):
    """An unknown strategy or fault name; the message lists the valid ones."""


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise UnknownName(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    return name


def check_fault(name: str) -> str:
    if name not in FAULTS:
        raise UnknownName(f"unknown fault {name!r} (choose from {', '.join(FAULTS)})")
    return name


def _node_one(member: str) -> int:
    return 1


def anyone(member: str) -> bool:
    """The predicate that admits every member (offline ones included)."""
    return True


@dataclass(slots=True)
class DispatchContext:
    """What a dispatcher may look at for one message (``node``: the publisher's node)."""

    publisher: str
    topic: str
    inflight: Callable[[str], int]
    node: int = 1
    node_of: Callable[[str], int] = _node_one


class Dispatcher:
    """Picks one member of ``members`` for which ``eligible`` is true."""

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        raise NotImplementedError

    def forget(self, member: str) -> None:
        """``member`` left the group."""


class RoundRobin(Dispatcher):
    def __init__(self, per_publisher: bool = False) -> None:
        self._turn: dict[str, int] = {}
        self._per_publisher = per_publisher

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        key = ctx.publisher if self._per_publisher else ""
        n = len(members)
        start = self._turn.get(key, 0)
        for step in range(n):
            i = (start + step) % n
            member = members[i]
            if eligible(member):
                self._turn[key] = i + 1
                return member
        return None


class RandomChoice(Dispatcher):
    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        candidates = [m for m in members if eligible(m)]
        return self._rng.choice(candidates) if candidates else None


class Sticky(Dispatcher):
    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._current: str | None = None

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        if self._current is not None and self._current in members and eligible(self._current):
            return self._current
        candidates = [m for m in members if eligible(m)]
        if not candidates:
            return None
        self._current = self._rng.choice(candidates)
        return self._current

    def forget(self, member: str) -> None:
        if member == self._current:
            self._current = None


class Hashed(Dispatcher):
    def __init__(self, by_topic: bool) -> None:
        self._by_topic = by_topic

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        candidates = [m for m in members if eligible(m)]
        if not candidates:
            return None
        key = ctx.topic if self._by_topic else ctx.publisher
        return candidates[zlib.crc32(key.encode("utf-8")) % len(candidates)]


class LeastInflight(Dispatcher):
    """Fewest unacknowledged messages wins; ties go round robin so idle members share."""

    def __init__(self) -> None:
        self._turn = 0

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        n = len(members)
        best: str | None = None
        best_load = 0
        best_i = 0
        for step in range(n):
            i = (self._turn + step) % n
            member = members[i]
            if not eligible(member):
                continue
            load = ctx.inflight(member)
            if best is None or load < best_load:
                best, best_load, best_i = member, load, i
                if load == 0:
                    break
        if best is not None:
            self._turn = best_i + 1
        return best


class Local(Dispatcher):
    """EMQX's ``local``: round robin among the members on the publisher's node (a turn per
    node); when that node has none eligible, round robin among every other member."""

    def __init__(self) -> None:
        self._near: dict[int, RoundRobin] = {}
        self._far = RoundRobin()

    def choose(
        self, members: Sequence[str], eligible: Callable[[str], bool], ctx: DispatchContext
    ) -> str | None:
        node, node_of = ctx.node, ctx.node_of
        near = self._near.get(node)
        if near is None:
            near = self._near[node] = RoundRobin()
        one = near.choose(members, lambda m: node_of(m) == node and eligible(m), ctx)
        return one if one is not None else self._far.choose(members, eligible, ctx)


def make_dispatcher(strategy: str, seed: int | None, faults: frozenset[str]) -> Dispatcher:
    check_strategy(strategy)
    if strategy == "round_robin":
        return RoundRobin(per_publisher="per-publisher-rr" in faults)
    if strategy == "random":
        return RandomChoice(seed)
    if strategy == "sticky":
        return Sticky(seed)
    if strategy == "hash_clientid":
        return Hashed(by_topic=False)
    if strategy == "hash_topic":
        return Hashed(by_topic=True)
    if strategy == "local":
        return Local()
    return LeastInflight()


@dataclass(slots=True)
class ShareGroup:
    """Members of one ``$share/{name}/{filter}``, in the order they subscribed."""

    name: str
    topic_filter: str
    dispatcher: Dispatcher
    members: list[str] = field(default_factory=list)
    # node -> its own dispatcher, under the cluster faults (each node picks on its own)
    per_node: dict[int, Dispatcher] = field(default_factory=dict, repr=False, compare=False)
    # Computed once: the members' key in ``Session.subscriptions`` and ``OutMsg.share``.
    key: str = field(init=False, repr=False, compare=False)
    share: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = f"{SHARE_PREFIX}{self.name}/{self.topic_filter}"
        self.share = (self.name, self.topic_filter)

    def add(self, client_id: str) -> None:
        if client_id not in self.members:
            self.members.append(client_id)

    def remove(self, client_id: str) -> None:
        if client_id in self.members:
            self.members.remove(client_id)
            self.dispatcher.forget(client_id)
            for dispatcher in self.per_node.values():
                dispatcher.forget(client_id)
