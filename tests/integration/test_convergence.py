"""The convergence report against the demo databases: the seed, once its customers and addresses have their
partners (what the replicator's snapshot writes), is clean in every flow; breaking one thing in a flow is
reported in that flow, precisely, naming the rows on both sides."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pymysql
import pytest

from replicator.demo.convergence import ConvergenceReport, convergence_report
from replicator.demo.schemas import load_erp_schema, load_shop_schema
from replicator.devstack import mariadb_connect
from replicator.simulate.erp import ErpSimulator
from replicator.simulate.shop import ShopSimulator
from tests.conftest import MariaDatabase, PgDatabase

pytestmark = pytest.mark.integration


@dataclass
class World:
    shop: pymysql.connections.Connection[Any]
    erp: psycopg.Connection[tuple[Any, ...]]
    shop_db: MariaDatabase
    erp_db: PgDatabase

    def shop_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.shop.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def erp_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.erp.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def erp_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.erp_sql(sql, params)
        return rows[0][0] if rows else None

    def report(self) -> ConvergenceReport:
        return convergence_report(self.shop, self.erp)

    def partner_of(self, ref: str) -> int:
        return int(self.erp_one("SELECT id FROM res_partner WHERE ref = %s", (ref,)))


@pytest.fixture
def world(mariadb_database: MariaDatabase, pg_database: PgDatabase) -> Iterator[World]:
    with contextlib.closing(mariadb_connect(mariadb_database.admin, mariadb_database.name)) as shop, \
            psycopg.connect(pg_database.dsn, autocommit=True) as erp:
        load_shop_schema(shop, replicator_tables=True)
        load_erp_schema(erp)
        yield World(shop, erp, mariadb_database, pg_database)


def _replicate_seed_partners(world: World) -> None:
    """What the snapshot of the customer and address rules writes: customers 2 and 4 link to the partners that
    already exist with their e-mail, the others become new partners; every address a delivery child."""
    for id_customer, firstname, lastname, email, company, active in world.shop_sql(
        "SELECT id_customer, firstname, lastname, email, company, active FROM ps_customer ORDER BY id_customer"
    ):
        name = f"{firstname} {lastname}"
        existing = world.erp_one("SELECT id FROM res_partner WHERE email = %s", (email,))
        if existing is not None:
            world.erp_sql("UPDATE res_partner SET ref = %s, name = %s, company_name = %s, active = %s WHERE id = %s",
                          (f"PS-C{id_customer}", name, company, bool(active), existing))
        else:
            world.erp_sql(
                "INSERT INTO res_partner (name, type, email, ref, company_name, active, company_id, customer_rank) "
                "VALUES (%s, 'contact', %s, %s, %s, %s, 1, 1)",
                (name, email, f"PS-C{id_customer}", company, bool(active)),
            )
    for id_address, id_customer, firstname, lastname, address1, postcode, city, phone, mobile, iso in world.shop_sql(
        "SELECT a.id_address, a.id_customer, a.firstname, a.lastname, a.address1, a.postcode, a.city, a.phone, "
        "a.phone_mobile, c.iso_code FROM ps_address a JOIN ps_country c ON c.id_country = a.id_country "
        "ORDER BY a.id_address"
    ):
        world.erp_sql(
            "INSERT INTO res_partner (name, type, parent_id, ref, street, zip, city, phone, mobile, country_id, "
            "company_id, active) VALUES (%s, 'delivery', %s, %s, %s, %s, %s, %s, %s, "
            "(SELECT id FROM res_country WHERE code = %s), 1, true)",
            (f"{firstname} {lastname}", world.partner_of(f"PS-C{id_customer}"), f"PS-A{id_address}", address1,
             postcode, city, phone, mobile, iso),
        )


@pytest.fixture
def clean_world(world: World) -> World:
    _replicate_seed_partners(world)
    return world


def _place_order_on_both_sides(world: World, id_customer: int = 1, reserve: bool = True) -> tuple[int, int]:
    """A paid shop order (invoice and payment) and what the replicator and the ERP make of it: the sale order
    with its lines, the invoice, the payment, and (with `reserve`) the ERP's reservation with the shop order
    moved to 'Processing in progress'. Returns (id_order, sale_order id)."""
    shop_sim = ShopSimulator(lambda: mariadb_connect(world.shop_db.admin, world.shop_db.name), seed=3)
    erp_sim = ErpSimulator(lambda: psycopg.connect(world.erp_db.dsn), seed=3)
    try:
        id_order = shop_sim.place_order(id_customer, [(1, 2), (2, 1)], paid=True)
        assert id_order is not None
        (reference, total_incl, total_excl, id_address), = world.shop_sql(
            "SELECT reference, total_paid_tax_incl, total_paid_tax_excl, id_address_delivery FROM ps_orders "
            "WHERE id_order = %s", (id_order,))
        partner = world.partner_of(f"PS-C{id_customer}")
        address = world.partner_of(f"PS-A{id_address}")
        sale_order = int(world.erp_one(
            "INSERT INTO sale_order (name, origin, client_order_ref, state, partner_id, partner_invoice_id, "
            "partner_shipping_id, currency_id, amount_untaxed, amount_total) "
            "VALUES (%s, %s, %s, 'sale', %s, %s, %s, 1, %s, %s) RETURNING id",
            (f"PS{id_order}", f"PS#{id_order}", reference, partner, address, address, total_excl, total_incl)))
        for product_reference, name, quantity, unit_excl in world.shop_sql(
            "SELECT product_reference, product_name, product_quantity, unit_price_tax_excl FROM ps_order_detail "
            "WHERE id_order = %s", (id_order,)
        ):
            world.erp_sql(
                "INSERT INTO sale_order_line (order_id, product_id, name, product_uom_qty, price_unit, state) "
                "VALUES (%s, (SELECT id FROM product_product WHERE default_code = %s), %s, %s, %s, 'sale')",
                (sale_order, product_reference, name, quantity, unit_excl))
        (number, invoice_total), = world.shop_sql(
            "SELECT number, total_paid_tax_incl FROM ps_order_invoice WHERE id_order = %s", (id_order,))
        world.erp_sql(
            "INSERT INTO account_move (name, ref, date, state, move_type, journal_id, currency_id, partner_id, "
            "invoice_origin, amount_total) VALUES (%s, %s, current_date, 'posted', 'out_invoice', 1, 1, %s, %s, %s)",
            (f"PS/INV/{number}", f"#IN{number}", partner, f"PS{id_order}", invoice_total))
        for (amount,) in world.shop_sql("SELECT amount FROM ps_order_payment WHERE order_reference = %s",
                                        (reference,)):
            move = world.erp_one(
                "INSERT INTO account_move (ref, date, state, move_type, journal_id, currency_id, partner_id, "
                "amount_total) VALUES (%s, current_date, 'posted', 'entry', 2, 1, %s, %s) RETURNING id",
                (reference, partner, amount))
            world.erp_sql("INSERT INTO account_payment (move_id, amount, partner_id, currency_id) "
                          "VALUES (%s, %s, %s, 1)", (move, amount, partner))
        if reserve:
            assert erp_sim.confirm_and_reserve(sale_order)
            # erp_picking_to_order_state and its history row: the reservation moves the shop order to 3.
            world.shop_sql("UPDATE ps_orders SET current_state = 3 WHERE id_order = %s", (id_order,))
            world.shop_sql("INSERT INTO ps_order_history (id_employee, id_order, id_order_state, date_add) "
                           "VALUES (0, %s, 3, NOW())", (id_order,))
        return id_order, sale_order
    finally:
        shop_sim.close()
        erp_sim.close()


def _only_difference(report: ConvergenceReport, flow: str) -> list[str]:
    """The differences of `flow`, after checking that every other flow is clean."""
    dirty = [f.name for f in report.flows if not f.clean and f.name != flow]
    assert not dirty, f"only {flow} should differ, but: " + "; ".join(
        d for f in report.flows if f.name in dirty for d in f.differences)
    return report.flow(flow).differences


# ---------------------------------------------------------------------------------------------------------------


def test_the_seed_alone_has_customers_without_partners(world: World) -> None:
    report = world.report()
    customers = report.flow("customers").differences
    assert "customer 1 (alice.martin@example.com): no ERP partner with ref 'PS-C1'" in customers
    assert len(customers) == 5
    assert len(report.flow("addresses").differences) == 5
    for name in ("orders", "status", "invoices", "payments", "stock"):
        assert report.flow(name).clean, (name, report.flow(name).differences)


def test_the_seed_with_its_partners_is_clean_in_every_flow(clean_world: World) -> None:
    report = clean_world.report()
    assert report.clean, report.flows
    checked = {flow.name: flow.checked for flow in report.flows}
    assert checked == {"customers": 5, "addresses": 5, "orders": 0, "status": 0, "invoices": 0, "payments": 0,
                       "stock": 20}
    assert "stock 20 ok" in report.summary()
    assert report.lines()[0] == "customers: clean (5 checked)"


def test_an_order_replicated_and_reserved_is_clean(clean_world: World) -> None:
    _place_order_on_both_sides(clean_world)
    report = clean_world.report()
    assert report.clean, [f.differences for f in report.flows]
    checked = {flow.name: flow.checked for flow in report.flows}
    assert checked["orders"] == checked["status"] == checked["invoices"] == checked["payments"] == 1


def test_customers_differences_name_both_rows(clean_world: World) -> None:
    w = clean_world
    alice = w.partner_of("PS-C1")
    w.erp_sql("UPDATE res_partner SET email = 'a@y.com' WHERE id = %s", (alice,))
    w.shop_sql("UPDATE ps_customer SET company = 'Acme' WHERE id_customer = 3")
    w.shop_sql("UPDATE ps_customer SET active = 0 WHERE id_customer = 5")
    differences = _only_difference(w.report(), "customers")
    carmen, emma = w.partner_of("PS-C3"), w.partner_of("PS-C5")
    assert differences == [
        f"customer 1 (alice.martin@example.com): ERP partner {alice} email 'a@y.com' != shop "
        "'alice.martin@example.com'",
        f"customer 3 (carmen.garcia@example.com): ERP partner {carmen} company_name null != shop company 'Acme'",
        f"customer 5 (emma.peeters@example.com): ERP partner {emma} active true != shop active 0",
    ]


def test_a_duplicated_customer_and_a_deleted_one_left_active_are_reported(clean_world: World) -> None:
    w = clean_world
    bruno = w.partner_of("PS-C2")
    duplicate = w.erp_one("INSERT INTO res_partner (name, type, email, ref, active) "
                          "VALUES ('Bruno Keller', 'contact', 'bruno.keller@example.com', 'PS-C2', true) RETURNING id")
    w.shop_sql("UPDATE ps_customer SET deleted = 1 WHERE id_customer = 5")
    emma = w.partner_of("PS-C5")
    differences = _only_difference(w.report(), "customers")
    assert f"duplicated customer: ERP partners {bruno}, {duplicate} all carry ref 'PS-C2'" in differences
    assert (f"active ERP partners {bruno} (PS-C2), {duplicate} (PS-C2) share the email 'bruno.keller@example.com'"
            not in differences)  # same customer twice: reported once, as a duplicate
    assert (f"customer 5 (emma.peeters@example.com): deleted in the shop but ERP partner {emma} (ref 'PS-C5') is "
            "still active") in differences
    assert len(differences) == 2


def test_two_customers_sharing_an_email_in_the_erp_are_reported(clean_world: World) -> None:
    w = clean_world
    w.erp_sql("UPDATE res_partner SET email = 'alice.martin@example.com' WHERE ref = 'PS-C3'")
    differences = _only_difference(w.report(), "customers")
    assert f"active ERP partners {w.partner_of('PS-C1')} (PS-C1), {w.partner_of('PS-C3')} (PS-C3) share the email " \
           "'alice.martin@example.com'" in differences
    # PrestaShop does not make e-mails unique: two shop customers sharing one is no duplicate in the ERP.
    w.shop_sql("UPDATE ps_customer SET email = 'alice.martin@example.com' WHERE id_customer = 3")
    assert w.report().flow("customers").differences == []


def test_addresses_differences(clean_world: World) -> None:
    w = clean_world
    w.erp_sql("UPDATE res_partner SET zip = '75011', mobile = '+33  6 12 34 56 78' WHERE ref = 'PS-A1'")
    w.shop_sql("UPDATE ps_address SET deleted = 1 WHERE id_address = 2")
    w.erp_sql("UPDATE res_partner SET parent_id = %s WHERE ref = 'PS-A3'", (w.partner_of("PS-C4"),))
    differences = _only_difference(w.report(), "addresses")
    a1, a2, a3 = (w.partner_of(f"PS-A{n}") for n in (1, 2, 3))
    assert differences == [
        f"address 1 (customer 1): ERP partner {a1} zip '75011' != shop postcode '75004'",
        f"address 2 (customer 2): deleted in the shop but ERP partner {a2} (ref 'PS-A2') is still active",
        f"address 3 (customer 3): ERP partner {a3} parent is {w.partner_of('PS-C4')} ('PS-C4'), not the customer's "
        f"partner {w.partner_of('PS-C3')} ('PS-C3')",
    ]  # the mobile differs only in whitespace, which the mapping collapses


def test_orders_differences(clean_world: World) -> None:
    w = clean_world
    id_order, sale_order = _place_order_on_both_sides(w)
    (reference,), = w.shop_sql("SELECT reference FROM ps_orders WHERE id_order = %s", (id_order,))
    w.erp_sql("UPDATE sale_order SET amount_total = amount_total + 1 WHERE id = %s", (sale_order,))
    w.erp_sql("UPDATE sale_order_line SET product_uom_qty = 5 WHERE order_id = %s AND product_id = "
              "(SELECT id FROM product_product WHERE default_code = 'DEMO-002')", (sale_order,))
    report = w.report()
    differences = report.flow("orders").differences
    total = w.erp_one("SELECT amount_total FROM sale_order WHERE id = %s", (sale_order,))
    (shop_total,), = w.shop_sql("SELECT total_paid_tax_incl FROM ps_orders WHERE id_order = %s", (id_order,))
    label = f"order {id_order} ({reference}): ERP sale order {sale_order} (PS{id_order})"
    assert differences == [
        f"{label} amount_total {Decimal(total).normalize():f} != shop total_paid_tax_incl "
        f"{Decimal(shop_total).normalize():f}",
        f"{label} quantity of product 'DEMO-002' 5 != shop 1",
    ]


def test_a_missing_and_a_cancelled_order_are_reported(clean_world: World) -> None:
    w = clean_world
    id_order, sale_order = _place_order_on_both_sides(w)
    (reference,), = w.shop_sql("SELECT reference FROM ps_orders WHERE id_order = %s", (id_order,))
    w.erp_sql("UPDATE sale_order SET state = 'cancel' WHERE id = %s", (sale_order,))
    orders = w.report().flow("orders").differences
    assert orders == [f"order {id_order} ({reference}): ERP sale order {sale_order} (PS{id_order}) state 'cancel' "
                      "but the shop state is 3 (Processing in progress) (not cancelled)"]
    w.erp_sql("DELETE FROM sale_order WHERE id = %s", (sale_order,))
    orders = w.report().flow("orders").differences
    assert orders == [f"order {id_order} ({reference}): no ERP sale order with origin 'PS#{id_order}'"]


def test_status_differences(clean_world: World) -> None:
    w = clean_world
    id_order, _ = _place_order_on_both_sides(w)
    (reference,), = w.shop_sql("SELECT reference FROM ps_orders WHERE id_order = %s", (id_order,))
    picking = w.erp_one("SELECT id FROM stock_picking WHERE origin = %s", (f"PS{id_order}",))
    # The ERP delivered, but the shop never heard of it; and a history row was written twice.
    w.erp_sql("UPDATE stock_picking SET state = 'done' WHERE id = %s", (picking,))
    w.erp_sql("UPDATE stock_move SET state = 'done' WHERE origin = %s", (f"PS{id_order}",))
    w.shop_sql("INSERT INTO ps_order_history (id_employee, id_order, id_order_state, date_add) "
               "VALUES (0, %s, 3, NOW())", (id_order,))
    history = [row[0] for row in w.shop_sql(
        "SELECT id_order_history FROM ps_order_history WHERE id_order = %s ORDER BY id_order_history", (id_order,))]
    differences = _only_difference(w.report(), "status")
    label = f"order {id_order} ({reference})"
    assert differences == [
        f"{label}: ERP picking {picking} of PS{id_order} is done but the shop state is 3 (Processing in progress), "
        "below Shipped",
        f"{label}: ps_order_history rows {history[-2]} and {history[-1]} both record state 3 (Processing in progress)",
    ]
    w.shop_sql("UPDATE ps_orders SET current_state = 4 WHERE id_order = %s", (id_order,))
    differences = _only_difference(w.report(), "status")
    assert differences[0] == (f"{label}: newest ps_order_history row {history[-1]} has state 3 (Processing in "
                              "progress) but current_state is 4 (Shipped)")


def test_invoices_differences(clean_world: World) -> None:
    w = clean_world
    id_order, _ = _place_order_on_both_sides(w)
    (id_invoice, number), = w.shop_sql("SELECT id_order_invoice, number FROM ps_order_invoice WHERE id_order = %s",
                                       (id_order,))
    move = w.erp_one("SELECT id FROM account_move WHERE ref = %s", (f"#IN{number}",))
    w.erp_sql("UPDATE account_move SET invoice_origin = 'PS999' WHERE id = %s", (move,))
    orphan = w.erp_one("INSERT INTO account_move (ref, date, move_type, journal_id, currency_id, amount_total) "
                       "VALUES ('#IN77', current_date, 'out_invoice', 1, 1, 10) RETURNING id")
    differences = _only_difference(w.report(), "invoices")
    assert differences == [
        f"invoice {id_invoice} (#IN{number}, order {id_order}): ERP move {move} invoice_origin 'PS999' != "
        f"'PS{id_order}'",
        f"ERP move {orphan} has ref '#IN77' but the shop has no such invoice",
    ]


def test_a_payment_recorded_twice_in_the_erp_is_reported(clean_world: World) -> None:
    w = clean_world
    _place_order_on_both_sides(w)
    (id_payment, reference, amount), = w.shop_sql(
        "SELECT id_order_payment, order_reference, amount FROM ps_order_payment")
    move = w.erp_one("SELECT id FROM account_move WHERE ref = %s", (reference,))
    twice = w.erp_one("INSERT INTO account_payment (move_id, amount, currency_id) VALUES (%s, %s, 1) RETURNING id",
                      (move, amount))
    differences = _only_difference(w.report(), "payments")
    shown = f"{Decimal(amount).normalize():f}"
    assert differences == [
        f"ERP payment {twice} (move {move}, ref {reference!r}, amount {shown}) matches no shop payment (paid twice?)",
        "the ERP has 2 payments for the shop's order references, the shop 1 (ps_order_payment)",
    ]
    w.erp_sql("DELETE FROM account_payment WHERE move_id = %s", (move,))
    differences = _only_difference(w.report(), "payments")
    assert differences[0] == (f"payment {id_payment} (order reference {reference!r}, amount {shown}): no ERP payment "
                              f"whose move has ref {reference!r}")


def test_stock_differences_and_orders_in_flight(clean_world: World) -> None:
    w = clean_world
    w.shop_sql("UPDATE ps_stock_available SET quantity = quantity - 1 WHERE id_product = 7")
    erp_product = w.erp_one("SELECT id FROM product_product WHERE default_code = 'DEMO-007'")
    differences = _only_difference(w.report(), "stock")
    assert differences == [f"product 7 (DEMO-007): shop quantity 46 != FLOOR(ERP free quantity) 47 (ERP product "
                           f"{erp_product}: on hand minus reserved, internal locations)"]
    w.shop_sql("UPDATE ps_stock_available SET quantity = quantity + 1 WHERE id_product = 7")
    # A fractional unit is never sold: the shop shows the floor.
    w.erp_sql("UPDATE stock_quant SET quantity = quantity + 0.5 WHERE product_id = %s AND location_id = 8",
              (erp_product,))
    assert w.report().clean

    # An order the ERP has not reserved yet: its units are in flight, the shop already sold them.
    id_order, sale_order = _place_order_on_both_sides(w, reserve=False)
    (reference,), = w.shop_sql("SELECT reference FROM ps_orders WHERE id_order = %s", (id_order,))
    stock = w.report().flow("stock").differences
    assert stock[-1] == (f"order {id_order} ({reference}): ERP sale order {sale_order} (PS{id_order}) is not "
                         "reserved or delivered yet (no stock moves); its 3 unit(s) are still in flight, so shop "
                         "stock = ERP free stock is not expected yet")
    assert len(stock) == 3  # DEMO-001 and DEMO-002 differ by the units in flight
