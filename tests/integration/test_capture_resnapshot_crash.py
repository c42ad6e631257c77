"""Kill -9 the capture process several times while it serves a re-snapshot request (`replicator snapshot`)
and rows keep changing; restart it each time. The request is served to its end once, every row is read
again, no change is lost, and no change older than a row's last re-read is published after it.

Every change adds 1000 to a row's `n`, so a row's values only grow: an older state published after a
newer one would show as a decrease. Some changes delete a row, and a later one inserts it again with a
higher `n`: a delete the re-read let pass must stay passed through the kills (the replay window keeps it
with the offsets), so no deleted row comes back and no re-insert is dropped.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from replicator.cli import app
from replicator.devstack import ConnectionSettings, mariadb_connect
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import read_last_value
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import start_capture_process, write_config
from tests.support.kafka_reader import read_topics, replay_ids

pytestmark = pytest.mark.integration

ROWS = 2000
CHUNK = 10  # 200 chunks, one between two streamed transactions (fewer were all read before a first kill)
KILLS = 3


def _pg(db: PgDatabase) -> tuple[str, dict[str, Any], dict[str, str], Callable[[str], list[tuple[int, int]]]]:
    def sql(statement: str) -> list[tuple[int, int]]:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            cur = conn.execute(statement)
            return [(int(a), int(b)) for a, b in cur.fetchall()] if cur.description else []

    source = {"kind": "postgresql", "connection": {"dsn": {"env": "RESNAP_CRASH_DSN"}}}
    return "public", source, {"RESNAP_CRASH_DSN": db.dsn}, sql


def _mariadb(db: MariaDatabase) -> tuple[str, dict[str, Any], dict[str, str], Callable[[str], list[tuple[int, int]]]]:
    def sql(statement: str) -> list[tuple[int, int]]:
        with contextlib.closing(mariadb_connect(db.admin, db.name)) as conn, conn.cursor() as cur:
            cur.execute(statement)
            return [(int(a), int(b)) for a, b in cur.fetchall()] if cur.description else []

    admin = db.admin
    dsn = f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/{db.name}"
    source = {"kind": "mariadb", "connection": {"dsn": {"env": "RESNAP_CRASH_DSN"}},
              "server_id": random.randint(100_000, 2**31)}
    return db.name, source, {"RESNAP_CRASH_DSN": dsn}, sql


def _stored(bootstrap: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The newest re-snapshot request and the stored offsets."""
    kafka = KafkaClient(bootstrap)
    request = read_last_value(kafka, f"{name}.offsets", f"{name}:snapshot-request".encode(), timeout=10)
    offsets = read_last_value(kafka, f"{name}.offsets", name.encode(), timeout=10)
    return orjson.loads(request or b"{}"), orjson.loads(offsets or b"{}")


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_resnapshot_killed_repeatedly_is_served_once_and_loses_nothing(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    if kind == "postgresql":
        ns, source, env, sql = _pg(request.getfixturevalue("pg_database"))
        fill = f"INSERT INTO item SELECT g, g FROM generate_series(1, {ROWS}) g"
    else:
        ns, source, env, sql = _mariadb(request.getfixturevalue("mariadb_database"))
        fill = f"INSERT INTO item SELECT seq, seq FROM seq_1_to_{ROWS}"
    sql("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)")
    sql(fill)
    name = topic_prefix.replace("test_", "rscrash")
    topic = f"{name}.{ns}.item"
    config = write_config(tmp_path / "c.yaml", bootstrap, [{
        "name": name, **source, "tables": [f"{ns}.item"], "heartbeat_interval_s": 0.5,
        "snapshot_chunk_rows": CHUNK,
    }])
    log = tmp_path / "capture.log"

    stop = threading.Event()
    writes = Counter[int]()
    deleted: set[int] = set()

    def writer() -> None:
        # Racing with the re-read and the kills: one row + 1000 per transaction, all over the table; one
        # transaction in 20 deletes its row, and the next change of a deleted row inserts it again, higher.
        rng = random.Random(11)
        while not stop.is_set():
            key = rng.randint(1, ROWS)
            if key in deleted:
                writes[key] += 1
                sql(f"INSERT INTO item VALUES ({key}, {key + 1000 * writes[key]})")
                deleted.discard(key)
            elif rng.random() < 0.05:
                sql(f"DELETE FROM item WHERE id = {key}")
                deleted.add(key)
            else:
                sql(f"UPDATE item SET n = n + 1000 WHERE id = {key}")
                writes[key] += 1
            time.sleep(0.003)

    proc = start_capture_process(config, name, env, log)
    racing = threading.Thread(target=writer)
    kills = 0
    try:
        read_topics(bootstrap, [topic], until=ROWS, quiet_s=0.5, timeout_s=120)  # the initial snapshot
        racing.start()
        result = CliRunner().invoke(app, ["snapshot", "--config", str(config), "--source", name,
                                          "--tables", f"{ns}.item"])
        assert result.exit_code == 0, result.output
        rng = random.Random(5)
        while kills < KILLS:
            # Let the re-read get some way (a random number of chunks further), then kill -9.
            reads = _reads_so_far(bootstrap, topic)
            target = reads + rng.randint(1, 6) * CHUNK
            deadline = time.monotonic() + 60
            while reads < target:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"the re-snapshot stalled at {reads} reads"
                time.sleep(rng.uniform(0.02, 0.1))
                reads = _reads_so_far(bootstrap, topic)
            if _stored(bootstrap, name)[1].get("resnapshot_done"):
                break  # served to its end before this kill: nothing more to interrupt
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start_capture_process(config, name, env, log)
        deadline = time.monotonic() + 120
        while True:
            wanted, stored = _stored(bootstrap, name)
            if stored.get("resnapshot_done") == wanted["id"]:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"request {wanted} never recorded as served: {stored}"
            time.sleep(0.5)
        stop.set()
        racing.join()
        sql("UPDATE item SET n = n + 1000 WHERE id = 1")  # after the re-read
        table = dict(sql("SELECT id, n FROM item"))
        records = read_topics(bootstrap, [topic], quiet_s=3, timeout_s=120)
        while replay_ids(records) != table and time.monotonic() < deadline:
            records = read_topics(bootstrap, [topic], quiet_s=2, timeout_s=120)
    finally:
        stop.set()
        if racing.is_alive():
            racing.join()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert kills >= 1, "the re-snapshot finished before any kill"

    # No change lost: a consumer applying the events ends at the table's state.
    assert replay_ids(records) == table
    per_key: dict[int, list[tuple[str, int]]] = defaultdict(list)  # op, n (-1 for a delete)
    seen: set[tuple[Any, ...]] = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value is None:
            continue
        op, at = r.value["op"], r.value["source"]
        if op != "r":
            # A change published again after a kill (the unacknowledged tail) carries the same source
            # position as the first time: count it once.
            identity = (op, at.get("lsn"), at.get("txId"), at.get("gtid"), at.get("row"), r.key["id"])
            if identity in seen:
                continue
            seen.add(identity)
        # A delete has no after image (and PostgreSQL's default identity sends only the key before): no value.
        per_key[r.key["id"]].append((op, -1 if op == "d" else r.value["after"]["n"]))
    # Every row was read again after the request (the initial read plus at least one more), unless it was
    # deleted when its chunk was read.
    reads = Counter(key for key, ops in per_key.items() for op, _ in ops if op == "r")
    missed = [k for k in range(1, ROWS + 1) if reads[k] < 2 and all(op != "d" for op, _ in per_key[k])]
    assert not missed, missed
    # Values only grow: nothing older than a row's re-read (or than any published state) comes after it.
    for key, ops in per_key.items():
        values = [n for op, n in ops if op != "d"]  # a re-insert is higher than what the row had before
        assert values == sorted(values), (key, ops)
    # And every racing change is either its own event or inside a later read.
    for key, count in writes.items():
        assert max(n for _, n in per_key[key]) >= key + 1000 * count, (key, per_key[key])
    deletes = sum(1 for ops in per_key.values() for op, _ in ops if op == "d")
    assert deletes > 0
    print(f"{kind}: {kills} kills, {sum(reads.values()) - ROWS} re-reads, {sum(writes.values())} racing changes, "
          f"{deletes} deletes")


def _reads_so_far(bootstrap: str, topic: str) -> int:
    """The `r` events in the topic now (up to its end when asked: the writer never lets it go quiet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "resnapshot-crash-reader",
                         "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        count, offset = 0, -1
        while offset < high - 1:
            for msg in consumer.consume(10000, 1.0):
                assert msg.error() is None, msg.error()
                offset = msg.offset() or 0
                value = msg.value()
                if value is not None and b'"op":"r"' in value:
                    count += 1
        return count
    finally:
        consumer.close()
