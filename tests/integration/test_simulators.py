"""The business simulators against real MariaDB and PostgreSQL databases loaded with the demo schemas.

No replicator runs here: shop orders that the replicator would import into the ERP are inserted by the test
as the connector would write them (state 'sale', origin 'PS#<id>', name 'PS<id>').
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest

from replicator.demo.schemas import load_erp_schema, load_shop_schema
from replicator.devstack import mariadb_connect
from replicator.simulate import ErpSimulator, ShopSimulator
from replicator.simulate.shop import ShopConnection
from tests.conftest import MariaDatabase, PgDatabase

pytestmark = pytest.mark.integration

ShopConnect = Callable[[], ShopConnection]
ErpConnect = Callable[[], psycopg.Connection[Any]]


# --------------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------------------


def _shop_connect(admin: dict[str, str | int], database: str) -> ShopConnect:
    def connect() -> ShopConnection:
        return mariadb_connect(admin, database)

    with contextlib.closing(connect()) as conn:
        load_shop_schema(conn)
    return connect


def _erp_connect(dsn: str) -> ErpConnect:
    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn)

    with connect() as conn:
        load_erp_schema(conn)
    return connect


@pytest.fixture
def shop_connect(mariadb_database: MariaDatabase) -> ShopConnect:
    return _shop_connect(mariadb_database.admin, mariadb_database.name)


@pytest.fixture
def erp_connect(pg_database: PgDatabase) -> ErpConnect:
    return _erp_connect(pg_database.dsn)


@pytest.fixture
def shop(shop_connect: ShopConnect) -> Iterator[ShopSimulator]:
    simulator = ShopSimulator(shop_connect, seed=1)
    yield simulator
    simulator.close()


@pytest.fixture
def erp(erp_connect: ErpConnect) -> Iterator[ErpSimulator]:
    simulator = ErpSimulator(erp_connect, seed=1)
    yield simulator
    simulator.close()


@pytest.fixture
def shop_db(shop_connect: ShopConnect) -> Iterator[ShopConnection]:
    """A second, autocommit session for the test's own reads and writes."""
    with contextlib.closing(shop_connect()) as conn:
        yield conn


@pytest.fixture
def erp_db(erp_connect: ErpConnect) -> Iterator[psycopg.Connection[Any]]:
    with erp_connect() as conn:
        conn.autocommit = True
        yield conn


