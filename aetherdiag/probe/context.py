"""What every probe step shares: the target, the run id, the time budget and client factory.

How this works: one ``Context`` per probe run. Topics live under ``aetherdiag-probe/{run}/``
(``--topic-prefix P`` makes it ``P/{run}/``, for brokers whose ACLs allow only some topic
trees), client ids are ``adprobe-{run}-{role}`` and share groups ``adp{run}-{tag}``, so two
probes (or a probe and real workers) on one broker never meet. ``Budget`` turns the
``--timeout`` into an absolute deadline: every wait asks it for a bounded slice. Payloads are
``adp/{run}/{tag}/{seq}`` so stray messages from anything else are ignored. The experiment
most steps run, a shared-subscription run, is in share.py. With several endpoints
(``targets``, node 1 first) a client can be made on any node (``node=``); every other step
uses node 1, ``target``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..harness.model import BrokerTarget
from ..mqtt.protocol import Protocol
from ..mqtt.reasons import reason_text
from .client import V5, ConnectFailed, ProbeClient, close_all

DEFAULT_PREFIX = "aetherdiag-probe"
PREFIX_MAX_BYTES = 200

def rc_text(code: int | None) -> str:
    """``0x8F (topic filter invalid)``; -1 means the connection was closed."""
    if code is None:
        return "no answer"
    if code < 0:
        return "connection closed"
    return reason_text(code)


def check_topic_prefix(prefix: str) -> str:
    """``--topic-prefix``: a plain topic name the run's topics go under (a trailing ``/`` is
    dropped). ``ValueError`` with a one-line reason when it cannot be one."""
    text = prefix.rstrip("/") if prefix.strip("/") else ""
    if not text:
        raise ValueError("must name at least one topic level")
    if "+" in text or "#" in text:
        raise ValueError("must not contain the wildcards + or #")
    if text.startswith("$"):
        raise ValueError("must not start with $ (brokers reserve $ topics)")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text):
        raise ValueError("must not contain control characters")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text") from None
    if size > PREFIX_MAX_BYTES:
        raise ValueError(f"is {size} bytes long; at most {PREFIX_MAX_BYTES}")
    return text


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
    version: Protocol = V5  # protocol used by the single-version checks
    prefix: str = DEFAULT_PREFIX  # --topic-prefix; the run's topics are under {prefix}/{run}
    targets: tuple[BrokerTarget, ...] = ()  # every endpoint, node 1 first (several --broker)
    _clients: list[ProbeClient] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.run_id}"

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

    @property
    def nodes(self) -> int:
        """How many endpoints the probe was given."""
        return len(self.targets) or 1

    def endpoint(self, node: int) -> BrokerTarget:
        """Where node ``node`` (1-based) listens."""
        return (self.targets or (self.target,))[node - 1]

    def client(self, role: str, version: Protocol | None = None, *, node: int = 1,
               **kwargs: object) -> ProbeClient:
        c = ProbeClient(self.endpoint(node), self.cid(role), version=version or self.version,
                        **kwargs)  # type: ignore[arg-type]
        with self._lock:
            self._clients.append(c)
        return c

    def connected(self, role: str, version: Protocol | None = None, *, node: int = 1,
                  **kwargs: object) -> ProbeClient:
        """A client (on node ``node``) that got CONNACK 0, or ``StepFailed``."""
        c = self.client(role, version, node=node, **kwargs)
        try:
            ack = c.connect(self.wait_step())
        except ConnectFailed as exc:
            raise StepFailed(f"{role}: {exc}") from None
        if not ack.accepted:
            c.close()
            raise StepFailed(f"{role}: {ack.quoted(c.version)}")
        return c

    def connected_many(self, roles: Sequence[str], version: Protocol | None = None,
                       manual_ack_first: bool = False, nodes: Sequence[int] = ()
                       ) -> list[ProbeClient]:
        """Connect several clients at once (one round trip instead of one per client);
        ``nodes``: each role's node (default: node 1 for all)."""
        where = list(nodes) or [1] * len(roles)
        if len(roles) < 2:
            return [self.connected(r, version, node=n, manual_ack=manual_ack_first)
                    for r, n in zip(roles, where, strict=True)]
        with ThreadPoolExecutor(max_workers=min(8, len(roles))) as pool:
            futures = [pool.submit(self.connected, role, version, node=where[i],
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
