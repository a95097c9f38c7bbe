"""``watch --metrics-port``'s parts, without a broker: the tracker's ``Totals`` (exact,
monotonic, the worker label bounded), the exposition (parsed back with prometheus_client's
own parser, every name documented in docs/metrics.md) and the server's life (``/metrics``, 404
elsewhere, nothing left once closed)."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from support.paths import REPO
from watch.synthetic import complete, feed, handled, perform, status

from aetherdiag.watch.metrics import PROCESS_METRICS, SPECS, MetricsServer, TotalsCollector
from aetherdiag.watch.tracker import Limits, Totals, Tracker

DOC = REPO / "docs" / "metrics.md"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def documented() -> set[str]:
    """The metric names docs/metrics.md gives a table row."""
    return set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), re.MULTILINE))


def exposition(totals: Totals) -> str:
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TotalsCollector(lambda: totals))
    return generate_latest(registry).decode()


def test_totals_count_what_the_report_judges() -> None:
    t = Tracker(Limits(stall_after=2))
    feed(t, *handled(0, "t1", "w1"), *handled(0.1, "t2", "w2"), status(0.5, "t2", "w1"),
         status(0.6, "t1", "w1"), perform(1.0, "t3"), perform(1.1, "t3"))
    t.tick(1.5)
    mid = t.totals(1.5)
    assert (mid.tasks, mid.answered, mid.processed, mid.in_flight) == (3, 2, 2, 1)
    assert dict(mid.counts) == {"multi": 1, "repeat": 1, "stalled": 0, "resent": 1,
                                "collision": 0}
    assert mid.since_last_task == pytest.approx(0.5) and mid.workers_seen == 2
    t.tick(3.5)  # t3 stalls
    end = t.totals(3.5)
    assert dict(end.counts)["stalled"] == 1 and end.in_flight == 0
    assert [(w.name, w.tasks, w.received, w.shared) for w in end.workers] == [
        ("h/w1", 2, 3, 1), ("h/w2", 1, 1, 1)]
    # the report's summary agrees
    s = t.summary(3.5)
    assert s.tasks == end.tasks and s.handled == end.answered and s.counts == dict(end.counts)


def test_seconds_since_the_last_task_counts_from_the_start_while_none_came() -> None:
    t = Tracker()
    assert t.totals(7.0).since_last_task == 7.0
    feed(t, perform(8.0, "t1"), perform(9.0, "t1"))  # a resend is no new task
    assert t.totals(10.0).since_last_task == 2.0


def test_the_worker_label_is_bounded_and_every_series_only_grows() -> None:
    t = Tracker()
    before: dict[str, int] = {}
    for n in range(12):  # workers w0..w11 in the order they first answer; three rounds
        for r in range(3):
            feed(t, *handled(n * 10 + r, f"t{n}-{r}", f"w{(n + r) % 12}"))
        now = {w.name: w.tasks for w in t.totals(n * 10 + 3, max_workers=4).workers}
        assert len(now) <= 5 and all(v >= before.get(k, 0) for k, v in now.items())
        before = now
    assert list(before) == ["h/w0", "h/w1", "h/w2", "h/w3", "other"]
    assert sum(before.values()) == 36 and before["other"] == 24


def test_the_exposition_parses_and_every_name_is_documented() -> None:
    t = Tracker()
    feed(t, *handled(0, "t1", 'w"1\n'), status(0.1, "t1", "w2"))  # label text is escaped
    text = exposition(t.totals(1.0))
    got = samples(text)
    assert got[("aetherdiag_watch_tasks_processed_by_several_workers_total", ())] == 1
    assert got[("aetherdiag_watch_worker_tasks_total", (("worker", 'h/w"1\n'),))] == 1
    assert got[("aetherdiag_watch_foreign_messages_total", (("reason", "retained"),))] == 0
    names = {name for name, _ in got}
    assert names <= documented(), names - documented()
    # and the doc has no row for a metric that does not exist
    assert {s.name for s in SPECS} | set(PROCESS_METRICS) == documented()
    for spec in SPECS:  # conventions: a prefix, counters _total, times in seconds
        assert spec.name.startswith("aetherdiag_watch_")
        assert spec.name.endswith("_total") == (spec.kind == "counter")


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer("127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_the_server_serves_the_latest_totals_at_metrics_only(server: MetricsServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", server.url)
    code, text = get(server.url)
    assert code == 200 and "aetherdiag_watch" not in text  # nothing published yet
    assert "process_resident_memory_bytes" in text
    t = Tracker()
    feed(t, *handled(0, "t1", "w1"))
    server.publish(t.totals(1.0))
    code, text = get(server.url)
    assert code == 200 and samples(text)[("aetherdiag_watch_tasks_total", ())] == 1
    code, text = get(server.url.removesuffix("metrics") + "other")
    assert code == 404 and "/metrics" in text


def test_publishing_from_another_thread_while_scraping(server: MetricsServer) -> None:
    """The watch thread publishes while the HTTP thread collects: every scrape is one
    consistent tick (tasks == answered == processed here)."""
    stop = threading.Event()

    def feed_forever() -> None:
        t = Tracker()
        n = 0
        while not stop.is_set():
            feed(t, *handled(n, f"t{n}", f"w{n % 3}"))
            server.publish(t.totals(n + 0.05))
            n += 1

    thread = threading.Thread(target=feed_forever)
    thread.start()
    try:
        seen = []
        for _ in range(20):
            got = samples(get(server.url)[1])
            tasks = got.get(("aetherdiag_watch_tasks_total", ()), 0)
            assert tasks == got.get(("aetherdiag_watch_tasks_processed_total", ()), 0)
            seen.append(tasks)
        assert seen == sorted(seen)
    finally:
        stop.set()
        thread.join()


def test_close_leaves_no_thread_and_no_socket() -> None:
    before = set(threading.enumerate())
    srv = MetricsServer("127.0.0.1", 0)
    url = srv.url
    assert get(url)[0] == 200
    srv.close()
    assert set(threading.enumerate()) <= before
    with pytest.raises(urllib.error.URLError):
        get(url)


def test_a_port_in_use_is_an_oserror(server: MetricsServer) -> None:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError):
        MetricsServer("127.0.0.1", port)


def test_complete_counts_processed_once() -> None:
    t = feed(Tracker(), perform(0, "t1"), complete(0.1, "t1", "w1"), complete(0.2, "t1", "w2"))
    assert t.totals(1).processed == 1
