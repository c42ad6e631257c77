"""`replicator run` with `metrics` in its config: /health turns 200 once every worker runs, and /metrics counts
what the pipeline did: the shop's sales updates captured and applied in the ERP, no restart, no dead letter."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from replicator.devstack import ConnectionSettings
from replicator.devstack.process import any_free_port
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.http import http_get
from tests.support.pipeline import wait_for_snapshots, wait_until
from tests.support.processes import start_replicator_run
from tests.support.sides import drop_origins, make_sales_sides

pytestmark = pytest.mark.e2e

UPDATES = 200


def test_a_running_pipeline_reports_its_health_and_counts_what_it_captured_and_applied(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    suffix = topic_prefix.split("_")[-1]
    sides = make_sales_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch, suffix, 10)
    port = any_free_port()
    whole = yaml.safe_load(sides.config.read_text())
    whole["metrics"] = {"port": port}
    sides.config.write_text(yaml.safe_dump(whole))
    log_path = tmp_path / "run.log"
    process = start_replicator_run(sides.config, log_path)
    try:
        wait_until(lambda: http_get(port, "/health")[0] == 200, "every worker running", timeout=60,
                   describe=lambda: str(http_get(port, "/health")) + log_path.read_text(errors="replace")[-2000:])
        wait_for_snapshots(sides.config)
        for i in range(UPDATES):
            sides.shop_sql("UPDATE ps_sales SET sold = sold + 1 WHERE id_product = %s", (i % 10,))

        def applied() -> bool:
            return sides.erp_sql("SELECT coalesce(sum(sold), 0) FROM product_sales")[0][0] == UPDATES

        wait_until(applied, "the sales applied in the ERP", timeout=60)
        time.sleep(0.5)
        status, body = http_get(port, "/metrics")
        assert status == 200
        health = http_get(port, "/health")
        samples = {(s.name, tuple(s.labels.values())): s.value
                   for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0, log_path.read_text(errors="replace")[-4000:]
    source, target = f"shop{suffix}", f"erp{suffix}-writer"
    # Each update is one transaction of one event; the snapshot's rows come on top.
    assert samples[("replicator_capture_events_total", (source,))] >= UPDATES
    assert samples[("replicator_capture_transactions_total", (source,))] >= UPDATES
    assert samples[("replicator_apply_events_total", (target,))] >= UPDATES
    assert samples[("replicator_apply_transactions_total", (target,))] >= UPDATES
    assert samples[("replicator_apply_batches_total", (target,))] >= 1
    assert samples[("replicator_apply_dead_letters_total", (target,))] == 0
    assert 0 <= samples[("replicator_apply_latency_seconds", (target,))] < 30
    for worker in (f"capture:{source}", f"apply:{target}"):
        assert samples[("replicator_worker_up", (worker,))] == 1
        # Not even at start: an applier waits for topics its capture is creating rather than restart.
        assert samples[("replicator_worker_restarts_total", (worker,))] == 0, health
    drop_origins(sides)
