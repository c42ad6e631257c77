"""Have the shop and the ERP converged? A read-only comparison of both databases, flow by flow, following the
shipped mappings (`mappings/prestashop-odoo/`) exactly: what each rule writes is what is compared.

`convergence_report(shop, erp)` runs plain SELECTs (one read-only snapshot per database) and returns a
`ConvergenceReport`: per flow, how many rows were checked and one precise sentence per difference, naming the
row on both sides. It writes nothing. The connections should have no transaction open: each side is read in a
transaction of its own (REPEATABLE READ, READ ONLY) that is ended afterwards.

Flows and what "converged" means for each:

- customers: every shop customer (not a guest, not deleted) is exactly one ERP partner with ref 'PS-C<id>'
  (type contact, no parent), with the same e-mail (trimmed, lower case), name (first and last name joined as
  `concat` does), company and active flag; a deleted customer's partner is archived; no two partners carry the
  same 'PS-C' ref and no two active ones share an e-mail.
- addresses: every customer address (not deleted) is exactly one active child partner 'PS-A<id>' of its
  customer's partner, with the same street, zip, city, phones (whitespace collapsed) and country; a deleted
  address's partner is archived.
- orders: every shop order is exactly one sale order 'PS<id>' (origin 'PS#<id>') with the same reference,
  customer, totals (0.01) and lines (count, quantity and unit price per product reference); cancelled on one
  side iff cancelled (6, 8) on the other.
- status: the shop state is not behind the ERP (cancelled -> 6/8, picking done -> shipped or later, picking
  reserved -> processing or later, by the rank table of status.yaml), and every order's history ends with its
  current state, with no state repeated twice in a row.
- invoices: every shop invoice is exactly one ERP out_invoice with ref '#IN<number>', origin 'PS<id_order>' and
  the same total; no '#IN' move without its shop invoice.
- payments: every shop payment is exactly one ERP payment whose move's ref is the order reference, with the same
  amount; as many ERP payments for the shop's order references as shop payments.
- stock: the shop's sellable quantity is FLOOR(ERP free quantity: on hand minus reserved, internal locations)
  for every product both sides know; a shop order the ERP has not reserved or delivered yet is reported, since
  its units are still in flight and the equality is not expected before it is.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pymysql
import pymysql.cursors
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

Row = tuple[Any, ...]

TOLERANCE = Decimal("0.01")  # PrestaShop keeps 6 decimals, Odoo's money 2: compare amounts within a cent
CANCELLED_STATES = (6, 8)  # PrestaShop: Canceled, Payment error
STATE_PROCESSING = 3
STATE_SHIPPED = 4
# mappings/prestashop-odoo/status.yaml: the shop's order states, lowest rank first.
STATE_RANKS: tuple[int | tuple[int, ...], ...] = ((1, 10, 13), 12, 2, 11, 9, 3, 4, 5, 7, (6, 8))
STATE_NAMES = {
    1: "Awaiting check payment", 2: "Payment accepted", 3: "Processing in progress", 4: "Shipped", 5: "Delivered",
    6: "Canceled", 7: "Refunded", 8: "Payment error", 9: "On backorder (paid)", 10: "Awaiting bank wire payment",
    11: "Remote payment accepted", 12: "On backorder (not paid)", 13: "Awaiting Cash On Delivery validation",
}  # fmt: skip
RESERVED_OR_DELIVERED = ("assigned", "done")

FLOWS = ("customers", "addresses", "orders", "status", "invoices", "payments", "stock")


def state_rank(state: int) -> int | None:
    """The rank of a PrestaShop order state in status.yaml's table; None for a state it does not list."""
    for rank, entry in enumerate(STATE_RANKS):
        if state == entry or (isinstance(entry, tuple) and state in entry):
            return rank
    return None


def describe_state(state: Any) -> str:
    name = STATE_NAMES.get(int(state)) if state is not None else None
    return f"{state} ({name})" if name else str(state)


@dataclass
class FlowResult:
    name: str
    checked: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


