"""What every probe step shares: the target, the run id, the time budget and client factory.

How this works: one ``Context`` per probe run. Topics live under ``aetherdiag-probe/{run}/``,
client ids are ``adprobe-{run}-{role}`` and share groups ``adp{run}-{tag}``, so two probes (or
a probe and real workers) on one broker never meet. ``Budget`` turns the ``--timeout`` into an
absolute deadline: every wait asks it for a bounded slice. Payloads are
``adp/{run}/{tag}/{seq}`` so stray messages from anything else are ignored.

``share_run`` is the workhorse: members subscribe (in order) to a filter, publishers send a
schedule in acknowledged blocks so the broker sees a known order, and the result says which
member got which message. ``classify_share`` (pure) turns that into balanced / fanout /
literal / refused.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..harness.model import BrokerTarget
from .client import V5, ConnectFailed, ProbeClient, close_all
from .fingerprint import Slot
from .model import BALANCED, FANOUT, LITERAL, REFUSED

REASONS: dict[int, str] = {
    0x80: "unspecified error / failure", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x8F: "topic filter invalid", 0x90: "topic name invalid", 0x97: "quota exceeded",
    0x99: "payload format invalid", 0x9E: "shared subscriptions not supported",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported", 0x10: "no matching subscribers",
    0x8B: "server shutting down", 0x8D: "keep alive timeout", 0x8E: "session taken over",
    0x93: "receive maximum exceeded", 0x95: "packet too large", 0x9A: "retain not supported",
    0x9B: "QoS not supported", 0x9F: "connection rate exceeded",
}


def rc_text(code: int | None) -> str:
    """``0x8F (topic filter invalid)``; -1 means the connection was closed."""
    if code is None:
        return "no answer"
    if code < 0:
        return "connection closed"
    name = REASONS.get(code)
    return f"0x{code:02X}" + (f" ({name})" if name else "")


class StepFailed(Exception):
    """A probe step could not do what it needed (e.g. a helper client was refused)."""


class Budget:
    """An absolute deadline that hands out bounded waits."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def cap(self, seconds: float) -> float:
        return max(0.0, min(seconds, self.left()))

    def elapsed(self) -> float:
        return time.monotonic() - self.start


@dataclass
class Context:
    target: BrokerTarget
    budget: Budget
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    quiet: float = 0.4  # how long "nothing (more) arrives" is waited for
    rtt: float = 0.0  # estimated round trip to the broker, seconds
    step: float = 3.0  # upper bound on waiting for one expected answer
    version: str = V5  # protocol used by the single-version checks
    _clients: list[ProbeClient] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"aetherdiag-probe/{self.run_id}"

    def cid(self, role: str) -> str:
        return f"adprobe-{self.run_id}-{role}"

    def group(self, tag: str) -> str:
        return f"adp{self.run_id}-{tag}"

    def shorten(self, text: str) -> str:
        """Evidence for people: the run's topic prefix shows as ``…``, groups as ``g-{tag}``."""
        return text.replace(self.base, "…").replace(f"adp{self.run_id}-", "g-")

    def payload(self, tag: str, seq: int) -> bytes:
        return f"adp/{self.run_id}/{tag}/{seq}".encode()

    def seq_of(self, tag: str, payload: bytes) -> int | None:
        prefix = f"adp/{self.run_id}/{tag}/"
        text = payload.decode("utf-8", "replace")
        if not text.startswith(prefix):
            return None
        try:
            return int(text[len(prefix):])
        except ValueError:
            return None

    def wait_step(self) -> float:
        return self.budget.cap(self.step)

    def wait_quiet(self, factor: float = 1.0) -> float:
        return self.budget.cap(self.quiet * factor)

    def client(self, role: str, version: str | None = None, **kwargs: object) -> ProbeClient:
        c = ProbeClient(self.target, self.cid(role), version=version or self.version,
                        **kwargs)  # type: ignore[arg-type]
        with self._lock:
            self._clients.append(c)
        return c

    def connected(self, role: str, version: str | None = None, **kwargs: object
                  ) -> ProbeClient:
        """A client that got CONNACK 0, or ``StepFailed``."""
        c = self.client(role, version, **kwargs)
        try:
            ack = c.connect(self.wait_step())
        except ConnectFailed as exc:
            raise StepFailed(f"{role}: {exc}") from None
        if not ack.accepted:
            c.close()
            raise StepFailed(f"{role}: CONNACK {rc_text(ack.reason_code)}")
        return c

    def connected_many(self, roles: Sequence[str], version: str | None = None,
                       manual_ack_first: bool = False) -> list[ProbeClient]:
        """Connect several clients at once (one round trip instead of one per client)."""
        if len(roles) < 2:
            return [self.connected(r, version, manual_ack=manual_ack_first) for r in roles]
        with ThreadPoolExecutor(max_workers=min(8, len(roles))) as pool:
            futures = [pool.submit(self.connected, role, version,
                                   manual_ack=manual_ack_first and i == 0)
                       for i, role in enumerate(roles)]
            done: list[ProbeClient] = []
            error: StepFailed | None = None
            for future in futures:
                try:
                    done.append(future.result())
                except StepFailed as exc:
                    error = error or exc
        if error is not None:
            close_all(done)
            raise error
        return done

    @contextlib.contextmanager
    def clients(self) -> Iterator[list[ProbeClient]]:
        """A list to put a step's clients in; all are closed when the step ends."""
        made: list[ProbeClient] = []
        try:
            yield made
        finally:
            close_all(made)

    def close_everything(self) -> None:
        with self._lock:
            left = list(self._clients)
        close_all(left)


def sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (bounded)."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


# -- share runs --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ShareOutcome:
    """``classify_share``'s verdict on one run."""

    behaviour: str  # balanced | fanout | literal | refused
    detail: str
    published: int
    delivered: int  # deliveries counted with repeats
    distinct: int  # messages that reached at least one member
    cross_member: int  # messages that reached more than one member
    repeats: int  # extra copies to a member that already had the message
    repeats_dup: int  # ... of which carried the DUP flag
    missing: int


def classify_share(
    published: int, deliveries: Mapping[int, Sequence[tuple[int, bool]]], members: int,
    refusal: str | None = None,
) -> ShareOutcome:
    """balanced / fanout / literal / refused from who got what (seq -> [(member, dup)])."""
    delivered = sum(len(v) for v in deliveries.values())
    distinct = sum(1 for v in deliveries.values() if v)
    cross = sum(1 for v in deliveries.values() if len({m for m, _ in v}) > 1)
    repeats = repeats_dup = 0
    for got in deliveries.values():
        seen: set[int] = set()
        for member, dup in got:
            if member in seen:
                repeats += 1
                repeats_dup += int(dup)
            seen.add(member)
    everyone = sum(1 for v in deliveries.values() if len({m for m, _ in v}) >= members)
    missing = max(0, published - distinct)
    common = dict(published=published, delivered=delivered, distinct=distinct,
                  cross_member=cross, repeats=repeats, repeats_dup=repeats_dup, missing=missing)
    if refusal is not None:
        return ShareOutcome(behaviour=REFUSED, detail=refusal, **common)
    if not distinct:
        return ShareOutcome(
            behaviour=LITERAL,
            detail=f"subscriptions accepted, none of {published} messages arrived", **common)
    if cross:
        if everyone == published and members > 1:
            detail = f"every one of {members} members got every message ({delivered} " \
                     f"deliveries for {published} messages)"
        else:
            detail = f"{cross} of {published} messages reached more than one member"
        return ShareOutcome(behaviour=FANOUT, detail=detail, **common)
    detail = f"each of {distinct} messages reached exactly one of {members} members"
    if missing:
        detail += f"; {missing} of {published} never arrived"
    return ShareOutcome(behaviour=BALANCED, detail=detail, **common)


@dataclass(frozen=True, kw_only=True)
class ShareRun:
    version: str
    topic_filter: str
    members: int
    schedule: tuple[Slot, ...]
    suback: tuple[int, ...]  # first SUBACK code of each member that got one
    refusal: str | None
    refused_code: int | None
    deliveries: dict[int, list[tuple[int, bool]]]  # seq -> [(member index, dup)]
    publish_failures: int
    outcome: ShareOutcome

    def recipients(self) -> dict[int, int]:
        """seq -> the first member that got it (for the fingerprint)."""
        return {seq: got[0][0] for seq, got in self.deliveries.items() if got}


