"""``workers --exec``: the team's own worker processes instead of the built-in workers.

How this works: ``run_exec`` opens the broker (``open_broker``; on the embedded emulator with
its journal on), starts COUNT copies of the worker command (``procs.WorkerProcesses``), waits
until the pool is ready, publishes the tasks with the fleet's publisher, waits until every
task is answered or the run goes quiet (bounded), and returns a ``RunResult`` whose workers
are the processes.

Attribution: on the emulator the journal is the truth. It says which connection got each
task and whether it was acknowledged; each connection belongs to the process that owns its
local TCP endpoint (psutil), and a worker's replies are attributed to the connection that
published them. Ready means every process holds a subscription that matches the task topics.
On a real broker only the workers' replies tell who handled what (``profile``): a worker is
named by the ``host/client`` its replies carry, and ready means ``warmup_s`` passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..emulator.topics import matches
from ..layout import Layout
from ..mqtt.protocol import Protocol
from ..wire.profile import Profile, Replies, Reply, announce_filters
from .execobserve import Progress, Seen, announced, emulator_of, observer, task_id
from .fleet import Fleet
from .model import BrokerTarget, Delivery, EmulatorSettings, RunResult, TaskSpec
from .peers import tcp_peers
from .procs import WorkerProcesses
from .run import OpenBroker, open_broker

ProgressCallback = Callable[[int, int], None]
POLL_S = 0.05
ANNOUNCE_GRACE_S = 0.5


class ExecError(Exception):
    """The worker processes could not be tested; ``str()`` is one line, ``detail`` the log
    tail that explains it."""

    def __init__(self, message: str, detail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class ExecPlan:
    command: str
    count: int
    target: BrokerTarget | None  # None: the embedded emulator
    emulator: EmulatorSettings
    layout: Layout
    profile: Profile
    replies: Replies
    tasks: tuple[TaskSpec, ...]
    rate: float | None = None
    timeout_s: float = 30.0
    ready_timeout_s: float = 20.0
    warmup_s: float = 3.0  # real brokers: how long the pool gets to subscribe
    quiet_s: float = 0.5
    connect_timeout_s: float = 5.0
    protocol: Protocol = "5"
    seed: int = 0
    run_id: str | None = None
    logs_dir: Path | None = None


@dataclass(frozen=True, kw_only=True)
class ProcessInfo:
    """One worker process as the report shows it."""

    name: str
    pid: int
    clients: tuple[str, ...]  # MQTT client ids of its connections (emulator only)
    subscriptions: tuple[str, ...]  # full filters it holds, "$share/g/..." or plain
    exit_code: int | None  # None: still running when the run ended
    log: Path
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ExecOutcome:
    result: RunResult
    processes: tuple[ProcessInfo, ...]
    replies: tuple[Reply, ...]
    log_dir: Path | None


def run_exec(plan: ExecPlan, on_progress: ProgressCallback | None = None) -> ExecOutcome:
    """Run the team's worker processes through ``plan``; see the module docstring."""
    settings = replace(plan.emulator, journal=True)
    with open_broker(plan.target, settings, protocol=plan.protocol, mode="thread",
                     expected_clients=plan.count + 2) as broker, \
            WorkerProcesses(plan.command, plan.count, host=broker.target.host,
                            port=broker.target.port, logs_dir=plan.logs_dir) as pool:
        pool.keep_logs(True)  # the caller removes them after a healthy run
        owners: dict[str, str] = {}  # MQTT client id -> process name (emulator)
        with observer(broker, plan) as seen:  # before the workers: it hears them announce
            pool.start()
            ready_note = _wait_ready(broker, plan, pool, owners, seen)
            with Fleet(broker.target, connect_timeout=plan.connect_timeout_s, seed=plan.seed,
                       label=broker.label, run_id=plan.run_id) as fleet:
                fleet.start([])
                deadline = time.monotonic() + plan.timeout_s
                interrupted = False
                try:
                    fleet.publish(plan.tasks, rate=plan.rate, timeout_s=plan.timeout_s,
                                  on_progress=on_progress)
                    settled = _settle(broker, plan, seen, owners, pool, deadline)
                except KeyboardInterrupt:
                    interrupted, settled = True, False
                fleet.stop_clock()
                sent = fleet.result()
        if ready_note is not None:
            sent = replace(sent, notes=(*sent.notes, ready_note))
        return _outcome(broker, plan, pool, owners, seen, sent, settled, interrupted)


# ------------------------------------------------------------------------------- observing