@contextlib.contextmanager
def _another_shop(admin: dict[str, str | int]) -> Iterator[ShopConnect]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(mariadb_connect(admin)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield _shop_connect(admin, name)
    finally:
        with contextlib.closing(mariadb_connect(admin)) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextlib.contextmanager
def _another_erp(pg: PgDatabase) -> Iterator[ErpConnect]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _erp_connect(urlunsplit(urlsplit(pg.dsn)._replace(path=f"/{name}")))
    finally:
        with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(conn: ShopConnection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def one(conn: ShopConnection, sql: str, *args: Any) -> tuple[Any, ...]:
    found = rows(conn, sql, *args)
    assert len(found) == 1, found
    return found[0]


def stock(conn: ShopConnection, id_product: int) -> tuple[int, int, int]:
    quantity, physical, reserved = one(
        conn,
        "SELECT quantity, physical_quantity, reserved_quantity FROM ps_stock_available "
        "WHERE id_product = %s AND id_product_attribute = 0",
        id_product,
    )
    return int(quantity), int(physical), int(reserved)


def pg_one(conn: psycopg.Connection[Any], sql: str, *args: Any) -> tuple[Any, ...]:
    found = conn.execute(sql, args).fetchall()
    assert len(found) == 1, found
    return tuple(found[0])


def product_id(conn: psycopg.Connection[Any], code: str) -> int:
    return int(pg_one(conn, "SELECT id FROM product_product WHERE default_code = %s", code)[0])


def wh_quant(conn: psycopg.Connection[Any], pid: int) -> tuple[int, int]:
    """(on hand, reserved) in WH/Stock; the tests only move whole units."""
    quantity, reserved = pg_one(
        conn,
        "SELECT q.quantity, q.reserved_quantity FROM stock_quant q JOIN stock_location l ON l.id = q.location_id "
        "WHERE l.complete_name = 'WH/Stock' AND q.product_id = %s",
        pid,
    )
    assert quantity == int(quantity) and reserved == int(reserved)
    return int(quantity), int(reserved)


def quant_at(conn: psycopg.Connection[Any], pid: int, location: str) -> Decimal:
    found = conn.execute(
        "SELECT q.quantity FROM stock_quant q JOIN stock_location l ON l.id = q.location_id "
        "WHERE l.complete_name = %s AND q.product_id = %s",
        (location, pid),
    ).fetchall()
    assert len(found) <= 1
    return Decimal(found[0][0]) if found else Decimal(0)


def import_shop_order(
    conn: psycopg.Connection[Any], id_order: int, lines: list[tuple[str, int]], *, partner_id: int = 4
) -> int:
    """What the connector writes for a shop order: a confirmed sale order with its lines."""
    so_id = int(
        pg_one(
            conn,
            "INSERT INTO sale_order (name, state, partner_id, partner_invoice_id, partner_shipping_id, origin, "
            "client_order_ref, currency_id, company_id, warehouse_id) "
            "VALUES (%s, 'sale', %s, %s, %s, %s, 'ABCDEFGHI', 1, 1, 1) RETURNING id",
            f"PS{id_order}",
            partner_id,
            partner_id,
            partner_id,
            f"PS#{id_order}",
        )[0]
    )
    for code, qty in lines:
        conn.execute(
            "INSERT INTO sale_order_line (order_id, product_id, name, product_uom_qty, price_unit, state) "
            "SELECT %s, pp.id, pt.name->>'en_US', %s, pt.list_price, 'sale' FROM product_product pp "
            "JOIN product_template pt ON pt.id = pp.product_tmpl_id WHERE pp.default_code = %s",
            (so_id, qty, code),
        )
    return so_id


# --------------------------------------------------------------------------------------------------------------
# Shop
# --------------------------------------------------------------------------------------------------------------


def test_place_order_takes_stock_and_records_history(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    before = {pid: stock(shop_db, pid) for pid in (1, 2)}
    id_order = shop.place_order(1, [(1, 2), (2, 1)])
    assert id_order is not None

    for pid, qty in ((1, 2), (2, 1)):
        quantity, physical, reserved = stock(shop_db, pid)
        assert quantity == before[pid][0] - qty
        assert physical == before[pid][1]  # nothing has left the warehouse yet
        assert reserved == before[pid][2] + qty
    reference, state, valid, delivery, invoice, products, products_wt, paid, paid_excl, paid_real, module = one(
        shop_db,
        "SELECT reference, current_state, valid, id_address_delivery, id_address_invoice, total_products, "
        "total_products_wt, total_paid, total_paid_tax_excl, total_paid_real, module FROM ps_orders "
        "WHERE id_order = %s",
        id_order,
    )
    assert len(reference) == 9 and reference.isalpha() and reference.isupper()
    assert (state, valid, module) == (10, 0, "ps_wirepayment")
    assert delivery == invoice == 1  # Alice's only address
    assert products == paid_excl == Decimal("37.30")  # 2 x 8.90 + 19.50
    assert products_wt == paid == Decimal("44.76")  # 2 x 10.68 + 23.40
    assert paid_real == 0
    details = rows(
        shop_db,
        "SELECT product_id, product_reference, product_name, product_quantity, unit_price_tax_excl, "
        "total_price_tax_incl, tax_rate, id_order_invoice FROM ps_order_detail WHERE id_order = %s "
        "ORDER BY product_id",
        id_order,
    )
    assert [d[:4] for d in details] == [
        (1, "DEMO-001", "Ceramic Coffee Mug", 2),
        (2, "DEMO-002", "Stainless Steel Water Bottle", 1),
    ]
    assert details[0][4:] == (Decimal("8.900000"), Decimal("21.360000"), Decimal("20.000"), None)
    assert rows(shop_db, "SELECT id_order_state, id_employee FROM ps_order_history WHERE id_order = %s", id_order) == [
        (10, 0)
    ]
    assert shop.counts["place_order"] == 1


def test_order_beyond_stock_is_refused_and_writes_nothing(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    before = stock(shop_db, 1)
    assert shop.place_order(1, [(2, 1), (1, before[0] + 1)]) is None
    assert stock(shop_db, 1) == before
    assert one(shop_db, "SELECT COUNT(*) FROM ps_orders") == (0,)
    assert one(shop_db, "SELECT COUNT(*) FROM ps_order_detail") == (0,)
    assert shop.failures["place_order"] == 1

    assert shop.place_order(1, [(1, before[0])]) is not None  # exactly the stock is fine
    assert stock(shop_db, 1)[0] == 0


def test_pay_order_invoices_and_records_one_payment(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    id_order = shop.place_order(2, [(5, 1)])
    assert id_order is not None
    assert shop.pay_order(id_order) is True

    reference, state, valid, invoice_number, total, paid_real = one(
        shop_db,
        "SELECT reference, current_state, valid, invoice_number, total_paid_tax_incl, total_paid_real "
        "FROM ps_orders WHERE id_order = %s",
        id_order,
    )
    assert (state, valid, invoice_number) == (2, 1, 1)
    assert paid_real == total == Decimal("106.80")
    invoices = rows(shop_db, "SELECT id_order_invoice, number, total_paid_tax_incl FROM ps_order_invoice")
    assert [(number, amount) for _, number, amount in invoices] == [(1, total)]
    payments = rows(shop_db, "SELECT id_order_payment, order_reference, amount, payment_method FROM ps_order_payment")
    assert [p[1:] for p in payments] == [(reference, total, "Bank wire")]
    assert rows(shop_db, "SELECT id_order_invoice, id_order_payment, id_order FROM ps_order_invoice_payment") == [
        (invoices[0][0], payments[0][0], id_order)
    ]
    assert rows(shop_db, "SELECT DISTINCT id_order_invoice FROM ps_order_detail WHERE id_order = %s", id_order) == [
        (invoices[0][0],)
    ]
    history = rows(
        shop_db, "SELECT id_order_state FROM ps_order_history WHERE id_order = %s ORDER BY id_order_history", id_order
    )
    assert history == [(10,), (2,)]

    assert shop.pay_order(id_order) is False  # only an order awaiting a bank wire can be paid
    assert one(shop_db, "SELECT COUNT(*) FROM ps_order_payment") == (1,)
    assert one(shop_db, "SELECT COUNT(*) FROM ps_order_invoice") == (1,)
    assert shop.failures["pay_order"] == 1

    second = shop.place_order(3, [(6, 1)])
    assert second is not None and shop.pay_order(second)
    assert one(shop_db, "SELECT invoice_number FROM ps_orders WHERE id_order = %s", second) == (2,)


def test_order_paid_by_card_at_checkout(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    id_order = shop.place_order(4, [(3, 2)], paid=True)
    assert id_order is not None
    reference, state, valid, payment = one(
        shop_db, "SELECT reference, current_state, valid, payment FROM ps_orders WHERE id_order = %s", id_order
    )
    assert (state, valid, payment) == (2, 1, "Payment by card")
    assert rows(shop_db, "SELECT order_reference, payment_method FROM ps_order_payment") == [
        (reference, "Payment by card")
    ]
    assert one(shop_db, "SELECT COUNT(*) FROM ps_order_invoice WHERE id_order = %s", id_order) == (1,)
    assert rows(shop_db, "SELECT id_order_state FROM ps_order_history WHERE id_order = %s", id_order) == [(2,)]


def test_cancel_order_gives_the_stock_back(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    before = stock(shop_db, 7)
    id_order = shop.place_order(5, [(7, 3)])
    assert id_order is not None
    assert stock(shop_db, 7) == (before[0] - 3, before[1], before[2] + 3)

    assert shop.cancel_order(id_order) is True
    assert stock(shop_db, 7) == before
    assert one(shop_db, "SELECT current_state, valid FROM ps_orders WHERE id_order = %s", id_order) == (6, 0)
    history = rows(
        shop_db, "SELECT id_order_state FROM ps_order_history WHERE id_order = %s ORDER BY id_order_history", id_order
    )
    assert history == [(10,), (6,)]
    assert shop.cancel_order(id_order) is False

    # Once the warehouse is processing an order (state 3, set by the connector), the shop no longer cancels it.
    processing = shop.place_order(5, [(7, 1)], paid=True)
    assert processing is not None
    with shop_db.cursor() as cur:
        cur.execute("UPDATE ps_orders SET current_state = 3 WHERE id_order = %s", (processing,))
    assert shop.cancel_order(processing) is False
    assert stock(shop_db, 7)[0] == before[0] - 1


def test_sign_up_and_edit_customer(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    id_customer = shop.sign_up()
    email, passwd, group, date_add, date_upd, guest, deleted = one(
        shop_db,
        "SELECT email, passwd, id_default_group, date_add, date_upd, is_guest, deleted FROM ps_customer "
        "WHERE id_customer = %s",
        id_customer,
    )
    assert email == email.lower() and "@" in email
    assert passwd.startswith("$2y$10$") and len(passwd) == 60
    assert (group, guest, deleted) == (3, 0, 0)
    assert date_add == date_upd
    paris_now = datetime.now(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    assert abs(paris_now - date_add) < timedelta(minutes=1)  # shop-local time, not UTC
    assert one(shop_db, "SELECT COUNT(*) FROM ps_address WHERE id_customer = %s AND deleted = 0", id_customer) == (1,)

    shop.edit_customer(id_customer, firstname="Zoé", company="Zoé & Co")
    assert one(shop_db, "SELECT firstname, company FROM ps_customer WHERE id_customer = %s", id_customer) == (
        "Zoé",
        "Zoé & Co",
    )
    shop.edit_customer(id_customer)  # random realistic change
    assert shop.counts["edit_customer"] == 2
    with pytest.raises(ValueError, match="id_customer"):
        shop.edit_customer(id_customer, id_customer=99)
    with pytest.raises(LookupError):
        shop.edit_customer(999_999, firstname="Nobody")

    for _ in range(20):
        shop.sign_up()
    emails = [e for (e,) in rows(shop_db, "SELECT email FROM ps_customer")]
    assert len(emails) == len(set(emails))


def test_edit_address_copies_an_address_used_by_an_order(shop: ShopSimulator, shop_db: ShopConnection) -> None:
    id_customer = shop.sign_up()
    (id_address,) = one(shop_db, "SELECT id_address FROM ps_address WHERE id_customer = %s", id_customer)

    assert shop.edit_address(id_address, city="Lyon", postcode="69001") == id_address  # unused: in place
    assert one(shop_db, "SELECT city, deleted FROM ps_address WHERE id_address = %s", id_address) == ("Lyon", 0)

    id_order = shop.place_order(id_customer, [(8, 1)])
    assert id_order is not None
    new_id = shop.edit_address(id_address, address1="1 Rue Neuve")
    assert new_id != id_address
    old = one(shop_db, "SELECT address1, city, deleted FROM ps_address WHERE id_address = %s", id_address)
    new = one(shop_db, "SELECT address1, city, deleted, id_customer FROM ps_address WHERE id_address = %s", new_id)
    assert old[2] == 1 and old[0] != "1 Rue Neuve"
    assert new == ("1 Rue Neuve", "Lyon", 0, id_customer)
    # The order keeps pointing at the address it was placed with; the next order uses the new one.
    assert one(shop_db, "SELECT id_address_delivery FROM ps_orders WHERE id_order = %s", id_order) == (id_address,)
    next_order = shop.place_order(id_customer, [(8, 1)])
    assert one(shop_db, "SELECT id_address_delivery FROM ps_orders WHERE id_order = %s", next_order) == (new_id,)
    with pytest.raises(LookupError):
        shop.edit_address(id_address, city="Paris")  # a deleted address is not editable


def test_shop_random_steps_keep_invariants_and_replay(
    shop_connect: ShopConnect, shop_db: ShopConnection, mariadb_database: MariaDatabase
) -> None:
    simulator = ShopSimulator(shop_connect, seed=7)
    names = [simulator.step() for _ in range(200)]
    simulator.close()
    assert None not in names
    assert sum(simulator.counts.values()) == 200
    assert {"place_order", "sign_up", "edit_customer", "pay_order"} <= set(simulator.counts)

    assert one(shop_db, "SELECT COUNT(*) FROM ps_stock_available WHERE quantity < 0 OR reserved_quantity < 0") == (0,)
    assert one(
        shop_db, "SELECT COUNT(*) FROM ps_stock_available WHERE physical_quantity != quantity + reserved_quantity"
    ) == (0,)
    # Reserved = what open (not cancelled) orders hold.
    mismatched = rows(
        shop_db,
        "SELECT sa.id_product FROM ps_stock_available sa LEFT JOIN ("
        " SELECT od.product_id, SUM(od.product_quantity) AS held FROM ps_order_detail od"
        " JOIN ps_orders o ON o.id_order = od.id_order WHERE o.current_state != 6 GROUP BY od.product_id"
        ") h ON h.product_id = sa.id_product WHERE sa.reserved_quantity != COALESCE(h.held, 0)",
    )
    assert mismatched == []
    # The newest history row of every order is its current state.
    assert (
        rows(
            shop_db,
            "SELECT o.id_order FROM ps_orders o JOIN ps_order_history h ON h.id_order_history = ("
            " SELECT MAX(id_order_history) FROM ps_order_history WHERE id_order = o.id_order"
            ") WHERE h.id_order_state != o.current_state",
        )
        == []
    )
    total, distinct = one(shop_db, "SELECT COUNT(*), COUNT(DISTINCT reference) FROM ps_orders")
    assert total == distinct
    assert (
        rows(
            shop_db,
            "SELECT p.id_order_payment FROM ps_order_payment p "
            "LEFT JOIN ps_orders o ON o.reference = p.order_reference WHERE o.id_order IS NULL",
        )
        == []
    )

    with _another_shop(mariadb_database.admin) as connect_twin:
        twin = ShopSimulator(connect_twin, seed=7)
        twin_names = [twin.step() for _ in range(200)]
        twin.close()
    assert twin_names == names
    assert twin.counts == simulator.counts
    assert twin.failures == simulator.failures


# --------------------------------------------------------------------------------------------------------------
# ERP
# --------------------------------------------------------------------------------------------------------------


def test_confirm_and_reserve_a_shop_order(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    so_id = import_shop_order(erp_db, 1, [("DEMO-001", 3), ("DEMO-002", 2)])
    mug, bottle = product_id(erp_db, "DEMO-001"), product_id(erp_db, "DEMO-002")
    assert erp.pending_shop_orders() == [so_id]
    assert erp.free_quantity(mug) == 41

    assert erp.confirm_and_reserve(so_id) is True
    assert wh_quant(erp_db, mug) == (41, 3)  # reserved, still on hand
    assert wh_quant(erp_db, bottle) == (42, 2)
    assert erp.free_quantity(mug) == 38
    picking_id, name, origin, state, source, destination = pg_one(
        erp_db,
        "SELECT p.id, p.name, p.origin, p.state, s.complete_name, d.complete_name FROM stock_picking p "
        "JOIN stock_location s ON s.id = p.location_id JOIN stock_location d ON d.id = p.location_dest_id "
        "WHERE p.sale_id = %s",
        so_id,
    )
    assert (name, origin, state, source, destination) == (
        "WH/OUT/00001",
        "PS1",
        "assigned",
        "WH/Stock",
        "Partners/Customers",
    )
    moves = erp_db.execute(
        "SELECT product_id, product_uom_qty, quantity, state, origin FROM stock_move WHERE picking_id = %s ORDER BY id",
        (picking_id,),
    ).fetchall()
    assert moves == [(mug, 3, 3, "assigned", "PS1"), (bottle, 2, 2, "assigned", "PS1")]
    assert pg_one(erp_db, "SELECT delivery_status, write_uid FROM sale_order WHERE id = %s", so_id) == ("pending", 2)
    assert erp_db.execute("SELECT DISTINCT state FROM sale_order_line WHERE order_id = %s", (so_id,)).fetchall() == [
        ("sale",)
    ]
    assert erp.pending_shop_orders() == []
    assert erp.confirm_and_reserve(so_id) is False  # already has its delivery


def test_confirm_receives_a_shortfall_first(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    mug = product_id(erp_db, "DEMO-001")
    so_id = import_shop_order(erp_db, 2, [("DEMO-001", 100)])
    assert erp.confirm_and_reserve(so_id)
    on_hand, reserved = wh_quant(erp_db, mug)
    assert reserved == 100
    assert 100 <= on_hand <= 110  # the 59 missing units plus 0-10 spare ones were received
    assert quant_at(erp_db, mug, "Partners/Vendors") == -(on_hand - 41)
    assert erp.free_quantity(mug) >= 0


def test_deliver_ships_the_reserved_stock(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    lamp = product_id(erp_db, "DEMO-007")
    so_id = import_shop_order(erp_db, 3, [("DEMO-007", 4)])
    assert erp.deliver(so_id) is False  # nothing reserved yet
    assert erp.confirm_and_reserve(so_id)
    assert erp.deliver(so_id) is True

    assert wh_quant(erp_db, lamp) == (47 - 4, 0)
    assert quant_at(erp_db, lamp, "Partners/Customers") == 4
    state, date_done = pg_one(erp_db, "SELECT state, date_done FROM stock_picking WHERE sale_id = %s", so_id)
    assert state == "done" and date_done is not None
    assert pg_one(erp_db, "SELECT DISTINCT state FROM stock_move") == ("done",)
    assert pg_one(erp_db, "SELECT qty_delivered FROM sale_order_line WHERE order_id = %s", so_id) == (4,)
    assert pg_one(erp_db, "SELECT delivery_status FROM sale_order WHERE id = %s", so_id) == ("full",)
    assert erp.deliver(so_id) is False
    assert erp.cancel(so_id) is False  # delivered orders are not cancelled


def test_cancel_releases_the_reservation(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    mug = product_id(erp_db, "DEMO-001")
    so_id = import_shop_order(erp_db, 4, [("DEMO-001", 5)])
    assert erp.confirm_and_reserve(so_id)
    assert erp.cancel(so_id) is True
    assert wh_quant(erp_db, mug) == (41, 0)
    assert pg_one(erp_db, "SELECT state FROM sale_order WHERE id = %s", so_id) == ("cancel",)
    assert pg_one(erp_db, "SELECT state FROM stock_picking WHERE sale_id = %s", so_id) == ("cancel",)
    assert pg_one(erp_db, "SELECT DISTINCT state FROM stock_move") == ("cancel",)
    assert pg_one(erp_db, "SELECT DISTINCT state FROM sale_order_line WHERE order_id = %s", so_id) == ("cancel",)
    assert erp.cancel(so_id) is False
    assert erp.failures["cancel"] == 1


def test_release_cancelled_finishes_a_connector_cancel(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    mug = product_id(erp_db, "DEMO-001")
    so_id = import_shop_order(erp_db, 5, [("DEMO-001", 2)])
    assert erp.confirm_and_reserve(so_id)
    erp_db.execute("UPDATE sale_order SET state = 'cancel' WHERE id = %s", (so_id,))  # the shop cancelled it

    assert erp.release_cancelled() == 1
    assert wh_quant(erp_db, mug) == (41, 0)
    assert pg_one(erp_db, "SELECT state FROM stock_picking WHERE sale_id = %s", so_id) == ("cancel",)
    assert pg_one(erp_db, "SELECT DISTINCT state FROM sale_order_line WHERE order_id = %s", so_id) == ("cancel",)
    assert erp.release_cancelled() == 0


def test_sell_other_channel_and_settle(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    speaker = product_id(erp_db, "DEMO-014")
    so_id = erp.sell_other_channel(speaker, 2)
    assert so_id is not None
    name, state, origin, partner_ref = pg_one(
        erp_db,
        "SELECT so.name, so.state, so.origin, p.ref FROM sale_order so JOIN res_partner p ON p.id = so.partner_id "
        "WHERE so.id = %s",
        so_id,
    )
    assert (name, state, origin, partner_ref) == ("S00001", "sale", None, None)
    assert wh_quant(erp_db, speaker) == (54, 2)
    assert pg_one(erp_db, "SELECT state FROM stock_picking WHERE sale_id = %s", so_id) == ("assigned",)
    assert erp.sell_other_channel(speaker, 1) is not None
    assert pg_one(erp_db, "SELECT max(name) FROM sale_order") == ("S00002",)

    first = import_shop_order(erp_db, 10, [("DEMO-014", 1)])
    second = import_shop_order(erp_db, 11, [("DEMO-015", 2)])
    cancelled = import_shop_order(erp_db, 12, [("DEMO-014", 1)])
    assert erp.confirm_and_reserve(cancelled)
    erp_db.execute("UPDATE sale_order SET state = 'cancel' WHERE id = %s", (cancelled,))
    assert erp.settle() == 3
    assert erp.pending_shop_orders() == []
    assert erp_db.execute(
        "SELECT sale_id, state FROM stock_picking WHERE sale_id = ANY(%s) ORDER BY sale_id",
        ([first, second, cancelled],),
    ).fetchall() == [(first, "assigned"), (second, "assigned"), (cancelled, "cancel")]
    assert wh_quant(erp_db, speaker) == (54, 4)


def test_edit_partner_writes_like_the_orm(erp: ErpSimulator, erp_db: psycopg.Connection[Any]) -> None:
    (before,) = pg_one(erp_db, "SELECT write_date FROM res_partner WHERE id = 4")
    erp.edit_partner(4, email="joel@example.net", name="Joel Willis-Smith")
    email, name, complete_name, write_uid, write_date = pg_one(
        erp_db, "SELECT email, name, complete_name, write_uid, write_date FROM res_partner WHERE id = 4"
    )
    assert (email, name, complete_name, write_uid) == ("joel@example.net", "Joel Willis-Smith", "Joel Willis-Smith", 2)
    assert write_date > before
    erp.edit_partner()  # a random realistic change on a random partner
    assert erp.counts["edit_partner"] == 2
    with pytest.raises(ValueError, match="ref"):
        erp.edit_partner(4, ref="PS-C1")


def test_erp_random_steps_keep_invariants_and_replay(
    erp_connect: ErpConnect, erp_db: psycopg.Connection[Any], pg_database: PgDatabase
) -> None:
    def run(connect: ErpConnect) -> tuple[ErpSimulator, list[str | None]]:
        with connect() as conn:
            conn.autocommit = True
            for n in range(1, 41):  # shop orders arriving through the connector
                import_shop_order(conn, n, [(f"DEMO-{(n * 7) % 20 + 1:03d}", n % 3 + 1), ("DEMO-003", 1)])
        simulator = ErpSimulator(connect, seed=11)
        names = [simulator.step() for _ in range(200)]
        simulator.close()
        return simulator, names

    simulator, names = run(erp_connect)
    assert None not in names
    assert {"confirm_and_reserve", "deliver", "restock", "sell_other_channel", "edit_partner"} <= set(simulator.counts)
    assert (
        erp_db.execute(
            "SELECT q.id FROM stock_quant q JOIN stock_location l ON l.id = q.location_id "
            "WHERE l.usage = 'internal' AND (q.reserved_quantity > q.quantity OR q.reserved_quantity < 0)"
        ).fetchall()
        == []
    )
    # What is reserved is exactly what the open deliveries hold.
    assert (
        erp_db.execute(
            "SELECT q.product_id FROM stock_quant q JOIN stock_location l ON l.id = q.location_id "
            "LEFT JOIN (SELECT product_id, sum(quantity) AS held FROM stock_move WHERE state = 'assigned' "
            "           GROUP BY product_id) m ON m.product_id = q.product_id "
            "WHERE l.usage = 'internal' AND q.reserved_quantity != COALESCE(m.held, 0)"
        ).fetchall()
        == []
    )
    # Stock is conserved: every quant change has its counterpart in another location.
    assert (
        erp_db.execute("SELECT product_id FROM stock_quant GROUP BY product_id HAVING sum(quantity) != 0").fetchall()
        == []
    )

    with _another_erp(pg_database) as connect_twin:
        twin, twin_names = run(connect_twin)
    assert twin_names == names
    assert twin.counts == simulator.counts
    assert twin.failures == simulator.failures


# --------------------------------------------------------------------------------------------------------------
# Driving
# --------------------------------------------------------------------------------------------------------------


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_run_steps_until_stopped_and_pauses(shop_connect: ShopConnect) -> None:
    simulator = ShopSimulator(shop_connect, seed=3, rate=200.0)
    stop = threading.Event()
    runner = threading.Thread(target=simulator.run, args=(stop,), daemon=True)
    runner.start()
    try:
        _wait_until(lambda: simulator.counts.total() >= 5)
        simulator.pause()
        assert simulator.paused
        time.sleep(0.1)  # the step in progress finishes
        done = simulator.counts.total() + simulator.failures.total()
        time.sleep(0.3)
        assert simulator.counts.total() + simulator.failures.total() == done
        simulator.resume()
        assert not simulator.paused
        _wait_until(lambda: simulator.counts.total() + simulator.failures.total() > done)
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    simulator.close()


def test_a_lost_connection_is_replaced(
    shop: ShopSimulator,
    erp: ErpSimulator,
    shop_db: ShopConnection,
    erp_db: psycopg.Connection[Any],
    mariadb_database: MariaDatabase,
    pg_database: PgDatabase,
) -> None:
    shop.sign_up()
    erp.restock(product_id(erp_db, "DEMO-001"), 1)
    # The servers drop the simulators' sessions (restart, idle timeout, an admin's KILL).
    for (session,) in rows(
        shop_db,
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID != CONNECTION_ID()",
        mariadb_database.name,
    ):
        with shop_db.cursor() as cur:
            cur.execute(f"KILL {int(session)}")
    erp_db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid != pg_backend_pid()",
        (pg_database.name,),
    )

    assert shop.sign_up() > 0
    erp.restock(product_id(erp_db, "DEMO-001"), 1)
    assert shop.counts["sign_up"] == 2
    assert erp.counts["restock"] == 2
    assert wh_quant(erp_db, product_id(erp_db, "DEMO-001"))[0] == 43
