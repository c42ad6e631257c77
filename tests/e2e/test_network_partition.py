"""A process whose database connections go silent (the server's host vanished, or the network path to it broke:
nothing answers, nothing resets) notices within the connections' `network_timeout_s`, connects again and goes
on: every change arrives, once. Without the setting it would wait on the dead connections for hours: Linux
sends its first keepalive probe after two hours, and a connection waiting for an answer has nothing to
retransmit. The same with its Kafka connections, which librdkafka gives up after `kafka.network_timeout_s`.

Both directions run at once: the ERP (PostgreSQL) sums the shop's sales counters as a `delta`, so a change
applied twice would show; the shop (MariaDB) copies the ERP's prices. Either the appliers or the captures run as
their own `replicator run` process, the rest in the test's. In mid-stream every connection that process holds to
either database, or to Kafka, is cut off by iptables, for good; new connections go through, as they would to a
server that failed over to another host."""

from __future__ import annotations

import contextlib
import signal
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from replicator.devstack import ConnectionSettings, mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.network import black_hole, established_connections
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

NETWORK_TIMEOUT_S = 3
KAFKA_NETWORK_TIMEOUT_S = 5  # the least kafka.network_timeout_s allows
# The servers end the cut-off sessions (writer sessions, capture lock sessions, the walsender) after this much
# silence, which frees their locks and the replication slot for the new ones.
SESSION_TIMEOUT_S = 3


def _set_timeouts(captures: Path, appliers: Path) -> None:
    for config in (captures, appliers):
        whole = yaml.safe_load(config.read_text())
        for section in (whole["sources"], whole["targets"]):
            for entry in section:
                entry["connection"]["network_timeout_s"] = NETWORK_TIMEOUT_S
        for source in whole["sources"]:
            source["session_timeout_s"] = SESSION_TIMEOUT_S
        whole["kafka"]["network_timeout_s"] = KAFKA_NETWORK_TIMEOUT_S
        config.write_text(yaml.safe_dump(whole))


@pytest.mark.parametrize(("cut", "servers"), [("appliers", "databases"), ("captures", "databases"),
                                              ("appliers", "kafka"), ("captures", "kafka")])
def test_a_process_cut_off_from_its_servers_notices_connects_again_and_every_change_arrives_once(
    cut: str, servers: str, devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    sides = make_sales_and_prices_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                                        topic_prefix.split("_")[-1], PRODUCTS,
                                        writer_session_timeout_s=SESSION_TIMEOUT_S)
    captures, appliers = split_config(sides.config)
    _set_timeouts(captures, appliers)
    in_test, own_process = (captures, appliers) if cut == "appliers" else (appliers, captures)
    if servers == "databases":
        ports = {port for port in (urlsplit(devstack.erp_dsn).port, urlsplit(devstack.shop_dsn).port) if port}
        assert len(ports) == 2
    else:
        ports = {int(devstack.kafka_bootstrap.rsplit(":", 1)[1])}
    log_path = tmp_path / f"{cut}.log"
    with running_pipeline(in_test) as pipeline:
        if cut == "appliers":
            wait_for_snapshots(captures, pipeline)
        process = start_replicator_run(own_process, log_path)
        workload: SalesAndPricesWorkload | None = None
        try:
            if cut == "captures":
                wait_for_snapshots(captures)
            write_for(sides, 2, seed=3)
            wait_until(lambda: converged(sides), "both directions applied", timeout=90,
                       supervisor=pipeline, describe=lambda: state_of(sides))
            workload = SalesAndPricesWorkload(sides, seed=4)
            time.sleep(1)
            cut_off = established_connections(process.pid, ports)
            assert {peer for _, peer in cut_off} == ports, cut_off
            with black_hole(cut_off):
                cut_at = time.monotonic()
                time.sleep(2)
                workload.stop()
                wait_until(lambda: converged(sides), f"the {cut} connecting again past their dead connections",
                           timeout=60, supervisor=pipeline, describe=lambda: state_of(sides))
                recovered_s = time.monotonic() - cut_at
                # The old connections stay dead: the process goes on over its new ones.
                write_for(sides, 2, seed=5)
                wait_until(lambda: converged(sides), "both sides equal after more changes", timeout=60,
                           supervisor=pipeline, describe=lambda: state_of(sides))
                time.sleep(2)  # a change applied twice would show now
                assert converged(sides), state_of(sides)
                still_used = [c for c in established_connections(process.pid, ports) if c in cut_off]
        finally:
            if workload is not None:
                workload.stop()
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text[-4000:]
    # The kernel (database connections) or librdkafka (Kafka's) ended the silent connections, and the process
    # went on over new ones.
    assert "timed out" in log_text.lower(), log_text[-4000:]
    if servers == "databases":
        assert still_used == [], still_used
    # (librdkafka leaves a connection it has no request on, such as its bootstrap connection, as it is: only one
    # with a request waiting times out.)
    print(f"{cut} cut off from the {servers}: every change in after {recovered_s:.1f} s")
    assert recovered_s < 45, recovered_s
    assert sides.dead_letters("erp") == [] and sides.dead_letters("shop") == []
    assert sum(sold for _, sold in sides.erp_sql("SELECT id, sold FROM product_sales")) > 0
    assert any(price != Decimal("1.00") for _, price in sides.shop_sql("SELECT id_product, price FROM ps_price"))
    drop_origins(sides)



