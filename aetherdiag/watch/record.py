"""A watch's events as JSON Lines (``--record FILE``) and read back (``--input FILE``).

How this works: the first line is a header (``{"schema": "aetherdiag.watch/1", ...}``: the
profile, filters and target), then one line per event (``at`` seconds since the watch
started, ``topic``, ``tid``, ``action``, ``client``, ``host``, ``progress``, the payload's
``digest``, ``parsed``, ``scope``, and ``"retained": true`` for a message delivered with the
retain flag; never a payload body), and a last line ``{"ended": SECONDS, "reason": ...}``
when the watch ended (``duration``, ``tasks``, ``interrupted`` or ``lost: WHY``) or the file
did (``rolled over``, ``reopened``: below). A recording without that last line was cut off:
the watch was killed, or the file cut short. The writer flushes on every ``flush()`` (the
watch calls it every tick), so a killed watch leaves all but its last fraction of a second.
Reading checks every line and names the first bad one as ``FILE:LINE: what is wrong``;
events are streamed, so a long recording is never held in memory.

A watch that runs for days writes through ``RecordFile``: past ``Rollover.max_bytes`` the file
is closed with an end line and renamed ``FILE.1`` (``FILE.1`` becomes ``FILE.2`` and so on; the
oldest beyond ``Rollover.keep`` files is deleted), and a new ``FILE`` starts with the header,
so each file is a recording of its own (event times stay seconds since the watch started).
``reopen()`` is the logrotate convention: the file was moved away; the current one ends with
an end line and ``FILE`` is opened anew (appended to if it is still there) with a header.
"""

from __future__ import annotations

import contextlib
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


def _dumps(doc: dict[str, Any]) -> str:
    """One line of a recording (ASCII: ``json.dumps`` escapes the rest)."""
    return json.dumps(doc, separators=(",", ":")) + "\n"


class Recorder:
    """Writes one recording; ``close`` adds the ``ended`` line. A write that fails (disk
    full, the file gone) stops the recording: ``failed`` says why, ``on_error`` hears it
    once, and the watch goes on (its report still judges everything it saw)."""

    def __init__(self, stream: TextIO, header: dict[str, Any],
                 on_error: Callable[[str], None] | None = None) -> None:
        self._stream = stream
        self._on_error = on_error
        self.failed: str | None = None
        self.header = {"schema": SCHEMA, **header}
        self.written = 0  # characters (bytes: the lines are ASCII) in the current file
        self._write(self.header)

    def _guard(self, action: Callable[[], object]) -> None:
        if self.failed is not None:
            return
        try:
            action()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self.failed is None:
            self.failed = exc.strerror or str(exc)
            if self._on_error is not None:
                self._on_error(self.failed)

    def _write(self, doc: dict[str, Any]) -> None:
        self._emit(_dumps(doc))

    def _emit(self, line: str) -> None:
        def write() -> None:
            self._stream.write(line)
            self.written += len(line)

        self._guard(write)

    def write(self, event: Event) -> None:
        self._write(event_dict(event))

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def close(self, at: float, reason: str) -> None:
        self._write({"ended": round(at, 6), "reason": reason})
        self._guard(self._stream.flush)


@dataclass(frozen=True)
class Rollover:
    """When a ``RecordFile`` starts a new file, and how many it keeps."""

    max_bytes: int | None = None  # start a new file before going past this size (None: never)
    keep: int = 5  # files kept, the current one included (FILE, FILE.1, ... FILE.{keep-1})


class RecordFile(Recorder):
    """``--record FILE``: a ``Recorder`` on a file it opens itself (``OSError`` when it
    cannot), rolled over by size and reopened on request (see the module docstring). A
    failure to roll over or reopen stops the recording like a failed write."""

    def __init__(self, path: Path, header: dict[str, Any], rollover: Rollover = Rollover(),
                 on_error: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.rollover = rollover
        self.reopen_requested = False  # set by a signal handler; the watch thread reopens
        self.rolled = 0  # files started because of the size
        self._events = 0  # in the current file
        super().__init__(path.open("w", encoding="utf-8"), header, on_error)

    def write(self, event: Event) -> None:
        line = _dumps(event_dict(event))
        limit = self.rollover.max_bytes
        if limit is not None and self._events and self.written + len(line) > limit:
            self._next_file(event.at, "rolled over", self._shift)
        self._emit(line)
        self._events += 1

    def reopen(self, at: float) -> None:
        """The file was moved away (logrotate): end it, and go on in a new ``FILE``."""
        self.reopen_requested = False
        self._next_file(at, "reopened", None)

    def close(self, at: float, reason: str) -> None:
        super().close(at, reason)
        self.release()

    def release(self) -> None:
        """Close the file (idempotent, also after a failure); a failure to close it stops the
        recording."""
        try:
            self._stream.close()
        except OSError as exc:
            self._fail(exc)

    def _next_file(self, at: float, reason: str, move: Callable[[], None] | None) -> None:
        if self.failed is not None:
            return
        super().close(at, reason)

        def swap() -> None:
            self._stream.close()
            if move is not None:
                move()
                self.rolled += 1
            self._stream = self.path.open("w" if move is not None else "a", encoding="utf-8")
            self.written = self._stream.tell()
            self._events = 0

        self._guard(swap)
        self._write(self.header)

    def _shift(self) -> None:
        """FILE.{n} -> FILE.{n+1} up to ``keep`` files, FILE -> FILE.1."""
        keep = self.rollover.keep
        if keep <= 1:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        for n in range(keep - 1, 1, -1):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}.{n - 1}").replace(f"{self.path}.{n}")
        with contextlib.suppress(FileNotFoundError):  # moved away already
            self.path.replace(f"{self.path}.1")


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
