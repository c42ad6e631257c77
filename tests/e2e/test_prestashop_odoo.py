"""The shop <-> ERP product end to end: the demo schemas, the shipped mappings (mappings/prestashop-odoo),
both captures and both appliers running at once, driven by the business simulators."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from replicator.devstack import ConnectionSettings
from replicator.simulate.erp import ErpSimulator
from replicator.simulate.shop import ShopSimulator
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_until
from tests.support.prestashop_odoo import ShopErp, drop_writer_origins, make_shop_erp, quantity_watch

pytestmark = pytest.mark.e2e

REF = "DEMO-001"


@pytest.fixture
def sides(devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[ShopErp]:
    made = make_shop_erp(devstack, pg_database, mariadb_database, tmp_path, monkeypatch)
    yield made
    drop_writer_origins(made)


@contextlib.contextmanager
def simulators(sides: ShopErp, seed: int = 1) -> Iterator[tuple[ShopSimulator, ErpSimulator]]:
    shop = ShopSimulator(sides.shop_connect, seed=seed)
    erp = ErpSimulator(sides.erp_connect, seed=seed)
    try:
        yield shop, erp
    finally:
        shop.close()
        erp.close()


def _describe(sides: ShopErp) -> str:
    return "\n".join([
        _dead_letter_lines(sides),
        f"shop orders: {sides.shop_sql('SELECT id_order, current_state, valid FROM ps_orders')}",
        f"erp orders: {sides.erp_sql('SELECT id, name, origin, state FROM sale_order')}",
    ])


def _cancel_mismatches(sides: ShopErp) -> str:
    """For each order cancelled in the ERP but not in the shop: both histories, to tell which side lost."""
    lines = []
    cancelled = sides.erp_sql("SELECT id, name FROM sale_order WHERE state = 'cancel' AND origin LIKE 'PS#%%'")
    for order_id, name in cancelled:
        shop_id = int(name[2:])
        state = sides.shop_one("SELECT current_state FROM ps_orders WHERE id_order = %s", (shop_id,))
        if state in (6, 8):
            continue
        history = sides.shop_sql("SELECT id_order_state, id_employee, date_add FROM ps_order_history "
                                 "WHERE id_order = %s ORDER BY id_order_history", (shop_id,))
        pickings = sides.erp_sql("SELECT id, state, write_date FROM stock_picking WHERE origin = %s", (name,))
        order = sides.erp_sql("SELECT state, write_date FROM sale_order WHERE id = %s", (order_id,))
        lines.append(f"shop order {shop_id} state {state} history {history}; ERP {order} pickings {pickings}")
    return "\n".join(lines)


def _dead_letter_lines(sides: ShopErp, shown: int = 5) -> str:
    """The first dead letters of each side, one line each (their errors cut to a readable length)."""
    letters = sides.dead_letters()
    lines = [f"dead letters: {len(letters)}"]
    for side in ("shop", "erp"):
        lines += [f"  {side} #{letter_id} {status}: {str(error)[:400]}"
                  for _, letter_id, status, error in [row for row in letters if row[0] == side][:shown]]
    return "\n".join(lines)


def _customer_mismatches(sides: ShopErp) -> str:
    """For each customer whose e-mail or name differs between the sides: both rows and their field versions,
    to tell which side decided what."""
    lines = []
    for customer, email, firstname, lastname in sides.shop_sql(
            "SELECT id_customer, email, firstname, lastname FROM ps_customer"):
        partners = sides.erp_sql("SELECT id, email, name, write_date FROM res_partner WHERE ref = %s",
                                 (f"PS-C{customer}",))
        if not partners:
            # No partner carries its ref: the one its identity names, whatever its ref, and that row's versions.
            linked = sides.erp_sql("SELECT target_key FROM replicator_identity WHERE entity = 'customer' "
                                   "AND source_key = %s", (str(customer),))
            for (target_key,) in linked:
                row = sides.erp_sql("SELECT id, ref, type, parent_id, email, name, active, create_date, write_date "
                                    "FROM res_partner WHERE id = %s", (int(target_key.strip("[]")),))
                versions = sides.erp_sql("SELECT versions FROM replicator_row_version WHERE target_table = "
                                         "'public.res_partner' AND row_key = %s", (target_key,))
                lines.append(f"customer {customer} {email!r}: no partner with its ref; identity {target_key} is "
                             f"{row} versions {versions}")
            if not linked:
                lines.append(f"customer {customer} {email!r}: no partner with its ref, no identity")
            continue
        if (partners[0][1], partners[0][2]) == (email, f"{firstname} {lastname}"):
            continue
        shop_versions = sides.shop_sql("SELECT versions FROM replicator_row_version WHERE target_table LIKE %s "
                                       "AND row_key = %s", ("%.ps_customer", f"[{customer}]"))
        erp_versions = sides.erp_sql("SELECT versions FROM replicator_row_version WHERE target_table = "
                                     "'public.res_partner' AND row_key = %s", (f"[{partners[0][0]}]",))
        lines.append(f"customer {customer} {email!r} {firstname!r} {lastname!r} versions {shop_versions}; "
                     f"ERP {partners[0]} versions {erp_versions}")
    return "\n".join(lines)


def test_every_flow_goes_through_capture_kafka_and_apply_in_both_directions(sides: ShopErp) -> None:
    with running_pipeline(sides.config) as pipeline, simulators(sides) as (shop, erp):
        wait_until(sides.snapshot_applied, "the initial snapshot on both sides", 120, pipeline)
        # Customers who existed on both sides were linked by e-mail, not duplicated.
        assert sides.erp_one("SELECT COUNT(*) FROM res_partner WHERE email = 'bruno.keller@example.com'") == 1

        # A new shop customer becomes one partner with a delivery child, once, even after several orders.
        customer = shop.sign_up()
        wait_until(lambda: sides.erp_one("SELECT COUNT(*) FROM res_partner WHERE ref = %s", (f"PS-C{customer}",)) == 1,
                   "the new customer's partner", 60, pipeline, lambda: _describe(sides))
        partner = sides.erp_one("SELECT id FROM res_partner WHERE ref = %s", (f"PS-C{customer}",))
        address = sides.shop_one("SELECT id_address FROM ps_address WHERE id_customer = %s", (customer,))
        wait_until(lambda: sides.erp_one("SELECT parent_id FROM res_partner WHERE ref = %s",
                                         (f"PS-A{address}",)) == partner, "the address's child partner", 60, pipeline)

        # An order with its lines becomes a sale order with the same lines, products linked by reference.
        before = sides.shop_quantity(REF)
        order = shop.place_order(customer, [(sides.shop_product(REF), 2), (sides.shop_product("DEMO-002"), 1)])
        second = shop.place_order(customer, [(sides.shop_product("DEMO-003"), 1)])
        assert order is not None and second is not None
        assert sides.shop_quantity(REF) == before - 2  # PrestaShop's own decrement at order time
        wait_until(lambda: sides.sale_order_of(order) is not None and sides.sale_order_of(second) is not None,
                   "both sale orders", 60, pipeline, lambda: _describe(sides))
        sale_order = sides.sale_order_of(order)
        assert sides.erp_sql(
            "SELECT p.default_code, l.product_uom_qty FROM sale_order_line l JOIN product_product p "
            "ON p.id = l.product_id WHERE l.order_id = %s ORDER BY p.default_code", (sale_order,)
        ) == [(REF, 2), ("DEMO-002", 1)]
        assert sides.erp_sql("SELECT partner_id, state, client_order_ref FROM sale_order WHERE id = %s",
                             (sale_order,)) == [(partner, "sale", sides.shop_one(
                                 "SELECT reference FROM ps_orders WHERE id_order = %s", (order,)))]
        assert sides.erp_one("SELECT COUNT(*) FROM res_partner WHERE ref = %s", (f"PS-C{customer}",)) == 1

        # Paying creates one invoice and one payment in the shop: each arrives once in the ERP.
        assert shop.pay_order(order)
        reference = sides.shop_one("SELECT reference FROM ps_orders WHERE id_order = %s", (order,))
        wait_until(lambda: sides.erp_one(
            "SELECT COUNT(*) FROM account_payment p JOIN account_move m ON m.id = p.move_id WHERE m.ref = %s",
            (reference,)) == 1, "the payment", 60, pipeline, lambda: _describe(sides))
        assert sides.erp_one("SELECT COUNT(*) FROM account_move WHERE move_type = 'out_invoice' AND "
                             "invoice_origin = %s AND partner_id = %s", (f"PS{order}", partner)) == 1

        # The warehouse reserves, then ships: the shop order moves to 3, then 4, with one history row each,
        # and the shop's stock does not move (the sale was already counted at order time).
        assert erp.confirm_and_reserve(sale_order)
        wait_until(lambda: sides.shop_one("SELECT current_state FROM ps_orders WHERE id_order = %s", (order,)) == 3,
                   "the shop order in processing", 60, pipeline, lambda: _describe(sides))
        assert erp.deliver(sale_order)
        wait_until(lambda: sides.shop_one("SELECT current_state FROM ps_orders WHERE id_order = %s", (order,)) == 4,
                   "the shop order shipped", 60, pipeline, lambda: _describe(sides))
        assert sides.shop_sql("SELECT id_order_state, id_employee FROM ps_order_history WHERE id_order = %s "
                              "ORDER BY id_order_history", (order,)) == [(10, 0), (2, 1), (3, 0), (4, 0)]
        assert sides.shop_one("SELECT valid FROM ps_orders WHERE id_order = %s", (order,)) == 1
        assert sides.shop_quantity(REF) == before - 2

        # The ERP cancels the other order before reserving it: the shop cancels it and sells its unit again.
        third_before = sides.shop_quantity("DEMO-003")
        assert erp.cancel(sides.sale_order_of(second))
        wait_until(lambda: sides.shop_quantity("DEMO-003") == third_before + 1, "the cancelled unit back on sale",
                   60, pipeline, lambda: _describe(sides))
        assert sides.shop_sql("SELECT current_state, valid FROM ps_orders WHERE id_order = %s", (second,)) == [(6, 0)]
        assert sides.shop_one("SELECT id_order_state FROM ps_order_history WHERE id_order = %s "
                              "ORDER BY id_order_history DESC LIMIT 1", (second,)) == 6

        # Details both ways: an ERP e-mail edit reaches the customer; a shop address edit of a used address
        # is a copy (PrestaShop) that becomes a new child partner, the old one archived.
        erp.edit_partner(partner, email="new.mail@example.com")
        wait_until(lambda: sides.shop_one("SELECT email FROM ps_customer WHERE id_customer = %s",
                                          (customer,)) == "new.mail@example.com", "the ERP e-mail in the shop", 60,
                   pipeline)
        copy = shop.edit_address(address, city="Lyon")
        assert copy != address
        wait_until(lambda: sides.erp_sql("SELECT active, city FROM res_partner WHERE ref IN (%s, %s) ORDER BY ref",
                                         (f"PS-A{address}", f"PS-A{copy}")) == [(False, sides.shop_one(
                                             "SELECT city FROM ps_address WHERE id_address = %s", (address,))),
                                                                                 (True, "Lyon")],
                   "the copied address", 60, pipeline)

        # After quiet, nothing was echoed back or dead-lettered, and stock agrees everywhere.
        for ref in (REF, "DEMO-002", "DEMO-003"):
            wait_until(lambda ref=ref: sides.shop_quantity(ref) == int(sides.erp_free_quantity(ref)),
                       f"{ref}: shop = ERP free", 60, pipeline)
        assert sides.dead_letters() == []


def test_a_customer_signing_up_with_an_e_mail_an_erp_partner_of_another_customer_holds_gets_a_partner_of_its_own(
    sides: ShopErp,
) -> None:
    """Customers link to pre-existing ERP partners by e-mail (match_on). Customer 1 changes its e-mail, then a
    new customer signs up with customer 1's old one, while the ERP still has it on customer 1's partner (here:
    the pipeline is stopped, and both changes then arrive in one batch). That partner is customer 1's: the new
    customer gets a new partner instead of taking it away."""
    with running_pipeline(sides.config) as pipeline:
        wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
    partner = sides.erp_one("SELECT id FROM res_partner WHERE ref = 'PS-C1'")
    old_email = sides.shop_one("SELECT email FROM ps_customer WHERE id_customer = 1")
    sides.shop_sql("UPDATE ps_customer SET email = 'moved@example.com', date_upd = NOW() WHERE id_customer = 1")
    columns = [c for (c,) in sides.shop_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
        "AND table_name = 'ps_customer' AND column_name NOT IN ('id_customer', 'email') ORDER BY ordinal_position")]
    sides.shop_sql(f"INSERT INTO ps_customer (email, {', '.join(columns)}) "
                   f"SELECT %s, {', '.join(columns)} FROM ps_customer WHERE id_customer = 1", (old_email,))
    new = sides.shop_one("SELECT MAX(id_customer) FROM ps_customer")
    def partners() -> list[tuple[Any, ...]]:
        return sides.erp_sql("SELECT ref, email FROM res_partner WHERE ref IN ('PS-C1', %s) ORDER BY id",
                             (f"PS-C{new}",))

    with running_pipeline(sides.config) as pipeline:
        wait_until(lambda: partners() == [("PS-C1", "moved@example.com"), (f"PS-C{new}", old_email)],
                   "both customers with a partner of their own", 60, pipeline, lambda: str(partners()))
    assert sides.erp_one("SELECT id FROM res_partner WHERE ref = 'PS-C1'") == partner
    assert sides.dead_letters() == []


def test_a_customer_linked_by_e_mail_to_a_partner_the_erp_created_later_takes_it_over(sides: ShopErp) -> None:
    """A customer signs up in the shop; before the replicator hears of it, the same person orders by phone and
    the ERP creates a partner with the same e-mail (no ref: the shop never hears of it). The customer links to
    that partner (match_on) and takes it over: the partner's values, never replicated, do not compete with the
    customer's, though written later. It gets the customer's ref and name, keeps its ERP-only phone, and both
    sides agree."""
    with running_pipeline(sides.config) as pipeline:
        wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
    paris = ZoneInfo("Europe/Paris")
    columns = [c for (c,) in sides.shop_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = "
        "'ps_customer' AND column_name NOT IN ('id_customer', 'email', 'firstname', 'lastname', 'date_upd') "
        "ORDER BY ordinal_position")]
    sides.shop_sql(f"INSERT INTO ps_customer (email, firstname, lastname, date_upd, {', '.join(columns)}) "
                   f"SELECT 'walk.in@example.com', 'Wanda', 'Inglis', %s, {', '.join(columns)} "
                   "FROM ps_customer WHERE id_customer = 1",
                   (datetime.now(paris).replace(tzinfo=None, microsecond=0),))
    customer = sides.shop_one("SELECT MAX(id_customer) FROM ps_customer")
    time.sleep(1.1)  # the ERP's partner is newer than the sign-up, whole seconds included
    partner = sides.erp_one(
        "INSERT INTO res_partner (name, complete_name, type, is_company, email, phone, active, customer_rank, "
        "partner_share) VALUES ('W. Inglis', 'W. Inglis', 'contact', false, 'walk.in@example.com', "
        "'+44 20 7946 0000', true, 1, true) RETURNING id")

    def state() -> tuple[Any, ...]:
        return (sides.erp_sql("SELECT id, ref, name, phone FROM res_partner WHERE email = 'walk.in@example.com'"),
                sides.shop_sql("SELECT firstname, lastname FROM ps_customer WHERE id_customer = %s", (customer,)))

    expected = ([(partner, f"PS-C{customer}", "Wanda Inglis", "+44 20 7946 0000")], [("Wanda", "Inglis")])
    with running_pipeline(sides.config) as pipeline:
        wait_until(lambda: state() == expected, "the partner taken over by the customer", 60, pipeline,
                   lambda: f"{state()}\n{_describe(sides)}")
        time.sleep(2)  # anything still in flight would change one side now
        assert state() == expected
    assert sides.dead_letters() == []


def test_a_shop_edit_whose_date_upd_and_binlog_second_differ_loses_to_an_erp_edit_between_on_both_sides(
    sides: ShopErp,
) -> None:
    """PrestaShop dates an edit (date_upd) when it builds the UPDATE; the binlog dates it, in whole seconds,
    when the statement runs. An ERP edit of the same field falling between the two must win or lose on both
    sides alike: both appliers date the shop edit by its date_upd."""
    with running_pipeline(sides.config) as pipeline:
        wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
        partner = sides.erp_one("SELECT id FROM res_partner WHERE ref = 'PS-C1'")
        # Start just after a second boundary, so that every step below lands where it is meant to.
        time.sleep(1.05 - time.time() % 1)
        second = int(time.time())
        dated = datetime.fromtimestamp(second, ZoneInfo("Europe/Paris")).replace(tzinfo=None)
        with contextlib.closing(sides.shop_connect()) as shop, shop.cursor() as cur:
            # The shop's back office opens the customer (row locked: the ERP's edit cannot reach it yet)
            # and dates the edit now.
            shop.begin()
            cur.execute("SELECT email FROM ps_customer WHERE id_customer = 1 FOR UPDATE")
            # The ERP edit: newer than the shop's date_upd, older than the shop's UPDATE statement.
            sides.erp_sql("UPDATE res_partner SET email = 'race.erp@example.com', "
                          "write_date = now() AT TIME ZONE 'UTC' WHERE id = %s", (partner,))
            erp_committed = sides.erp_one("SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) "
                                          "FROM res_partner WHERE id = %s", (partner,))
            time.sleep(second + 1.1 - time.time())
            cur.execute("UPDATE ps_customer SET email = 'race.shop@example.com', date_upd = %s "
                        "WHERE id_customer = 1", (dated,))
            shop.commit()
        assert second <= erp_committed < second + 1, (second, erp_committed)

        def emails() -> tuple[Any, Any]:
            return (sides.shop_one("SELECT email FROM ps_customer WHERE id_customer = 1"),
                    sides.erp_one("SELECT email FROM res_partner WHERE id = %s", (partner,)))

        wait_until(lambda: emails() == ("race.erp@example.com", "race.erp@example.com"),
                   "the ERP's later e-mail on both sides", 60, pipeline, lambda: f"{emails()}\n{_describe(sides)}")
        time.sleep(2)  # anything still in flight would change one side now
        assert emails() == ("race.erp@example.com", "race.erp@example.com")
    assert sides.dead_letters() == []


def test_an_erp_edit_keeps_its_own_time_when_the_replicator_writes_another_field_of_its_row_later(
    sides: ShopErp, tmp_path: Path,
) -> None:
    """PostgreSQL dates rows, not fields. An ERP e-mail edit, then a shop name edit written into the same
    partner row by the replicator, then a shop e-mail edit made after the ERP's: the ERP applier must date
    its local e-mail edit by that edit's commit, not by the replicator's later write of the row, as the shop
    side dates it (by its change event). Both sides end with the shop's later e-mail."""
    config = yaml.safe_load(sides.config.read_text())
    erp_only = tmp_path / "erp-only.yaml"  # first the ERP's applier alone: the shop learns of nothing yet
    erp_only.write_text(yaml.safe_dump({**config, "targets": [t for t in config["targets"] if t["system"] == "erp"]}))
    paris = ZoneInfo("Europe/Paris")
    with running_pipeline(sides.config) as pipeline:  # the e-mail replicated both ways once: versions on both sides
        wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
        partner = sides.erp_one("SELECT id FROM res_partner WHERE ref = 'PS-C1'")
        sides.erp_sql("UPDATE res_partner SET email = 'first.erp@example.com', write_date = now() AT TIME ZONE 'UTC' "
                      "WHERE id = %s", (partner,))
        wait_until(lambda: sides.shop_one("SELECT email FROM ps_customer WHERE id_customer = 1")
                   == "first.erp@example.com", "the ERP's first e-mail in the shop", 60, pipeline)
    with running_pipeline(erp_only):
        sides.erp_sql("UPDATE res_partner SET email = 'local.erp@example.com', write_date = now() AT TIME ZONE 'UTC' "
                      "WHERE id = %s", (partner,))
        edited = float(sides.erp_one("SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM res_partner "
                                     "WHERE id = %s", (partner,)))
        # The shop's e-mail edit will be dated the next whole second: after the ERP's.
        dated = int(edited) + 1
        time.sleep(max(0.0, dated + 0.2 - time.time()))
        sides.shop_sql("UPDATE ps_customer SET firstname = 'Alicia', date_upd = %s WHERE id_customer = 1",
                       (datetime.now(paris).replace(tzinfo=None, microsecond=0),))
        wait_until(lambda: sides.erp_one("SELECT name FROM res_partner WHERE id = %s", (partner,)) == "Alicia Martin",
                   "the shop's name edit in the partner row", 60)
        assert sides.erp_one("SELECT (pg_xact_commit_timestamp_origin(xmin)).roident <> 0 FROM res_partner "
                             "WHERE id = %s", (partner,))  # the row's last writer is now the replicator
        sides.shop_sql("UPDATE ps_customer SET email = 'later.shop@example.com', date_upd = %s WHERE id_customer = 1",
                       (datetime.fromtimestamp(dated, paris).replace(tzinfo=None),))
        wait_until(lambda: sides.erp_one("SELECT email FROM res_partner WHERE id = %s",
                                         (partner,)) == "later.shop@example.com",
                   "the shop's later e-mail in the ERP", 60, describe=lambda: _describe(sides))
    with running_pipeline(sides.config):  # now the shop hears of the ERP's older edit: it loses there too
        time.sleep(5)
        assert sides.shop_sql("SELECT firstname, email FROM ps_customer WHERE id_customer = 1") == [
            ("Alicia", "later.shop@example.com")]
        assert sides.erp_sql("SELECT name, email FROM res_partner WHERE id = %s", (partner,)) == [
            ("Alicia Martin", "later.shop@example.com")]
    assert sides.dead_letters() == []


