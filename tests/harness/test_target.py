"""``parse_broker_url``: every accepted form, and one test per error message."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tlsdata import CERT_PEM, KEY_PEM

from aetherdiag.harness.target import InvalidTarget, parse_broker_url


def parse(url: str, **kwargs: object) -> object:
    kwargs.setdefault("environ", {})
    return parse_broker_url(url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "path"),
    [
        ("mqtt://localhost", "mqtt", "localhost", 1883, "/mqtt"),
        ("mqtt://localhost/", "mqtt", "localhost", 1883, "/mqtt"),
        ("mqtt://10.0.0.5:1884", "mqtt", "10.0.0.5", 1884, "/mqtt"),
        ("MQTT://Broker.Example:1", "mqtt", "broker.example", 1, "/mqtt"),
        ("mqtts://broker.example", "mqtts", "broker.example", 8883, "/mqtt"),
        ("ws://broker.example", "ws", "broker.example", 80, "/mqtt"),
        ("ws://broker.example:9001/", "ws", "broker.example", 9001, "/"),
        ("wss://broker.example", "wss", "broker.example", 443, "/mqtt"),
        ("wss://broker.example/ws/mqtt?x=1", "wss", "broker.example", 443, "/ws/mqtt?x=1"),
        ("mqtt://[::1]:1883", "mqtt", "::1", 1883, "/mqtt"),
        ("  mqtt://localhost:1883  ", "mqtt", "localhost", 1883, "/mqtt"),
    ],
)
def test_accepted_urls(url: str, scheme: str, host: str, port: int, path: str) -> None:
    t = parse_broker_url(url, environ={})
    assert (t.scheme, t.host, t.port, t.path) == (scheme, host, port, path)
    assert t.username is None and t.password is None
    assert t.tls == (scheme in ("mqtts", "wss"))
    assert t.websocket == (scheme in ("ws", "wss"))


def test_credentials_are_percent_decoded() -> None:
    t = parse_broker_url("mqtt://al%40ice:p%3Ass%2Fw@host:1883", environ={})
    assert (t.username, t.password) == ("al@ice", "p:ss/w")
    assert t.display() == "mqtt://al%40ice@host:1883"  # pastes back into --broker
    assert "p:ss" not in t.display()


def test_password_comes_from_the_environment_when_not_in_the_url() -> None:
    env = {"AETHERDIAG_PASSWORD": "s3cret", "OTHER": "x"}
    assert parse_broker_url("mqtt://bob@host", environ=env).password == "s3cret"
    assert parse_broker_url("mqtt://bob:given@host", environ=env).password == "given"
    assert parse_broker_url("mqtt://bob@host", environ=env, password_env="OTHER").password == "x"
    assert parse_broker_url("mqtt://bob@host", environ=env, password_env=None).password is None
    assert parse_broker_url("mqtt://host", environ=env).password is None  # no user, no password
    assert parse_broker_url("mqtt://bob@host", environ={}).password is None


def test_password_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHERDIAG_PASSWORD", "from-env")
    assert parse_broker_url("mqtt://bob@host").password == "from-env"


@pytest.mark.parametrize(("given", "expected"), [("3.1.1", "3.1.1"), ("311", "3.1.1"),
                                                 ("5", "5"), ("5.0", "5"), ("v5", "5")])
def test_protocol_versions(given: str, expected: str) -> None:
    assert parse_broker_url("mqtt://h", protocol=given, environ={}).protocol == expected


@pytest.fixture
def pem(tmp_path: Path) -> str:
    """A self-signed certificate with its key in one file (they load, as the options must)."""
    path = tmp_path / "both.pem"
    path.write_text(CERT_PEM + KEY_PEM)
    return str(path)


def test_tls_options_are_kept(pem: str) -> None:
    t = parse_broker_url("mqtts://h", ca_file=pem, cert_file=pem, key_file=pem, insecure=True,
                         environ={})
    assert (t.ca_file, t.cert_file, t.key_file, t.insecure) == (pem, pem, pem, True)
    assert parse_broker_url("wss://h", ca_file=pem, environ={}).ca_file == pem
    assert parse_broker_url("mqtts://h", cert_file=pem, environ={}).key_file is None


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("", {}, "broker URL is empty"),
        ("   ", {}, "broker URL is empty"),
        ("localhost:1883", {}, "has no scheme"),
        ("http://localhost", {}, "unsupported scheme 'http://'"),
        ("tcp://localhost", {}, "unsupported scheme 'tcp://'"),
        ("mqtt://", {}, "has no host"),
        ("mqtt://:1883", {}, "has no host"),
        ("mqtt://user@", {}, "has no host"),
        ("mqtt://host:abc", {}, "bad port 'abc'"),
        ("mqtt://host:70000", {}, "bad port '70000'"),
        ("mqtt://host:0", {}, "bad port '0'"),
        ("mqtt://host:-1", {}, "bad port '-1'"),
        ("mqtt://host:", {}, "empty port"),
        ("mqtt://[::1", {}, "is malformed"),
        ("mqtt://host/topic", {}, "only ws:// and wss:// URLs take one"),
        ("mqtt://host?x=1", {}, "only ws:// and wss:// URLs take one"),
        ("ws://host/mqtt#frag", {}, "fragment"),
        ("mqtt://:pw@host", {}, "has a password but no user name"),
        ("mqtt://host", {"protocol": "4"}, "unknown MQTT protocol version '4'"),
        ("mqtt://host", {"insecure": True}, "--insecure given but the broker URL is mqtt://"),
        ("ws://host", {"ca_file": "x.pem"}, "--ca-file given but the broker URL is ws://"),
        ("mqtts://host", {"key_file": "k.pem"}, "--key-file given without --cert-file"),
        ("mqtts://host", {"ca_file": "/nonexistent/ca.pem"}, "--ca-file /nonexistent/ca.pem: "
         "file does not exist"),
        ("mqtts://host", {"cert_file": "/nonexistent/c.pem"}, "--cert-file /nonexistent/c.pem"),
    ],
)
def test_errors_name_what_is_wrong(url: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTarget) as err:
        parse(url, **kwargs)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(err.value, ValueError)


def test_directory_given_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidTarget, match="is a directory"):
        parse("mqtts://host", ca_file=str(tmp_path))


def test_errors_never_echo_the_password() -> None:
    with pytest.raises(InvalidTarget) as err:
        parse("http://bob:hunter2@host")
    assert "hunter2" not in str(err.value)
    assert "bob:***@host" in str(err.value)
