"""Bad input is refused up front with exit 2 and one line (issue 8, items 6 and 7).

Scenario documents (NaN, infinities, out-of-range numbers, sizes, id and topic templates,
YAML nesting and alias bombs), local TLS files, ``--password-env`` and how secrets and IPv6
addresses print. Nothing here needs a broker: every failure happens before a run starts.
Assertions are on the exception type or exit code and on "one line, no traceback", not on
wording.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tlsdata import CERT_PEM, ENCRYPTED_KEY_PEM, KEY_PEM, OTHER_KEY_PEM
from typer.testing import CliRunner

from aetherdiag.cli import app
from aetherdiag.commands.common import TargetOptions
from aetherdiag.exitcodes import Abort, ExitCode
from aetherdiag.harness.clients import BrokerUnreachable, tls_context
from aetherdiag.harness.model import BrokerTarget
from aetherdiag.harness.target import InvalidTarget, host_for_url, parse_broker_url
from aetherdiag.scenario import load_scenario, parse_scenario
from aetherdiag.scenario import steps as scenario_steps
from aetherdiag.scenario import yaml_nodes as scenario_yaml
from aetherdiag.scenario.model import ScenarioError


def parse_target(url: str, protocol: str, ca_file: Path | None, cert_file: Path | None,
                 key_file: Path | None, insecure: bool, password_env: str | None) -> BrokerTarget:
    """What every command does with --broker and the TLS/password options."""
    return TargetOptions(ca_file, cert_file, key_file, insecure, password_env).target(
        url, protocol)

runner = CliRunner()


HEAD = "name: t\nworkers: [w1, w2]\n"
OK_STEPS = "steps:\n  - publish: {count: 2}\n"


def doc(steps: str = OK_STEPS, *, top: str = "", workers: str = "workers: [w1, w2]\n") -> str:
    return f"name: t\n{top}{workers}{steps}"


def one_line_error(text: str) -> ScenarioError:
    """Parse ``text``; it must fail with a one-line ScenarioError naming file:line:column."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.yaml")
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith(f"bad.yaml:{err.line}:{err.column}: ")
    assert err.line >= 1
    return err


def replay(tmp_path: Path, text: str, *args: str) -> None:
    """``aetherdiag replay FILE`` must end with exit 2, a short stderr and no traceback."""
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    result = runner.invoke(app, ["replay", "--quiet", *args, str(path)])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert time.monotonic() - started < 30


# -- numbers -------------------------------------------------------------------------------------

NUMERIC_FIELDS = {  # field -> a document where VALUE stands for its value
    "timeout": doc(top="timeout: VALUE\n"),
    "work_ms": doc(workers="workers:\n  - {name: w1, work_ms: VALUE}\n"),
    "work_jitter_ms": doc(workers="workers:\n  - {name: w1, work_jitter_ms: VALUE}\n"),
    "wait": doc("steps:\n  - publish: {count: 2}\n  - wait: VALUE\n"),
    "rate": doc("steps:\n  - publish: {count: 2, rate: VALUE}\n"),
    "settle timeout": doc("steps:\n  - publish: {count: 2}\n  - settle: {timeout: VALUE}\n"),
    "settle quiet": doc("steps:\n  - publish: {count: 2}\n  - settle: {quiet: VALUE}\n"),
    "slow": doc("steps:\n  - publish: {count: 2}\n  - slow: {worker: w1, work_ms: VALUE}\n"),
    "max_imbalance": doc(OK_STEPS + "expect: {max_imbalance: VALUE}\n"),
    "count": doc("steps:\n  - publish: {count: VALUE}\n"),
    "start": doc("steps:\n  - publish: {count: 2, start: VALUE}\n"),
    "replicas": doc(workers="workers:\n  - {name: w, replicas: VALUE}\n"),
    "qos": doc(top="qos: VALUE\n"),
    "session_expiry": doc(workers="workers:\n  - {name: w1, session_expiry: VALUE}\n"),
    "seed": doc(top="target: {emulator: {seed: VALUE}}\n"),
    "exit_code": doc(OK_STEPS + "expect: {exit_code: VALUE}\n"),
    "duplicates": doc(OK_STEPS + "expect: {duplicates: VALUE}\n"),
    "missing max": doc(OK_STEPS + "expect: {missing: {max: VALUE}}\n"),
}
BAD_NUMBERS = [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1e309", "-1e309", "1e300",
               "99999999999999999999999999", "9" * 5000, "-1", "2001-13-45"]


