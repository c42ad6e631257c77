"""The mapping engine: envelopes in, target operations out, checked value by value.

Rules are written in YAML as a person would write them; envelopes are shaped like the capture's (and the
golden files'). Property tests cover the arithmetic and calendar rules that examples cannot exhaust."""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from replicator.envelope.debezium import UNAVAILABLE_VALUE_PLACEHOLDER
from replicator.errors import SkippableRecordError
from replicator.mapping import ops
from replicator.mapping.engine import (
    MappingEngine,
    convert_zone,
    delta_of,
    identity_key,
    instant_ms,
    join_parts,
    local_edit_ts_ms,
    position_text,
    split_name,
    to_bool,
    to_date,
    to_decimal,
    to_int,
    wall_clock,
)
from replicator.mapping.ops import FieldChange, Lookup, OpKind, Policy, TargetOp, Version
from replicator.mapping.spec import MappingSet

GOLDEN = Path(__file__).parent / "data" / "golden"
PARIS = ZoneInfo("Europe/Paris")
# Timing is for benchmarks, never asserted in tests (DESIGN.md 7): no deadline on a loaded machine.
unhurried = settings(deadline=None)

SYSTEMS = {
    "shop": {"kind": "mariadb", "priority": 2, "source_name": "shop", "namespace": "prestashop"},
    "erp": {"kind": "postgresql", "priority": 1, "source_name": "erp"},
}
SHOP_TS = 1_717_236_001_000
ERP_TS = 1_717_236_002_000


def engine(*rules: str) -> MappingEngine:
    parsed = [yaml.safe_load(textwrap.dedent(rule)) for rule in rules]
    return MappingEngine(MappingSet.model_validate({"systems": SYSTEMS, "rules": parsed}))


def shop_event(
    table: str, op: str, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None, **source: Any
) -> dict[str, Any]:
    block = {"version": "0.1.0-replicator", "connector": "mariadb", "name": "shop", "ts_ms": SHOP_TS,
             "snapshot": "false", "db": "prestashop", "table": table, "server_id": 1, "gtid": "0-1-42",
             "file": "mysql-bin.000003", "pos": 900, "row": 0, **source}  # fmt: skip
    return {"before": before, "after": after, "source": block, "op": op, "ts_ms": SHOP_TS + 5}


def erp_event(
    table: str, op: str, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None, **source: Any
) -> dict[str, Any]:
    block = {"version": "0.1.0-replicator", "connector": "postgresql", "name": "erp", "ts_ms": ERP_TS,
             "snapshot": "false", "db": "erp", "schema": "public", "table": table, "txId": 700, "lsn": 5000,
             **source}  # fmt: skip
    return {"before": before, "after": after, "source": block, "op": op, "ts_ms": ERP_TS + 5}


def values(op: TargetOp) -> dict[str, Any]:
    return {name: change.value for name, change in op.fields.items()}


def skipped(engine_: MappingEngine, envelope: dict[str, Any]) -> str:
    with pytest.raises(SkippableRecordError) as caught:
        engine_.ops_for(envelope)
    return str(caught.value)


CUSTOMERS = """
name: customers
source: {system: shop, table: ps_customer, key: [id_customer]}
target: {system: erp, table: res_partner}
identity: customer
match_on: [email]
on_delete: {mode: soft, column: active, value: false}
fields:
  name: {concat: [firstname, lastname]}
  email: {from: email, normalize: [trim, lower], max_length: 20}
  ref: {from: id_customer, prefix: "PS-C"}
  type: {const: contact}
  active: {from: active, cast: bool}
  comment: {from: note, owner: erp}
"""
CUSTOMER = {"id_customer": 42, "firstname": "Jean", "lastname": "Dupont", "email": " Jean@Example.FR ",
            "active": 1, "note": "vip"}  # fmt: skip


# --- create, update, delete -----------------------------------------------------------------------------


