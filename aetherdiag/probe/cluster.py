"""The cross-node checks, asked only when the probe is given several endpoints (the nodes of a
cluster, bridged brokers, brokers behind one load balancer).

How this works: a ``node_run`` puts share-group members on chosen nodes, a plain control
subscriber of the same topics on every node involved and one publisher on each publishing
node; each publisher sends its messages in one acknowledged block, and the run records who got
what (seq -> members, each on a known node). Three rows come out of two kinds of run:

- cross-node delivery: each node A publishes to a group whose members are all on the next node
  B (a ring, 1->2, ..., N->1, so every node publishes and receives); each message must reach
  exactly one member. Nothing arriving while A's own plain subscriber got the messages means
  the endpoints are not one cluster (no route); B's plain subscriber tells whether at least
  plain subscriptions cross.
- one copy across nodes: two members on every node, every node publishing in turn; each
  message must reach one member in total. One copy per node is bridged brokers or node-local
  dispatch.
- local preference (a fingerprint, pure, from the same run): did each node's messages stay with
  its own members? With messages able to cross (the first row passed) and each node's messages
  spread over several of its members, that is EMQX's ``local``; ``local_guess`` then names it
  as the strategy.

Every wait is bounded by the ``Context`` budget; the runs use their own topics, groups and
clients, so they run beside the other checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from .client import ProbeClient
from .context import Context, StepFailed, rc_text, sleep, wait_until
from .fingerprint import MAX_CONFIDENCE, Guess, percent
from .model import Check, Status

ROUTE_MEMBERS = 2  # members on the receiving node of a cross-node delivery run
ROUTE_MESSAGES = 6
SPLIT_PER_NODE = 2  # members on every node in the one-copy run
SPLIT_MESSAGES = 12  # messages each node publishes in the one-copy run
TOPICS = 5
LOCAL_MIN = 0.95  # share of a node's messages its own members got, to call it a preference
SECONDS_PER_CHECK = 3.0  # added to the --timeout budget for each cross-node run

DELIVERY = "cross_node_delivery"
ONCE = "cross_node_once"
LOCAL = "local_preference"
TITLES = {DELIVERY: "Cross-node delivery", ONCE: "One copy across nodes",
          LOCAL: "Local preference (publisher's node)"}
PER_NODE_COPY = "one copy per node: bridged or node-local dispatch"

_SPEC = ("MQTT 5.0 4.8.2: each message goes to ONE session of the group. A cluster is one "
         "server to its clients and must keep that across nodes; bridged or unclustered brokers "
         "are separate servers, each with its own group.")
_LOCAL_SPEC = ("The spec lets the server pick any member. EMQX's local strategy prefers members "
               "on the publisher's node and falls back to the others when it has none.")


@dataclass(frozen=True, kw_only=True)
class NodeRun:
    """Who got what in one cross-node run."""

    member_nodes: tuple[int, ...]  # member index -> its node
    origin: Mapping[int, int]  # accepted seq -> the node it was published on
    deliveries: Mapping[int, tuple[int, ...]]  # accepted seq -> member indexes, with repeats
    controls: Mapping[int, int]  # node -> accepted messages its plain subscriber got
    refused: str | None = None  # why the run could not subscribe or publish

    @property
    def published(self) -> int:
        return len(self.origin)

    @property
    def arrived(self) -> int:
        return sum(1 for got in self.deliveries.values() if got)

    @property
    def delivered(self) -> int:
        return sum(len(got) for got in self.deliveries.values())

    @property
    def extra(self) -> list[int]:
        """Seqs that reached more than one member, or one member twice."""
        return [seq for seq, got in self.deliveries.items() if len(got) > 1]

    def per_node(self, seq: int) -> bool:
        """``seq``'s copies went to members on different nodes, one per node."""
        nodes = [self.member_nodes[m] for m in self.deliveries[seq]]
        return len(nodes) > 1 and len(set(nodes)) == len(nodes)


def reach(ctx: Context) -> None:
    """Connect once to every node but the first; ``StepFailed`` naming the one that fails."""
    for node in range(2, ctx.nodes + 1):
        try:
            ctx.connected(f"reach{node}", node=node).close()
        except StepFailed as exc:
            raise StepFailed(f"node {node} ({ctx.endpoint(node).display()}): {exc}") from None