@pytest.mark.parametrize("field", sorted(NUMERIC_FIELDS))
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=lambda v: v[:12])
def test_numbers_must_be_finite_and_in_range(field: str, value: str) -> None:
    text = NUMERIC_FIELDS[field]
    parse_scenario(text.replace("VALUE", "1"), "good.yaml")  # the document is fine otherwise
    one_line_error(text.replace("VALUE", value))


def test_nan_is_not_a_valid_timeout_even_though_nan_compares_false() -> None:
    err = one_line_error(doc(top="timeout: .nan\n"))
    assert (err.line, err.column) == (2, 10)


# -- sizes ---------------------------------------------------------------------------------------


def test_task_counts_far_beyond_memory_fail_before_any_id_is_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    one_line_error(doc("steps:\n  - publish: {count: 1000000000000}\n"))
    monkeypatch.setattr(scenario_steps, "MAX_TASKS", 10)  # the bound, not 1,000,000 ids each
    steps = "steps:\n" + "".join(f"  - publish: {{count: 6, start: {i * 6}}}\n"
                                 for i in range(1000))
    err = one_line_error(doc(steps))
    assert err.line == 5  # the second step already brings the file past MAX_TASKS
    alias = "steps:\n  - &p {publish: {count: 6}}\n" + "  - *p\n" * 1000
    one_line_error(doc(alias))
    assert time.monotonic() - started < 5


def test_the_task_total_is_checked_before_running(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario_steps, "MAX_TASKS", 10)
    replay(tmp_path, doc("steps:\n  - publish: {count: 6}\n  - publish: {count: 6}\n"))


def test_an_explicit_task_list_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario_steps, "MAX_TASK_LIST", 10)
    ten = ", ".join(f"t{i}" for i in range(10))
    parse_scenario(doc(f"steps:\n  - publish: {{tasks: [{ten}]}}\n"))
    err = one_line_error(doc(f"steps:\n  - publish: {{tasks: [{ten}, t10]}}\n"))
    assert err.line == 4
    assert "10" in err.message  # the bound is in the message


def test_replica_totals_are_bounded() -> None:
    workers = "workers:\n" + "".join(f"  - {{name: w{i}, replicas: 100000}}\n" for i in range(3))
    one_line_error(doc(workers=workers))


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from aetherdiag.scenario import reader as scenario

    monkeypatch.setattr(scenario, "MAX_FILE_CHARS", 1000)
    path = tmp_path / "big.yaml"
    path.write_text(doc() + "#" * 2000 + "\n")
    with pytest.raises(ScenarioError):
        load_scenario(path)


# -- YAML nesting and aliases ------------------------------------------------------------------


@pytest.mark.parametrize("depth", [60, 5000, 200_000])
def test_deep_nesting_is_an_error_not_a_stack_overflow(depth: int) -> None:
    one_line_error(doc("steps: " + "[" * depth + "]" * depth + "\n"))
    one_line_error(doc("steps: " + "{a: " * depth + "1" + "}" * depth + "\n"))


def test_nesting_through_aliases_is_counted() -> None:
    levels = "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 60))
    one_line_error("l0: &l0 [x]\n" + levels + HEAD + OK_STEPS)


def test_a_billion_laughs_alias_bomb_is_stopped_early() -> None:
    bomb = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))
    started = time.monotonic()
    err = one_line_error(bomb + HEAD + OK_STEPS)
    assert err.line <= 10
    assert time.monotonic() - started < 2


def test_a_recursive_alias_is_an_error() -> None:
    one_line_error(HEAD + "steps: &s [*s]\n")


def test_nesting_up_to_the_bound_composes() -> None:
    depth = scenario_yaml.MAX_DEPTH
    scenario_yaml.compose("[" * depth + "]" * depth, "ok.yaml")
    with pytest.raises(ScenarioError):
        scenario_yaml.compose("[" * (depth + 1) + "]" * (depth + 1), "bad.yaml")


