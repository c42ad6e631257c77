"""What the applier guarantees, through the whole pipeline on real servers: atomic source transactions,
exactly-once effects through kill -9 (deltas included), and bad input ending in dead letters while
other keys go on."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from replicator.config import load_config
from replicator.devstack import ConnectionSettings
from replicator.pipeline.capture_runner import build_capture
from replicator.transport.audit import field_decisions
from replicator.transport.topics import transaction_topic
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.kafka_reader import read_topics
from tests.support.pipeline import running_pipeline, wait_until
from tests.support.sides import Sides, drop_origins, make_sales_sides, make_sides

pytestmark = pytest.mark.e2e

ORDER_RULES: list[dict[str, Any]] = [
    {
        "name": "order", "source": {"system": "shop", "table": "ps_orders", "key": ["id_order"]},
        "target": {"system": "erp", "table": "sale_order"}, "identity": "order", "on_delete": "ignore",
        "fields": {"name": {"from": "reference"}, "origin": {"from": "id_order", "prefix": "PS#"}},
    },
    {
        "name": "order_line", "source": {"system": "shop", "table": "ps_order_detail", "key": ["id_order_detail"]},
        "target": {"system": "erp", "table": "sale_order_line"}, "identity": "order_line", "on_delete": "hard",
        "fields": {
            "order_id": {"lookup": {"identity": "order", "from": "id_order"}},
            "product_uom_qty": {"from": "product_quantity", "cast": "int"},
            "name": {"from": "product_name", "max_length": 64},
        },
    },
]
ORDER_SHOP = [
    "CREATE TABLE ps_orders (id_order INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, reference VARCHAR(9) NOT NULL)",
    """CREATE TABLE ps_order_detail (id_order_detail INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
        id_order INT UNSIGNED NOT NULL, product_name VARCHAR(255) NOT NULL, product_quantity INT NOT NULL)""",
]
ORDER_ERP = [
    "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar NOT NULL, origin varchar)",
    """CREATE TABLE sale_order_line (id serial PRIMARY KEY,
        order_id int NOT NULL REFERENCES sale_order (id), product_uom_qty int NOT NULL CHECK (product_uom_qty > 0),
        name varchar(20) NOT NULL)""",
]


@pytest.fixture
def orders(devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
           tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str) -> Iterator[Sides]:
    sides = make_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                       topic_prefix.split("_")[-1], shop_ddl=ORDER_SHOP, erp_ddl=ORDER_ERP, rules=ORDER_RULES,
                       shop_tables=["ps_orders", "ps_order_detail"], erp_tables=[])
    yield sides
    drop_origins(sides)


def _place_order(sides: Sides, reference: str, lines: int, quantity: int = 1, name: str = "widget") -> int:
    from replicator.devstack import mariadb_connect

    conn = mariadb_connect(sides.shop.admin, sides.shop.name)
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("INSERT INTO ps_orders (reference) VALUES (%s)", (reference,))
            order_id = int(cur.lastrowid)
            cur.executemany(
                "INSERT INTO ps_order_detail (id_order, product_name, product_quantity) VALUES (%s, %s, %s)",
                [(order_id, name, quantity)] * lines,
            )
            cur.execute("COMMIT")
        return order_id
    finally:
        conn.close()


def test_an_order_with_50_lines_is_never_visible_half_applied(orders: Sides) -> None:
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        import psycopg

        with psycopg.connect(orders.erp.dsn, autocommit=True) as conn:
            while not stop.is_set():
                # One statement reads one snapshot: an order and its lines as a committed state shows them.
                for row in conn.execute(
                    "SELECT o.id, count(l.id) FROM sale_order o LEFT JOIN sale_order_line l ON l.order_id = o.id "
                    "GROUP BY o.id"
                ).fetchall():
                    seen.append((int(row[0]), int(row[1])))
                time.sleep(0.005)

    with running_pipeline(orders.config) as supervisor:
        # A first order, applied before watching: capture may read it in its initial snapshot, whose rows are
        # no source transaction (as in Debezium); the orders after it are streamed transactions.
        _place_order(orders, "WARMUP001", 50)
        wait_until(lambda: orders.erp_sql("SELECT count(*) FROM sale_order_line")[0][0] == 50,
                   "the first order", supervisor=supervisor)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for n in range(8):
                _place_order(orders, f"REF{n:06d}", 50)
            wait_until(lambda: orders.erp_sql("SELECT count(*) FROM sale_order_line")[0][0] == 450,
                       "450 lines in the ERP", supervisor=supervisor,
                       describe=lambda: f"{orders.erp_sql('SELECT count(*) FROM sale_order_line')} "
                       f"{orders.dead_letters('erp')}")
        finally:
            stop.set()
            watcher.join()
    assert seen, "the reader saw nothing"
    assert {count for _, count in seen} <= {50}, sorted({c for _, c in seen})
    assert orders.erp_sql("SELECT count(*) FROM sale_order")[0][0] == 9


def _produce_raw(bootstrap: str, topic: str, key: bytes | None, value: bytes | None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def test_bad_records_go_to_dead_letters_later_changes_of_their_key_wait_and_other_keys_go_on(
    orders: Sides, devstack: ConnectionSettings, tmp_path: Path
) -> None:
    shop_db = orders.shop.name
    detail_topic = f"{orders.shop_source}.{shop_db}.ps_order_detail"
    started_ms = int(time.time() * 1000)
    with running_pipeline(orders.config) as supervisor:
        good = _place_order(orders, "GOOD00001", 2)
        wait_until(lambda: orders.erp_sql("SELECT count(*) FROM sale_order_line")[0][0] == 2, "the good order",
                   supervisor=supervisor, describe=lambda: f"{orders.erp_sql('SELECT * FROM sale_order')} "
                   f"{orders.dead_letters('erp')}")
        # 1. A message that is not JSON, and 2. a change event of a table no rule reads, on a read topic.
        _produce_raw(devstack.kafka_bootstrap, detail_topic, b'{"id_order_detail": 999}', b"\x00not json")
        envelope = {"before": None, "after": {"id": 1}, "op": "c", "ts_ms": 0, "transaction": None,
                    "source": {"name": orders.shop_source, "connector": "mariadb", "db": shop_db,
                               "table": "ps_unknown", "ts_ms": 0, "snapshot": "true", "gtid": None, "row": 0}}
        _produce_raw(devstack.kafka_bootstrap, detail_topic, b'{"id": 1}', orjson.dumps(envelope))
        # 3. A constraint violation (quantity must be > 0) and 4. a value too long for varchar(20), each in an
        # order of its own; then a later change of the refused line is held behind it.
        bad_qty = _place_order(orders, "BADQTY001", 1, quantity=0)
        _place_order(orders, "TOOLONG01", 1, name="x" * 40)
        (bad_line,) = orders.shop_sql("SELECT id_order_detail FROM ps_order_detail WHERE id_order = %s", (bad_qty,))[0]
        orders.shop_sql("UPDATE ps_order_detail SET product_quantity = 3 WHERE id_order_detail = %s", (bad_line,))
        after = _place_order(orders, "AFTER0001", 3)
        wait_until(lambda: orders.erp_sql("SELECT count(*) FROM sale_order WHERE origin = %s",
                                          (f"PS#{after}",))[0][0] == 1
                   and len(orders.dead_letters("erp")) == 5, "the order after the bad ones, and 5 dead letters",
                   supervisor=supervisor, describe=lambda: str(orders.dead_letters("erp")))
        letters = orders.dead_letters("erp")
        errors = [error for _, _, error in letters]
        assert [status for _, status, _ in letters] == ["dead", "dead", "dead", "dead", "held"]
        assert "unreadable message" in errors[0]
        assert "no mapping rule reads" in errors[1] and "ps_unknown" in errors[1]
        assert "CheckViolation" in errors[2] and "product_uom_qty" in errors[2]
        assert "StringDataRightTruncation" in errors[3]
        assert errors[4] == f"HeldBehind: dead letter {letters[2][0]}"
        # The orders around them were applied whole; the refused ones not at all.
        assert orders.erp_sql("SELECT origin FROM sale_order ORDER BY id") == [(f"PS#{good}",), (f"PS#{after}",)]

        # Fixing the cause and retrying applies the dead letter, then what was held behind it, in order.
        orders.erp_sql("ALTER TABLE sale_order_line DROP CONSTRAINT sale_order_line_product_uom_qty_check")
        cli = [sys.executable, "-m", "replicator.cli", "dlq"]
        letter_id = letters[2][0]
        retried = subprocess.run([*cli, "retry", "--config", str(orders.config), "--target", orders.erp_target,
                                  str(letter_id)], capture_output=True, text=True)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        wait_until(lambda: orders.erp_sql("SELECT product_uom_qty FROM sale_order_line l JOIN sale_order o "
                                          "ON o.id = l.order_id WHERE o.origin = %s", (f"PS#{bad_qty}",)) == [(3,)],
                   "the retried order with its held change", supervisor=supervisor,
                   describe=lambda: str(orders.dead_letters("erp")))
        discarded = letters[0][0]
        result = subprocess.run([*cli, "discard", "--config", str(orders.config), "--target", orders.erp_target,
                                 str(discarded)], check=True, capture_output=True, text=True)
        assert "discarded" in result.stdout
        listing = subprocess.run([*cli, "list", "--json", "--config", str(orders.config), "--target",
                                  orders.erp_target], check=True, capture_output=True, text=True).stdout
        listed = [orjson.loads(line) for line in listing.splitlines()]
        assert [(x["id"], x["status"]) for x in listed] == [(letters[1][0], "dead"), (letters[3][0], "dead")]
    # The dead letters are also on the DLQ topic, with the original envelope, the target and the error.
    dlq = [r.value for r in read_topics(devstack.kafka_bootstrap, ["replicator.dlq"], quiet_s=2)
           if r.value and r.value.get("target") == orders.erp_target]
    assert [r["error_class"] for r in dlq[:5]] == [
        "UnreadableMessage", "SkippableRecordError", "CheckViolation", "StringDataRightTruncation", "HeldBehind"]
    # The whole source transaction is dead-lettered: the order and its refused line.
    assert [e["value"]["source"]["table"] for e in dlq[2]["envelopes"]] == ["ps_orders", "ps_order_detail"]
    assert dlq[2]["envelopes"][1]["value"]["after"]["product_quantity"] == 0
    audit = [r.value for r in read_topics(devstack.kafka_bootstrap, ["replicator.audit"], quiet_s=2,
                                                 since_ms=started_ms)
             if r.value and r.value.get("target") == orders.erp_target]
    applied = [a for a in audit if a["decision"] == "applied" and a["table"] == "public.sale_order"]
    assert {f["column"] for f in field_decisions(applied[0])} == {"name", "origin"}
    assert field_decisions(applied[0])[0]["outcome"] == "applied"
    statuses = {i: s for i, s, _ in orders.dead_letters("erp")}
    assert statuses[letter_id] == "applied" and statuses[letters[4][0]] == "applied"
    assert statuses[discarded] == "discarded"


def test_kill_9_of_the_applier_never_applies_a_delta_twice(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    products = 20
    sides = make_sales_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                             topic_prefix.split("_")[-1], products)
    rng = random.Random(7)
    started_ms = int(time.time() * 1000)
    config = load_config(sides.config)
    capture = build_capture(config, sides.shop_source)
    capture_thread = threading.Thread(target=capture.run, daemon=True)
    capture_thread.start()
    log = tmp_path / "apply.log"

    def start_applier() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "replicator.cli", "apply", "--config", str(sides.config),
                                     "--target", sides.erp_target], stdout=out, stderr=subprocess.STDOUT)

    applier = start_applier()
    try:
        writes = 0

        def workload() -> None:
            nonlocal writes
            for _ in range(1500):
                product = rng.randrange(products)
                sides.shop_sql("UPDATE ps_sales SET sold = sold + %s WHERE id_product = %s",
                               (rng.randint(1, 5), product))
                writes += 1

        writer = threading.Thread(target=workload)
        writer.start()
        kills = 0
        while writer.is_alive() or kills < 5:
            time.sleep(rng.uniform(0.3, 1.5))
            applier.send_signal(signal.SIGKILL)
            applier.wait()
            kills += 1
            applier = start_applier()
        writer.join()
        expected = dict(sides.shop_sql("SELECT id_product, sold FROM ps_sales"))
        wait_until(lambda: dict(sides.erp_sql("SELECT id, sold FROM product_sales")) == expected,
                   "the ERP counters equal to the shop's", timeout=120,
                   describe=lambda: f"shop {expected}\nerp {dict(sides.erp_sql('SELECT id, sold FROM product_sales'))}"
                   f"\nlog: {log.read_text()[-2000:]}")
        time.sleep(2)  # nothing more may arrive: a re-applied delta would show now
        assert dict(sides.erp_sql("SELECT id, sold FROM product_sales")) == expected
        assert kills >= 5 and writes == 1500
        assert sides.dead_letters("erp") == []
        # Every applied source transaction has its audit record, whatever instruction the kills hit: records
        # are confirmed by Kafka before their batch commits (a rolled-back batch's may be repeated).
        ends = [r.value for r in read_topics(devstack.kafka_bootstrap, [transaction_topic(sides.shop_source)],
                                             quiet_s=2) if r.value and r.value.get("status") == "END"]
        # The updates made before the capture's snapshot are in its rows, not transactions of their own.
        updates = {e["id"] for e in ends}
        assert 1400 < len(updates) <= 1500
        audited = {r.value["transaction"] for r in read_topics(devstack.kafka_bootstrap, ["replicator.audit"],
                                                               quiet_s=2, since_ms=started_ms)
                   if r.value and r.value.get("target") == sides.erp_target and r.value.get("table") ==
                   "public.product_sales"}
        assert updates <= audited, f"{len(updates - audited)} applied transactions without an audit record"
    finally:
        applier.send_signal(signal.SIGTERM)
        applier.wait(60)
        capture.stop()
        capture_thread.join(60)
        drop_origins(sides)