def test_a_restock_never_resurrects_units_the_shop_sold_while_the_erp_was_away(sides: ShopErp) -> None:
    product_shop, product_erp = sides.shop_product(REF), sides.erp_product(REF)
    # Stock 10 on both sides before replication starts.
    sides.shop_sql("UPDATE ps_stock_available SET quantity = 10, physical_quantity = 10 WHERE id_product = %s",
                   (product_shop,))
    sides.erp_sql("UPDATE stock_quant SET quantity = CASE WHEN quantity > 0 THEN 10 ELSE -10 END "
                  "WHERE product_id = %s", (product_erp,))
    with running_pipeline(sides.config) as pipeline, simulators(sides) as (shop, erp), \
            quantity_watch(sides, REF) as seen:
        wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
        assert sides.shop_quantity(REF) == 10

        # The ERP is paused (nobody processes orders there); the shop sells 3.
        order = shop.place_order(1, [(product_shop, 3)])
        assert order is not None
        assert sides.shop_quantity(REF) == 7
        wait_until(lambda: sides.sale_order_of(order) is not None, "the order in the ERP", 60, pipeline)

        # The ERP restocks +5 before it has processed the order: 12 in the shop, never 15.
        erp.restock(product_erp, 5)
        wait_until(lambda: sides.shop_quantity(REF) == 12, "12 in the shop after the restock", 60, pipeline,
                   lambda: f"values seen: {seen}")

        # The ERP confirms and reserves the order: still 12.
        assert erp.confirm_and_reserve(sides.sale_order_of(order))
        wait_until(lambda: sides.shop_one("SELECT current_state FROM ps_orders WHERE id_order = %s", (order,)) == 3,
                   "the reservation applied in the shop", 60, pipeline)
        assert sides.shop_quantity(REF) == 12
        assert sides.erp_free_quantity(REF) == 12
    assert 15 not in seen and max(seen[seen.index(7):]) == 12, f"values seen: {seen}"
    assert sides.dead_letters() == []


