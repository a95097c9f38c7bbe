"""``workers --exec``: the team's own worker processes instead of the built-in workers.

How this works: ``run_exec`` opens the broker (``open_broker``; on the embedded emulator with
its journal on), starts COUNT copies of the worker command (``procs.WorkerProcesses``), waits
until the pool is ready, publishes the tasks with the fleet's publisher, waits until every
task is answered or the run goes quiet (bounded), and returns a ``RunResult`` whose workers
are the processes.

Attribution: on the emulator the journal is the truth. It says which connection got each
task and whether it was acknowledged; each connection belongs to the process that owns its
local TCP endpoint (psutil, learnt per connection, so processes that share a client id are
told apart and their takeovers named), and a worker's replies are attributed to the
connection that published them. Ready means every process holds a subscription that matches
the task topics. On a real broker only the workers' replies tell who handled what
(``profile``): a worker is named by the ``host/client`` its replies carry, and ready means
``warmup_s`` passed.

Handled means done as the profile says (``observe.Progress``): the run waits for every
task being worked on (an AetherMagic ``status`` without its ``complete``, an unacknowledged
QoS 1/2 delivery) until ``timeout_s``; what is still being worked on then is unfinished. A
process that ends on its own during the run loses what it held: its deliveries are not
finished, and it is named with its exit status, its tasks and its log tail. Every time in the
result is on the run's own clock (seconds since the fleet started), as for built-in workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from ...emulator.topics import matches
from ...harness import phases
from ...harness.fleet import Fleet
from ...harness.model import (
    ClientIdCollision,
    Delivery,
    Holder,
    Observed,
    ProcessExit,
    RunResult,
)
from ...harness.run import OpenBroker, open_broker
from ...wire.profile import Reply, announce_filters
from .model import ExecError, ExecOutcome, ExecPlan, ProcessInfo
from .observe import Progress, Seen, announced, emulator_of, observer, task_id
from .peers import Owners
from .procs import WorkerProcesses

ProgressCallback = Callable[[int, int], None]
POLL_S = 0.05
ANNOUNCE_GRACE_S = 0.5


def run_exec(plan: ExecPlan, on_progress: ProgressCallback | None = None) -> ExecOutcome:
    """Run the team's worker processes through ``plan``; see the module docstring."""
    settings = replace(plan.emulator, journal=True)
    with open_broker(plan.target, settings, protocol=plan.protocol, mode="thread",
                     expected_clients=plan.count + 2) as broker, \
            WorkerProcesses(plan.command, plan.count, host=broker.target.host,
                            port=broker.target.port, logs_dir=plan.logs_dir) as pool:
        pool.keep_logs(True)  # the caller removes them after a healthy run
        owners = Owners(emulator_of(broker), broker.target.port, pool)
        with observer(broker, plan) as seen:  # before the workers: it hears them announce
            interrupted, ready_note = False, None
            try:
                phases.reached("connecting")
                pool.start()
                ready_note = _wait_ready(broker, plan, pool, owners, seen)
            except KeyboardInterrupt:  # before the pool was ready: a report with nothing sent
                interrupted = True
            with Fleet(broker.target, connect_timeout=plan.connect_timeout_s, seed=plan.seed,
                       label=broker.label, run_id=plan.run_id) as fleet:
                fleet.start([])
                deadline = time.monotonic() + plan.timeout_s
                progress = Progress(broker, plan, seen, owners.of_conn)
                settled = False
                try:
                    if not interrupted:
                        phases.reached("publishing")
                        fleet.publish(plan.tasks, rate=plan.rate, timeout_s=plan.timeout_s,
                                      on_progress=on_progress)
                        phases.reached("settling")
                        settled = _settle(plan, owners, pool, progress, deadline)
                except KeyboardInterrupt:
                    interrupted = True
                fleet.stop_clock()
                sent = fleet.result()
                t0 = fleet.rec.t0  # the run's clock: every time in the result is on it
        if interrupted:
            seen_ids = set(sent.published) | {t for t, _ in sent.unsent}
            sent = replace(sent, unsent=sent.unsent + tuple(
                (t.task_id, "not sent: interrupted") for t in plan.tasks
                if t.task_id not in seen_ids))
        if ready_note is not None:
            sent = replace(sent, notes=(*sent.notes, ready_note))
        return _outcome(broker, plan, pool, owners, seen, sent, settled, interrupted,
                        progress, t0)


# ------------------------------------------------------------------------------- observing


def _failed_early(pool: WorkerProcesses) -> None:
    exited = pool.exited()
    if exited:
        name, code = next(iter(sorted(exited.items())))
        raise ExecError(f"{name} exited with status {code} before the run was over "
                        f"(log: {pool.log_path(name)})", tuple(pool.log_tail(name)))


