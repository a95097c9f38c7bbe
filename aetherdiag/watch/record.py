"""A watch's events as JSON Lines (``--record FILE``) and read back (``--input FILE``).

How this works: the first line is a header (``{"schema": "aetherdiag.watch/1", ...}``: the
profile, filters and target), then one line per event (``at`` seconds since the watch
started, ``topic``, ``tid``, ``action``, ``client``, ``host``, ``progress``, the payload's
``digest``, ``parsed``, ``scope``, and ``"retained": true`` for a message delivered with the
retain flag; never a payload body), and a last line ``{"ended": SECONDS, "reason": ...}``
when the watch ended (``duration``, ``tasks``, ``interrupted`` or ``lost: WHY``). A recording
without that last line was cut off: the watch was killed, or the file cut short. The writer
flushes on every ``flush()`` (the watch calls it every tick), so a killed watch leaves all but
its last fraction of a second. Reading checks every line and names the first bad one as
``FILE:LINE: what is wrong``; events are streamed, so a long recording is never held in
memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .events import ACTIONS, Event

SCHEMA = "aetherdiag.watch/1"


class RecordError(ValueError):
    """A recording that cannot be read; ``str()`` is ``FILE:LINE: what is wrong``."""


@dataclass(frozen=True)
class Header:
    """The recording's first line: what the watch subscribed to, and where."""

    profile: str
    filters: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class Ended:
    """The recording's last line: when and why the watch ended."""

    at: float
    reason: str


def event_dict(event: Event) -> dict[str, Any]:
    return {"at": round(event.at, 6), "topic": event.topic, "tid": event.tid,
            "action": event.action, "client": event.client, "host": event.host,
            "progress": event.progress, "digest": event.digest, "parsed": event.parsed,
            "scope": event.scope, **({"retained": True} if event.retained else {})}


class Recorder:
    """Writes one recording; ``close`` adds the ``ended`` line. A write that fails (disk
    full, the file gone) stops the recording: ``failed`` says why, ``on_error`` hears it
    once, and the watch goes on (its report still judges everything it saw)."""

    def __init__(self, stream: TextIO, header: dict[str, Any],
                 on_error: Callable[[str], None] | None = None) -> None:
        self._stream = stream
        self._on_error = on_error
        self.failed: str | None = None
        self._write({"schema": SCHEMA, **header})

    def _guard(self, action: Callable[[], object]) -> None:
        if self.failed is not None:
            return
        try:
            action()
        except OSError as exc:
            self.failed = exc.strerror or str(exc)
            if self._on_error is not None:
                self._on_error(self.failed)

    def _write(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, separators=(",", ":")) + "\n"
        self._guard(lambda: self._stream.write(line))

    def write(self, event: Event) -> None:
        self._write(event_dict(event))

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def close(self, at: float, reason: str) -> None:
        self._write({"ended": round(at, 6), "reason": reason})
        self._guard(self._stream.flush)


def _number(doc: dict[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = doc.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name!r} must be a number")
    return float(value)


def _text(doc: dict[str, Any], name: str, *, optional: bool = True) -> str | None:
    value = doc.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string" + (" or null" if optional else ""))
    return value


def parse_event(doc: dict[str, Any]) -> Event:
    """An event line as written by ``Recorder``; ``ValueError`` names the bad field."""
    action = doc.get("action")
    if action not in ACTIONS:
        raise ValueError(f"'action' must be one of {', '.join(ACTIONS)}")
    at = _number(doc, "at")
    assert at is not None
    if at < 0:
        raise ValueError("'at' must not be negative")
    parsed, retained = doc.get("parsed", True), doc.get("retained", False)
    if not isinstance(parsed, bool):
        raise ValueError("'parsed' must be true or false")
    if not isinstance(retained, bool):
        raise ValueError("'retained' must be true or false")
    return Event(at=at, topic=_text(doc, "topic", optional=False) or "",
                 tid=_text(doc, "tid"), action=action, client=_text(doc, "client"),
                 host=_text(doc, "host"), progress=_number(doc, "progress", optional=True),
                 digest=_text(doc, "digest") or "", parsed=parsed, scope=_text(doc, "scope") or "",
                 retained=retained)


def read(path: Path) -> Iterator[Header | Event | Ended]:
    """The recording's ``Header``, its events, then its ``Ended`` line if it has one.
    ``RecordError`` at the first line that is not right (``OSError`` when the file cannot be
    read)."""
    with path.open("rb") as stream:
        number = 0
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                item = _line(line, number)
            except UnicodeDecodeError:
                raise RecordError(f"{path}:{number}: not UTF-8 text") from None
            except ValueError as exc:
                raise RecordError(f"{path}:{number}: {exc}") from None
            yield item
        if number == 0:
            raise RecordError(f"{path}:1: empty recording (expected a {SCHEMA} header)")


def _line(line: str, number: int) -> Header | Event | Ended:
    try:
        doc = json.loads(line)
    except ValueError:
        raise ValueError("not a JSON object (is this a watch --record file?)") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object (is this a watch --record file?)")
    if number == 1 or "schema" in doc:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not a watch recording: the first line must have "
                             f"\"schema\": \"{SCHEMA}\"")
        filters = doc.get("filters", [])
        if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
            raise ValueError("'filters' must be a list of strings")
        return Header(profile=str(doc.get("profile", "")), filters=tuple(filters),
                      target=str(doc.get("target", "")))
    if "ended" in doc:
        at = _number(doc, "ended")
        assert at is not None
        return Ended(at=at, reason=str(doc.get("reason", "")))
    return parse_event(doc)