def test_an_insert_becomes_an_upsert_of_every_field_with_identity_match_and_version() -> None:
    (op,) = engine(CUSTOMERS).ops_for(shop_event("ps_customer", "c", after=CUSTOMER))

    assert op == TargetOp(
        kind=OpKind.UPSERT,
        table="public.res_partner",
        key={},
        fields={
            "name": FieldChange("Jean Dupont"),
            "email": FieldChange("jean@example.fr"),
            "ref": FieldChange("PS-C42"),
            "type": FieldChange("contact"),
            "active": FieldChange(True),
            "comment": FieldChange("vip", Policy.OWNER, owner="erp"),
        },
        identity=("customer", "42"),
        version=Version(SHOP_TS, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000"),
        mapping="customers",
        match={"email": "jean@example.fr"},
    )


def test_a_snapshot_read_is_handled_like_an_insert() -> None:
    (op,) = engine(CUSTOMERS).ops_for(shop_event("ps_customer", "r", after=CUSTOMER, snapshot="true"))

    assert (op.kind, values(op)["name"]) == (OpKind.UPSERT, "Jean Dupont")


def test_an_update_carries_only_the_fields_whose_source_columns_changed() -> None:
    after = {**CUSTOMER, "lastname": "Durand", "note": "vip"}

    (op,) = engine(CUSTOMERS).ops_for(shop_event("ps_customer", "u", before=CUSTOMER, after=after))

    assert (op.kind, values(op)) == (OpKind.UPSERT, {"name": "Jean Durand"})
    assert op.match == {"email": "jean@example.fr"}  # always there, to link a row seen for the first time


def test_an_update_without_before_image_carries_every_mapped_field() -> None:
    (op,) = engine(CUSTOMERS).ops_for(shop_event("ps_customer", "u", before=None, after=CUSTOMER))

    assert set(op.fields) == {"name", "email", "ref", "type", "active", "comment"}


def test_an_update_touching_no_mapped_column_produces_nothing() -> None:
    before = {**CUSTOMER, "passwd": "x"}
    assert (
        engine(CUSTOMERS).ops_for(shop_event("ps_customer", "u", before=before, after={**before, "passwd": "y"})) == []
    )


def test_an_unavailable_toasted_value_is_left_alone() -> None:
    rule = """
    name: products
    source: {system: erp, table: product_template, key: [id]}
    target: {system: shop, table: ps_product}
    key: {id_product: id}
    on_delete: ignore
    fields:
      description: description
      price: list_price
    """
    after = {"id": 3, "description": UNAVAILABLE_VALUE_PLACEHOLDER, "list_price": "12.50"}

    (updated,) = engine(rule).ops_for(erp_event("product_template", "u", before=None, after=after))

    assert updated.key == {"id_product": 3}
    assert values(updated) == {"price": "12.50"}
    assert updated.version == Version(ERP_TS, "erp", 1, "00000000000000005000")


@pytest.mark.parametrize(
    ("on_delete", "expected"),
    [
        ("hard", [(OpKind.DELETE, {})]),
        ("{mode: soft, column: active, value: false}", [(OpKind.SOFT_DELETE, {"active": False})]),
        ("ignore", []),
    ],
)
def test_a_delete_follows_the_rules_delete_handling(
    on_delete: str, expected: list[tuple[OpKind, dict[str, Any]]]
) -> None:
    rule = CUSTOMERS.replace("{mode: soft, column: active, value: false}", on_delete)

    result = engine(rule).ops_for(shop_event("ps_customer", "d", before=CUSTOMER))

    assert [(op.kind, values(op)) for op in result] == expected
    assert all(op.identity == ("customer", "42") for op in result)


def test_a_soft_delete_uses_the_policy_declared_for_its_column() -> None:
    rule = CUSTOMERS.replace("active: {from: active, cast: bool}", "active: {from: active, cast: bool, owner: shop}")

    (op,) = engine(rule).ops_for(shop_event("ps_customer", "d", before=CUSTOMER))

    assert op.fields == {"active": FieldChange(False, Policy.OWNER, owner="shop")}


def test_a_key_rule_builds_its_target_key_from_values() -> None:
    rule = """
    name: stock
    source: {system: erp, table: stock_level, key: [id]}
    target: {system: shop, table: ps_stock_available}
    key:
      id_product: {lookup: {identity: product, from: product_id}}
      id_product_attribute: {const: 0}
      id_shop: {const: 1}
    on_delete: hard
    fields:
      quantity: {from: qty, cast: int}
    """
    product = """
    name: products
    source: {system: shop, table: ps_product, key: [id_product]}
    target: {system: erp, table: product_product}
    identity: product
    on_delete: ignore
    fields: {default_code: reference}
    """

    (op,) = engine(rule, product).ops_for(erp_event("stock_level", "c", after={"id": 1, "product_id": 9, "qty": "5"}))

    assert op.key == {
        "id_product": Lookup(kind="identity", entity="product", source_key="9"),
        "id_product_attribute": 0,
        "id_shop": 1,
    }
    assert op.identity is None
    assert values(op) == {"quantity": 5}


# --- values --------------------------------------------------------------------------------------------------


def one_field(spec: str, **row: Any) -> Any:
    rule = f"""
    name: r
    source: {{system: shop, table: t, key: [id]}}
    target: {{system: erp, table: u}}
    key: {{id: id}}
    on_delete: ignore
    fields:
      out: {spec}
    """
    (op,) = engine(rule).ops_for(shop_event("t", "c", after={"id": 1, **row}))
    return op.fields["out"].value


def one_field_error(spec: str, **row: Any) -> str:
    with pytest.raises(SkippableRecordError) as caught:
        one_field(spec, **row)
    return str(caught.value)


@pytest.mark.parametrize(
    ("spec", "row", "expected"),
    [
        ("a", {"a": "x"}, "x"),
        ("{concat: [a, b]}", {"a": "Jean", "b": "Dupont"}, "Jean Dupont"),
        ("{concat: [a, b]}", {"a": None, "b": "Dupont"}, "Dupont"),
        ("{concat: [a, b]}", {"a": "", "b": None}, None),
        ("{concat: [a, b, c], separator: '-'}", {"a": 1, "b": "x", "c": "y"}, "1-x-y"),
        ("{split: {from: a, part: first}}", {"a": "Jean Pierre Dupont"}, "Jean"),
        ("{split: {from: a, part: rest}}", {"a": "Jean Pierre Dupont"}, "Pierre Dupont"),
        ("{split: {from: a, part: rest}}", {"a": "Madonna"}, ""),
        ("{const: 7}", {}, 7),
        ("{const: null}", {}, None),
        ("{from: a, normalize: [trim, lower]}", {"a": "  Jean@X.FR "}, "jean@x.fr"),
        ("{from: a, normalize: [collapse_whitespace, upper]}", {"a": " fr  75 \t 001 "}, "FR 75 001"),
        ("{from: a, normalize: [trim]}", {"a": 5}, 5),
        ("{from: a, prefix: 'PS#', suffix: '/x'}", {"a": 42}, "PS#42/x"),
        ("{from: a, map: {values: {1: sale, 6: cancel}}}", {"a": 6}, "cancel"),
        ("{from: a, map: {values: {1: sale}}}", {"a": "1"}, "sale"),
        ("{from: a, map: {values: {1: sale}, default: draft}}", {"a": 99}, "draft"),
        ("{from: a, map: {values: {1: sale}, default: null}}", {"a": 99}, None),
        ("{from: a, map: {values: {1: sale}}}", {"a": None}, None),
        ("{from: a, map: {values: {true: 1, false: 0}}}", {"a": True}, 1),
        ("{from: a, cast: int}", {"a": "12"}, 12),
        ("{from: a, cast: int}", {"a": "12.000"}, 12),
        ("{from: a, cast: int}", {"a": True}, 1),
        ("{from: a, cast: decimal}", {"a": "12.500000"}, Decimal("12.500000")),
        ("{from: a, cast: decimal, scale: 2}", {"a": "12.345000"}, Decimal("12.35")),
        ("{from: a, cast: decimal, scale: 2}", {"a": "-12.345"}, Decimal("-12.35")),
        ("{from: a, cast: decimal, scale: 0}", {"a": 3}, Decimal("3")),
        ("{from: a, cast: string}", {"a": 12}, "12"),
        ("{from: a, cast: string}", {"a": False}, "false"),
        ("{from: a, cast: bool}", {"a": 0}, False),
        ("{from: a, cast: bool}", {"a": "true"}, True),
        ("{from: a, cast: date}", {"a": 19792}, date(2024, 3, 10)),
        ("{from: a, cast: date}", {"a": "2024-03-10"}, date(2024, 3, 10)),
        ("{from: a, cast: datetime}", {"a": 1710074096789}, datetime(2024, 3, 10, 12, 34, 56, 789000)),
        ("{from: a, cast: datetime, unit: us}", {"a": 1710074096789123}, datetime(2024, 3, 10, 12, 34, 56, 789123)),
        ("{from: a, cast: datetime}", {"a": "2024-03-10T10:00:00.5+02:00"}, datetime(2024, 3, 10, 8, 0, 0, 500000)),
        ("{from: a, tz: {from: Europe/Paris, to: UTC}}", {"a": 1710074096000}, datetime(2024, 3, 10, 11, 34, 56)),
        ("{from: a, tz: {from: Europe/Paris, to: UTC}}", {"a": 1719835200000}, datetime(2024, 7, 1, 10, 0)),
        ("{from: a, tz: {from: UTC, to: Europe/Paris}, unit: us}", {"a": 1719835200000000}, datetime(2024, 7, 1, 14)),
        ("{from: a, tz: {from: Europe/Paris, to: UTC}}", {"a": "2024-07-01T12:00:00Z"}, datetime(2024, 7, 1, 12)),
        ("{from: a, tz: {from: Europe/Paris, to: UTC}, cast: date}", {"a": 1719792000000}, date(2024, 6, 30)),
        ("{from: a, max_length: 3}", {"a": "abc"}, "abc"),
        ("{from: a, required: true}", {"a": 0}, 0),
    ],
)  # fmt: skip
def test_value_vocabulary(spec: str, row: dict[str, Any], expected: Any) -> None:
    result = one_field(spec, **row)

    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("spec", "row", "message"),
    [
        ("{from: a, map: {values: {1: sale, 6: cancel}}}", {"a": 8},
         "value 8: no mapping for this value and no default (mapped: 1, 6)"),
        ("{from: a, cast: decimal}", {"a": "12,5"}, "value '12,5': not a decimal number"),
        ("{from: a, cast: decimal}", {"a": "NaN"}, "value 'NaN': not a finite decimal number"),
        ("{from: a, cast: int}", {"a": "12.5"}, "value '12.5': not a whole number"),
        ("{from: a, cast: bool}", {"a": 2}, "value 2: not a boolean (expected 0/1, true/false)"),
        ("{from: a, cast: date}", {"a": "10/03/2024"}, "value '10/03/2024': Invalid isoformat string: '10/03/2024'"),
        ("{from: a, cast: datetime, unit: us}", {"a": 9223372036825200000},
         "value 9223372036825200000: date value out of range"),
        ("{from: a, max_length: 3}", {"a": "abcd"}, "value 'abcd': 4 characters, more than max_length 3"),
    ],
)  # fmt: skip
def test_values_that_cannot_be_converted_are_skippable_and_named(spec: str, row: dict[str, Any], message: str) -> None:
    assert one_field_error(spec, **row) == f"rule r: shop: prestashop.t.a -> erp: public.u.out: {message}"


