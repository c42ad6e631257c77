"""An applier frozen in mid-stream (SIGSTOP: a paused virtual machine, a host cut off, a process stuck) does not
keep its targets locked. Each target database ends the frozen applier's silent writer session after the target's
`writer_session_timeout_s`, which rolls back what it had not committed and frees its writer lock, so a standby
applier takes over. Woken up, the frozen applier finds its sessions gone: it commits nothing more and waits
behind the new writer. Both targets: the ERP (PostgreSQL) sums the shop's sales counters (a `delta` field, so a
change applied twice would show), the shop (MariaDB) copies the ERP's prices."""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_for_snapshots, wait_until
from tests.support.processes import start_replicator_run
from tests.support.sales_and_prices import (
    PRODUCTS,
    SalesAndPricesWorkload,
    converged,
    split_config,
    state_of,
    write_for,
)
from tests.support.sides import drop_origins, make_sales_and_prices_sides

pytestmark = pytest.mark.e2e

SESSION_TIMEOUT_S = 3


def test_a_frozen_applier_loses_its_targets_to_a_standby_and_nothing_is_applied_twice(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    # Small batches, so that the freeze is likely to catch a target transaction open.
    sides = make_sales_and_prices_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                                        topic_prefix.split("_")[-1], PRODUCTS,
                                        writer_session_timeout_s=SESSION_TIMEOUT_S)
    captures, appliers = split_config(sides.config)
    log_path = tmp_path / "first-applier.log"
    with running_pipeline(captures) as capturing:
        wait_for_snapshots(captures, capturing)
        first = start_replicator_run(appliers, log_path)
        workload: SalesAndPricesWorkload | None = None
        try:
            write_for(sides, 2, seed=3)
            wait_until(lambda: converged(sides), "the first applier applying both ways", timeout=90,
                       supervisor=capturing, describe=lambda: state_of(sides))
            workload = SalesAndPricesWorkload(sides, seed=4)
            time.sleep(1)
            first.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            time.sleep(1)
            with running_pipeline(appliers) as standby:
                time.sleep(2)
                workload.stop()
                # Only the standby can apply now: convergence is its work, once the servers ended the frozen
                # applier's sessions.
                wait_until(lambda: converged(sides), "the standby taking over while the first is frozen",
                           timeout=90, supervisor=standby, describe=lambda: state_of(sides))
                took_over_s = time.monotonic() - frozen_at
                first.send_signal(signal.SIGCONT)  # it wakes up, finds its sessions gone and waits
                write_for(sides, 3, seed=5)
                wait_until(lambda: converged(sides), "both sides equal after the first one woke up",
                           timeout=90, supervisor=standby, describe=lambda: state_of(sides))
                time.sleep(2)  # a change applied twice would show now
                assert converged(sides), state_of(sides)
        finally:
            if workload is not None:
                workload.stop()
            first.send_signal(signal.SIGCONT)
            first.send_signal(signal.SIGTERM)
            code = first.wait(60)
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text[-4000:]
    # Woken up, the first applier lost its sessions, and was then refused the writer locks the standby held.
    assert log_text.count("another session writes as") >= 2, log_text[-4000:]
    assert took_over_s < 60, took_over_s
    assert sides.dead_letters("erp") == [] and sides.dead_letters("shop") == []
    assert sum(sold for _, sold in sides.erp_sql("SELECT id, sold FROM product_sales")) > 0
    assert any(price != Decimal("1.00") for _, price in sides.shop_sql("SELECT id_product, price FROM ps_price"))
    drop_origins(sides)

