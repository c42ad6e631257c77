"""The whole pipeline through database crashes: the shop's MariaDB and the ERP's PostgreSQL are each killed -9
twice (the server and every backend) while both sides keep writing, and started again on the same data.

Each crash cuts a capture's log stream (binlog dump, replication slot) and an applier's connection at once.
Capture, the appliers and their supervisor ride it out: the ERP ends with the shop's sales counters (a `delta`
field: each sale applied exactly once), the shop with the ERP's prices, and nothing is dead-lettered.

The servers are this test's own (tests/support/servers.py), so the session's stay up for the other tests."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from replicator.devstack import ConnectionSettings, mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_for_snapshots, wait_until
from tests.support.servers import PrivateDatabase, private_mariadb, private_postgres
from tests.support.sides import make_sales_and_prices_sides

pytestmark = pytest.mark.e2e

PRODUCTS = 20

def _databases(maria: PrivateDatabase, pg: PrivateDatabase) -> tuple[MariaDatabase, PgDatabase]:
    admin: dict[str, str | int] = {"host": "127.0.0.1", "port": maria.port, "user": "root",
                                   "password": maria.password}
    with contextlib.closing(mariadb_connect(admin)) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop CHARACTER SET utf8mb4")
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE erp")
    return MariaDatabase(name="shop", admin=admin), PgDatabase(name="erp", dsn=pg.dsn("erp"),
                                                                admin_dsn=pg.dsn("postgres"))


def test_the_pipeline_rides_out_both_databases_killed_twice_applying_every_delta_once(
    devstack: ConnectionSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    maria = private_mariadb(tmp_path / "servers")
    pg = private_postgres(tmp_path / "servers")
    try:
        shop_db, erp_db = _databases(maria, pg)
        sides = make_sales_and_prices_sides(devstack, erp_db, shop_db, tmp_path, monkeypatch,
                                            topic_prefix.split("_")[-1], PRODUCTS)
        rng = random.Random(17)
        with running_pipeline(sides.config) as supervisor:
            wait_for_snapshots(sides.config, supervisor)
            writes = {"shop": 0, "erp": 0, "refused": 0}
            crashes_over = threading.Event()

            def workload() -> None:
                # Sales and price changes go on through every crash (refused while a server is down) and for a
                # second after the last restart.
                while not crashes_over.is_set():
                    product = rng.randrange(PRODUCTS)
                    try:
                        if rng.random() < 0.5:
                            sides.shop_sql("UPDATE ps_sales SET sold = sold + %s WHERE id_product = %s",
                                           (rng.randint(1, 5), product))
                            writes["shop"] += 1
                        else:
                            sides.erp_sql("UPDATE product_price SET price = %s WHERE id = %s",
                                          (Decimal(rng.randint(100, 99_999)) / 100, product))
                            writes["erp"] += 1
                    except (pymysql.err.OperationalError, psycopg.OperationalError):
                        writes["refused"] += 1
                        time.sleep(0.05)
                    time.sleep(0.002)

            writer = threading.Thread(target=workload)
            writer.start()
            try:
                for server in (maria, pg, maria, pg):
                    time.sleep(rng.uniform(1.0, 2.0))
                    server.kill()
                    time.sleep(rng.uniform(1.0, 2.0))
                    server.start_again()
                time.sleep(1)
            finally:
                crashes_over.set()
                writer.join()

            def state() -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
                return (dict(sides.shop_sql("SELECT id_product, sold FROM ps_sales")),
                        dict(sides.erp_sql("SELECT id, sold FROM product_sales")),
                        dict(sides.erp_sql("SELECT id, price FROM product_price")),
                        dict(sides.shop_sql("SELECT id_product, price FROM ps_price")))

            def converged() -> bool:
                shop_sold, erp_sold, erp_price, shop_price = state()
                return shop_sold == erp_sold and erp_price == shop_price

            wait_until(converged, "the ERP's counters equal to the shop's and the shop's prices to the ERP's",
                       timeout=180, supervisor=supervisor, describe=lambda: "shop sold, erp sold, erp price, "
                       f"shop price: {state()}\nrestarts: {[(w.name, w.restarts) for w in supervisor.workers]}")
            time.sleep(2)  # nothing more may arrive: a delta applied twice would show now
            assert converged(), state()
            restarts = {w.name: w.restarts for w in supervisor.workers}
        print(f"writes {writes}; worker restarts {restarts}")
        assert maria.restarts == pg.restarts == 2
        assert writes["refused"] > 0 and writes["shop"] > 0 and writes["erp"] > 0, writes
        # Every capture and applier lost its server at least once and came back on its own.
        assert all(count > 0 for count in restarts.values()), restarts
        assert sides.dead_letters("erp") == [] and sides.dead_letters("shop") == []
    finally:
        maria.close()
        pg.close()
