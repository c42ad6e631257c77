"""The ERP simulator: warehouse and sales staff using Odoo 17, as Odoo's ORM writes it to PostgreSQL.

Company 1, warehouse 'WH' with its internal WH/Stock location. Every UPDATE sets `write_date` (UTC) and
`write_uid`, every INSERT `create_date`/`create_uid` too, as ORM writes do. Each public method is one
transaction and follows the Odoo action it is named after (sale.order action_confirm + stock reservation,
picking validation, inventory adjustment, action_cancel, partner edits).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from psycopg import errors, sql

from replicator.simulate.base import (
    LAST_NAMES,
    Simulator,
    StepAction,
    email_for,
    person_name,
    postal_address,
    unused_email,
)

ErpConnection = psycopg.Connection[Any]

# What Odoo writes into create_date / write_date: the transaction's time, in UTC, without time zone.
NOW = "(now() AT TIME ZONE 'UTC')"
PICKINGS_BEING_PICKED = 5  # the newest deliveries, not shipped at random yet (see _random_deliver)
ODOO_ADMIN_UID = 2  # base.user_admin; uid 1 is the superuser (OdooBot)

STOCK_LOCATION = "WH/Stock"
CUSTOMER_LOCATION = "Partners/Customers"
VENDOR_LOCATION = "Partners/Vendors"
INVENTORY_LOCATION = "Virtual Locations/Inventory adjustment"
WAREHOUSE_CODE = "WH"

# The demo prices are tax-excluded with 20 % VAT, as in the shop (no account.tax table in the demo schema).
VAT = Decimal("0.20")
CENT = Decimal("0.01")

PARTNER_COLUMNS = frozenset(
    {"name", "email", "phone", "mobile", "website", "street", "street2", "zip", "city", "state_id", "country_id",
     "vat", "company_registry", "company_name", "lang", "tz", "title", "function", "comment"}
)  # fmt: skip

SHOP_CONTACT = "ref LIKE 'PS-C%%' AND active"
SHOP_ADDRESS = "ref LIKE 'PS-A%%' AND type IN ('delivery', 'invoice') AND active"
# ERP-only: never replicated (no ref), a top-level contact, and not a company's own partner.
ERP_ONLY = (
    "ref IS NULL AND parent_id IS NULL AND type = 'contact' AND active "
    "AND id NOT IN (SELECT partner_id FROM res_company)"
)


@dataclass(frozen=True)
class ErpRefs:
    """Ids Odoo finds by xml id; the simulator looks them up by name/code once."""

    company_id: int
    currency_id: int
    warehouse_id: int
    stock: int
    customers: int
    vendors: int
    inventory: int
    location_company: Mapping[int, int | None]


class ErpSimulator(Simulator[ErpConnection]):
    """An Odoo 17 ERP: confirms and reserves orders, delivers them, restocks, sells through other channels,
    cancels, edits partners."""

    def __init__(
        self,
        connect: Callable[[], ErpConnection],
        *,
        seed: int = 0,
        rate: float = 10.0,
        company_id: int = 1,
        user_id: int = ODOO_ADMIN_UID,
    ) -> None:
        super().__init__(connect, seed=seed, rate=rate)
        self.company_id = company_id
        self.user_id = user_id
        self._refs_cache: ErpRefs | None = None

    # ------------------------------------------------------------------------------------------------------
    # Public actions (one transaction each)
    # ------------------------------------------------------------------------------------------------------

    def confirm_and_reserve(self, sale_order_id: int) -> bool:
        """Confirm a quotation (or take a shop order that arrived confirmed), create its delivery with one
        move per stockable line and reserve the quantities in WH/Stock, receiving any shortfall from the vendor
        first. False when the order is cancelled, already has a delivery, or has nothing to deliver."""
        return self._action("confirm_and_reserve", lambda conn: self._confirm_and_reserve(conn, sale_order_id))

    def deliver(self, sale_order_id: int) -> bool:
        """Validate the order's ready delivery: stock leaves WH/Stock for Partners/Customers. False when the
        order has no delivery in state 'assigned'."""
        return self._action("deliver", lambda conn: self._deliver(conn, sale_order_id))

    def restock(self, product_id: int, qty: int | Decimal) -> None:
        """Inventory adjustment: `qty` more units counted in WH/Stock."""
        if qty <= 0:
            raise ValueError(f"restock quantity must be positive, got {qty}")
        self._action("restock", lambda conn: self._restock(conn, product_id, Decimal(qty)))

    def sell_other_channel(self, product_id: int, qty: int | Decimal) -> int | None:
        """A sale made in Odoo (phone, counter, B2B): a quotation for a new or ERP-only customer, confirmed and
        reserved at once. Returns the sale_order id, or None if the product cannot be sold."""
        if qty <= 0:
            raise ValueError(f"sale quantity must be positive, got {qty}")
        return self._action("sell_other_channel", lambda conn: self._sell_other_channel(conn, product_id, Decimal(qty)))

    def cancel(self, sale_order_id: int) -> bool:
        """action_cancel: the order, its lines, its open delivery and moves are cancelled and the reservations
        released. False when the order is delivered or already cancelled."""
        return self._action("cancel", lambda conn: self._cancel(conn, sale_order_id))

    def release_cancelled(self) -> int:
        """Finish cancelling orders that were set to 'cancel' without Odoo's action_cancel (the connector
        cancels shop orders that way): cancel their open deliveries, release the reservations and set the
        lines' state. Returns how many orders it handled."""
        return self._action("release_cancelled", self._release_cancelled)

    def edit_partner(self, partner_id: int | None = None, /, **changes: Any) -> None:
        """Update the given res_partner columns. Without changes, random realistic ones; without a partner,
        a random one: half the time a shop customer's contact, 20 % a shop address, 30 % an ERP-only partner."""
        unknown = sorted(set(changes) - PARTNER_COLUMNS)
        if unknown:
            raise ValueError(f"res_partner: cannot edit {unknown}; editable columns are {sorted(PARTNER_COLUMNS)}")
        self._action("edit_partner", lambda conn: self._edit_partner(conn, partner_id, changes))

    def pending_shop_orders(self) -> list[int]:
        """Shop orders (origin 'PS#…') confirmed in the ERP but without a delivery yet."""
        return self._transact(
            lambda conn: [
                int(row[0])
                for row in conn.execute(
                    "SELECT so.id FROM sale_order so WHERE so.origin LIKE 'PS#%%' AND so.state = 'sale' "
                    "AND NOT EXISTS (SELECT 1 FROM stock_picking sp WHERE sp.sale_id = so.id) ORDER BY so.id",
                    (),
                ).fetchall()
            ]
        )

    def settle(self) -> int:
        """Handle everything the warehouse owes the shop: release cancelled orders, then confirm and reserve
        every pending shop order. Afterwards every non-cancelled shop order is reserved or delivered. Returns
        how many orders it handled."""
        handled = self.release_cancelled()
        for sale_order_id in self.pending_shop_orders():
            if self.confirm_and_reserve(sale_order_id):
                handled += 1
        return handled

    def free_quantity(self, product_id: int) -> Decimal:
        """Odoo's free_qty: on hand minus reserved, over internal locations."""
        return self._transact(lambda conn: _free_quantity(conn, product_id))

    # ------------------------------------------------------------------------------------------------------
    # Random steps
    # ------------------------------------------------------------------------------------------------------

    def _step_actions(self) -> Sequence[StepAction]:
        return (
            ("confirm_and_reserve", 30, lambda: self._action("confirm_and_reserve", self._random_confirm)),
            ("deliver", 15, lambda: self._action("deliver", self._random_deliver)),
            ("release_cancelled", 5, lambda: self.release_cancelled() > 0),
            ("restock", 10, lambda: self._action("restock", self._random_restock)),
            ("sell_other_channel", 10, lambda: self._action("sell_other_channel", self._random_sale) is not None),
            ("edit_partner", 20, lambda: self._action("edit_partner", lambda conn: self._edit_partner(conn, None, {}))),
            ("cancel", 5, lambda: self._action("cancel", self._random_cancel)),
        )

    def _random_confirm(self, conn: ErpConnection) -> bool:
        sale_order_id = self._random_id(
            conn,
            "so.id",
            "FROM sale_order so WHERE so.origin LIKE 'PS#%%' AND so.state = 'sale' "
            "AND NOT EXISTS (SELECT 1 FROM stock_picking sp WHERE sp.sale_id = so.id)",
        )
        return sale_order_id is not None and self._confirm_and_reserve(conn, sale_order_id)

    def _random_deliver(self, conn: ErpConnection) -> bool:
        # A warehouse ships what it reserved a while ago (picking takes time): the newest reservations are still
        # being picked. Shipping within the replication lag of the reservation would race a shop cancellation
        # the ERP has not heard of yet: a business conflict (the goods left) that no replication can undo, and
        # not what a run of the simulators means. Counted in pickings, not seconds, so that a seed replays.
        sale_order_id = self._random_id(
            conn,
            "so.id",
            "FROM sale_order so WHERE so.state = 'sale' "
            "AND EXISTS (SELECT 1 FROM stock_picking sp WHERE sp.sale_id = so.id AND sp.state = 'assigned' "
            f"AND sp.id NOT IN (SELECT id FROM stock_picking ORDER BY id DESC LIMIT {PICKINGS_BEING_PICKED}))",
        )
        return sale_order_id is not None and self._deliver(conn, sale_order_id)

    def _random_restock(self, conn: ErpConnection) -> bool:
        product_id = self._random_id(
            conn,
            "pp.id",
            "FROM product_product pp JOIN product_template pt ON pt.id = pp.product_tmpl_id "
            "WHERE pp.active AND pt.active AND pt.type = 'product'",
        )
        return product_id is not None and self._restock(conn, product_id, Decimal(self.random.randint(5, 20)))

    def _random_sale(self, conn: ErpConnection) -> int | None:
        qty = Decimal(self.random.randint(1, 3))
        # Sales staff only promise what is free in the warehouse.
        product_id = self._random_id(
            conn,
            "pp.id",
            "FROM product_product pp JOIN product_template pt ON pt.id = pp.product_tmpl_id "
            "WHERE pp.active AND pt.active AND pt.sale_ok AND pt.type = 'product' AND "
            "(SELECT COALESCE(SUM(q.quantity - q.reserved_quantity), 0) FROM stock_quant q "
            " JOIN stock_location l ON l.id = q.location_id WHERE l.usage = 'internal' AND q.product_id = pp.id) >= %s",
            (qty,),
        )
        return None if product_id is None else self._sell_other_channel(conn, product_id, qty)

    def _random_cancel(self, conn: ErpConnection) -> bool:
        sale_order_id = self._random_id(
            conn,
            "so.id",
            "FROM sale_order so WHERE so.state != 'cancel' "
            "AND NOT EXISTS (SELECT 1 FROM stock_picking sp WHERE sp.sale_id = so.id AND sp.state = 'done')",
        )
        return sale_order_id is not None and self._cancel(conn, sale_order_id)

    def _random_id(self, conn: ErpConnection, column: str, from_where: str, args: Sequence[Any] = ()) -> int | None:
        """A random row's id among those `from_where` selects, drawn deterministically (count, then offset)."""
        count = int(_scalar(conn, f"SELECT count(*) {from_where}", args) or 0)
        if count == 0:
            return None
        offset = self.random.randrange(count)
        found = _scalar(conn, f"SELECT {column} {from_where} ORDER BY {column} LIMIT 1 OFFSET %s", (*args, offset))
        return None if found is None else int(found)

    # ------------------------------------------------------------------------------------------------------
    # Sales and deliveries
    # ------------------------------------------------------------------------------------------------------

    def _confirm_and_reserve(self, conn: ErpConnection, sale_order_id: int) -> bool:
        refs = self._refs(conn)
        order = conn.execute(
            "SELECT name, state, partner_id, partner_shipping_id, company_id FROM sale_order WHERE id = %s FOR UPDATE",
            (sale_order_id,),
        ).fetchone()
        if order is None:
            raise LookupError(f"sale_order {sale_order_id} does not exist")
        name, state, partner_id, shipping_id, company_id = order
        if state not in ("draft", "sent", "sale") or _has_picking(conn, sale_order_id):
            return False
        lines = conn.execute(
            "SELECT sol.id, sol.name, sol.product_id, sol.product_uom_qty FROM sale_order_line sol "
            "JOIN product_product pp ON pp.id = sol.product_id JOIN product_template pt ON pt.id = pp.product_tmpl_id "
            "WHERE sol.order_id = %s AND sol.display_type IS NULL AND pt.type = 'product' AND sol.product_uom_qty > 0 "
            "ORDER BY sol.sequence, sol.id",
            (sale_order_id,),
        ).fetchall()
        if state == "sale" and not lines:
            return False  # nothing to deliver (or its lines have not arrived yet)
        self._confirm(conn, sale_order_id, state, has_delivery=bool(lines))
        if not lines:
            return True
        picking_id, picking_name = self._create_delivery(
            conn, refs, sale_order_id, name, shipping_id or partner_id, company_id
        )
        for line_id, line_name, product_id, qty in lines:
            _insert(
                conn,
                "stock_move",
                {
                    "name": line_name,
                    "sequence": 10,
                    "priority": "0",
                    "company_id": company_id,
                    "product_id": product_id,
                    "product_uom_qty": qty,
                    "product_uom": 1,
                    "product_qty": qty,
                    "quantity": qty,
                    "picked": False,
                    "location_id": refs.stock,
                    "location_dest_id": refs.customers,
                    "partner_id": shipping_id or partner_id,
                    "picking_id": picking_id,
                    "state": "assigned",
                    "origin": name,
                    "reference": picking_name,
                    "procure_method": "make_to_stock",
                    "sale_line_id": line_id,
                },
                self.user_id,
            )
        for product_id, qty in _sum_by_product((row[2], row[3]) for row in lines):
            self._reserve(conn, refs, product_id, qty)
        return True

    def _confirm(self, conn: ErpConnection, sale_order_id: int, state: str, *, has_delivery: bool) -> None:
        """action_confirm (a quotation) or the stored fields Odoo recomputes for an order confirmed elsewhere."""
        delivery_status = "pending" if has_delivery else None
        if state == "sale":
            _update(conn, "sale_order", sale_order_id, {"delivery_status": delivery_status}, self.user_id)
        else:
            _update(
                conn,
                "sale_order",
                sale_order_id,
                {"state": "sale", "delivery_status": delivery_status, "invoice_status": "to invoice"},
                self.user_id,
                extra=", date_order = " + NOW,
            )
            # Ordered quantities become invoiceable once confirmed (invoice policy 'order').
            conn.execute(
                "UPDATE sale_order_line SET qty_to_invoice = product_uom_qty - qty_invoiced, "
                "invoice_status = 'to invoice', write_uid = %s, write_date = " + NOW + " "
                "WHERE order_id = %s AND display_type IS NULL AND product_id IS NOT NULL",
                (self.user_id, sale_order_id),
            )
        # sale_order_line.state is a stored related field of the order's state.
        conn.execute(
            "UPDATE sale_order_line SET state = 'sale', write_uid = %s, write_date = " + NOW + " "
            "WHERE order_id = %s AND state IS DISTINCT FROM 'sale'",
            (self.user_id, sale_order_id),
        )

    def _create_delivery(
        self, conn: ErpConnection, refs: ErpRefs, sale_order_id: int, origin: str, partner_id: int, company_id: int
    ) -> tuple[int, str]:
        name = f"WH/OUT/{self._next_number(conn, 'stock_picking', 'WH/OUT/'):05d}"
        picking_id = _insert(
            conn,
            "stock_picking",
            {
                "name": name,
                "origin": origin,
                "move_type": "direct",
                "state": "assigned",
                "priority": "0",
                "location_id": refs.stock,
                "location_dest_id": refs.customers,
                "partner_id": partner_id,
                "company_id": company_id,
                "user_id": self.user_id,
                "sale_id": sale_order_id,
            },
            self.user_id,
        )
        return picking_id, name

    def _reserve(self, conn: ErpConnection, refs: ErpRefs, product_id: int, qty: Decimal) -> None:
        """Reserve `qty` in WH/Stock. A backorder is not left open: the shortfall, plus a few spare units, is
        received from the vendor first, so a reservation is always complete."""
        quant_id, on_hand, reserved = self._lock_quant(conn, refs, product_id, refs.stock)
        shortfall = qty - (on_hand - reserved)
        receipt = shortfall + self.random.randint(0, 10) if shortfall > 0 else Decimal(0)
        conn.execute(
            "UPDATE stock_quant SET quantity = quantity + %s, reserved_quantity = reserved_quantity + %s, "
            "write_uid = %s, write_date = " + NOW + " WHERE id = %s",
            (receipt, qty, self.user_id, quant_id),
        )
        if receipt > 0:
            self._move_quant(conn, refs, product_id, refs.vendors, -receipt)

    def _deliver(self, conn: ErpConnection, sale_order_id: int) -> bool:
        order = conn.execute("SELECT state FROM sale_order WHERE id = %s FOR UPDATE", (sale_order_id,)).fetchone()
        if order is None:
            raise LookupError(f"sale_order {sale_order_id} does not exist")
        if order[0] != "sale":
            return False
        picking = conn.execute(
            "SELECT id FROM stock_picking WHERE sale_id = %s AND state = 'assigned' ORDER BY id LIMIT 1 FOR UPDATE",
            (sale_order_id,),
        ).fetchone()
        if picking is None:
            return False
        picking_id = picking[0]
        moves = conn.execute(
            "SELECT id, product_id, quantity, location_id, location_dest_id, sale_line_id FROM stock_move "
            "WHERE picking_id = %s AND state = 'assigned' ORDER BY id",
            (picking_id,),
        ).fetchall()
        conn.execute(
            "UPDATE stock_move SET state = 'done', picked = true, date = " + NOW + ", write_uid = %s, "
            "write_date = " + NOW + " WHERE picking_id = %s AND state = 'assigned'",
            (self.user_id, picking_id),
        )
        _update(conn, "stock_picking", picking_id, {"state": "done"}, self.user_id, extra=", date_done = " + NOW)
        quantities: dict[tuple[int, int, int], Decimal] = defaultdict(Decimal)
        for _, product_id, qty, source, destination, _ in moves:
            quantities[(product_id, source, destination)] += qty
        refs = self._refs(conn)
        for (product_id, source, destination), qty in sorted(quantities.items()):
            quant_id, _, _ = self._lock_quant(conn, refs, product_id, source)
            conn.execute(
                "UPDATE stock_quant SET quantity = quantity - %s, reserved_quantity = reserved_quantity - %s, "
                "write_uid = %s, write_date = " + NOW + " WHERE id = %s",
                (qty, qty, self.user_id, quant_id),
            )
            self._move_quant(conn, refs, product_id, destination, qty)
        line_ids = [row[5] for row in moves if row[5] is not None]
        conn.execute(
            "UPDATE sale_order_line SET qty_delivered = product_uom_qty, write_uid = %s, write_date = " + NOW + " "
            "WHERE id = ANY(%s)",
            (self.user_id, line_ids),
        )
        open_pickings = _scalar(
            conn,
            "SELECT count(*) FROM stock_picking WHERE sale_id = %s AND state NOT IN ('done', 'cancel')",
            (sale_order_id,),
        )
        _update(
            conn,
            "sale_order",
            sale_order_id,
            {"delivery_status": "partial" if open_pickings else "full"},
            self.user_id,
            extra=", effective_date = COALESCE(effective_date, " + NOW + ")",
        )
        return True

    def _sell_other_channel(self, conn: ErpConnection, product_id: int, qty: Decimal) -> int | None:
        refs = self._refs(conn)
        product = conn.execute(
            "SELECT COALESCE(pt.name->>'en_US', pp.default_code, 'Product'), pt.list_price, "
            "pp.active AND pt.active AND pt.sale_ok AND pt.type = 'product' "
            "FROM product_product pp JOIN product_template pt ON pt.id = pp.product_tmpl_id WHERE pp.id = %s",
            (product_id,),
        ).fetchone()
        if product is None:
            raise LookupError(f"product_product {product_id} does not exist")
        product_name, list_price, sellable = product
        if not sellable:
            return None
        partner_id = self._native_customer(conn, refs)
        invoice_id = _child_address(conn, partner_id, "invoice")
        shipping_id = _child_address(conn, partner_id, "delivery")
        price = Decimal(list_price or 0)
        subtotal = (price * qty).quantize(CENT, ROUND_HALF_UP)
        tax = (subtotal * VAT).quantize(CENT, ROUND_HALF_UP)
        sale_order_id = _insert(
            conn,
            "sale_order",
            {
                "name": f"S{self._next_number(conn, 'sale_order', 'S'):05d}",
                "state": "draft",
                "locked": False,
                "company_id": refs.company_id,
                "partner_id": partner_id,
                "partner_invoice_id": invoice_id,
                "partner_shipping_id": shipping_id,
                "origin": None,
                "currency_id": refs.currency_id,
                "currency_rate": 1,
                "user_id": self.user_id,
                "amount_untaxed": subtotal,
                "amount_tax": tax,
                "amount_total": subtotal + tax,
                "invoice_status": "no",
                "require_signature": False,
                "require_payment": False,
                "warehouse_id": refs.warehouse_id,
                "picking_policy": "direct",
            },
            self.user_id,
            extra={"date_order": NOW, "validity_date": f"({NOW})::date + 30"},
        )
        _insert(
            conn,
            "sale_order_line",
            {
                "order_id": sale_order_id,
                "sequence": 10,
                "product_id": product_id,
                "name": product_name,
                "product_uom_qty": qty,
                "product_uom": 1,
                "price_unit": price,
                "discount": 0,
                "price_subtotal": subtotal,
                "price_tax": tax,
                "price_total": subtotal + tax,
                "price_reduce_taxexcl": price,
                "price_reduce_taxinc": (price * (1 + VAT)).quantize(CENT, ROUND_HALF_UP),
                "qty_delivered_method": "stock_move",
                "qty_delivered": 0,
                "qty_invoiced": 0,
                "qty_to_invoice": 0,
                "invoice_status": "no",
                "state": "draft",
                "order_partner_id": partner_id,
                "company_id": refs.company_id,
                "currency_id": refs.currency_id,
            },
            self.user_id,
        )
        self._confirm_and_reserve(conn, sale_order_id)
        return sale_order_id

    def _native_customer(self, conn: ErpConnection, refs: ErpRefs) -> int:
        """An ERP-only customer, or a new one (walk-in, phone order) 40 % of the time."""
        if self.random.random() >= 0.4:
            existing = self._random_id(conn, "id", f"FROM res_partner WHERE {ERP_ONLY} AND customer_rank > 0")
            if existing is not None:
                return existing
        return self._create_customer(conn)

    def _create_customer(self, conn: ErpConnection) -> int:
        rng = self.random
        firstname, lastname = person_name(rng)
        name = f"{firstname} {lastname}"
        countries = conn.execute("SELECT id, code FROM res_country ORDER BY id").fetchall()
        country_id, code = rng.choice(countries) if countries else (None, "")
        place = postal_address(rng, code)
        # res.partner's commercial_partner_id is itself for a top-level contact: take the id first.
        partner_id = int(_scalar(conn, "SELECT nextval(pg_get_serial_sequence('res_partner', 'id'))"))
        _insert(
            conn,
            "res_partner",
            {
                "id": partner_id,
                "name": name,
                "complete_name": name,
                "type": "contact",
                "commercial_partner_id": partner_id,
                "is_company": False,
                "email": self._unused_email(conn, firstname, lastname),
                "phone": place.phone,
                "mobile": place.mobile if rng.random() < 0.5 else None,
                "street": place.street,
                "zip": place.postcode,
                "city": place.city,
                "country_id": country_id,
                "lang": "en_US",
                "active": True,
                "partner_share": True,
                "customer_rank": 1,
                "supplier_rank": 0,
            },
            self.user_id,
        )
        return partner_id

    def _unused_email(self, conn: ErpConnection, firstname: str, lastname: str) -> str:
        """An e-mail no partner has: a clerk who finds the customer's e-mail on a contact uses that contact (as
        `_native_customer` does) rather than create a second one, which a shop customer signing up with that
        e-mail could not be linked to (match_on refuses to guess between two)."""
        return unused_email(self.random, firstname, lastname, lambda email: _scalar(
            conn, "SELECT 1 FROM res_partner WHERE email = %s LIMIT 1", (email,)) is not None)

    def _cancel(self, conn: ErpConnection, sale_order_id: int) -> bool:
        order = conn.execute("SELECT state FROM sale_order WHERE id = %s FOR UPDATE", (sale_order_id,)).fetchone()
        if order is None:
            raise LookupError(f"sale_order {sale_order_id} does not exist")
        delivered = _scalar(
            conn, "SELECT 1 FROM stock_picking WHERE sale_id = %s AND state = 'done' LIMIT 1", (sale_order_id,)
        )
        if order[0] == "cancel" or delivered is not None:
            return False
        had_delivery = self._release(conn, sale_order_id)
        values: dict[str, Any] = {"state": "cancel"}
        if had_delivery:
            values["delivery_status"] = None  # every delivery is cancelled
        _update(conn, "sale_order", sale_order_id, values, self.user_id)
        self._cancel_lines(conn, sale_order_id)
        return True

    def _release_cancelled(self, conn: ErpConnection) -> int:
        candidates = conn.execute(
            "SELECT so.id FROM sale_order so WHERE so.state = 'cancel' AND ("
            " EXISTS (SELECT 1 FROM stock_picking sp WHERE sp.sale_id = so.id AND sp.state NOT IN ('done', 'cancel'))"
            " OR EXISTS (SELECT 1 FROM sale_order_line sol WHERE sol.order_id = so.id"
            "            AND sol.state IS DISTINCT FROM 'cancel')"
            ") ORDER BY so.id"
        ).fetchall()
        handled = 0
        for (sale_order_id,) in candidates:
            locked = conn.execute(
                "SELECT 1 FROM sale_order WHERE id = %s AND state = 'cancel' FOR UPDATE", (sale_order_id,)
            ).fetchone()
            if locked is None:
                continue  # changed since the scan
            if self._release(conn, sale_order_id):
                conn.execute(
                    "UPDATE sale_order SET delivery_status = NULL, write_uid = %s, write_date = " + NOW + " "
                    "WHERE id = %s AND delivery_status IS NOT NULL",
                    (self.user_id, sale_order_id),
                )
            self._cancel_lines(conn, sale_order_id)
            handled += 1
        return handled

    def _release(self, conn: ErpConnection, sale_order_id: int) -> bool:
        """Cancel the order's open deliveries and moves and unreserve what they reserved. True if it had any."""
        pickings = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM stock_picking WHERE sale_id = %s AND state NOT IN ('done', 'cancel') ORDER BY id "
                "FOR UPDATE",
                (sale_order_id,),
            ).fetchall()
        ]
        if not pickings:
            return False
        moves = conn.execute(
            "SELECT id, product_id, quantity, location_id, state FROM stock_move "
            "WHERE picking_id = ANY(%s) AND state NOT IN ('done', 'cancel') ORDER BY id",
            (pickings,),
        ).fetchall()
        reserved: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        for _, product_id, qty, location_id, state in moves:
            if state in ("assigned", "partially_available"):
                reserved[(product_id, location_id)] += qty
        refs = self._refs(conn)
        for (product_id, location_id), qty in sorted(reserved.items()):
            quant_id, _, _ = self._lock_quant(conn, refs, product_id, location_id)
            conn.execute(
                "UPDATE stock_quant SET reserved_quantity = reserved_quantity - %s, write_uid = %s, "
                "write_date = " + NOW + " WHERE id = %s",
                (qty, self.user_id, quant_id),
            )
        # _do_unreserve drops the move lines, so a cancelled move has no quantity left.
        conn.execute(
            "UPDATE stock_move SET state = 'cancel', quantity = 0, write_uid = %s, write_date = " + NOW + " "
            "WHERE id = ANY(%s)",
            (self.user_id, [row[0] for row in moves]),
        )
        conn.execute(
            "UPDATE stock_picking SET state = 'cancel', write_uid = %s, write_date = " + NOW + " WHERE id = ANY(%s)",
            (self.user_id, pickings),
        )
        return True

    def _cancel_lines(self, conn: ErpConnection, sale_order_id: int) -> None:
        conn.execute(
            "UPDATE sale_order_line SET state = 'cancel', write_uid = %s, write_date = " + NOW + " "
            "WHERE order_id = %s AND state IS DISTINCT FROM 'cancel'",
            (self.user_id, sale_order_id),
        )

    # ------------------------------------------------------------------------------------------------------
    # Stock
    # ------------------------------------------------------------------------------------------------------

    def _restock(self, conn: ErpConnection, product_id: int, qty: Decimal) -> bool:
        refs = self._refs(conn)
        exists = _scalar(conn, "SELECT 1 FROM product_product WHERE id = %s", (product_id,))
        if exists is None:
            raise LookupError(f"product_product {product_id} does not exist")
        self._move_quant(conn, refs, product_id, refs.stock, qty)
        self._move_quant(conn, refs, product_id, refs.inventory, -qty)
        return True

    def _move_quant(
        self, conn: ErpConnection, refs: ErpRefs, product_id: int, location_id: int, delta: Decimal
    ) -> None:
        """quantity += delta on the product's quant in the location (created when missing)."""
        quant_id, _, _ = self._lock_quant(conn, refs, product_id, location_id)
        conn.execute(
            "UPDATE stock_quant SET quantity = quantity + %s, write_uid = %s, write_date = " + NOW + " WHERE id = %s",
            (delta, self.user_id, quant_id),
        )

    def _lock_quant(
        self, conn: ErpConnection, refs: ErpRefs, product_id: int, location_id: int
    ) -> tuple[int, Decimal, Decimal]:
        """Lock the product's quant in a location (no lot, package or owner), creating it empty when missing.
        Returns (id, quantity, reserved_quantity).

        Odoo keeps one such quant per product and location (`_merge_quants`); when there are several, the
        oldest one is used.
        """
        query = (
            "SELECT id, quantity, reserved_quantity FROM stock_quant WHERE product_id = %s AND location_id = %s "
            "AND lot_id IS NULL AND package_id IS NULL AND owner_id IS NULL ORDER BY in_date, id LIMIT 1 FOR UPDATE"
        )
        row = conn.execute(query, (product_id, location_id)).fetchone()
        if row is None:
            # Serialise creation, so that two transactions never both add the missing quant.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (product_id, location_id))
            row = conn.execute(query, (product_id, location_id)).fetchone()
        if row is not None:
            return int(row[0]), Decimal(row[1]), Decimal(row[2])
        quant_id = _insert(
            conn,
            "stock_quant",
            {
                "product_id": product_id,
                "company_id": refs.location_company.get(location_id),
                "location_id": location_id,
                "quantity": 0,
                "reserved_quantity": 0,
                "inventory_quantity": 0,
                "inventory_diff_quantity": 0,
                "inventory_quantity_set": False,
            },
            self.user_id,
            extra={"in_date": NOW},
        )
        return quant_id, Decimal(0), Decimal(0)

    # ------------------------------------------------------------------------------------------------------
    # Partners
    # ------------------------------------------------------------------------------------------------------

    def _edit_partner(self, conn: ErpConnection, partner_id: int | None, changes: Mapping[str, Any]) -> bool:
        if partner_id is None:
            partner_id = self._random_partner(conn)
            if partner_id is None:
                return False
        row = conn.execute(
            "SELECT p.name, p.email, p.parent_id, parent.name, p.type, p.is_company, c.code "
            "FROM res_partner p LEFT JOIN res_partner parent ON parent.id = p.parent_id "
            "LEFT JOIN res_country c ON c.id = p.country_id WHERE p.id = %s FOR UPDATE OF p",
            (partner_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"res_partner {partner_id} does not exist")
        name, _, parent_id, parent_name, partner_type, is_company, country_code = row
        if not changes:
            changes = self._random_partner_changes(name, partner_type, is_company, country_code or "")
        values = dict(changes)
        if "name" in values:
            values["complete_name"] = _complete_name(values["name"], parent_name, partner_type)
        if "company_name" in values and parent_id is None and not is_company:
            values["commercial_company_name"] = values["company_name"]
        _update(conn, "res_partner", partner_id, values, self.user_id)
        self._sync_children(conn, partner_id, values)
        return True

    def _sync_children(self, conn: ErpConnection, partner_id: int, values: Mapping[str, Any]) -> None:
        """What Odoo recomputes on the children: their complete_name shows the parent's name, and the VAT
        number is a commercial field, forced from the commercial partner."""
        if "name" in values:
            conn.execute(
                "UPDATE res_partner SET complete_name = %s || ', ' || COALESCE(name, initcap(type) || ' Address'), "
                "write_uid = %s, write_date = " + NOW + " WHERE parent_id = %s",
                (values["name"], self.user_id, partner_id),
            )
        if "vat" in values:
            conn.execute(
                "UPDATE res_partner SET vat = %s, write_uid = %s, write_date = " + NOW + " "
                "WHERE commercial_partner_id = %s AND id != %s",
                (values["vat"], self.user_id, partner_id, partner_id),
            )

    def _random_partner(self, conn: ErpConnection) -> int | None:
        draw = self.random.random()
        kinds = [SHOP_CONTACT, SHOP_ADDRESS, ERP_ONLY]
        first = SHOP_CONTACT if draw < 0.5 else SHOP_ADDRESS if draw < 0.7 else ERP_ONLY
        # The drawn kind first; the others when there is none of it (e.g. before any shop customer arrived).
        for condition in [first] + [kind for kind in kinds if kind != first]:
            partner_id = self._random_id(conn, "id", f"FROM res_partner WHERE {condition}")
            if partner_id is not None:
                return partner_id
        return None

    def _random_partner_changes(
        self, name: str | None, partner_type: str | None, is_company: bool | None, country_code: str
    ) -> dict[str, Any]:
        rng = self.random
        place = postal_address(rng, country_code)
        if partner_type in ("delivery", "invoice"):
            kind = rng.choices(("move", "phone"), weights=(60, 40))[0]
        else:
            kind = rng.choices(("email", "phone", "mobile", "move", "name"), weights=(30, 20, 15, 25, 10))[0]
        if kind == "move":
            return {"street": place.street, "zip": place.postcode, "city": place.city}
        if kind == "phone":
            return {"phone": place.phone}
        if kind == "mobile":
            return {"mobile": place.mobile}
        parts = (name or "").split()
        firstname = parts[0] if parts else person_name(rng)[0]
        lastname = " ".join(parts[1:]) or person_name(rng)[1]
        if kind == "email":
            return {"email": email_for(rng, firstname, lastname)}
        if is_company:
            return {"phone": place.phone}  # a company's name is not edited on a whim
        return {"name": f"{firstname} {rng.choice(LAST_NAMES)}"}

    # ------------------------------------------------------------------------------------------------------
    # Lookups and sequences
    # ------------------------------------------------------------------------------------------------------

    def _refs(self, conn: ErpConnection) -> ErpRefs:
        if self._refs_cache is None:
            self._refs_cache = _load_refs(conn, self.company_id)
        return self._refs_cache

    def _next_number(self, conn: ErpConnection, table: str, prefix: str) -> int:
        """The next number of an Odoo sequence ('S00042', 'WH/OUT/00007'), read from the names already used.
        A transaction-scoped lock per sequence hands each number out once, as ir.sequence's row lock does."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{table}:{prefix}",))
        query = sql.SQL(
            "SELECT COALESCE(max(substring(name FROM {digits})::bigint), 0) + 1 FROM {table} WHERE name ~ {pattern}"
        ).format(
            digits=sql.Literal(f"^{_regex_escape(prefix)}([0-9]+)$"),
            table=sql.Identifier(table),
            pattern=sql.Literal(f"^{_regex_escape(prefix)}[0-9]+$"),
        )
        return int(_scalar(conn, query))

    # ------------------------------------------------------------------------------------------------------
    # Connection handling (psycopg 3)
    # ------------------------------------------------------------------------------------------------------

    def _prepare(self, conn: ErpConnection) -> None:
        conn.autocommit = False

    def _commit(self, conn: ErpConnection) -> None:
        conn.commit()

    def _rollback(self, conn: ErpConnection) -> None:
        conn.rollback()

    def _close_connection(self, conn: ErpConnection) -> None:
        conn.close()  # psycopg's close() never raises

    def _is_usable(self, conn: ErpConnection) -> bool:
        return not conn.closed and not conn.broken

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure | errors.LockNotAvailable)

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.Error)


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def _load_refs(conn: ErpConnection, company_id: int) -> ErpRefs:
    company = conn.execute("SELECT currency_id FROM res_company WHERE id = %s", (company_id,)).fetchone()
    if company is None:
        raise LookupError(f"res_company {company_id} does not exist")
    warehouse = conn.execute(
        "SELECT id FROM stock_warehouse WHERE code = %s AND company_id = %s AND active ORDER BY id LIMIT 1",
        (WAREHOUSE_CODE, company_id),
    ).fetchone()
    if warehouse is None:
        raise LookupError(f"no active warehouse {WAREHOUSE_CODE!r} in company {company_id}")
    wanted = {
        STOCK_LOCATION: "internal",
        CUSTOMER_LOCATION: "customer",
        VENDOR_LOCATION: "supplier",
        INVENTORY_LOCATION: "inventory",
    }
    found: dict[str, int] = {}
    companies: dict[int, int | None] = {}
    for location_id, complete_name, usage, location_company in conn.execute(
        "SELECT id, complete_name, usage, company_id FROM stock_location WHERE complete_name = ANY(%s) AND active "
        "ORDER BY id",
        (list(wanted),),
    ).fetchall():
        if wanted[complete_name] == usage and complete_name not in found:
            found[complete_name] = location_id
            companies[location_id] = location_company
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise LookupError(f"stock locations not found (by complete_name and usage): {missing}")
    return ErpRefs(
        company_id=company_id,
        currency_id=int(company[0]),
        warehouse_id=int(warehouse[0]),
        stock=found[STOCK_LOCATION],
        customers=found[CUSTOMER_LOCATION],
        vendors=found[VENDOR_LOCATION],
        inventory=found[INVENTORY_LOCATION],
        location_company=companies,
    )


def _free_quantity(conn: ErpConnection, product_id: int) -> Decimal:
    value = _scalar(
        conn,
        "SELECT COALESCE(SUM(q.quantity - q.reserved_quantity), 0) FROM stock_quant q "
        "JOIN stock_location l ON l.id = q.location_id WHERE l.usage = 'internal' AND q.product_id = %s",
        (product_id,),
    )
    return Decimal(value)


def _has_picking(conn: ErpConnection, sale_order_id: int) -> bool:
    return _scalar(conn, "SELECT 1 FROM stock_picking WHERE sale_id = %s LIMIT 1", (sale_order_id,)) is not None


def _child_address(conn: ErpConnection, partner_id: int, address_type: str) -> int:
    """res.partner.address_get: the first active child of that type, else the partner itself."""
    child = _scalar(
        conn,
        "SELECT id FROM res_partner WHERE parent_id = %s AND type = %s AND active ORDER BY id LIMIT 1",
        (partner_id, address_type),
    )
    return partner_id if child is None else int(child)


def _complete_name(name: str | None, parent_name: str | None, partner_type: str | None) -> str | None:
    if parent_name is None:
        return name
    return f"{parent_name}, {name or (partner_type or 'other').capitalize() + ' Address'}"


def _sum_by_product(lines: Iterable[tuple[int, Decimal]]) -> list[tuple[int, Decimal]]:
    """Quantities per product, in product order (the order quants are locked in)."""
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for product_id, qty in lines:
        totals[product_id] += qty
    return sorted(totals.items())


def _regex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in r".^$*+?()[]{}|\/" else ch for ch in text)


def _scalar(conn: ErpConnection, query: str | sql.Composable, args: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, tuple(args)).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


def _insert(
    conn: ErpConnection,
    table: str,
    values: Mapping[str, Any],
    uid: int,
    *,
    extra: Mapping[str, str] | None = None,
) -> int:
    """INSERT one row as the ORM does (create/write uid and date) and return its id. `extra` maps columns to
    SQL expressions (e.g. now()). Table and column names come from this module, never from input."""
    columns = [*values, "create_uid", "write_uid"]
    params = [*values.values(), uid, uid]
    expressions = [sql.Placeholder()] * len(columns)
    for column, expression in {"create_date": NOW, "write_date": NOW, **(extra or {})}.items():
        columns.append(column)
        expressions.append(sql.SQL(expression))  # type: ignore[arg-type]
    query = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id").format(
        table=sql.Identifier(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(expressions),
    )
    row = conn.execute(query, params).fetchone()
    assert row is not None  # INSERT ... RETURNING returns the row
    return int(row[0])


def _update(
    conn: ErpConnection, table: str, row_id: int, values: Mapping[str, Any], uid: int, *, extra: str = ""
) -> None:
    """UPDATE one row by id as an ORM write does: write_uid and write_date too. `extra` appends SQL
    assignments (", column = expression"). Column names are checked against a whitelist by public methods."""
    assignments = sql.SQL("").join(
        sql.SQL("{} = {}, ").format(sql.Identifier(column), sql.Placeholder()) for column in values
    )
    query = sql.SQL("UPDATE {table} SET {assignments}write_uid = %s, write_date = {now}{extra} WHERE id = %s").format(
        table=sql.Identifier(table),
        assignments=assignments,
        now=sql.SQL(NOW),
        extra=sql.SQL(extra),
    )
    conn.execute(query, [*values.values(), uid, row_id])
