"""Kill -9 the capture process at random moments during a workload: nothing is lost, and the only
duplicates are re-sent copies of the unacknowledged tail, identical down to their source position."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from replicator.devstack import ConnectionSettings
from tests.conftest import PgDatabase
from tests.support.capture import start_capture_process, write_config
from tests.support.kafka_reader import read_topics

pytestmark = pytest.mark.integration

TRANSACTIONS = 600


def _workload(dsn: str, done: threading.Event, errors: list[BaseException]) -> None:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for n in range(1, TRANSACTIONS + 1):
                with conn.transaction():
                    conn.execute("INSERT INTO item (id, n) VALUES (%s, %s), (%s, %s)", (2 * n, n, 2 * n + 1, n))
                    conn.execute("UPDATE counter SET value = %s WHERE id = 1", (n,))
                    if n % 3 == 0:
                        conn.execute("DELETE FROM item WHERE id = %s", (2 * n + 1,))
                time.sleep(random.uniform(0, 0.01))
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)
    finally:
        done.set()


def test_kill_9_during_a_workload_loses_nothing(
    devstack: ConnectionSettings, pg_database: PgDatabase, topic_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(20261129)
    name = topic_prefix.replace("test_", "crash")
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)")
        conn.execute("INSERT INTO counter VALUES (1, 0)")
    config = write_config(tmp_path / "c.yaml", devstack.kafka_bootstrap, [{
        "name": name, "kind": "postgresql", "connection": {"dsn": {"env": "CRASH_DSN"}},
        "tables": ["public.item", "public.counter"], "heartbeat_interval_s": 1,
    }])
    env = {"CRASH_DSN": pg_database.dsn}
    log = tmp_path / "capture.log"

    proc = start_capture_process(config, name, env, log)
    # Let the first run create its slot before the workload starts, so the snapshot is the empty tables.
    deadline = time.monotonic() + 60
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                               (f"replicator_{name}",)).fetchone():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "capture did not create its slot"
            time.sleep(0.2)

    done = threading.Event()
    errors: list[BaseException] = []
    writer = threading.Thread(target=_workload, args=(pg_database.dsn, done, errors))
    writer.start()
    kills = 0
    while kills < 5:
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = start_capture_process(config, name, env, log)
    writer.join()
    assert not errors, errors
    assert kills == 5

    # Let the last run catch up, then stop it cleanly.
    expected_items = 2 * TRANSACTIONS + TRANSACTIONS // 3  # inserts + deletes
    records = read_topics(devstack.kafka_bootstrap, [f"{name}.public.item", f"{name}.public.counter"],
                          until=expected_items + TRANSACTIONS + 1, quiet_s=4, timeout_s=180)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]

    events = [r for r in records if r.value is not None]
    # Duplicates are whole re-sends: same key, op and source position.
    by_identity: dict[tuple, list] = defaultdict(list)
    for r in events:
        src = r.value["source"]
        by_identity[(r.topic, str(r.key), r.value["op"], src["lsn"], src["txId"])].append(r)
    for copies in by_identity.values():
        first = copies[0].value
        for other in copies[1:]:
            assert {**other.value, "ts_ms": 0, "ts_us": 0, "ts_ns": 0} == {**first, "ts_ms": 0, "ts_us": 0, "ts_ns": 0}

    unique = [copies[0] for copies in by_identity.values()]
    items = [r for r in unique if r.topic.endswith(".item")]
    counters = [r for r in unique if r.topic.endswith(".counter")]
    created = {r.key["id"] for r in items if r.value["op"] == "c"}
    deleted = {r.key["id"] for r in items if r.value["op"] == "d"}
    assert created == set(range(2, 2 * TRANSACTIONS + 2))
    assert deleted == {2 * n + 1 for n in range(3, TRANSACTIONS + 1, 3)}
    # Every counter value arrived once, and in commit order within the key's partition.
    counter_events = sorted((r for r in counters if r.value["op"] == "u"), key=lambda r: r.offset)
    values = [r.value["after"]["value"] for r in counter_events]
    deduped = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
    assert deduped == sorted(set(values))
    assert set(values) == set(range(1, TRANSACTIONS + 1))
    duplicates = len(events) - len(unique)
    print(f"{kills} kills, {len(events)} events, {duplicates} re-sent duplicates")
