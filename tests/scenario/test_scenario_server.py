"""A scenario sets the emulator's server policies as ``emulator serve`` does (--receive-maximum,
--topic-aliases, --server-keep-alive, --deny-subscribe), in thread and process mode alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import invoke
from support.mqttclient import V5, PahoClient

from aetherdiag.emulator.session import Limits
from aetherdiag.exitcodes import ExitCode
from aetherdiag.harness.embedded import start_emulator
from aetherdiag.harness.model import EmulatorSettings
from aetherdiag.scenario import parse_scenario
from aetherdiag.scenario.model import ScenarioError

BASE = "name: t\nworkers: [w]\nsteps:\n  - publish: {count: 2}\n"
SERVER = """\
target:
  emulator:
    receive_maximum: 4
    topic_aliases: true
    server_keep_alive: 7
    deny_subscribe: ['production/#', 'jobs/+']
"""


def test_the_server_keys_become_the_emulators_limits_and_its_serve_options() -> None:
    settings = parse_scenario(BASE + SERVER, "s.yaml").emulator
    assert settings.limits == Limits(receive_maximum=4, topic_aliases=True, server_keep_alive=7,
                                     deny_subscribe=("production/#", "jobs/+"))
    assert settings.serve_options() == [
        "--strategy", "round_robin", "--receive-maximum", "4", "--topic-aliases",
        "--server-keep-alive", "7", "--deny-subscribe", "production/#",
        "--deny-subscribe", "jobs/+"]
    assert parse_scenario(BASE, "s.yaml").emulator.limits == Limits()


@pytest.mark.parametrize(("value", "line", "needle"), [
    ("receive_maximum: 0", 4, "receive_maximum"),
    ("receive_maximum: 70000", 4, "receive_maximum"),
    ("server_keep_alive: -1", 4, "server_keep_alive"),
    ("topic_aliases: maybe", 4, "topic_aliases"),
    ("deny_subscribe: ['a/#/b']", 4, "deny_subscribe 'a/#/b'"),
    ("deny_subscribe: 'a/b'", 4, "deny_subscribe"),
])
def test_a_bad_server_key_is_one_line_naming_file_and_line(value: str, line: int,
                                                           needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BASE + f"target:\n  emulator:\n    {value}\n", "s.yaml")
    assert str(info.value).startswith(f"s.yaml:{line + 3}:") and needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_both_emulator_modes_announce_the_policies(mode: str) -> None:
    """The CONNACK a v5 client gets carries the Receive Maximum and Server Keep Alive, and a
    denied filter gets SUBACK 0x87, whether the emulator runs in this process or a child."""
    settings = EmulatorSettings(limits=Limits(receive_maximum=4, server_keep_alive=7,
                                              deny_subscribe=("jobs/#",)))
    target, handle = start_emulator(settings, mode=mode)  # type: ignore[arg-type]
    client = PahoClient(target.host, target.port, version=V5, client_id=f"probe-{mode}")
    try:
        connack = client.connect()
        assert connack.properties.get("ReceiveMaximum") == 4
        assert connack.properties.get("ServerKeepAlive") == 7
        assert client.subscribe("$share/g/jobs/+", qos=1) == [0x87]
        assert client.subscribe("other/+", qos=1) == [1]
    finally:
        client.close()
        handle.stop()


def test_a_replay_whose_subscriptions_the_emulator_denies_is_not_healthy(tmp_path: Path) -> None:
    path = tmp_path / "denied.yaml"
    path.write_text("name: denied\nworkers: [w1, w2]\n" + SERVER
                    + "steps:\n  - publish: {count: 4}\n", encoding="utf-8")
    result = invoke("replay", "--format", "json", str(path))
    assert result.exit_code == ExitCode.MISSING, result.output
    assert '"0x87' in result.output or "0x87" in result.output