def _owners(broker: OpenBroker, pool: WorkerProcesses, owners: dict[str, str]) -> None:
    """Learn which process owns each connected client (kept once learnt: a client that
    disconnects later is still that process's)."""
    em = emulator_of(broker)
    if em is None:
        return
    new = [v for v in em.clients()  # type: ignore[attr-defined]
           if v.peer is not None and v.client_id not in owners]
    if not new:  # every connection is known: no need to scan the processes' sockets again
        return
    pids = pool.pids()
    by_pid = {pid: name for name, pid in pids.items()}
    peers = tcp_peers(pids.values(), broker.target.port)
    for view in new:
        if tuple(view.peer) in peers:
            owners.setdefault(view.client_id, by_pid[peers[tuple(view.peer)]])


def _failed_early(pool: WorkerProcesses) -> None:
    exited = pool.exited()
    if exited:
        name, code = next(iter(sorted(exited.items())))
        raise ExecError(f"{name} exited with status {code} before the run was over "
                        f"(log: {pool.log_path(name)})", tuple(pool.log_tail(name)))


def _wait_ready(broker: OpenBroker, plan: ExecPlan, pool: WorkerProcesses,
                owners: dict[str, str], seen: Seen) -> str | None:
    """Until every process subscribes to the task topics (emulator); on a real broker until
    the warm-up passed or, with a profile whose workers announce themselves, every process
    did (then a short grace: AetherMagic announces just before it subscribes). Returns a note
    when the real broker's pool did not announce itself in full."""
    em = emulator_of(broker)
    if em is None:
        deadline = time.monotonic() + plan.warmup_s
        announcing = bool(announce_filters(plan.profile, plan.layout))
        while time.monotonic() < deadline:
            _failed_early(pool)
            if announcing:
                heard = announced(plan, seen)
                if max(len(heard["idle"]), len(heard["online"])) >= plan.count:
                    time.sleep(ANNOUNCE_GRACE_S)
                    return None
            time.sleep(POLL_S)
        if announcing:
            heard = announced(plan, seen)
            return (f"only {max(len(heard['idle']), len(heard['online']))} of {plan.count} "
                    f"worker processes announced themselves (idle/online) within the "
                    f"{plan.warmup_s:g} s warm-up; tasks went out anyway")
        return None
    sample = plan.tasks[0].topic if plan.tasks else plan.layout.topic("task-1", 1)
    deadline = time.monotonic() + plan.ready_timeout_s
    ready: set[str] = set()
    while True:
        _failed_early(pool)
        _owners(broker, pool, owners)
        for view in em.clients():  # type: ignore[attr-defined]
            name = owners.get(view.client_id)
            if name and view.connected and any(
                    matches(s.topic_filter, sample) for s in view.subscriptions):
                ready.add(name)
        if len(ready) == len(pool.names):
            time.sleep(0.1)  # a worker may subscribe to more than one filter
            return None
        if time.monotonic() >= deadline:
            waiting = [n for n in pool.names if n not in ready]
            name = waiting[0]
            raise ExecError(
                f"{len(waiting)} worker process(es) never subscribed to the task topics within "
                f"{plan.ready_timeout_s:g} s: {', '.join(waiting[:5])} (log of {name}: "
                f"{pool.log_path(name)})", tuple(pool.log_tail(name)))
        time.sleep(POLL_S)


def _settle(broker: OpenBroker, plan: ExecPlan, seen: Seen,
            owners: dict[str, str], pool: WorkerProcesses, deadline: float) -> bool:
    """Wait until every task reached an end and nothing happened for ``quiet_s``; or until
    nothing happened for a grace period; False when the deadline came first."""
    wanted = {t.task_id for t in plan.tasks}
    last, changed = -1, time.monotonic()
    progress = Progress(broker, plan, seen)
    while True:
        _owners(broker, pool, owners)
        done = progress.update()
        activity = progress.activity()
        now = time.monotonic()
        if activity != last:
            last, changed = activity, now
        idle = now - changed
        if (wanted <= done and idle >= plan.quiet_s) or idle >= max(2.0, plan.quiet_s * 4):
            return True
        if now >= deadline:
            return False
        time.sleep(POLL_S)


# ------------------------------------------------------------------------------- the result


