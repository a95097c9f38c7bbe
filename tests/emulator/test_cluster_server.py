"""An emulated cluster over TCP: ``Emulator(nodes=N)``, ``emulator serve --nodes N`` and the
harness's embedded cluster (thread and child process), with nodes taken down and back up."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from support.mqttclient import V5, PahoClient, connector

from aetherdiag.emulator import Emulator, announce
from aetherdiag.harness.embedded import ProcessEmulator, ThreadEmulator, describe
from aetherdiag.harness.model import BrokerTarget, EmulatorSettings
from aetherdiag.harness.run import open_broker

FILTER = "$share/g/jobs/+"


def _free_run(n: int) -> int:
    """A port P with P..P+n-1 all free right now (best effort)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n > 65535:
            continue
        socks = []
        try:
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    pytest.skip("no run of free ports")


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_port_zero_gives_each_node_a_port(emulator_factory: Callable[..., Emulator]) -> None:
    em = emulator_factory(nodes=3)
    assert len(set(em.ports)) == 3 and em.port == em.ports[0] and em.nodes == 3
    assert em.urls == tuple(f"mqtt://127.0.0.1:{p}" for p in em.ports)
    assert em.url == em.urls[0]


def test_a_given_port_is_node_one_and_the_next_ones_follow(
        emulator_factory: Callable[..., Emulator]) -> None:
    base = _free_run(3)
    em = emulator_factory(nodes=3, port=base)
    assert em.ports == (base, base + 1, base + 2)


def test_one_share_group_across_nodes_and_a_node_going_down(
        emulator_factory: Callable[..., Emulator], clients: list[Any], uid: str) -> None:
    em = emulator_factory(nodes=2)
    node1, node2 = (connector(em.host, port, V5, clients, uid) for port in em.ports)
    near = node1("near")
    far = node2("far", manual_ack=True)  # holds what it gets unacknowledged
    for m in (near, far):
        assert m.subscribe(FILTER, qos=1) == [1]
    pub = node1("pub")
    for i in range(4):
        pub.publish(f"jobs/{i}", str(i), qos=1)
    assert sorted(m.text for m in far.wait_for(2)) == ["1", "3"]
    assert sorted(m.text for m in near.wait_for(2)) == ["0", "2"]
    assert {v.client_id.split("-")[0]: v.node for v in em.clients()} == {
        "near": 1, "far": 2, "pub": 1}
    em.node_down(2)
    far.wait_disconnected()
    assert _refused(em.ports[1])
    # far's two unacknowledged tasks go to the member on node 1
    assert sorted(m.text for m in near.wait_for(4)) == ["0", "1", "2", "3"]
    assert em.stats().redispatched == 2
    em.node_up(2)
    again = PahoClient(em.host, em.ports[1], client_id=f"again-{uid}")
    clients.append(again)
    assert again.connect().reason_code == 0


def test_node_down_of_an_unknown_node_is_refused(
        emulator_factory: Callable[..., Emulator]) -> None:
    em = emulator_factory(nodes=2)
    with pytest.raises(ValueError, match=r"1\.\.2"):
        em.node_down(3)


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aetherdiag", "emulator", "serve", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_nodes_prints_every_url_and_obeys_node_commands() -> None:
    proc = _serve("--nodes", "2", "--port", "0", "--machine", "--exit-on-stdin-eof")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        event = announce.load(proc.stdout.readline())
        assert isinstance(event, announce.Listening) and len(event.ports) == 2
        assert event.port == event.ports[0]
        proc.stdin.write(announce.dump_command(announce.NodeCommand(node=2, up=False)) + "\n")
        proc.stdin.flush()
        assert announce.load(proc.stdout.readline()) == announce.NodeChanged(node=2, up=False)
        assert _refused(event.ports[1])
        proc.stdin.write(json.dumps({"command": "node_up", "node": 2}) + "\n")
        proc.stdin.flush()
        assert announce.load(proc.stdout.readline()) == announce.NodeChanged(node=2, up=True)
        assert not _refused(event.ports[1])
        proc.stdin.close()
        assert proc.wait(15) == 0
        err = proc.stderr.read()
        assert "2 nodes" in err and f"node 2: mqtt://127.0.0.1:{event.ports[1]}" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "0"], "--nodes 0: expected 1 to 64"),
    (["--nodes", "3", "--port", "65534"],
     "--port 65534 --nodes 3: node 3 would need port 65536, above 65535"),
])
def test_serve_bad_node_counts_are_one_line_exit_2(args: list[str], message: str) -> None:
    proc = _serve(*args)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [f"aetherdiag: error: {message}"], err


def test_announce_node_lines_read_back() -> None:
    ev = announce.Listening(host="127.0.0.1", port=5, ports=(5, 9))
    assert announce.load(announce.dump(ev)) == ev
    changed = announce.NodeChanged(node=3, up=True)
    assert announce.load(announce.dump(changed)) == changed
    cmd = announce.NodeCommand(node=2, up=False)
    assert announce.load_command(announce.dump_command(cmd)) == cmd
    for bad in ("", "{}", '{"command": "node_down"}', '{"command": "reboot", "node": 1}',
                '{"command": "node_up", "node": "1"}'):
        assert announce.load_command(bad) is None


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_open_broker_starts_a_cluster_and_lists_its_endpoints(mode: str) -> None:
    settings = EmulatorSettings(nodes=3)
    with open_broker(None, settings, mode=mode) as broker:  # type: ignore[arg-type]
        assert broker.nodes == 3 and len({t.port for t in broker.targets}) == 3
        assert broker.endpoint(1) == broker.target
        assert broker.label == describe(settings) == \
            "emulator (strategy round_robin, faults none, 3 nodes)"
        assert broker.emulator is not None
        assert isinstance(broker.emulator, ThreadEmulator if mode == "thread"
                          else ProcessEmulator)
        port = broker.endpoint(3).port
        broker.node_down(3)
        assert _refused(port)
        broker.node_up(3)
        assert not _refused(port)
        with pytest.raises(ValueError, match=r"1\.\.3"):
            broker.node_down(4)


def test_open_broker_takes_several_real_targets() -> None:
    a, b = BrokerTarget(port=1), BrokerTarget(port=2)
    with open_broker(None, EmulatorSettings(), targets=(a, b)) as broker:
        assert broker.targets == (a, b) and broker.target == a and broker.endpoint(2) == b
        assert broker.label == "mqtt://127.0.0.1:1, mqtt://127.0.0.1:2"
        with pytest.raises(ValueError, match="embedded emulator"):
            broker.node_down(1)
    with open_broker((a, b), EmulatorSettings()) as broker:
        assert broker.targets == (a, b)
    with open_broker(a, EmulatorSettings()) as broker:  # as before: one target
        assert broker.targets == (a,) and broker.nodes == 1