@dataclass
class ConvergenceReport:
    flows: list[FlowResult]

    @property
    def clean(self) -> bool:
        return all(flow.clean for flow in self.flows)

    @property
    def differences(self) -> int:
        return sum(len(flow.differences) for flow in self.flows)

    def flow(self, name: str) -> FlowResult:
        for flow in self.flows:
            if flow.name == name:
                return flow
        raise KeyError(f"no flow {name!r} in the report (flows: {', '.join(f.name for f in self.flows)})")

    def summary(self) -> str:
        """One line: 'customers 12 ok, orders 40 ok, stock 20: 2 differences, ...'."""
        return ", ".join(
            f"{flow.name} {flow.checked} " + ("ok" if flow.clean else f"DIFF {len(flow.differences)}")
            for flow in self.flows
        )

    def lines(self) -> list[str]:
        """One stable, plain line per flow: '<flow>: clean (<n> checked)' or '<flow>: <k> differences (...)'."""
        return [
            f"{flow.name}: " + ("clean" if flow.clean else f"{len(flow.differences)} differences")
            + f" ({flow.checked} checked)"
            for flow in self.flows
        ]

    def render(self, shown: int = 3) -> RenderableType:
        """A table: flow, rows checked, differences and the first `shown` of them."""
        table = Table(title="Convergence report", title_justify="left", show_lines=True, expand=False)
        table.add_column("flow", no_wrap=True)
        table.add_column("rows checked", justify="right")
        table.add_column("differences", justify="right")
        table.add_column("first differences", overflow="fold")
        for flow in self.flows:
            if flow.clean:
                count = Text("0", style="green")
                first = Text("converged", style="green")
            else:
                count = Text(str(len(flow.differences)), style="bold red")
                more = len(flow.differences) - shown
                first = Text("\n".join(f"- {d}" for d in flow.differences[:shown])
                             + (f"\n… and {more} more" if more > 0 else ""))
            table.add_row(flow.name, str(flow.checked), count, first)
        verdict = (Text("Both systems converged: every flow is clean.", style="bold green") if self.clean else
                   Text(f"Not converged: {self.differences} difference(s).", style="bold red"))
        return Group(table, verdict)


# ---------------------------------------------------------------------------------------------------------------
# Reading both sides
# ---------------------------------------------------------------------------------------------------------------


class _Reads:
    def __init__(self, shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[Any]) -> None:
        self._shop = shop
        self._erp = erp

    def shop(self, sql: str) -> list[Row]:
        with self._shop.cursor(pymysql.cursors.Cursor) as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def erp(self, sql: str) -> list[Row]:
        with self._erp.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())


@contextmanager
def _shop_snapshot(shop: pymysql.connections.Connection[Any]) -> Iterator[None]:
    with shop.cursor() as cursor:
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    try:
        yield
    finally:
        shop.rollback()


@contextmanager
def _erp_snapshot(erp: psycopg.Connection[Any]) -> Iterator[None]:
    fresh = erp.autocommit or erp.info.transaction_status == TransactionStatus.IDLE
    with erp.transaction(force_rollback=True):
        if fresh:
            erp.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def convergence_report(shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[Any]) -> ConvergenceReport:
    """Compare the shop (its connection's current database is the PrestaShop one) with the ERP, every flow."""
    reads = _Reads(shop, erp)
    with _shop_snapshot(shop), _erp_snapshot(erp):
        data = _Data.read(reads)
    return ConvergenceReport([
        _customers(data), _addresses(data), _orders(data), _status(data), _invoices(data), _payments(data),
        _stock(data),
    ])


