"""The demo schemas load into fresh databases and their seeds agree where the replicator expects them to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from replicator.demo import schemas as demo_schemas
from replicator.demo.schemas import load_erp_schema, load_shop_schema, split_sql_statements
from replicator.devstack import mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase

pytestmark = pytest.mark.integration


@pytest.fixture
def shop(mariadb_database: MariaDatabase) -> Iterator[pymysql.connections.Connection[Any]]:
    with contextlib.closing(mariadb_connect(mariadb_database.admin, mariadb_database.name)) as conn:
        load_shop_schema(conn)
        yield conn


@pytest.fixture
def erp(pg_database: PgDatabase) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(pg_database.dsn) as conn:
        load_erp_schema(conn)
        yield conn


def _shop_rows(conn: pymysql.connections.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query)
        return list(cur.fetchall())


def test_the_statement_splitter_keeps_semicolons_inside_quotes_and_drops_comments() -> None:
    sql = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE `a;b` (x varchar(5));\n"
        "/* block; comment */ INSERT INTO t VALUES ('it''s; fine', \"x;y\", 'back\\'slash;');\n"
        "# hash comment;\n"
        "SELECT 1;;\n"
        "SELECT 2"
    )
    assert split_sql_statements(sql) == [
        "CREATE TABLE `a;b` (x varchar(5))",
        "INSERT INTO t VALUES ('it''s; fine', \"x;y\", 'back\\'slash;')",
        "SELECT 1",
        "SELECT 2",
    ]
    with pytest.raises(ValueError, match="unterminated"):
        split_sql_statements("SELECT 'open")


def test_a_missing_schema_file_is_reported_with_its_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_database: PgDatabase
) -> None:
    monkeypatch.setattr(demo_schemas, "schemas_dir", lambda: tmp_path)
    with psycopg.connect(pg_database.dsn) as conn, pytest.raises(FileNotFoundError, match=str(tmp_path / "odoo.sql")):
        load_erp_schema(conn)


def test_both_sides_have_the_same_20_products_at_the_same_prices_under_different_ids(
    shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[tuple[Any, ...]]
) -> None:
    shop_products = {
        reference: (id_product, price, shop_price, name, product_type)
        for reference, id_product, price, shop_price, name, product_type in _shop_rows(
            shop,
            "SELECT p.reference, p.id_product, p.price, ps.price, pl.name, p.product_type FROM ps_product p "
            "JOIN ps_product_shop ps ON ps.id_product = p.id_product AND ps.id_shop = 1 "
            "JOIN ps_product_lang pl ON pl.id_product = p.id_product AND pl.id_shop = 1 AND pl.id_lang = 1",
        )
    }
    erp_products = {
        code: (product_id, list_price, name, detailed_type)
        for code, product_id, list_price, name, detailed_type in erp.execute(
            "SELECT pp.default_code, pp.id, pt.list_price, pt.name->>'en_US', pt.detailed_type "
            "FROM product_product pp JOIN product_template pt ON pt.id = pp.product_tmpl_id"
        ).fetchall()
    }
    expected = {f"DEMO-{n:03d}" for n in range(1, 21)}
    assert set(shop_products) == expected
    assert set(erp_products) == expected
    for reference in sorted(expected):
        id_product, price, shop_price, name, product_type = shop_products[reference]
        product_id, list_price, erp_name, detailed_type = erp_products[reference]
        assert id_product == int(reference[-3:])
        assert product_id != id_product, f"{reference}: ids must differ between the sides"
        assert Decimal(5) <= price <= Decimal(200)
        assert price == shop_price == list_price, reference
        assert name == erp_name, reference
        assert (product_type, detailed_type) == ("standard", "product")
    # No accidental id coincidence that an id-based join could rely on.
    assert all(erp_products[ref][0] != shop_products[ref][0] for ref in expected)


def test_shop_sellable_stock_equals_erp_free_quantity_in_internal_locations(
    shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[tuple[Any, ...]]
) -> None:
    shop_stock = {
        reference: (quantity, physical, reserved)
        for reference, quantity, physical, reserved in _shop_rows(
            shop,
            "SELECT p.reference, sa.quantity, sa.physical_quantity, sa.reserved_quantity FROM ps_stock_available sa "
            "JOIN ps_product p ON p.id_product = sa.id_product "
            "WHERE sa.id_product_attribute = 0 AND sa.id_shop = 1 AND sa.id_shop_group = 1",
        )
    }
    erp_free = dict(
        erp.execute(
            "SELECT pp.default_code, sum(q.quantity - q.reserved_quantity) FROM stock_quant q "
            "JOIN stock_location l ON l.id = q.location_id JOIN product_product pp ON pp.id = q.product_id "
            "WHERE l.usage = 'internal' GROUP BY pp.default_code"
        ).fetchall()
    )
    assert len(shop_stock) == 20
    assert {ref: q for ref, (q, _, _) in shop_stock.items()} == erp_free
    for reference, (quantity, physical, reserved) in shop_stock.items():
        assert quantity == physical == 40 + int(reference[-3:])
        assert reserved == 0
    # Every internal quant has its counterpart in the inventory-adjustment location: stock sums to zero.
    totals = erp.execute(
        "SELECT l.usage, sum(q.quantity) FROM stock_quant q JOIN stock_location l ON l.id = q.location_id "
        "GROUP BY l.usage"
    ).fetchall()
    assert dict(totals) == {"internal": sum(range(41, 61)), "inventory": -sum(range(41, 61))}


def test_the_13_default_order_states_with_their_flags(shop: pymysql.connections.Connection[Any]) -> None:
    rows = _shop_rows(
        shop,
        "SELECT s.id_order_state, l.name, s.invoice, s.logable, s.delivery, s.shipped, s.paid, s.module_name "
        "FROM ps_order_state s JOIN ps_order_state_lang l ON l.id_order_state = s.id_order_state AND l.id_lang = 1 "
        "ORDER BY s.id_order_state",
    )
    assert [(r[0], r[1]) for r in rows] == [
        (1, "Awaiting check payment"),
        (2, "Payment accepted"),
        (3, "Processing in progress"),
        (4, "Shipped"),
        (5, "Delivered"),
        (6, "Canceled"),
        (7, "Refunded"),
        (8, "Payment error"),
        (9, "On backorder (paid)"),
        (10, "Awaiting bank wire payment"),
        (11, "Remote payment accepted"),
        (12, "On backorder (not paid)"),
        (13, "Awaiting Cash On Delivery validation"),
    ]
    flags = {r[0]: r[2:7] for r in rows}
    assert {s for s, f in flags.items() if f[4]} == {2, 3, 4, 5, 9, 11}  # paid
    assert {s for s, f in flags.items() if f[3]} == {4, 5}  # shipped
    assert {s for s, f in flags.items() if f[2]} == {3, 4, 5}  # delivery
    assert {s for s, f in flags.items() if f[1]} == {2, 3, 4, 5, 11}  # logable
    assert {s for s, f in flags.items() if f[0]} == {2, 3, 4, 5, 7, 9, 11}  # invoice
    assert {r[0]: r[7] for r in rows if r[7]} == {1: "ps_checkpayment", 10: "ps_wirepayment", 13: "ps_cashondelivery"}


def test_countries_match_by_iso_code_not_by_id(
    shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[tuple[Any, ...]]
) -> None:
    shop_countries = {
        iso: (id_country, name)
        for iso, id_country, name in _shop_rows(
            shop,
            "SELECT c.iso_code, c.id_country, cl.name FROM ps_country c "
            "JOIN ps_country_lang cl ON cl.id_country = c.id_country AND cl.id_lang = 1",
        )
    }
    erp_countries = {
        code: (country_id, name)
        for code, country_id, name in erp.execute("SELECT code, id, name->>'en_US' FROM res_country").fetchall()
    }
    assert set(shop_countries) == set(erp_countries) == {"FR", "DE", "ES", "IT", "BE", "NL", "GB", "US"}
    assert {iso: v[0] for iso, v in shop_countries.items()} == {
        "FR": 8, "DE": 1, "ES": 6, "IT": 10, "BE": 3, "NL": 13, "GB": 17, "US": 21,
    }
    assert any(shop_countries[iso][0] != erp_countries[iso][0] for iso in shop_countries)
    assert all(shop_countries[iso][1] == erp_countries[iso][1] for iso in shop_countries)
    # Every shop address points at a seeded country.
    assert not _shop_rows(
        shop, "SELECT id_address FROM ps_address a WHERE NOT EXISTS "
        "(SELECT 1 FROM ps_country c WHERE c.id_country = a.id_country)"
    )


def test_two_erp_partners_pre_exist_for_shop_customers_and_link_by_email(
    shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[tuple[Any, ...]]
) -> None:
    customers = _shop_rows(
        shop,
        "SELECT c.id_customer, c.email, c.is_guest, c.active, c.deleted, count(a.id_address) FROM ps_customer c "
        "LEFT JOIN ps_address a ON a.id_customer = c.id_customer AND a.deleted = 0 GROUP BY c.id_customer",
    )
    assert len(customers) == 5
    assert all(email == email.lower() for _, email, *_ in customers)
    assert all(row[2:] == (0, 1, 0, 1) for row in customers)
    shop_emails = {email: id_customer for id_customer, email, *_ in customers}
    assert len(shop_emails) == 5

    partners = erp.execute("SELECT email, type, ref, parent_id, is_company FROM res_partner").fetchall()
    assert all(ref is None for _, _, ref, _, _ in partners)  # nothing replicated yet
    linked = {email: row for email, *row in partners if email in shop_emails}
    assert sorted(shop_emails[email] for email in linked) == [2, 4]
    assert all(row == ["contact", None, None, False] for row in linked.values())
    # The company itself and three ERP-only contacts besides.
    assert len(partners) == 6
    assert erp.execute(
        "SELECT p.name, p.is_company, c.name FROM res_company c JOIN res_partner p ON p.id = c.partner_id"
    ).fetchall() == [("Demo Company", True, "Demo Company")]


def test_locations_warehouse_and_journals(erp: psycopg.Connection[tuple[Any, ...]]) -> None:
    locations = dict(erp.execute("SELECT complete_name, usage FROM stock_location").fetchall())
    assert locations == {
        "Physical Locations": "view",
        "Partners": "view",
        "Virtual Locations": "view",
        "Partners/Vendors": "supplier",
        "Partners/Customers": "customer",
        "Virtual Locations/Inventory adjustment": "inventory",
        "WH": "view",
        "WH/Stock": "internal",
    }
    assert erp.execute(
        "SELECT w.code, w.name, v.complete_name, s.complete_name, s.warehouse_id = w.id FROM stock_warehouse w "
        "JOIN stock_location v ON v.id = w.view_location_id JOIN stock_location s ON s.id = w.lot_stock_id"
    ).fetchall() == [("WH", "Demo warehouse", "WH", "WH/Stock", True)]
    journals = erp.execute("SELECT code, type, name->>'en_US' FROM account_journal ORDER BY id").fetchall()
    assert journals == [("INV", "sale", "Customer Invoices"), ("BNK1", "bank", "Bank"), ("CSH1", "cash", "Cash")]
    assert erp.execute("SELECT id, name FROM res_currency ORDER BY id").fetchall() == [(1, "EUR"), (2, "USD")]


def test_erp_tables_send_full_before_images_and_serials_continue_after_the_seed(
    erp: psycopg.Connection[tuple[Any, ...]],
) -> None:
    identities = dict(
        erp.execute(
            "SELECT relname, relreplident FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    )
    full = {"res_partner", "sale_order", "sale_order_line", "stock_quant", "stock_move", "product_product",
            "stock_picking"}
    assert {table for table, identity in identities.items() if identity == "f"} == full
    assert identities["res_partner"] == "f"
    # The deployment index the customer mapping's match_on [email] relies on.
    assert erp.execute("SELECT to_regclass('res_partner_email_index') IS NOT NULL").fetchone() == (True,)

    # Rows created after the seed get fresh ids (explicit-id inserts were followed by setval).
    for table, values in [
        ("res_partner", "(name) VALUES ('New contact')"),
        ("stock_location", "(name, usage) VALUES ('Shelf 1', 'internal')"),
        ("product_template", "(name) VALUES ('{\"en_US\": \"New product\"}')"),
        ("account_journal", "(name, code, type) VALUES ('{\"en_US\": \"Misc\"}', 'MISC', 'general')"),
    ]:
        (max_before,) = erp.execute(f"SELECT max(id) FROM {table}").fetchone() or (None,)
        (new_id,) = erp.execute(f"INSERT INTO {table} {values} RETURNING id").fetchone() or (None,)
        assert new_id == max_before + 1, table
    erp.rollback()


def test_erp_constraints_behave_like_odoo(erp: psycopg.Connection[tuple[Any, ...]]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        erp.execute("INSERT INTO res_partner (type) VALUES ('contact')")  # contacts need a name
    erp.rollback()
    with pytest.raises(psycopg.errors.UniqueViolation):
        erp.execute("INSERT INTO res_country (name, code) VALUES ('{\"en_US\": \"Francia\"}', 'FR')")
    erp.rollback()
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        erp.execute("DELETE FROM product_product WHERE default_code = 'DEMO-001'")  # quants restrict it
    erp.rollback()
    (order_id,) = erp.execute(
        "INSERT INTO sale_order (name, partner_id, partner_invoice_id, partner_shipping_id) "
        "VALUES ('S00001', 5, 5, 5) RETURNING id"
    ).fetchone() or (None,)
    erp.execute(
        "INSERT INTO sale_order_line (order_id, product_id, name, product_uom_qty, price_unit) "
        "SELECT %s, id, 'Chef Knife', 2, 129 FROM product_product WHERE default_code = 'DEMO-019'",
        (order_id,),
    )
    erp.execute("DELETE FROM sale_order WHERE id = %s", (order_id,))
    assert erp.execute("SELECT count(*) FROM sale_order_line").fetchone() == (0,)  # lines cascade
    erp.rollback()
