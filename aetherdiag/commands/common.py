"""Helpers shared by the report-producing commands (workers, replay, probe)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import typer

from .. import render
from ..analysis import Report
from ..exitcodes import Abort, ExitCode
from ..harness.model import BrokerTarget

# Options shared by every command that can talk to a real broker.
CA_FILE_OPTION: Any = typer.Option(None, "--ca-file", help="CA bundle for mqtts/wss.")
CERT_FILE_OPTION: Any = typer.Option(None, "--cert-file", help="Client certificate.")
KEY_FILE_OPTION: Any = typer.Option(None, "--key-file", help="Client private key.")
INSECURE_OPTION: Any = typer.Option(False, "--insecure", help="Skip TLS certificate checks.")
PASSWORD_ENV_OPTION: Any = typer.Option(
    "AETHERDIAG_PASSWORD", "--password-env", metavar="VAR",
    help="Environment variable holding the password when the URL has none.")


def parse_target(
    url: str, protocol: str, ca_file: Path | None, cert_file: Path | None,
    key_file: Path | None, insecure: bool, password_env: str,
) -> BrokerTarget:
    """``--broker URL`` and its TLS options -> BrokerTarget, or a usage error."""
    from ..harness.target import InvalidTarget, parse_broker_url

    try:
        return parse_broker_url(
            url, protocol=protocol, ca_file=str(ca_file) if ca_file else None,
            cert_file=str(cert_file) if cert_file else None,
            key_file=str(key_file) if key_file else None, insecure=insecure,
            password_env=password_env,
        )
    except InvalidTarget as exc:
        raise Abort(f"--broker: {exc}", ExitCode.USAGE) from None


def emit(draw: Callable[[TextIO | None], None], fmt: render.Format, output: Path | None,
         quiet: bool) -> None:
    """Call ``draw(stream)`` for ``--output FILE`` or stdout (``None``); ``--quiet`` silences
    only a table on stdout."""
    if output is not None:
        try:
            with output.open("w", encoding="utf-8") as stream:
                draw(stream)
        except OSError as exc:
            raise Abort(f"--output {output}: {exc.strerror or exc}", ExitCode.USAGE) from None
        return
    if quiet and fmt is render.Format.table:
        return
    draw(None)


def emit_report(report: Report, fmt: render.Format, output: Path | None, quiet: bool) -> None:
    """Render a ``workers``-style report to ``output`` (or stdout)."""
    emit(lambda stream: render.render(report, fmt, stream), fmt, output, quiet)


def one_line_errors(func: Callable[..., None]) -> Callable[..., None]:
    """Expected failures (``Abort``) -> one line on stderr and their exit code, also when the
    app runs without ``cli.main`` (typer's CliRunner, embedding)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except Abort as exc:
            render.error(str(exc))
            raise typer.Exit(int(exc.code)) from None

    return wrapper