@dataclass
class _Data:
    """Every row the flows compare, read once."""

    customers: list[Row]
    addresses: list[Row]
    orders: list[Row]
    order_lines: list[Row]
    history: list[Row]
    invoices: list[Row]
    payments: list[Row]
    stock: list[Row]
    partners: list[Row]
    sale_orders: list[Row]
    sale_lines: list[Row]
    pickings: list[Row]
    moves: list[Row]
    invoice_moves: list[Row]
    erp_payments: list[Row]
    free: list[Row]

    @classmethod
    def read(cls, reads: _Reads) -> _Data:
        return cls(
            customers=reads.shop(
                "SELECT id_customer, firstname, lastname, email, company, active, is_guest, deleted "
                "FROM ps_customer ORDER BY id_customer"),
            addresses=reads.shop(
                "SELECT a.id_address, a.id_customer, a.address1, a.postcode, a.city, a.phone, a.phone_mobile, "
                "a.deleted, c.iso_code FROM ps_address a LEFT JOIN ps_country c ON c.id_country = a.id_country "
                "WHERE a.id_customer <> 0 ORDER BY a.id_address"),
            orders=reads.shop(
                "SELECT id_order, reference, id_customer, current_state, total_paid_tax_incl, total_paid_tax_excl "
                "FROM ps_orders ORDER BY id_order"),
            order_lines=reads.shop(
                "SELECT id_order, product_reference, product_quantity, unit_price_tax_excl "
                "FROM ps_order_detail ORDER BY id_order, id_order_detail"),
            history=reads.shop(
                "SELECT id_order, id_order_history, id_order_state FROM ps_order_history "
                "ORDER BY id_order, id_order_history"),
            invoices=reads.shop(
                "SELECT id_order_invoice, id_order, number, total_paid_tax_incl FROM ps_order_invoice "
                "ORDER BY id_order_invoice"),
            payments=reads.shop(
                "SELECT id_order_payment, order_reference, amount FROM ps_order_payment ORDER BY id_order_payment"),
            stock=reads.shop(
                "SELECT sa.id_product, p.reference, sa.quantity FROM ps_stock_available sa "
                "JOIN ps_product p ON p.id_product = sa.id_product "
                "WHERE sa.id_product_attribute = 0 ORDER BY sa.id_product"),
            partners=reads.erp(
                "SELECT p.id, p.ref, p.type, p.parent_id, parent.ref, p.name, p.email, p.company_name, p.active, "
                "p.street, p.zip, p.city, p.phone, p.mobile, c.code "
                "FROM res_partner p LEFT JOIN res_partner parent ON parent.id = p.parent_id "
                "LEFT JOIN res_country c ON c.id = p.country_id "
                "WHERE p.ref LIKE 'PS-%' ORDER BY p.id"),
            sale_orders=reads.erp(
                "SELECT so.id, so.name, so.origin, so.client_order_ref, so.state, so.amount_total, so.amount_untaxed, "
                "so.partner_id, p.ref FROM sale_order so LEFT JOIN res_partner p ON p.id = so.partner_id "
                "WHERE so.origin LIKE 'PS#%' ORDER BY so.id"),
            sale_lines=reads.erp(
                "SELECT l.order_id, pp.default_code, l.product_uom_qty, l.price_unit, l.id "
                "FROM sale_order_line l JOIN sale_order so ON so.id = l.order_id "
                "LEFT JOIN product_product pp ON pp.id = l.product_id "
                "WHERE so.origin LIKE 'PS#%' AND l.display_type IS NULL ORDER BY l.order_id, l.id"),
            pickings=reads.erp(
                "SELECT id, origin, state FROM stock_picking WHERE origin LIKE 'PS%' ORDER BY id"),
            moves=reads.erp(
                "SELECT m.id, m.origin, m.state, pp.default_code, m.quantity FROM stock_move m "
                "LEFT JOIN product_product pp ON pp.id = m.product_id "
                "WHERE m.origin LIKE 'PS%' ORDER BY m.id"),
            invoice_moves=reads.erp(
                "SELECT id, ref, move_type, invoice_origin, amount_total FROM account_move "
                "WHERE ref LIKE '#IN%' ORDER BY id"),
            erp_payments=reads.erp(
                "SELECT ap.id, ap.move_id, m.ref, ap.amount FROM account_payment ap "
                "JOIN account_move m ON m.id = ap.move_id ORDER BY ap.id"),
            free=reads.erp(
                "SELECT pp.id, pp.default_code, "
                "COALESCE(SUM(q.quantity - q.reserved_quantity) FILTER (WHERE l.usage = 'internal'), 0) "
                "FROM product_product pp LEFT JOIN stock_quant q ON q.product_id = pp.id "
                "LEFT JOIN stock_location l ON l.id = q.location_id "
                "WHERE pp.default_code IS NOT NULL GROUP BY pp.id, pp.default_code ORDER BY pp.id"),
        )

    def partners_by_ref(self, prefix: str) -> dict[str, list[Row]]:
        found: dict[str, list[Row]] = defaultdict(list)
        for row in self.partners:
            if str(row[1]).startswith(prefix):
                found[str(row[1])].append(row)
        return found

    def sale_orders_by_origin(self) -> dict[str, list[Row]]:
        found: dict[str, list[Row]] = defaultdict(list)
        for row in self.sale_orders:
            found[str(row[2])].append(row)
        return found


