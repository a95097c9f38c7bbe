"""Which dispatch strategy produced this delivery sequence? Pure functions, no broker.

How this works: the probe publishes a known schedule (``design``): message ``seq`` comes from
publisher ``p`` on topic ``t``, publishers take turns in short blocks, topics cycle with a
period that shares no factor with the member count, so publisher, topic and position in the
sequence are not confounded. ``fingerprint`` receives which member got each message and
measures how well each candidate explains it:

- sticky: the share of the busiest member;
- hash_clientid / hash_topic: purity, i.e. how often a message went to the member that gets
  most of its publisher's (topic's) messages; needs at least two distinct members in use;
- round_robin per group: how often the next message went to the member that usually follows
  the previous one (a fixed cycle through every member); per publisher: the same within each
  publisher's own messages;
- random: none of the above beats chance and every member is used.

Each raw fit is compared with what uniformly random dispatch scores on the very same schedule
(a seeded simulation, so results are reproducible): ``normalised = (fit - chance) / (1 -
chance)`` and ``p`` = the fraction of random runs that fit at least as well. A candidate's
confidence is ``normalised * (1 - p)``. A pull queue (least_inflight) cannot be seen when all
members are fast; ``pull_test`` judges a second run in which one member never acknowledges,
and ``combine`` merges both.
EMQX's ``local`` (prefer the publisher's node) cannot show in a sequence from one node: only a
probe of several endpoints names it (cluster.py; ``strategy_names``).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..analysis.stats import chi_square_sf

ONE_NODE = ("round_robin", "random", "sticky", "hash_clientid", "hash_topic", "least_inflight")
# Named only when the probe has several endpoints (cluster.py): on one node EMQX's local deals
# among that node's members like the strategies above, so only publishing on one node to
# members on several shows the preference.
ACROSS_NODES = ("local",)
STRATEGIES = ONE_NODE + ACROSS_NODES
UNKNOWN = "unknown"

STICKY_MIN = 0.95  # share of the busiest member
PURITY_MIN = 0.95  # hash_* purity
CYCLE_MIN = 0.9  # round robin transitions that follow the cycle
PULL_MAX_SHARE = 0.1  # a member that never acks gets at most this share under a pull queue
MIN_MESSAGES = 12
MAX_CONFIDENCE = 0.995  # a few hundred messages never make a verdict certain


def strategy_names(endpoints: int) -> tuple[str, ...]:
    """The strategies a probe of ``endpoints`` endpoints can name (``local`` needs two)."""
    return STRATEGIES if endpoints > 1 else ONE_NODE


@dataclass(frozen=True, kw_only=True)
class Slot:
    """One message of the schedule: its sequence number, publisher index and topic index."""

    seq: int
    publisher: int
    topic: int


def design(messages: int, publishers: int, topics: int, block: int,
           first_seq: int = 0, first_publisher: int = 0) -> tuple[Slot, ...]:
    """Publishers take turns sending ``block`` messages; topic = seq modulo ``topics``."""
    return tuple(
        Slot(seq=first_seq + i, publisher=first_publisher + (i // block) % publishers,
             topic=(first_seq + i) % topics)
        for i in range(messages)
    )


def publisher_blocks(schedule: Sequence[Slot]) -> list[list[Slot]]:
    """Consecutive runs of one publisher (each is sent back to back, then acknowledged)."""
    out: list[list[Slot]] = []
    for slot in schedule:
        if out and out[-1][-1].publisher == slot.publisher:
            out[-1].append(slot)
        else:
            out.append([slot])
    return out


@dataclass(frozen=True, kw_only=True)
class Fits:
    """Raw fit of each hypothesis to one observed sequence (see the module comment)."""

    top_share: float
    publisher_purity: float
    publisher_distinct: int
    topic_purity: float
    topic_distinct: int
    rr_group: float
    rr_group_cycle: bool
    rr_publisher: float
    rr_publisher_cycle: bool

    def raw(self, hypothesis: str) -> float:
        return {
            "sticky": self.top_share,
            "hash_clientid": self.publisher_purity,
            "hash_topic": self.topic_purity,
            "round_robin/group": self.rr_group,
            "round_robin/publisher": self.rr_publisher,
        }[hypothesis]


HYPOTHESES = ("sticky", "hash_topic", "hash_clientid", "round_robin/group",
              "round_robin/publisher")


def _purity(groups: Mapping[int, Counter[int]], n: int) -> tuple[float, int]:
    if not n:
        return 0.0, 0
    best = 0
    majority: set[int] = set()
    for counts in groups.values():
        member, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        best += count
        majority.add(member)
    return best / n, len(majority)


def _cycle_fit(chains: Iterable[Sequence[int | None]]) -> tuple[float, bool]:
    """How often ``b`` followed ``a`` as the usual successor of ``a``; and whether the usual
    successors form one cycle through every member seen."""
    pairs: Counter[tuple[int, int]] = Counter()
    used: set[int] = set()
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            if a is not None and b is not None:
                pairs[(a, b)] += 1
                used.update((a, b))
    total = sum(pairs.values())
    if not total:
        return 0.0, False
    by_first: dict[int, Counter[int]] = defaultdict(Counter)
    for (a, b), count in pairs.items():
        by_first[a][b] += count
    succ = {a: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for a, c in by_first.items()}
    hits = sum(by_first[a][b] for a, b in succ.items())
    cycle = False
    if len(used) >= 2 and set(succ) == used and all(a != b for a, b in succ.items()):
        start = min(used)
        seen = {start}
        cur = succ[start]
        while cur != start and cur not in seen and cur in succ:
            seen.add(cur)
            cur = succ[cur]
        cycle = cur == start and seen == used
    return hits / total, cycle


def fits(schedule: Sequence[Slot], recipients: Mapping[int, int]) -> Fits:
    """Measure every hypothesis on ``recipients`` (seq -> member index; missing seqs allowed)."""
    seen = [s for s in schedule if s.seq in recipients]
    n = len(seen)
    counts = Counter(recipients[s.seq] for s in seen)
    by_pub: dict[int, Counter[int]] = defaultdict(Counter)
    by_topic: dict[int, Counter[int]] = defaultdict(Counter)
    for s in seen:
        by_pub[s.publisher][recipients[s.seq]] += 1
        by_topic[s.topic][recipients[s.seq]] += 1
    pub_purity, pub_distinct = _purity(by_pub, n)
    topic_purity, topic_distinct = _purity(by_topic, n)
    ordered = sorted(schedule, key=lambda s: s.seq)
    global_chain = [recipients.get(s.seq) for s in ordered]
    per_pub: dict[int, list[int | None]] = defaultdict(list)
    for s in ordered:
        per_pub[s.publisher].append(recipients.get(s.seq))
    rr_group, rr_group_cycle = _cycle_fit([global_chain])
    rr_pub, rr_pub_cycle = _cycle_fit(per_pub.values())
    return Fits(
        top_share=max(counts.values()) / n if n else 0.0,
        publisher_purity=pub_purity, publisher_distinct=pub_distinct,
        topic_purity=topic_purity, topic_distinct=topic_distinct,
        rr_group=rr_group, rr_group_cycle=rr_group_cycle,
        rr_publisher=rr_pub, rr_publisher_cycle=rr_pub_cycle,
    )


@dataclass(frozen=True, kw_only=True)
class Guess:
    """The strategy verdict. ``name`` is an emulator ``--strategy`` value or ``unknown``."""

    name: str
    scope: str | None = None  # round_robin only: "group" or "publisher"
    confidence: float = 0.0
    evidence: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    counts: tuple[int, ...] = ()  # deliveries per member, in subscription order
    messages: int = 0

    @property
    def label(self) -> str:
        if self.name == "round_robin" and self.scope:
            return f"round_robin (per {self.scope})"
        return self.name


def _chance(schedule: Sequence[Slot], seqs: Sequence[int], members: int, sims: int, seed: int
            ) -> list[Fits]:
    rng = random.Random(seed)
    return [fits(schedule, {s: rng.randrange(members) for s in seqs}) for _ in range(sims)]


def _score(observed: float, simulated: Sequence[float]) -> tuple[float, float]:
    """(normalised fit, p) against the simulated random runs."""
    chance = sum(simulated) / len(simulated) if simulated else 0.0
    norm = (observed - chance) / (1.0 - chance) if chance < 1.0 else 0.0
    p = (1 + sum(1 for x in simulated if x >= observed - 1e-12)) / (1 + len(simulated))
    return max(0.0, min(1.0, norm)), p


def _ordinal(counts: Sequence[int]) -> str:
    return ", ".join(f"member-{i + 1}: {c}" for i, c in enumerate(counts))


def fingerprint(schedule: Sequence[Slot], recipients: Mapping[int, int], members: int, *,
                sims: int = 200, seed: int = 0) -> Guess:
    """Guess the dispatch strategy from who got which message (see the module comment)."""
    seen = sorted(s.seq for s in schedule if s.seq in recipients)
    counter = Counter(recipients[s] for s in seen)
    counts = tuple(counter.get(i, 0) for i in range(members))
    n = len(seen)
    publishers = len({s.publisher for s in schedule})
    topics = len({s.topic for s in schedule})
    if n < MIN_MESSAGES or members < 2:
        return Guess(name=UNKNOWN, evidence=f"too few deliveries to judge ({n})",
                     counts=counts, messages=n)
    f = fits(schedule, recipients)
    simulated = _chance(schedule, seen, members, sims, seed)
    scores: dict[str, float] = {}
    norms: dict[str, float] = {}
    for h in HYPOTHESES:
        norm, p = _score(f.raw(h), [x.raw(h) for x in simulated])
        norms[h] = norm
        scores[h] = round(norm * (1.0 - p), 4)
    passes = {
        "sticky": f.top_share >= STICKY_MIN,
        "hash_topic": f.topic_purity >= PURITY_MIN and f.topic_distinct >= 2,
        "hash_clientid": f.publisher_purity >= PURITY_MIN and f.publisher_distinct >= 2,
        "round_robin/group": f.rr_group >= CYCLE_MIN and f.rr_group_cycle,
        "round_robin/publisher": f.rr_publisher >= CYCLE_MIN and f.rr_publisher_cycle,
    }
    for h, ok in passes.items():
        if not ok:
            scores[h] = 0.0
    winners = [h for h in HYPOTHESES if passes[h]]
    base = f"{n} messages from {publishers} publishers on {topics} topics ({_ordinal(counts)})"
    if winners:
        best = winners[0]
        confidence = scores[best]
        rivals = [h for h in winners[1:] if not best.startswith("round_robin")
                  or not h.startswith("round_robin")]
        if rivals:
            confidence *= 0.5
        name, _, scope = best.partition("/")
        why = {
            "sticky": f"{f.top_share:.0%} went to one member whatever the publisher or topic",
            "hash_topic": f"each topic always went to the same member (purity "
                          f"{f.topic_purity:.0%}, {f.topic_distinct} members in use)",
            "hash_clientid": f"each publisher's messages always went to the same member "
                             f"(purity {f.publisher_purity:.0%}, {f.publisher_distinct} "
                             f"members in use)",
            "round_robin/group": f"{f.rr_group:.0%} of consecutive messages followed one fixed "
                                 f"cycle through every member, whoever published them",
            "round_robin/publisher": f"each publisher's own messages cycled through the members "
                                     f"({f.rr_publisher:.0%}) but the group as a whole did not "
                                     f"({f.rr_group:.0%}): the turn is kept per publisher",
        }[best]
        if rivals:
            why += f"; also consistent with {', '.join(rivals)}"
        return Guess(name=name, scope=scope or None, confidence=round(confidence, 3),
                     evidence=f"{why}; {base}", scores=scores, counts=counts, messages=n)
    best_norm = max(norms.values())
    chi_p = chi_square_p(counts)
    # Random dispatch scores at most ~0.2 above chance on 96 messages (noise ~ 1/sqrt(n)).
    noise = min(0.6, 0.35 * math.sqrt(96 / n))
    if all(counts) and best_norm < noise and chi_p > 1e-4:
        confidence = min(MAX_CONFIDENCE, (1.0 - best_norm) * min(1.0, 0.5 + chi_p * 10))
        scores["random"] = round(confidence, 4)
        return Guess(name="random", confidence=round(confidence, 3),
                     evidence=f"no order, publisher or topic explains who got what "
                              f"(best structured fit {best_norm:.0%} above chance); {base}",
                     scores=scores, counts=counts, messages=n)
    closest = max(norms, key=lambda h: norms[h])
    return Guess(name=UNKNOWN, confidence=0.0,
                 evidence=f"no known strategy fits; closest: {closest} "
                          f"({f.raw(closest):.0%}); {base}",
                 scores=scores, counts=counts, messages=n)


@dataclass(frozen=True, kw_only=True)
class PullResult:
    """A run where member 0 never acknowledges: does the broker stop feeding it?"""

    starved: bool
    slow: int
    total: int
    confidence: float
    evidence: str


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)))


def pull_test(slow: int, total: int, members: int, *, held: int = 0) -> PullResult:
    """Judge the slow-member run: ``slow`` of ``total`` messages were given to the member that
    did not acknowledge (``held`` of them were held back for it, e.g. queued behind a broker's
    in-flight limit, and only arrived once it acknowledged, or never). An even split gives it
    ``total / members``; a pull queue almost nothing."""
    if total < MIN_MESSAGES or members < 2:
        return PullResult(starved=False, slow=slow, total=total, confidence=0.0,
                          evidence=f"too few deliveries to judge ({total})")
    expected = total / members
    share = slow / total
    starved = share <= PULL_MAX_SHARE
    chance = binom_cdf(slow, total, 1.0 / members)
    if starved:
        # The very first message may reach the slow member before it is busy.
        confidence = max(0.0, 1.0 - max(0, slow - 1) / expected) * (1.0 - chance)
        evidence = (f"a member that never acknowledged got {slow} of {total} messages "
                    f"(an even split gives {expected:.0f}): busy members are skipped")
    else:
        confidence = 1.0 - binom_cdf(int(expected * members * PULL_MAX_SHARE), total,
                                     1.0 / members)
        queued = (f", {held} of them held for it until it acknowledged"
                  if held else "")
        evidence = (f"a member that never acknowledged still got {slow} of {total} messages "
                    f"(even split {expected:.0f}{queued}): the broker does not look at member "
                    "load")
    return PullResult(starved=starved, slow=slow, total=total,
                      confidence=round(min(MAX_CONFIDENCE, confidence), 3), evidence=evidence)


def combine(guess: Guess, pull: PullResult | None) -> Guess:
    """Fold the slow-member run into the sequence verdict."""
    if pull is None:
        return guess
    scores = dict(guess.scores)
    scores["least_inflight"] = pull.confidence if pull.starved else 0.0
    if pull.starved and (guess.name in ("random", UNKNOWN) or guess.scope == "group"):
        return Guess(name="least_inflight", confidence=pull.confidence,
                     evidence=f"{pull.evidence}; with every member fast the sequence looked "
                              f"like {guess.label}", scores=scores, counts=guess.counts,
                     messages=guess.messages)
    return Guess(name=guess.name, scope=guess.scope, confidence=guess.confidence,
                 evidence=f"{guess.evidence}; {pull.evidence}", scores=scores,
                 counts=guess.counts, messages=guess.messages)


def percent(confidence: float) -> str:
    """``99%``: rounded down, so 0.995 never shows as a certain 100%."""
    return f"{math.floor(confidence * 100 + 1e-9):.0f}%"


def chi_square_p(counts: Sequence[int]) -> float:
    """p-value of a chi-square test of ``counts`` against an even split."""
    k = len(counts)
    n = sum(counts)
    if k < 2 or n == 0:
        return 1.0
    expected = n / k
    x = sum((c - expected) ** 2 / expected for c in counts)
    return chi_square_sf(x, k - 1)