def _wait_ready(broker: OpenBroker, plan: ExecPlan, pool: WorkerProcesses,
                owners: Owners, seen: Seen) -> str | None:
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
        owners.refresh()
        for view in em.clients():  # type: ignore[attr-defined]
            name = owners.of_conn(view.conn_id) if view.conn_id is not None else None
            if name and view.connected and any(
                    matches(s.topic_filter, sample) for s in view.subscriptions):
                ready.add(name)
        if len(ready) == len(pool.names):
            time.sleep(0.1)  # a worker may subscribe to more than one filter
            return None
        if time.monotonic() >= deadline:
            waiting = [n for n in pool.names if n not in ready]
            name = waiting[0]
            shared = _collisions(em, owners)
            why = ""
            if shared:
                c = shared[0]
                why = (f"; client id {c.client_id!r} was taken over {c.takeovers} time(s)"
                       + (f" between {', '.join(c.processes)}" if len(c.processes) > 1 else "")
                       + ": processes that share a client id keep closing each other's "
                       "connection")
            raise ExecError(
                f"{len(waiting)} worker process(es) never subscribed to the task topics within "
                f"{plan.ready_timeout_s:g} s: {', '.join(waiting[:5])}{why} (log of {name}: "
                f"{pool.log_path(name)})", tuple(pool.log_tail(name)))
        time.sleep(POLL_S)


def _settle(plan: ExecPlan, owners: Owners, pool: WorkerProcesses, progress: Progress,
            deadline: float) -> bool:
    """Wait until every task reached its end and nothing happened for ``quiet_s``, or until
    nothing happened for a grace period while no live process is still working on a task;
    False when the deadline came first (what is still being worked on is then unfinished)."""
    wanted = {t.task_id for t in plan.tasks}
    last, changed = -1, time.monotonic()
    grace = max(2.0, plan.quiet_s * 4)
    while True:
        owners.refresh()
        done = progress.update()
        activity = progress.activity()
        now = time.monotonic()
        if activity != last:
            last, changed = activity, now
        idle = now - changed
        working = progress.working(set(pool.exited()))
        if not working and ((wanted <= done and idle >= plan.quiet_s) or idle >= grace):
            return True
        if now >= deadline:
            return False
        time.sleep(POLL_S)


def _collisions(em: object, owners: Owners) -> list[ClientIdCollision]:
    """Client ids whose session was taken over by another connection during the run."""
    counts: dict[str, int] = {}
    for t in em.takeovers():  # type: ignore[attr-defined]
        counts[t.client_id] = counts.get(t.client_id, 0) + 1
    return [ClientIdCollision(client_id=cid, processes=tuple(sorted(owners.names_of(cid))),
                              takeovers=n)
            for cid, n in sorted(counts.items()) if owners.names_of(cid)]


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


def _observed(plan: ExecPlan) -> Observed:
    if plan.replies.expected:
        return "all"
    return "acks" if plan.tasks and all(t.qos > 0 for t in plan.tasks) else "deliveries"


