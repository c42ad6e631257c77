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
from replicator.envelope import debezium
from replicator.events import Connector, MariaDbPosition, Op, RowChange, SourceTransaction, TableId
from replicator.pipeline.apply_runner import build_apply
from replicator.pipeline.capture_runner import build_capture, capture_topics
from replicator.transport.audit import field_decisions
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import ensure_topics
from replicator.transport.topics import table_topic, transaction_topic
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


# --- streamed changes that refer to rows a snapshot still brings ------------------------------------------------


@pytest.fixture
def waiting_orders(devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str) -> Iterator[Sides]:
    """The order rules, an ERP applier that lets a change wait 15 s for the row it refers to, and the shop's
    topics created; the shop's events are written to them by the test itself (no capture runs), so that it
    decides which arrives first."""
    sides = make_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                       topic_prefix.split("_")[-1], shop_ddl=ORDER_SHOP, erp_ddl=ORDER_ERP, rules=ORDER_RULES,
                       shop_tables=["ps_orders", "ps_order_detail"], erp_tables=[],
                       target_options={"reference_wait_s": 15})
    tables = [TableId(sides.shop.name, "ps_orders"), TableId(sides.shop.name, "ps_order_detail")]
    ensure_topics(KafkaClient(devstack.kafka_bootstrap),
                  capture_topics(sides.shop_source, tables, load_config(sides.config).kafka.topics))
    yield sides
    drop_origins(sides)


class ShopEvents:
    """Debezium events of the order tables, as the shop's capture publishes them, written to Kafka."""

    def __init__(self, sides: Sides, bootstrap: str) -> None:
        self.db = sides.shop.name
        self.info = debezium.SourceInfo(sides.shop_source, Connector.MARIADB, self.db)
        self.producer = Producer({"bootstrap.servers": bootstrap})

    def _send(self, messages: list[debezium.Message]) -> None:
        for message in messages:
            self.producer.produce(message.topic, key=debezium.dumps(message.key), value=debezium.dumps(message.value))
        assert self.producer.flush(30) == 0

    def order_read(self, order: int) -> None:
        """A snapshot read of order `order` (reference SNAP<order>)."""
        table = TableId(self.db, "ps_orders")
        now_ms = int(time.time() * 1000)
        position = MariaDbPosition("0-1-1", "binlog.000001", 4, 1)
        change = RowChange(table, Op.READ, {"id_order": order}, None,
                           {"id_order": order, "reference": f"SNAP{order:05d}"}, position)
        tx = SourceTransaction("snapshot", now_ms, position, [change], snapshot=True)
        value = debezium.change_value(change, tx, self.info, data_collection_order=1, total_order=1, ts_ms=now_ms)
        self._send([debezium.Message(table_topic(self.info.name, self.db, "ps_orders"), change.key, value)])

    def _inserted(self, sequence: int, table: str, key: str, row: dict[str, Any]) -> str:
        """A streamed transaction (GTID 0-1-<sequence>) inserting `row` into `table`; returns its GTID."""
        gtid = f"0-1-{sequence}"
        position = MariaDbPosition(gtid, "binlog.000001", 1000 + sequence, 1)
        change = RowChange(TableId(self.db, table), Op.CREATE, {key: row[key]}, None, row, position)
        tx = SourceTransaction(gtid, int(time.time() * 1000), position, [change])
        self._send(debezium.transaction_messages(tx, self.info, ts_ms=tx.commit_ts_ms))
        return gtid

    def line_inserted(self, sequence: int, line: int, order: int) -> str:
        """Order line `line` of order `order` inserted."""
        return self._inserted(sequence, "ps_order_detail", "id_order_detail", {
            "id_order_detail": line, "id_order": order, "product_name": f"line {line}", "product_quantity": 1})

    def order_inserted(self, sequence: int, order: int) -> str:
        """Order `order` placed (reference ORD<order>)."""
        return self._inserted(sequence, "ps_orders", "id_order", {"id_order": order, "reference": f"ORD{order:05d}"})


def _lines(sides: Sides) -> list[tuple[Any, ...]]:
    """The ERP's order lines in the order they were written (serial ids), with their order's origin."""
    return sides.erp_sql("SELECT l.name, o.origin FROM sale_order_line l JOIN sale_order o ON o.id = l.order_id "
                         "ORDER BY l.id")


