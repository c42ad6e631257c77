"""Kill -9 the capture process at random moments during a workload, for each source: nothing is lost,
and the only duplicates are re-sent copies of the unacknowledged tail, identical down to their source
position."""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from replicator.devstack import ConnectionSettings, mariadb_connect
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import start_capture_process, write_config
from tests.support.kafka_reader import read_topics

pytestmark = pytest.mark.integration

TRANSACTIONS = 600


@dataclass
class Backend:
    kind: str
    namespace: str  # schema or database of the captured tables
    env: dict[str, str]
    source: dict[str, Any]
    run_sql: Callable[[list[tuple[str, tuple[Any, ...]]]], None]  # one transaction
    position: Callable[[dict[str, Any]], tuple[Any, ...]]  # a change's source position
    ready: Callable[[], bool]  # capture holds its position: changes from now on will be captured
    close: Callable[[], None]


def _pg_backend(db: PgDatabase, name: str) -> Backend:
    conn = psycopg.connect(db.dsn, autocommit=True)

    def run(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with conn.transaction():
            for sql, params in statements:
                conn.execute(sql, params)

    def ready() -> bool:
        with psycopg.connect(db.dsn, autocommit=True) as probe:
            return probe.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                 (f"replicator_{name}",)).fetchone() is not None

    return Backend(
        kind="postgresql", namespace="public", env={"CRASH_DSN": db.dsn},
        source={"kind": "postgresql", "connection": {"dsn": {"env": "CRASH_DSN"}}},
        run_sql=run, position=lambda src: (src["lsn"], src["txId"]), ready=ready, close=conn.close,
    )


def _mariadb_backend(db: MariaDatabase, name: str, bootstrap: str) -> Backend:
    conn = mariadb_connect(db.admin, db.name)

    def run(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION")
            for sql, params in statements:
                cur.execute(sql, params)
            cur.execute("COMMIT")

    def ready() -> bool:
        # The first run stores its starting GTID in the offsets topic before it streams.
        from replicator.transport.kafka import read_last_value

        with contextlib.suppress(Exception):
            return read_last_value(bootstrap, f"{name}.offsets", name.encode(), timeout=2) is not None
        return False

    admin = db.admin
    dsn = f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/{db.name}"
    return Backend(
        kind="mariadb", namespace=db.name, env={"CRASH_DSN": dsn},
        source={"kind": "mariadb", "connection": {"dsn": {"env": "CRASH_DSN"}},
                "server_id": random.randint(100_000, 2**31)},
        run_sql=run, position=lambda src: (src["gtid"], src["row"], src["pos"]), ready=ready, close=conn.close,
    )


def _workload(backend: Backend, errors: list[BaseException]) -> None:
    try:
        for n in range(1, TRANSACTIONS + 1):
            statements = [
                ("INSERT INTO item (id, n) VALUES (%s, %s), (%s, %s)", (2 * n, n, 2 * n + 1, n)),
                ("UPDATE counter SET value = %s WHERE id = 1", (n,)),
            ]
            if n % 3 == 0:
                statements.append(("DELETE FROM item WHERE id = %s", (2 * n + 1,)))
            backend.run_sql(statements)
            time.sleep(random.uniform(0, 0.01))
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_kill_9_during_a_workload_loses_nothing(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(20261129)
    name = topic_prefix.replace("test_", "crash")
    if kind == "postgresql":
        backend = _pg_backend(request.getfixturevalue("pg_database"), name)
    else:
        backend = _mariadb_backend(request.getfixturevalue("mariadb_database"), name, devstack.kafka_bootstrap)
    request.addfinalizer(backend.close)
    backend.run_sql([("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)", ())])
    backend.run_sql([("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)", ())])
    backend.run_sql([("INSERT INTO counter VALUES (1, 0)", ())])
    ns = backend.namespace
    config = write_config(tmp_path / "c.yaml", devstack.kafka_bootstrap, [{
        "name": name, **backend.source, "tables": [f"{ns}.item", f"{ns}.counter"], "heartbeat_interval_s": 1,
    }])
    log = tmp_path / "capture.log"

    proc = start_capture_process(config, name, backend.env, log)
    # Let the first run take its position before the workload starts, so its snapshot is the empty tables.
    deadline = time.monotonic() + 60
    while not backend.ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "capture did not take its position"
        time.sleep(0.2)

    errors: list[BaseException] = []
    writer = threading.Thread(target=_workload, args=(backend, errors))
    writer.start()
    kills = 0
    while kills < 5:
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = start_capture_process(config, name, backend.env, log)
    writer.join()
    assert not errors, errors

    # Let the last run catch up, then stop it cleanly.
    expected_items = 2 * TRANSACTIONS + TRANSACTIONS // 3  # inserts + deletes
    records = read_topics(devstack.kafka_bootstrap, [f"{name}.{ns}.item", f"{name}.{ns}.counter"],
                          until=expected_items + TRANSACTIONS, quiet_s=4, timeout_s=180)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]

    events = [r for r in records if r.value is not None and r.value["op"] != "r"]

    def comparable(value: dict[str, Any]) -> dict[str, Any]:
        # Processing times differ between copies, and so does PostgreSQL's source.sequence, whose first
        # element is the commit LSN of the previous transaction *that run* published.
        return {**value, "ts_ms": 0, "ts_us": 0, "ts_ns": 0, "source": {**value["source"], "sequence": None}}

    # Duplicates are whole re-sends: same key, op and source position.
    by_identity: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for r in events:
        by_identity[(r.topic, str(r.key), r.value["op"], *backend.position(r.value["source"]))].append(r)
    for copies in by_identity.values():
        first = comparable(copies[0].value)
        for other in copies[1:]:
            assert comparable(other.value) == first

    unique = [copies[0] for copies in by_identity.values()]
    items = [r for r in unique if r.topic.endswith(".item")]
    created = {r.key["id"] for r in items if r.value["op"] == "c"}
    deleted = {r.key["id"] for r in items if r.value["op"] == "d"}
    assert created == set(range(2, 2 * TRANSACTIONS + 2))
    assert deleted == {2 * n + 1 for n in range(3, TRANSACTIONS + 1, 3)}
    # Every counter value arrived, and in commit order within the key's partition.
    counter_events = sorted((r for r in records if r.topic.endswith(".counter") and r.value
                             and r.value["op"] == "u"), key=lambda r: r.offset)
    values = [r.value["after"]["value"] for r in counter_events]
    assert set(values) == set(range(1, TRANSACTIONS + 1))
    # Re-sends restart from an earlier value, but each run's sequence is increasing by one.
    for previous, value in itertools.pairwise(values):
        assert value == previous + 1 or value <= previous, (previous, value)
    print(f"{kind}: {kills} kills, {len(events)} events, {len(events) - len(unique)} re-sent duplicates")
