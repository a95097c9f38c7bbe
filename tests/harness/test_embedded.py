"""Starting the embedded emulator for a run: on a thread, or as a child process."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from aetherdiag.harness.embedded import (
    EmulatorStartError,
    ProcessEmulator,
    choose_mode,
    describe,
    start_emulator,
)
from aetherdiag.harness.fleet import BrokerUnreachable, Fleet
from aetherdiag.harness.model import BrokerTarget, EmulatorSettings, TaskSpec, WorkerSpec

# the report's "emulator" object: one shape in both modes
STATS_KEYS = ["mode", "connections", "connected", "messages_in", "deliveries", "acked",
              "redispatched", "dup_resends", "protocol_errors", "retained",
              "deliveries_by_client", "dropped", "dropped_total"]


def run(target: BrokerTarget, n_workers: int = 2, n_tasks: int = 4) -> dict[str, list[str]]:
    specs = [WorkerSpec(name=f"worker-{i}", subscriptions=("$share/g/e/+",))
             for i in range(1, n_workers + 1)]
    with Fleet(target) as fleet:
        fleet.start(specs)
        fleet.publish([TaskSpec(task_id=f"task-{i}", topic=f"e/{i}")
                       for i in range(1, n_tasks + 1)])
        assert fleet.settle(quiet_s=0.2, timeout_s=10)
        result = fleet.result()
    return {w: [str(d.task_id) for d in result.deliveries if d.worker == w] for w in result.workers}


def test_small_runs_use_a_thread_and_large_ones_a_process() -> None:
    assert choose_mode(4, 9) == "thread"
    assert choose_mode(1001, 100_000) == "process"
    assert choose_mode(4, 1_000_000) == "process"
    assert choose_mode(2000, 10) == "process"


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_emulator_modes_serve_a_run_and_report_stats(mode: str) -> None:
    target, handle = start_emulator(EmulatorSettings(), protocol="3.1.1", mode=mode)  # type: ignore[arg-type]
    try:
        assert handle.mode == mode
        assert (target.scheme, target.host, target.protocol) == ("mqtt", "127.0.0.1", "3.1.1")
        assert run(target) == {"worker-1": ["task-1", "task-3"], "worker-2": ["task-2", "task-4"]}
        stats = handle.stats()
        assert stats is not None
        assert stats["mode"] == mode
        assert stats["messages_in"] == 4 and stats["deliveries"] == 4
        assert list(stats) == STATS_KEYS
        assert stats["dropped"] == {} and stats["dropped_total"] == 0
        by_client = stats["deliveries_by_client"]
        assert isinstance(by_client, dict) and sorted(by_client.values()) == [2, 2]
    finally:
        handle.stop()
        handle.stop()  # twice is fine
    if isinstance(handle, ProcessEmulator):
        assert handle.proc is not None and handle.proc.poll() is not None


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_settings_reach_the_emulator(mode: str) -> None:
    settings = EmulatorSettings(strategy="random", faults=("share-fanout",), seed=3)
    target, handle = start_emulator(settings, mode=mode)  # type: ignore[arg-type]
    try:
        got = run(target)
    finally:
        handle.stop()
    assert got == {w: ["task-1", "task-2", "task-3", "task-4"] for w in ("worker-1", "worker-2")}
    assert describe(settings) == "emulator (strategy random, faults share-fanout)"


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_bad_settings_fail_with_one_line(mode: str) -> None:
    with pytest.raises(EmulatorStartError) as err:
        start_emulator(EmulatorSettings(faults=("no-such-fault",)), mode=mode)  # type: ignore[arg-type]
    assert "no-such-fault" in str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, BrokerUnreachable)  # the CLI maps it to exit code 3


def test_a_child_that_never_says_its_port_is_killed_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handle = ProcessEmulator(EmulatorSettings(), start_timeout=0.5)
    monkeypatch.setattr(handle, "command",
                        lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.monotonic()
    with pytest.raises(EmulatorStartError, match="printed no address"):
        handle.start()
    assert time.monotonic() - t0 < 7
    assert handle.proc is not None and handle.proc.poll() is not None


def test_the_child_ends_with_its_parent_by_stdin_and_by_parent_pid() -> None:
    handle = ProcessEmulator(EmulatorSettings())
    cmd = handle.command()
    assert "--exit-on-stdin-eof" in cmd
    assert cmd[cmd.index("--parent-pid") + 1] == str(os.getpid())
    # PR_SET_PDEATHSIG fires when the *thread* that started the child ends: not from others
    got: list[list[str]] = []
    t = threading.Thread(target=lambda: got.append(handle.command()))
    t.start()
    t.join()
    assert "--exit-on-stdin-eof" in got[0] and "--parent-pid" not in got[0]


def test_closing_the_childs_stdin_stops_it_with_its_summary() -> None:
    target, handle = start_emulator(EmulatorSettings(), mode="process")
    try:
        assert isinstance(handle, ProcessEmulator) and handle.proc is not None
        assert run(target) == {"worker-1": ["task-1", "task-3"], "worker-2": ["task-2", "task-4"]}
        assert handle.proc.stdin is not None
        handle.proc.stdin.close()  # what the kernel does when this process dies
        assert handle.proc.wait(10) == 0
        handle.stop()
        stats = handle.stats()
        assert stats is not None and stats["messages_in"] == 4
    finally:
        handle.stop()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_backlog_counts_what_the_emulator_still_owes_its_clients(mode: str) -> None:
    """A subscriber that does not acknowledge QoS 1 messages leaves them in flight: the
    backlog says so (both modes), and goes back to 0 once they are acknowledged."""
    from support.mqttclient import PahoClient

    target, handle = start_emulator(EmulatorSettings(), mode=mode)  # type: ignore[arg-type]
    sub = PahoClient(target.host, target.port, client_id="slow", manual_ack=True)
    pub = PahoClient(target.host, target.port, client_id="pub")
    try:
        assert handle.backlog() == 0
        sub.connect()
        sub.subscribe(("jobs/#", 1))
        pub.connect()
        for n in range(5):
            pub.publish(f"jobs/{n}", b"x", qos=1)
        got = sub.wait_for(5)
        assert handle.backlog() == 5
        for msg in got:
            sub.ack(msg)
        deadline = time.monotonic() + 5
        while handle.backlog() != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert handle.backlog() == 0
    finally:
        sub.close()
        pub.close()
        handle.stop()
    assert handle.backlog() is None  # stopped: it cannot say