# ---------------------------------------------------------------------------------------------------------------
# Value comparison
# ---------------------------------------------------------------------------------------------------------------


def _one_linked_partner(flow: FlowResult, label: str, ref: str, found: Sequence[Row], deleted: bool, *,
                        report_duplicates: bool) -> bool:
    """Whether exactly one ERP partner carries the shop row's ref, so that its fields can be compared.
    A shop row deleted there must have only archived partners (column 8: active)."""
    if deleted:
        flow.differences += [
            f"{label}: deleted in the shop but ERP partner {row[0]} (ref {ref!r}) is still active"
            for row in found if row[8]
        ]
        return False
    if not found:
        flow.differences.append(f"{label}: no ERP partner with ref {ref!r}")
        return False
    if len(found) > 1:
        if report_duplicates:
            flow.differences.append(f"{label}: ERP partners {_ids(found)} all carry ref {ref!r}")
        return False
    return True


def _show(value: Any) -> str:
    """A value as a difference message shows it: strings quoted, numbers plain, NULL as null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, (int, float)):
        return str(value)
    return repr(str(value))


def _blank(value: Any) -> str:
    """NULL and '' are the same text."""
    return "" if value is None else str(value)


def _grouped(rows: Iterable[Row], column: int) -> dict[str, list[Row]]:
    """Rows by the text of one column (NULL and '' alike), in their order."""
    found: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        found[_blank(row[column])].append(row)
    return found


def _email(value: Any) -> str:
    return _blank(value).strip().lower()


def _phone(value: Any) -> str:
    return " ".join(_blank(value).split())


def _concat(parts: Iterable[Any]) -> str | None:
    """The mapping's `concat`: non-empty parts joined by a space; None when all are empty."""
    kept = [str(part) for part in parts if part is not None and part != ""]
    return " ".join(kept) if kept else None


