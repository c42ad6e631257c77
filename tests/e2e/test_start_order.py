"""An applier started before the capture of its source (the two start together in one `replicator run`, or the
capture's process comes up later) waits for the capture's topics instead of restarting, then applies what the
capture publishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_until
from tests.support.sales_and_prices import split_config
from tests.support.sides import drop_origins, make_sales_sides

pytestmark = pytest.mark.e2e


def test_an_applier_started_before_its_sources_capture_waits_for_its_topics(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    sides = make_sales_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                             topic_prefix.split("_")[-1], 10)
    sides.shop_sql("UPDATE ps_sales SET sold = 3")
    captures, appliers = split_config(sides.config)
    with running_pipeline(appliers) as applying:
        time.sleep(3)  # the shop's capture has not run: none of its topics exists
        (applier,) = applying.workers
        assert (applier.state, applier.restarts) == ("running", 0), applier.last_error  # waiting, not retrying
        with running_pipeline(captures) as capturing:
            wait_until(lambda: sides.erp_sql("SELECT coalesce(sum(sold), 0) FROM product_sales")[0][0] == 30,
                       "the shop's snapshot applied", timeout=60, supervisor=capturing)
        assert (applier.state, applier.restarts) == ("running", 0), applier.last_error
    drop_origins(sides)
