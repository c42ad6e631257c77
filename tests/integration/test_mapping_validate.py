"""`validate_against_databases` against real PostgreSQL and MariaDB schemas (fresh databases per test).

The example mapping must validate cleanly against tables with PrestaShop's and Odoo's real column names;
a mapping with deliberate mistakes must have every one of them reported, and nothing else.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL, Engine, create_engine, make_url

from replicator.demo.schemas import load_erp_schema, load_shop_schema
from replicator.devstack import mariadb_connect
from replicator.errors import ConfigError
from replicator.mapping.engine import MappingEngine
from replicator.mapping.loader import load_mappings
from replicator.mapping.ops import OpKind, Policy
from replicator.mapping.validate import validate_against_databases
from tests.conftest import MariaDatabase, PgDatabase

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "mappings" / "examples" / "customers.yaml"
SHIPPED = Path(__file__).resolve().parents[2] / "mappings" / "prestashop-odoo"

# Real PrestaShop 8 columns (install-dev/data/db_structure.sql), trimmed to what the example touches and the
# NOT NULL columns around it.
SHOP_TABLES = [
    """CREATE TABLE ps_customer (
        id_customer INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        id_shop_group INT UNSIGNED NOT NULL DEFAULT 1, id_shop INT UNSIGNED NOT NULL DEFAULT 1,
        id_gender INT UNSIGNED NOT NULL DEFAULT 0, id_default_group INT UNSIGNED NOT NULL DEFAULT 1,
        id_lang INT UNSIGNED NULL, company VARCHAR(255), siret VARCHAR(14), ape VARCHAR(6),
        firstname VARCHAR(255) NOT NULL, lastname VARCHAR(255) NOT NULL, email VARCHAR(255) NOT NULL,
        passwd VARCHAR(255) NOT NULL, birthday DATE, newsletter TINYINT(1) UNSIGNED NOT NULL DEFAULT 0,
        optin TINYINT(1) UNSIGNED NOT NULL DEFAULT 0, website VARCHAR(128), note TEXT,
        active TINYINT(1) UNSIGNED NOT NULL DEFAULT 0, is_guest TINYINT(1) NOT NULL DEFAULT 0,
        deleted TINYINT(1) NOT NULL DEFAULT 0, date_add DATETIME NOT NULL, date_upd DATETIME NOT NULL,
        KEY customer_email (email))""",
    """CREATE TABLE ps_address (
        id_address INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, id_country INT UNSIGNED NOT NULL,
        id_state INT UNSIGNED, id_customer INT UNSIGNED NOT NULL DEFAULT 0,
        id_manufacturer INT UNSIGNED NOT NULL DEFAULT 0, id_supplier INT UNSIGNED NOT NULL DEFAULT 0,
        id_warehouse INT UNSIGNED NOT NULL DEFAULT 0, alias VARCHAR(32) NOT NULL, company VARCHAR(255),
        lastname VARCHAR(255) NOT NULL, firstname VARCHAR(255) NOT NULL, address1 VARCHAR(128) NOT NULL,
        address2 VARCHAR(128), postcode VARCHAR(12), city VARCHAR(64) NOT NULL, other TEXT, phone VARCHAR(32),
        phone_mobile VARCHAR(32), vat_number VARCHAR(32), dni VARCHAR(16), date_add DATETIME NOT NULL,
        date_upd DATETIME NOT NULL, active TINYINT(1) UNSIGNED NOT NULL DEFAULT 1,
        deleted TINYINT(1) UNSIGNED NOT NULL DEFAULT 0, KEY address_customer (id_customer))""",
    """CREATE TABLE ps_country (
        id_country INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, id_zone INT UNSIGNED NOT NULL,
        id_currency INT UNSIGNED NOT NULL DEFAULT 0, iso_code VARCHAR(3) NOT NULL,
        call_prefix INT NOT NULL DEFAULT 0, active TINYINT(1) UNSIGNED NOT NULL DEFAULT 0,
        contains_states TINYINT(1) NOT NULL DEFAULT 0, need_zip_code TINYINT(1) NOT NULL DEFAULT 1,
        KEY country_iso_code (iso_code))""",
    """CREATE TABLE ps_orders (
        id_order INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, reference VARCHAR(9),
        id_shop_group INT UNSIGNED NOT NULL DEFAULT 1, id_shop INT UNSIGNED NOT NULL DEFAULT 1,
        id_carrier INT UNSIGNED NOT NULL, id_lang INT UNSIGNED NOT NULL, id_customer INT UNSIGNED NOT NULL,
        id_cart INT UNSIGNED NOT NULL, id_currency INT UNSIGNED NOT NULL,
        id_address_delivery INT UNSIGNED NOT NULL, id_address_invoice INT UNSIGNED NOT NULL,
        current_state INT UNSIGNED NOT NULL, payment VARCHAR(255) NOT NULL,
        conversion_rate DECIMAL(13,6) NOT NULL DEFAULT 1, module VARCHAR(255),
        total_paid DECIMAL(20,6) NOT NULL DEFAULT 0, total_paid_tax_incl DECIMAL(20,6) NOT NULL DEFAULT 0,
        valid TINYINT(1) UNSIGNED NOT NULL DEFAULT 0, note TEXT,
        date_add DATETIME NOT NULL, date_upd DATETIME NOT NULL, KEY id_customer (id_customer))""",
    """CREATE TABLE ps_order_history (
        id_order_history INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, id_employee INT UNSIGNED NOT NULL,
        id_order INT UNSIGNED NOT NULL, id_order_state INT UNSIGNED NOT NULL, date_add DATETIME NOT NULL,
        KEY id_order (id_order))""",
]

# Real Odoo 17 columns (base, sale), trimmed likewise. Odoo does not index res_partner.email; the example
# links pre-existing customers by it, so a deployment adds that index (without it: a warning).
ERP_TABLES = [
    """CREATE TABLE res_country (
        id serial PRIMARY KEY, name jsonb NOT NULL, code varchar(2) UNIQUE, phone_code int4, currency_id int4)""",
    """CREATE TABLE res_partner (
        id serial PRIMARY KEY, name varchar, complete_name varchar, type varchar, parent_id int4,
        commercial_partner_id int4, is_company boolean, company_name varchar, ref varchar, email varchar,
        phone varchar, mobile varchar, street varchar, street2 varchar, zip varchar, city varchar,
        state_id int4, country_id int4, vat varchar, company_registry varchar, lang varchar, website varchar,
        comment text, active boolean, company_id int4, customer_rank int4,
        create_date timestamp, write_date timestamp)""",
    "CREATE INDEX res_partner_email_index ON res_partner (email)",
    """CREATE TABLE sale_order (
        id serial PRIMARY KEY, name varchar NOT NULL, state varchar, partner_id int4 NOT NULL,
        partner_invoice_id int4 NOT NULL, partner_shipping_id int4 NOT NULL, date_order timestamp NOT NULL,
        client_order_ref varchar, origin varchar, company_id int4 NOT NULL, currency_id int4,
        pricelist_id int4, note text, amount_untaxed numeric, amount_total numeric,
        create_date timestamp, write_date timestamp)""",
]


def _run_shop(database: MariaDatabase, *statements: str) -> None:
    with contextlib.closing(mariadb_connect(database.admin, database.name)) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _run_erp(database: PgDatabase, *statements: str) -> None:
    with psycopg.connect(database.dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def engines(pg_database: PgDatabase, mariadb_database: MariaDatabase) -> Iterator[dict[str, Engine]]:
    admin = mariadb_database.admin
    shop_url = URL.create(
        "mysql+pymysql",
        username=str(admin["user"]),
        password=str(admin["password"]),
        host=str(admin["host"]),
        port=int(admin["port"]),
        database=mariadb_database.name,
    )
    erp_url = make_url(pg_database.dsn).set(drivername="postgresql+psycopg")
    created = {"shop": create_engine(shop_url), "erp": create_engine(erp_url)}
    yield created
    for engine in created.values():
        engine.dispose()


def test_the_shipped_prestashop_odoo_mappings_fit_the_demo_schemas(
    engines: dict[str, Engine], pg_database: PgDatabase, mariadb_database: MariaDatabase
) -> None:
    with contextlib.closing(mariadb_connect(mariadb_database.admin, mariadb_database.name)) as conn:
        load_shop_schema(conn, replicator_tables=True)
    with psycopg.connect(pg_database.dsn) as conn:
        load_erp_schema(conn)
    mappings = load_mappings(SHIPPED).with_namespace("shop", mariadb_database.name)

    assert validate_against_databases(mappings, engines) == []


def test_example_mapping_validates_against_real_column_names(
    engines: dict[str, Engine], pg_database: PgDatabase, mariadb_database: MariaDatabase
) -> None:
    _run_shop(mariadb_database, *SHOP_TABLES)
    _run_erp(pg_database, *ERP_TABLES)
    mappings = load_mappings(EXAMPLE).with_namespace("shop", mariadb_database.name)

    assert validate_against_databases(mappings, engines) == []


def test_example_mapping_without_the_email_index_warns(
    engines: dict[str, Engine], pg_database: PgDatabase, mariadb_database: MariaDatabase
) -> None:
    _run_shop(mariadb_database, *SHOP_TABLES)
    _run_erp(pg_database, *ERP_TABLES, "DROP INDEX res_partner_email_index")
    mappings = load_mappings(EXAMPLE).with_namespace("shop", mariadb_database.name)

    assert validate_against_databases(mappings, engines) == [
        f"{EXAMPLE}: rules[0].match_on: warning: erp public.res_partner has no index on (email): "
        "linking rows scans the table"
    ]


def test_example_mapping_turns_a_real_order_state_change_into_ops(mariadb_database: MariaDatabase) -> None:
    """The example also runs: an ERP confirmation moves the shop order and appends a history row."""
    mappings = load_mappings(EXAMPLE).with_namespace("shop", mariadb_database.name)
    before = {"id": 7, "state": "draft", "origin": "PS#42", "write_date": 1710074096000000}
    after = {**before, "state": "sale", "write_date": 1719792000000000}  # 2024-07-01 00:00 UTC
    envelope = {
        "before": before,
        "after": after,
        "op": "u",
        "source": {"name": "erp", "connector": "postgresql", "db": "erp", "schema": "public",
                   "table": "sale_order", "ts_ms": 1719792000123, "lsn": 5000},
    }  # fmt: skip

    state, history = MappingEngine(mappings).ops_for(envelope)

    assert (state.kind, state.table, state.identity) == (
        OpKind.UPDATE,
        f"{mariadb_database.name}.ps_orders",
        ("order", "7"),
    )
    assert state.fields["current_state"].value == 10
    assert (state.fields["current_state"].policy, state.fields["current_state"].rank) == (Policy.MONOTONIC, 0)
    assert (state.fields["valid"].value, state.fields["valid"].rank) == (0, 0)
    assert str(state.fields["date_upd"].value) == "2024-07-01 02:00:00"  # Paris summer time
    assert (history.kind, history.table) == (OpKind.INSERT, f"{mariadb_database.name}.ps_order_history")
    assert history.fields["id_order_state"].value == 10
    assert history.fields["id_employee"].value == 0


BROKEN_MAPPING = """
systems:
  shop: {kind: mariadb, priority: 2, source_name: shop, namespace: {shop_db}}
  erp: {kind: postgresql, priority: 1, source_name: erp}
