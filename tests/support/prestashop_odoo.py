"""A PrestaShop shop (MariaDB) and an Odoo ERP (PostgreSQL) loaded with the demo schemas, with the shipped
mappings and a config that runs both captures and both appliers, for end-to-end tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from replicator.demo.config import prestashop_odoo_config
from replicator.demo.run import snapshot_applied
from replicator.demo.schemas import load_erp_schema, load_shop_schema
from replicator.devstack import ConnectionSettings, mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase


@dataclass
class ShopErp:
    shop: MariaDatabase
    erp: PgDatabase
    config: Path
    suffix: str

    def shop_connect(self) -> pymysql.connections.Connection[Any]:
        return mariadb_connect(self.shop.admin, self.shop.name)

    def erp_connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.erp.dsn)

    def shop_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.shop_connect()) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            rows = list(cur.fetchall())
            conn.commit()
            return rows

    def erp_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.erp.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def shop_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.shop_sql(sql, params)
        return rows[0][0] if rows else None

    def erp_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.erp_sql(sql, params)
        return rows[0][0] if rows else None

    # -- what the tests look at ---------------------------------------------------------------------------

    def shop_quantity(self, reference: str) -> int:
        return int(self.shop_one(
            "SELECT s.quantity FROM ps_stock_available s JOIN ps_product p ON p.id_product = s.id_product "
            "WHERE p.reference = %s AND s.id_product_attribute = 0", (reference,)))

    def erp_free_quantity(self, reference: str) -> Decimal:
        return Decimal(self.erp_one(
            "SELECT COALESCE(SUM(q.quantity - q.reserved_quantity), 0) FROM stock_quant q "
            "JOIN stock_location l ON l.id = q.location_id JOIN product_product p ON p.id = q.product_id "
            "WHERE l.usage = 'internal' AND p.default_code = %s", (reference,)))

    def erp_product(self, reference: str) -> int:
        return int(self.erp_one("SELECT id FROM product_product WHERE default_code = %s", (reference,)))

    def shop_product(self, reference: str) -> int:
        return int(self.shop_one("SELECT id_product FROM ps_product WHERE reference = %s", (reference,)))

    def sale_order_of(self, id_order: int) -> int | None:
        value = self.erp_one("SELECT id FROM sale_order WHERE origin = %s", (f"PS#{id_order}",))
        return None if value is None else int(value)

    def dead_letters(self) -> list[tuple[Any, ...]]:
        return [("shop", *r) for r in self.shop_sql("SELECT id, status, error FROM replicator_dead_letter")] + [
            ("erp", *r) for r in self.erp_sql("SELECT id, status, error FROM replicator_dead_letter")
        ]

    def snapshot_applied(self) -> bool:
        """The initial snapshot reached both sides, every row a simulated change refers to included (the demo's
        check, `replicator.demo.run.snapshot_applied`)."""
        with contextlib.suppress(pymysql.err.ProgrammingError, psycopg.errors.UndefinedTable), \
                contextlib.closing(self.shop_connect()) as shop, psycopg.connect(self.erp.dsn, autocommit=True) as erp:
            return snapshot_applied(shop, erp)
        return False


def make_shop_erp(devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  prepare: Callable[[ShopErp], None] | None = None) -> ShopErp:
    """Load the demo schemas and write the config; `prepare` may change the seed before capture starts."""
    suffix = uuid.uuid4().hex[:8]
    with contextlib.closing(mariadb_connect(mariadb_database.admin, mariadb_database.name)) as conn:
        load_shop_schema(conn, replicator_tables=True)
    with psycopg.connect(pg_database.dsn) as conn:
        load_erp_schema(conn)
    admin = mariadb_database.admin
    monkeypatch.setenv("PS_SHOP_DSN", f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/"
                                      f"{mariadb_database.name}")
    monkeypatch.setenv("PS_ERP_DSN", pg_database.dsn)
    config = prestashop_odoo_config(
        kafka_bootstrap=devstack.kafka_bootstrap, shop_database=mariadb_database.name, shop_dsn_env="PS_SHOP_DSN",
        erp_dsn_env="PS_ERP_DSN", shop_source=f"shop{suffix}", erp_source=f"erp{suffix}",
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    sides = ShopErp(mariadb_database, pg_database, path, suffix)
    if prepare is not None:
        prepare(sides)
    return sides


def drop_writer_origins(sides: ShopErp) -> None:
    with psycopg.connect(sides.erp.admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE %s",
                     (f"replicator_erp{sides.suffix}%",))


@contextlib.contextmanager
def quantity_watch(sides: ShopErp, reference: str) -> Iterator[list[int]]:
    """Record every value the shop's sellable quantity of a product takes, polled in a thread."""
    import threading

    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with contextlib.closing(sides.shop_connect()) as conn:
            while not stop.is_set():
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT s.quantity FROM ps_stock_available s JOIN ps_product p ON p.id_product = s.id_product "
                        "WHERE p.reference = %s AND s.id_product_attribute = 0", (reference,))
                    row = cur.fetchone()
                conn.commit()
                if row is not None and (not seen or seen[-1] != int(row[0])):
                    seen.append(int(row[0]))
                stop.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