# -- id and topic templates ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "{n:>999999999}", "t-{n:,}", "t-{n:x}", "t-{n:{n}}", "t-{n:021d}", "{0}", "{}-{n}",
    "{n.__class__}", "{n[0]}", "{n!r}", "{task_id}-{n}", "{n}{", "{n}}", "{{n}}", "t",
])
def test_id_patterns_only_substitute_n(pattern: str) -> None:
    err = one_line_error(doc(f"steps:\n  - publish: {{count: 2, id_pattern: '{pattern}'}}\n"))
    assert err.line == 4


@pytest.mark.parametrize("pattern", ["t-{n}", "t-{n:04d}", "t{n:3}", "{n:020d}", "{{x}}-{n}"])
def test_documented_id_patterns_still_work(pattern: str) -> None:
    sc = parse_scenario(doc(f"steps:\n  - publish: {{count: 2, id_pattern: '{pattern}'}}\n"))
    ids = [t.task_id for t in sc.tasks]
    assert ids == [pattern.format(n=1), pattern.format(n=2)]


@pytest.mark.parametrize("topic", ["jobs/{task_id:>99999999}", "jobs/{task_id!s}",
                                   "jobs/{task_id.upper}", "jobs/{0}", "jobs/{n:<9999}"])
def test_topic_templates_only_substitute_task_id_and_n(topic: str) -> None:
    one_line_error(doc(f"steps:\n  - publish: {{count: 2, topic: '{topic}'}}\n"))
    layout = f"layout: {{generic: {{topic: '{topic}', filter: 'jobs/+'}}}}\n"
    one_line_error(doc(top=layout))


def test_documented_topic_templates_still_work() -> None:
    sc = parse_scenario(doc("steps:\n  - publish: {count: 2, topic: 'jobs/{n:03d}/{task_id}'}\n"))
    assert [t.topic for t in sc.tasks] == ["jobs/001/task-1", "jobs/002/task-2"]


# -- the CLI: exit 2, one line, no traceback ------------------------------------------------------


@pytest.mark.parametrize("text", [
    doc(top="timeout: .nan\n"),
    doc("steps:\n  - publish: {count: 2}\n  - wait: .inf\n"),
    doc("steps:\n  - publish: {count: 2, id_pattern: '{n:>999999999}'}\n"),
    doc("steps:\n  - publish: {count: 2, id_pattern: '{n.__class__}'}\n"),
    doc("steps: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10)),
    doc("steps:\n  - publish: {count: " + "9" * 5000 + "}\n"),
    doc("steps:\n  - publish: {count: 2}\n  - wait: 2001-13-45\n"),
], ids=["nan", "inf", "width", "attribute", "deep", "bomb", "bigint", "baddate"])
def test_replay_refuses_bad_documents_before_running(tmp_path: Path, text: str) -> None:
    replay(tmp_path, text)


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
    kwargs = {"ca_file": files[ca] if ca else None, "cert_file": files[cert] if cert else None,
              "key_file": files[key] if key else None}
    with pytest.raises(InvalidTarget) as info:
        parse_broker_url("mqtts://127.0.0.1:1", environ={}, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(option)
    assert os.path.basename(kwargs[option[2:].replace("-", "_")] or "") in message
    with pytest.raises(Abort) as abort:  # the commands' path: a usage error, not unreachable
        parse_target("mqtts://127.0.0.1:1", "5", *(Path(v) if v else None
                                                   for v in kwargs.values()), False, None)
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
    replay(tmp_path, doc(), *args)


# -- --password-env ------------------------------------------------------------------------------


def test_an_explicit_password_env_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHERDIAG_TEST_UNSET", raising=False)
    monkeypatch.setenv("AETHERDIAG_TEST_EMPTY", "")
    monkeypatch.setenv("AETHERDIAG_TEST_SET", "s3cret")
    target = ("mqtt://bob@127.0.0.1:1", "5", None, None, None, False)
    for var in ("AETHERDIAG_TEST_UNSET", "AETHERDIAG_TEST_EMPTY"):
        with pytest.raises(Abort) as info:
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
    replay(tmp_path, doc(), "--broker", "mqtt://bob@127.0.0.1:1",
           "--password-env", "AETHERDIAG_TEST_UNSET")


def test_password_env_help_names_the_default() -> None:
    result = runner.invoke(app, ["replay", "--help"], env={"COLUMNS": "200"})
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
