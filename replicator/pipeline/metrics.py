"""Prometheus metrics and a health endpoint for a supervised process (`replicator run` with `metrics` in its
config), served over HTTP from a thread of their own.

The metrics are read from the workers when scraped: the hot loops count as they always did (their runners'
`stats`), and nothing is added to them. A runner's counts start at zero with each attempt; the supervisor keeps
the counts of the attempts that ended, so the counters here are totals over the process's life.

- `GET /metrics`: Prometheus text format.
- `GET /health`: 200 when every worker is running, 503 while one is starting, retrying after an error, or has
  failed; the JSON body gives each worker's state, restarts and last error (errors name hosts and databases,
  never secrets).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from replicator.pipeline.supervisor import Supervisor, Worker

# (metric name, help, the runner's stats field) per kind of worker; every one a counter.
_COUNTERS = {
    "capture": [
        ("replicator_capture_transactions", "Source transactions read (published or skipped)", "transactions"),
        ("replicator_capture_events", "Row change events published to Kafka", "events"),
        ("replicator_capture_own_transactions_skipped",
         "Transactions written by the replicator itself, not published (loop prevention)", "skipped_own_transactions"),
    ],
    "apply": [
        ("replicator_apply_batches", "Target transactions committed", "batches"),
        ("replicator_apply_transactions", "Source transactions applied", "units"),
        ("replicator_apply_events", "Change events applied", "events"),
        ("replicator_apply_dead_letters", "Source transactions sent to the dead-letter queue", "dead_letters"),
    ],
}


def _kind_and_name(worker: Worker) -> tuple[str, str]:
    """'capture:shop' -> ('capture', 'shop'); the supervisor's workers are named so (cli.py)."""
    kind, _, name = worker.name.partition(":")
    return kind, name


class PipelineCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("replicator_worker_up", "1 while the worker runs, 0 while it starts, retries or "
                               "has failed", labels=["worker"])
        restarts = CounterMetricFamily("replicator_worker_restarts", "Restarts after a retriable error",
                                       labels=["worker"])
        latency = GaugeMetricFamily("replicator_apply_latency_seconds", "Source commit to target commit of the "
                                    "newest source transaction of the last batch applied", labels=["target"])
        families = {
            kind: [(CounterMetricFamily(name, text, labels=["source" if kind == "capture" else "target"]), field)
                   for name, text, field in counters]
            for kind, counters in _COUNTERS.items()
        }
        for worker in self._supervisor.workers:
            up.add_metric([worker.name], 1.0 if worker.state == "running" else 0.0)
            restarts.add_metric([worker.name], float(worker.restarts))
            kind, name = _kind_and_name(worker)
            totals = worker.totals()
            for family, field in families.get(kind, []):
                family.add_metric([name], float(totals.get(field, 0)))
            with worker.lock:
                stats = getattr(worker.attempt, "stats", None)
            latency_s = getattr(stats, "latency_s", None)
            if kind == "apply" and isinstance(latency_s, float):
                latency.add_metric([name], latency_s)
        yield up
        yield restarts
        yield latency
        for family_list in families.values():
            for family, _ in family_list:
                yield family


def health(supervisor: Supervisor) -> tuple[bool, dict[str, Any]]:
    """Whether every worker runs, and each one's state."""
    workers = {w.name: {"state": w.state, "restarts": w.restarts, "last_error": w.last_error}
               for w in supervisor.workers}
    return all(w["state"] == "running" for w in workers.values()), {"workers": workers}


class MetricsServer:
    """The HTTP endpoints, on `host`:`port` (port 0: any free one, see `port`), until `close`."""

    def __init__(self, supervisor: Supervisor, host: str, port: int) -> None:
        registry = CollectorRegistry()
        registry.register(PipelineCollector(supervisor))
        registry.register(ProcessCollector(registry=None))  # CPU, memory, open files of the process

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls it by this name
                if self.path == "/metrics":
                    self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif self.path == "/health":
                    healthy, body = health(supervisor)
                    self._send(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, "application/json",
                               orjson.dumps(body))
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"/metrics or /health\n")

            def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not worth a log line

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must have started
            self._server.shutdown()
        self._server.server_close()
