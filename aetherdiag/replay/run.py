"""Run a validated ``Scenario`` against a broker, step by step, and record what each step did.

How this works: ``run_scenario`` is the one place ``replay`` touches the network. It starts the
embedded emulator with the file's settings (unless a target is given: ``--broker`` or the
file's own ``broker:`` URL), connects every worker through one ``Fleet``, then walks
``scenario.steps`` in order, dispatching on the step's class. Each step is bounded (its own
bound, the file's ``timeout`` and an optional deadline for the whole scenario) and leaves a
``StepRecord``: when it ran and what the fleet answered (the task ids a drop left in flight,
whether a reconnect found its session, the SUBACK code...). After the last step the run
settles once more unless that step was a ``settle``. What each step *caused* is derived
afterwards from the recorded deliveries, without I/O, in ``effects.py``; the values this
module produces (``StepRecord``, ``ReplayRun``) live in ``model.py``.

Clusters: the fleet gets every endpoint (``OpenBroker.targets``): each worker connects to its
node's, and each publish step's tasks go out on their node (``TaskSpec.node``: the step's
``node``, else the file's ``publish_to``); ``node_down`` / ``node_up`` act on the embedded
emulator and wait
(bounded) until the node's workers have seen their connections end. Those intended losses are
not "lost broker connections" of the run (a ``drop`` is not either).

``takeover`` / ``kick`` connect a second client with the worker's client id
(``intruder.py``); the worker's connection, closed by the broker, is not a lost broker
connection of the run either.

MQTT version: without ``--mqtt``, a real broker gets one test connection in MQTT 5.0 first
(``harness.negotiate``); one that refuses 5.0 and accepts 3.1.1 gets the whole scenario in
3.1.1, ``on_fallback`` hears of it before any worker connects, and the run's notes say so,
naming what MQTT 5.0 settings (session expiry) are then not judged.

Nothing here prints; a broker that cannot be reached is a ``BrokerUnreachable`` (exit 3).
"""

from __future__ import annotations

import math
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..exitcodes import Abort, ExitCode
from ..harness import churn
from ..harness.embedded import describe
from ..harness.fleet import Fleet
from ..harness.model import BrokerTarget, WorkerSpec
from ..harness.negotiate import Negotiated, negotiate
from ..harness.run import OpenBroker, open_broker
from ..mqtt.protocol import Protocol
from ..scenario import model as sm
from .intruder import Intruder
from .model import ReplayRun, StepRecord

__all__ = ["run_scenario"]

ProgressCallback = Callable[[int, int], None]
FINAL_QUIET_S = 0.3  # quiet period of the implicit final settle (the steps' default too)


def scenario_seed(scenario: sm.Scenario) -> int:
    """A stable seed per scenario name, so work-time jitter repeats from run to run."""
    return zlib.crc32(scenario.name.encode("utf-8"))


