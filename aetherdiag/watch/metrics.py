"""``watch --metrics-port``: the tracker's running counts in the Prometheus text format at
``/metrics`` (docs/metrics.md lists every metric), written by ``prometheus_client``.

How this works: the tracker is fed on the watch thread and never touched from another one.
Every tick the watch thread asks it for its ``Totals`` (a frozen value, O(workers)) and hands
them to ``MetricsServer.publish``, which swaps one reference under a lock. A scrape runs on
the server's thread: the registry (a private ``CollectorRegistry``, never the global default
one) asks ``TotalsCollector`` for the latest ``Totals`` and turns them into metric families
(``families``, pure), beside ``prometheus_client``'s process metrics (``process_*``: memory,
CPU, open files). The server is the standard library's single-threaded WSGI server on one
thread: one request at a time, each bounded by a socket timeout, no log lines; ``close()``
stops it, joins its thread and closes its socket, so nothing is left when the watch ends.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .values import Kind, Totals

PATH = "/metrics"
REQUEST_TIMEOUT = 5.0  # seconds a client gets for each read and write of its request


@dataclass(frozen=True)
class Spec:
    """One metric as exposed: its name (counters end in ``_total``), type, labels, help."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...] = ()


def _counter(name: str, text: str, *labels: str) -> Spec:
    return Spec(f"aetherdiag_watch_{name}_total", "counter", text, labels)


def _gauge(name: str, text: str) -> Spec:
    return Spec(f"aetherdiag_watch_{name}", "gauge", text)


FINDINGS: dict[Kind, Spec] = {
    "multi": _counter("tasks_processed_by_several_workers",
                      "Tasks answered by two or more distinct workers (exit 1)."),
    "repeat": _counter("tasks_received_twice",
                       "Tasks one worker received more than once (exit 1)."),
    "resent": _counter("tasks_resent", "Tasks whose identical perform was sent again."),
    "stalled": _counter("tasks_stalled",
                        "Tasks with no answer within --stall-after of their perform (exit 4)."),
    "collision": _counter("tid_collisions",
                          "Task ids performed again with another payload or caller (exit 1)."),
}
TASKS = _counter("tasks", "Distinct tasks whose perform was seen.")
ANSWERED = _counter("tasks_answered", "Tasks a worker answered (a status or a complete).")
PROCESSED = _counter("tasks_processed", "Tasks completed by at least one worker.")
FOREIGN = _counter("foreign_messages", "Messages on the watched filters that are no live "
                   "task message: unparsed (not the profile's format) or retained (stale).",
                   "reason")
FORGOTTEN = _counter("tasks_forgotten", "Finished tasks that left the live table after "
                     "--forget-after (still in the finished-task memory).")
EVICTED = _counter("tasks_evicted", "Unfinished tasks dropped because the live table was full.")
DROPPED = _counter("finished_tasks_dropped",
                   "Finished-task memory entries dropped beyond --max-finished.")
WORKER_TASKS = _counter("worker_tasks", "Tasks this worker answered.", "worker")
WORKER_DELIVERIES = _counter("worker_deliveries",
                             "Copies of tasks this worker received, repeats included.", "worker")
WORKER_SHARED = _counter("worker_shared_tasks",
                         "Tasks of this worker that another worker answered too.", "worker")
IN_FLIGHT = _gauge("tasks_in_flight", "Tasks seen and not finished (neither completed nor "
                   "stalled).")
WORKERS_SEEN = _gauge("workers_seen", "Distinct workers that answered a task.")
SINCE_LAST = _gauge("seconds_since_last_task", "Seconds since the last new task's perform "
                    "(since the watch started while none came).")
ELAPSED = _gauge("elapsed_seconds", "Seconds since the watch started.")
TRACKED = _gauge("tasks_tracked", "Tasks in the live table (at most 100,000).")
REMEMBERED = _gauge("finished_tasks_remembered",
                    "Entries in the finished-task memory (at most --max-finished).")

