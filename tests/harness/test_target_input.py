"""Bad targets are refused up front with exit 2 and one line (issue 8, items 6 and 7): local
TLS files, ``--password-env``, and how secrets and IPv6 addresses print. Nothing here needs a
broker: every failure happens before a run starts. Assertions are on the exception type or exit
code and on "one line, no traceback", not on wording.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.cli import invoke, replay_refuses
from support.tlsdata import CERT_PEM, ENCRYPTED_KEY_PEM, KEY_PEM, OTHER_KEY_PEM

from aetherdiag.commands.common import TargetOptions
from aetherdiag.exitcodes import DiagError, ExitCode
from aetherdiag.harness.clients import BrokerUnreachable, tls_context
from aetherdiag.harness.model import BrokerTarget
from aetherdiag.harness.target import InvalidTarget, parse_broker_url
from aetherdiag.mqtt.urls import host_for_url

SCENARIO = "name: t\nworkers: [w1, w2]\nsteps:\n  - publish: {count: 2}\n"


def parse_target(url: str, protocol: str, ca_file: Path | None, cert_file: Path | None,
                 key_file: Path | None, insecure: bool, password_env: str | None) -> BrokerTarget:
    """What every command does with --broker and the TLS/password options."""
    return TargetOptions(ca_file, cert_file, key_file, insecure, password_env).target(
        url, protocol)


def path(name: str | None) -> Path | None:
    return Path(name) if name else None


# -- TLS files -----------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    contents = {
        "cert": CERT_PEM, "key": KEY_PEM, "both": CERT_PEM + KEY_PEM, "other": OTHER_KEY_PEM,
        "encrypted": ENCRYPTED_KEY_PEM, "text": "not a certificate\n",
        "truncated": "-----BEGIN CERTIFICATE-----\n", "empty": "",
    }
    out = {}
    for name, text in contents.items():
        (tmp_path / f"{name}.pem").write_text(text)
        out[name] = str(tmp_path / f"{name}.pem")
    (tmp_path / "random.bin").write_bytes(os.urandom(512))
    out["random"] = str(tmp_path / "random.bin")
    return out


BAD_TLS = [  # (ca, cert, key, the option the message must name)
    ("random", None, None, "--ca-file"),
    ("text", None, None, "--ca-file"),
    ("truncated", None, None, "--ca-file"),
    ("empty", None, None, "--ca-file"),
    ("key", None, None, "--ca-file"),
    (None, "cert", None, "--cert-file"),  # no key in the file, none given
    (None, "key", None, "--cert-file"),  # a key where the certificate belongs
    (None, "random", "key", "--cert-file"),
    (None, "cert", "other", "--key-file"),  # the wrong key
    (None, "cert", "random", "--key-file"),
    (None, "cert", "cert", "--key-file"),
    (None, "cert", "encrypted", "--key-file"),  # must not prompt for a passphrase
]


@pytest.mark.parametrize(("ca", "cert", "key", "option"), BAD_TLS)
def test_tls_files_that_do_not_load_are_invalid_targets(
        files: dict[str, str], ca: str | None, cert: str | None, key: str | None,
        option: str) -> None:
    ca_file, cert_file, key_file = (files[name] if name else None for name in (ca, cert, key))
    with pytest.raises(InvalidTarget) as info:
        parse_broker_url("mqtts://127.0.0.1:1", environ={}, ca_file=ca_file,
                         cert_file=cert_file, key_file=key_file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(option)
    named = {"--ca-file": ca_file, "--cert-file": cert_file, "--key-file": key_file}[option]
    assert os.path.basename(named or "") in message
    with pytest.raises(DiagError) as abort:  # the commands' path: a usage error, not unreachable
        parse_target("mqtts://127.0.0.1:1", "5", path(ca_file), path(cert_file),
                     path(key_file), False, None)
    assert abort.value.code == ExitCode.USAGE


def test_tls_files_that_load_are_accepted(files: dict[str, str]) -> None:
    t = parse_broker_url("mqtts://h", ca_file=files["cert"], cert_file=files["cert"],
                         key_file=files["key"], environ={})
    assert tls_context(t) is not None
    assert parse_broker_url("wss://h", cert_file=files["both"], environ={}).cert_file


def test_the_harness_reports_tls_files_built_in_code_as_unreachable(files: dict[str, str]) -> None:
    target = BrokerTarget(scheme="mqtts", ca_file=files["random"])
    with pytest.raises(BrokerUnreachable):
        tls_context(target)


@pytest.mark.parametrize(("ca", "cert", "key", "option"), [BAD_TLS[0], BAD_TLS[5], BAD_TLS[8]])
def test_replay_refuses_bad_tls_files_with_exit_2(
        tmp_path: Path, files: dict[str, str], ca: str | None, cert: str | None,
        key: str | None, option: str) -> None:
    args = ["--broker", "mqtts://127.0.0.1:1"]
    for name, value in (("--ca-file", ca), ("--cert-file", cert), ("--key-file", key)):
        if value:
            args += [name, files[value]]
    replay_refuses(tmp_path, SCENARIO, *args)


# -- --password-env ------------------------------------------------------------------------------


def test_an_explicit_password_env_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHERDIAG_TEST_UNSET", raising=False)
    monkeypatch.setenv("AETHERDIAG_TEST_EMPTY", "")
    monkeypatch.setenv("AETHERDIAG_TEST_SET", "s3cret")
    target = ("mqtt://bob@127.0.0.1:1", "5", None, None, None, False)
    for var in ("AETHERDIAG_TEST_UNSET", "AETHERDIAG_TEST_EMPTY"):
        with pytest.raises(DiagError) as info:
            parse_target(*target, var)
        assert info.value.code == ExitCode.USAGE
        assert "\n" not in str(info.value)
    assert parse_target(*target, "AETHERDIAG_TEST_SET").password == "s3cret"
    # not needed: the URL has a password, or no user
    assert parse_target("mqtt://bob:pw@h", "5", None, None, None, False,
                        "AETHERDIAG_TEST_UNSET").password == "pw"
    assert parse_target("mqtt://h", "5", None, None, None, False,
                        "AETHERDIAG_TEST_UNSET").password is None


def test_the_default_password_env_unset_means_no_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHERDIAG_PASSWORD", raising=False)
    assert parse_target("mqtt://bob@h", "5", None, None, None, False, None).password is None
    monkeypatch.setenv("AETHERDIAG_PASSWORD", "from-env")
    assert parse_target("mqtt://bob@h", "5", None, None, None, False, None).password == "from-env"


def test_replay_refuses_an_unset_password_env(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHERDIAG_TEST_UNSET", raising=False)
    replay_refuses(tmp_path, SCENARIO, "--broker", "mqtt://bob@127.0.0.1:1",
           "--password-env", "AETHERDIAG_TEST_UNSET")


def test_password_env_help_names_the_default() -> None:
    result = invoke("replay", "--help")
    assert "AETHERDIAG_PASSWORD" in result.stdout


# -- secrets and addresses -------------------------------------------------------------------------

PASSWORDS = ["p@ss:w@rd", "p%40ss%3Aw%40rd", "::@@", "pa/ss", "p@ss#w?rd"]
SECRET_PIECES = ["p@ss", "ss:w", "w@rd", "%40ss", "%3Aw", "::@@", "pa/ss", "#w?rd"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("template", [
    "http://user:{pw}@host:1883", "mqtt://user:{pw}@host:99999", "mqtt://user:{pw}@host/x",
    "mqtt://user:{pw}@host:1883#frag", "mqtt://user:{pw}@", "mqtt://user:{pw}@host:",
    "ws://user:{pw}@host/p#f",
])
def test_errors_redact_a_password_whole(password: str, template: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        parse_broker_url(template.format(pw=password), environ={})
    message = str(info.value)
    for piece in SECRET_PIECES:
        assert piece not in message, message


@pytest.mark.parametrize("password", ["p@ss:w@rd", "p%40ss%3Aw%40rd"])
def test_passwords_with_at_and_colon_parse_whole_and_never_display(password: str) -> None:
    t = parse_broker_url(f"mqtt://user:{password}@host:1883", environ={})
    assert (t.username, t.password, t.host, t.port) == ("user", "p@ss:w@rd", "host", 1883)
    assert t.display() == "mqtt://user@host:1883"


@pytest.mark.parametrize("url", [
    "mqtt://[::1]:1883", "mqtt://[2001:db8::7]:1884", "mqtts://[::1]:8883",
    "ws://[::1]:9001/ws", "mqtt://al%40ice@[::1]:1883", "mqtt://localhost:1883",
    "mqtt://10.0.0.5:1883", "mqtt://[fe80::1%25eth0]:1883",
])
def test_display_round_trips_through_broker_urls(url: str) -> None:
    t = parse_broker_url(url, environ={})
    shown = t.display()
    assert shown == url
    again = parse_broker_url(shown, environ={})
    assert (again.host, again.port, again.username, again.path) == (t.host, t.port,
                                                                    t.username, t.path)


def test_ipv6_hosts_print_in_brackets() -> None:
    assert BrokerTarget(host="::1", port=1883).display() == "mqtt://[::1]:1883"
    assert host_for_url("::1") == "[::1]"
    assert host_for_url("127.0.0.1") == "127.0.0.1"
    assert host_for_url("[::1]") == "[::1]"


@pytest.mark.parametrize("url", ["mqtt://::1:1883", "mqtt://bob@fe80::1:1883", "ws://::1"])
def test_an_unbracketed_ipv6_address_is_a_usage_error(url: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_broker_url(url, environ={})
