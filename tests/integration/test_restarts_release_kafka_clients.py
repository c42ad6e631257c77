"""A worker restarted again and again (its database does not answer: an outage, a wrong address) holds only its
current attempt's Kafka clients. Each attempt's producer, audit producer and consumer are closed when the attempt
ends, not left to the garbage collector: a producer is in a reference cycle through its delivery callback, which
only a full collection frees, and a busy process runs those rarely. Until then each one keeps its librdkafka
threads and broker connections, a handful per restart, every few seconds, for as long as the outage lasts.

The garbage collector is off during the test, as it in effect is between two full collections."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from replicator.config import load_config
from replicator.devstack import ConnectionSettings
from replicator.devstack.process import any_free_port
from replicator.pipeline.apply_runner import build_apply
from replicator.pipeline.capture_runner import build_capture
from replicator.pipeline.supervisor import Supervisor

pytestmark = pytest.mark.integration

RESTARTS = 6


def _threads() -> int:
    """Threads of this process, librdkafka's included (Python's threading module knows only its own)."""
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_worker_restarted_over_and_over_keeps_no_kafka_client_of_its_earlier_attempts(
    devstack: ConnectionSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
    collector_off: None,
) -> None:
    suffix = topic_prefix.split("_")[-1]
    monkeypatch.setenv("NOBODY_DSN", f"postgresql://postgres@127.0.0.1:{any_free_port()}/erp")
    (tmp_path / "mappings.yaml").write_text(yaml.safe_dump({
        "systems": {
            "shop": {"kind": "mariadb", "priority": 2, "source_name": f"shop{suffix}", "namespace": "shop"},
            "erp": {"kind": "postgresql", "priority": 1, "source_name": f"erp{suffix}", "namespace": "public"},
        },
        "rules": [{"name": "sales", "source": {"system": "shop", "table": "ps_sales", "key": ["id_product"]},
                   "target": {"system": "erp", "table": "product_sales"}, "key": {"id": "id_product"},
                   "on_delete": "ignore", "fields": {"sold": {"from": "sold", "policy": "delta"}}}],
    }))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": devstack.kafka_bootstrap}, "mappings": "mappings.yaml",
        "sources": [{"name": f"erp{suffix}", "kind": "postgresql", "connection": {"dsn": {"env": "NOBODY_DSN"}},
                     "tables": ["public.product_sales"]}],
        "targets": [{"name": f"erp{suffix}-writer", "kind": "postgresql", "system": "erp", "apply_from": ["shop"],
                     "connection": {"dsn": {"env": "NOBODY_DSN"}}}],
    }))
    config = load_config(tmp_path / "config.yaml")
    before = _threads()
    supervisor = Supervisor(max_backoff_s=0.05)
    # The capture fails while it is built (its producer made, its source's tables not readable); the applier
    # fails when it runs (its audit producer made, its target not connectable).
    supervisor.add("capture", lambda: build_capture(config, f"erp{suffix}"))
    supervisor.add("apply", lambda: build_apply(config, f"erp{suffix}-writer"))
    supervisor.start()
    try:
        deadline = time.monotonic() + 60
        while min(w.restarts for w in supervisor.workers) < RESTARTS:
            assert time.monotonic() < deadline, [(w.name, w.restarts, w.last_error) for w in supervisor.workers]
            time.sleep(0.05)
    finally:
        supervisor.stop()
        assert supervisor.wait(30) == []
    errors = {w.name: w.last_error or "" for w in supervisor.workers}
    assert "cannot connect" in errors["capture"] and "cannot connect" in errors["apply"], errors
    # Every attempt's clients are gone with it; a thread may take a moment to leave the process's list.
    deadline = time.monotonic() + 10
    while _threads() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
    assert _threads() <= before, (before, names)
