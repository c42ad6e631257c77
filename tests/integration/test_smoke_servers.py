"""Smoke tests: the devstack's servers are real and configured the way capture and apply need."""

from __future__ import annotations

import contextlib
import select
import time
import uuid

import psycopg
import psycopg2
import psycopg2.extras
import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from replicator.devstack import ConnectionSettings, mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase

pytestmark = pytest.mark.integration


def test_postgres_logical_slot_with_pgoutput_streams_a_committed_insert(pg_database: PgDatabase) -> None:
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert conn.execute("SHOW track_commit_timestamp").fetchone() == ("on",)
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        conn.execute("CREATE PUBLICATION smoke_pub FOR TABLE item")

    repl = psycopg2.connect(pg_database.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        cur = repl.cursor()
        cur.create_replication_slot("smoke_slot", output_plugin="pgoutput")
        with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO item VALUES (1, 'hello')")
        cur.start_replication(
            slot_name="smoke_slot", decode=False,
            options={"proto_version": "1", "publication_names": "smoke_pub"},
        )
        kinds: list[str] = []
        payloads: list[bytes] = []
        deadline = time.monotonic() + 20
        while "C" not in kinds and time.monotonic() < deadline:
            msg = cur.read_message()
            if msg is None:
                select.select([cur], [], [], 1.0)
                continue
            kinds.append(chr(msg.payload[0]))
            payloads.append(bytes(msg.payload))
            cur.send_feedback(flush_lsn=msg.data_start)
        assert kinds == ["B", "R", "I", "C"]
        insert = payloads[2]
        assert b"hello" in insert  # the new tuple's text value
    finally:
        repl.close()


def test_mariadb_has_a_row_binlog_with_gtids_and_a_reader_sees_a_committed_row(
    mariadb_database: MariaDatabase,
) -> None:
    admin = mariadb_database.admin
    with contextlib.closing(mariadb_connect(admin, mariadb_database.name)) as conn, conn.cursor() as cur:
        cur.execute("SHOW VARIABLES WHERE Variable_name IN "
                    "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'gtid_strict_mode')")
        settings = dict(cur.fetchall())
        assert settings == {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                            "binlog_row_metadata": "FULL", "gtid_strict_mode": "ON"}
        cur.execute("SELECT @@gtid_binlog_pos")
        (start_gtid,) = cur.fetchone()
        cur.execute("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(40))")
        marker = f"row-{uuid.uuid4().hex[:8]}"
        cur.execute("INSERT INTO item VALUES (7, %s)", (marker,))
        cur.execute("SELECT @@gtid_binlog_pos")
        (end_gtid,) = cur.fetchone()

    reader = BinLogStreamReader(
        connection_settings={"host": admin["host"], "port": admin["port"], "user": admin["user"],
                             "password": admin["password"]},
        server_id=4000 + uuid.uuid4().int % 1000,
        is_mariadb=True,
        auto_position=start_gtid or "0-1-0",
        blocking=True,  # non-blocking readers lose events on 10.11 (shared/notes)
        only_events=[MariadbGtidEvent, WriteRowsEvent],
        only_schemas=[mariadb_database.name],
    )
    seen: list[dict[str, object]] = []
    gtids: list[str] = []
    try:
        for event in reader:
            if isinstance(event, MariadbGtidEvent):
                gtids.append(event.gtid)
            elif isinstance(event, WriteRowsEvent):
                seen.extend(row["values"] for row in event.rows)
            if gtids and gtids[-1] == end_gtid and seen:
                break
    finally:
        reader.close()
    assert seen == [{"id": 7, "name": marker}]
    assert gtids[-1] == end_gtid


def test_kafka_topic_creation_and_idempotent_produce_consume_round_trip(
    devstack: ConnectionSettings, topic_prefix: str
) -> None:
    bootstrap = devstack.kafka_bootstrap
    topic = f"{topic_prefix}.round-trip"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    futures[topic].result(timeout=30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3

    # Creating it again is refused with a clear error from the broker.
    again = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    with pytest.raises(KafkaException, match="already exists"):
        again[topic].result(timeout=30)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "compression.type": "lz4", "linger.ms": 5})
    delivered: list[tuple[str, int]] = []

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, err
        delivered.append((msg.key().decode(), msg.offset()))  # type: ignore[attr-defined]

    sent = {f"key-{i}": f"value-{i}" for i in range(100)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert sorted(k for k, _ in delivered) == sorted(sent)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic_prefix}-g",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    received: dict[str, str] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received[msg.key().decode()] = msg.value().decode()
    finally:
        consumer.close()
    assert received == sent
