"""Conformance: the ``mqtt_emulator`` pytest fixture other projects get through ``pytest11``.

These tests use the fixture exactly as a user's test suite would: by name, configured with
the ``mqtt_emulator`` marker, talking to it with an unmodified paho-mqtt client.
"""

from __future__ import annotations

import importlib.metadata

import pytest
from support.mqttclient import V5, PahoClient, by_payload

from aetherdiag.emulator import Emulator

pytest_plugins = ["pytester"]


def _workers(em: Emulator, clients: list[object], n: int, group: str = "g") -> list[PahoClient]:
    members = []
    for i in range(n):
        c = PahoClient(em.host, em.port, version=V5, client_id=f"worker-{i}")
        clients.append(c)
        c.connect()
        c.subscribe(f"$share/{group}/jobs/+", qos=1)
        members.append(c)
    return members


def _publish(em: Emulator, clients: list[object], n: int) -> None:
    pub = PahoClient(em.host, em.port, version=V5, client_id="publisher")
    clients.append(pub)
    pub.connect()
    for i in range(n):
        pub.publish(f"jobs/{i}", str(i), qos=1)


def test_plugin_is_registered_as_a_pytest11_entry_point():
    eps = importlib.metadata.entry_points(group="pytest11")
    assert "aetherdiag.pytest_plugin" in {ep.value for ep in eps}


def test_fixture_gives_a_running_default_emulator(mqtt_emulator, clients):
    assert isinstance(mqtt_emulator, Emulator)
    assert mqtt_emulator.host == "127.0.0.1" and mqtt_emulator.port > 0
    members = _workers(mqtt_emulator, clients, 3)
    _publish(mqtt_emulator, clients, 9)
    for m in members:
        m.wait_for(3)
    assert [len(m.settle(0.1)) for m in members] == [3, 3, 3], "round robin by default"
    stats = mqtt_emulator.stats()
    assert stats.messages_in == 9 and stats.deliveries == 9


@pytest.mark.mqtt_emulator(faults=["share-fanout"])
def test_marker_configures_faults(mqtt_emulator, clients):
    members = _workers(mqtt_emulator, clients, 2)
    _publish(mqtt_emulator, clients, 3)
    for m in members:
        m.wait_for(3)
        assert by_payload(m.settle(0.1)) == {"0": 1, "1": 1, "2": 1}


@pytest.mark.mqtt_emulator(strategy="sticky", seed=5)
def test_marker_configures_the_strategy(mqtt_emulator, clients):
    members = _workers(mqtt_emulator, clients, 3)
    _publish(mqtt_emulator, clients, 6)
    got = [len(m.settle(0.2)) for m in members]
    assert sorted(got) == [0, 0, 6]


def test_each_test_gets_a_fresh_emulator(mqtt_emulator, clients):
    """Nothing from the earlier tests (sessions, retained, counters) leaks in."""
    stats = mqtt_emulator.stats()
    assert (stats.messages_in, stats.connections, stats.retained) == (0, 0, 0)


def test_a_foreign_suite_can_use_the_fixture(pytester):
    """A project that only installed aetherdiag gets the fixture and marker with no setup."""
    pytester.makepyfile(
        """
        import paho.mqtt.client as mqtt
        import pytest

        @pytest.mark.mqtt_emulator(faults=["share-unsupported"])
        def test_refused(mqtt_emulator):
            got = []
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x",
                            protocol=mqtt.MQTTv5)
            c.on_subscribe = lambda *a: got.extend(int(r.value) for r in a[3])
            c.connect(mqtt_emulator.host, mqtt_emulator.port)
            c.subscribe("$share/g/t", qos=1)
            for _ in range(50):
                c.loop(0.1)
                if got:
                    break
            c.disconnect()
            assert got == [0x9E]

        def test_plain(mqtt_emulator):
            assert mqtt_emulator.port > 0
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