def test_units_shipped_for_an_order_the_shop_cancelled_meanwhile_are_not_sold_again(sides: ShopErp) -> None:
    """The warehouse ships a shop order while the shop, not yet told, cancels it (a business conflict the
    replicator cannot undo: the units left). The shop must not count the shipped units as sellable: its
    quantity ends at the ERP's free quantity, not that plus the cancelled order's."""
    product_shop, product_erp = sides.shop_product(REF), sides.erp_product(REF)
    sides.shop_sql("UPDATE ps_stock_available SET quantity = 10, physical_quantity = 10 WHERE id_product = %s",
                   (product_shop,))
    sides.erp_sql("UPDATE stock_quant SET quantity = CASE WHEN quantity > 0 THEN 10 ELSE -10 END "
                  "WHERE product_id = %s", (product_erp,))
    with simulators(sides) as (shop, erp):
        with running_pipeline(sides.config) as pipeline:
            wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
            assert sides.shop_quantity(REF) == 10
            order = shop.place_order(1, [(product_shop, 3)])
            assert order is not None
            wait_until(lambda: sides.sale_order_of(order) is not None, "the order in the ERP", 60, pipeline)
        # While the replicator is away: the ERP reserves and ships the order, the shop (still at 'payment
        # accepted' or 'awaiting payment') cancels it and gives the 3 units back to its own counter.
        sale_order = sides.sale_order_of(order)
        assert sale_order is not None and erp.confirm_and_reserve(sale_order) and erp.deliver(sale_order)
        assert shop.cancel_order(order)
        assert sides.shop_quantity(REF) == 10
        with running_pipeline(sides.config) as pipeline:
            wait_until(lambda: sides.erp_one("SELECT state FROM sale_order WHERE id = %s", (sale_order,)) == "cancel",
                       "the cancellation in the ERP", 60, pipeline)
            erp.release_cancelled()  # the order's lines are cancelled; its done delivery stays done
            assert sides.erp_free_quantity(REF) == 7
            wait_until(lambda: sides.shop_quantity(REF) == 7, "the shipped units gone from the shop too", 60,
                       pipeline, lambda: f"shop quantity {sides.shop_quantity(REF)}")
            time.sleep(3)  # nothing later puts them back
            assert sides.shop_quantity(REF) == 7
    assert sides.dead_letters() == []