def _attribute(replies: list[Reply], deliveries: list[Delivery], processes: set[str]
               ) -> list[Reply]:
    """Replies sent from a connection no process was seen to own (a helper process that
    publishes and exits, as ``mosquitto_pub`` does) belong to a process by their content: a
    ``host/client`` (or ``--worker-field``) identity belongs to the process that received most
    of the tasks it answers; a reply that names nobody ("?...") to the one process that
    received its task, when only one did."""
    got: dict[str, set[str]] = {}
    receivers: dict[str, set[str]] = {}
    for d in deliveries:
        if d.task_id is not None:
            got.setdefault(d.worker, set()).add(d.task_id)
            receivers.setdefault(d.task_id, set()).add(d.worker)
    votes: dict[str, dict[str, int]] = {}
    for r in replies:
        if r.identity not in processes and not r.identity.startswith("?"):
            for name, tasks in got.items():
                if r.task_id in tasks:
                    votes.setdefault(r.identity, {}).setdefault(name, 0)
                    votes[r.identity][name] += 1
    owner = {who: max(v, key=lambda n: v[n]) for who, v in votes.items()}
    out = []
    for r in replies:
        if r.identity.startswith("?") and len(receivers.get(r.task_id, ())) == 1:
            out.append(replace(r, identity=next(iter(receivers[r.task_id]))))
        else:
            out.append(replace(r, identity=owner.get(r.identity, r.identity)))
    return out


def _outcome(broker: OpenBroker, plan: ExecPlan, pool: WorkerProcesses, owners: dict[str, str],
             seen: Seen, sent: RunResult, settled: bool,
             interrupted: bool) -> ExecOutcome:
    em = emulator_of(broker)
    planned = {t.task_id for t in plan.tasks}
    deliveries: list[Delivery] = []
    replies: list[Reply] = []
    subscriptions: dict[str, list[str]] = {n: [] for n in pool.names}
    clients: dict[str, list[str]] = {n: [] for n in pool.names}
    if em is not None:
        _owners(broker, pool, owners)
        for view in em.clients():  # type: ignore[attr-defined]
            name = owners.get(view.client_id)
            if name is None:
                continue
            clients[name].append(view.client_id)
            for s in view.subscriptions:
                full = (f"$share/{s.share_name}/{s.topic_filter}" if s.share_name
                        else s.topic_filter)
                if full not in subscriptions[name]:
                    subscriptions[name].append(full)
        for s in em.sent():  # type: ignore[attr-defined]
            name = owners.get(s.client_id)
            if name is None:
                continue
            task = task_id(plan, s.topic, s.payload)
            deliveries.append(Delivery(
                worker=name, task_id=task if task in planned else None, topic=s.topic,
                qos=s.qos, dup=s.dup, retain=False, at=s.at, completed=s.acked is not False))
        for p in em.published():  # type: ignore[attr-defined]
            r = plan.replies.parse(p.topic, p.payload, p.at, owners.get(p.client_id))
            if r is not None and r.task_id in planned:
                replies.append(r)
        replies = _attribute(replies, deliveries, set(pool.names))
        workers = tuple(pool.names)
    else:
        for at, topic, payload in list(seen):
            r = plan.replies.parse(topic, payload, at)
            if r is not None and r.task_id in planned:
                replies.append(r)
        # Only the replies say who got a task: one delivery per (worker, task) answered. A
        # worker that announced itself idle and answered nothing is a worker with no task.
        idle = announced(plan, seen)["idle"]
        workers = tuple(sorted({r.identity for r in replies} | idle))
        first: dict[tuple[str, str], Reply] = {}
        for r in replies:
            first.setdefault((r.identity, r.task_id), r)
        for (who, task), r in first.items():
            deliveries.append(Delivery(worker=who, task_id=task, topic="", qos=0, dup=False,
                                       retain=False, at=r.at))
    exited = pool.exited()
    processes = tuple(
        ProcessInfo(name=n, pid=pool.pid(n), clients=tuple(clients.get(n, ())),
                    subscriptions=tuple(subscriptions.get(n, ())), exit_code=exited.get(n),
                    log=pool.log_path(n),
                    log_tail=tuple(pool.log_tail(n)) if n in exited else ())
        for n in pool.names)
    notes = [f"{p.name} exited with status {p.exit_code} during the run (log: {p.log})"
             for p in processes if p.exit_code is not None]
    result = replace(
        sent, workers=workers, deliveries=tuple(sorted(deliveries, key=lambda d: d.at)),
        settled=settled, interrupted=interrupted, timeout_s=plan.timeout_s,
        notes=sent.notes + tuple(notes), emulator_stats=broker.stats(),
        replies=tuple((r.identity, r.task_id, r.action) for r in replies),
        expects_replies=plan.replies.expected, own_processes=True)
    return ExecOutcome(result=result, processes=processes, replies=tuple(replies),
                       log_dir=pool.log_dir)
