"""Synthetic runs for the report pages: any size, no broker, deterministic.

``synthetic_run`` records through the harness's own ``Recorder`` (so latency goes into its
HDR histogram exactly as in a real run) and returns the ``RunResult`` the fleet would;
``replay_outcome`` and ``probe_report`` build the other two things a page can show.
"""

from __future__ import annotations

import math

from aetherdiag.analysis import Report, analyse
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.model import RunResult, WorkerSpec
from aetherdiag.harness.recorder import Recorder
from aetherdiag.probe.fingerprint import Guess
from aetherdiag.probe.model import BALANCED, Check, ProbeReport, ProtocolInfo, Status
from aetherdiag.replay.model import StepEffect
from aetherdiag.replay.outcome import ExpectResult, ReplayOutcome


def synthetic_run(workers: int, tasks: int, *, fanout: bool = False, duplicate_every: int = 0,
                  redeliver_every: int = 0, duration_s: float = 2.0) -> RunResult:
    """``tasks`` tasks dealt round robin to ``workers`` workers over ``duration_s``; with
    ``fanout`` every worker gets every task; every ``duplicate_every``-th task also reaches
    the next worker, every ``redeliver_every``-th is sent twice to its worker (DUP)."""
    names = tuple(f"worker-{i}" for i in range(1, workers + 1))
    ids = tuple(f"task-{n}" for n in range(1, tasks + 1))
    rec = Recorder()
    for n, task in enumerate(ids):
        at = duration_s * n / tasks
        latency = 2.0 + 3.0 * math.exp(math.sin(n * 0.7) * 1.5) + (40.0 if n % 997 == 0 else 0)
        owners = names if fanout else (names[n % workers],)
        for w in owners:
            rec.delivery(w, task, f"t/{task}", 1, False, False, at + latency / 1000, latency)
        if duplicate_every and n % duplicate_every == 0 and not fanout:
            other = names[(n + 1) % workers]
            rec.delivery(other, task, f"t/{task}", 1, False, False, at + 0.01, latency + 10)
        if redeliver_every and n % redeliver_every == 0:
            rec.delivery(owners[0], task, f"t/{task}", 1, True, False, at + 0.02, latency + 20)
    return RunResult(target="emulator (synthetic)", workers=names, published=ids,
                     deliveries=rec.deliveries(), duration_s=duration_s,
                     latency=rec.latency())


def specs(result: RunResult) -> list[WorkerSpec]:
    return [WorkerSpec(name=n, subscriptions=("$share/g/t/+",)) for n in result.workers]


def synthetic_report(workers: int, tasks: int, **kwargs: object) -> Report:
    result = synthetic_run(workers, tasks, **kwargs)  # type: ignore[arg-type]
    return analyse(result, specs(result))


def replay_outcome() -> ReplayOutcome:
    """A replay file whose worker drops mid-run and whose tasks come back with DUP."""
    result = synthetic_run(3, 60, redeliver_every=7, duration_s=1.2)
    report = analyse(result, specs(result))
    steps = (
        StepEffect(index=1, line=12, kind="publish", description="publish 60 tasks",
                   effect="60 sent", started=0.0, ended=0.6),
        StepEffect(index=2, line=15, kind="drop", description="drop worker-2",
                   effect="3 in-flight task(s) re-sent with DUP", started=0.45, ended=0.46),
        StepEffect(index=3, line=18, kind="reconnect", description="reconnect worker-2",
                   effect="session present", started=0.8, ended=0.82),
        StepEffect(index=None, line=None, kind="settle", description="settle", effect="",
                   started=1.0, ended=1.2),
    )
    return ReplayOutcome(
        file="scenarios/drop-mid-work.yaml", name="drop-mid-work",
        description="A member drops mid-work; its tasks come back with DUP.",
        report=report, exit_code=report.exit_code, check_expect=False,
        setup=(("file", "scenarios/drop-mid-work.yaml"), ("workers", "3"), ("steps", "3")),
        steps=steps, expected_exit=1,
        expectations=(ExpectResult(name="exit code", expected="1",
                                   actual=str(int(report.exit_code)),
                                   passed=report.exit_code == ExitCode.DUPLICATES),))


def probe_report() -> ProbeReport:
    """A probe of a broker whose $share works on both versions, round robin."""
    return ProbeReport(
        target="mqtt://127.0.0.1:1883", run_id="ab12cd34", topic_prefix="aetherdiag/probe/ab12",
        protocols=(ProtocolInfo(version="3.1.1", accepted=True, connack=0, detail="accepted",
                                connect_ms=1.2),
                   ProtocolInfo(version="5", accepted=True, connack=0, detail="accepted",
                                connect_ms=1.4, shared_available=True)),
        share_behaviour={"3.1.1": BALANCED, "5": BALANCED},
        strategy=Guess(name="round_robin", scope="group", confidence=0.97,
                       evidence="members took turns", scores={
                           "round_robin": 0.97, "random": 0.31, "sticky": 0.02, "hash": 0.1},
                       counts=(34, 33, 33), messages=100),
        checks=(Check(id="exclusive", title="each message to one member", status=Status.PASS,
                      result="100/100 once", evidence="100 messages, 3 members",
                      spec="MQTT 5.0 4.8.2", meaning="safe for a worker pool"),
                Check(id="inflight", title="in-flight redispatch", status=Status.WARN,
                      result="redispatched", evidence="a member dropped holding 3",
                      spec="MQTT 5.0 4.8.2", meaning="workers must be idempotent")),
        duration_s=3.2)