rules:
  - name: customers
    source: {system: shop, table: ps_customer, key: [id_customer]}
    target: {system: erp, table: res_partner}
    identity: customer
    on_delete: hard
    fields:
      name: {concat: [firstname, lastname]}
      email: emial
      phone: email
      customer_rank: email
      comment: {from: note, policy: delta}
      active: active
  - name: tags
    source: {system: shop, table: ps_customer, key: [id_customer]}
    target: {system: erp, table: tag}
    key: {code: email}
    on_delete: ignore
    fields:
      label: {from: firstname, max_length: 300}
  - name: vanished
    source: {system: shop, table: ps_gone, key: [id]}
    target: {system: erp, table: tag}
    key: {code: id}
    on_delete: ignore
    fields:
      label: name
"""


def test_every_problem_of_a_broken_mapping_is_listed(
    engines: dict[str, Engine], pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path
) -> None:
    _run_shop(
        mariadb_database,
        """CREATE TABLE ps_customer (id_customer INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
           firstname VARCHAR(255) NOT NULL, lastname VARCHAR(255) NOT NULL, email VARCHAR(255) NOT NULL,
           note TEXT, active TINYINT(1) UNSIGNED NOT NULL DEFAULT 0)""",
    )
    _run_erp(
        pg_database,
        """CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar(10), email varchar, customer_rank int4,
           comment text, active boolean)""",
        "CREATE TABLE tag (code varchar(255), label varchar(100))",
    )
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_MAPPING.replace("{shop_db}", mariadb_database.name))
    mappings = load_mappings(path)
    shop = f"shop {mariadb_database.name}"

    problems = validate_against_databases(mappings, engines)

    assert problems == [
        f"{path}: rules[0].fields.email.from: {shop}.ps_customer has no column 'emial'",
        f"{path}: rules[0].fields.name: erp public.res_partner.name is VARCHAR(10): it holds 10 characters, "
        "shorter than the 511 the values may have",
        f"{path}: rules[0].fields.phone: erp public.res_partner has no column 'phone'",
        f"{path}: rules[0].fields.customer_rank: erp public.res_partner.customer_rank is INTEGER: "
        "it cannot hold text of up to 255 characters",
        f"{path}: rules[0].fields.comment.policy: delta adds numbers, but erp public.res_partner.comment is TEXT",
        f"{path}: rules[0].fields.active: erp public.res_partner.active is BOOLEAN: it cannot hold integers",
        f"{path}: rules[1].fields.label: erp public.tag.label is VARCHAR(100): it holds 100 characters, "
        "shorter than the 300 the values may have",
        f"{path}: rules[1].key: erp public.tag: columns (code) are not unique (no primary key or unique index "
        "over them)",
        f"{path}: rules[2].source.table: shop table {mariadb_database.name}.ps_gone does not exist",
        f"{path}: rules[2].key: erp public.tag: columns (code) are not unique (no primary key or unique index "
        "over them)",
    ]


def test_sql_in_an_identifier_is_refused_when_loading(tmp_path: Path) -> None:
    path = tmp_path / "injected.yaml"
    path.write_text(
        textwrap.dedent(
            """
            systems:
              shop: {kind: mariadb, priority: 2, source_name: shop, namespace: prestashop}
              erp: {kind: postgresql, priority: 1, source_name: erp}
            rules:
              - name: customers
                source: {system: shop, table: "ps_customer; DROP TABLE ps_orders", key: [id_customer]}
                target: {system: erp, table: res_partner}
                identity: customer
                on_delete: hard
                fields:
                  "name = (SELECT passwd FROM ps_employee)": firstname
            """
        )
    )

    with pytest.raises(ConfigError) as caught:
        load_mappings(path)

    assert caught.value.problems == [
        f"{path}: rules[0].source.table: 'ps_customer; DROP TABLE ps_orders' is not a plain table or column name "
        "(use letters, digits, '_' and '$', start with a letter or '_', at most 63 characters; names are never SQL)",
        f"{path}: rules[0].fields['name = (SELECT passwd FROM ps_employee)']: 'name = (SELECT passwd FROM "
        "ps_employee)' is not a plain table or column name (use letters, digits, '_' and '$', start with a letter "
        "or '_', at most 63 characters; names are never SQL)",
    ]


STOCK_AND_LINES = """
systems:
  shop: {kind: mariadb, priority: 2, source_name: shop, namespace: {shop_db}}
  erp: {kind: postgresql, priority: 1, source_name: erp}