def node_run(ctx: Context, tag: str, member_nodes: Sequence[int], publishing: Sequence[int],
             per_node: int) -> NodeRun:
    """Members on ``member_nodes``; each node of ``publishing`` sends ``per_node`` messages."""
    base = f"{ctx.base}/{tag}"
    topic_filter = f"$share/{ctx.group(tag)}/{base}/+"
    watched = sorted(set(member_nodes) | set(publishing))
    schedule = [(i * per_node + k, node) for i, node in enumerate(publishing)
                for k in range(per_node)]
    blank = NodeRun(member_nodes=tuple(member_nodes), origin={}, deliveries={}, controls={})
    with ctx.clients() as made:
        roles = ([f"{tag}-m{i + 1}" for i in range(len(member_nodes))]
                 + [f"{tag}-c{n}" for n in watched] + [f"{tag}-p{n}" for n in publishing])
        made.extend(ctx.connected_many(roles, nodes=[*member_nodes, *watched, *publishing]))
        members = made[:len(member_nodes)]
        controls = dict(zip(watched, made[len(members):len(members) + len(watched)],
                            strict=True))
        pubs = dict(zip(publishing, made[len(members) + len(watched):], strict=True))
        subscriptions = [(c, f"{base}/+", f"a plain subscriber on node {n}")
                         for n, c in controls.items()]
        subscriptions += [(m, topic_filter, f"member {i + 1} on node {member_nodes[i]}")
                          for i, m in enumerate(members)]
        for client, wanted, who in subscriptions:
            answer = client.subscribe(wanted, 1, ctx.wait_step())
            if answer.refused or answer.codes is None:
                code = answer.disconnect if answer.disconnect is not None else (
                    answer.codes[0] if answer.codes else None)
                return replace(blank, refused=f"{who}: SUBSCRIBE answered {rc_text(code)}")
        sleep(ctx.wait_quiet())  # a cluster spreads new subscriptions to its other nodes
        origin: dict[int, int] = {}
        for node in publishing:
            mine = [seq for seq, n in schedule if n == node]
            items = [(f"{base}/t{seq % TOPICS}", ctx.payload(tag, seq), 1) for seq in mine]
            answers = pubs[node].publish_many(items, ctx.wait_step())
            origin.update((seq, node) for seq, a in zip(mine, answers, strict=True)
                          if a.codes is None or a.codes[0] < 0x80)
        if not origin:
            return replace(blank, refused="every PUBLISH was refused")
        _settle(ctx, tag, members, [controls[n] for n in publishing], set(origin))
        deliveries: dict[int, list[int]] = {seq: [] for seq in sorted(origin)}
        for index, member in enumerate(members):
            for msg in member.received():
                seq = ctx.seq_of(tag, msg.payload)
                if seq in deliveries:
                    deliveries[seq].append(index)
        got = {n: len(_seqs(ctx, tag, [c]) & set(origin)) for n, c in controls.items()}
    return NodeRun(member_nodes=tuple(member_nodes), origin=origin,
                   deliveries={s: tuple(v) for s, v in deliveries.items()}, controls=got)


def _seqs(ctx: Context, tag: str, clients: Sequence[ProbeClient]) -> set[int]:
    return {s for c in clients for m in c.received()
            if (s := ctx.seq_of(tag, m.payload)) is not None}


def _settle(ctx: Context, tag: str, members: Sequence[ProbeClient],
            controls: Sequence[ProbeClient], accepted: set[int]) -> None:
    """Wait (bounded) for every message at the members, then a quiet period for extra copies
    (a bridge's copy comes a hop later). When the publishers' own plain subscribers have
    everything and the members nothing, a short wait settles it: nothing is crossing."""
    def started() -> bool:
        return bool(_seqs(ctx, tag, members)) or accepted <= _seqs(ctx, tag, controls)

    if wait_until(started, ctx.budget.cap(max(1.0, 3 * ctx.quiet))):
        if _seqs(ctx, tag, members):
            wait_until(lambda: accepted <= _seqs(ctx, tag, members), ctx.wait_step())
        else:
            wait_until(lambda: bool(_seqs(ctx, tag, members)), ctx.wait_quiet())
    sleep(ctx.wait_quiet())


def _together(ctx: Context, jobs: Sequence[tuple[str, Sequence[int], Sequence[int], int]]
              ) -> list[NodeRun]:
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="probe-x") as pool:
        futures = [pool.submit(node_run, ctx, *job) for job in jobs]
        return [f.result() for f in futures]


def _nodes_text(nodes: Sequence[int]) -> str:
    names = [str(n) for n in sorted(set(nodes))]
    return "node " + names[0] if len(names) == 1 else (
        "nodes " + ", ".join(names[:-1]) + " and " + names[-1])


# -- cross-node delivery -----------------------------------------------------------------------


