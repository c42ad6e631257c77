"""Debezium envelopes and topic names, compared with golden files written by hand from Debezium's
documented shapes (tests/unit/data/golden/): field names, values, nulls and field order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import replicator
from replicator.envelope.debezium import (
    DEFAULT_VERSION,
    UNAVAILABLE_VALUE_PLACEHOLDER,
    EventOrder,
    Message,
    SourceInfo,
    change_key,
    change_value,
    dumps,
    loads,
    mariadb_transaction_id,
    postgres_transaction_id,
    source_block,
    tombstone,
    transaction_begin,
    transaction_end,
    transaction_messages,
)
from replicator.events import (
    Connector,
    MariaDbPosition,
    Op,
    PostgresPosition,
    RowChange,
    SourceTransaction,
    TableId,
)
from replicator.transport.topics import (
    AUDIT_TOPIC,
    DLQ_TOPIC,
    MAX_TOPIC_LENGTH,
    offsets_topic,
    table_topic,
    transaction_topic,
    validate_topic,
)

GOLDEN = Path(__file__).parent / "data" / "golden"
VERSION = "0.1.0-replicator"
PROCESSED_PG_MS = 1717236000500
PROCESSED_MARIADB_MS = 1717236001250
PG_LAST_COMMIT_LSN = 24023000


def golden(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def as_golden(message: Message) -> dict[str, Any]:
    """A produced message as it reads back from Kafka: through the real serializer."""
    return {"topic": message.topic, "key": loads(dumps(message.key)), "value": loads(dumps(message.value))}


def key_order(value: Any) -> Any:
    """The nested key order of a JSON value (dict equality alone ignores it)."""
    if isinstance(value, dict):
        return [(k, key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_order(v) for v in value]
    return None


def assert_matches_golden(message: Message, name: str) -> None:
    expected = golden(name)
    actual = as_golden(message)
    assert actual == expected
    assert key_order(actual) == key_order(expected)


# --- the PostgreSQL transaction of the golden files ----------------------------------------------

PG_INFO = SourceInfo(name="erp", connector=Connector.POSTGRESQL, database="odoo", version=VERSION)
PARTNER = TableId("public", "res_partner")
ORDER_LINE = TableId("public", "sale_order_line")
QUANT = TableId("public", "stock_quant")
PARTNER_BEFORE = {"id": 1017, "name": "Anne Kretchmar", "email": "annek@example.com",
                  "credit_limit": "1500.00", "write_date": 1717235999123456}
PARTNER_AFTER = {**PARTNER_BEFORE, "email": "anne.k@example.org", "write_date": 1717236000100000}


def pg_position(lsn: int) -> PostgresPosition:
    return PostgresPosition(lsn=lsn, commit_lsn=24023200, tx_id=771)


def pg_transaction(origin: str | None = None) -> SourceTransaction:
    return SourceTransaction(
        id=postgres_transaction_id(771, 24023200),
        commit_ts_ms=1717236000123,
        position=pg_position(24023200),
        origin=origin,
        changes=[
            RowChange(PARTNER, Op.CREATE, {"id": 1017}, None, PARTNER_BEFORE, pg_position(24023128)),
            RowChange(PARTNER, Op.UPDATE, {"id": 1017}, PARTNER_BEFORE, PARTNER_AFTER, pg_position(24023150)),
            RowChange(ORDER_LINE, Op.DELETE, {"id": 5},
                      {"id": 5, "order_id": 9, "product_uom_qty": "2.000", "name": "Café 😀 mug"}, None,
                      pg_position(24023170)),
            RowChange(QUANT, Op.TRUNCATE, {}, None, None, pg_position(24023190)),
        ],
    )


# --- the MariaDB transaction of the golden files ---------------------------------------------------

SHOP_INFO = SourceInfo(name="shop", connector=Connector.MARIADB, database="prestashop", version=VERSION)
ORDERS = TableId("prestashop", "ps_orders")
ORDER_DETAIL = TableId("prestashop", "ps_order_detail")
CART_PRODUCT = TableId("prestashop", "ps_cart_product")
ORDER_NEW = {"id_order": 42, "reference": "XKBKNABJK", "current_state": 1, "total_paid": "61.800000",
             "date_add": 1717236001000, "checksum": 2**64 - 1, "note": "Livraison à domicile 🚚"}


def shop_position(pos: int, row: int = 0) -> MariaDbPosition:
    return MariaDbPosition(gtid="0-1-42", file="mysql-bin.000003", pos=pos, server_id=1, row=row)


def shop_transaction(origin: str | None = None) -> SourceTransaction:
    return SourceTransaction(
        id=mariadb_transaction_id("0-1-42"),
        commit_ts_ms=1717236001000,
        position=shop_position(1000),
        origin=origin,
        changes=[
            RowChange(ORDERS, Op.CREATE, {"id_order": 42}, None, ORDER_NEW, shop_position(154)),
            RowChange(ORDER_DETAIL, Op.CREATE, {"id_order_detail": 77}, None,
                      {"id_order_detail": 77, "id_order": 42, "product_quantity": 2}, shop_position(400)),
            RowChange(ORDERS, Op.UPDATE, {"id_order": 42}, ORDER_NEW, {**ORDER_NEW, "current_state": 2},
                      shop_position(700)),
            RowChange(CART_PRODUCT, Op.DELETE, {"id_cart": 7, "id_product": 3},
                      {"id_cart": 7, "id_product": 3, "quantity": 2}, None, shop_position(900, row=1)),
        ],
    )


# --- golden comparisons ---------------------------------------------------------------------------


def test_postgres_transaction_messages_match_the_golden_files() -> None:
    messages = transaction_messages(pg_transaction(), PG_INFO, ts_ms=PROCESSED_PG_MS,
                                    last_commit_lsn=PG_LAST_COMMIT_LSN)
    names = ["pg_transaction_begin", "pg_insert", "pg_update", "pg_delete", "pg_delete_tombstone",
             "pg_truncate", "pg_transaction_end"]
    assert len(messages) == len(names)
    for message, name in zip(messages, names, strict=True):
        assert_matches_golden(message, name)


def test_mariadb_transaction_messages_match_the_golden_files() -> None:
    messages = transaction_messages(shop_transaction(), SHOP_INFO, ts_ms=PROCESSED_MARIADB_MS)
    assert [m.topic for m in messages] == [
        "shop.transaction", "shop.prestashop.ps_orders", "shop.prestashop.ps_order_detail",
        "shop.prestashop.ps_orders", "shop.prestashop.ps_cart_product", "shop.prestashop.ps_cart_product",
        "shop.transaction",
    ]
    assert_matches_golden(messages[0], "mariadb_transaction_begin")
    assert_matches_golden(messages[1], "mariadb_insert")
    assert_matches_golden(messages[3], "mariadb_update")
    assert_matches_golden(messages[4], "mariadb_delete")
    assert as_golden(messages[5]) == {"topic": "shop.prestashop.ps_cart_product",
                                      "key": {"id_cart": 7, "id_product": 3}, "value": None}
    assert_matches_golden(messages[6], "mariadb_transaction_end")
    detail = as_golden(messages[2])["value"]
    assert detail["transaction"] == {"id": "0-1-42", "total_order": 2, "data_collection_order": 1}


def test_change_value_and_key_match_the_golden_files_directly() -> None:
    tx = pg_transaction()
    update = tx.changes[1]
    value = change_value(update, tx, PG_INFO, data_collection_order=2, total_order=2, ts_ms=PROCESSED_PG_MS,
                         last_commit_lsn=PG_LAST_COMMIT_LSN)
    assert value == golden("pg_update")["value"]
    assert change_key(update) == {"id": 1017}
    truncate = tx.changes[3]
    assert change_key(truncate) is None


def test_transaction_markers_directly() -> None:
    tx = shop_transaction()
    assert transaction_begin(tx, SHOP_INFO) == (golden("mariadb_transaction_begin")["key"],
                                                golden("mariadb_transaction_begin")["value"])
    counts = [(ORDERS, 2), (ORDER_DETAIL, 1), (CART_PRODUCT, 1)]
    key, value = transaction_end(tx, SHOP_INFO, counts)
    assert (key, value) == (golden("mariadb_transaction_end")["key"], golden("mariadb_transaction_end")["value"])
    _, explicit = transaction_begin(tx, SHOP_INFO, ts_ms=5)
    assert explicit["ts_ms"] == 5


def test_serialized_bytes_are_compact_utf8_with_exact_big_integers() -> None:
    messages = transaction_messages(shop_transaction(), SHOP_INFO, ts_ms=PROCESSED_MARIADB_MS)
    data = dumps(messages[1].value)
    assert data is not None
    assert b'"checksum":18446744073709551615' in data
    assert "Livraison à domicile 🚚".encode() in data
    assert b": " not in data and b", " not in data


# --- details --------------------------------------------------------------------------------------


def test_origin_is_reported_in_the_source_block() -> None:
    pg_tx = pg_transaction(origin="replicator_w1")
    assert source_block(pg_tx.changes[0], pg_tx, PG_INFO)["origin"] == "replicator_w1"
    shop_tx = shop_transaction(origin="replicator")
    source = source_block(shop_tx.changes[0], shop_tx, SHOP_INFO)
    assert source["origin"] == "replicator"
    assert list(source)[-1] == "origin"


def test_snapshot_marker() -> None:
    tx = shop_transaction()
    tx.snapshot = True
    change = RowChange(ORDERS, Op.READ, {"id_order": 42}, None, ORDER_NEW, shop_position(154))
    assert source_block(change, tx, SHOP_INFO)["snapshot"] == "true"
    assert source_block(change, tx, SHOP_INFO, snapshot="last")["snapshot"] == "last"
    value = change_value(change, tx, SHOP_INFO, data_collection_order=1, total_order=1, ts_ms=1)
    assert value["op"] == "r"


def test_sequence_without_a_previous_commit_has_a_null_first_element() -> None:
    tx = pg_transaction()
    assert source_block(tx.changes[0], tx, PG_INFO)["sequence"] == '[null,"24023128"]'


def test_position_must_match_the_connector() -> None:
    tx = shop_transaction()
    with pytest.raises(TypeError, match="PostgresPosition"):
        source_block(tx.changes[0], tx, PG_INFO)
    pg_tx = pg_transaction()
    with pytest.raises(TypeError, match="MariaDbPosition"):
        source_block(pg_tx.changes[0], pg_tx, SHOP_INFO)


def test_tombstone_only_follows_a_delete() -> None:
    tx = pg_transaction()
    assert tombstone(tx.changes[2]) == ({"id": 5}, None)
    with pytest.raises(ValueError, match="tombstone follows a delete"):
        tombstone(tx.changes[0])


def test_tombstones_can_be_left_out() -> None:
    messages = transaction_messages(pg_transaction(), PG_INFO, ts_ms=1, tombstones_on_delete=False)
    assert [m.value is None for m in messages] == [False] * 6


def test_default_version_is_the_replicators() -> None:
    assert DEFAULT_VERSION.removesuffix("-replicator") == replicator.__version__
    assert DEFAULT_VERSION.endswith("-replicator")
    assert SourceInfo(name="erp", connector=Connector.POSTGRESQL, database="odoo").version == DEFAULT_VERSION


def test_transaction_ids() -> None:
    assert postgres_transaction_id(571, 53195832) == "571:53195832"
    assert mariadb_transaction_id("0-1-42") == "0-1-42"


def test_unavailable_value_placeholder_is_debeziums() -> None:
    assert UNAVAILABLE_VALUE_PLACEHOLDER == "__debezium_unavailable_value"


def test_dumps_keeps_null_messages_null() -> None:
    assert dumps(None) is None
    assert loads(None) is None


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_integers_survive_serialization_exactly(number: int) -> None:
    data = dumps({"n": number})
    assert data == b'{"n":' + str(number).encode() + b"}"
    assert loads(data) == {"n": number}


@given(st.lists(st.sampled_from([PARTNER, ORDER_LINE, QUANT, ORDERS]), max_size=50))
def test_event_order_numbers_like_debezium(tables: list[TableId]) -> None:
    order = EventOrder()
    numbered = [order.next(table) for table in tables]
    assert [total for total, _ in numbered] == list(range(1, len(tables) + 1))
    for table in set(tables):
        positions = [per_table for (_, per_table), t in zip(numbered, tables, strict=True) if t == table]
        assert positions == list(range(1, tables.count(table) + 1))
    assert order.per_table == {t: tables.count(t) for t in dict.fromkeys(tables)}
    assert list(order.per_table) == list(dict.fromkeys(tables))  # first-seen order, as END lists them


@given(st.lists(st.sampled_from([Op.CREATE, Op.UPDATE, Op.DELETE]), min_size=1, max_size=20))
def test_end_marker_counts_every_event_and_no_tombstone(ops: list[Op]) -> None:
    changes = [RowChange(ORDERS, op, {"id_order": i}, None if op is Op.CREATE else {"id_order": i},
                         None if op is Op.DELETE else {"id_order": i}, shop_position(i))
               for i, op in enumerate(ops)]
    tx = SourceTransaction(id="0-1-9", commit_ts_ms=1000, position=shop_position(0), changes=changes)
    messages = transaction_messages(tx, SHOP_INFO, ts_ms=2000)
    end = messages[-1].value
    assert end is not None
    assert end["event_count"] == len(ops)
    assert len(messages) == 2 + len(ops) + ops.count(Op.DELETE)
    assert orjson.loads(orjson.dumps(end))["data_collections"] == [
        {"data_collection": "prestashop.ps_orders", "event_count": len(ops)}
    ]


# --- topics ---------------------------------------------------------------------------------------


def test_topic_names() -> None:
    assert table_topic("erp", "public", "res_partner") == "erp.public.res_partner"
    assert table_topic("shop", "prestashop", "ps_orders") == "shop.prestashop.ps_orders"
    assert transaction_topic("shop") == "shop.transaction"
    assert offsets_topic("shop") == "shop.offsets"
    assert DLQ_TOPIC == "replicator.dlq"
    assert AUDIT_TOPIC == "replicator.audit"
    assert validate_topic("a-b_c.9") == "a-b_c.9"


@pytest.mark.parametrize(
    ("source", "namespace", "table", "message"),
    [
        ("shop", "prestashop", "order items", r"table 'order items'.*' '"),
        ("shop", "präsenz", "t", r"schema/database 'präsenz'.*'ä'"),
        ("my shop", "db", "t", r"source name 'my shop'"),
        ("shop", "", "t", r"schema/database is empty"),
        ("shop", "db", "a/b", r"table 'a/b'.*'/'"),
    ],
)
def test_illegal_topic_parts_are_named(source: str, namespace: str, table: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        table_topic(source, namespace, table)


def test_topic_length_and_reserved_names() -> None:
    assert len(table_topic("s", "d", "t" * (MAX_TOPIC_LENGTH - 4))) == MAX_TOPIC_LENGTH
    with pytest.raises(ValueError, match="250 characters long; Kafka allows 249"):
        table_topic("s", "d", "t" * (MAX_TOPIC_LENGTH - 3))
    with pytest.raises(ValueError, match="reserved"):
        validate_topic("..")
    with pytest.raises(ValueError, match="source name 'bad:name'"):
        transaction_topic("bad:name")