def test_a_streamed_change_waits_for_the_snapshot_row_it_refers_to_and_its_sources_later_changes_wait_behind_it(
    waiting_orders: Sides, devstack: ConnectionSettings, tmp_path: Path
) -> None:
    sides = waiting_orders
    events = ShopEvents(sides, devstack.kafka_bootstrap)
    log = tmp_path / "apply.log"

    def start_applier() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "replicator.cli", "apply", "--config", str(sides.config),
                                     "--target", sides.erp_target], stdout=out, stderr=subprocess.STDOUT)

    def state() -> str:
        return f"lines {_lines(sides)}\ndead letters {sides.dead_letters('erp')}\nlog: {log.read_text()[-3000:]}"

    # A snapshot of the orders being applied: a read every 0.3 s (orders 100, 101, ...) for as long as the test
    # needs it.
    reading = threading.Event()
    reading.set()
    stop = threading.Event()

    def snapshot_reads() -> None:
        order = 100
        while not stop.wait(0.3):
            if reading.is_set():
                events.order_read(order)
                order += 1

    applier = start_applier()
    reader = threading.Thread(target=snapshot_reads)
    reader.start()
    try:
        events.order_read(1)
        wait_until(lambda: sides.erp_sql("SELECT count(*) FROM sale_order WHERE origin = 'PS#1'")[0][0] == 1,
                   "order 1's read applied", describe=state)
        # A line of order 2, whose read has not come yet, then a line of order 1: the second waits behind the first.
        first = events.line_inserted(100, line=10, order=2)
        events.line_inserted(101, line=11, order=1)
        wait_until(lambda: f"({first}) refers to a row not applied yet" in log.read_text(), "the line to wait",
                   describe=state)
        time.sleep(1.5)
        assert _lines(sides) == [] and sides.dead_letters("erp") == [], state()

        # Killed while they wait: the restarted applier reads them again and they wait again.
        applier.send_signal(signal.SIGKILL)
        applier.wait()
        applier = start_applier()
        wait_until(lambda: log.read_text().count(f"({first}) refers to a row not applied yet") == 2,
                   "the line to wait again after the restart", describe=state)
        orders_before = sides.erp_sql("SELECT count(*) FROM sale_order")[0][0]
        time.sleep(1.5)
        assert _lines(sides) == [] and sides.dead_letters("erp") == [], state()
        assert sides.erp_sql("SELECT count(*) FROM sale_order")[0][0] > orders_before, "reads went on meanwhile"

        # Order 2's read arrives: the line waiting for it is applied, then the one behind it, in commit order.
        events.order_read(2)
        wait_until(lambda: len(_lines(sides)) == 2, "both lines", describe=state)
        assert _lines(sides) == [("line 10", "PS#2"), ("line 11", "PS#1")]

        # A line of an order no read brings waits at most reference_wait_s (15 s), then is dead-lettered, and the
        # line behind it goes on.
        missing = events.line_inserted(102, line=12, order=77)
        events.line_inserted(103, line=13, order=1)
        wait_until(lambda: f"({missing}) refers to a row not applied yet" in log.read_text(), "the line to wait",
                   describe=state)
        assert len(_lines(sides)) == 2
        wait_until(lambda: len(_lines(sides)) == 3, "the line behind the one dead-lettered", timeout=60,
                   describe=state)
        assert _lines(sides)[-1] == ("line 13", "PS#1")
        ((_, status, error),) = sides.dead_letters("erp")
        assert status == "dead" and error.startswith("MissingReferenceError") and "order" in error, error
        assert f"({missing}): its source's stream goes on" in log.read_text()
    finally:
        stop.set()
        reader.join()
        applier.send_signal(signal.SIGTERM)
        applier.wait(60)


def test_with_no_snapshot_being_applied_a_change_that_refers_to_a_missing_row_is_dead_lettered_at_once(
    waiting_orders: Sides, devstack: ConnectionSettings
) -> None:
    """No snapshot read applied, and the source's other transactions keep coming (an order every 20 ms): once the
    messages the topics held when the change was deferred are read, its row is not coming, so it is dead-lettered
    rather than holding its source's stream for reference_wait_s (15 s), and the orders behind it go on."""
    sides = waiting_orders
    events = ShopEvents(sides, devstack.kafka_bootstrap)
    config = load_config(sides.config)
    runner = build_apply(config, sides.erp_target)
    thread = threading.Thread(target=runner.run)
    thread.start()
    stop = threading.Event()
    send_line = threading.Event()
    line_sent = threading.Event()
    placed = 0

    def shop_transactions() -> None:
        """One writer, so that the GTIDs are in commit order on the topics: orders, and the line when asked."""
        nonlocal placed
        sequence = 400
        while not stop.wait(0.02):
            sequence += 1
            if send_line.is_set() and not line_sent.is_set():
                events.line_inserted(sequence, line=20, order=88)
                line_sent.set()
                continue
            placed += 1
            events.order_inserted(sequence, order=1000 + placed)

    traffic = threading.Thread(target=shop_transactions)
    try:
        assert runner.ready.wait(60)
        traffic.start()
        wait_until(lambda: sides.erp_sql("SELECT count(*) FROM sale_order")[0][0] >= 10, "the first orders")
        send_line.set()
        assert line_sent.wait(30)
        started = time.monotonic()
        wait_until(lambda: len(sides.dead_letters("erp")) == 1, "the dead letter", timeout=30,
                   describe=lambda: str(sides.dead_letters("erp")))
        waited = time.monotonic() - started
        ((_, status, error),) = sides.dead_letters("erp")
        assert status == "dead" and error.startswith("MissingReferenceError") and "order 88" in error, error
        # Not held for the 15 s a change may wait while its row can still come.
        assert waited < config.target(sides.erp_target).reference_wait_s, waited
        stop.set()
        traffic.join()
        wait_until(lambda: sides.erp_sql("SELECT count(*) FROM sale_order")[0][0] == placed, "every order placed",
                   describe=lambda: f"{sides.erp_sql('SELECT count(*) FROM sale_order')} of {placed}")
    finally:
        stop.set()
        if traffic.is_alive():
            traffic.join()
        runner.stop()
        thread.join(60)