def delivery_check(ctx: Context) -> Check:
    """Node A publishes, the group's members are all on node B, for every A -> B of the ring."""
    pairs = [(a, a % ctx.nodes + 1) for a in range(1, ctx.nodes + 1)]
    runs = _together(ctx, [(f"x{a}to{b}", [b] * ROUTE_MEMBERS, [a], ROUTE_MESSAGES)
                           for a, b in pairs])
    never: list[str] = []
    plain_crossed = False
    bad: list[str] = []
    good: list[str] = []
    denied: list[str] = []
    data: list[dict[str, Any]] = []
    for (a, b), run in zip(pairs, runs, strict=True):
        n = run.published
        head = f"node {a} -> node {b}: "
        data.append({"from": a, "to": b, "published": n, "arrived": run.arrived,
                     "delivered": run.delivered, "control_from": run.controls.get(a),
                     "control_to": run.controls.get(b), "refused": run.refused})
        if run.refused is not None:
            denied.append(head + run.refused)
        elif not run.arrived and not run.controls.get(a):
            denied.append(head + f"none of {n} messages reached even a plain subscriber on "
                                 f"node {a} (an ACL?)")
        elif not run.arrived:
            plain_crossed = plain_crossed or bool(run.controls.get(b))
            never.append(head + f"none of {n} messages reached the group's {ROUTE_MEMBERS} "
                                f"members on node {b} (a plain subscriber on node {a} got "
                                f"{run.controls.get(a)}, one on node {b} got "
                                f"{run.controls.get(b)})")
        elif run.extra or run.arrived < n:
            bad.append(head + f"{run.arrived} of {n} messages arrived, {len(run.extra)} of them "
                              f"more than once ({run.delivered} deliveries)")
        else:
            good.append(head + f"each of {n} messages reached exactly one of the "
                               f"{ROUTE_MEMBERS} members on node {b}")
    evidence = "; ".join(never + bad + good + denied)
    title = TITLES[DELIVERY]
    common: dict[str, Any] = {"id": DELIVERY, "title": title, "evidence": evidence,
                              "spec": _SPEC, "data": {"pairs": data}}
    if never:
        why = ("the nodes route plain subscriptions but not this share group" if plain_crossed
               else "the endpoints are not one cluster (no route between them)")
        return Check(status=Status.FAIL, result=f"never arrived: {why}",
                     meaning="workers behind one endpoint never get tasks published on another: "
                             "cluster the brokers, or publish on every node", **common)
    if bad:
        return Check(status=Status.FAIL, result="not exactly once",
                     meaning="a task that crosses nodes is lost or reaches a worker more than "
                             "once", **common)
    if not good:
        return Check(status=Status.SKIP, result="not tested",
                     meaning="the broker refused the probe's own topics on a node", **common)
    return Check(status=Status.PASS, result="exactly once",
                 meaning="a task published on any node reaches the group's workers on another "
                         "node, once", **common)


# -- one copy across nodes ---------------------------------------------------------------------


def once_run(ctx: Context) -> NodeRun:
    """Two members on every node (interleaved in subscription order), every node publishing."""
    nodes = list(range(1, ctx.nodes + 1))
    return node_run(ctx, "xs", [n for _ in range(SPLIT_PER_NODE) for n in nodes], nodes,
                    SPLIT_MESSAGES)


def once_check(run: NodeRun) -> Check:
    """Each message of the one-copy run reached one member in total."""
    title = TITLES[ONCE]
    n = run.published
    nodes = _nodes_text(run.member_nodes)
    setup = (f"{len(run.member_nodes)} members ({SPLIT_PER_NODE} on each of {nodes}), {n} "
             f"messages published on {_nodes_text(list(run.origin.values()) or [1])}: ")
    data = {"published": n, "arrived": run.arrived, "delivered": run.delivered,
            "extra": len(run.extra), "members_per_node": SPLIT_PER_NODE,
            "per_node": sum(1 for s in run.extra if run.per_node(s)),
            "by_node": _by_node(run)}

    def row(status: Status, result: str, evidence: str, meaning: str) -> Check:
        return Check(id=ONCE, title=title, status=status, result=result, evidence=evidence,
                     spec=_SPEC, meaning=meaning, data=data)

    if run.refused is not None or (not run.arrived and not any(run.controls.values())):
        return row(Status.SKIP, "not tested", run.refused or f"none of {n} messages reached "
                   "even a plain subscriber (an ACL?)", "-")
    extra = run.extra
    if extra and all(run.per_node(s) for s in extra):
        return row(Status.FAIL, PER_NODE_COPY,
                   setup + f"{len(extra)} of {n} reached one member on each of {nodes} "
                   f"({run.delivered} deliveries)",
                   "each task is processed once per node: every node dispatches the group on its "
                   "own (bridged brokers, or a cluster that does not share the group)")
    if extra:
        return row(Status.FAIL, "duplicated",
                   setup + f"{len(extra)} of {n} reached more than one member or one member twice "
                   f"({run.delivered} deliveries)",
                   "tasks reach more than one worker across the nodes")
    split = ", ".join(f"node {k}'s members got {v}" for k, v in _by_node(run).items())
    if run.arrived < n:
        return row(Status.WARN, f"{n - run.arrived} never arrived",
                   setup + f"{run.arrived} of {n} arrived, each at one member ({split})",
                   "no duplicates across nodes, but some tasks were lost on the way")
    return row(Status.PASS, "one copy",
               setup + f"each reached exactly one member ({split})",
               "the nodes share the group: each task reaches one worker in the whole cluster")


