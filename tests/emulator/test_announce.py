"""The JSON lines ``aetherdiag emulator serve --machine`` prints, and what reads them."""

from __future__ import annotations

import pytest

from aetherdiag.emulator import announce
from aetherdiag.emulator.session import Stats


def test_listening_is_one_json_line_and_reads_back() -> None:
    event = announce.Listening(host="::1", port=40023)
    line = announce.dump(event)
    assert line == '{"event": "listening", "host": "::1", "port": 40023}'
    assert announce.load(line + "\n") == event


def test_stopped_carries_every_counter() -> None:
    stats = Stats(messages_in=3, deliveries=2)
    stats.dropped["queue_full"] += 1
    line = announce.dump(announce.Stopped(stats=stats.as_dict()))
    assert "\n" not in line
    event = announce.load(line)
    assert isinstance(event, announce.Stopped)
    assert event.stats == stats.as_dict()
    assert event.stats["dropped"] == {"queue_full": 1} and event.stats["dropped_total"] == 1


@pytest.mark.parametrize("line", [
    "aetherdiag emulator listening on mqtt://127.0.0.1:1883 (strategy round_robin, faults none)",
    "", "[]", '"listening"', '{"event": "started"}',
    '{"event": "listening", "host": "127.0.0.1"}',
    '{"event": "listening", "host": "127.0.0.1", "port": "1883"}',
    '{"event": "listening", "host": "127.0.0.1", "port": true}',
    '{"event": "stopped", "stats": 4}',
])
def test_anything_else_is_not_an_event(line: str) -> None:
    assert announce.load(line) is None


def test_backlog_query_and_answer_round_trip() -> None:
    query = announce.BacklogQuery(id=7)
    assert announce.load_command(announce.dump_command(query)) == query
    answer = announce.Backlog(id=7, messages=1200)
    assert announce.load(announce.dump(answer)) == answer
    assert announce.load_command('{"command": "backlog", "id": "7"}') is None
    assert announce.load('{"event": "backlog", "id": 7, "messages": null}') is None
