"""A shop database (MariaDB) and an ERP database (PostgreSQL) with a replicator config between them,
for end-to-end tests: schemas, mappings and the config that runs captures and appliers on them."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from replicator.devstack import ConnectionSettings, mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase


@dataclass
class Sides:
    shop: MariaDatabase
    erp: PgDatabase
    config: Path
    suffix: str

    @property
    def shop_source(self) -> str:
        return f"shop{self.suffix}"

    @property
    def erp_source(self) -> str:
        return f"erp{self.suffix}"

    @property
    def erp_target(self) -> str:
        return f"erp{self.suffix}-writer"

    @property
    def shop_target(self) -> str:
        return f"shop{self.suffix}-writer"

    def shop_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(mariadb_connect(self.shop.admin, self.shop.name)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def erp_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.erp.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def dead_letters(self, side: str) -> list[tuple[Any, ...]]:
        run = self.erp_sql if side == "erp" else self.shop_sql
        return run("SELECT id, status, error FROM replicator_dead_letter ORDER BY id")


def make_sides(
    devstack: ConnectionSettings,
    pg_database: PgDatabase,
    mariadb_database: MariaDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    *,
    shop_ddl: list[str],
    erp_ddl: list[str],
    rules: list[dict[str, Any]],
    shop_tables: list[str],
    erp_tables: list[str],
    target_options: dict[str, Any] | None = None,
) -> Sides:
    with contextlib.closing(mariadb_connect(mariadb_database.admin, mariadb_database.name)) as conn, \
            conn.cursor() as cur:
        for ddl in shop_ddl:
            cur.execute(ddl)
    with psycopg.connect(pg_database.dsn, autocommit=True) as pg:
        for ddl in erp_ddl:
            pg.execute(ddl)
    admin = mariadb_database.admin
    monkeypatch.setenv("SHOP_DSN", f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/"
                                   f"{mariadb_database.name}")
    monkeypatch.setenv("ERP_DSN", pg_database.dsn)
    mapping = {
        "systems": {
            "shop": {"kind": "mariadb", "priority": 2, "source_name": f"shop{suffix}",
                     "namespace": mariadb_database.name},
            "erp": {"kind": "postgresql", "priority": 1, "source_name": f"erp{suffix}", "namespace": "public"},
        },
        "rules": rules,
    }
    (tmp_path / "mappings.yaml").write_text(yaml.safe_dump(mapping))
    options = target_options or {}
    targets = []
    if any(r["target"]["system"] == "erp" for r in rules):
        targets.append({"name": f"erp{suffix}-writer", "kind": "postgresql", "system": "erp",
                        "apply_from": ["shop"], "connection": {"dsn": {"env": "ERP_DSN"}}, **options})
    if any(r["target"]["system"] == "shop" for r in rules):
        targets.append({"name": f"shop{suffix}-writer", "kind": "mariadb", "system": "shop",
                        "apply_from": ["erp"], "connection": {"dsn": {"env": "SHOP_DSN"}}, **options})
    sources = [{"name": f"shop{suffix}", "kind": "mariadb", "connection": {"dsn": {"env": "SHOP_DSN"}},
                "tables": [f"{mariadb_database.name}.{t}" for t in shop_tables],
                "server_id": random.randint(10_000, 2**31), "heartbeat_interval_s": 1}]
    if erp_tables:
        sources.append({"name": f"erp{suffix}", "kind": "postgresql", "connection": {"dsn": {"env": "ERP_DSN"}},
                        "tables": [f"public.{t}" for t in erp_tables], "heartbeat_interval_s": 1})
    config = {"kafka": {"bootstrap_servers": devstack.kafka_bootstrap}, "mappings": "mappings.yaml",
              "sources": sources, "targets": targets}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return Sides(mariadb_database, pg_database, tmp_path / "config.yaml", suffix)


def drop_origins(sides: Sides) -> None:
    with psycopg.connect(sides.erp.admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = %s",
                     (f"replicator_erp{sides.suffix}_writer",))


# A shop's sales counter per product, summed into the ERP as a `delta` field: what exactly-once tests count.
SALES_RULES: list[dict[str, Any]] = [{
    "name": "sales", "source": {"system": "shop", "table": "ps_sales", "key": ["id_product"]},
    "target": {"system": "erp", "table": "product_sales"}, "key": {"id": "id_product"}, "on_delete": "ignore",
    "fields": {"sold": {"from": "sold", "policy": "delta"}, "label": "label"},
}]


def make_sales_sides(
    devstack: ConnectionSettings,
    pg_database: PgDatabase,
    mariadb_database: MariaDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    products: int,
) -> Sides:
    """Sides with `products` shop sales counters at 0, applied to the ERP in small batches (50 events, 5 ms),
    so that kills and outages fall between many target transactions."""
    sides = make_sides(
        devstack, pg_database, mariadb_database, tmp_path, monkeypatch, suffix,
        shop_ddl=["CREATE TABLE ps_sales (id_product INT PRIMARY KEY, sold INT NOT NULL, label VARCHAR(40))"],
        erp_ddl=["CREATE TABLE product_sales (id int PRIMARY KEY, sold int NOT NULL DEFAULT 0, label varchar)"],
        rules=SALES_RULES, shop_tables=["ps_sales"], erp_tables=[],
        target_options={"batch_max_events": 50, "batch_max_ms": 5},
    )
    sides.shop_sql("INSERT INTO ps_sales (id_product, sold, label) VALUES "
                   + ", ".join(f"({p}, 0, 'p{p}')" for p in range(products)))
    return sides


# The ERP's list price per product, copied into the shop (last_writer_wins, the default policy).
PRICE_RULES: list[dict[str, Any]] = [{
    "name": "prices", "source": {"system": "erp", "table": "product_price", "key": ["id"]},
    "target": {"system": "shop", "table": "ps_price"}, "key": {"id_product": "id"}, "on_delete": "ignore",
    "fields": {"price": "price"},
}]


def make_sales_and_prices_sides(
    devstack: ConnectionSettings,
    erp_database: PgDatabase,
    shop_database: MariaDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    products: int,
    **target_options: Any,
) -> Sides:
    """Both directions at once: the shop's sales counters summed into the ERP (`delta`) and the ERP's prices
    copied into the shop, for `products` products (sales at 0, prices at 1.00 on both sides), applied in small
    batches (50 events, 5 ms) so that crashes and freezes fall between many target transactions."""
    sides = make_sides(
        devstack, erp_database, shop_database, tmp_path, monkeypatch, suffix,
        shop_ddl=["CREATE TABLE ps_sales (id_product INT PRIMARY KEY, sold INT NOT NULL, label VARCHAR(40))",
                  "CREATE TABLE ps_price (id_product INT PRIMARY KEY, price DECIMAL(10,2) NOT NULL)"],
        erp_ddl=["CREATE TABLE product_sales (id int PRIMARY KEY, sold int NOT NULL DEFAULT 0, label varchar)",
                 "CREATE TABLE product_price (id int PRIMARY KEY, price numeric(10,2) NOT NULL)"],
        rules=SALES_RULES + PRICE_RULES, shop_tables=["ps_sales"], erp_tables=["product_price"],
        target_options={"batch_max_events": 50, "batch_max_ms": 5, **target_options},
    )
    sides.shop_sql("INSERT INTO ps_sales (id_product, sold, label) VALUES "
                   + ", ".join(f"({p}, 0, 'p{p}')" for p in range(products)))
    prices = ", ".join(f"({p}, 1.00)" for p in range(products))
    sides.shop_sql(f"INSERT INTO ps_price (id_product, price) VALUES {prices}")
    sides.erp_sql(f"INSERT INTO product_price (id, price) VALUES {prices}")
    return sides
