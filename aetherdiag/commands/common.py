"""Helpers shared by the report-producing commands (workers, replay, probe)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from .. import render
from ..analysis import Report
from ..exitcodes import Abort, ExitCode
from ..harness.model import BrokerTarget


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


def emit_report(report: Report, fmt: render.Format, output: Path | None, quiet: bool) -> None:
    """Render to ``output`` (or stdout); ``--quiet`` silences only the table on stdout."""
    if output is not None:
        try:
            with output.open("w", encoding="utf-8") as stream:
                render.render(report, fmt, stream)
        except OSError as exc:
            raise Abort(f"--output {output}: {exc.strerror or exc}", ExitCode.USAGE) from None
        return
    if quiet and fmt is render.Format.table:
        return
    render.render(report, fmt)


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
