"""The whole pipeline through a Kafka outage: the broker is killed -9 twice while the shop's sales counters
change and is started again, or frozen twice (SIGSTOP: its connections stay open and every request hangs) and
woken up. Capture, the applier and their supervisor ride it out: the ERP ends with the
shop's counters, each `delta` applied exactly once, and no dead letter.

The broker is this test's own (tests/support/servers.py), so the session's stays up for the other tests."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replicator.devstack import ConnectionSettings
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_until
from tests.support.servers import PrivateBroker
from tests.support.sides import drop_origins, make_sales_sides

pytestmark = pytest.mark.e2e

@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_the_pipeline_rides_out_a_broker_killed_or_frozen_twice_applying_every_delta_once(
    outage: str, devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    broker = PrivateBroker(tmp_path / "broker")
    try:
        products = 20
        sides = make_sales_sides(dataclasses.replace(devstack, kafka_bootstrap=broker.bootstrap), pg_database,
                                 mariadb_database, tmp_path, monkeypatch, topic_prefix.split("_")[-1], products)
        rng = random.Random(11)
        with running_pipeline(sides.config) as supervisor:
            writes = 0
            outages_over = threading.Event()

            def workload() -> None:
                # Sales go on through both outages and a second after the broker is back.
                nonlocal writes
                while not outages_over.is_set():
                    sides.shop_sql("UPDATE ps_sales SET sold = sold + %s WHERE id_product = %s",
                                   (rng.randint(1, 5), rng.randrange(products)))
                    writes += 1
                    time.sleep(0.002)

            writer = threading.Thread(target=workload)
            writer.start()
            writes_during_outages = []
            for n in range(2):
                time.sleep(rng.uniform(1.0, 2.0))
                (broker.kill if outage == "killed" else broker.freeze)()
                before = writes
                # The second freeze outlasts the 30 s the applier waits for Kafka to confirm a batch's audit
                # records before its commit: a batch caught in flight fails, and the applier restarts while Kafka
                # still hangs.
                time.sleep(35 if outage == "frozen" and n == 1 else rng.uniform(1.0, 3.0))
                (broker.start_again if outage == "killed" else broker.thaw)()
                writes_during_outages.append(writes - before)
            time.sleep(1)
            outages_over.set()
            writer.join()
            expected = dict(sides.shop_sql("SELECT id_product, sold FROM ps_sales"))

            def erp() -> dict[Any, Any]:
                return dict(sides.erp_sql("SELECT id, sold FROM product_sales"))

            wait_until(lambda: erp() == expected, "the ERP counters equal to the shop's", timeout=180,
                       supervisor=supervisor, describe=lambda: f"shop {expected}\nerp {erp()}")
            time.sleep(2)  # nothing more may arrive: a delta applied twice would show now
            assert erp() == expected
        assert broker.restarts + broker.thaws == 2 and all(n > 0 for n in writes_during_outages), writes_during_outages
        print(f"{writes} sales, {writes_during_outages} while Kafka was away")
        assert sides.dead_letters("erp") == []
        drop_origins(sides)
    finally:
        broker.close()
