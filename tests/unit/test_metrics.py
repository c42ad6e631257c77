"""The metrics and health endpoints of a supervised process, over real HTTP: counters are totals over every
attempt of a worker (a runner's own counts start at zero with each attempt), and /health says which worker is
not running and why."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from replicator.errors import FatalError, RetriableError
from replicator.pipeline.metrics import MetricsServer
from replicator.pipeline.supervisor import Supervisor
from tests.support.http import http_get


@dataclass
class Counts:
    transactions: int = 0
    events: int = 0
    skipped_own_transactions: int = 0
    acknowledged: object = None  # not a count: not a metric
    latency_s: float | None = None  # an applier's, exported while it runs


class Counting:
    """A capture-like worker: each attempt counts `events` events, then raises the next scripted error or, when
    there is none left, runs until stopped."""

    def __init__(self, events: int, errors: list[BaseException], running: threading.Event) -> None:
        self.stats = Counts()
        self._events, self._errors, self._running = events, errors, running
        self._stop = threading.Event()

    def run(self) -> Counts:
        self.stats.events += self._events
        self.stats.transactions += 1
        if self._errors:
            raise self._errors.pop(0)
        self._running.set()
        self._stop.wait(10)
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None: ...


@pytest.fixture
def served() -> Iterator[tuple[Supervisor, MetricsServer, threading.Event]]:
    supervisor = Supervisor(max_backoff_s=0.01)
    running = threading.Event()
    errors: list[BaseException] = [RetriableError("source shop: lost"), RetriableError("source shop: lost again")]
    supervisor.add("capture:shop", lambda: Counting(5, errors, running))
    server = MetricsServer(supervisor, "127.0.0.1", 0).start()
    try:
        yield supervisor, server, running
    finally:
        supervisor.stop()
        supervisor.wait(10)
        server.close()


def _samples(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(server.port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_counters_add_up_every_attempt_and_the_running_worker_is_up(
    served: tuple[Supervisor, MetricsServer, threading.Event],
) -> None:
    supervisor, server, running = served
    assert http_get(server.port, "/health")[0] == 503  # may still be starting: not yet
    supervisor.start()
    assert running.wait(10)
    samples = _samples(server)
    worker = (("worker", "capture:shop"),)
    source = (("source", "shop"),)
    assert samples[("replicator_worker_up", worker)] == 1.0
    assert samples[("replicator_worker_restarts_total", worker)] == 2.0
    assert samples[("replicator_capture_events_total", source)] == 15.0  # 5 in each of three attempts
    assert samples[("replicator_capture_transactions_total", source)] == 3.0
    assert samples[("replicator_capture_own_transactions_skipped_total", source)] == 0.0
    assert not any(name.startswith("replicator_capture_acknowledged") for name, _ in samples)
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)
    status, body = http_get(server.port, "/health")
    assert status == 200
    assert orjson.loads(body) == {"workers": {"capture:shop": {
        "state": "running", "restarts": 2, "last_error": "RetriableError: source shop: lost again"}}}
    assert http_get(server.port, "/nothing")[0] == 404
    supervisor.stop()
    assert supervisor.wait(10) == []
    # Stopped: the counts stay, the worker is not up.
    samples = _samples(server)
    assert samples[("replicator_capture_events_total", source)] == 15.0
    assert samples[("replicator_worker_up", worker)] == 0.0


def test_a_failed_worker_makes_the_process_unhealthy_and_says_why() -> None:
    supervisor = Supervisor(max_backoff_s=0.01)
    supervisor.add("apply:erp-writer", lambda: Counting(1, [FatalError("slot replicator_erp was dropped")],
                                                        threading.Event()))
    server = MetricsServer(supervisor, "127.0.0.1", 0).start()
    try:
        supervisor.start()
        assert supervisor.wait(10) == ["apply:erp-writer: slot replicator_erp was dropped"]
        status, body = http_get(server.port, "/health")
        assert status == 503
        assert orjson.loads(body)["workers"]["apply:erp-writer"]["state"] == "failed"
        samples = _samples(server)
        assert samples[("replicator_worker_up", (("worker", "apply:erp-writer"),))] == 0.0
        assert samples[("replicator_apply_events_total", (("target", "erp-writer"),))] == 1.0
    finally:
        server.close()


def test_a_metrics_port_already_taken_stops_start_up_naming_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from replicator.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(f"kafka: {{bootstrap_servers: '127.0.0.1:9'}}\nmetrics: {{port: {port}}}\n")
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            result = CliRunner().invoke(app, ["run", "--config", str(config)])
        finally:  # `run` sets the process's logging up for itself
            root.handlers[:], root.level = handlers, level
    assert result.exit_code == 1
    assert f"metrics: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output


def test_an_appliers_latency_is_exported_while_it_runs() -> None:
    supervisor = Supervisor(max_backoff_s=0.01)
    running = threading.Event()
    applier = Counting(3, [], running)
    applier.stats.latency_s = 0.25
    supervisor.add("apply:erp-writer", lambda: applier)
    server = MetricsServer(supervisor, "127.0.0.1", 0).start()
    try:
        supervisor.start()
        assert running.wait(10)
        assert _samples(server)[("replicator_apply_latency_seconds", (("target", "erp-writer"),))] == 0.25
        supervisor.stop()
        assert supervisor.wait(10) == []
        # Stopped: no attempt, no latency to report (a stale one would look current).
        assert not any(name == "replicator_apply_latency_seconds" for name, _ in _samples(server))
    finally:
        server.close()