def test_a_required_null_and_a_missing_column_are_skippable_and_named() -> None:
    assert one_field_error("{from: a, required: true}", a=None) == (
        "rule r: shop: prestashop.t.a -> erp: public.u.out: value is null but required"
    )
    assert one_field_error("{concat: [a, b]}", a="x") == (
        "rule r: shop: prestashop.t.a, b: column b is missing from the event (needed for erp: public.u.out)"
    )


def test_lookups_are_left_for_the_applier() -> None:
    product = "{lookup: {table: product_product, match: {default_code: ref}, returns: id, required: false}}"

    assert one_field(product, ref="REF-1") == Lookup(
        kind="natural", table="public.product_product", match=(("default_code", "REF-1"),), returns="id",
        required=False,
    )  # fmt: skip
    assert one_field(product, ref=None) is None


def test_an_identity_lookup_of_a_null_reference_is_null() -> None:
    rules = [
        CUSTOMERS,
        """
        name: orders
        source: {system: shop, table: ps_orders, key: [id_order]}
        target: {system: erp, table: sale_order}
        identity: order
        on_delete: ignore
        fields:
          partner_id: {lookup: {identity: customer, from: id_customer}}
        """,
    ]
    mapped = engine(*rules)

    (linked,) = mapped.ops_for(shop_event("ps_orders", "c", after={"id_order": 5, "id_customer": 42}))
    (unlinked,) = mapped.ops_for(shop_event("ps_orders", "c", after={"id_order": 6, "id_customer": None}))

    assert linked.fields["partner_id"].value == Lookup(kind="identity", entity="customer", source_key="42")
    assert unlinked.fields["partner_id"].value is None
    assert linked.identity == ("order", "5")


# --- policies -----------------------------------------------------------------------------------------------

STATES = """
name: states
source: {system: erp, table: sale_order, key: [id]}
target: {system: shop, table: ps_orders}
identity: order
mode: update
on_delete: ignore
fields:
  current_state:
    from: state
    map: {values: {draft: 1, sale: 10, done: 4, cancel: 6}, default: 1}
    policy: monotonic
    order: [[1, 10], 2, 4, 6]
  valid: {from: state, map: {values: {done: 1}, default: 0}, policy: monotonic, rank_by: current_state}
"""


def test_monotonic_fields_carry_their_rank_and_followers_share_it() -> None:
    (op,) = engine(STATES).ops_for(erp_event("sale_order", "c", after={"id": 7, "state": "done"}))

    assert op.kind is OpKind.UPDATE
    assert op.fields == {
        "current_state": FieldChange(4, Policy.MONOTONIC, rank=2),
        "valid": FieldChange(1, Policy.MONOTONIC, rank=2),
    }


def test_values_sharing_a_rank_get_the_same_rank() -> None:
    mapped = engine(STATES)
    draft = mapped.ops_for(erp_event("sale_order", "c", after={"id": 7, "state": "draft"}))[0]
    sale = mapped.ops_for(erp_event("sale_order", "c", after={"id": 7, "state": "sale"}))[0]

    assert draft.fields["current_state"].rank == sale.fields["current_state"].rank == 0


def test_a_value_outside_the_monotonic_order_is_skippable() -> None:
    rule = STATES.replace("map: {values: {draft: 1, sale: 10, done: 4, cancel: 6}, default: 1}", "cast: int")

    assert skipped(engine(rule), erp_event("sale_order", "c", after={"id": 7, "state": "3"})) == (
        "rule states: erp: public.sale_order.state -> shop: prestashop.ps_orders.current_state: value 3 is not in "
        "the monotonic order (1, 10, 2, 4, 6)"
    )


DELTA = """
name: sold
source: {system: shop, table: ps_order_detail, key: [id_order_detail]}
target: {system: erp, table: product_sales}
key: {product_id: product_id}
on_delete: ignore
fields:
  sold: {from: product_quantity, policy: delta}
  amount: {from: total_price_tax_excl, policy: delta}
"""


def test_delta_is_after_minus_before_on_insert_update_and_delete() -> None:
    mapped = engine(DELTA)
    row = {"id_order_detail": 1, "product_id": 9, "product_quantity": 3, "total_price_tax_excl": "30.000000"}
    changed = {**row, "product_quantity": 5, "total_price_tax_excl": "50.500000"}

    created = mapped.ops_for(shop_event("ps_order_detail", "c", after=row))
    updated = mapped.ops_for(shop_event("ps_order_detail", "u", before=row, after=changed))
    deleted = mapped.ops_for(shop_event("ps_order_detail", "d", before=changed))

    assert [values(op) for op in created + updated + deleted] == [
        {"sold": 3, "amount": Decimal("30.000000")},
        {"sold": 2, "amount": Decimal("20.500000")},
        {"sold": -5, "amount": Decimal("-50.500000")},
    ]
    assert [op.kind for op in created + updated + deleted] == [OpKind.UPSERT] * 3
    assert all(change.policy is Policy.DELTA for op in created for change in op.fields.values())


def test_a_delta_without_before_image_is_skippable() -> None:
    event = erp_event("ps_order_detail", "u", after={"id_order_detail": 1})
    event["source"].update(name="shop", connector="mariadb", db="prestashop")

    assert skipped(engine(DELTA), event) == (
        "rule sold: shop: prestashop.ps_order_detail: a delta needs the row's previous values "
        "(set REPLICA IDENTITY FULL on the source table)"
    )


def test_a_delta_of_non_numbers_is_skippable() -> None:
    row = {"id_order_detail": 1, "product_id": 9, "product_quantity": "three", "total_price_tax_excl": "1"}

    assert skipped(engine(DELTA), shop_event("ps_order_detail", "c", after=row)) == (
        "rule sold: shop: prestashop.ps_order_detail.product_quantity -> erp: public.product_sales.sold: "
        "delta of None -> 'three': not numbers"
    )