def _amount(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def _near(a: Any, b: Any) -> bool:
    return abs(_amount(a) - _amount(b)) <= TOLERANCE


def _ids(rows: Sequence[Row]) -> str:
    return ", ".join(str(row[0]) for row in rows)


# ---------------------------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------------------------


def _customers(data: _Data) -> FlowResult:
    flow = FlowResult("customers")
    partners = data.partners_by_ref("PS-C")
    shop_ids: set[int] = set()
    for id_customer, firstname, lastname, email, company, active, is_guest, deleted in data.customers:
        shop_ids.add(int(id_customer))
        ref = f"PS-C{id_customer}"
        label = f"customer {id_customer} ({email})"
        found = partners.get(ref, [])
        if is_guest:
            continue  # guests stay in the shop (filter is_guest = 0)
        flow.checked += 1
        # Several partners with one ref are reported below, as a duplicated customer.
        if not _one_linked_partner(flow, label, ref, found, bool(deleted), report_duplicates=False):
            continue
        pid, _, ptype, parent_id, _, name, pemail, pcompany, pactive = found[0][:9]
        partner = f"ERP partner {pid}"
        if ptype != "contact":
            flow.differences.append(f"{label}: {partner} type {_show(ptype)} != 'contact'")
        if parent_id is not None:
            flow.differences.append(f"{label}: {partner} has parent partner {parent_id}; a customer's has none")
        if _email(pemail) != _email(email):
            flow.differences.append(f"{label}: {partner} email {_show(pemail)} != shop {_show(email)}")
        expected_name = _concat((firstname, lastname))
        if name != expected_name:
            flow.differences.append(f"{label}: {partner} name {_show(name)} != shop firstname + lastname "
                                    f"{_show(expected_name)}")
        if _blank(pcompany) != _blank(company):
            flow.differences.append(f"{label}: {partner} company_name {_show(pcompany)} != shop company "
                                    f"{_show(company)}")
        if bool(pactive) != (int(active) == 1):
            flow.differences.append(f"{label}: {partner} active {_show(bool(pactive))} != shop active {active}")
    for ref, rows in partners.items():
        number = ref.removeprefix("PS-C")
        if len(rows) > 1:
            flow.differences.append(f"duplicated customer: ERP partners {_ids(rows)} all carry ref {ref!r}")
        if not number.isdigit() or int(number) not in shop_ids:
            flow.differences += [f"ERP partner {row[0]} has ref {ref!r} but the shop has no such customer"
                                 for row in rows]
    by_email: dict[str, list[Row]] = defaultdict(list)
    for rows in partners.values():
        for row in rows:
            if row[8] and row[2] == "contact" and row[3] is None and _email(row[6]):
                by_email[_email(row[6])].append(row)
    # PrestaShop does not make e-mails unique: partners sharing one are a duplicate only when more of them
    # share it than shop customers do (a linking that failed and created a second partner).
    shop_emails: dict[str, int] = defaultdict(int)
    for _, _, _, email, _, _, is_guest, deleted in data.customers:
        if not is_guest and not deleted and _email(email):
            shop_emails[_email(email)] += 1
    for email, rows in by_email.items():
        if len({row[1] for row in rows}) > max(1, shop_emails.get(email, 0)):
            named = ", ".join(f"{row[0]} ({row[1]})" for row in rows)
            flow.differences.append(f"active ERP partners {named} share the email {email!r}")
    return flow


def _addresses(data: _Data) -> FlowResult:
    flow = FlowResult("addresses")
    partners = data.partners_by_ref("PS-A")
    customer_partners = data.partners_by_ref("PS-C")
    shop_ids: set[int] = set()
    for id_address, id_customer, address1, postcode, city, phone, mobile, deleted, iso_code in data.addresses:
        shop_ids.add(int(id_address))
        ref = f"PS-A{id_address}"
        label = f"address {id_address} (customer {id_customer})"
        found = partners.get(ref, [])
        flow.checked += 1
        if not _one_linked_partner(flow, label, ref, found, bool(deleted), report_duplicates=True):
            continue
        pid, _, _, parent_id, parent_ref, _, _, _, active, street, zip_code, pcity, pphone, pmobile, code = found[0]
        partner = f"ERP partner {pid}"
        if not active:
            flow.differences.append(f"{label}: {partner} is archived but the address is not deleted")
        customer_ref = f"PS-C{id_customer}"
        if parent_ref != customer_ref:
            expected = customer_partners.get(customer_ref, [])
            wanted = f"partner {expected[0][0]} ({customer_ref!r})" if expected else f"{customer_ref!r} (none)"
            flow.differences.append(f"{label}: {partner} parent is {parent_id} ({_show(parent_ref)}), "
                                    f"not the customer's {wanted}")
        for column, erp_value, shop_column, shop_value in (
            ("street", street, "address1", address1), ("zip", zip_code, "postcode", postcode),
            ("city", pcity, "city", city),
        ):
            if _blank(erp_value) != _blank(shop_value):
                flow.differences.append(f"{label}: {partner} {column} {_show(erp_value)} != shop {shop_column} "
                                        f"{_show(shop_value)}")
        for column, erp_value, shop_column, shop_value in (
            ("phone", pphone, "phone", phone), ("mobile", pmobile, "phone_mobile", mobile),
        ):
            if _phone(erp_value) != _phone(shop_value):
                flow.differences.append(f"{label}: {partner} {column} {_show(erp_value)} != shop {shop_column} "
                                        f"{_show(shop_value)}")
        if _blank(code).upper() != _blank(iso_code).strip().upper():
            flow.differences.append(f"{label}: {partner} country {_show(code)} != shop country {_show(iso_code)}")
    for ref, rows in partners.items():
        number = ref.removeprefix("PS-A")
        if not number.isdigit() or int(number) not in shop_ids:
            flow.differences += [f"ERP partner {row[0]} has ref {ref!r} but the shop has no such customer address"
                                 for row in rows]
    return flow


def _lines_by_order(rows: Iterable[Row]) -> dict[Any, list[Row]]:
    found: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(row)
    return found


def _orders(data: _Data) -> FlowResult:
    flow = FlowResult("orders")
    sale_orders = data.sale_orders_by_origin()
    shop_lines = _lines_by_order(data.order_lines)
    erp_lines = _lines_by_order(data.sale_lines)
    shop_ids: set[int] = set()
    for id_order, reference, id_customer, state, total_incl, total_excl in data.orders:
        shop_ids.add(int(id_order))
        flow.checked += 1
        origin = f"PS#{id_order}"
        label = f"order {id_order} ({reference})"
        found = sale_orders.get(origin, [])
        if not found:
            flow.differences.append(f"{label}: no ERP sale order with origin {origin!r}")
            continue
        if len(found) > 1:
            flow.differences.append(f"{label}: ERP sale orders {_ids(found)} all carry origin {origin!r}")
            continue
        so_id, name, _, client_ref, so_state, amount_total, amount_untaxed, partner_id, partner_ref = found[0]
        sale = f"ERP sale order {so_id} ({name})"
        if name != f"PS{id_order}":
            flow.differences.append(f"{label}: {sale} name {_show(name)} != 'PS{id_order}'")
        if _blank(client_ref) != _blank(reference):
            flow.differences.append(f"{label}: {sale} client_order_ref {_show(client_ref)} != shop reference "
                                    f"{_show(reference)}")
        if partner_ref != f"PS-C{id_customer}":
            flow.differences.append(f"{label}: {sale} partner {partner_id} ({_show(partner_ref)}) is not the "
                                    f"partner of customer {id_customer} ('PS-C{id_customer}')")
        if not _near(amount_total, total_incl):
            flow.differences.append(f"{label}: {sale} amount_total {_show(amount_total)} != shop "
                                    f"total_paid_tax_incl {_show(total_incl)}")
        if not _near(amount_untaxed, total_excl):
            flow.differences.append(f"{label}: {sale} amount_untaxed {_show(amount_untaxed)} != shop "
                                    f"total_paid_tax_excl {_show(total_excl)}")
        cancelled = int(state) in CANCELLED_STATES
        if (so_state == "cancel") != cancelled:
            flow.differences.append(f"{label}: {sale} state {_show(so_state)} but the shop state is "
                                    f"{describe_state(state)}"
                                    + (" (cancelled)" if cancelled else " (not cancelled)"))
        flow.differences += _line_differences(label, sale, shop_lines.get(id_order, []), erp_lines.get(so_id, []))
    for origin, rows in sale_orders.items():
        number = origin.removeprefix("PS#")
        if not number.isdigit() or int(number) not in shop_ids:
            flow.differences += [f"ERP sale order {row[0]} ({row[1]}) has origin {origin!r} but the shop has no "
                                 "such order" for row in rows]
    return flow


def _line_differences(label: str, sale: str, shop_lines: list[Row], erp_lines: list[Row]) -> list[str]:
    differences: list[str] = []
    if len(shop_lines) != len(erp_lines):
        differences.append(f"{label}: {sale} has {len(erp_lines)} lines, the shop order {len(shop_lines)}")
    shop_by_ref, erp_by_ref = _grouped(shop_lines, 1), _grouped(erp_lines, 1)
    for ref in sorted(set(shop_by_ref) | set(erp_by_ref)):
        shop_rows, erp_rows = shop_by_ref.get(ref, []), erp_by_ref.get(ref, [])
        product = f"product {ref!r}" if ref else "a line without product reference"
        shop_qty = sum((_amount(r[2]) for r in shop_rows), Decimal(0))
        erp_qty = sum((_amount(r[2]) for r in erp_rows), Decimal(0))
        if shop_qty != erp_qty:
            differences.append(f"{label}: {sale} quantity of {product} {_show(erp_qty)} != shop {_show(shop_qty)}")
            continue
        shop_prices = sorted(_amount(r[3]) for r in shop_rows)
        erp_prices = sorted(_amount(r[3]) for r in erp_rows)
        if len(shop_prices) == len(erp_prices) and not all(map(_near, shop_prices, erp_prices)):
            differences.append(f"{label}: {sale} price_unit of {product} "
                               f"{', '.join(map(_show, erp_prices))} != shop unit_price_tax_excl "
                               f"{', '.join(map(_show, shop_prices))}")
    return differences


def _status(data: _Data) -> FlowResult:
    flow = FlowResult("status")
    sale_orders = data.sale_orders_by_origin()
    pickings = _grouped(data.pickings, 1)
    history = _lines_by_order(data.history)
    shipped_rank, processing_rank = state_rank(STATE_SHIPPED), state_rank(STATE_PROCESSING)
    assert shipped_rank is not None and processing_rank is not None
    for id_order, reference, _, state, _, _ in data.orders:
        flow.checked += 1
        label = f"order {id_order} ({reference})"
        state = int(state)
        rank = state_rank(state)
        found = sale_orders.get(f"PS#{id_order}", [])
        if len(found) == 1:
            so_id, name, _, _, so_state = found[0][:5]
            sale = f"ERP sale order {so_id} ({name})"
            if so_state == "cancel" and state not in CANCELLED_STATES:
                flow.differences.append(f"{label}: {sale} is cancelled but the shop state is {describe_state(state)}")
            picking_states = {row[2]: row[0] for row in pickings.get(_blank(name), [])}
            if rank is None:
                flow.differences.append(f"{label}: shop state {state} is not in status.yaml's rank table")
            elif "done" in picking_states and rank < shipped_rank:
                flow.differences.append(f"{label}: ERP picking {picking_states['done']} of {name} is done but the "
                                        f"shop state is {describe_state(state)}, below Shipped")
            elif "assigned" in picking_states and rank < processing_rank:
                flow.differences.append(f"{label}: ERP picking {picking_states['assigned']} of {name} is reserved "
                                        f"(assigned) but the shop state is {describe_state(state)}, below Processing")
        rows = history.get(id_order, [])
        if not rows:
            flow.differences.append(f"{label}: no ps_order_history row (current state {describe_state(state)})")
            continue
        newest = rows[-1]
        if int(newest[2]) != state:
            flow.differences.append(f"{label}: newest ps_order_history row {newest[1]} has state "
                                    f"{describe_state(newest[2])} but current_state is {describe_state(state)}")
        for before, after in itertools.pairwise(rows):
            if before[2] == after[2]:
                flow.differences.append(f"{label}: ps_order_history rows {before[1]} and {after[1]} both record "
                                        f"state {describe_state(after[2])}")
    return flow


def _invoices(data: _Data) -> FlowResult:
    flow = FlowResult("invoices")
    moves = _grouped(data.invoice_moves, 1)
    shop_refs: set[str] = set()
    for id_invoice, id_order, number, total_incl in data.invoices:
        flow.checked += 1
        ref = f"#IN{number}"
        shop_refs.add(ref)
        label = f"invoice {id_invoice} ({ref}, order {id_order})"
        found = moves.get(ref, [])
        if not found:
            flow.differences.append(f"{label}: no ERP invoice (account_move) with ref {ref!r}")
            continue
        if len(found) > 1:
            flow.differences.append(f"{label}: ERP moves {_ids(found)} all carry ref {ref!r}")
            continue
        move_id, _, move_type, origin, amount_total = found[0]
        move = f"ERP move {move_id}"
        if move_type != "out_invoice":
            flow.differences.append(f"{label}: {move} move_type {_show(move_type)} != 'out_invoice'")
        if origin != f"PS{id_order}":
            flow.differences.append(f"{label}: {move} invoice_origin {_show(origin)} != 'PS{id_order}'")
        if not _near(amount_total, total_incl):
            flow.differences.append(f"{label}: {move} amount_total {_show(amount_total)} != shop total_paid_tax_incl "
                                    f"{_show(total_incl)}")
    for ref, rows in moves.items():
        if ref not in shop_refs:
            flow.differences += [f"ERP move {row[0]} has ref {ref!r} but the shop has no such invoice" for row in rows]
    return flow


def _payments(data: _Data) -> FlowResult:
    flow = FlowResult("payments")
    erp_by_ref = _grouped(data.erp_payments, 2)
    shop_by_ref = _grouped(data.payments, 1)
    for ref, shop_rows in shop_by_ref.items():
        unmatched = list(erp_by_ref.get(ref, []))
        for id_payment, _, amount in shop_rows:
            flow.checked += 1
            label = f"payment {id_payment} (order reference {ref!r}, amount {_show(amount)})"
            match = next((row for row in unmatched if _near(row[3], amount)), None)
            if match is not None:
                unmatched.remove(match)
            elif unmatched:
                others = ", ".join(f"{row[0]} ({_show(row[3])})" for row in unmatched)
                flow.differences.append(f"{label}: ERP payments with move ref {ref!r} have other amounts: {others}")
            else:
                flow.differences.append(f"{label}: no ERP payment whose move has ref {ref!r}")
        flow.differences += [
            f"ERP payment {row[0]} (move {row[1]}, ref {ref!r}, amount {_show(row[3])}) matches no shop payment "
            "(paid twice?)" for row in unmatched if any(_near(row[3], s[2]) for s in shop_rows)
        ]
    order_refs = {_blank(row[1]) for row in data.orders}
    linked = sum(len(rows) for ref, rows in erp_by_ref.items() if ref in order_refs)
    if linked != len(data.payments):
        flow.differences.append(f"the ERP has {linked} payments for the shop's order references, the shop "
                                f"{len(data.payments)} (ps_order_payment)")
    return flow


def _stock(data: _Data) -> FlowResult:
    flow = FlowResult("stock")
    free = _grouped(data.free, 1)
    for id_product, reference, quantity in data.stock:
        found = free.get(_blank(reference), []) if reference else []
        if not found:
            continue  # a product the ERP does not know: no stock flow for it
        flow.checked += 1
        label = f"product {id_product} ({reference})"
        if len(found) > 1:
            flow.differences.append(f"{label}: ERP products {_ids(found)} share default_code {reference!r}")
            continue
        erp_free = math.floor(_amount(found[0][2]))
        if int(quantity) != erp_free:
            flow.differences.append(f"{label}: shop quantity {quantity} != FLOOR(ERP free quantity) {erp_free} "
                                    f"(ERP product {found[0][0]}: on hand minus reserved, internal locations)")
    flow.differences += _in_flight(data)
    return flow


def _in_flight(data: _Data) -> list[str]:
    """Shop orders whose units are still on their way: not cancelled, and not reserved or delivered by the ERP."""
    sale_orders = data.sale_orders_by_origin()
    moves = _grouped(data.moves, 1)
    lines = _lines_by_order(data.order_lines)
    differences: list[str] = []
    for id_order, reference, _, state, _, _ in data.orders:
        if int(state) in CANCELLED_STATES:
            continue
        label = f"order {id_order} ({reference})"
        units = sum((_amount(row[2]) for row in lines.get(id_order, [])), Decimal(0))
        why = f"its {_show(units)} unit(s) are still in flight, so shop stock = ERP free stock is not expected yet"
        found = sale_orders.get(f"PS#{id_order}", [])
        if not found:
            differences.append(f"{label}: not in the ERP yet; {why}")
            continue
        so_id, name, _, _, so_state = found[0][:5]
        order_moves = moves.get(_blank(name), [])
        waiting = [row for row in order_moves if row[2] not in RESERVED_OR_DELIVERED and row[2] != "cancel"]
        held = [row for row in order_moves if row[2] in RESERVED_OR_DELIVERED]
        if so_state == "cancel":
            differences.append(f"{label}: ERP sale order {so_id} ({name}) is cancelled but the shop order is not; "
                               f"{why}")
        elif not held or waiting:
            states = ", ".join(sorted({str(row[2]) for row in order_moves})) or "no stock moves"
            differences.append(f"{label}: ERP sale order {so_id} ({name}) is not reserved or delivered yet "
                               f"({states}); {why}")
    return differences