def _by_node(run: NodeRun) -> dict[int, int]:
    out = {n: 0 for n in sorted(set(run.member_nodes))}
    for got in run.deliveries.values():
        for m in got:
            out[run.member_nodes[m]] += 1
    return out


# -- local preference --------------------------------------------------------------------------


def local_check(run: NodeRun | None, delivery: Check | None, why_not: str = "") -> Check:
    """Did each node's messages of the one-copy run stay with that node's members? Pure."""
    title = TITLES[LOCAL]

    def row(status: Status, result: str, evidence: str, meaning: str = "-",
            data: Mapping[str, Any] | None = None) -> Check:
        return Check(id=LOCAL, title=title, status=status, result=result, evidence=evidence,
                     spec=_LOCAL_SPEC, meaning=meaning, data=dict(data or {}))

    if run is None or run.refused is not None or not run.arrived:
        return row(Status.SKIP, "not tested",
                   why_not or (run.refused if run else None) or "the one-copy run delivered "
                   "nothing")
    if run.extra:
        return row(Status.SKIP, "not applicable", "each node's members got their own copy "
                   f"(see {TITLES[ONCE].lower()}), so no node's members were preferred")
    if delivery is None or delivery.status is not Status.PASS:
        return row(Status.SKIP, "not applicable",
                   f"messages do not cross the nodes reliably (see {TITLES[DELIVERY].lower()}), "
                   "so staying on the publisher's node is no preference")
    shares: dict[int, float] = {}
    spread = True
    chance = 1.0
    parts = []
    all_members = len(run.member_nodes)
    for node in sorted(set(run.origin.values())):
        got = [(seq, g[0]) for seq, g in run.deliveries.items()
               if g and run.origin[seq] == node]
        local = [m for _seq, m in got if run.member_nodes[m] == node]
        on_node = sum(1 for n in run.member_nodes if n == node)
        even = on_node / all_members
        shares[node] = len(local) / len(got) if got else 0.0
        spread = spread and (len(set(local)) >= 2 or on_node < 2)
        chance *= even ** len(got)
        parts.append(f"node {node}'s {len(got)} messages: {len(local)} to its own {on_node} "
                     f"members ({len(set(local))} of them used; an even spread gives "
                     f"{even:.0%})")
    evidence = "; ".join(parts)
    overall = sum(shares.values()) / len(shares)
    even_share = 1.0 / len(shares)
    data: dict[str, Any] = {"local_share": {str(k): round(v, 3) for k, v in shares.items()}}
    if all(s >= LOCAL_MIN for s in shares.values()) and spread:
        confidence = round(min(MAX_CONFIDENCE, 1.0 - chance), 3)
        data.update(preference="local", confidence=confidence)
        return row(Status.WARN, f"prefers the publisher's node (local), confidence "
                   f"{percent(confidence)}",
                   evidence + "; yet a node without members gets the messages (cross-node "
                   "delivery)",
                   "tasks stay on the node they are published on while it has workers "
                   "(EMQX's local): workers behind a node without publishers idle; publish "
                   "on every node", data)
    if overall <= even_share + 0.3:
        data.update(preference="none")
        return row(Status.PASS, "no preference", evidence,
                   "tasks are spread over every node's workers, whichever node publishes", data)
    data.update(preference="partial")
    return row(Status.INFO, "mostly the publisher's node", evidence,
               "some preference for the publisher's node (or a choice that follows the "
               "publisher); look at the shares", data)


def local_guess(check: Check, within: Guess | None) -> Guess | None:
    """The strategy ``local`` when ``check`` found the preference; None otherwise."""
    if check.data.get("preference") != "local":
        return None
    confidence = float(check.data["confidence"])
    evidence = check.evidence
    if within is not None:
        evidence += f"; within node 1 the choice looked like {within.label} ({within.evidence})"
    return Guess(name="local", confidence=confidence, evidence=evidence,
                 scores={**(within.scores if within else {}), "local": confidence},
                 counts=within.counts if within else (),
                 messages=within.messages if within else 0)


def budget_extra(nodes: int) -> float:
    """Seconds the cross-node runs add to the probe's --timeout budget."""
    return 0.0 if nodes < 2 else 2 * SECONDS_PER_CHECK


__all__ = ["DELIVERY", "LOCAL", "ONCE", "NodeRun", "budget_extra", "delivery_check",
           "local_check", "local_guess", "once_check", "once_run", "reach"]