def run_scenario(
    scenario: sm.Scenario,
    target: BrokerTarget | None = None,
    *,
    protocol: Protocol | None = None,
    timeout_s: float | None = None,
    connect_timeout_s: float = 5.0,
    seed: int | None = None,
    on_progress: ProgressCallback | None = None,
    targets: Sequence[BrokerTarget] = (),
    on_fallback: Callable[[Negotiated], None] | None = None,
) -> ReplayRun:
    """Run ``scenario`` and return what happened.

    ``target`` None means the embedded emulator, started with the file's ``emulator``
    settings. ``protocol`` ("3.1.1" or "5") overrides the file's protocol for the publisher
    and every worker. ``timeout_s`` bounds the whole scenario: steps that would start after
    it are skipped and noted. Without ``protocol``, a real broker that refuses MQTT 5.0 and
    accepts 3.1.1 gets the run in 3.1.1 (``on_fallback`` is told first; module comment).
    Raises ``BrokerUnreachable`` (exit 3) when the broker cannot be reached.
    """
    workers = scenario.workers
    if protocol is not None:
        workers = tuple(replace(w, protocol=protocol) for w in workers)
    publisher_protocol = protocol or scenario.protocol
    notes: list[str] = []
    targets = tuple(replace(t, protocol=publisher_protocol) for t in targets)
    if targets:
        target = targets[0]
    elif target is not None:
        target = replace(target, protocol=publisher_protocol)
    if target is not None:
        _check_real_endpoints(scenario, len(targets) or 1)
        em = scenario.emulator
        if em.faults or em.strategy != "round_robin" or em.group_strategies or em.nodes > 1:
            notes.append(f"the file's emulator settings ({describe(em)}) do not apply to "
                         f"{target.display()}; its expectations may assume them")
    if protocol is not None and protocol != scenario.protocol:
        notes.append(f"--mqtt {protocol}: every client uses MQTT {protocol} instead of the "
                     "file's protocol settings")
    with open_broker(target, scenario.emulator, protocol=publisher_protocol,
                     expected_clients=len(workers) + 1,
                     expected_messages=len(scenario.tasks), targets=targets) as broker:
        endpoints = broker.targets or (broker.target,)
        fallback = None
        wants_v5 = publisher_protocol == "5" or any(w.protocol == "5" for w in workers)
        if protocol is None and broker.emulator is None and wants_v5:
            found = negotiate(endpoints, connect_timeout_s,
                              client_id=f"aetherdiag-{uuid.uuid4().hex[:8]}-mqtt-version")
            if found.fell_back:
                fallback = found
                if on_fallback is not None:
                    on_fallback(found)
                notes += fallback_notes(found, workers)
                workers = tuple(replace(w, protocol=found.protocol, session_expiry=0)
                                for w in workers)
                endpoints = tuple(replace(t, protocol=found.protocol) for t in endpoints)
        with Fleet(endpoints[0], connect_timeout=connect_timeout_s, label=broker.label,
                   seed=seed if seed is not None else scenario_seed(scenario),
                   targets=endpoints, publish_nodes=scenario.publish_nodes,
                   backlog=broker.backlog) as fleet:
            fleet.start(workers)
            broker.before_first_publish()
            runner = _StepRunner(fleet, scenario, timeout_s, on_progress, broker)
            runner.specs = {w.name: w for w in workers}
            try:
                records = runner.run_all()
            finally:
                runner.close_intruders()
            notes += runner.notes
            result = fleet.result()
            if runner.cut:  # the node_down steps' losses were the point, not a failure
                result = replace(result, connection_lost=tuple(
                    n for n in result.connection_lost if n not in runner.cut))
            if runner.cut_short or runner.interrupted:
                result = replace(result, settled=False, timeout_s=timeout_s,
                                 interrupted=runner.interrupted,
                                 steps_not_run=tuple(
                                     r.step.label for r in records
                                     if r.skipped and r.step is not None))
        result = replace(result, emulator_stats=broker.stats())
        if fallback is not None:
            result = replace(result, mqtt5_refused=fallback.refusal)
    return ReplayRun(scenario=scenario, result=result, records=tuple(records),
                     workers=workers, target=result.target, notes=tuple(notes))


def fallback_notes(found: Negotiated, workers: Sequence[WorkerSpec]) -> list[str]:
    """What a run that fell back to 3.1.1 says: the fallback, and the MQTT 5.0 settings of the
    file that are then not judged (3.1.1 has no session expiry)."""
    notes = [found.message()]
    expiring = [w.name for w in workers if w.session_expiry > 0]
    if expiring:
        shown = ", ".join(expiring[:5]) + (f", … +{len(expiring) - 5} more"
                                           if len(expiring) > 5 else "")
        notes.append(f"not judged on this MQTT 3.1.1 broker: the session expiry of {shown} "
                     "(an MQTT 5.0 setting; a persistent 3.1.1 session never expires, so the "
                     "broker keeps it after the run)")
    return notes


def _check_real_endpoints(scenario: sm.Scenario, given: int) -> None:
    """Real brokers: enough endpoints for the workers' nodes, and no node steps."""
    steps = [s for s in scenario.steps if isinstance(s, sm.NodeDown | sm.NodeUp)]
    if steps:
        raise Abort(f"{scenario.path}: {steps[0].label}: {steps[0].kind} needs the embedded "
                    "emulator's cluster, not a real broker", ExitCode.USAGE)
    needed = scenario.nodes_used
    if needed > given:
        raise Abort(f"{scenario.path}: the scenario puts clients on node {needed} but "
                    f"{given} endpoint(s) were given", ExitCode.USAGE)