# --- routing, filters, modes --------------------------------------------------------------------------------


def test_events_of_unmapped_tables_and_sources_produce_nothing() -> None:
    mapped = engine(CUSTOMERS)

    assert mapped.ops_for(shop_event("ps_cart", "c", after={"id_cart": 1})) == []
    assert mapped.ops_for(shop_event("ps_customer", "c", after=CUSTOMER, db="other_shop")) == []
    assert mapped.ops_for({**shop_event("ps_customer", "c", after=CUSTOMER), "source": {"name": "crm"}}) == []
    assert mapped.source_tables() == [("shop", "prestashop", "ps_customer")]
    assert mapped.source_tables("erp") == []


def test_an_engine_for_one_target_compiles_only_the_rules_writing_there() -> None:
    rules = [CUSTOMERS, STATES, HISTORY]
    parsed = [yaml.safe_load(textwrap.dedent(rule)) for rule in rules]
    mapping_set = MappingSet.model_validate({"systems": SYSTEMS, "rules": parsed})
    for_shop = MappingEngine(mapping_set, target="shop")

    assert for_shop.source_tables() == [("erp", "public", "sale_order")]
    assert for_shop.ops_for(shop_event("ps_customer", "c", after=CUSTOMER)) == []
    assert MappingEngine(mapping_set, target="erp").source_tables() == [("shop", "prestashop", "ps_customer")]


def test_a_truncate_of_a_mapped_table_is_skippable_not_silent() -> None:
    assert skipped(engine(CUSTOMERS), shop_event("ps_customer", "t")) == (
        "shop.prestashop.ps_customer: a truncate is not replicated (rules customers); empty the target table by "
        "hand if that is meant"
    )


def test_a_missing_identity_column_is_skippable() -> None:
    row = {k: v for k, v in CUSTOMER.items() if k != "id_customer"}
    rule = CUSTOMERS.replace('  ref: {from: id_customer, prefix: "PS-C"}\n', "")

    assert skipped(engine(rule), shop_event("ps_customer", "c", after=row)) == (
        "rule customers: shop: prestashop.ps_customer: key column id_customer is missing from the event"
    )


@pytest.mark.parametrize(
    ("condition", "passing", "failing"),
    [
        ("{column: s, eq: 0}", [0, "0"], [1, None]),
        ("{column: s, eq: null}", [None], [0]),
        ("{column: s, ne: 0}", [1, None], [0]),
        ("{column: s, in: [sale, cancel]}", ["sale", "cancel"], ["draft", None]),
        ("{column: s, not_in: [1, 2]}", [3, None], [1, "2"]),
        ("{column: s, is_null: true}", [None], [0, ""]),
        ("{column: s, not_null: true}", [0, ""], [None]),
        ("{column: s, gt: 1.5}", [2, "1.6"], [1, "1.5", None]),
        ("{column: s, ge: 2}", [2, "2.000"], [1]),
        ("{column: s, lt: 0}", [-1, "-0.5"], [0]),
        ("{column: s, le: 0}", [0, -3], ["0.1"]),
        ("{column: s, starts_with: 'PS#'}", ["PS#42"], ["ps#42", 42, None]),
    ],
)
def test_filters(condition: str, passing: list[Any], failing: list[Any]) -> None:
    rule = CUSTOMERS.replace("match_on: [email]", f"match_on: [email]\nfilter: [{condition}]")
    mapped = engine(rule)

    def applies(value: Any) -> bool:
        return bool(mapped.ops_for(shop_event("ps_customer", "c", after={**CUSTOMER, "s": value})))

    assert [applies(v) for v in passing] == [True] * len(passing)
    assert [applies(v) for v in failing] == [False] * len(failing)


def test_a_row_entering_the_filter_is_inserted_whole_and_one_leaving_is_deleted() -> None:
    rule = CUSTOMERS.replace("match_on: [email]", "match_on: [email]\nfilter: [{column: is_guest, eq: 0}]")
    mapped = engine(rule)
    guest, member = {**CUSTOMER, "is_guest": 1}, {**CUSTOMER, "is_guest": 0}

    (entered,) = mapped.ops_for(shop_event("ps_customer", "u", before=guest, after=member))
    (left,) = mapped.ops_for(shop_event("ps_customer", "u", before=member, after=guest))
    stays_out = mapped.ops_for(shop_event("ps_customer", "u", before=guest, after={**guest, "lastname": "X"}))

    assert (entered.kind, set(entered.fields)) == (OpKind.UPSERT, {"name", "email", "ref", "type", "active", "comment"})
    assert (left.kind, values(left)) == (OpKind.SOFT_DELETE, {"active": False})
    assert stays_out == []


def test_a_delete_whose_before_image_lacks_the_filter_column_still_applies() -> None:
    rule = CUSTOMERS.replace("match_on: [email]", "match_on: [email]\nfilter: [{column: is_guest, eq: 0}]")

    (op,) = engine(rule).ops_for(shop_event("ps_customer", "d", before={"id_customer": 42}))

    assert (op.kind, op.identity, values(op)) == (OpKind.SOFT_DELETE, ("customer", "42"), {"active": False})


def test_a_missing_filter_column_on_insert_is_skippable() -> None:
    rule = CUSTOMERS.replace("match_on: [email]", "match_on: [email]\nfilter: [{column: is_guest, eq: 0}]")

    assert skipped(engine(rule), shop_event("ps_customer", "c", after=CUSTOMER)) == (
        "rule customers: shop: prestashop.ps_customer: filter column is_guest is missing from the event"
    )


HISTORY = """
name: history
source: {system: erp, table: sale_order, key: [id]}
target: {system: shop, table: ps_order_history}
mode: append
filter: [{column: state, in: [sale, cancel]}]
when_changed: [state]
fields:
  id_order: {lookup: {identity: order, from: id}}
  id_order_state: {from: state, map: {values: {sale: 10, cancel: 6}}}
  id_employee: {const: 0}
  date_add: {from: write_date, unit: us, tz: {from: UTC, to: Europe/Paris}}
"""


def test_one_erp_state_change_updates_the_order_and_appends_history() -> None:
    mapped = engine(STATES, HISTORY)
    before = {"id": 7, "state": "draft", "write_date": 1719792000000000}
    after = {"id": 7, "state": "sale", "write_date": 1719792060000000}

    state, history = mapped.ops_for(erp_event("sale_order", "u", before=before, after=after))

    assert (state.kind, state.table, state.identity) == (OpKind.UPDATE, "prestashop.ps_orders", ("order", "7"))
    assert values(state) == {"current_state": 10, "valid": 0}
    assert history == TargetOp(
        kind=OpKind.INSERT,
        table="prestashop.ps_order_history",
        key={},
        fields={
            "id_order": FieldChange(Lookup(kind="identity", entity="order", source_key="7")),
            "id_order_state": FieldChange(10),
            "id_employee": FieldChange(0),
            "date_add": FieldChange(datetime(2024, 7, 1, 2, 1)),
        },
        version=state.version,
        mapping="history",
    )


