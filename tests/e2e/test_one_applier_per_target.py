"""Two appliers started for the same target (a second `replicator run` by mistake, or a standby): only one
applies at a time, and every `delta` is applied once."""

from __future__ import annotations

import functools
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytest

from replicator.config import load_config
from replicator.devstack import ConnectionSettings
from replicator.pipeline.apply_runner import build_apply
from replicator.pipeline.supervisor import Supervisor
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_until
from tests.support.sides import drop_origins, make_sales_sides

pytestmark = pytest.mark.e2e


def test_a_second_applier_of_the_same_target_waits_and_every_delta_is_applied_once(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="replicator.pipeline.supervisor")
    products = 10
    sides = make_sales_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                             topic_prefix.split("_")[-1], products)
    second = Supervisor(max_backoff_s=1.0)
    second.add(f"apply:{sides.erp_target} (second)",
               functools.partial(build_apply, load_config(sides.config), sides.erp_target))
    rng = random.Random(5)
    with running_pipeline(sides.config) as supervisor:
        second.start()
        try:
            for _ in range(400):
                sides.shop_sql("UPDATE ps_sales SET sold = sold + %s WHERE id_product = %s",
                               (rng.randint(1, 5), rng.randrange(products)))
                time.sleep(0.002)
            expected = dict(sides.shop_sql("SELECT id_product, sold FROM ps_sales"))

            def erp() -> dict[Any, Any]:
                return dict(sides.erp_sql("SELECT id, sold FROM product_sales"))

            wait_until(lambda: erp() == expected, "the ERP counters equal to the shop's", timeout=120,
                       supervisor=supervisor, describe=lambda: f"shop {expected}\nerp {erp()}")
            time.sleep(2)  # a delta applied twice would show now
            assert erp() == expected
        finally:
            second.stop()
            problems = second.wait(60)
    assert problems == []
    # Whichever of the two connected second was refused the writer lock, and waited (neither failed).
    refused = [r for r in caplog.records if "another session writes as" in str(getattr(r, "error", ""))]
    assert refused, [r.getMessage() for r in caplog.records]
    assert sides.dead_letters("erp") == []
    drop_origins(sides)
