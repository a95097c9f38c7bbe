"""``aetherdiag.workers.exec.procs``: the team's worker processes, with real child processes."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from aetherdiag.workers.exec.command import CommandError, parse_command
from aetherdiag.workers.exec.peers import process_tree_pids, tcp_peers
from aetherdiag.workers.exec.procs import WorkerProcesses

PY = shlex.quote(sys.executable)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG is Linux-only")


def wait_for(cond: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for init (it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group_empty(pgid: int) -> bool:
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except (OSError, psutil.Error):
            continue
    return True


def pids_in_log(procs: WorkerProcesses, name: str) -> list[int]:
    return [int(line) for line in procs.log_tail(name, 50) if line.strip().isdigit()]


# -- parse_command -----------------------------------------------------------------------------

def test_parse_command_splits_like_a_shell_and_keeps_placeholders():
    argv = parse_command("""worker --id {name} -n {index} --url '{url}' "a b" {{lit}}""")
    assert argv == ("worker", "--id", "{name}", "-n", "{index}", "--url", "{url}", "a b",
                    "{{lit}}")


@pytest.mark.parametrize(("template", "words"), [
    ("", "empty"),
    ("   ", "empty"),
    ("run {nme}", "unknown placeholder {nme}"),
    ("run {}", "unknown placeholder {}"),
    ("run {name.upper}", "unknown placeholder {name.upper}"),
    ("run 'unclosed", "no closing quotation"),
    ("run {index:>9}", "{index:>9}"),
    ("run {name!r}", "{name!r}"),
    ("run {name", "unbalanced brace"),
    ("run name}", "unbalanced brace"),
])
def test_bad_templates_raise_one_line(template, words):
    with pytest.raises(CommandError) as info:
        parse_command(template)
    message = str(info.value)
    assert words in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_bad_template_is_rejected_before_anything_starts(tmp_path):
    with pytest.raises(CommandError, match="unknown placeholder"):
        WorkerProcesses("run {worker}", 2, host="127.0.0.1", port=1883, logs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- starting, placeholders, environment, logs ----------------------------------------------

REPORT = (
    "import os, sys; print('argv', *sys.argv[1:]); "
    "print('env', *(os.environ[k] for k in "
    "('AETHERDIAG_WORKER', 'AETHERDIAG_BROKER_URL', 'MQTT_HOST', 'MQTT_PORT'))); "
    "print('stderr line', file=sys.stderr); "
    "print('locale', os.environ.get('LC_CTYPE', '-'))"
)


def test_placeholders_env_and_log_per_worker():
    placeholders = "{name} {index} {host} {port} {url} {{x}}"
    template = f"{PY} -c {shlex.quote(REPORT)} {placeholders}"
    with WorkerProcesses(template, 3, host="127.0.0.1", port=18830) as procs:
        procs.start()
        assert procs.names == ("worker-1", "worker-2", "worker-3")
        wait_for(lambda: len(procs.exited()) == 3)
        assert procs.exited() == {"worker-1": 0, "worker-2": 0, "worker-3": 0}
        paths = {procs.log_path(n) for n in procs.names}
        assert len(paths) == 3 and all(p.parent == procs.log_dir for p in paths)
        for i, name in enumerate(procs.names, start=1):
            url = "mqtt://127.0.0.1:18830"
            assert procs.log_tail(name) == [
                f"argv {name} {i} 127.0.0.1 18830 {url} {{x}}",
                f"env {name} {url} 127.0.0.1 18830",
                "stderr line",
                f"locale {os.environ.get('LC_CTYPE', '-')}",
            ]
            assert procs.log_tail(name, lines=1) == [f"locale {os.environ.get('LC_CTYPE', '-')}"]
        log_dir = procs.log_dir
        assert log_dir is not None and log_dir.is_dir()
    assert not log_dir.exists()  # a healthy run leaves no temporary logs


def test_kept_logs_and_given_logs_dir_stay(tmp_path):
    with WorkerProcesses("echo {name}", 1, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: procs.exited() == {"worker-1": 0})
        procs.keep_logs(True)
        kept = procs.log_path("worker-1")
    try:
        assert kept.read_text() == "worker-1\n"
    finally:
        for p in kept.parent.iterdir():
            p.unlink()
        kept.parent.rmdir()

    given = tmp_path / "logs"
    with WorkerProcesses("echo {index}", 2, host="h", port=1, logs_dir=given) as procs:
        procs.start()
        wait_for(lambda: len(procs.exited()) == 2)
        procs.keep_logs(False)  # a given directory is kept all the same
    assert sorted(p.name for p in given.iterdir()) == ["worker-1.log", "worker-2.log"]
    assert (given / "worker-2.log").read_text() == "2\n"


def test_log_tail_of_a_long_log():
    script = "for i in range(100000): print('line', i)"
    with WorkerProcesses(f"{PY} -c {shlex.quote(script)}", 1, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: procs.exited() == {"worker-1": 0})
        assert procs.log_tail("worker-1", 3) == ["line 99997", "line 99998", "line 99999"]


@pytest.mark.parametrize("pdeathsig", [True, False], ids=["wrapper", "direct"])
def test_command_not_found_is_one_line(pdeathsig):
    if pdeathsig and not sys.platform.startswith("linux"):
        pytest.skip("the exec wrapper is Linux-only")
    with WorkerProcesses("no-such-command-aetherdiag {name}", 2, host="h", port=1,
                         pdeathsig=pdeathsig) as procs:
        with pytest.raises(CommandError) as info:
            procs.start()
        assert str(info.value) == ("worker-1: cannot start 'no-such-command-aetherdiag': "
                                   "command not found")
        assert all(not procs.alive(n) for n in procs.pids())


def test_permission_denied_is_one_line(tmp_path):
    script = tmp_path / "worker.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    if os.access(script, os.X_OK):  # root may execute anything with an x bit; none here
        pytest.skip("cannot make a file non-executable here")
    with WorkerProcesses(shlex.quote(str(script)), 1, host="h", port=1) as procs, \
            pytest.raises(CommandError, match=r"^worker-1: cannot start .*: permission denied$"):
        procs.start()


def test_child_that_exits_early_shows_with_code_and_tail():
    template = ("sh -c 'if [ {index} = 2 ]; then echo starting; echo fatal: no broker >&2; "
                "exit 3; fi; exec sleep 30'")
    with WorkerProcesses(template, 3, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: "worker-2" in procs.exited())
        assert procs.exited() == {"worker-2": 3}
        assert procs.log_tail("worker-2") == ["starting", "fatal: no broker"]
        assert procs.alive("worker-1") and procs.alive("worker-3")
        assert not procs.alive("worker-2")
        procs.stop(grace_s=1.0)
        assert set(procs.exited()) == {"worker-1", "worker-2", "worker-3"}
        assert procs.exited()["worker-1"] == -signal.SIGTERM


# -- stopping ---------------------------------------------------------------------------------

def test_stop_kills_children_that_ignore_sigterm():
    template = "sh -c 'trap \"\" TERM; echo $$; while :; do sleep 0.1; done'"
    with WorkerProcesses(template, 2, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: all(pids_in_log(procs, n) for n in procs.names))
        pids = procs.pids()
        assert all(pids_in_log(procs, n) == [pids[n]] for n in procs.names)
        t0 = time.monotonic()
        procs.stop(grace_s=0.5)
        took = time.monotonic() - t0
        assert 0.5 <= took <= 1.5
        assert procs.exited() == {n: -signal.SIGKILL for n in procs.names}
        for pid in pids.values():
            assert not psutil.pid_exists(pid)  # reaped, not a zombie
            assert group_empty(pid)
        procs.stop()  # twice is fine
        procs.close()
        procs.close()


def test_stop_kills_grandchildren():
    template = "sh -c 'sleep 300 & echo $!; wait'"
    with WorkerProcesses(template, 2, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: all(pids_in_log(procs, n) for n in procs.names))
        grandchildren = [pids_in_log(procs, n)[0] for n in procs.names]
        assert all(psutil.Process(g).ppid() == procs.pid(n)
                   for g, n in zip(grandchildren, procs.names, strict=True))
        t0 = time.monotonic()
        procs.stop(grace_s=3.0)
        assert time.monotonic() - t0 < 2.0  # everyone took the SIGTERM
        assert all(gone(g) for g in grandchildren)
        assert all(group_empty(procs.pid(n)) for n in procs.names)


def test_stop_kills_a_grandchild_that_outlives_its_parent_and_ignores_sigterm():
    # The worker's shell ends on SIGTERM, its background job ignores it: SIGKILL after grace.
    template = "sh -c '(trap \"\" TERM; exec sleep 300) & echo $!; wait'"
    with WorkerProcesses(template, 1, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: pids_in_log(procs, "worker-1"))
        grandchild = pids_in_log(procs, "worker-1")[0]
        t0 = time.monotonic()
        procs.stop(grace_s=0.5)
        assert time.monotonic() - t0 <= 1.5
        assert gone(grandchild)


@linux_only
def test_sigkill_of_the_owner_leaves_no_child(tmp_path):
    owner_script = textwrap.dedent(f"""
        import sys, time
        from aetherdiag.workers.exec.procs import WorkerProcesses
        procs = WorkerProcesses("sleep 300", 3, host="h", port=1, logs_dir={str(tmp_path)!r})
        procs.start()
        print(*procs.pids().values(), flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_script], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        children = [int(p) for p in line.split()]
        assert len(children) == 3
        assert all(psutil.Process(p).ppid() == owner.pid for p in children)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=5)
        wait_for(lambda: all(gone(p) for p in children), timeout=3.0)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


