"""Kill -9 the capture process in the middle of a multi-chunk initial snapshot, change rows meanwhile, and
restart it: the snapshot resumes after its last chunk Kafka confirmed, every row arrives, rows of
finished chunks are not read again, no change is lost and none is replayed over a newer snapshot read.

The snapshot is held in the middle deterministically: the test locks the second captured table, so the
capture reads the first one in chunks and then waits for the lock until it is killed.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from replicator.devstack import ConnectionSettings, mariadb_connect
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import read_last_value
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import start_capture_process, write_config
from tests.support.kafka_reader import Record, read_topics, replay_ids

pytestmark = pytest.mark.integration

ROWS = 4000
CHUNK = 50


@dataclass
class Side:
    namespace: str
    env: dict[str, str]
    source: dict[str, Any]
    sql: Callable[[str], None]  # one autocommitted statement
    rows: Callable[[str], dict[int, int]]  # id -> n of a table
    hold: Callable[[], contextlib.AbstractContextManager[Callable[[str], None]]]  # lock `blocker`; run SQL under it
    # Whether `blocker` can be locked now without blocking capture's start-up (PostgreSQL: creating the
    # publication needs a lock on the table too, so wait for the slot, taken after it).
    may_lock: Callable[[str], bool]


def _pg_side(db: PgDatabase) -> Side:
    def sql(statement: str) -> None:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(statement)

    def rows(table: str) -> dict[int, int]:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            return dict(conn.execute(f"SELECT id, n FROM {table}").fetchall())

    @contextlib.contextmanager
    def hold() -> Iterator[Callable[[str], None]]:
        with psycopg.connect(db.dsn, autocommit=True) as conn, conn.transaction():
            conn.execute("LOCK TABLE blocker IN ACCESS EXCLUSIVE MODE")

            def run(statement: str) -> None:
                conn.execute(statement)

            yield run

    def may_lock(name: str) -> bool:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                (f"replicator_{name}",)).fetchone() is not None

    return Side("public", {"RESUME_DSN": db.dsn},
                {"kind": "postgresql", "connection": {"dsn": {"env": "RESUME_DSN"}}}, sql, rows, hold, may_lock)


def _mariadb_side(db: MariaDatabase) -> Side:
    def sql(statement: str) -> None:
        with contextlib.closing(mariadb_connect(db.admin, db.name)) as conn, conn.cursor() as cur:
            cur.execute(statement)

    def rows(table: str) -> dict[int, int]:
        with contextlib.closing(mariadb_connect(db.admin, db.name)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, n FROM {table}")
            return {int(i): int(n) for i, n in cur.fetchall()}

    @contextlib.contextmanager
    def hold() -> Iterator[Callable[[str], None]]:
        with contextlib.closing(mariadb_connect(db.admin, db.name)) as conn, conn.cursor() as cur:
            cur.execute("LOCK TABLES blocker WRITE")
            try:

                def run(statement: str) -> None:
                    cur.execute(statement)

                yield run
            finally:
                cur.execute("UNLOCK TABLES")

    admin = db.admin
    dsn = f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/{db.name}"
    return Side(db.name, {"RESUME_DSN": dsn},
                {"kind": "mariadb", "connection": {"dsn": {"env": "RESUME_DSN"}},
                 "server_id": random.randint(100_000, 2**31)}, sql, rows, hold, lambda _name: True)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_snapshot_killed_midway_resumes_after_its_last_confirmed_chunk(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = devstack.kafka_bootstrap
    if kind == "postgresql":
        side = _pg_side(request.getfixturevalue("pg_database"))
        insert_big = f"INSERT INTO big SELECT g, g FROM generate_series(1, {ROWS}) g"
    else:
        side = _mariadb_side(request.getfixturevalue("mariadb_database"))
        insert_big = f"INSERT INTO big SELECT seq, seq FROM seq_1_to_{ROWS}"
    name = topic_prefix.replace("test_", "resume")
    side.sql("CREATE TABLE big (id int PRIMARY KEY, n int NOT NULL)")
    side.sql("CREATE TABLE blocker (id int PRIMARY KEY, n int NOT NULL)")
    side.sql(insert_big)
    side.sql("INSERT INTO blocker VALUES (1, 1), (2, 2), (3, 3)")
    ns = side.namespace
    big_topic, blocker_topic = f"{name}.{ns}.big", f"{name}.{ns}.blocker"
    config = write_config(tmp_path / "c.yaml", bootstrap, [{
        "name": name, **side.source, "tables": [f"{ns}.big", f"{ns}.blocker"], "heartbeat_interval_s": 1,
        "snapshot_chunk_rows": CHUNK,
    }])
    log = tmp_path / "capture.log"

    proc = start_capture_process(config, name, side.env, log)
    try:
        deadline = time.monotonic() + 60
        while not side.may_lock(name):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "capture did not start"
            time.sleep(0.02)
        with side.hold() as under_lock:
            # All of `big` is produced; the snapshot now waits for `blocker`.
            read_topics(bootstrap, [big_topic], until=ROWS, quiet_s=0.5, timeout_s=120)
            # Changes after the first snapshot's point, while it runs: to rows already published...
            side.sql("UPDATE big SET n = -1 WHERE id = 1")
            side.sql("DELETE FROM big WHERE id = 2")
            side.sql(f"INSERT INTO big VALUES ({ROWS + 1}, {ROWS + 1})")
            side.sql(f"UPDATE big SET n = -{ROWS} WHERE id = {ROWS}")
            # ...and to rows the first run never read.
            under_lock("UPDATE blocker SET n = -1 WHERE id = 1")
            under_lock("INSERT INTO blocker VALUES (100, 100)")
            proc.send_signal(signal.SIGKILL)  # before the lock goes: the first run never reads `blocker`
            proc.wait()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # And while capture is down.
    side.sql("UPDATE big SET n = -3 WHERE id = 3")
    side.sql(f"UPDATE big SET n = -{ROWS - 1} WHERE id = {ROWS - 1}")
    side.sql("UPDATE blocker SET n = -2 WHERE id = 2")

    raw = read_last_value(KafkaClient(bootstrap), f"{name}.offsets", name.encode(), timeout=10)
    assert raw is not None
    stored = orjson.loads(raw)
    assert stored["snapshot_done"] is False
    big_ranges = stored["snapshot_progress"].get(f"{ns}.big")
    assert big_ranges, f"no chunk of big was confirmed before the kill: {stored}"
    upper = big_ranges[-1][0]
    confirmed = ROWS if upper is None else upper["id"]
    assert CHUNK <= confirmed <= ROWS and confirmed % CHUNK == 0
    assert f"{ns}.blocker" not in stored["snapshot_progress"]

    proc = start_capture_process(config, name, side.env, log)
    try:
        read_topics(bootstrap, [blocker_topic], until=4, quiet_s=0.5, timeout_s=120)
        # Changes once the resumed capture streams.
        side.sql("UPDATE big SET n = -4 WHERE id = 4")
        side.sql("INSERT INTO blocker VALUES (101, 101)")
        records = read_topics(bootstrap, [big_topic, blocker_topic], until=ROWS + 12, quiet_s=3, timeout_s=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert "resuming the interrupted snapshot" in log.read_text()

    events: dict[str, dict[int, list[Record]]] = {big_topic: defaultdict(list), blocker_topic: defaultdict(list)}
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        if r.value is not None:
            events[r.topic][r.key["id"]].append(r)

    # Every row arrives, and a consumer applying the events ends at the tables' state.
    for topic, table in ((big_topic, "big"), (blocker_topic, "blocker")):
        ordered = sorted((r for r in records if r.topic == topic), key=lambda r: (r.partition, r.offset))
        assert replay_ids(ordered) == side.rows(table)

    # Rows of confirmed chunks were read once; only the unconfirmed tail may have been read twice.
    reads = Counter(key for key, evs in events[big_topic].items() for r in evs if r.value["op"] == "r")
    assert all(reads[key] == 1 for key in range(1, confirmed + 1)), [k for k in range(1, confirmed + 1)
                                                                     if reads[k] != 1]
    assert all(count <= 2 for count in reads.values())
    assert set(reads) == set(range(1, ROWS + 2))  # ROWS + 1 inserted past the confirmed chunks

    def ops(topic: str, key: int) -> list[tuple[str, int | None]]:
        return [(r.value["op"], (r.value["after"] or {}).get("n")) for r in events[topic][key]]

    # Changes to published rows, made while the snapshot ran or capture was down, arrive as stream events.
    assert ops(big_topic, 1) == [("r", 1), ("u", -1)]
    assert ops(big_topic, 2) == [("r", 2), ("d", None)]
    assert ops(big_topic, 3) == [("r", 3), ("u", -3)]
    assert ops(big_topic, 4) == [("r", 4), ("u", -4)]
    # Inserted past the confirmed chunks: read by the resumed snapshot, so its insert is not replayed.
    assert ops(big_topic, ROWS + 1) == [("r", ROWS + 1)]
    # Rows read by the resumed snapshot carry the changes made before it, which are not replayed after.
    assert ops(blocker_topic, 1) == [("r", -1)]
    assert ops(blocker_topic, 2) == [("r", -2)]
    assert ops(blocker_topic, 100) == [("r", 100)]
    assert ops(blocker_topic, 101) == [("c", 101)]
    if confirmed < ROWS:
        # Rows of big past the confirmed chunks were read again, as of the resumed snapshot.
        assert ops(big_topic, ROWS)[-1] == ("r", -ROWS)
        assert ops(big_topic, ROWS - 1)[-1] == ("r", -(ROWS - 1))
    else:
        assert ops(big_topic, ROWS) == [("r", ROWS), ("u", -ROWS)]
        assert ops(big_topic, ROWS - 1) == [("r", ROWS - 1), ("u", -(ROWS - 1))]
    print(f"{kind}: {confirmed} of {ROWS} rows confirmed before the kill; {sum(reads.values()) - ROWS} re-read")
