"""`replicator snapshot --tables ...`: a running capture reads the requested tables again as `r` events, in
primary-key chunks between streamed transactions, and a request made while capture is down is served at
its next start; each request once. Changes made around the re-read are neither lost nor replayed over it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from replicator.capture.base import TxCommit
from replicator.cli import app
from replicator.config import load_config
from replicator.devstack import ConnectionSettings, mariadb_connect
from replicator.events import Op, RowChange
from replicator.pipeline.capture_runner import build_capture
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import read_last_value
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import capture_thread, write_config
from tests.support.kafka_reader import Record, read_topics, replay_ids
from tests.support.pipeline import wait_for_snapshots

pytestmark = pytest.mark.integration

ROWS = 120
CHUNK = 25


@dataclass
class Side:
    namespace: str
    source: dict[str, Any]
    sql: Callable[[str], None]
    rows: Callable[[str], dict[int, int]]


def _pg_side(db: PgDatabase, env: str, monkeypatch: pytest.MonkeyPatch) -> Side:
    monkeypatch.setenv(env, db.dsn)

    def sql(statement: str) -> None:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(statement)

    def rows(table: str) -> dict[int, int]:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            return dict(conn.execute(f"SELECT id, n FROM {table}").fetchall())

    return Side("public", {"kind": "postgresql", "connection": {"dsn": {"env": env}}}, sql, rows)


def _mariadb_side(db: MariaDatabase, env: str, monkeypatch: pytest.MonkeyPatch) -> Side:
    admin = db.admin
    monkeypatch.setenv(env, f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/{db.name}")

    def sql(statement: str) -> None:
        with contextlib.closing(mariadb_connect(db.admin, db.name)) as conn, conn.cursor() as cur:
            cur.execute(statement)

    def rows(table: str) -> dict[int, int]:
        with contextlib.closing(mariadb_connect(db.admin, db.name)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, n FROM {table}")
            return {int(i): int(n) for i, n in cur.fetchall()}

    return Side(db.name, {"kind": "mariadb", "connection": {"dsn": {"env": env}},
                          "server_id": random.randint(100_000, 2**31)}, sql, rows)


def _reads(records: list[Record]) -> Counter[int]:
    return Counter(r.key["id"] for r in records if r.value is not None and r.value["op"] == "r")


def _request(config: Path, name: str, tables: str) -> str:
    result = CliRunner().invoke(app, ["snapshot", "--config", str(config), "--source", name, "--tables", tables])
    assert result.exit_code == 0, result.output
    assert "requested" in result.output
    return result.output


def _wait_done(bootstrap: str, name: str, timeout_s: float = 30) -> dict[str, Any]:
    """The stored offsets once they record the newest request as completed."""
    deadline = time.monotonic() + timeout_s
    while True:
        kafka = KafkaClient(bootstrap)
        request = orjson.loads(read_last_value(kafka, f"{name}.offsets", f"{name}:snapshot-request".encode()) or b"{}")
        raw = read_last_value(kafka, f"{name}.offsets", name.encode())
        stored: dict[str, Any] = orjson.loads(raw) if raw else {}
        if request and stored.get("resnapshot_done") == request["id"]:
            return stored
        assert time.monotonic() < deadline, f"request {request} not recorded as done: {stored}"
        time.sleep(0.3)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_requested_tables_are_read_again_interleaved_with_the_stream(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = devstack.kafka_bootstrap
    name = topic_prefix.replace("test_", "resnap")
    env = f"DSN_{name.upper()}"
    if kind == "postgresql":
        side = _pg_side(request.getfixturevalue("pg_database"), env, monkeypatch)
        fill = f"INSERT INTO item SELECT g, g FROM generate_series(1, {ROWS}) g"
    else:
        side = _mariadb_side(request.getfixturevalue("mariadb_database"), env, monkeypatch)
        fill = f"INSERT INTO item SELECT seq, seq FROM seq_1_to_{ROWS}"
    side.sql("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)")
    side.sql("CREATE TABLE other (id int PRIMARY KEY, n int NOT NULL)")
    side.sql(fill)
    side.sql("INSERT INTO other VALUES (1, 1), (2, 2)")
    ns = side.namespace
    item_topic, other_topic = f"{name}.{ns}.item", f"{name}.{ns}.other"
    config = write_config(tmp_path / "c.yaml", bootstrap, [{
        "name": name, **side.source, "tables": [f"{ns}.item", f"{ns}.other"], "heartbeat_interval_s": 0.5,
        "snapshot_chunk_rows": CHUNK,
    }])

    stop = threading.Event()

    def writer() -> None:
        # Changes racing with the re-read, each adding 1000 to a row of item 5..ROWS.
        rng = random.Random(7)
        while not stop.is_set():
            side.sql(f"UPDATE item SET n = n + 1000 WHERE id = {rng.randint(5, ROWS)}")
            time.sleep(0.005)

    with capture_thread(config, name):
        read_topics(bootstrap, [item_topic, other_topic], until=ROWS + 2, quiet_s=0.5)
        side.sql("UPDATE item SET n = -1 WHERE id = 1")  # streamed before the request
        racing = threading.Thread(target=writer)
        racing.start()
        try:
            _request(config, name, f"{ns}.item")
            # Changes racing with the re-read: each arrives after the row's new `r` or is contained in it.
            side.sql("UPDATE item SET n = -2 WHERE id = 2")
            side.sql(f"INSERT INTO item VALUES ({ROWS + 1}, {ROWS + 1})")
            side.sql("DELETE FROM item WHERE id = 3")
            side.sql("UPDATE other SET n = 20 WHERE id = 2")  # a table not re-read: nothing of it dropped
            time.sleep(1)
        finally:
            stop.set()
            racing.join()
        deadline = time.monotonic() + 60
        while sum(_reads(read_topics(bootstrap, [item_topic], quiet_s=0.5)).values()) < 2 * ROWS - 1:
            assert time.monotonic() < deadline, "the requested table was not read again"
        _wait_done(bootstrap, name)
        side.sql("UPDATE item SET n = -4 WHERE id = 4")  # after the re-read
        records = read_topics(bootstrap, [item_topic, other_topic], quiet_s=2)

    items = [r for r in records if r.topic == item_topic]
    others = [r for r in records if r.topic == other_topic]
    reads = _reads(items)
    assert all(reads[key] == 2 for key in range(4, ROWS + 1)), reads
    assert reads[1] == 2 and reads[2] in (1, 2) and reads[3] in (1, 2) and reads[ROWS + 1] in (0, 1)
    assert _reads(others) == {1: 1, 2: 1}  # not requested: read once
    assert replay_ids(items) == side.rows("item")
    # The re-read `r` of row 1 carries the change streamed before it; nothing older follows it.
    events_1 = [(r.value["op"], r.value["after"]["n"]) for r in items if r.value and r.key["id"] == 1]
    assert events_1 == [("r", 1), ("u", -1), ("r", -1)]
    # Every change appears once, whether as its own event or inside the re-read row.
    for key, value in ((2, -2), (ROWS + 1, ROWS + 1)):
        ops = [(r.value["op"], r.value["after"]["n"]) for r in items if r.value and r.key["id"] == key]
        assert ops[-1][1] == value and len(ops) <= 3, ops
    events_4 = [(r.value["op"], r.value["after"]["n"]) for r in items if r.value and r.key["id"] == 4]
    assert events_4 == [("r", 4), ("r", 4), ("u", -4)]
    assert [(r.value["op"], r.value["after"]["n"]) for r in others if r.value and r.key["id"] == 2] == [
        ("r", 2), ("u", 20)]
    # After a row's re-read, only newer changes follow: each adds 1000 to the value read.
    for key in range(5, ROWS + 1):
        ops = [(r.value["op"], r.value["after"]["n"]) for r in items if r.value and r.key["id"] == key]
        last_read = max(i for i, (op, _) in enumerate(ops) if op == "r")
        values = [n for _, n in ops[last_read:]]
        assert values == [values[0] + 1000 * i for i in range(len(values))], (key, ops)

    # A request made while capture is down is served when it starts, once.
    _request(config, name, f"{ns}.other")
    with capture_thread(config, name):
        deadline = time.monotonic() + 60
        while sum(_reads(read_topics(bootstrap, [other_topic], quiet_s=0.5)).values()) < 4:
            assert time.monotonic() < deadline, "the request made while capture was down was not served"
        _wait_done(bootstrap, name)
    with capture_thread(config, name):
        side.sql("UPDATE other SET n = -1 WHERE id = 1")
        records = read_topics(bootstrap, [item_topic, other_topic], quiet_s=2)
    assert _reads([r for r in records if r.topic == other_topic]) == {1: 2, 2: 2}
    assert sum(_reads([r for r in records if r.topic == item_topic]).values()) == sum(reads.values())
    assert replay_ids([r for r in records if r.topic == other_topic]) == side.rows("other")


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_row_deleted_and_inserted_again_before_the_re_read_is_published_as_read_across_a_restart_in_the_window(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Row 7 is deleted and inserted again while capture is down, then a re-read is requested: the read
    (served at start, before streaming) holds the re-inserted row. The stream then brings the delete and the
    re-insert, both older than the read, which returned the row: both are dropped (passed, they would publish
    the row deleted and then at an older state after its newer r event; until 2026-11-30 they were). Capture
    stops right after the delete is acknowledged and starts again, still inside the window, without knowing
    what the read returned: the re-insert is dropped there too (no delete of the row was passed), so row 7 is
    read, read again, and nothing else."""
    bootstrap = devstack.kafka_bootstrap
    name = topic_prefix.replace("test_", "rspass")
    env = f"DSN_{name.upper()}"
    if kind == "postgresql":
        side = _pg_side(request.getfixturevalue("pg_database"), env, monkeypatch)
    else:
        side = _mariadb_side(request.getfixturevalue("mariadb_database"), env, monkeypatch)
    side.sql("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)")
    side.sql("INSERT INTO item VALUES " + ", ".join(f"({i}, {i})" for i in range(1, 21)))
    ns = side.namespace
    topic = f"{name}.{ns}.item"
    config = write_config(tmp_path / "c.yaml", bootstrap, [{
        "name": name, **side.source, "tables": [f"{ns}.item"], "heartbeat_interval_s": 0.5,
        "snapshot_chunk_rows": 5,
    }])
    with capture_thread(config, name):
        read_topics(bootstrap, [topic], until=20, quiet_s=0.5)  # the initial snapshot
        # Stopped only once the snapshot is recorded as done: stopped before, the next start would take it
        # again, at a point after the changes below, and stream none of them.
        wait_for_snapshots(config, timeout=30)
    side.sql("DELETE FROM item WHERE id = 7")
    side.sql("INSERT INTO item VALUES (7, 999)")
    _request(config, name, f"{ns}.item")

    # Capture that ends its stream right after the transaction holding the delete, the first one streamed (its
    # delete dropped, it is an empty transaction): the runner then flushes and acknowledges it, as on SIGTERM,
    # and the re-insert is not read.
    runner = build_capture(load_config(config), name)
    stream = runner.source.stream

    def until_the_delete() -> Iterator[Any]:
        for item in stream():
            yield item
            assert not (isinstance(item, RowChange) and item.op is Op.DELETE), "the delete was not dropped"
            if isinstance(item, TxCommit) and not item.tx.snapshot:
                return

    runner.source.stream = until_the_delete  # type: ignore[method-assign]
    runner.run()
    stored = orjson.loads(read_last_value(KafkaClient(bootstrap), f"{name}.offsets", name.encode()) or b"{}")
    assert stored["replay_window"]["passed"]["deleted"] == [], stored

    with capture_thread(config, name):
        deadline = time.monotonic() + 30
        while replay_ids(records := read_topics(bootstrap, [topic], quiet_s=0.5)) != side.rows("item"):
            assert time.monotonic() < deadline, (replay_ids(records), side.rows("item"))
    events_7 = [(r.value["op"], r.value["after"] and r.value["after"]["n"]) for r in records
                if r.value is not None and r.key["id"] == 7]
    # The first read and the re-read (of the re-inserted row).
    assert events_7 == [("r", 7), ("r", 999)], events_7
