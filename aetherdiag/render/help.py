"""Help text made for an 80-column terminal, for every command and sub-command.

How this works: typer's rich panels cut long option names and URLs with "…" at 80 columns, so
the app uses click's plain help with this formatter (``HelpGroup`` for the app and its
sub-apps, ``HelpCommand`` for each command): paragraphs are rewrapped to the width, a
paragraph whose first line is indented (the epilogs' example command lines) is kept line for
line, words are never split (fault names, --options and URLs stay whole), and typer's
``<int range>``-style metavars read as click's (INTEGER, FLOAT, TEXT, PATH).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # newer typer releases carry their own copy of click, older ones use click
    from typer._click import Context as _ClickContext
    from typer._click.formatting import HelpFormatter as _BaseFormatter
else:
    _ClickContext = typer.Context
    _BaseFormatter = typer.Context.formatter_class


def _wrap_help(text: str, width: int) -> list[str]:
    """``text`` as help lines of at most ``width`` columns where words allow: paragraphs (split
    at blank lines) rewrapped, except one whose first line is indented or is click's ``\\b``
    marker, which is kept line for line. Words are never split, at hyphens or otherwise."""
    lines: list[str] = []
    paragraph: list[str] = []
    for line in [*text.expandtabs().splitlines(), ""]:
        if line.strip():
            paragraph.append(line.rstrip())
            continue
        if not paragraph:
            continue
        if lines:
            lines.append("")
        if paragraph[0].strip() == "\b":
            lines.extend(paragraph[1:])
        elif paragraph[0].startswith(" "):
            lines.extend(paragraph)
        else:
            lines.extend(textwrap.wrap(" ".join(p.strip() for p in paragraph), max(width, 20),
                                       break_on_hyphens=False, break_long_words=False))
        paragraph = []
    return lines


class _HelpFormatter(_BaseFormatter):
    """click's help formatter, with ``_wrap_help`` for every paragraph and definition."""

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        for line in _wrap_help(text, self.width - self.current_indent):
            self.write(f"{indent}{line}".rstrip() + "\n")

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30,
                 col_spacing: int = 2) -> None:
        rows = list(rows)
        if not rows:
            return
        first = min(max(len(term) for term, _ in rows), col_max) + col_spacing
        indent = " " * self.current_indent
        for term, text in rows:
            lines = _wrap_help(text, self.width - self.current_indent - first)
            if lines and len(term) <= first - col_spacing:  # the text starts beside the term
                self.write(f"{indent}{term}".ljust(self.current_indent + first))
                self.write(f"{lines.pop(0)}\n")
            else:
                self.write(f"{indent}{term}\n")
            for line in lines:
                self.write(f"{indent}{' ' * first}{line}\n" if line else "\n")


class _HelpContext(typer.Context):
    formatter_class = _HelpFormatter


_TYPE_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "bool": ""}


def _metavar(match: re.Match[str]) -> str:
    """typer's ``<int range>``, ``<list[str]>``, ``<a|b>`` -> ``INTEGER``, ``TEXT``, ``a|b``."""
    label = match.group(1).removesuffix(" range")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if "|" in label:
        return label
    return _TYPE_NAMES.get(label, label.upper())


def _format_params(command: TyperCommand | TyperGroup, ctx: _ClickContext,
                   formatter: _BaseFormatter) -> None:
    """The Arguments and Options sections, with ``_metavar`` names (an argument is named by
    its metavar alone)."""
    sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        term, text = record
        if param.param_type_name == "argument":
            sections["Arguments"].append((re.sub(r" <[^<>]*>$", "", term), text))
        else:
            term = re.sub(r" ?<([^<>]*)>", lambda m: " " + _metavar(m), term).rstrip()
            sections["Options"].append((term, text))
    for title, rows in sections.items():
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


class HelpCommand(TyperCommand):
    """A command whose help is ``_HelpFormatter`` text."""

    context_class = _HelpContext

    def format_options(self, ctx: _ClickContext, formatter: _BaseFormatter) -> None:
        _format_params(self, ctx, formatter)


class HelpGroup(TyperGroup):
    """A group whose help is ``_HelpFormatter`` text; its commands are listed with their whole
    first sentence, wrapped, never cut with "..."."""

    context_class = _HelpContext

    def format_options(self, ctx: _ClickContext, formatter: _BaseFormatter) -> None:
        _format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: _ClickContext, formatter: _BaseFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