SPECS: tuple[Spec, ...] = (
    TASKS, ANSWERED, PROCESSED, *FINDINGS.values(), FOREIGN, FORGOTTEN, EVICTED, DROPPED,
    WORKER_TASKS, WORKER_DELIVERIES, WORKER_SHARED,
    IN_FLIGHT, WORKERS_SEEN, SINCE_LAST, ELAPSED, TRACKED, REMEMBERED)
# what prometheus_client's ProcessCollector adds (Linux: read from /proc)
PROCESS_METRICS = ("process_virtual_memory_bytes", "process_resident_memory_bytes",
                   "process_start_time_seconds", "process_cpu_seconds_total",
                   "process_open_fds", "process_max_fds")


def _family(spec: Spec, value: float | None = None) -> CounterMetricFamily | GaugeMetricFamily:
    labels = list(spec.labels) if spec.labels else None
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, value=value, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, value=value, labels=labels)


def families(totals: Totals) -> list[Metric]:
    """The metric families of one ``Totals`` (pure)."""
    counts = dict(totals.counts)
    out: list[Metric] = [_family(TASKS, totals.tasks), _family(ANSWERED, totals.answered),
                         _family(PROCESSED, totals.processed)]
    out += [_family(spec, counts.get(kind, 0)) for kind, spec in FINDINGS.items()]
    foreign = _family(FOREIGN)
    foreign.add_metric(["unparsed"], totals.unparsed)
    foreign.add_metric(["retained"], totals.retained)
    out += [foreign, _family(FORGOTTEN, totals.forgotten), _family(EVICTED, totals.evicted),
            _family(DROPPED, totals.finished_dropped)]
    for spec, field in ((WORKER_TASKS, "tasks"), (WORKER_DELIVERIES, "received"),
                        (WORKER_SHARED, "shared")):
        family = _family(spec)
        for worker in totals.workers:
            family.add_metric([worker.name], getattr(worker, field))
        out.append(family)
    out += [_family(IN_FLIGHT, totals.in_flight), _family(WORKERS_SEEN, totals.workers_seen),
            _family(SINCE_LAST, totals.since_last_task), _family(ELAPSED, totals.elapsed),
            _family(TRACKED, totals.tracked), _family(REMEMBERED, totals.remembered)]
    return out


class TotalsCollector(Collector):
    """The latest published ``Totals`` as metric families (nothing before the first)."""

    def __init__(self, latest: Callable[[], Totals | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterable[Metric]:
        totals = self._latest()
        return [] if totals is None else families(totals)


def _routes(registry: CollectorRegistry) -> WSGIApplication:
    """``/metrics`` (prometheus_client's own WSGI app: content negotiation, gzip); 404
    elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"aetherdiag watch: the metrics are at {PATH}\n".encode()]

    return app


class _Server(WSGIServer):
    def server_bind(self) -> None:
        # HTTPServer's own would look the host up in DNS (getfqdn): not needed, maybe slow
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or timed out is no concern of the watch's."""


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT  # one slow client cannot hold the (single) server thread

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class MetricsServer:
    """``/metrics`` on ``host:port`` (0: a free port) from now until ``close()``. ``OSError``
    when it cannot listen there."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._totals: Totals | None = None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TotalsCollector(self.latest))
        ProcessCollector(registry=registry)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        self._server = make_server(host, port, _routes(registry),
                                   server_class=_Server6 if family == socket.AF_INET6
                                   else _Server, handler_class=_Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="aetherdiag-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_name, self._server.server_port
        return f"http://{f'[{host}]' if ':' in host else host}:{port}{PATH}"

    def publish(self, totals: Totals) -> None:
        """Called by the watch thread (every tick): what the next scrape shows."""
        with self._lock:
            self._totals = totals

    def latest(self) -> Totals | None:
        with self._lock:
            return self._totals

    def close(self) -> None:
        """Stop serving (a request under way finishes first), join the thread, close the
        socket."""
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