def test_append_rules_record_changes_only() -> None:
    mapped = engine(STATES, HISTORY)
    sale = {"id": 7, "state": "sale", "write_date": 1719792000000000}

    def appended(envelope: dict[str, Any]) -> list[Any]:
        return [values(op)["id_order_state"] for op in mapped.ops_for(envelope) if op.mapping == "history"]

    assert appended(erp_event("sale_order", "r", after=sale, snapshot="true")) == []
    assert appended(erp_event("sale_order", "d", before=sale)) == []
    assert appended(erp_event("sale_order", "u", before=sale, after={**sale, "write_date": 1})) == []
    assert appended(erp_event("sale_order", "u", before=sale, after={**sale, "state": "cancel"})) == [6]
    assert appended(erp_event("sale_order", "u", before=sale, after={**sale, "state": "draft"})) == []


def test_several_source_tables_write_one_target_row_through_one_identity() -> None:
    extra = """
    name: customer_extra
    source: {system: shop, table: ps_customer_extra, key: [id_extra]}
    target: {system: erp, table: res_partner}
    identity: {entity: customer, from: [id_customer]}
    mode: update
    on_delete: ignore
    fields:
      phone: phone
    """
    mapped = engine(CUSTOMERS, extra)

    (main,) = mapped.ops_for(shop_event("ps_customer", "c", after=CUSTOMER))
    (more,) = mapped.ops_for(
        shop_event("ps_customer_extra", "c", after={"id_extra": 3, "id_customer": 42, "phone": "1"})
    )

    assert main.identity == more.identity == ("customer", "42")
    assert (main.table, more.table) == ("public.res_partner", "public.res_partner")


def test_a_changed_source_key_moves_the_row() -> None:
    rule = CUSTOMERS.replace("{mode: soft, column: active, value: false}", "hard")
    after = {**CUSTOMER, "id_customer": 43}

    deleted, created = engine(rule).ops_for(shop_event("ps_customer", "u", before=CUSTOMER, after=after))

    assert (deleted.kind, deleted.identity) == (OpKind.DELETE, ("customer", "42"))
    assert (created.kind, created.identity, values(created)["ref"]) == (OpKind.UPSERT, ("customer", "43"), "PS-C43")


# --- aggregates ------------------------------------------------------------------------------------------------

STOCK = """
name: stock
source: {system: erp, table: stock_quant, key: [id]}
target: {system: shop, table: ps_stock_available}
key:
  id_product: {lookup: {identity: product, from: product_id}}
  id_product_attribute: {const: 0}
on_delete: recompute
when_changed: [product_id, location_id, quantity, reserved_quantity]
fields:
  quantity:
    aggregate:
      - of: [quantity]
        minus: [reserved_quantity]
        table: mirror_quant
        group_by: {product_id: product_id}
        join: {table: mirror_location, via: location_id, where: [{column: usage, eq: internal}]}
      - of: [product_quantity]
        table: ps_order_detail
        group_by: {product_id: {key: id_product}}
        join: {table: ps_orders, via: id_order, key: id_order, where: [{column: current_state, not_in: [6, 8]}]}
        negate: true
    cast: int
    owner: erp
"""
PRODUCTS = """
name: products
source: {system: shop, table: ps_product, key: [id_product]}
target: {system: erp, table: product_product}
identity: product
on_delete: ignore
fields: {default_code: reference}
"""
QUANT = {"id": 1, "product_id": 9, "location_id": 8, "quantity": "10.000", "reserved_quantity": "2.000"}


def test_an_aggregate_is_one_query_of_several_terms_on_the_target_database() -> None:
    (op,) = engine(STOCK, PRODUCTS).ops_for(erp_event("stock_quant", "c", after=QUANT))
    aggregate = op.fields["quantity"].value

    assert op.fields["quantity"].policy is Policy.OWNER
    assert aggregate == ops.Aggregate(
        system="shop",
        terms=(
            ops.AggregateTerm(
                table="prestashop.mirror_quant", function="sum", group=(("product_id", 9),),
                add=("quantity",), subtract=("reserved_quantity",),
                join=ops.AggregateJoin(table="prestashop.mirror_location", on="location_id", key="id",
                                       where=(ops.Condition("usage", "eq", "internal"),)),
            ),
            ops.AggregateTerm(
                table="prestashop.ps_order_detail", function="sum",
                group=(("product_id", ops.TargetKeyValue("id_product")),), add=("product_quantity",),
                join=ops.AggregateJoin(table="prestashop.ps_orders", on="id_order", key="id_order",
                                       where=(ops.Condition("current_state", "not_in", (6, 8)),)),
                negate=True,
            ),
        ),
        integer=True,
    )  # fmt: skip
    bound = aggregate.bind({"id_product": 3, "id_product_attribute": 0})
    assert bound.sql("`") == (
        "SELECT FLOOR(COALESCE((SELECT COALESCE(SUM(COALESCE(a.`quantity`, 0) - COALESCE(a.`reserved_quantity`, 0)), "
        "0) FROM `prestashop`.`mirror_quant` AS a JOIN `prestashop`.`mirror_location` AS j ON j.`id` = "
        "a.`location_id` AND j.`usage` = %s WHERE a.`product_id` = %s), 0) - COALESCE((SELECT "
        "COALESCE(SUM(COALESCE(a.`product_quantity`, 0)), 0) FROM `prestashop`.`ps_order_detail` AS a JOIN "
        "`prestashop`.`ps_orders` AS j ON j.`id_order` = a.`id_order` AND j.`current_state` NOT IN (%s, %s) "
        "WHERE a.`product_id` = %s), 0))",
        ("internal", 9, 6, 8, 3),
    )


def test_a_single_term_aggregate_is_a_plain_query() -> None:
    term = ops.AggregateTerm(table="public.stock_quant", function="sum", group=(("product_id", 9),),
                             add=("quantity",), subtract=("reserved_quantity",))
    assert ops.Aggregate(system="erp", terms=(term,), integer=True).sql('"') == (
        'SELECT FLOOR(COALESCE(SUM(COALESCE(a."quantity", 0) - COALESCE(a."reserved_quantity", 0)), 0)) '
        'FROM "public"."stock_quant" AS a WHERE a."product_id" = %s',
        (9,),
    )


def test_aggregate_sql_for_mariadb_and_every_condition() -> None:
    conditions = (
        ops.Condition("a", "in", (1, 2)), ops.Condition("b", "not_in", ("x",)), ops.Condition("c", "is_null"),
        ops.Condition("d", "not_null"), ops.Condition("e", "ge", 3), ops.Condition("f", "starts_with", "50%_\\"),
    )  # fmt: skip
    counted = ops.AggregateTerm(table="prestashop.ps_stock_mvt", function="count", group=(("id_stock", 4),),
                                where=conditions)
    maximum = ops.AggregateTerm(table="db.t", function="max", group=(("k", 1),), add=("v",))

    assert ops.Aggregate(system="shop", terms=(counted,)).sql("`") == (
        "SELECT COUNT(*) FROM `prestashop`.`ps_stock_mvt` AS a WHERE a.`id_stock` = %s AND a.`a` IN (%s, %s) "
        "AND a.`b` NOT IN (%s) AND a.`c` IS NULL AND a.`d` IS NOT NULL AND a.`e` >= %s AND a.`f` LIKE %s",
        (4, 1, 2, "x", 3, "50\\%\\_\\\\%"),
    )
    assert ops.Aggregate(system="shop", terms=(maximum,)).sql("`") == (
        "SELECT COALESCE((SELECT MAX(a.`v`) FROM `db`.`t` AS a WHERE a.`k` = %s), 0)", (1,)
    )