rules:
  - name: stock
    source: {system: erp, table: stock_quant, key: [id]}
    target: {system: shop, table: ps_stock_available}
    key:
      id_product: {lookup: {identity: product, from: product_id}}
      id_product_attribute: {const: 0}
      id_shop: {const: 1}
      id_shop_group: {const: 1}
    on_delete: recompute
    fields:
      quantity:
        aggregate:
          of: [quantity]
          minus: [reserved_qty]
          table: mirror_quant
          group_by: {product_id: product_id}
          join: {table: mirror_location, via: location_id, where: [{column: usage, eq: internal}]}
        cast: int
        owner: erp
  - name: products
    source: {system: shop, table: ps_product, key: [id_product]}
    target: {system: erp, table: product_product}
    identity: product
    on_delete: ignore
    fields:
      default_code: reference
      create_date: date_add
  - name: lines
    source: {system: shop, table: ps_order_detail, key: [id_order_detail]}
    target: {system: erp, table: sale_order_line}
    identity: line
    on_delete: hard
    fields:
      product_id: {lookup: {table: product_product, match: {default_code: product_reference}}}
      product_uom_qty: product_quantity
      price_unit: unit_price_tax_excl
      state: {const: draft, policy: monotonic, order: [draft, sale]}
"""


def test_aggregates_lookups_policies_and_inserts_are_checked(
    engines: dict[str, Engine], pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path
) -> None:
    _run_shop(
        mariadb_database,
        """CREATE TABLE ps_stock_available (id_stock_available INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
           id_product INT UNSIGNED NOT NULL, id_product_attribute INT UNSIGNED NOT NULL,
           id_shop INT UNSIGNED NOT NULL, id_shop_group INT UNSIGNED NOT NULL, quantity INT NOT NULL DEFAULT 0,
           UNIQUE KEY product_sqlstock (id_product, id_product_attribute, id_shop, id_shop_group))""",
        "CREATE TABLE mirror_location (id INT NOT NULL PRIMARY KEY, `usage` VARCHAR(16) NOT NULL)",
        """CREATE TABLE mirror_quant (id INT NOT NULL PRIMARY KEY, product_id INT NOT NULL, location_id INT NOT NULL,
           quantity DECIMAL(20,6), reserved_quantity DECIMAL(20,6))""",
        """CREATE TABLE ps_product (id_product INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
           reference VARCHAR(64), date_add DATETIME NOT NULL)""",
        """CREATE TABLE ps_order_detail (id_order_detail INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
           product_reference VARCHAR(64), product_quantity INT UNSIGNED NOT NULL,
           unit_price_tax_excl DECIMAL(20,6) NOT NULL DEFAULT 0)""",
    )
    _run_erp(
        pg_database,
        "CREATE TABLE stock_location (id serial PRIMARY KEY, usage varchar NOT NULL)",
        """CREATE TABLE stock_quant (id serial PRIMARY KEY, product_id int4 NOT NULL, location_id int4 NOT NULL,
           quantity numeric, reserved_quantity numeric)""",
        "CREATE TABLE product_product (id serial PRIMARY KEY, default_code varchar, create_date timestamp)",
        "CREATE TYPE line_state AS ENUM ('draft', 'sale', 'cancel')",
        """CREATE TABLE sale_order_line (id serial PRIMARY KEY, product_id int4 NOT NULL, name text NOT NULL,
           product_uom_qty numeric, price_unit numeric(12,2), state line_state)""",
    )
    path = tmp_path / "stock.yaml"
    path.write_text(STOCK_AND_LINES.replace("{shop_db}", mariadb_database.name))

    problems = validate_against_databases(load_mappings(path), engines)

    assert problems == [
        f"{path}: rules[0].fields.quantity.aggregate.minus[0]: shop {mariadb_database.name}.mirror_quant has no "
        "column 'reserved_qty'",
        f"{path}: rules[1].fields.create_date: erp public.product_product.create_date is TIMESTAMP: it would "
        "receive date-time values as they travel (epoch numbers or ISO text): add cast: datetime, or tz",
        f"{path}: rules[2].fields.product_id.lookup.match: warning: erp public.product_product has no index on "
        "(default_code): every look-up scans the table",
        f"{path}: rules[2].fields.price_unit: erp public.sale_order_line.price_unit is NUMERIC(12, 2): it keeps 2 "
        "decimal places; the values have 6 (add cast: decimal, scale: 2)",
        f"{path}: rules[2].fields.state.order: erp public.sale_order_line.state may hold cancel, which the order "
        "does not rank",
        f"{path}: rules[2].fields: erp public.sale_order_line.name is NOT NULL without a default and this rule "
        "does not write it: its inserts would fail",
    ]


LOCAL_TIMES = """
systems:
  shop: {kind: mariadb, priority: 2, source_name: shop, namespace: {shop_db}}
  erp: {kind: postgresql, priority: 1, source_name: erp}
