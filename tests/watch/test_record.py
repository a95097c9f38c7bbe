"""--record writes JSON Lines; reading them back gives the same events; bad lines are
FILE:LINE errors."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from watch.synthetic import complete, perform, status

from aetherdiag.watch.events import Event
from aetherdiag.watch.record import SCHEMA, Ended, Header, Recorder, RecordError, read


def write(path: Path, events: list[Event], end: float | None = 5.0) -> None:
    stream = io.StringIO()
    rec = Recorder(stream, {"profile": "aethermagic", "filters": ["a/+", "b/+"], "target": "x"})
    for e in events:
        rec.write(e)
    if end is not None:
        rec.close(end, "duration")
    path.write_text(stream.getvalue())


def test_round_trip(tmp_path: Path) -> None:
    events = [perform(0.5, "t1"), status(0.6, "t1", "w1"), complete(0.7, "t1", "w1"),
              Event(at=1.0, topic="x", tid=None, action="other", parsed=False, digest="q")]
    path = tmp_path / "r.jsonl"
    write(path, events)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["schema"] == SCHEMA
    assert "payload" not in lines[1] and "data" not in json.loads(lines[1])
    back = list(read(path))
    assert back[0] == Header(profile="aethermagic", filters=("a/+", "b/+"), target="x")
    assert back[1:-1] == events and back[-1] == Ended(5.0, "duration")


def test_a_recording_cut_short_has_no_ended_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, [perform(0.5, "t1")], end=None)
    assert list(read(path))[1:] == [perform(0.5, "t1")]


def test_the_retain_flag_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    stale = replace(perform(0.1, "old"), retained=True)
    write(path, [stale, perform(0.5, "t1")])
    lines = path.read_text().splitlines()
    assert json.loads(lines[1])["retained"] is True and "retained" not in json.loads(lines[2])
    assert list(read(path))[1:3] == [stale, perform(0.5, "t1")]


@pytest.mark.parametrize(("lines", "where", "what"), [
    (["not json"], 1, "not a JSON object"),
    (['{"schema": "other/1"}'], 1, "not a watch recording"),
    ([f'{{"schema": "{SCHEMA}"}}', "[1]"], 2, "not a JSON object"),
    ([f'{{"schema": "{SCHEMA}"}}', '{"at": 1, "topic": "t", "action": "fly"}'], 2, "'action'"),
    ([f'{{"schema": "{SCHEMA}"}}', "", '{"at": "x", "topic": "t", "action": "perform"}'], 3,
     "'at' must be a number"),
    ([f'{{"schema": "{SCHEMA}"}}', '{"at": -1, "topic": "t", "action": "perform"}'], 2,
     "negative"),
    ([f'{{"schema": "{SCHEMA}"}}', '{"at": 1, "action": "perform"}'], 2, "'topic'"),
    ([f'{{"schema": "{SCHEMA}"}}', '{"at": 1, "topic": "t", "action": "perform", '
      '"client": 5}'], 2, "'client' must be a string"),
    ([f'{{"schema": "{SCHEMA}"}}', '{"ended": null}'], 2, "'ended'"),
    ([f'{{"schema": "{SCHEMA}"}}', '{"at": 1, "topic": "t", "action": "perform", '
      '"retained": 1}'], 2, "'retained' must be true or false"),
    ([f'{{"schema": "{SCHEMA}", "filters": "a/#"}}'], 1, "'filters'"),
    ([], 1, "empty recording"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, lines: list[str], where: int, what: str
                                      ) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(RecordError) as info:
        list(read(path))
    text = str(info.value)
    assert text.startswith(f"{path}:{where}: ") and what in text and "\n" not in text


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(f'{{"schema": "{SCHEMA}"}}\n'.encode() + b"\xff\xfe\n")
    with pytest.raises(RecordError, match=r":2: not UTF-8"):
        list(read(path))