def test_an_aggregate_is_recomputed_when_a_row_is_deleted_or_leaves_its_group() -> None:
    mapped = engine(STOCK, PRODUCTS)
    moved = {**QUANT, "product_id": 10}

    (deleted,) = mapped.ops_for(erp_event("stock_quant", "d", before=QUANT))
    old_group, new_group = mapped.ops_for(erp_event("stock_quant", "u", before=QUANT, after=moved))
    (relocated,) = mapped.ops_for(erp_event("stock_quant", "u", before=QUANT, after={**QUANT, "location_id": 3}))
    unchanged = mapped.ops_for(erp_event("stock_quant", "u", before=QUANT, after={**QUANT, "in_date": 1}))

    assert deleted.kind is OpKind.UPSERT
    assert deleted.fields["quantity"].value.terms[0].group == (("product_id", 9),)
    assert [op.fields["quantity"].value.terms[0].group for op in (old_group, new_group)] == [
        (("product_id", 9),),
        (("product_id", 10),),
    ]
    assert relocated.key["id_product"] == Lookup(kind="identity", entity="product", source_key="9")
    assert unchanged == []  # when_changed: a column the aggregate does not depend on


def test_an_aggregate_group_from_the_key_must_name_a_key_column() -> None:
    rule = STOCK.replace("{key: id_product}", "{key: id_shop}")
    with pytest.raises(ValidationError, match=r"\{key: id_shop\} is not a column of the rule's 'key'"):
        engine(rule, PRODUCTS)


# --- the example and golden envelopes --------------------------------------------------------------------


GOLDEN_RULES = [
    """
    name: cart
    source: {system: shop, table: ps_cart_product, key: [id_cart, id_product]}
    target: {system: erp, table: cart_line}
    identity: cart_line
    on_delete: hard
    fields:
      qty: {from: quantity, policy: delta}
    """,
    """
    name: orders
    source: {system: shop, table: ps_orders, key: [id_order]}
    target: {system: erp, table: sale_order}
    identity: order
    on_delete: ignore
    fields:
      client_order_ref: reference
      amount_total: {from: total_paid, cast: decimal, scale: 2}
      date_order: {from: date_add, tz: {from: Europe/Paris, to: UTC}}
      state: {from: current_state, map: {values: {1: sale, 2: sale, 6: cancel}}, policy: monotonic,
              order: [draft, sale, cancel]}
    """,
    """
    name: partners
    source: {system: erp, table: res_partner, key: [id]}
    target: {system: shop, table: ps_customer}
    identity: customer
    mode: update
    on_delete: ignore
    fields:
      email: {from: email, max_length: 255}
      lastname: {split: {from: name, part: rest}}
    """,
    """
    name: customers
    source: {system: shop, table: ps_customer, key: [id_customer]}
    target: {system: erp, table: res_partner}
    identity: customer
    on_delete: ignore
    fields: {email: email}
    """,
]


def golden(name: str) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text())["value"]
    return envelope


def test_golden_envelopes_map_through_rules_on_their_tables() -> None:
    mapped = engine(*GOLDEN_RULES)

    (created,) = mapped.ops_for(golden("mariadb_insert"))
    (updated,) = mapped.ops_for(golden("mariadb_update"))
    (deleted,) = mapped.ops_for(golden("mariadb_delete"))
    (partner,) = mapped.ops_for(golden("pg_update"))

    assert (created.kind, created.identity) == (OpKind.UPSERT, ("order", "42"))
    assert values(created) == {
        "client_order_ref": "XKBKNABJK",
        "amount_total": Decimal("61.80"),
        "date_order": datetime(2024, 6, 1, 8, 0, 1),  # 10:00:01 in Paris, summer time
        "state": "sale",
    }
    assert updated.fields == {"state": FieldChange("sale", Policy.MONOTONIC, rank=1)}  # 1 -> 2: still 'sale'
    assert (deleted.kind, deleted.identity) == (OpKind.DELETE, ("cart_line", "[7,3]"))
    assert deleted.version == Version(1717236001000, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000001")
    assert (partner.kind, partner.identity, values(partner)) == (
        OpKind.UPDATE,
        ("customer", "1017"),
        {"email": "anne.k@example.org"},
    )
    assert mapped.ops_for(golden("pg_insert"))[0].fields["lastname"].value == "Kretchmar"
    assert mapped.ops_for(golden("pg_truncate")) == []  # no rule reads stock_quant


# --- pieces and properties ----------------------------------------------------------------------------------


def test_positions_sort_in_log_order() -> None:
    assert position_text({"lsn": 255}, "postgresql") == "00000000000000000255"
    assert position_text({"lsn": None}, "postgresql") == ""
    assert position_text({"gtid": "0-1-9", "row": 2}, "mariadb") < position_text(
        {"gtid": "0-1-10", "row": 0}, "mariadb"
    )
    assert position_text({"gtid": None}, "mariadb") == ""
    assert identity_key([7]) == "7"
    assert identity_key([7, "a"]) == '[7,"a"]'


@unhurried
@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 10**4)), min_size=2, max_size=10))
def test_mariadb_position_text_orders_like_the_binlog(positions: list[tuple[int, int]]) -> None:
    texts = {pos: position_text({"gtid": f"0-1-{pos[0]}", "row": pos[1]}, "mariadb") for pos in positions}

    assert sorted(positions) == sorted(positions, key=lambda p: texts[p])


first_names = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=20)
last_names = st.text(min_size=1, max_size=30).map(str.strip).filter(bool)


@unhurried
@given(first_names, last_names)
def test_concat_then_split_round_trips_when_the_first_name_has_no_space(first: str, last: str) -> None:
    joined = join_parts([first, last], " ")
    assert joined is not None

    assert (split_name(joined, "first"), split_name(joined, "rest")) == (first, last)


def test_splitting_a_first_name_with_a_space_is_lossy() -> None:
    joined = join_parts(["Jean Pierre", "Dupont"], " ")
    assert joined is not None

    assert (split_name(joined, "first"), split_name(joined, "rest")) == ("Jean", "Pierre Dupont")


numbers = st.one_of(
    st.integers(-(10**9), 10**9),
    st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False).map(lambda d: f"{d:f}"),
)