def share_run(
    ctx: Context,
    *,
    tag: str,
    version: str,
    topic_filter: str,
    topic_of: Callable[[Slot], str],
    schedule: Sequence[Slot],
    members: int = 3,
    qos: int = 1,
    slow_first: bool = False,
    sequential: bool = False,
) -> ShareRun:
    """Subscribe ``members`` clients to ``topic_filter`` and publish ``schedule``.

    ``slow_first``: member 0 never acknowledges (paho manual_ack), for the pull test.
    ``sequential``: publish one message at a time and wait for it to arrive before the next,
    so the broker knows every fast member is idle again.
    """
    with ctx.clients() as made:
        subs: list[ProbeClient] = []
        codes: list[int] = []
        refusal: str | None = None
        refused_code: int | None = None
        connected = ctx.connected_many([f"{tag}-m{i + 1}" for i in range(members)], version,
                                       manual_ack_first=slow_first)
        made.extend(connected)
        for member in connected:  # subscribe in order: the group's member order
            subs.append(member)
            answer = member.subscribe(topic_filter, qos, ctx.wait_step())
            if answer.codes:
                codes.append(answer.codes[0])
            if answer.refused or answer.codes is None:
                refused_code = answer.disconnect if answer.disconnect is not None else (
                    answer.codes[0] if answer.codes else None)
                how = "DISCONNECT" if answer.disconnect is not None else "SUBACK"
                refusal = f"{how} {rc_text(refused_code)} for {topic_filter!r}"
                if answer.codes is None and answer.disconnect is None:
                    refusal = f"no SUBACK for {topic_filter!r}"
                break
        publishers: dict[int, ProbeClient] = {}
        failures = 0
        if refusal is None:
            indexes = sorted({s.publisher for s in schedule})
            pubs = ctx.connected_many([f"{tag}-p{i + 1}" for i in indexes], version)
            made.extend(pubs)
            publishers.update(zip(indexes, pubs, strict=True))
            failures = _publish(ctx, tag, schedule, publishers, topic_of, qos, subs, sequential)
            expected = len(schedule)
            # Silence first costs at most a few quiet periods (literal brokers deliver
            # nothing); once messages flow, wait up to a full step for the rest.
            if wait_until(lambda: _distinct(ctx, tag, subs) > 0,
                          ctx.budget.cap(max(1.0, 3 * ctx.quiet))):
                wait_until(lambda: _distinct(ctx, tag, subs) >= expected, ctx.wait_step())
            sleep(ctx.wait_quiet(0.5 if _distinct(ctx, tag, subs) else 0.0))
        deliveries: dict[int, list[tuple[int, bool]]] = {s.seq: [] for s in schedule}
        for index, member in enumerate(subs):
            for msg in member.received():
                seq = ctx.seq_of(tag, msg.payload)
                if seq is not None and seq in deliveries:
                    deliveries[seq].append((index, msg.dup))
        if slow_first and subs:
            subs[0].ack_all()
            sleep(ctx.wait_quiet(0.25))
        published = len(schedule) if refusal is None else 0  # nothing is sent when refused
        outcome = classify_share(published, deliveries, members, refusal)
        return ShareRun(version=version, topic_filter=topic_filter, members=members,
                        schedule=tuple(schedule), suback=tuple(codes), refusal=refusal,
                        refused_code=refused_code, deliveries=deliveries,
                        publish_failures=failures, outcome=outcome)


def _distinct(ctx: Context, tag: str, subs: Sequence[ProbeClient]) -> int:
    seqs = set()
    for member in subs:
        for msg in member.received():
            seq = ctx.seq_of(tag, msg.payload)
            if seq is not None:
                seqs.add(seq)
    return len(seqs)


def _publish(
    ctx: Context, tag: str, schedule: Sequence[Slot], publishers: Mapping[int, ProbeClient],
    topic_of: Callable[[Slot], str], qos: int, subs: Sequence[ProbeClient], sequential: bool,
) -> int:
    """Send ``schedule``; each block is acknowledged before the next publisher starts."""
    from .fingerprint import publisher_blocks

    failures = 0
    if sequential:
        # Bursts of (members - 1): a pull queue can serve every idle member once, so only a
        # broker that ignores load sends any of them to the member that never acknowledges.
        burst = max(1, len(subs) - 1)
        gap = min(0.1, 0.02 + ctx.rtt * 0.1)
        for start in range(0, len(schedule), burst):
            chunk = schedule[start:start + burst]
            pub = publishers[chunk[0].publisher]
            items = [(topic_of(s), ctx.payload(tag, s.seq), qos) for s in chunk]
            for answer in pub.publish_many(items, ctx.wait_step()):
                failures += int(answer.codes is None or answer.codes[0] >= 0x80)
            wanted = {s.seq for s in chunk}

            def arrived(wanted: set[int] = wanted) -> bool:
                got = {ctx.seq_of(tag, m.payload) for s in subs for m in s.received()[-8:]}
                return wanted <= got

            wait_until(arrived, ctx.wait_step(), poll=0.002)
            sleep(gap)  # let the members' PUBACKs reach the broker first
        return failures
    for block in publisher_blocks(schedule):
        pub = publishers[block[0].publisher]
        items = [(topic_of(s), ctx.payload(tag, s.seq), qos) for s in block]
        for answer in pub.publish_many(items, ctx.wait_step()):
            failures += int(answer.codes is None or answer.codes[0] >= 0x80)
    return failures
