"""MariaDB capture against a real MariaDB 10.11 and Kafka.

Most tests use the devstack's server, each in its own database. Tests that change global server
settings (binlog format, time zone) or purge binlogs run against a private MariaDB started for this
module (the devstack's own `MariaDbServer`, in a temporary folder), so nothing else sharing the
devstack is disturbed.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest
from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from replicator.capture.mariadb.reader import CaptureReader, Gtid, Rows, Xid
from replicator.capture.mariadb.rows import compile_image_decoder, decode_rows_event
from replicator.capture.mariadb.source import parse_gtid_state
from replicator.capture.mariadb.types import ColumnSpec, RowDecoder
from replicator.config import load_config
from replicator.devstack import ConnectionSettings, mariadb_connect
from replicator.devstack.mariadb import MariaDbServer
from replicator.devstack.process import LOOPBACK, any_free_port
from replicator.devstack.servers import stop_server
from replicator.errors import ConfigError, FatalError
from replicator.pipeline.capture_runner import build_capture
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import EventProducer, OffsetStore, read_last_value
from replicator.transport.topics import offsets_topic
from tests.conftest import MariaDatabase
from tests.support.capture import capture_thread, write_config
from tests.support.kafka_reader import Record, read_topics
from tests.unit.data.mariadb.record import INSERTS, TABLES

pytestmark = pytest.mark.integration

Admin = dict[str, str | int]


# --- helpers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One capture source under test: its name (topic prefix), database and admin connection."""

    name: str
    database: str
    admin: Admin

    def sql(self, *statements: str) -> None:
        with contextlib.closing(mariadb_connect(self.admin, self.database)) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def connect(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return mariadb_connect(self.admin, self.database)

    def topic(self, table: str) -> str:
        return f"{self.name}.{self.database}.{table}"

    @property
    def tx_topic(self) -> str:
        return f"{self.name}.transaction"

    def config(self, tmp_path: Path, bootstrap: str, tables: list[str], **extra: Any) -> Path:
        source = {
            "name": self.name,
            "kind": "mariadb",
            "connection": {"dsn": {"env": f"DSN_{self.name.upper()}"}},
            "tables": [f"{self.database}.{t}" for t in tables],
            # A server kills an older dump thread registered with the same server id: never share one.
            "server_id": random.randint(100_000, 2**31),
            "heartbeat_interval_s": 0.5,
            **extra,
        }
        return write_config(tmp_path / f"{self.name}.yaml", bootstrap, [source])

    def stored_offsets(self, bootstrap: str) -> dict[str, Any]:
        raw = read_last_value(KafkaClient(bootstrap), offsets_topic(self.name), self.name.encode())
        assert raw is not None, "capture stored no position"
        value: dict[str, Any] = orjson.loads(raw)
        return value


def _source(admin: Admin, database: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Source:
    name = prefix.replace("test_", "my")
    dsn = f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/{database}"
    monkeypatch.setenv(f"DSN_{name.upper()}", dsn)
    return Source(name, database, admin)


@pytest.fixture
def maria(mariadb_database: MariaDatabase, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Source:
    return _source(mariadb_database.admin, mariadb_database.name, topic_prefix, monkeypatch)


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """A MariaDB of our own (same binlog settings as the devstack's), stopped after the module."""
    password = uuid.uuid4().hex
    server = MariaDbServer(port=any_free_port(), password=password, name="mariadb-private")
    state = server.start(tmp_path_factory.mktemp("private-mariadb"), None)
    try:
        yield {"host": LOOPBACK, "port": state.main_port, "user": "root", "password": password}
    finally:
        stop_server(state, server.stop_signal)


@pytest.fixture
def private(private_server: Admin, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    database = f"p_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(mariadb_connect(private_server)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    yield _source(private_server, database, topic_prefix, monkeypatch)
    with contextlib.closing(mariadb_connect(private_server)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")


def by_topic(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for record in records:
        grouped.setdefault(record.topic, []).append(record)
    return grouped


def ops(records: list[Record]) -> list[tuple[str | None, Any]]:
    return [(r.value["op"] if r.value else None, r.key) for r in records]


def last_gtid(conn: pymysql.connections.Connection[pymysql.cursors.Cursor]) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT @@SESSION.last_gtid")
        row = cur.fetchone()
    assert row is not None and row[0]
    return str(row[0])


def seq_of(gtid: str) -> tuple[int, int]:
    domain, _server, seq = (int(part) for part in gtid.split("-"))
    return domain, seq


def wait_until_stored(source: Source, bootstrap: str, gtid: str, timeout_s: float = 30) -> dict[str, Any]:
    """The stored offsets once they cover `gtid` (later transactions of other databases may be in too)."""
    domain, seq = seq_of(gtid)
    deadline = time.monotonic() + timeout_s
    while True:
        raw = read_last_value(KafkaClient(bootstrap), offsets_topic(source.name), source.name.encode())
        stored: dict[str, Any] = orjson.loads(raw) if raw else {}
        if stored.get("gtid") and parse_gtid_state(stored["gtid"]).get(domain, (0, 0))[1] >= seq:
            return stored
        assert time.monotonic() < deadline, f"stored offsets {stored} never reached {gtid}"
        time.sleep(0.3)


# --- snapshot, streaming, transaction metadata --------------------------------------------------------


def test_snapshot_then_stream_with_transaction_metadata(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    maria.sql(
        "CREATE TABLE customer (id INT PRIMARY KEY, email VARCHAR(100), balance DECIMAL(10,2))",
        "CREATE TABLE line (order_id INT, n INT, qty INT, PRIMARY KEY (order_id, n))",
        "CREATE TABLE other (id INT PRIMARY KEY)",
        "INSERT INTO customer VALUES (1, 'a@x', 1.50), (2, 'b@x', NULL)",
    )
    topics = [maria.topic("customer"), maria.topic("line"), maria.tx_topic]
    config = maria.config(tmp_path, bootstrap, ["customer", "line"])
    with capture_thread(config, maria.name):
        # Write only once the snapshot is in Kafka, so these changes come from the binlog.
        read_topics(bootstrap, [maria.topic("customer")], until=2, quiet_s=0.5)
        with contextlib.closing(maria.connect()) as conn, conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO customer VALUES (3, 'c@x', 10)")
            cur.execute("INSERT INTO line VALUES (3, 1, 2), (3, 2, 5)")
            cur.execute("COMMIT")
            first_gtid = last_gtid(conn)
            cur.execute("INSERT INTO other VALUES (1)")  # not captured: no markers either
            cur.execute("UPDATE customer SET email = 'a2@x' WHERE id = 1")
            cur.execute("DELETE FROM customer WHERE id = 2")
            cur.execute("UPDATE customer SET id = 10 WHERE id = 3")  # key change: delete + create
            cur.execute("INSERT INTO other VALUES (2)")
            final_gtid = last_gtid(conn)
        records = read_topics(bootstrap, topics, until=19)
        # Acknowledged while running, the uncaptured last transaction included (offered in a heartbeat).
        stored = wait_until_stored(maria, bootstrap, final_gtid)
        assert stored["snapshot_done"] is True
    grouped = by_topic(records)
    customers = grouped[maria.topic("customer")]
    assert ops(customers) == [
        ("r", {"id": 1}), ("r", {"id": 2}), ("c", {"id": 3}), ("u", {"id": 1}), ("d", {"id": 2}),
        (None, {"id": 2}),  # tombstone
        ("d", {"id": 3}), (None, {"id": 3}), ("c", {"id": 10}),
    ]
    snapshot_row = customers[0].value
    assert snapshot_row["after"] == {"id": 1, "email": "a@x", "balance": "1.50"}
    assert snapshot_row["source"]["snapshot"] == "true"
    assert snapshot_row["source"]["server_id"] == 0
    assert customers[2].value["after"] == {"id": 3, "email": "c@x", "balance": "10.00"}
    assert customers[3].value["before"] == {"id": 1, "email": "a@x", "balance": "1.50"}  # full row image
    assert customers[3].value["after"] == {"id": 1, "email": "a2@x", "balance": "1.50"}
    assert customers[4].value["before"] == {"id": 2, "email": "b@x", "balance": None}
    assert customers[6].value["before"]["id"] == 3 and customers[8].value["after"]["id"] == 10
    source = customers[2].value["source"]
    assert source["connector"] == "mariadb" and source["name"] == maria.name
    assert (source["db"], source["table"], source["gtid"]) == (maria.database, "customer", first_gtid)
    assert source["server_id"] == 1 and source["file"].startswith("shop-bin.") and source["pos"] > 0
    assert source["snapshot"] == "false" and source["origin"] is None
    assert abs(source["ts_ms"] - time.time() * 1000) < 120_000 and source["ts_ms"] % 1000 == 0
    lines = grouped[maria.topic("line")]
    assert [r.value["source"]["row"] for r in lines] == [0, 1]  # two rows of one rows event
    assert [r.value["after"] for r in lines] == [{"order_id": 3, "n": 1, "qty": 2}, {"order_id": 3, "n": 2, "qty": 5}]

    markers = [r.value for r in grouped[maria.tx_topic]]
    assert [m["status"] for m in markers] == ["BEGIN", "END"] * 4
    first_end = markers[1]
    assert first_end["id"] == first_gtid and first_end["event_count"] == 3
    assert sorted((c["data_collection"], c["event_count"]) for c in first_end["data_collections"]) == [
        (f"{maria.database}.customer", 1), (f"{maria.database}.line", 2)]
    assert [r.value["transaction"]["id"] for r in lines] == [first_gtid] * 2
    assert customers[2].value["transaction"] == {"id": first_gtid, "total_order": 1, "data_collection_order": 1}
    assert [r.value["transaction"]["total_order"] for r in lines] == [2, 3]
    assert markers[7]["event_count"] == 2  # the key change: delete + create (tombstones are not events)


def test_resumes_from_the_stored_gtid_without_a_new_snapshot(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    maria.sql("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(20))", "CREATE TABLE other (id INT PRIMARY KEY)",
              "INSERT INTO item VALUES (1, 'one')")
    config = maria.config(tmp_path, bootstrap, ["item"])
    with capture_thread(config, maria.name):
        read_topics(bootstrap, [maria.topic("item")], until=1, quiet_s=0.5)
        maria.sql("INSERT INTO item VALUES (2, 'two')")
        read_topics(bootstrap, [maria.topic("item")], until=2, quiet_s=0.5)
    first_stop = maria.stored_offsets(bootstrap)
    # While capture is down: captured and uncaptured transactions.
    maria.sql("INSERT INTO item VALUES (3, 'three')", "INSERT INTO other VALUES (1)",
              "UPDATE item SET name = 'uno' WHERE id = 1")
    with capture_thread(config, maria.name) as runner:
        records = read_topics(bootstrap, [maria.topic("item")], until=4)
        stats = runner.stats
    assert ops(records) == [("r", {"id": 1}), ("c", {"id": 2}), ("c", {"id": 3}), ("u", {"id": 1})]
    assert records[3].value["after"] == {"id": 1, "name": "uno"}
    assert stats.transactions == 2  # no snapshot chunk the second time
    second_stop = maria.stored_offsets(bootstrap)
    domain = next(iter(parse_gtid_state(first_stop["gtid"])))
    assert parse_gtid_state(second_stop["gtid"])[domain][1] >= parse_gtid_state(first_stop["gtid"])[domain][1] + 3


def test_own_writes_tagged_with_skip_replication_are_not_published(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    started_ms = int(time.time() * 1000)
    maria.sql("CREATE TABLE customer (id INT PRIMARY KEY, email VARCHAR(50), phone VARCHAR(20))",
              "INSERT INTO customer VALUES (1, 'a@x', NULL)")
    config = maria.config(tmp_path, bootstrap, ["customer"])
    with capture_thread(config, maria.name) as runner:
        read_topics(bootstrap, [maria.topic("customer")], until=1, quiet_s=0.5)
        with contextlib.closing(maria.connect()) as own, contextlib.closing(maria.connect()) as user:
            with own.cursor() as cur:
                cur.execute("SET SESSION skip_replication = 1")  # the replicator's writer tag
                cur.execute("BEGIN")
                cur.execute("UPDATE customer SET email = 'own@x' WHERE id = 1")
                cur.execute("INSERT INTO customer VALUES (2, 'own2@x', NULL)")
            # A user's transaction on the same row, concurrently: it waits for the row lock.
            user_done: dict[str, str] = {}

            def user_update() -> None:
                with user.cursor() as ucur:
                    ucur.execute("UPDATE customer SET phone = '555' WHERE id = 1")
                user_done["gtid"] = last_gtid(user)

            worker = threading.Thread(target=user_update)
            worker.start()
            time.sleep(0.5)
            assert worker.is_alive(), "the user's update should wait for the replicator's row lock"
            with own.cursor() as cur:
                cur.execute("COMMIT")
            own_gtid = last_gtid(own)
            worker.join(30)
            user_gtid = user_done["gtid"]
        records = read_topics(bootstrap, [maria.topic("customer"), maria.tx_topic], until=4)
        wait_until_stored(maria, bootstrap, user_gtid)
        stats = runner.stats
    grouped = by_topic(records)
    customers = grouped[maria.topic("customer")]
    assert ops(customers) == [("r", {"id": 1}), ("u", {"id": 1})]
    update = customers[1].value
    assert update["before"] == {"id": 1, "email": "own@x", "phone": None}  # the own write is in the row image
    assert update["after"] == {"id": 1, "email": "own@x", "phone": "555"}
    assert update["source"]["gtid"] == user_gtid and update["source"]["origin"] is None
    markers = [r.value for r in grouped[maria.tx_topic]]
    assert [(m["status"], m["id"]) for m in markers] == [("BEGIN", user_gtid), ("END", user_gtid)]
    assert own_gtid not in {r.value["source"]["gtid"] for r in customers}
    assert stats.skipped_own_transactions == 1
    # Instead of its events, the own transaction has its echo_suppressed audit record, with its tag.
    echoes = [r.value for r in read_topics(bootstrap, ["replicator.audit"], quiet_s=1, since_ms=started_ms)
              if r.value and r.value.get("source") == maria.name]
    assert echoes == [{"decision": "echo_suppressed", "source": maria.name, "transaction": own_gtid,
                       "origin": echoes[0]["origin"]}]
    assert echoes[0]["origin"]
    # The own transaction went through the acknowledgements all the same, before the user's.
    assert seq_of(own_gtid)[1] < seq_of(user_gtid)[1]
    assert getattr(stats.acknowledged, "gtid", None) == user_gtid


def test_ddl_on_a_captured_table_changes_the_row_shape_and_an_unsupported_column_stops_capture(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    maria.sql("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(20))", "INSERT INTO item VALUES (0, 'zero')")
    config = maria.config(tmp_path, bootstrap, ["item"])
    with pytest.raises(FatalError, match=rf"{maria.database}\.item\.spot: column type GEOMETRY"):  # noqa: SIM117
        with capture_thread(config, maria.name):
            read_topics(bootstrap, [maria.topic("item")], until=1, quiet_s=0.5)  # streaming from here
            maria.sql("INSERT INTO item VALUES (1, 'one')",
                      "ALTER TABLE item ADD COLUMN price DECIMAL(8,2) NOT NULL DEFAULT 0",
                      "INSERT INTO item VALUES (2, 'two', 9.99)",
                      "ALTER TABLE item ADD COLUMN spot POINT NULL",
                      "INSERT INTO item (id, name) VALUES (3, 'three')")
            records = read_topics(bootstrap, [maria.topic("item")], until=3)
            assert [(r.value["op"], r.value["after"]) for r in records] == [
                ("r", {"id": 0, "name": "zero"}), ("c", {"id": 1, "name": "one"}),
                ("c", {"id": 2, "name": "two", "price": "9.99"})]


def test_truncate_of_a_captured_table_is_published_as_a_truncate_event(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    maria.sql("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(20))",
              "CREATE TABLE other (id INT PRIMARY KEY)",
              "INSERT INTO item VALUES (1, 'one'), (2, 'two')", "INSERT INTO other VALUES (1)")
    config = maria.config(tmp_path, bootstrap, ["item"])
    with capture_thread(config, maria.name):
        read_topics(bootstrap, [maria.topic("item")], until=2, quiet_s=0.5)  # streaming from here
        maria.sql("TRUNCATE TABLE other",  # not captured: nothing
                  f"TRUNCATE `{maria.database}`.`item`",
                  "INSERT INTO item VALUES (3, 'three')",
                  "TRUNCATE /* comments are logged too */ item")
        records = read_topics(bootstrap, [maria.topic("item"), maria.tx_topic], until=4 + 6)
    grouped = by_topic(records)
    items = grouped[maria.topic("item")]
    assert [(r.value["op"], r.key) for r in items] == [("r", {"id": 1}), ("r", {"id": 2}), ("t", None),
                                                       ("c", {"id": 3}), ("t", None)]
    truncate = items[2].value
    assert truncate["before"] is None and truncate["after"] is None
    assert truncate["source"]["table"] == "item" and truncate["source"]["db"] == maria.database
    # Each TRUNCATE is a transaction of its own, with its BEGIN and END (one event of the table).
    markers = [r.value for r in grouped[maria.tx_topic]]
    assert [m["status"] for m in markers] == ["BEGIN", "END"] * 3
    assert markers[1]["id"] == truncate["source"]["gtid"]
    assert markers[1]["data_collections"] == [{"data_collection": f"{maria.database}.item", "event_count": 1}]


def test_rows_a_partition_statement_removes_without_row_events_are_reported_not_passed_over(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = devstack.kafka_bootstrap
    maria.sql("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(20)) "
              "PARTITION BY RANGE (id) (PARTITION low VALUES LESS THAN (10), PARTITION high VALUES LESS THAN MAXVALUE)",
              "CREATE TABLE other (id INT PRIMARY KEY) PARTITION BY HASH (id) PARTITIONS 2",
              "INSERT INTO item VALUES (1, 'one'), (20, 'twenty')", "INSERT INTO other VALUES (1)")
    config = maria.config(tmp_path, bootstrap, ["item"])
    with caplog.at_level(logging.WARNING, logger="replicator.capture.mariadb.source"), \
            capture_thread(config, maria.name):
        read_topics(bootstrap, [maria.topic("item")], until=2, quiet_s=0.5)  # streaming from here
        maria.sql("ALTER TABLE other TRUNCATE PARTITION p0",  # not captured: nothing to say
                  "ALTER TABLE item TRUNCATE PARTITION low",
                  f"ALTER TABLE `{maria.database}`.`item` DROP PARTITION high",
                  "INSERT INTO item VALUES (5, 'five')")  # capture goes on
        records = read_topics(bootstrap, [maria.topic("item")], until=3)
    assert [(r.value["op"], r.key) for r in records] == [("r", {"id": 1}), ("r", {"id": 20}), ("c", {"id": 5})]
    warnings = [r.getMessage() for r in caplog.records if "PARTITION on captured table" in r.getMessage()]
    assert len(warnings) == 2, warnings
    prefix = f"source {maria.name}: %s PARTITION on captured table {maria.database}.item at "
    assert warnings[0].startswith(prefix % "TRUNCATE")
    assert "ALTER TABLE item TRUNCATE PARTITION low" in warnings[0]
    assert warnings[1].startswith(prefix % "DROP")
    assert "Re-read the table (replicator snapshot)" in warnings[1]


# --- configuration and position errors --------------------------------------------------------------


def test_every_configuration_problem_is_reported_at_once(
    devstack: ConnectionSettings, private: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private.sql("CREATE TABLE no_key (a INT, b INT)",
                "CREATE TABLE shaped (id INT PRIMARY KEY, spot POINT, ok INT, addr INET6)",
                "CREATE TABLE good (id INT PRIMARY KEY)")
    user = f"cap_{uuid.uuid4().hex[:8]}"
    restrictive = (
        "SET GLOBAL binlog_format = 'STATEMENT'",
        "SET GLOBAL binlog_row_image = 'MINIMAL'",
        "SET GLOBAL binlog_row_metadata = 'MINIMAL'",
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON `{private.database}`.* TO '{user}'@'127.0.0.1'",
    )
    restore = (
        "SET GLOBAL binlog_format = 'ROW'",
        "SET GLOBAL binlog_row_image = 'FULL'",
        "SET GLOBAL binlog_row_metadata = 'FULL'",
        f"DROP USER IF EXISTS '{user}'@'127.0.0.1'",
    )
    monkeypatch.setenv(
        f"DSN_{private.name.upper()}",
        f"mysql://{user}:pw@{private.admin['host']}:{private.admin['port']}/{private.database}",
    )
    config = private.config(tmp_path, devstack.kafka_bootstrap, ["missing", "no_key", "shaped", "good"])
    runner = build_capture(load_config(config), private.name)
    try:
        private.sql(*restrictive)
        with pytest.raises(ConfigError) as raised:
            runner.run()
    finally:
        private.sql(*restore)
    problems = raised.value.problems
    text = "\n".join(problems)
    assert len(problems) == 8, text
    assert "binlog_format=STATEMENT" in text and "binlog_format=ROW" in text
    assert "binlog_row_image=MINIMAL" in text and "binlog_row_metadata=MINIMAL" in text
    assert f"user '{user}'@'127.0.0.1' lacks REPLICATION SLAVE and BINLOG MONITOR" in text
    assert f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'" in text
    assert f"table {private.database}.missing does not exist" in text
    assert f"table {private.database}.no_key has no primary key" in text
    assert f"{private.database}.shaped.spot: column type point is not supported" in text
    assert f"{private.database}.shaped.addr: column type inet6 is not supported" in text
    assert "good" not in text


def test_a_position_purged_from_the_binlogs_stops_capture_and_says_to_resnapshot(
    devstack: ConnectionSettings, private: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    private.sql("CREATE TABLE item (id INT PRIMARY KEY)", "INSERT INTO item VALUES (1)")
    config = private.config(tmp_path, bootstrap, ["item"])
    with capture_thread(config, private.name):
        read_topics(bootstrap, [private.topic("item")], until=1, quiet_s=0.5)
        private.sql("INSERT INTO item VALUES (2)")
        read_topics(bootstrap, [private.topic("item")], until=2, quiet_s=0.5)
    stored = private.stored_offsets(bootstrap)["gtid"]
    # While capture is down, more changes, then their binlogs go away.
    private.sql("INSERT INTO item VALUES (3)", "INSERT INTO item VALUES (4)")
    with contextlib.closing(mariadb_connect(private.admin)) as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        newest = cur.fetchall()[-1][0]
        deadline = time.monotonic() + 30
        while True:
            # The server keeps a file until InnoDB checkpointed its transactions: retry.
            cur.execute("PURGE BINARY LOGS TO %s", (newest,))
            cur.execute("SHOW BINARY LOGS")
            if [row[0] for row in cur.fetchall()] == [newest]:
                break
            assert time.monotonic() < deadline, "the server kept the old binlogs"
            time.sleep(0.5)
        cur.execute("SELECT BINLOG_GTID_POS(%s, 4)", (newest,))
        row = cur.fetchone()
        assert row is not None
        oldest = str(row[0])
    runner = build_capture(load_config(config), private.name)
    with pytest.raises(FatalError) as raised:
        runner.run()
    message = str(raised.value)
    assert f"GTID {stored}" in message
    assert f"oldest binlog, {newest}, starts after GTID {oldest}" in message
    assert f"delete the offsets topic {private.name}.offsets" in message
    assert seq_of(oldest)[1] > seq_of(stored)[1]


def test_a_gtid_the_server_does_not_have_is_fatal(
    devstack: ConnectionSettings, maria: Source, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    maria.sql("CREATE TABLE item (id INT PRIMARY KEY)")
    config = maria.config(tmp_path, bootstrap, ["item"])
    runner = build_capture(load_config(config), maria.name)  # creates the topics
    store = OffsetStore(KafkaClient(bootstrap), offsets_topic(maria.name), maria.name,
                        EventProducer(KafkaClient(bootstrap), client_id="t"))
    store.save({"gtid": "0-1-999999999", "snapshot_done": True}, wait=True)
    with pytest.raises(FatalError) as raised:
        runner.run()
    message = str(raised.value)
    assert "GTID 0-1-999999999" in message and "server error 1236" in message
    assert "0-1-999999999, which is not in the master's binlog" in message
    assert f"delete the offsets topic {maria.name}.offsets" in message


# --- the snapshot encodes every type exactly as the binlog does ----------------------------------------


def test_snapshot_and_binlog_encode_every_type_identically(
    devstack: ConnectionSettings, private: Source, tmp_path: Path
) -> None:
    """Each row is read once by the snapshot (SELECT) and once from the binlog (as the `before` image of
    its delete); both must give the same `after` dict, for every column type the capture supports.

    The private server's time zone is +02:00 so that TIMESTAMPs only match if the snapshot reads UTC."""
    bootstrap = devstack.kafka_bootstrap
    with contextlib.closing(mariadb_connect(private.admin)) as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL time_zone = '+02:00'")
    try:
        with contextlib.closing(private.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.time_zone, @@SESSION.sql_mode")
            zone, strict_mode = cur.fetchone() or ("", "")
            assert zone == "+02:00"
            for table, columns in TABLES.items():
                cur.execute(f"CREATE TABLE {table} ({columns}) ENGINE=InnoDB")
            for sql_mode, statement in INSERTS:
                cur.execute("SET SESSION sql_mode = %s", (sql_mode or strict_mode,))
                cur.execute(statement)
            counts = {}
            for table in TABLES:
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                counts[table] = int((cur.fetchone() or (0,))[0])
        topics = [private.topic(t) for t in TABLES]
        config = private.config(tmp_path, bootstrap, list(TABLES), snapshot_chunk_rows=2)
        with capture_thread(config, private.name):
            read_topics(bootstrap, topics, until=sum(counts.values()), quiet_s=0.5)
            private.sql(*(f"DELETE FROM {table}" for table in TABLES))
            records = read_topics(bootstrap, topics, until=3 * sum(counts.values()))  # r, d, tombstone
    finally:
        with contextlib.closing(mariadb_connect(private.admin)) as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = '+00:00'")
    snapshot: dict[tuple[str, int], dict[str, Any]] = {}
    binlog: dict[tuple[str, int], dict[str, Any]] = {}
    for record in records:
        if record.value is None:
            continue
        key = (record.value["source"]["table"], record.key["id"])
        if record.value["op"] == "r":
            snapshot[key] = record.value["after"]
        else:
            assert record.value["op"] == "d"
            binlog[key] = record.value["before"]
    assert len(snapshot) == sum(counts.values()) and snapshot.keys() == binlog.keys()
    mismatches = {key: (snapshot[key], binlog[key]) for key in snapshot if snapshot[key] != binlog[key]}
    assert not mismatches
    # And the values are the documented encodings, not merely equal.
    assert snapshot[("numbers", 1)]["f"] == 1.1 and snapshot[("numbers", 1)]["d65_30"] == "1.5" + "0" * 29
    assert snapshot[("temporals", 1)]["ts0"] == "2024-03-10T10:00:00Z"  # written at +02:00
    assert snapshot[("temporals", 2)]["tm6"] == -45045123456
    assert snapshot[("temporals", 4)]["yr"] == 1900
    assert snapshot[("zero_dates", 1)]["d"] is None and snapshot[("zero_dates", 1)]["nn_d"] == 0
    assert snapshot[("enums", 1)]["st"] == "a,c" and snapshot[("enums", 2)]["nn_st"] == ""
    assert snapshot[("bits", 1)]["b1"] is True
    assert snapshot[("bits", 1)]["b5"] == base64.b64encode(b"\x15").decode()
    assert snapshot[("binaries", 1)]["bin4"] == "AQIAAA=="
    assert snapshot[("strings", 1)]["t"] == "héllo 😀🎉" and snapshot[("strings", 1)]["vc_latin1"] == "café"
    assert snapshot[("ints", 2)]["biu"] == 18446744073709551615



# --- the compiled row decoder reads real binlog rows as mysql-replication does ------------------------------


def test_every_rows_event_decodes_on_the_fast_path_as_on_the_general_one(maria: Source) -> None:
    """Rows of every supported type written, updated (key change: both images) and deleted on a real server,
    read back with the capture's reader: for every rows event the compiled decoder (rows.py) gives exactly
    what mysql-replication's own parsing of the same bytes gives through RowDecoder, and it declines none
    (BIT columns, which it does not read, keep the general path by design)."""
    with contextlib.closing(maria.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@SESSION.sql_mode, @@GLOBAL.gtid_binlog_pos")
        strict_mode, start = cur.fetchone() or ("", "")
        cur.execute("SET SESSION time_zone = '+02:00'")  # the zone the TIMESTAMP literals are written for
        for table, columns in TABLES.items():
            cur.execute(f"CREATE TABLE {table} ({columns}) ENGINE=InnoDB")
        for sql_mode, statement in INSERTS:
            cur.execute("SET SESSION sql_mode = %s", (sql_mode or strict_mode,))
            cur.execute(statement)
        cur.execute("SET SESSION sql_mode = %s", (strict_mode,))
        for table in TABLES:
            cur.execute(f"UPDATE {table} SET id = id + 1000")
            cur.execute(f"DELETE FROM {table}")
        final = last_gtid(conn)

    maps: dict[int, Any] = {}
    reader = CaptureReader(
        wanted=maps,
        connection_settings={"host": maria.admin["host"], "port": maria.admin["port"], "user": maria.admin["user"],
                             "password": maria.admin["password"], "charset": "utf8mb4", "read_timeout": 30},
        server_id=random.randint(100_000, 2**31), is_mariadb=True, auto_position=start, blocking=True,
        only_events=[MariadbGtidEvent, XidEvent, TableMapEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[maria.database], enable_logging=False, freeze_schema=True,
    )
    checked: dict[tuple[str, int], int] = {}
    in_final = False
    try:
        for event in iter(reader.fetchone, None):
            if isinstance(event, TableMapEvent):
                mask = event.null_bitmask
                specs = [
                    ColumnSpec.from_binlog(c, table=event.table, nullable=bool(mask[i // 8] & (1 << i % 8)))
                    for i, c in enumerate(event.columns)
                ]
                maps[event.table_id] = (event.table, RowDecoder(specs), compile_image_decoder(event.columns, specs))
            elif isinstance(event, Rows):
                table, decoder, image = maps[event.table_id]
                if table == "bits":
                    assert image is None
                    continue
                assert image is not None, table
                fast = decode_rows_event(
                    image, event.data, event.event_type, event.post_header, len(decoder.columns), event.end
                )
                assert fast is not None, (table, event.event_type)
                assert repr(fast) == repr(_general_rows(reader.library_event(event), decoder)), table
                checked[(table, event.event_type)] = checked.get((table, event.event_type), 0) + len(fast)
            elif isinstance(event, Gtid):
                in_final = event.gtid == final
            elif isinstance(event, Xid) and in_final:
                break
    finally:
        reader.close()
    # Every supported table's rows went through all three kinds of rows event.
    assert {table for table, _ in checked} == set(TABLES) - {"bits"}
    assert {kind for _, kind in checked} == {0x17, 0x18, 0x19}


def _general_rows(event: Any, decoder: RowDecoder) -> list[Any]:
    """mysql-replication's rows through RowDecoder, in `decode_rows_event`'s shape."""
    if isinstance(event, UpdateRowsEvent):
        out = []
        for row in event.rows:
            before = decoder.decode(row["before_values"], row["before_none_sources"])
            after = decoder.decode(row["after_values"], row["after_none_sources"])
            out.append((decoder.key(after), after, decoder.key(before), before))
        return out
    return [
        (decoder.key(values), values, None, None)
        for values in (decoder.decode(row["values"], row["none_sources"]) for row in event.rows)
    ]
