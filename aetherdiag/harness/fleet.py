"""The worker fleet: N worker clients and one publisher on one event loop thread.

How this works: every paho client lives on a single ``Loop`` thread (a ``selectors`` loop; see
loop.py), so a thousand workers cost a thousand sockets, not a thousand threads. The caller's
thread never touches a client: it hands work to the loop (``Loop.run``) and then waits,
polling counters with short sleeps and always against a deadline. Blocking paho ``connect()``
calls run on a few daemon connector threads so slow or unreachable brokers cannot stall the
loop, and a hung DNS lookup cannot keep the process alive.

A run: ``start(workers)`` connects the publisher first (the reachability probe: any failure
becomes ``BrokerUnreachable`` with one line), then every worker, and waits for each CONNACK
and SUBACK. ``publish(tasks)`` feeds the publisher; ``settle()`` waits for acknowledgements
and a quiet period; ``result()`` snapshots everything into a ``RunResult``. Churn steps for
replay (``disconnect``, ``drop``, ``reconnect``, ``subscribe``, ``unsubscribe``,
``set_work_ms``) act on one worker and wait (bounded) for the broker's answer.

Several endpoints (``targets``, node 1 first): each worker connects to its ``WorkerSpec.node``,
each of ``publish_nodes`` has ``publishers`` publishers (publishers.py; ``publish_fresh``
below).
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import TypeVar

from ..exitcodes import DiagError
from .clients import BrokerUnreachable, ClientFactory, Connector
from .loop import Loop, LoopError
from .member import LIVE, Member
from .model import BrokerTarget, RunResult, TaskSpec, WorkerSpec
from .polling import ProgressCallback, poll
from .publisher import DEFAULT_WINDOW, Publisher
from .publishers import PUBLISHER_NAME, Publishers, outcome
from .recorder import Recorder
from .worker import Worker

__all__ = ["BrokerUnreachable", "Fleet", "FleetError", "ProgressCallback"]

T = TypeVar("T")


class FleetError(DiagError, RuntimeError):
    """A fleet operation could not be carried out (unknown worker, loop failure...): a bug in
    aetherdiag, never the broker's fault, so exit 8 in every command."""