@unhurried
@given(st.lists(numbers, min_size=1, max_size=12))
def test_deltas_over_a_row_history_sum_to_its_last_value_and_to_zero_after_delete(history: list[Any]) -> None:
    mapped = engine(DELTA)
    rows = [{"id_order_detail": 1, "product_id": 9, "product_quantity": 0, "total_price_tax_excl": v} for v in history]
    events = [shop_event("ps_order_detail", "c", after=rows[0])]
    events += [shop_event("ps_order_detail", "u", before=b, after=a) for b, a in itertools.pairwise(rows)]
    deltas = [op.fields["amount"].value for e in events for op in mapped.ops_for(e) if "amount" in op.fields]
    (deleted,) = mapped.ops_for(shop_event("ps_order_detail", "d", before=rows[-1]))

    assert sum(Decimal(str(d)) for d in deltas) == Decimal(str(history[-1]))
    assert sum(Decimal(str(d)) for d in deltas[1:]) == Decimal(str(history[-1])) - Decimal(str(history[0]))
    assert sum(Decimal(str(d)) for d in deltas) + Decimal(str(deleted.fields["amount"].value)) == 0


def test_delta_keeps_exact_decimals() -> None:
    assert delta_of("0.3", "0.1") == Decimal("0.2")
    assert delta_of(5, None) == 5
    assert delta_of(None, 2.5) == -2.5


@unhurried
@given(
    st.dictionaries(st.integers(0, 50), st.sampled_from(["draft", "sale", "cancel"]), min_size=1), st.integers(0, 60)
)
def test_a_value_map_maps_exactly_its_keys(table: dict[int, str], value: int) -> None:
    spec = f"{{from: a, map: {{values: {json.dumps({str(k): v for k, v in table.items()})}}}}}"

    if value in table:
        assert one_field(spec, a=value) == table[value]
    else:
        assert "no mapping for this value" in one_field_error(spec, a=value)


utc_instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


@unhurried
@given(utc_instants)
@example(datetime(2016, 10, 30, 1, 0))  # the first instant of the repeated hour (found by hypothesis in CI)
def test_utc_to_paris_and_back_round_trips_except_in_the_repeated_hour(instant: datetime) -> None:
    local = convert_zone(instant, ZoneInfo("UTC"), PARIS)
    # Stored in a DATETIME column and read back, the wall clock no longer knows which occurrence it was
    # (Python's `fold`, which convert_zone's result still carries).
    back = convert_zone(local.replace(fold=0), PARIS, ZoneInfo("UTC"))
    second_occurrence = instant.replace(tzinfo=UTC).astimezone(PARIS).fold == 1

    # A wall clock cannot tell the two occurrences of 02:30 apart in October: the first one is taken.
    assert back == (instant - timedelta(hours=1) if second_occurrence else instant)


@unhurried
@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2037, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    )
)
def test_paris_to_utc_and_back_round_trips_except_in_the_skipped_hour(wall: datetime) -> None:
    as_utc = convert_zone(wall, PARIS, ZoneInfo("UTC"))
    back = convert_zone(as_utc, ZoneInfo("UTC"), PARIS)
    exists = wall.replace(tzinfo=PARIS).astimezone(UTC).astimezone(PARIS).replace(tzinfo=None) == wall

    # 02:30 on the last Sunday of March never happens in Paris: it is read with winter time, i.e. 03:30.
    assert back == (wall if exists else wall + timedelta(hours=1))


def test_paris_dst_edges() -> None:
    utc, ms = ZoneInfo("UTC"), 1000
    spring_gap = int((datetime(2024, 3, 31, 2, 30) - datetime(1970, 1, 1)).total_seconds()) * ms
    autumn_repeat = int((datetime(2024, 10, 27, 2, 30) - datetime(1970, 1, 1)).total_seconds()) * ms

    assert convert_zone(spring_gap, PARIS, utc) == datetime(2024, 3, 31, 1, 30)
    assert convert_zone(autumn_repeat, PARIS, utc) == datetime(2024, 10, 27, 0, 30)
    assert convert_zone(datetime(2024, 10, 27, 1, 30), utc, PARIS) == datetime(2024, 10, 27, 2, 30)
    assert wall_clock(-1) == datetime(1969, 12, 31, 23, 59, 59, 999000)


@unhurried
@given(st.integers(-700_000, 2_900_000))
def test_casts_agree_with_their_encodings(days: int) -> None:
    assert to_date(days) == date(1970, 1, 1) + timedelta(days=days)
    assert to_int(str(days)) == days
    assert to_decimal(2)(str(days)) == Decimal(days).quantize(Decimal("0.01"))
    assert to_bool(days % 2) is bool(days % 2)


@unhurried
@given(st.lists(st.sampled_from(["draft", "sale", "done", "cancel"]), min_size=1, max_size=8), st.randoms())
def test_each_events_ops_do_not_depend_on_what_was_mapped_before(states: list[str], random: Any) -> None:
    mapped = engine(STATES, HISTORY)
    rows = [{"id": 7, "state": s, "write_date": 1719792000000000 + i} for i, s in enumerate(states)]
    events = [erp_event("sale_order", "c", after=rows[0])]
    events += [
        erp_event("sale_order", "u", before=b, after=a, lsn=5000 + i)
        for i, (b, a) in enumerate(itertools.pairwise(rows))
    ]
    in_order = [mapped.ops_for(e) for e in events]
    shuffled = list(range(len(events)))
    random.shuffle(shuffled)

    assert {i: mapped.ops_for(events[i]) for i in shuffled} == dict(enumerate(in_order))


# --- versions of tables with a local change time ----------------------------------------------------------

PARTNER_BACK = """
name: partner_back
source: {system: erp, table: res_partner, key: [id]}
target: {system: shop, table: ps_customer, local_time: {column: date_upd, tz: Europe/Paris}}
mode: update
key:
  id_customer: {from: ref, strip_prefix: "PS-C", cast: int}
on_delete: ignore
fields:
  email: email
"""


def _as_traveling(wall: datetime, unit: str = "ms") -> int:
    """How a DATETIME travels in an event: its wall-clock time read as UTC, in ms or µs."""
    return (wall - datetime(1970, 1, 1)) // (timedelta(milliseconds=1) if unit == "ms" else timedelta(microseconds=1))