class _StepRunner:
    """Walks the steps in order against one started fleet, each bounded."""

    def __init__(self, fleet: Fleet, scenario: sm.Scenario, timeout_s: float | None,
                 on_progress: ProgressCallback | None, broker: OpenBroker | None = None) -> None:
        self.fleet = fleet
        self.broker = broker
        self.online = {w.name: True for w in scenario.workers}
        self.cut: set[str] = set()  # workers whose connection a node_down ended
        self.scenario = scenario
        self.on_progress = on_progress
        self.deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.notes: list[str] = []
        self.cut_short = False
        self.interrupted = False
        self.specs = {w.name: w for w in scenario.workers}  # as run (--mqtt may change them)
        self.intruders: dict[str, Intruder] = {}  # worker -> the client holding its session

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def now(self) -> float:
        return self.fleet.rec.now()

    def run_all(self) -> list[StepRecord]:
        """Every step in order; steps after the deadline or an interrupt are recorded as
        skipped (Ctrl-C does not propagate: the caller reports what ran)."""
        records: list[StepRecord] = []
        try:
            self._run_steps(records)
        except KeyboardInterrupt:
            self.interrupted = True
            self.fleet.stop_clock()
            done = len([r for r in records if r.step is not None])
            left = self.scenario.steps[done:]
            if left:
                self.notes.append(f"interrupted: {len(left)} step(s) not run, from "
                                  f"{left[0].label} on")
            at = self.now()
            records += [StepRecord(step=s, started=at, ended=at, skipped="interrupted")
                        for s in left]
        return records

    def _run_steps(self, records: list[StepRecord]) -> None:
        steps = self.scenario.steps
        for i, step in enumerate(steps):
            if self.remaining() <= 0:
                left = steps[i:]
                self.notes.append(f"--timeout {self.timeout_s:g} s reached: {len(left)} "
                                  f"step(s) not run, from {step.label} on")
                at = self.now()
                records += [StepRecord(step=s, started=at, ended=at, skipped="--timeout reached")
                            for s in left]
                self.cut_short = True
                self.fleet.stop_clock()
                return
            started = self.now()
            record = self.run(step)
            if not isinstance(step, sm.Publish | sm.Wait | sm.Settle):
                # A settle's quiet period counts from the broker's last answer; a reconnect or
                # a subscription may trigger deliveries a moment later (queued messages,
                # resumed exchanges), so the step's end counts as activity too.
                rec = self.fleet.rec
                rec.last_activity = max(rec.last_activity, time.monotonic())
            records.append(replace(record, step=step, started=started, ended=self.now()))
        if not steps or not isinstance(steps[-1], sm.Settle):
            started = self.now()
            ok = self.settle(self.scenario.timeout_s, FINAL_QUIET_S)
            records.append(StepRecord(step=None, started=started, ended=self.now(), settled=ok))

    def settle(self, timeout_s: float, quiet_s: float) -> bool:
        return self.fleet.settle(quiet_s=quiet_s, timeout_s=min(timeout_s, self.remaining()),
                                 on_progress=self.on_progress)

    def run(self, step: sm.Step) -> StepRecord:
        """Carry out one step; the caller fills in the step and its times."""
        fleet = self.fleet
        blank = StepRecord(step=step, started=0.0, ended=0.0)
        if isinstance(step, sm.Publish):
            paced = len(step.tasks) / step.rate if step.rate else 0.0
            sent = fleet.publish(step.tasks, rate=step.rate, on_progress=self.on_progress,
                                 timeout_s=min(self.scenario.timeout_s + paced, self.remaining()))
            return replace(blank, sent=sent)
        if isinstance(step, sm.Wait):
            fleet.wait(min(step.seconds, self.remaining()))
            return blank
        if isinstance(step, sm.Settle):
            return replace(blank, settled=self.settle(step.timeout_s, step.quiet_s))
        if isinstance(step, sm.Takeover | sm.Kick):
            return self.intrude(blank, step.worker, kick=isinstance(step, sm.Kick))
        if isinstance(step, sm.Resubscribe):
            return replace(blank, reason_code=churn.subscribe(fleet, step.worker, step.topic_filter,
                                                              step.qos))
        if isinstance(step, sm.Drop | sm.Disconnect | sm.Reconnect):
            self.online[step.worker] = isinstance(step, sm.Reconnect)
        if isinstance(step, sm.Drop):
            return replace(blank, in_flight=churn.drop(fleet, step.worker))
        if isinstance(step, sm.Disconnect):
            since = self.now()
            churn.disconnect(fleet, step.worker)
            gone = [e for e in fleet.rec.events()
                    if e.worker == step.worker and e.kind == "disconnected" and e.at >= since]
            return replace(blank, in_flight=gone[-1].task_ids if gone else ())
        if isinstance(step, sm.Reconnect):
            present = churn.reconnect(fleet, step.worker)
            intruder = self.intruders.pop(step.worker, None)
            if intruder is not None:  # the broker closed its connection for the worker's
                intruder.close()
            return replace(blank, session_present=present)
        if isinstance(step, sm.NodeDown):
            return replace(blank, in_flight=self.node_down(step.node))
        if isinstance(step, sm.NodeUp):
            assert self.broker is not None
            self.broker.node_up(step.node)
            return blank
        if isinstance(step, sm.Subscribe):
            code = churn.subscribe(fleet, step.worker, step.topic_filter, step.qos)
            return replace(blank, reason_code=code)
        if isinstance(step, sm.Unsubscribe):
            held = churn.in_flight(self.fleet, step.worker)
            return replace(blank, in_flight=held,
                           confirmed=churn.unsubscribe(fleet, step.worker, step.topic_filter))
        if isinstance(step, sm.Slow):
            churn.set_work_ms(fleet, step.worker, step.work_ms)
            return blank
        raise TypeError(f"unknown step {step!r}")  # pragma: no cover - the parser forbids it

    def intrude(self, blank: StepRecord, name: str, *, kick: bool) -> StepRecord:
        """``takeover`` / ``kick``: a second client with ``name``'s client id connects (and,
        for a kick, leaves at once, ending the session); wait (bounded) until the worker has
        seen its connection end. The record holds the worker's in-flight tasks and whether the
        intruder found a session."""
        fleet = self.fleet
        spec = self.specs[name]
        since = self.now()
        held = churn.in_flight(fleet, name) if self.online.get(name) else ()
        was_online = self.online.get(name, False)
        old = self.intruders.pop(name, None)
        if old is not None:
            old.close()
        intruder = Intruder(fleet.targets[spec.node - 1], fleet.client_id(name), spec.protocol,
                            clean_start=kick or spec.clean_start,
                            session_expiry=0 if kick else spec.session_expiry)
        if not intruder.connect(fleet.connect_timeout):
            intruder.close()
            self.notes.append(f"{'kick' if kick else 'takeover'} {name}: the second client "
                              f"with its id was not accepted within {fleet.connect_timeout:g} s")
            return replace(blank, in_flight=held)
        if kick:
            intruder.close(end_session=True)
        else:
            self.intruders[name] = intruder
        if was_online:
            deadline = time.monotonic() + fleet.connect_timeout
            while time.monotonic() < deadline and not any(
                    e.worker == name and e.at >= since and e.kind == "lost"
                    for e in fleet.rec.events()):
                time.sleep(0.005)
        self.online[name] = False
        self.cut.add(name)  # a 3.1.1 worker sees a bare close: not a broker failure
        return replace(blank, in_flight=held, session_present=intruder.session_present)

    def close_intruders(self) -> None:
        for intruder in self.intruders.values():
            intruder.close()
        self.intruders.clear()

    def node_down(self, node: int) -> tuple[str, ...]:
        """Take ``node`` down and wait (bounded) until each of its connected workers has seen
        its connection end; returns the task ids they had in flight."""
        assert self.broker is not None  # _check_real_endpoints refused node steps otherwise
        fleet = self.fleet
        since = self.now()
        victims = {w.name for w in self.scenario.workers
                   if w.node == node and self.online.get(w.name)}
        self.broker.node_down(node)
        deadline = time.monotonic() + fleet.connect_timeout
        while True:
            ended = {e.worker: e for e in fleet.rec.events()
                     if e.worker in victims and e.at >= since
                     and e.kind in ("lost", "dropped", "disconnected")}
            if len(ended) == len(victims) or time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        for name in victims - set(ended):
            self.notes.append(f"node_down {node}: {name} did not see its connection end "
                              f"within {fleet.connect_timeout:g} s")
        for name in victims:
            self.online[name] = False
        self.cut |= victims
        return tuple(t for e in ended.values() for t in e.task_ids)