def _outcome(broker: OpenBroker, plan: ExecPlan, pool: WorkerProcesses, owners: Owners,
             seen: Seen, sent: RunResult, settled: bool, interrupted: bool,
             progress: Progress, t0: float) -> ExecOutcome:
    em = emulator_of(broker)
    planned = {t.task_id for t in plan.tasks}
    exited = pool.exited()  # before the run stops them: these ended on their own
    deliveries: list[Delivery] = []
    replies: list[Reply] = []
    subscriptions: dict[str, list[str]] = {n: [] for n in pool.names}
    clients: dict[str, list[str]] = {n: [] for n in pool.names}
    holders: list[Holder] = []
    collisions: list[ClientIdCollision] = []
    acked: set[tuple[str, str]] = set()  # (worker, task) whose QoS 1/2 delivery was acked
    if em is not None:
        owners.refresh()
        progress.update()
        for view in em.clients():  # type: ignore[attr-defined]
            live = owners.of_conn(view.conn_id) if view.conn_id is not None else None
            for name in sorted({live} if live else owners.names_of(view.client_id)):
                if view.client_id not in clients[name]:
                    clients[name].append(view.client_id)
                for s in view.subscriptions:
                    full = (f"$share/{s.share_name}/{s.topic_filter}" if s.share_name
                            else s.topic_filter)
                    if full not in subscriptions[name]:
                        subscriptions[name].append(full)
                    holders.append(Holder(process=name, pid=pool.pid(name),
                                          client_id=view.client_id, topic_filter=full))
        for s in em.sent():  # type: ignore[attr-defined]
            receiver = owners.of_conn(s.conn_id)
            if receiver is None:
                continue
            task = task_id(plan, s.topic, s.payload)
            if task in planned and s.acked:
                acked.add((receiver, task))
            deliveries.append(Delivery(
                worker=receiver, task_id=task if task in planned else None, topic=s.topic,
                qos=s.qos, dup=s.dup, retain=False, at=s.at - t0))
        for p in em.published():  # type: ignore[attr-defined]
            r = plan.replies.parse(p.topic, p.payload, p.at - t0, owners.of_conn(p.conn_id))
            if r is not None and r.task_id in planned:
                replies.append(r)
        replies = _attribute(replies, deliveries, set(pool.names))
        collisions = _collisions(em, owners)
        workers = tuple(pool.names)
    else:
        for at, topic, payload in list(seen):
            r = plan.replies.parse(topic, payload, at - t0)
            if r is not None and r.task_id in planned:
                replies.append(r)
        # Only the replies say who got a task: one delivery per (worker, task) answered. A
        # worker that announced itself idle and answered nothing is a worker with no task;
        # one never heard of at all stays in the table as "unseen" (with nothing).
        idle = announced(plan, seen)["idle"]
        heard = sorted({r.identity for r in replies} | idle)
        unseen = [f"unseen-{n}" for n in range(1, plan.count - len(heard) + 1)]
        workers = (*heard, *unseen)
        first: dict[tuple[str, str], Reply] = {}
        for r in replies:
            first.setdefault((r.identity, r.task_id), r)
        for (who, task), r in first.items():
            deliveries.append(Delivery(worker=who, task_id=task, topic="", qos=0, dup=False,
                                       retain=False, at=r.at))
        if unseen:
            sent = replace(sent, notes=(*sent.notes, (
                f"{len(unseen)} of {plan.count} worker processes were never heard from (no "
                "announcement, no reply): shown as " + ", ".join(unseen[:3])
                + (", …" if len(unseen) > 3 else "") + " with no task")))
    ended = _ended_tasks(plan, replies, deliveries, acked)
    gone = set(exited)
    held = {name: [t for t in dict.fromkeys(d.task_id for d in deliveries
                                            if d.worker == name and d.task_id is not None)
                   if (name, t) not in ended]
            for name in gone}
    deliveries = [replace(d, completed=False)
                  if d.worker in gone and d.task_id in held.get(d.worker, ()) else d
                  for d in deliveries]
    unfinished = _unfinished(plan, deliveries, ended, progress, gone, settled)
    exits = tuple(
        ProcessExit(name=n, pid=pool.pid(n), status=exited[n], held=tuple(held[n]),
                    log=str(pool.log_path(n)), log_tail=tuple(pool.log_tail(n, 5)))
        for n in pool.names if n in exited)
    started = pool.pids()  # an interrupt may come before every process started
    tails = tuple(f"{e.name} exited during the run; the end of its log ({e.log}): "
                  + " | ".join(e.log_tail) for e in exits if e.log_tail)
    sent = replace(sent, notes=sent.notes + tails)
    processes = tuple(
        ProcessInfo(name=n, pid=pool.pid(n), clients=tuple(clients.get(n, ())),
                    subscriptions=tuple(subscriptions.get(n, ())), exit_code=exited.get(n),
                    log=pool.log_path(n),
                    log_tail=tuple(pool.log_tail(n)) if n in exited else ())
        for n in pool.names if n in started)
    result = replace(
        sent, workers=workers, deliveries=tuple(sorted(deliveries, key=lambda d: d.at)),
        settled=settled, interrupted=interrupted, timeout_s=plan.timeout_s,
        unfinished=tuple(unfinished), emulator_stats=broker.stats(),
        replies=tuple((r.identity, r.task_id, r.action) for r in replies),
        expects_replies=plan.replies.expected, own_processes=True, observed=_observed(plan),
        process_exits=exits, collisions=tuple(collisions), holders=tuple(holders))
    return ExecOutcome(result=result, processes=processes, replies=tuple(replies),
                       log_dir=pool.log_dir)


def _ended_tasks(plan: ExecPlan, replies: list[Reply], deliveries: list[Delivery],
                 acked: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """``(worker, task)`` pairs that reached their end on that worker: completed (a profile
    with replies), else acknowledged (QoS 1/2) or, at QoS 0, delivered."""
    if plan.replies.expected:
        return {(r.identity, r.task_id) for r in replies if r.action == "complete"}
    return {(d.worker, d.task_id) for d in deliveries
            if d.task_id is not None and (d.qos == 0 or (d.worker, d.task_id) in acked)}


def _unfinished(plan: ExecPlan, deliveries: list[Delivery], ended: set[tuple[str, str]],
                progress: Progress, gone: set[str], settled: bool) -> list[tuple[str, str]]:
    """``(worker, task)`` still being worked on by a live process when the run ended: what
    ``Progress`` saw in hand (a ``status`` without ``complete``, an unacknowledged
    delivery) and, when the run was cut short, every task a live process received and had
    not finished."""
    out = {(w, t) for w, t in progress.working(gone) if not w.startswith("conn:")}
    if not settled:
        out |= {(d.worker, d.task_id) for d in deliveries
                if d.task_id is not None and d.worker not in gone
                and (d.worker, d.task_id) not in ended}
    order = {t.task_id: n for n, t in enumerate(plan.tasks)}
    return sorted(out, key=lambda wt: (order.get(wt[1], 0), wt[0]))
