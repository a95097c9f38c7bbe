"""A worker command template (``--exec 'CMD ...'``): split like a shell, placeholders checked.
No process is started here."""

from __future__ import annotations

import shlex
import string

from ...exitcodes import UsageError

PLACEHOLDERS = ("name", "index", "host", "port", "url")
_KNOWN = ", ".join("{" + p + "}" for p in PLACEHOLDERS)


class CommandError(UsageError, ValueError):
    """A bad worker command, or a worker that cannot be started; the message is one line."""


def parse_command(template: str) -> tuple[str, ...]:
    """Split ``template`` like a shell (no shell is run) and check its placeholders.

    Only ``{name}``, ``{index}``, ``{host}``, ``{port}`` and ``{url}`` are known; ``{{`` and
    ``}}`` stand for literal braces. Raises ``CommandError`` for an empty command, unbalanced
    quotes or braces, an unknown placeholder, a format spec or a conversion.
    """
    try:
        argv = tuple(shlex.split(template))
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise CommandError(f"worker command: {str(exc).lower()}") from None
    if not argv:
        raise CommandError("worker command is empty")
    for arg in argv:
        _check_placeholders(arg)
    return argv


def _check_placeholders(arg: str) -> None:
    try:
        fields = list(string.Formatter().parse(arg))
    except ValueError as exc:  # "Single '}' encountered", "expected '}' before end of string"
        raise CommandError(
            f"worker command: unbalanced brace in {arg!r} ({exc}); "
            "write {{ and }} for literal braces"
        ) from None
    for _literal, field, spec, conversion in fields:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            raise CommandError(
                f"worker command: unknown placeholder {{{field}}} in {arg!r} "
                f"(known: {_KNOWN}; write {{{{ and }}}} for literal braces)"
            )
        if spec or conversion:
            text = "{" + field + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise CommandError(
                f"worker command: placeholder {text} in {arg!r} takes no format spec or "
                f"conversion (write {{{field}}})"
            )