rules:
  - name: {name}
    source: {system: erp, table: note, key: [id]}
    target: {system: shop, table: {table}, local_time: {local_time}}
    mode: update
    key: {id: id}
    on_delete: ignore
    fields:
      body: body
"""


@pytest.mark.parametrize(
    ("table", "local_time", "problem"),
    [
        ("ps_note_us", "{column: date_upd, tz: Europe/Paris}",
         "rules[0].target.local_time.unit: shop {db}.ps_note_us.date_upd travels in microseconds in change events: "
         "say unit: us"),
        ("ps_note_ms", "{column: date_upd, tz: Europe/Paris, unit: us}",
         "rules[0].target.local_time.unit: shop {db}.ps_note_ms.date_upd travels in milliseconds in change events: "
         "say unit: ms"),
        ("ps_note_ms", "{column: body, tz: Europe/Paris}",
         "rules[0].target.local_time.column: shop {db}.ps_note_ms.body is VARCHAR(50), not a date-time column"),
        ("ps_note_ms", "{column: date_add, tz: Europe/Paris}",
         "rules[0].target.local_time.column: shop {db}.ps_note_ms has no column 'date_add'"),
        ("ps_note_us", "{column: date_upd, tz: Europe/Paris, unit: us}", None),
    ],
    ids=["µs column, ms said", "ms column, µs said", "not a date", "missing column", "fits"],
)
def test_a_local_time_must_be_a_date_time_column_travelling_in_the_unit_it_says(
    engines: dict[str, Engine], pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    table: str, local_time: str, problem: str | None,
) -> None:
    _run_shop(
        mariadb_database,
        "CREATE TABLE ps_note_ms (id INT NOT NULL PRIMARY KEY, body VARCHAR(50), date_upd DATETIME NOT NULL)",
        "CREATE TABLE ps_note_us (id INT NOT NULL PRIMARY KEY, body VARCHAR(50), date_upd DATETIME(6) NOT NULL)",
    )
    _run_erp(pg_database, "CREATE TABLE note (id int PRIMARY KEY, body varchar(50))")
    path = tmp_path / "notes.yaml"
    path.write_text(LOCAL_TIMES.replace("{shop_db}", mariadb_database.name).replace("{name}", "notes")
                    .replace("{table}", table).replace("{local_time}", local_time))

    problems = validate_against_databases(load_mappings(path), engines)

    assert problems == ([] if problem is None else [f"{path}: " + problem.replace("{db}", mariadb_database.name)])