def test_both_simulators_at_random_for_thousands_of_changes_end_converged(sides: ShopErp) -> None:
    """Two shop sessions (concurrent orders on the same products), the ERP, partner edits on both sides,
    restocks, other-channel sales and cancellations, all at once; then the ERP settles its pending orders and,
    once quiet, every flow is equal on both sides under the mappings."""
    import threading

    from replicator.demo.convergence import convergence_report

    with contextlib.ExitStack() as closing, running_pipeline(sides.config) as pipeline:
        # The simulators' connections are closed however the test ends.
        wait_until(sides.snapshot_applied, "the initial snapshot", 120, pipeline)
        shops = [ShopSimulator(sides.shop_connect, seed=seed, rate=25) for seed in (11, 12)]
        erp = ErpSimulator(sides.erp_connect, seed=13, rate=20)
        closing.callback(erp.close)
        for shop_simulator in shops:
            closing.callback(shop_simulator.close)
        stop = threading.Event()
        failures: list[BaseException] = []

        def drive(simulator: ShopSimulator | ErpSimulator) -> None:
            try:
                simulator.run(stop)
            except BaseException as exc:  # noqa: BLE001 - reported below: a simulator error fails the test
                failures.append(exc)
                stop.set()

        threads = [threading.Thread(target=drive, args=(s,)) for s in (*shops, erp)]
        for thread in threads:
            thread.start()
        def enough() -> bool:
            try:
                actions = sum(sum(s.counts.values()) for s in (*shops, erp))
                return (actions > 1500 and sum(s.counts["place_order"] for s in shops) > 200
                        and sum(s.counts["cancel_order"] for s in shops) > 0 and erp.counts["cancel"] > 0)
            except RuntimeError:  # a simulator counted its first action of a kind meanwhile: look again
                return False

        # 45 s of concurrent changes, longer on a slower machine, until the workload below is big enough.
        deadline = time.monotonic() + 150
        stop.wait(45)
        while not stop.is_set() and not enough() and time.monotonic() < deadline:
            stop.wait(1)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not failures, failures
        actions = sum(sum(s.counts.values()) for s in (*shops, erp))
        assert actions > 1500, (actions, [s.counts for s in (*shops, erp)])
        assert sum(s.counts["place_order"] for s in shops) > 200
        assert sum(s.counts["cancel_order"] for s in shops) > 0 and erp.counts["cancel"] > 0

        # The warehouse processes what is pending; then both sides must agree on every flow.
        report = None

        def converged() -> bool:
            nonlocal report
            erp.settle()
            with contextlib.closing(sides.shop_connect()) as shop, sides.erp_connect() as erp_conn:
                report = convergence_report(shop, erp_conn)
            return report.clean

        wait_until(converged, "convergence", 180, pipeline,
                   lambda: "no report" if report is None else "\n".join(
                       # Dead letters first: they usually explain the differences, and a long message is cut.
                       [report.summary(), _dead_letter_lines(sides),
                        *(f"{f.name}: {d}" for f in report.flows for d in f.differences[:5]),
                        _cancel_mismatches(sides), _customer_mismatches(sides)]))
    assert report is not None
    checked = {flow.name: flow.checked for flow in report.flows}
    assert checked["orders"] > 200 and checked["stock"] == 20 and checked["payments"] > 0, checked
    assert sides.dead_letters() == []
