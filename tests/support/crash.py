"""Capture crash tests' shared parts: a source database per kind, a workload, and the check that Kafka holds
every change of it, the only duplicates being whole re-sends of an unacknowledged tail."""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from replicator.devstack import mariadb_connect
from replicator.transport.client import KafkaClient
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import start_capture_process, write_config
from tests.support.kafka_reader import Record, read_topics

TRANSACTIONS = 600  # of the workload


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


def pg_backend(db: PgDatabase, name: str) -> Backend:
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


def mariadb_backend(db: MariaDatabase, name: str, bootstrap: str) -> Backend:
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
            return read_last_value(KafkaClient(bootstrap), f"{name}.offsets", name.encode(), timeout=2) is not None
        return False

    admin = db.admin
    dsn = f"mysql://{admin['user']}:{admin['password']}@{admin['host']}:{admin['port']}/{db.name}"
    return Backend(
        kind="mariadb", namespace=db.name, env={"CRASH_DSN": dsn},
        source={"kind": "mariadb", "connection": {"dsn": {"env": "CRASH_DSN"}},
                "server_id": random.randint(100_000, 2**31)},
        run_sql=run, position=lambda src: (src["gtid"], src["row"], src["pos"]), ready=ready, close=conn.close,
    )


def run_workload(backend: Backend, errors: list[BaseException]) -> None:
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


class Workload:
    """`run_workload` in a thread of its own, started at once; `finish` waits for it and raises its error."""

    def __init__(self, backend: Backend) -> None:
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=run_workload, args=(backend, self._errors), name="workload")
        self._thread.start()

    def finish(self) -> None:
        self._thread.join()
        assert not self._errors, self._errors


def check_nothing_lost(records: list[Record], backend: Backend) -> tuple[int, int]:
    """Kafka's `records` of the workload's two tables hold every change once at least, copies being whole
    re-sends (same key, op and source position); returns (events, unique events)."""
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
    return len(events), len(unique)


@dataclass
class CaptureProcess:
    """`replicator capture` of the workload's tables, as its own process (`restart` after a kill)."""

    backend: Backend
    name: str
    bootstrap: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def restart(self) -> None:
        self.proc = start_capture_process(self.config, self.name, self.backend.env, self.log)

    def read_workload(self) -> list[Record]:
        """Every record of the workload's tables, once Kafka has at least one of each change."""
        ns = self.backend.namespace
        expected_items = 2 * TRANSACTIONS + TRANSACTIONS // 3  # inserts + deletes
        return read_topics(self.bootstrap, [f"{self.name}.{ns}.item", f"{self.name}.{ns}.counter"],
                           until=expected_items + TRANSACTIONS, quiet_s=4, timeout_s=180)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0, self.log.read_text()[-3000:]


def start_capture_of_workload_tables(backend: Backend, name: str, bootstrap: str, tmp_path: Path) -> CaptureProcess:
    """Create the workload's tables, start capturing them, and wait until capture holds its position, so
    that its snapshot is of the empty tables and the workload is streamed."""
    backend.run_sql([("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)", ())])
    backend.run_sql([("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)", ())])
    backend.run_sql([("INSERT INTO counter VALUES (1, 0)", ())])
    ns = backend.namespace
    config = write_config(tmp_path / "c.yaml", bootstrap, [{
        "name": name, **backend.source, "tables": [f"{ns}.item", f"{ns}.counter"], "heartbeat_interval_s": 1,
    }])
    log = tmp_path / "capture.log"
    proc = start_capture_process(config, name, backend.env, log)
    capture = CaptureProcess(backend, name, bootstrap, config, log, proc)
    deadline = time.monotonic() + 60
    while not backend.ready():
        assert capture.proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "capture did not take its position"
        time.sleep(0.2)
    return capture


def backend_of(kind: str, request: pytest.FixtureRequest, name: str, bootstrap: str) -> Backend:
    """A fresh database of `kind` for capture `name` (closed at the test's end)."""
    if kind == "postgresql":
        backend = pg_backend(request.getfixturevalue("pg_database"), name)
    else:
        backend = mariadb_backend(request.getfixturevalue("mariadb_database"), name, bootstrap)
    request.addfinalizer(backend.close)
    return backend