def test_changes_of_a_table_with_a_local_time_are_versioned_by_that_column() -> None:
    # The shop dates its edit 12:00:04 (Paris, summer: 10:00:04 UTC); the binlog says a second later.
    edited = datetime(2024, 6, 1, 12, 0, 4)
    after = {**CUSTOMER, "date_upd": _as_traveling(edited)}
    mapped = engine(CUSTOMERS, PARTNER_BACK)

    (created,) = mapped.ops_for(shop_event("ps_customer", "c", after=after, ts_ms=1_717_236_005_000))
    (updated,) = mapped.ops_for(shop_event("ps_customer", "u", before=CUSTOMER | {"email": "old@x.fr"}, after=after,
                                           ts_ms=1_717_236_005_000))

    expected = int(datetime(2024, 6, 1, 10, 0, 4, tzinfo=UTC).timestamp() * 1000)
    assert created.version == Version(expected, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000")
    assert updated.version == created.version
    # Without a rule declaring the column, the same event is dated by its commit time.
    (plain,) = engine(CUSTOMERS).ops_for(shop_event("ps_customer", "c", after=after, ts_ms=1_717_236_005_000))
    assert plain.version is not None and plain.version.ts_ms == 1_717_236_005_000


@pytest.mark.parametrize("date_upd", [None, 0], ids=["null", "zero date in a NOT NULL column"])
def test_a_row_whose_local_time_says_nothing_is_dated_by_its_commit(date_upd: Any) -> None:
    (op,) = engine(CUSTOMERS, PARTNER_BACK).ops_for(
        shop_event("ps_customer", "c", after={**CUSTOMER, "date_upd": date_upd}))
    assert op.version is not None and op.version.ts_ms == SHOP_TS


def test_a_delete_has_no_after_image_and_is_dated_by_its_commit() -> None:
    rule = CUSTOMERS.replace("on_delete: {mode: soft, column: active, value: false}", "on_delete: hard")
    (op,) = engine(rule, PARTNER_BACK).ops_for(
        shop_event("ps_customer", "d", before={**CUSTOMER, "date_upd": _as_traveling(datetime(2024, 6, 1))}))
    assert op.kind is OpKind.DELETE and op.version is not None and op.version.ts_ms == SHOP_TS


def test_a_local_time_in_microseconds() -> None:
    back = PARTNER_BACK.replace("tz: Europe/Paris}", "tz: Europe/Paris, unit: us}")
    edited = datetime(2024, 1, 15, 9, 30, 0, 250_000)
    (op,) = engine(CUSTOMERS, back).ops_for(
        shop_event("ps_customer", "c", after={**CUSTOMER, "date_upd": _as_traveling(edited, "us")}))
    assert op.version is not None
    assert op.version.ts_ms == int(datetime(2024, 1, 15, 8, 30, 0, 250_000, tzinfo=UTC).timestamp() * 1000)


def test_a_local_time_that_is_not_a_date_dead_letters_the_event_naming_the_column() -> None:
    message = skipped(engine(CUSTOMERS, PARTNER_BACK),
                      shop_event("ps_customer", "c", after={**CUSTOMER, "date_upd": "yesterday"}))
    assert message.startswith("shop.prestashop.ps_customer.date_upd (the table's local_time): value 'yesterday'")


@unhurried
@given(
    wall=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 12, 31)).map(
        lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)),
    zone=st.sampled_from(["Europe/Paris", "UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
def test_the_engine_and_the_applier_date_a_local_edit_alike(wall: datetime, zone: str) -> None:
    """The engine reads date_upd from the event (epoch ms of the wall clock); the applier reads it from the
    row (a datetime): both must give the same instant, and it is the one the time zone says."""
    tz = ZoneInfo(zone)
    from_event = local_edit_ts_ms(_as_traveling(wall), tz, "ms")
    assert from_event == instant_ms(wall, tz)
    assert from_event == round(wall.replace(tzinfo=tz).timestamp() * 1000)


# --- the way back, history rows, ranks of local values --------------------------------------------------------

PICKING_STATUS = """
name: picking_state
source: {system: erp, table: stock_picking, key: [id]}
target: {system: shop, table: ps_orders, local_time: {column: date_upd, tz: Europe/Paris}}
mode: update
key:
  id_order: {from: origin, strip_prefix: "PS", cast: int}
filter: [{column: origin, starts_with: "PS"}, {column: state, in: [assigned, done]}]
when_changed: [state]
on_delete: ignore
fields:
  current_state: {from: state, map: {values: {assigned: 3, done: 4}}, policy: monotonic,
                  order: [[1, 10], 2, 3, 4, [6, 8]]}
  valid: {from: state, map: {values: {assigned: 1, done: 1}}, policy: monotonic, rank_by: current_state}
"""
PICKING_HISTORY = """
name: picking_history
source: {system: erp, table: stock_picking, key: [id]}
target: {system: shop, table: ps_order_history}
mode: append
when_written: {rule: picking_state, field: current_state}
filter: [{column: origin, starts_with: "PS"}, {column: state, in: [assigned, done]}]
when_changed: [state]
fields:
  id_order: {from: origin, strip_prefix: "PS", cast: int}
  id_order_state: {from: state, map: {values: {assigned: 3, done: 4}}}
  id_employee: {const: 0}
"""
PICKING = {"id": 5, "origin": "PS42", "state": "assigned", "write_date": 1}


def test_strip_prefix_finds_the_shop_row_an_erp_row_points_back_to() -> None:
    (state, history) = engine(PICKING_STATUS, PICKING_HISTORY).ops_for(
        erp_event("stock_picking", "u", before={**PICKING, "state": "draft"}, after=PICKING))
    assert state.key == {"id_order": 42} and values(state) == {"current_state": 3, "valid": 1}
    # An appended row is a whole new row, constants included, even for an update with a before image.
    assert values(history) == {"id_order": 42, "id_order_state": 3, "id_employee": 0}
    assert history.when_written == ("picking_state", "current_state")


def test_a_value_without_the_prefix_is_a_record_error_naming_it() -> None:
    message = skipped(engine(PICKING_STATUS.replace('starts_with: "PS"', 'starts_with: "P"')),
                      erp_event("stock_picking", "c", after={**PICKING, "origin": "POS7"}))
    assert "value 'POS7': does not start with 'PS' (strip_prefix)" in message


def test_monotonic_changes_carry_the_ranking_of_the_values_the_target_may_hold() -> None:
    (state,) = engine(PICKING_STATUS).ops_for(erp_event("stock_picking", "c", after=PICKING))
    for column in ("current_state", "valid"):
        ranking = state.fields[column].ranking
        assert ranking is not None and ranking.column == "current_state"  # valid ranks with current_state
        assert (ranking.ranks["6"], ranking.ranks["10"], ranking.ranks["3"]) == (4, 0, 2)


def test_when_written_must_name_an_earlier_rule_of_the_same_source_table() -> None:
    with pytest.raises(ValidationError, match="no earlier rule named 'picking_state'"):
        engine(PICKING_HISTORY, PICKING_STATUS)
    with pytest.raises(ValidationError, match="'when_written' goes with mode 'append'"):
        engine(PICKING_STATUS.replace("on_delete: ignore", "on_delete: ignore\nwhen_written: {rule: x, field: y}"))


def test_last_writer_wins_changes_carry_the_fields_previous_value() -> None:
    rule = """
name: names
source: {system: shop, table: ps_customer, key: [id_customer]}
target: {system: erp, table: res_partner}
identity: customer
on_delete: ignore
fields:
  name: {concat: [firstname, lastname]}
"""
    before = {"id_customer": 4, "firstname": "Mateo", "lastname": "De Vries"}
    (op,) = engine(rule).ops_for(shop_event("ps_customer", "u", before=before, after={**before, "lastname": "V"}))
    assert (op.fields["name"].value, op.fields["name"].previous) == ("Mateo V", "Mateo De Vries")
    (created,) = engine(rule).ops_for(shop_event("ps_customer", "c", after=before))
    assert created.fields["name"].previous is ops.NO_PREVIOUS