def test_a_writer_waiting_on_a_row_lock_longer_than_its_network_timeout_keeps_its_connection(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    """The other side of the setting: a server that is busy, here with the applier's statement waiting on a row
    an ERP user holds locked, still answers at the TCP level. The writer waits out a lock held four times its
    `network_timeout_s` on the same connection, and then applies everything once."""
    sides = make_sales_and_prices_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                                        topic_prefix.split("_")[-1], PRODUCTS)
    whole = yaml.safe_load(sides.config.read_text())
    for target in whole["targets"]:
        target["connection"]["network_timeout_s"] = 2
    sides.config.write_text(yaml.safe_dump(whole))
    with running_pipeline(sides.config) as pipeline:
        wait_for_snapshots(sides.config, pipeline)
        # The ERP's rows come with the shop's snapshot: the row to lock must be there first.
        wait_until(lambda: converged(sides), "the snapshots applied", timeout=60, supervisor=pipeline,
                   describe=lambda: state_of(sides))
        # From here on no worker may restart. (Before, one may: an applier that starts before the other side's
        # capture has created its topics restarts once, as it should.)
        restarts_before = {w.name: w.restarts for w in pipeline.workers}
        with psycopg.connect(pg_database.dsn) as user:
            user.execute("SELECT * FROM product_sales WHERE id = 0 FOR UPDATE")  # an ERP user's open transaction
            with contextlib.closing(mariadb_connect(mariadb_database.admin, mariadb_database.name)) as shop:
                shop.autocommit(True)
                with shop.cursor() as cur:
                    for i in range(400):
                        cur.execute("UPDATE ps_sales SET sold = sold + 1 WHERE id_product = %s", (i % PRODUCTS,))
            time.sleep(8)
            waiting = user.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock'").fetchone()
            sessions = user.execute("SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
                                    "FROM pg_stat_activity WHERE datname = current_database()").fetchall()
            user.rollback()
        assert waiting == (1,), (sessions, state_of(sides))  # the applier's statement was waiting on the lock
        wait_until(lambda: converged(sides), "everything applied once the lock is gone", timeout=60,
                   supervisor=pipeline, describe=lambda: state_of(sides))
        time.sleep(2)  # a change applied twice would show now
        assert converged(sides), state_of(sides)
        assert [(w.name, w.last_error) for w in pipeline.workers if w.restarts != restarts_before[w.name]] == []
    assert sides.dead_letters("erp") == []
    drop_origins(sides)
