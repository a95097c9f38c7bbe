"""Messages -> events: both profiles, filters, unparsed payloads, pointer-named workers."""

from __future__ import annotations

import json

import pytest
from watch.amwire import BASE, body

from aetherdiag.watch.events import AetherMagicWatch, GenericWatch


def test_aethermagic_filters_follow_the_narrowing() -> None:
    assert AetherMagicWatch().filters() == ("production/+/+/+/+/+",)
    assert AetherMagicWatch("prod", job="engine").filters() == (
        "prod/engine/+/+/+/+", "prod/system/online/+/+/online")
    assert AetherMagicWatch("a/b", task="t", context="c").filters()[0] == "a/b/+/t/c/+/+"


def test_aethermagic_perform_status_complete() -> None:
    w = AetherMagicWatch()
    perform = w.event(1.0, f"{BASE}/t1/perform", body("perform", "caller", host="hc"))
    assert perform is not None
    assert (perform.tid, perform.action, perform.who, perform.parsed) == (
        "t1", "perform", "hc/caller", True)
    assert perform.key == ("engine/process-data/batch1", "t1")
    status = w.event(1.1, f"{BASE}/t1/status", body("status", "w1", progress=0))
    assert status is not None and status.progress == 0.0 and status.who == "h1/w1"
    complete = w.event(1.2, f"{BASE}/t1/complete", body("complete", "w1", progress=100))
    assert complete is not None and complete.action == "complete"


def test_aethermagic_online_and_idle_name_a_process_not_a_task() -> None:
    w = AetherMagicWatch()
    online = w.event(0.0, "production/system/online/hostA/abc/online", b"{}")
    assert online is not None and online.action == "online" and online.who == "hostA/abc"
    assert online.tid is None
    idle = w.event(0.0, f"{BASE}//idle", body("idle", "w1"))
    assert idle is not None and idle.action == "idle" and idle.tid is None


@pytest.mark.parametrize("payload", [b"not json", b"\xff\xfe", b"[1, 2]", b""])
def test_payloads_that_are_not_json_objects_are_unparsed_events(payload: bytes) -> None:
    event = AetherMagicWatch().event(0.0, f"{BASE}/t1/status", payload)
    assert event is not None and not event.parsed and event.who is None
    assert event.digest


def test_other_topics_under_the_union_are_unparsed_and_others_ignored() -> None:
    w = AetherMagicWatch()
    other = w.event(0.0, "production/a/b/c/d/unknown-action", b"{}")
    assert other is not None and other.action == "other" and not other.parsed
    assert w.event(0.0, "elsewhere/a/b/c/d/perform", b"{}") is None


def test_generic_task_topic_and_reply_with_a_pointer() -> None:
    w = GenericWatch("jobs/{task_id}", "results/{task_id}", "/meta/worker")
    assert w.filters() == ("jobs/+", "results/+")
    task = w.event(0.0, "jobs/42", b"anything at all")
    assert task is not None and task.action == "perform" and task.tid == "42" and task.parsed
    reply = w.event(0.1, "results/42", json.dumps({"meta": {"worker": "w-7"}}).encode())
    assert reply is not None and reply.action == "complete" and reply.who == "w-7"
    unnamed = w.event(0.1, "results/42", b'{"other": 1}')
    assert unnamed is not None and unnamed.who is None and unnamed.parsed
    broken = w.event(0.1, "results/42", b"{oops")
    assert broken is not None and not broken.parsed
    assert w.event(0.0, "jobs/42/extra", b"") is None


def test_generic_reply_defaults_to_host_and_client_and_plus_levels_match_anything() -> None:
    w = GenericWatch("site/+/jobs/{task_id}", "done/{task_id}")
    assert w.filters() == ("site/+/jobs/+", "done/+")
    task = w.event(0.0, "site/eu/jobs/x", b"")
    assert task is not None and task.tid == "x"
    reply = w.event(0.0, "done/x", body("complete", "c1", host="hh"))
    assert reply is not None and reply.who == "hh/c1"


@pytest.mark.parametrize(("args", "message"), [
    (("jobs/+",), "needs {task_id} exactly once"),
    (("jobs/#/{task_id}",), "no # wildcard"),
    (("jobs/x{task_id}",), "as a whole level"),
    (("jobs/{task_id}/{n}",), "unknown placeholder"),
    (("jobs/a+/{task_id}",), "+ must be a whole level"),
    (("",), "expected a topic"),
    (("$SYS/{task_id}",), "broker's own"),
    (("jobs/{task_id}", "jobs/{task_id}"), "the same as --task-topic"),
    (("jobs/{task_id}", "res/+/{task_id}"), "no + or # wildcards"),
    (("jobs/{task_id}", None, "/w"), "--worker-field needs --reply-topic"),
    (("jobs/{task_id}", "r/{task_id}", "w"), "--worker-field: 'w' is not a JSON pointer"),
])
def test_bad_templates_and_pointers_are_one_line_errors(args: tuple[str, ...], message: str
                                                       ) -> None:
    with pytest.raises(ValueError, match=r".*") as info:
        GenericWatch(*args)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"job": "a/b"}, "--job"), ({"context": ""}, "--context"), ({"union": "$SYS"}, "--union"),
    ({"union": "a/+"}, "--union")])
def test_bad_aethermagic_levels(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AetherMagicWatch(**kwargs)
