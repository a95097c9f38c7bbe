"""The wire formats (pure): JSON pointers, where workers answer and who they are, AetherMagic's
messages and announcements."""

from __future__ import annotations

import json

import pytest

from aetherdiag.wire import aethermagic
from aetherdiag.wire.layout import aethermagic as am_layout
from aetherdiag.wire.layout import generic
from aetherdiag.wire.pointer import MISSING, parse_pointer, resolve, text_at
from aetherdiag.wire.profile import (
    announce_filters,
    announcement,
    parse_reply_topic,
    replies_for,
)

AM = am_layout(union="production", job="engine", task="process-data", context="batch1",
               action="perform", workgroup="workers")


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(("pointer", "doc", "want"), [
    ("/worker", {"worker": "w1"}, "w1"),
    ("/meta/host", {"meta": {"host": "h"}}, "h"),
    ("/a~1b", {"a/b": "slash"}, "slash"),
    ("/m~0n", {"m~n": "tilde"}, "tilde"),
    ("/list/1", {"list": ["x", "y"]}, "y"),
    ("/n", {"n": 7}, "7"),
    ("/flag", {"flag": True}, "true"),
])
def test_pointers_resolve_as_rfc_6901_says(pointer: str, doc: object, want: str) -> None:
    assert text_at(doc, parse_pointer(pointer)) == want


@pytest.mark.parametrize(("pointer", "doc"), [
    ("/missing", {"worker": 1}), ("/list/01", {"list": [1, 2]}), ("/list/5", {"list": [1]}),
    ("/a/b", {"a": "text"}), ("/obj", {"obj": {"x": 1}}), ("/null", {"null": None}),
])
def test_pointers_to_nothing_or_to_no_text_give_none(pointer: str, doc: object) -> None:
    assert text_at(doc, parse_pointer(pointer)) is None


def test_the_empty_pointer_is_the_whole_document() -> None:
    assert resolve({"a": 1}, parse_pointer("")) == {"a": 1}
    assert resolve({"a": 1}, parse_pointer("/b")) is MISSING


@pytest.mark.parametrize("bad", ["worker", "/a~2", "/~"])
def test_bad_pointers_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="not a JSON pointer"):
        parse_pointer(bad)


def test_aethermagic_replies_name_host_and_client() -> None:
    replies = replies_for("aethermagic", AM)
    assert replies.filters() == ("production/engine/process-data/batch1/+/status",
                                 "production/engine/process-data/batch1/+/complete")
    r = replies.parse("production/engine/process-data/batch1/t1/complete",
                      body(host="h", client="c"), 1.0)
    assert r is not None and (r.task_id, r.action, r.identity) == ("t1", "complete", "h/c")
    assert replies.parse("production/engine/process-data/batch1/t1/perform", b"{}", 1.0) is None
    assert replies.parse("production/engine/other/batch1/t1/status", b"{}", 1.0) is None


def test_a_generic_reply_template_and_worker_field() -> None:
    layout = generic("jobs/{task_id}", None, "pool")
    replies = replies_for("generic", layout, "results/{task_id}/done", "/worker")
    assert replies.filters() == ("results/+/done",)
    r = replies.parse("results/task-3/done", body(worker="w2"), 2.0)
    assert r is not None and (r.task_id, r.action, r.identity) == ("task-3", "complete", "w2")
    named = replies.parse("results/task-3/done", body(other=1), 2.0)
    assert named is not None and named.identity == "?/worker"  # the field is missing
    assert replies.parse("results/task-3", b"{}", 2.0) is None
    assert replies.parse("results/task-3/done/x", b"{}", 2.0) is None
    # without a field, the sender the broker saw names it; with none known, nobody
    bare = replies_for("generic", layout, "results/{task_id}")
    assert not bare.names_worker
    r2 = bare.parse("results/t9", b"not json", 3.0, "worker-1")
    assert r2 is not None and r2.identity == "worker-1"
    r3 = bare.parse("results/t9", b"not json", 3.0)
    assert r3 is not None and r3.identity == "?"
    assert replies_for("generic", layout).filters() == ()


@pytest.mark.parametrize(("template", "needle"), [
    ("results/+", "wildcards"), ("results/#", "wildcards"), ("results", "exactly once"),
    ("r/{task_id}/{task_id}", "exactly once"), ("r/x{task_id}", "exactly once"),
    ("r/{task_id}/{worker}", "unknown placeholder"), ("", "expected a topic"),
])
def test_bad_reply_templates(template: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("{", r"\{").replace("}", r"\}")):
        parse_reply_topic(template)


def test_reply_options_that_do_not_fit_the_profile() -> None:
    with pytest.raises(ValueError, match="--reply-topic is for --profile generic"):
        replies_for("aethermagic", AM, "r/{task_id}")
    with pytest.raises(ValueError, match="--worker-field needs --reply-topic"):
        replies_for("generic", generic("jobs/{task_id}", None, "g"), None, "/w")


def test_aethermagic_messages_of_every_action() -> None:
    online = aethermagic.parse("production/system/online/vm/abc/online", body(host="vm"))
    assert online is not None and online.is_online and online.who == "vm/abc"
    status = aethermagic.parse("production/engine/t/c/tid1/status",
                               body(host="h", client="c", progress=0, status="progress"))
    assert status is not None and status.progress == 0.0 and status.status == "progress"
    assert status.tid == "tid1" and status.who == "h/c"
    odd = aethermagic.parse("a/b/engine/t/c/tid1/perform", b"\xff not json")
    assert odd is not None and odd.body is None and odd.union == "a/b" and odd.who == "?/?"
    assert aethermagic.parse("production/engine/t/c/tid1/unknown", b"{}") is None
    assert aethermagic.parse("engine/t/c/tid1/status", b"{}") is None  # no union level
    assert aethermagic.parse("other/engine/t/c/tid1/status", b"{}", union="production") is None
    assert aethermagic.digest(b"x") == aethermagic.digest(b"x") != aethermagic.digest(b"y")


def test_aethermagic_announcements() -> None:
    assert announce_filters("aethermagic", AM) == (
        "production/engine/process-data/batch1/+/idle", "production/system/online/+/+/online")
    assert announce_filters("generic", AM) == ()
    idle = announcement("aethermagic", AM, "production/engine/process-data/batch1/x1/idle",
                        body(host="h", client="c"))
    assert idle == ("idle", "h/c")
    assert announcement("aethermagic", AM, "production/engine/process-data/other/x1/idle",
                        body(host="h", client="c")) is None  # another context's worker
    assert announcement("aethermagic", AM, "production/system/online/h/c/online",
                        b"{}") == ("online", "h/c")
    assert announcement("aethermagic", AM, "production/engine/process-data/batch1/x1/status",
                        b"{}") is None