PDEATHSIG_OF_SELF = ("import ctypes; v = ctypes.c_int(); "
                     "ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)")


def pdeathsig_of_a_child(result: list[str]) -> None:
    with WorkerProcesses(f"{PY} -c {shlex.quote(PDEATHSIG_OF_SELF)}", 1, host="h",
                         port=1) as procs:
        procs.start()
        wait_for(lambda: procs.exited() == {"worker-1": 0})
        result.extend(procs.log_tail("worker-1"))


@linux_only
def test_pdeathsig_is_set_in_the_child_from_the_main_thread_only():
    # PR_SET_PDEATHSIG fires when the forking *thread* ends, so a thread does not ask for it
    from_main: list[str] = []
    pdeathsig_of_a_child(from_main)
    assert from_main == [str(int(signal.SIGKILL))]
    from_thread: list[str] = []
    thread = threading.Thread(target=pdeathsig_of_a_child, args=(from_thread,))
    thread.start()
    thread.join(10)
    assert from_thread == ["0"]


# -- connections ------------------------------------------------------------------------------

CONNECT = ("import socket, sys, time; "
           "s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); "
           "print('connected', flush=True); time.sleep(30)")


@pytest.mark.parametrize("via_shell", [False, True], ids=["child", "grandchild"])
def test_tcp_peers_maps_a_childs_connection_to_its_pid(via_shell):
    connect = f"{PY} -c {shlex.quote(CONNECT)} {{host}} {{port}}"
    # "; true" keeps the shell from exec'ing: the connection is held by its child
    template = f"sh -c {shlex.quote(connect + '; true')}" if via_shell else connect
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with WorkerProcesses(template, 2, host="127.0.0.1", port=port) as procs:
            procs.start()
            peers: dict[tuple[str, int], socket.socket] = {}
            try:
                for _ in range(2):
                    listener.settimeout(10)
                    conn, addr = listener.accept()
                    peers[(addr[0], addr[1])] = conn
                pids = procs.pids()
                wait_for(lambda: all(procs.log_tail(n) == ["connected"] for n in procs.names))
                mapping = tcp_peers(pids.values(), port)
                assert set(mapping) == set(peers)
                assert sorted(mapping.values()) == sorted(pids.values())
                for name, pid in pids.items():
                    tree = process_tree_pids(pid)
                    assert pid in tree and (len(tree) > 1) == via_shell
                    mine = [a for a, p in mapping.items() if p == pid]
                    assert len(mine) == 1, name
                assert tcp_peers(pids.values(), port + 1 if port < 65535 else port - 1) == {}
                assert tcp_peers(pids.values(), port, remote_host="10.9.9.9") == {}
            finally:
                for c in peers.values():
                    c.close()


def test_process_tree_pids_of_a_gone_process_is_empty():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_tree_pids(proc.pid) == set()


def test_a_temp_log_dir_is_removed_and_a_kept_one_is_named(tmp_path: Path):
    with WorkerProcesses("sh -c 'echo oops; exit 1'", 1, host="h", port=1) as procs:
        procs.start()
        wait_for(lambda: procs.exited() == {"worker-1": 1})
        assert not procs.logs_kept
        procs.keep_logs()
        assert procs.logs_kept
        log = procs.log_path("worker-1")
    assert log.read_text() == "oops\n"
    log.unlink()
    log.parent.rmdir()