class Fleet:
    """Workers and publishers against a broker (or several endpoints), on one loop thread.

    >>> with Fleet(target) as fleet:
    ...     fleet.start([WorkerSpec(name="worker-1", subscriptions=("$share/g/t/+",))])
    ...     fleet.publish([TaskSpec(task_id="task-1", topic="t/1")])
    ...     fleet.settle(expected=1, quiet_s=0.3, timeout_s=10)
    ...     result = fleet.result()

    Client ids are ``aetherdiag-<run_id>-<worker name>`` (and ``...-publisher``), so two runs
    on one broker never collide; ``client_scope`` replaces the run id there (the shards of one
    run share the run id but each has a publisher of its own). ``seed`` makes the work-time
    jitter reproducible. ``label`` replaces ``target.display()`` in the result (e.g. to
    describe the embedded emulator). Up to ``ordered_max`` workers started together
    subscribe one after the other, in order, so a broker that rotates a share group in
    subscription order gives worker-1 the first task on every run; larger fleets subscribe
    all at once.
    """

    def __init__(
        self,
        target: BrokerTarget,
        *,
        run_id: str | None = None,
        connect_timeout: float = 5.0,
        seed: int | None = None,
        label: str | None = None,
        window: int = DEFAULT_WINDOW,
        connect_threads: int = 16,
        ordered_max: int = 100,
        targets: Sequence[BrokerTarget] = (),
        publish_nodes: Sequence[int] = (1,),
        publishers: int = 1,
        client_scope: str | None = None,
        backlog: Callable[[], int | None] | None = None,
    ) -> None:
        self.target = target
        # what the broker still owes its clients (the embedded emulator says; None: unknown)
        self._backlog = backlog
        self.targets = tuple(targets) or (target,)
        self.pubs = Publishers(publish_nodes, publishers)
        for node in self.pubs.nodes:
            self._check_node(node, "publish node")
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self._client_scope = client_scope or self.run_id  # sharded runs: one per shard
        self.connect_timeout = connect_timeout
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.label = label or target.display()
        self.window = window
        self.ordered_max = ordered_max
        self.rec = Recorder()
        self._factories: dict[int, ClientFactory] = {}
        self._node_of: dict[str, int] = {}  # member name -> node (1-based)
        self._loop = Loop()
        self._connector = Connector(connect_threads)
        self._workers: dict[str, Worker] = {}
        self._started = False
        self._closed = False
        self._settled = True
        self._ended_at: float | None = None

    # ----------------------------------------------------------------- context manager
    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- counters
    @property
    def workers(self) -> tuple[str, ...]:
        """Worker names in the order they were started."""
        return tuple(self._workers)

    @property
    def published(self) -> int:
        """Tasks handed to the broker so far."""
        return self.pubs.sent

    @property
    def delivered(self) -> int:
        """Deliveries recorded so far (all workers)."""
        return self.rec.delivered

    def client_id(self, name: str) -> str:
        """The MQTT client id used for worker ``name`` (or ``"publisher"``)."""
        return f"aetherdiag-{self._client_scope}-{name}"

    # ----------------------------------------------------------------- helpers
    def _check_node(self, node: int, what: str) -> None:
        if not 1 <= node <= len(self.targets):
            raise ValueError(f"{what} {node}: the fleet has {len(self.targets)} endpoint(s)")

    def _endpoint(self, name: str) -> BrokerTarget:
        return self.targets[self._node_of.get(name, 1) - 1]

    def new_publisher(self, name: str, node: int, client_id: str | None = None) -> Publisher:
        cid, protocol = client_id or self.client_id(name), self.targets[node - 1].protocol
        self._node_of[name] = node
        return Publisher(cid, protocol, self._factory(node).make(cid, protocol), self._loop,
                         self.rec, run_id=self.run_id, window=self.window, name=name,
                         numbered=self.pubs.numbered)

    def _factory(self, node: int) -> ClientFactory:
        if node not in self._factories:  # one TLS context per endpoint
            self._factories[node] = ClientFactory(self.targets[node - 1])
        return self._factories[node]

    def _check_loop(self) -> None:
        if self._loop.error is not None:
            err = self._loop.error
            raise FleetError(f"the fleet's event loop failed: {type(err).__name__}: {err}")

    def on_loop(self, fn: Callable[[], T]) -> T:
        self._check_loop()
        try:
            return self._loop.run(fn, timeout=max(10.0, self.connect_timeout))
        except LoopError as exc:
            raise FleetError(str(exc)) from None

    def wait_until(
        self, done: Callable[[], bool], timeout: float, *,
        progress: Callable[[], int] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> bool:
        """Poll ``done()`` until true or ``timeout`` passes without progress (polling.py)."""
        return poll(done, timeout, check=self._check_loop, progress=progress,
                    counters=lambda: (self.published, self.delivered), on_progress=on_progress)

    def worker(self, name: str) -> Worker:
        try:
            return self._workers[name]
        except KeyError:
            known = ", ".join(self._workers) or "none"
            raise FleetError(f"unknown worker {name!r} (workers: {known})") from None

    def _unreachable(self, member: Member, during: str = "") -> BrokerUnreachable:
        who = "" if member.name == PUBLISHER_NAME else f" ({member.name}{during})"
        reason = member.error or f"no CONNACK within {self.connect_timeout:g} s"
        where = self._endpoint(member.name).display()
        return BrokerUnreachable(f"cannot connect to {where}: {reason}{who}")

    def connect_members(self, members: Sequence[Member], *, ordered: bool = False) -> None:
        """Connect ``members`` (in parallel) and wait for CONNACK and SUBACK, bounded.

        With ``ordered``, workers subscribe one after the other in the order given (each
        SUBSCRIBE waits for the previous SUBACK) instead of as soon as they are connected.
        """
        for m in members:
            m.state = "connecting"
            m.error = None
            if isinstance(m, Worker):
                m.hold_subscribe = ordered
        timeout = self.connect_timeout
        self._connector.submit([partial(m.connect, self._endpoint(m.name), timeout)
                                for m in members])

        def answered() -> int:
            return sum(1 for m in members if m.state != "connecting")

        def ready() -> int:
            return sum(1 for m in members if m.state != "connected" or m.ready())

        self.wait_until(
            lambda: answered() == len(members) or any(m.state == "failed" for m in members),
            timeout, progress=answered,
        )
        failed = [m for m in members if m.state in ("failed", "connecting")]
        if failed:
            first = next((m for m in failed if m.state == "failed"), failed[0])
            ok = sum(1 for m in members if m.state == "connected")
            raise self._unreachable(first, f", {ok} of {len(members)} connected" if ok else "")
        workers = [m for m in members if isinstance(m, Worker)]
        if ordered and workers:
            self.on_loop(lambda: self._subscribe_in_order(workers, 0))
        self.wait_until(lambda: ready() == len(members), timeout, progress=ready)
        for m in members:
            if m.state == "connected" and not m.ready():
                self.rec.note(f"{m.name}: no SUBACK within {timeout:g} s")

    def _subscribe_in_order(self, workers: list[Worker], i: int) -> None:
        """Loop thread: subscribe ``workers[i]``, then the next one once it is answered."""
        if i < len(workers):
            workers[i].subscribe_all(then=lambda: self._subscribe_in_order(workers, i + 1))

    # ----------------------------------------------------------------- run
    def start(self, workers: Sequence[WorkerSpec]) -> None:
        """Connect the publisher and ``workers``, subscribe them, wait for every answer.

        May be called again to add more workers. Raises ``BrokerUnreachable`` (one line) when
        the broker cannot be reached, refuses a connection, or does not answer within
        ``connect_timeout`` (measured from the last connection that made progress).
        """
        if self._closed:
            raise FleetError("the fleet is closed")
        names = [w.name for w in workers]
        dupes = sorted(n for n, c in Counter(names).items() if c > 1)
        if dupes:
            raise ValueError(f"worker names must be unique: {', '.join(dupes)}")
        reserved = {name for name, _ in self.pubs.names()}
        clash = [n for n in names if n in self._workers or n in reserved]
        if clash:
            raise ValueError(f"worker name already in use: {clash[0]}")
        for spec in workers:
            self._check_node(spec.node, f"{spec.name}: node")
        try:
            if not self._started:
                self._started = True
                self.rec.t0 = time.monotonic()
                self._loop.start()
                self.connect_members(self.pubs.make_all(self.new_publisher))
            new = []
            for spec in workers:
                cid = self.client_id(spec.name)
                self._node_of[spec.name] = spec.node
                client = self._factory(spec.node).make(cid, spec.protocol,
                                                       clean_start=spec.clean_start)
                worker = Worker(spec, cid, client, self._loop, self.rec, run_id=self.run_id,
                                seed=self.seed)
                self._workers[spec.name] = worker
                new.append(worker)
            if new:
                self.connect_members(new, ordered=len(new) <= self.ordered_max)
        except BaseException:
            self.close()
            raise

    def publish(
        self,
        tasks: Iterable[TaskSpec],
        rate: float | None = None,
        on_progress: ProgressCallback | None = None,
        *,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> int:
        """Publish ``tasks`` in order (``rate`` tasks/s, or as fast as the window allows).

        With ``wait`` (the default) returns once every task was handed to the broker, or when
        ``timeout_s`` (default: 60 s plus the paced duration) runs out; tasks not sent by then
        are recorded as publish failures. Acknowledgements are awaited by ``settle()``.
        Returns how many of ``tasks`` were sent. ``on_progress(published, delivered)`` is
        called on this thread about ten times a second.
        """
        pubs = self.pubs
        if not pubs or self._closed:
            raise FleetError("start() the fleet before publishing")
        batch = list(tasks)
        try:
            by_slot = pubs.route(batch)
        except ValueError as exc:
            raise FleetError(str(exc)) from None
        fresh = pubs.split_fresh(by_slot)  # sent one at a time below (publish_fresh)

        def enqueue() -> int:
            before = pubs.sent
            pubs.enqueue(by_slot, rate)
            return before

        before = self.on_loop(enqueue)
        if timeout_s is None:
            timeout_s = 60.0 + (len(batch) / rate if rate else len(batch) / 1000.0)
        if fresh:
            publish_fresh(self, fresh, rate, timeout_s, on_progress)
        if not wait:
            return 0
        if not self.wait_until(lambda: not pubs.queued, timeout_s, on_progress=on_progress):
            self.on_loop(partial(pubs.cancel, f"not sent within {timeout_s:g} s"))
        return pubs.sent - before

    def settle(
        self,
        *,
        expected: int | None = None,
        quiet_s: float = 0.3,
        timeout_s: float = 30.0,
        on_progress: ProgressCallback | None = None,
        grace_s: float = 1.0,
    ) -> bool:
        """Wait until deliveries have settled; False when ``timeout_s`` cut the wait short.

        Settled means: every publish is acknowledged (or failed), no worker is still working
        on a task, and nothing was delivered or acknowledged for ``quiet_s`` seconds once at
        least ``expected`` deliveries arrived — or for ``grace_s`` (at least ``quiet_s``) when
        fewer arrived, so a run whose tasks go missing ends promptly instead of at the timeout.
        With a ``backlog`` (the embedded emulator), also: the broker owes no connected client
        a message, so a pause in a long delivery stream is never taken for the end.
        """
        grace_s = max(grace_s, quiet_s)
        pubs = self.pubs
        rec = self.rec
        workers = [w for w in self._workers.values() if w.work_ms > 0 or w.jitter_ms > 0]

        def quiet() -> bool:
            if not pubs.idle:
                return False
            if rec.pending_acks > 0:
                return False
            now = time.monotonic()
            if any(w.busy(now) for w in workers):  # QoS 0 work is not counted in pending_acks
                return False
            idle = now - rec.last_activity
            if idle < (grace_s if expected is not None and rec.delivered < expected
                       else quiet_s):
                return False
            return not self._backlog or not self._backlog()  # asked last: it costs a call

        ok = self.wait_until(quiet, timeout_s, on_progress=on_progress)
        self._settled = ok
        self._ended_at = time.monotonic()
        return ok

    def stop_clock(self) -> None:
        """The run ends here without having settled (interrupted or cut off by a deadline)."""
        self._settled = False
        self._ended_at = time.monotonic()

    def wait(self, seconds: float) -> None:
        """Let the fleet run for ``seconds`` (a replay ``wait`` step)."""
        self.wait_until(lambda: False, seconds)

    # ----------------------------------------------------------------- results
    def result(self) -> RunResult:
        """A snapshot of everything observed so far.

        Publishes still unacknowledged at this point count as publish failures; tasks still
        queued count as not sent, and tasks a worker is still working on as unfinished.
        """
        end = self._ended_at if self._ended_at is not None else time.monotonic()

        def collect() -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
            unfinished = [(w.name, t) for w in self._workers.values()
                          for t in w.unfinished(end)]
            return *self.pubs.collect(), unfinished

        if self._loop.alive:
            sent, failures, unfinished = self.on_loop(collect)
        else:
            sent, failures, unfinished = collect()
        out = outcome(sent, failures)
        for note in out.notes:
            self.rec.note(note)
        several = len(self.targets) > 1
        return RunResult(
            target=self.label,
            workers=self.workers,
            published=out.published,
            publish_failures=out.failures,
            publish_refusals=out.refusals,
            unsent=out.unsent,
            unfinished=tuple(unfinished),
            connection_lost=self.rec.connections_lost(),
            deliveries=self.rec.deliveries(),
            duration_s=max(0.0, end - self.rec.t0),
            settled=self._settled,
            subscribe_results=self.rec.subscribe_results(),
            closed_after=self.rec.closed_afters(), notes=self.rec.notes(),
            events=self.rec.events(),
            latency=self.rec.latency(),
            endpoints=tuple(t.display() for t in self.targets) if several else (),
            task_nodes=tuple(self.pubs.task_node.items()) if several else (),
            task_publishers=self.pubs.task_publishers(),
        )

    def close(self, timeout: float = 3.0) -> None:
        """DISCONNECT every client, bounded, and stop the loop.

        Leaves the broker clean: v5 persistent sessions are expired in the DISCONNECT, and
        retained tasks are overwritten with empty retained messages first.
        """
        if self._closed:
            return
        self._closed = True
        members: list[Member] = [*self.pubs, *self._workers.values()]

        def say_goodbye() -> None:
            self.pubs.clear_retained()
            for m in members:
                m.disconnect(end_session=True)

        def cut_the_rest() -> None:
            for m in members:
                if m.state in LIVE:
                    m.drop()

        if self._loop.alive and self._loop.error is None:
            with contextlib.suppress(LoopError):
                self._loop.run(say_goodbye, timeout=timeout)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and any(m.state in LIVE for m in members):
                    time.sleep(0.005)
                self._loop.run(cut_the_rest, timeout=timeout)
        self._loop.stop(timeout)
        self._connector.close()


# --- fresh publishing (--publisher-reconnect) -------------------------------------------
#
# Publishing over a fresh connection per task (``workers --publisher-reconnect``).
#
# How this works: ``publish_fresh(fleet, ...)`` sends the tasks marked
# ``fresh_connection`` one at a time, in publish order: for each task it builds a new publisher
# client named like the task's publisher (``publisher-2``) with a client id of its own
# (``aetherdiag-<run>-publisher-2-c<n>``, n = 1, 2, ... per publisher), connects it, publishes the
# one task, waits for the acknowledgement, sends DISCONNECT and hands the spent publisher to
# ``Publishers.retire`` so what it sent and what failed is collected with everything else.
#
# Why a fresh client id and not the same one again: EMQX keeps the round_robin turn in the
# publishing connection's process (``emqx_shared_sub``: ``erlang:get/put``), so every new
# connection starts the turn over whichever id it uses: at the first member in EMQX 3.x, at a
# random one in later releases. The emulator's ``per-publisher-rr`` fault keys the turn by client
# id (the 3.x flavour). A fresh id restarts the turn on both, so the pitfall ``probe`` describes
# (many short-lived publishers: the first member gets most tasks) shows on the emulator as on
# EMQX. A connection that cannot be opened mid-run ends
# the fresh publishing: that task and the ones after it count as not sent, with the reason.


def publish_fresh(fleet: Fleet, tasks: Sequence[TaskSpec], rate: float | None, timeout_s: float,
                   on_progress: ProgressCallback | None) -> None:
    """Send ``tasks`` (numbered, in publish order) one per fresh connection, ``rate`` a
    second at most, all within ``timeout_s``; what is not sent by then is given up."""
    pubs = fleet.pubs
    deadline = time.monotonic() + timeout_s
    gap = 1.0 / rate if rate else 0.0
    connections: Counter[str] = Counter()
    for i, task in enumerate(tasks):
        started = time.monotonic()
        if started >= deadline:
            pubs.given_up += [(t.task_id, f"not sent within {timeout_s:g} s")
                              for t in tasks[i:]]
            return
        name = pubs.name(task.node, task.publisher)
        connections[name] += 1
        pub = fleet.new_publisher(name, task.node,
                                  f"{fleet.client_id(name)}-c{connections[name]}")
        pubs.retire(pub)  # whatever happens, the fleet collects (and closes) it
        try:
            fleet.connect_members([pub])
        except BrokerUnreachable as exc:
            pubs.given_up += [(t.task_id, f"not sent: a fresh publisher connection "
                               f"failed ({exc})") for t in tasks[i:]]
            return
        _send_one(fleet, pub, task, deadline, on_progress)
        if gap and i + 1 < len(tasks):
            pause = started + gap - time.monotonic()
            if pause > 0:
                fleet.wait_until(lambda: False, min(pause, max(0.0, deadline - time.monotonic())))


def _send_one(fleet: Fleet, pub: Publisher, task: TaskSpec, deadline: float,
              on_progress: ProgressCallback | None) -> None:
    """Publish ``task`` on the connected ``pub``, wait for its acknowledgement (until
    ``deadline``), then close the connection (cut it when DISCONNECT does not end it)."""
    fleet.on_loop(lambda: pub.enqueue([task], None))
    fleet.wait_until(lambda: pub.idle, max(0.0, deadline - time.monotonic()),
               on_progress=on_progress)
    fleet.on_loop(pub.disconnect)
    if not fleet.wait_until(lambda: pub.state not in LIVE, fleet.connect_timeout):
        fleet.on_loop(pub.drop)
