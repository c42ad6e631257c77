"""The shop simulator: customers and employees using a PrestaShop 8 shop, as PrestaShop writes it to MariaDB.

Single shop (id_shop 1, id_shop_group 1), language 1, currency 1. Each public method is one transaction and
does what the PrestaShop code it is named after does to the tables (ObjectModel::add/update for customers and
addresses, PaymentModule::validateOrder for orders, OrderHistory::changeIdOrderState for state changes,
Order::setInvoice and OrderPayment for invoices and payments). DATETIMEs are written in the shop's time zone.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import pymysql
import pymysql.cursors

from replicator.simulate.base import (
    LAST_NAMES,
    Simulator,
    StepAction,
    company_name,
    person_name,
    postal_address,
    unused_email,
)

# A string: PyMySQL's Connection is generic in its type stubs only.
ShopConnection: TypeAlias = "pymysql.connections.Connection[Any]"

# PrestaShop's default order states (PS_OS_*).
STATE_PAYMENT_ACCEPTED = 2
STATE_CANCELED = 6
STATE_AWAITING_BANK_WIRE = 10
# A customer may still be cancelled before the warehouse takes the order (3 processing, 4 shipped, ...).
CANCELLABLE_STATES = (STATE_AWAITING_BANK_WIRE, STATE_PAYMENT_ACCEPTED)

ID_SHOP = 1
ID_SHOP_GROUP = 1
ID_LANG = 1
ID_CURRENCY = 1
ID_CARRIER = 1
CUSTOMER_GROUP = 3  # PS_CUSTOMER_GROUP
FRONT_OFFICE = 0  # id_employee of changes made by the shop itself (checkout, payment modules)
BACK_OFFICE_EMPLOYEE = 1  # the shop owner, who confirms bank wires and cancels orders in the back office

TAX_RATE = Decimal("20.000")
TAX_NAME = "VAT 20%"
CENT = Decimal("0.01")
ZERO_DATETIME = "0000-00-00 00:00:00"  # what PrestaShop stores for "no invoice / delivery yet"

BANK_WIRE = ("Bank wire", "ps_wirepayment")
CARD = ("Payment by card", "ps_checkout")

CUSTOMER_COLUMNS = frozenset(
    {"email", "firstname", "lastname", "company", "siret", "ape", "website", "note", "birthday", "newsletter",
     "optin", "id_gender", "id_lang", "active", "passwd"}
)  # fmt: skip
ADDRESS_COLUMNS = frozenset(
    {"alias", "company", "lastname", "firstname", "address1", "address2", "postcode", "city", "other", "phone",
     "phone_mobile", "vat_number", "dni", "id_country", "id_state"}
)  # fmt: skip
# Everything an address copy takes over from the row it replaces (all but the id, the dates and `deleted`).
ADDRESS_COPY_COLUMNS = (
    "id_country", "id_state", "id_customer", "id_manufacturer", "id_supplier", "id_warehouse", "alias", "company",
    "lastname", "firstname", "address1", "address2", "postcode", "city", "other", "phone", "phone_mobile",
    "vat_number", "dni", "active",
)  # fmt: skip

BCRYPT_ALPHABET = "./" + string.ascii_uppercase + string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class _Line:
    """One order line, priced."""

    product_id: int
    quantity: int
    name: str
    reference: str | None
    unit_excl: Decimal
    unit_incl: Decimal
    wholesale_price: Decimal
    weight: Decimal
    ean13: str | None
    isbn: str | None
    upc: str | None
    mpn: str | None
    supplier_reference: str | None
    id_tax_rules_group: int

    @property
    def total_excl(self) -> Decimal:
        return self.unit_excl * self.quantity

    @property
    def total_incl(self) -> Decimal:
        return self.unit_incl * self.quantity


@dataclass(frozen=True)
class _Order:
    id_order: int
    reference: str
    current_state: int
    total_paid_tax_excl: Decimal
    total_paid_tax_incl: Decimal
    total_products: Decimal
    total_products_wt: Decimal
    total_shipping_tax_excl: Decimal
    total_shipping_tax_incl: Decimal
    customer_name: str


class ShopSimulator(Simulator[ShopConnection]):
    """A PrestaShop 8 shop: sign-ups, profile and address edits, orders, bank-wire payments, cancellations."""

    def __init__(
        self,
        connect: Callable[[], ShopConnection],
        *,
        seed: int = 0,
        rate: float = 10.0,
        timezone: str = "Europe/Paris",
    ) -> None:
        super().__init__(connect, seed=seed, rate=rate)
        self.timezone = ZoneInfo(timezone)

    # ------------------------------------------------------------------------------------------------------
    # Public actions (one transaction each)
    # ------------------------------------------------------------------------------------------------------

    def sign_up(self) -> int:
        """A new customer account with one address; returns id_customer."""
        return self._action("sign_up", self._sign_up)

    def edit_customer(self, id_customer: int, /, **changes: Any) -> None:
        """Update the given ps_customer columns (random realistic ones when none) and bump date_upd."""
        _check_columns("ps_customer", changes, CUSTOMER_COLUMNS)
        self._action("edit_customer", lambda conn: self._edit_customer(conn, id_customer, changes))

    def edit_address(self, id_address: int, /, **changes: Any) -> int:
        """Edit an address (random realistic changes when none); returns the id of the address now in use.

        PrestaShop never rewrites an address an order uses: it inserts an edited copy and soft-deletes the old
        row (`deleted` = 1). An unused address is updated in place.
        """
        _check_columns("ps_address", changes, ADDRESS_COLUMNS)

        def edit(conn: ShopConnection) -> int:
            copy = self._edit_address(conn, id_address, changes)
            assert copy is not None  # without missing_ok, a missing address raises
            return copy

        return self._action("edit_address", edit)

    def place_order(
        self, id_customer: int, lines: list[tuple[int, int]] | None = None, *, paid: bool = False
    ) -> int | None:
        """Check out `lines` (id_product, quantity) for the customer; returns id_order, or None when a line
        asks for more than the sellable quantity (the shop denies out-of-stock orders) and nothing was written.

        Unpaid orders are bank-wire orders awaiting payment (state 10); paid ones were paid by card (state 2,
        with invoice and payment). Without `lines`, 1-4 random products in stock, 1-3 of each.
        """
        return self._action("place_order", lambda conn: self._place_order(conn, id_customer, lines, paid))

    def pay_order(self, id_order: int) -> bool:
        """The bank wire arrived: the employee moves the order from 10 to 2 (invoice and payment recorded).
        False when the order is not awaiting a bank wire."""
        return self._action("pay_order", lambda conn: self._pay_order(conn, id_order))

    def cancel_order(self, id_order: int) -> bool:
        """Cancel an order the warehouse has not started on (state 10 or 2) and give its stock back.
        False in any other state."""
        return self._action("cancel_order", lambda conn: self._cancel_order(conn, id_order))

    # ------------------------------------------------------------------------------------------------------
    # Random steps
    # ------------------------------------------------------------------------------------------------------

    def _step_actions(self) -> Sequence[StepAction]:
        return (
            ("place_order", 40, lambda: self._action("place_order", self._random_order) is not None),
            ("sign_up", 10, lambda: bool(self.sign_up())),
            ("edit_customer", 15, lambda: self._action("edit_customer", self._random_edit_customer)),
            ("edit_address", 5, lambda: self._action("edit_address", self._random_edit_address) is not None),
            ("pay_order", 20, lambda: self._action("pay_order", self._random_pay)),
            ("cancel_order", 5, lambda: self._action("cancel_order", self._random_cancel)),
        )

    def _random_order(self, conn: ShopConnection) -> int | None:
        id_customer = self._random_id(
            conn,
            "id_customer",
            "FROM ps_customer c WHERE c.is_guest = 0 AND c.deleted = 0 AND c.active = 1 AND EXISTS "
            "(SELECT 1 FROM ps_address a WHERE a.id_customer = c.id_customer AND a.deleted = 0)",
        )
        if id_customer is None:
            return None
        # Roughly a third of the customers pay by card at checkout; the others choose bank wire.
        return self._place_order(conn, id_customer, None, self.random.random() < 0.3)

    def _random_edit_customer(self, conn: ShopConnection) -> bool:
        id_customer = self._random_id(conn, "id_customer", "FROM ps_customer WHERE is_guest = 0 AND deleted = 0")
        return id_customer is not None and self._edit_customer(conn, id_customer, {})

    def _random_edit_address(self, conn: ShopConnection) -> int | None:
        id_address = self._random_id(
            conn,
            "a.id_address",
            "FROM ps_address a JOIN ps_customer c ON c.id_customer = a.id_customer "
            "WHERE a.deleted = 0 AND c.is_guest = 0 AND c.deleted = 0",
        )
        # Another session may archive the address (copy-on-edit) between this pick and the locked read.
        return None if id_address is None else self._edit_address(conn, id_address, {}, missing_ok=True)

    def _random_pay(self, conn: ShopConnection) -> bool:
        id_order = self._random_id(
            conn, "id_order", "FROM ps_orders WHERE current_state = %s", (STATE_AWAITING_BANK_WIRE,)
        )
        return id_order is not None and self._pay_order(conn, id_order)

    def _random_cancel(self, conn: ShopConnection) -> bool:
        id_order = self._random_id(
            conn, "id_order", "FROM ps_orders WHERE current_state IN (%s, %s)", CANCELLABLE_STATES
        )
        return id_order is not None and self._cancel_order(conn, id_order)

    def _random_id(self, conn: ShopConnection, column: str, from_where: str, args: Sequence[Any] = ()) -> int | None:
        """A random row's id among those `from_where` selects, drawn deterministically (count, then offset)."""
        count = int(_scalar(conn, f"SELECT COUNT(*) {from_where}", args) or 0)
        if count == 0:
            return None
        offset = self.random.randrange(count)
        found = _scalar(conn, f"SELECT {column} {from_where} ORDER BY {column} LIMIT 1 OFFSET %s", (*args, offset))
        return None if found is None else int(found)

    # ------------------------------------------------------------------------------------------------------
    # Customers and addresses
    # ------------------------------------------------------------------------------------------------------

    def _sign_up(self, conn: ShopConnection) -> int:
        rng = self.random
        now = self._now()
        firstname, lastname = person_name(rng)
        company = company_name(rng) if rng.random() < 0.15 else None
        id_customer = _insert(
            conn,
            "ps_customer",
            {
                "id_shop_group": ID_SHOP_GROUP,
                "id_shop": ID_SHOP,
                "id_gender": rng.choice((1, 2)),
                "id_default_group": CUSTOMER_GROUP,
                "id_lang": ID_LANG,
                "id_risk": 0,
                "company": company,
                "firstname": firstname,
                "lastname": lastname,
                "email": self._unique_email(conn, firstname, lastname),
                "passwd": self._bcrypt_like(),
                "last_passwd_gen": now,
                "birthday": date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)),
                "newsletter": int(rng.random() < 0.4),
                "optin": 0,
                "secure_key": f"{rng.getrandbits(128):032x}",
                "active": 1,
                "is_guest": 0,
                "deleted": 0,
                "date_add": now,
                "date_upd": now,
            },
        )
        countries = _rows(conn, "SELECT id_country, iso_code FROM ps_country WHERE active = 1 ORDER BY id_country")
        if not countries:
            raise LookupError("ps_country has no active country: cannot create an address")
        id_country, iso_code = rng.choice(countries)
        place = postal_address(rng, str(iso_code))
        _insert(
            conn,
            "ps_address",
            {
                "id_country": id_country,
                "id_state": None,
                "id_customer": id_customer,
                "alias": "My address",
                "company": company,
                "lastname": lastname,
                "firstname": firstname,
                "address1": place.street,
                "address2": None,
                "postcode": place.postcode,
                "city": place.city,
                "phone": place.phone,
                "phone_mobile": place.mobile if rng.random() < 0.6 else None,
                "date_add": now,
                "date_upd": now,
                "active": 1,
                "deleted": 0,
            },
        )
        return id_customer

    def _edit_customer(self, conn: ShopConnection, id_customer: int, changes: Mapping[str, Any]) -> bool:
        row = _one(
            conn,
            "SELECT firstname, lastname, company, newsletter FROM ps_customer "
            "WHERE id_customer = %s AND deleted = 0 FOR UPDATE",
            (id_customer,),
        )
        if row is None:
            raise LookupError(f"ps_customer {id_customer} does not exist or is deleted")
        if not changes:
            changes = self._random_customer_changes(conn, row)
        _update(conn, "ps_customer", {**changes, "date_upd": self._now()}, "id_customer", id_customer)
        return True

    def _random_customer_changes(self, conn: ShopConnection, row: tuple[Any, ...]) -> dict[str, Any]:
        rng = self.random
        firstname, lastname, company, newsletter = row
        kind = rng.choices(("email", "lastname", "company", "newsletter"), weights=(40, 20, 20, 20))[0]
        if kind == "email":
            return {"email": self._unique_email(conn, firstname, lastname)}
        if kind == "lastname":  # e.g. after a marriage
            return {"lastname": f"{lastname}-{rng.choice(LAST_NAMES)}"[:255]}
        if kind == "company":
            return {"company": None if company else company_name(rng)}
        return {"newsletter": 0 if newsletter else 1}

    def _edit_address(
        self, conn: ShopConnection, id_address: int, changes: Mapping[str, Any], *, missing_ok: bool = False
    ) -> int | None:
        columns = ", ".join(ADDRESS_COPY_COLUMNS)
        row = _one(
            conn, f"SELECT {columns} FROM ps_address WHERE id_address = %s AND deleted = 0 FOR UPDATE", (id_address,)
        )
        if row is None:
            if missing_ok:
                return None
            raise LookupError(f"ps_address {id_address} does not exist or is deleted")
        current = dict(zip(ADDRESS_COPY_COLUMNS, row, strict=True))
        if not changes:
            changes = self._random_address_changes(conn, current)
        now = self._now()
        used = _scalar(
            conn,
            "SELECT 1 FROM ps_orders WHERE id_address_delivery = %s OR id_address_invoice = %s LIMIT 1",
            (id_address, id_address),
        )
        if used is None:
            _update(conn, "ps_address", {**changes, "date_upd": now}, "id_address", id_address)
            return id_address
        # CustomerAddressPersister: save the edit as a new address, then Address::delete() on the old one,
        # which only soft-deletes an address an order uses.
        copy = {**current, **changes, "date_add": now, "date_upd": now, "deleted": 0}
        new_id = _insert(conn, "ps_address", copy)
        _update(conn, "ps_address", {"deleted": 1, "date_upd": now}, "id_address", id_address)
        return new_id

    def _random_address_changes(self, conn: ShopConnection, current: Mapping[str, Any]) -> dict[str, Any]:
        rng = self.random
        iso_code = str(
            _scalar(conn, "SELECT iso_code FROM ps_country WHERE id_country = %s", (current["id_country"],)) or ""
        )
        place = postal_address(rng, iso_code)
        kind = rng.choices(("move", "phone", "address2", "company"), weights=(50, 25, 15, 10))[0]
        if kind == "move":
            return {"address1": place.street, "postcode": place.postcode, "city": place.city}
        if kind == "phone":
            return {"phone": place.phone, "phone_mobile": place.mobile}
        if kind == "address2":
            return {"address2": rng.choice(("Apt 4B", "2nd floor", "Building C", "c/o Reception", "Suite 210"))}
        return {"company": None if current["company"] else company_name(rng)}

    def _unique_email(self, conn: ShopConnection, firstname: str, lastname: str) -> str:
        # Customer::customerExists: the shop refuses a second account with the same e-mail.
        return unused_email(self.random, firstname, lastname, lambda email: _scalar(
            conn, "SELECT 1 FROM ps_customer WHERE email = %s LIMIT 1", (email,)) is not None)

    def _bcrypt_like(self) -> str:
        """What password_hash(PASSWORD_BCRYPT) stores: $2y$10$ + 53 characters of salt and hash."""
        return "$2y$10$" + "".join(self.random.choice(BCRYPT_ALPHABET) for _ in range(53))

    # ------------------------------------------------------------------------------------------------------
    # Orders
    # ------------------------------------------------------------------------------------------------------

    def _place_order(
        self, conn: ShopConnection, id_customer: int, lines: list[tuple[int, int]] | None, paid: bool
    ) -> int | None:
        customer = _one(
            conn,
            "SELECT secure_key, firstname, lastname FROM ps_customer WHERE id_customer = %s AND deleted = 0",
            (id_customer,),
        )
        if customer is None:
            raise LookupError(f"ps_customer {id_customer} does not exist or is deleted")
        id_address = _scalar(
            conn,
            "SELECT id_address FROM ps_address WHERE id_customer = %s AND deleted = 0 ORDER BY id_address DESC LIMIT 1",
            (id_customer,),
        )
        if id_address is None:
            raise LookupError(f"ps_customer {id_customer} has no address to deliver to")
        wanted = self._random_cart(conn) if lines is None else _merge_lines(lines)
        if not wanted:
            return None
        # validateOrder checks every line against the stock under a row lock (in product order, so that two
        # checkouts never lock the same rows in opposite orders).
        for product_id in sorted(wanted):
            stock = _scalar(
                conn,
                "SELECT quantity FROM ps_stock_available WHERE id_product = %s AND id_product_attribute = 0 "
                "AND id_shop = %s AND id_shop_group = %s FOR UPDATE",
                (product_id, ID_SHOP, ID_SHOP_GROUP),
            )
            if stock is None:
                raise LookupError(f"product {product_id} has no ps_stock_available row")
            if wanted[product_id] > int(stock):
                return None
        priced = self._price_lines(conn, wanted)
        if priced is None:
            return None
        return self._insert_order(conn, id_customer, int(id_address), customer, priced, paid)

    def _random_cart(self, conn: ShopConnection) -> dict[int, int]:
        in_stock = _rows(
            conn,
            "SELECT sa.id_product, sa.quantity FROM ps_stock_available sa "
            "JOIN ps_product_shop ps ON ps.id_product = sa.id_product AND ps.id_shop = sa.id_shop "
            "WHERE sa.id_product_attribute = 0 AND sa.id_shop = %s AND sa.quantity > 0 AND ps.active = 1 "
            "ORDER BY sa.id_product",
            (ID_SHOP,),
        )
        if not in_stock:
            return {}
        picked = self.random.sample(in_stock, min(self.random.randint(1, 4), len(in_stock)))
        return {int(pid): min(self.random.randint(1, 3), int(quantity)) for pid, quantity in picked}

    def _price_lines(self, conn: ShopConnection, wanted: Mapping[int, int]) -> list[_Line] | None:
        """The lines with the shop's prices and product snapshot; None if a product cannot be ordered."""
        placeholders = ", ".join(["%s"] * len(wanted))
        rows = _rows(
            conn,
            "SELECT p.id_product, pl.name, p.reference, ps.price, p.wholesale_price, p.weight, p.ean13, p.isbn, "
            "p.upc, p.mpn, p.supplier_reference, p.id_tax_rules_group, ps.active "
            "FROM ps_product p "
            "JOIN ps_product_shop ps ON ps.id_product = p.id_product AND ps.id_shop = %s "
            "JOIN ps_product_lang pl ON pl.id_product = p.id_product AND pl.id_shop = %s AND pl.id_lang = %s "
            f"WHERE p.id_product IN ({placeholders})",
            (ID_SHOP, ID_SHOP, ID_LANG, *wanted),
        )
        by_id = {int(row[0]): row for row in rows}
        missing = sorted(set(wanted) - set(by_id))
        if missing:
            raise LookupError(f"products {missing} do not exist in shop {ID_SHOP}")
        lines: list[_Line] = []
        for product_id, quantity in wanted.items():
            _, name, reference, price, wholesale, weight, ean13, isbn, upc, mpn, supplier_ref, tax_group, active = (
                by_id[product_id]
            )
            if not active:
                return None
            unit_excl = Decimal(price)
            lines.append(
                _Line(
                    product_id=product_id,
                    quantity=quantity,
                    name=name,
                    reference=reference,
                    unit_excl=unit_excl,
                    # PrestaShop's default rounding: each item, half up, to the currency's 2 decimals.
                    unit_incl=(unit_excl * (1 + TAX_RATE / 100)).quantize(CENT, ROUND_HALF_UP),
                    wholesale_price=Decimal(wholesale),
                    weight=Decimal(weight),
                    ean13=ean13,
                    isbn=isbn,
                    upc=upc,
                    mpn=mpn,
                    supplier_reference=supplier_ref,
                    id_tax_rules_group=int(tax_group),
                )
            )
        return lines

    def _insert_order(
        self,
        conn: ShopConnection,
        id_customer: int,
        id_address: int,
        customer: tuple[Any, ...],
        lines: list[_Line],
        paid: bool,
    ) -> int:
        now = self._now()
        secure_key, firstname, lastname = customer
        total_excl = sum((line.total_excl for line in lines), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
        total_incl = sum((line.total_incl for line in lines), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
        state = STATE_PAYMENT_ACCEPTED if paid else STATE_AWAITING_BANK_WIRE
        payment, module = CARD if paid else BANK_WIRE
        id_cart = int(_scalar(conn, "SELECT COALESCE(MAX(id_cart), 0) + 1 FROM ps_orders") or 1)
        id_order = _insert(
            conn,
            "ps_orders",
            {
                "reference": self._unique_reference(conn),
                "id_shop_group": ID_SHOP_GROUP,
                "id_shop": ID_SHOP,
                "id_carrier": ID_CARRIER,
                "id_lang": ID_LANG,
                "id_customer": id_customer,
                "id_cart": id_cart,
                "id_currency": ID_CURRENCY,
                "id_address_delivery": id_address,
                "id_address_invoice": id_address,
                "current_state": state,
                "secure_key": secure_key,
                "payment": payment,
                "conversion_rate": 1,
                "module": module,
                "total_paid": total_incl,
                "total_paid_tax_incl": total_incl,
                "total_paid_tax_excl": total_excl,
                # validateOrder starts at 0; recording the payment adds the amount paid.
                "total_paid_real": 0,
                "total_products": total_excl,
                "total_products_wt": total_incl,
                "total_shipping": 0,
                "total_shipping_tax_incl": 0,
                "total_shipping_tax_excl": 0,
                "carrier_tax_rate": 0,
                "round_mode": 2,
                "round_type": 1,
                "invoice_number": 0,
                "delivery_number": 0,
                "invoice_date": ZERO_DATETIME,
                "delivery_date": ZERO_DATETIME,
                "valid": int(paid),
                "date_add": now,
                "date_upd": now,
            },
        )
        for line in lines:
            self._insert_order_detail(conn, id_order, line)
        self._add_history(conn, id_order, state, FRONT_OFFICE, now)
        for line in sorted(lines, key=lambda item: item.product_id):
            # StockAvailable::updateQuantity(-qty) at order time; updatePhysicalProductQuantity then counts
            # the line as reserved, so physical (= quantity + reserved) stays as it was.
            _execute(
                conn,
                "UPDATE ps_stock_available SET quantity = quantity - %s, reserved_quantity = reserved_quantity + %s "
                "WHERE id_product = %s AND id_product_attribute = 0 AND id_shop = %s AND id_shop_group = %s",
                (line.quantity, line.quantity, line.product_id, ID_SHOP, ID_SHOP_GROUP),
            )
        if paid:
            order = self._lock_order(conn, id_order)
            assert order is not None  # inserted above, in this transaction
            self._invoice_and_pay(conn, order, CARD[0], FRONT_OFFICE, now, f"{firstname} {lastname}")
        return id_order

    def _insert_order_detail(self, conn: ShopConnection, id_order: int, line: _Line) -> None:
        _insert(
            conn,
            "ps_order_detail",
            {
                "id_order": id_order,
                "id_order_invoice": None,
                "id_warehouse": 0,
                "id_shop": ID_SHOP,
                "product_id": line.product_id,
                "product_attribute_id": 0,
                "id_customization": 0,
                "product_name": line.name,
                "product_quantity": line.quantity,
                "product_quantity_in_stock": line.quantity,
                "product_price": line.unit_excl,
                "product_ean13": line.ean13,
                "product_isbn": line.isbn,
                "product_upc": line.upc,
                "product_mpn": line.mpn,
                "product_reference": line.reference,
                "product_supplier_reference": line.supplier_reference,
                "product_weight": line.weight,
                "id_tax_rules_group": line.id_tax_rules_group,
                "tax_computation_method": 0,
                "tax_name": TAX_NAME,
                "tax_rate": TAX_RATE,
                "total_price_tax_incl": line.total_incl,
                "total_price_tax_excl": line.total_excl,
                "unit_price_tax_incl": line.unit_incl,
                "unit_price_tax_excl": line.unit_excl,
                "purchase_supplier_price": line.wholesale_price,
                "original_product_price": line.unit_excl,
                "original_wholesale_price": line.wholesale_price,
            },
        )

    def _pay_order(self, conn: ShopConnection, id_order: int) -> bool:
        order = self._lock_order(conn, id_order)
        if order is None or order.current_state != STATE_AWAITING_BANK_WIRE:
            return False
        now = self._now()
        self._add_history(conn, id_order, STATE_PAYMENT_ACCEPTED, BACK_OFFICE_EMPLOYEE, now)
        _update(
            conn,
            "ps_orders",
            {"current_state": STATE_PAYMENT_ACCEPTED, "valid": 1, "date_upd": now},
            "id_order",
            id_order,
        )
        self._invoice_and_pay(conn, order, BANK_WIRE[0], BACK_OFFICE_EMPLOYEE, now, order.customer_name)
        return True

    def _invoice_and_pay(
        self, conn: ShopConnection, order: _Order, method: str, id_employee: int, now: datetime, holder: str
    ) -> None:
        """Entering a state with invoice=1 and paid=1: Order::setInvoice, then a payment for the unpaid rest,
        linked to the invoice."""
        # Locking read: two invoices never get the same number.
        number = int(_scalar(conn, "SELECT COALESCE(MAX(number), 0) + 1 FROM ps_order_invoice FOR UPDATE") or 1)
        id_invoice = _insert(
            conn,
            "ps_order_invoice",
            {
                "id_order": order.id_order,
                "number": number,
                "delivery_number": 0,
                "delivery_date": ZERO_DATETIME,
                "total_paid_tax_excl": order.total_paid_tax_excl,
                "total_paid_tax_incl": order.total_paid_tax_incl,
                "total_products": order.total_products,
                "total_products_wt": order.total_products_wt,
                "total_shipping_tax_excl": order.total_shipping_tax_excl,
                "total_shipping_tax_incl": order.total_shipping_tax_incl,
                "shipping_tax_computation_method": 0,
                "shop_address": "Demo Shop\n5 Place Bellecour\n69002 Lyon\nFrance",
                "note": "",
                "date_add": now,
            },
        )
        _execute(
            conn, "UPDATE ps_order_detail SET id_order_invoice = %s WHERE id_order = %s", (id_invoice, order.id_order)
        )
        by_card = method == CARD[0]
        id_payment = _insert(
            conn,
            "ps_order_payment",
            {
                "order_reference": order.reference,
                "id_currency": ID_CURRENCY,
                "amount": order.total_paid_tax_incl,
                "payment_method": method,
                "conversion_rate": 1,
                "transaction_id": self._transaction_id(by_card),
                "card_number": f"****{self.random.randint(0, 9999):04d}" if by_card else None,
                "card_brand": self.random.choice(("VISA", "MASTERCARD")) if by_card else None,
                "card_expiration": f"{self.random.randint(1, 12):02d}/{now.year + self.random.randint(1, 4)}"
                if by_card
                else None,
                "card_holder": holder if by_card else None,
                "date_add": now,
                "id_employee": id_employee,
            },
        )
        _execute(
            conn,
            "INSERT INTO ps_order_invoice_payment (id_order_invoice, id_order_payment, id_order) VALUES (%s, %s, %s)",
            (id_invoice, id_payment, order.id_order),
        )
        _execute(
            conn,
            "UPDATE ps_orders SET invoice_number = %s, invoice_date = %s, total_paid_real = total_paid_real + %s, "
            "date_upd = %s WHERE id_order = %s",
            (number, now, order.total_paid_tax_incl, now, order.id_order),
        )

    def _cancel_order(self, conn: ShopConnection, id_order: int) -> bool:
        order = self._lock_order(conn, id_order)
        if order is None or order.current_state not in CANCELLABLE_STATES:
            return False
        now = self._now()
        self._add_history(conn, id_order, STATE_CANCELED, BACK_OFFICE_EMPLOYEE, now)
        _update(conn, "ps_orders", {"current_state": STATE_CANCELED, "valid": 0, "date_upd": now}, "id_order", id_order)
        returned = _rows(
            conn,
            "SELECT product_id, SUM(product_quantity - product_quantity_refunded) FROM ps_order_detail "
            "WHERE id_order = %s GROUP BY product_id ORDER BY product_id",
            (id_order,),
        )
        for product_id, quantity in returned:
            # changeIdOrderState: entering Canceled gives the quantity back and the order no longer reserves it.
            _execute(
                conn,
                "UPDATE ps_stock_available SET quantity = quantity + %s, reserved_quantity = reserved_quantity - %s "
                "WHERE id_product = %s AND id_product_attribute = 0 AND id_shop = %s AND id_shop_group = %s",
                (int(quantity), int(quantity), product_id, ID_SHOP, ID_SHOP_GROUP),
            )
        return True

    def _lock_order(self, conn: ShopConnection, id_order: int) -> _Order | None:
        row = _one(
            conn,
            "SELECT o.id_order, o.reference, o.current_state, o.total_paid_tax_excl, o.total_paid_tax_incl, "
            "o.total_products, o.total_products_wt, o.total_shipping_tax_excl, o.total_shipping_tax_incl, "
            "CONCAT(c.firstname, ' ', c.lastname) "
            "FROM ps_orders o LEFT JOIN ps_customer c ON c.id_customer = o.id_customer "
            "WHERE o.id_order = %s FOR UPDATE",
            (id_order,),
        )
        if row is None:
            return None
        return _Order(
            id_order=int(row[0]),
            reference=str(row[1]),
            current_state=int(row[2]),
            total_paid_tax_excl=Decimal(row[3]),
            total_paid_tax_incl=Decimal(row[4]),
            total_products=Decimal(row[5]),
            total_products_wt=Decimal(row[6]),
            total_shipping_tax_excl=Decimal(row[7]),
            total_shipping_tax_incl=Decimal(row[8]),
            customer_name=str(row[9] or ""),
        )

    def _add_history(self, conn: ShopConnection, id_order: int, state: int, id_employee: int, now: datetime) -> None:
        _insert(
            conn,
            "ps_order_history",
            {"id_employee": id_employee, "id_order": id_order, "id_order_state": state, "date_add": now},
        )

    def _unique_reference(self, conn: ShopConnection) -> str:
        """Order::generateReference: 9 random upper-case letters, drawn again on a clash."""
        while True:
            reference = "".join(self.random.choice(string.ascii_uppercase) for _ in range(9))
            if _scalar(conn, "SELECT 1 FROM ps_orders WHERE reference = %s LIMIT 1", (reference,)) is None:
                return reference

    def _transaction_id(self, by_card: bool) -> str:
        if by_card:
            return "ch_" + "".join(self.random.choice(string.ascii_letters + string.digits) for _ in range(24))
        return "WIRE-" + "".join(self.random.choice(string.digits) for _ in range(10))

    def _now(self) -> datetime:
        """The shop's local wall-clock time, as PrestaShop stores DATETIMEs."""
        return datetime.now(self.timezone).replace(tzinfo=None, microsecond=0)

    # ------------------------------------------------------------------------------------------------------
    # Connection handling (PyMySQL)
    # ------------------------------------------------------------------------------------------------------

    def _prepare(self, conn: ShopConnection) -> None:
        conn.autocommit(False)

    def _commit(self, conn: ShopConnection) -> None:
        conn.commit()

    def _rollback(self, conn: ShopConnection) -> None:
        conn.rollback()

    def _close_connection(self, conn: ShopConnection) -> None:
        if conn.open:
            with contextlib.suppress(pymysql.err.Error):  # already unusable: closing is best effort
                conn.close()

    def _is_usable(self, conn: ShopConnection) -> bool:
        return bool(conn.open)

    def _is_transient(self, exc: BaseException) -> bool:
        # 1213 deadlock (InnoDB rolled the transaction back), 1205 lock wait timeout.
        return isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and exc.args[0] in (1205, 1213)

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.Error)


# ----------------------------------------------------------------------------------------------------------
# SQL helpers
# ----------------------------------------------------------------------------------------------------------


def _check_columns(table: str, changes: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"{table}: cannot edit {unknown}; editable columns are {sorted(allowed)}")


def _merge_lines(lines: list[tuple[int, int]]) -> dict[int, int]:
    """A cart holds one line per product: add up repeated products (first-seen order kept)."""
    merged: dict[int, int] = {}
    for product_id, quantity in lines:
        if quantity <= 0:
            raise ValueError(f"order line for product {product_id}: quantity must be positive, got {quantity}")
        merged[product_id] = merged.get(product_id, 0) + quantity
    return merged


def _rows(conn: ShopConnection, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(sql, tuple(args))
        return list(cur.fetchall())


def _one(conn: ShopConnection, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(sql, tuple(args))
        return cur.fetchone()


def _scalar(conn: ShopConnection, sql: str, args: Sequence[Any] = ()) -> Any:
    row = _one(conn, sql, args)
    return None if row is None else row[0]


def _execute(conn: ShopConnection, sql: str, args: Sequence[Any] = ()) -> int:
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        return cur.execute(sql, tuple(args))


def _insert(conn: ShopConnection, table: str, values: Mapping[str, Any]) -> int:
    """INSERT one row; returns its AUTO_INCREMENT id. Column names come from this module, never from input."""
    columns = ", ".join(f"`{column}`" for column in values)
    placeholders = ", ".join(["%s"] * len(values))
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(f"INSERT INTO `{table}` ({columns}) VALUES ({placeholders})", tuple(values.values()))
        return int(cur.lastrowid)


def _update(conn: ShopConnection, table: str, values: Mapping[str, Any], key: str, key_value: int) -> None:
    """UPDATE one row by key. Column names are checked against a whitelist by the public methods."""
    assignments = ", ".join(f"`{column}` = %s" for column in values)
    _execute(conn, f"UPDATE `{table}` SET {assignments} WHERE `{key}` = %s", (*values.values(), key_value))
