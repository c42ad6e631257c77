"""PostgreSQL capture against the real server and broker."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from replicator.devstack import ConnectionSettings
from replicator.errors import ConfigError, FatalError
from tests.conftest import PgDatabase
from tests.support.capture import capture_thread, write_config
from tests.support.kafka_reader import read_topics

pytestmark = pytest.mark.integration


def _pg_source(name: str, db: PgDatabase, tables: list[str], **extra: object) -> dict[str, object]:
    return {"name": name, "kind": "postgresql", "connection": {"dsn": {"env": f"DSN_{name.upper()}"}},
            "tables": tables, **extra}


@pytest.fixture
def pg_env(pg_database: PgDatabase, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> str:
    name = topic_prefix.replace("test_", "pg")
    monkeypatch.setenv(f"DSN_{name.upper()}", pg_database.dsn)
    return name


def test_snapshot_then_stream_with_transaction_metadata(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customer (id int PRIMARY KEY, email text, balance numeric(10,2))")
        conn.execute("CREATE TABLE line (order_id int, n int, qty int, PRIMARY KEY (order_id, n))")
        conn.execute("INSERT INTO customer VALUES (1, 'a@x', 1.50), (2, 'b@x', NULL)")
    config = write_config(tmp_path / "c.yaml", devstack.kafka_bootstrap,
                          [_pg_source(name, pg_database, ["public.customer", "public.line"])])
    with capture_thread(config, name):
        with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO customer VALUES (3, 'c@x', 10)")
                conn.execute("INSERT INTO line VALUES (3, 1, 2), (3, 2, 5)")
            conn.execute("UPDATE customer SET email = 'a2@x' WHERE id = 1")
            conn.execute("DELETE FROM customer WHERE id = 2")
        customer_topic = f"{name}.public.customer"
        records = read_topics(devstack.kafka_bootstrap, [customer_topic, f"{name}.public.line",
                                                          f"{name}.transaction"], until=13)
    by_topic: dict[str, list] = {}
    for r in records:
        by_topic.setdefault(r.topic, []).append(r)
    customers = by_topic[customer_topic]
    assert [(r.value["op"] if r.value else None, r.key) for r in customers] == [
        ("r", {"id": 1}), ("r", {"id": 2}), ("c", {"id": 3}), ("u", {"id": 1}), ("d", {"id": 2}),
        (None, {"id": 2}),  # tombstone
    ]
    assert customers[0].value["after"] == {"id": 1, "email": "a@x", "balance": "1.50"}
    assert customers[0].value["source"]["snapshot"] == "true"
    assert customers[3].value["after"]["email"] == "a2@x"
    assert customers[4].value["before"] == {"id": 2, "email": None, "balance": None}  # DEFAULT identity: key only
    markers = [r.value for r in by_topic[f"{name}.transaction"]]
    assert [m["status"] for m in markers] == ["BEGIN", "END"] * 3
    first_end = markers[1]
    assert first_end["event_count"] == 3
    assert sorted((c["data_collection"], c["event_count"]) for c in first_end["data_collections"]) == [
        ("public.customer", 1), ("public.line", 2)]
    lines = by_topic[f"{name}.public.line"]
    assert [r.value["transaction"]["id"] for r in lines] == [first_end["id"]] * 2
    assert customers[2].value["transaction"] == {"id": first_end["id"], "total_order": 1, "data_collection_order": 1}
    assert [r.value["transaction"]["total_order"] for r in lines] == [2, 3]


def _sql(db: PgDatabase, *statements: str) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _start(devstack: ConnectionSettings, db: PgDatabase, name: str, tables: list[str], tmp_path: Path,
           **extra: object) -> Path:
    return write_config(tmp_path / f"{name}.yaml", devstack.kafka_bootstrap,
                        [_pg_source(name, db, tables, **extra)])


def test_transactions_with_the_replicator_origin_are_not_published_but_concurrent_user_ones_are(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customer (id int PRIMARY KEY, email text, phone text)")
        conn.execute("INSERT INTO customer VALUES (1, 'a@x', '100'), (2, 'b@x', '100')")
        conn.execute("SELECT pg_replication_origin_create(%s)", (f"replicator_{name}_w1",))
    config = _start(devstack, pg_database, name, ["public.customer"], tmp_path, snapshot="never")
    try:
        with capture_thread(config, name) as runner:
            with psycopg.connect(pg_database.dsn, autocommit=True) as writer, \
                    psycopg.connect(pg_database.dsn, autocommit=True) as user:
                writer.execute("SELECT pg_replication_origin_session_setup(%s)", (f"replicator_{name}_w1",))
                with writer.transaction():
                    writer.execute("SELECT pg_replication_origin_xact_setup('0/0', clock_timestamp())")
                    writer.execute("UPDATE customer SET email = 'echo@x' WHERE id = 1")
                    # A user's transaction commits while the tagged one is open.
                    user.execute("UPDATE customer SET phone = '200' WHERE id = 2")
                # And a user edits the very row the replicator just wrote.
                user.execute("UPDATE customer SET phone = '300' WHERE id = 1")
            records = read_topics(devstack.kafka_bootstrap, [f"{name}.public.customer"], until=2)
            assert runner.stats.skipped_own_transactions == 1
    finally:
        with psycopg.connect(pg_database.admin_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = %s",
                (f"replicator_{name}_w1",),
            )
    assert [(r.key["id"], r.value["after"]["phone"]) for r in records] == [(2, "200"), (1, "300")]
    # The user's edit carries the row as it is, including the replicator's email; no event of its own.
    assert records[1].value["after"]["email"] == "echo@x"
    assert all(r.value["source"]["origin"] is None for r in records)


def test_a_table_without_primary_key_and_an_unsupported_type_stop_start_up_naming_them(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    _sql(pg_database, "CREATE TABLE nokey (a int, b text)", "CREATE TABLE pricey (id int PRIMARY KEY, price money)")
    config = _start(devstack, pg_database, name, ["public.nokey", "public.pricey", "public.missing"], tmp_path)
    with pytest.raises(ConfigError) as info, capture_thread(config, name):
        pass
    problems = "\n".join(info.value.problems)
    assert "table public.nokey has no primary key" in problems
    assert "table public.missing does not exist" in problems
    config = _start(devstack, pg_database, name, ["public.pricey"], tmp_path)
    with pytest.raises(ConfigError, match=r"column public\.pricey\.price has PostgreSQL type money"), \
            capture_thread(config, name):
        pass


def test_a_dropped_slot_stops_capture_with_what_to_do(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    _sql(pg_database, "CREATE TABLE t (id int PRIMARY KEY)")
    config = _start(devstack, pg_database, name, ["public.t"], tmp_path)
    with capture_thread(config, name):
        with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        read_topics(devstack.kafka_bootstrap, [f"{name}.public.t"], until=1)
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (f"replicator_{name}",))
    with pytest.raises(FatalError, match=rf"replication slot replicator_{name} was dropped"), \
            capture_thread(config, name):
        pass


def test_an_idle_source_still_advances_its_slot(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    _sql(pg_database, "CREATE TABLE captured (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    config = _start(devstack, pg_database, name, ["public.captured"], tmp_path, heartbeat_interval_s=0.5,
                    snapshot="never")
    with capture_thread(config, name), psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        start = conn.execute("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s",
                             (f"replicator_{name}",)).fetchone()
        conn.execute("INSERT INTO other SELECT generate_series(1, 1000)")
        (written,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + 30
        while True:
            (confirmed,) = conn.execute(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (f"replicator_{name}",)).fetchone()
            if conn.execute("SELECT %s::pg_lsn >= %s::pg_lsn", (confirmed, written)).fetchone()[0]:
                break
            assert time.monotonic() < deadline, f"slot stuck at {confirmed} (started {start}), WAL at {written}"
            time.sleep(0.2)


def test_a_large_transaction_and_concurrent_sessions_give_one_event_per_row_change_in_commit_order(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, payload text)")
        conn.execute("CREATE TABLE hot (id int PRIMARY KEY, value int)")
        conn.execute("INSERT INTO hot SELECT g, 0 FROM generate_series(1, 10) g")
    config = _start(devstack, pg_database, name, ["public.big", "public.hot"], tmp_path, snapshot="never")
    sessions = 4
    updates_each = 100

    def hammer(session: int) -> None:
        with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
            for i in range(updates_each):
                conn.execute("UPDATE hot SET value = value + 1 WHERE id = %s", (1 + (session + i) % 10,))

    with capture_thread(config, name):
        import threading

        threads = [threading.Thread(target=hammer, args=(s,)) for s in range(sessions)]
        for t in threads:
            t.start()
        with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO big SELECT g, repeat('x', 20) FROM generate_series(1, 100000) g")
        for t in threads:
            t.join()
        records = read_topics(devstack.kafka_bootstrap, [f"{name}.public.big", f"{name}.public.hot",
                                                          f"{name}.transaction"],
                              until=100000 + sessions * updates_each + 2 * (1 + sessions * updates_each),
                              quiet_s=3, timeout_s=240)
    big = [r for r in records if r.topic.endswith(".big")]
    hot = [r for r in records if r.topic.endswith(".hot")]
    markers = [r.value for r in records if r.topic.endswith(".transaction")]
    assert len(big) == 100000 and {r.key["id"] for r in big} == set(range(1, 100001))
    assert len({r.value["transaction"]["id"] for r in big}) == 1
    big_end = next(m for m in markers if m["status"] == "END" and m["id"] == big[0].value["transaction"]["id"])
    assert big_end["event_count"] == 100000
    assert [r.value["transaction"]["total_order"] for r in big] == list(range(1, 100001))
    assert len(hot) == sessions * updates_each
    # Per key, values only go up by one at a time: commit order, nothing lost, nothing doubled.
    per_key: dict[int, list[int]] = {}
    for r in sorted(hot, key=lambda r: r.offset):
        per_key.setdefault(r.key["id"], []).append(r.value["after"]["value"])
    for values in per_key.values():
        assert values == list(range(1, len(values) + 1))
    assert len(markers) == 2 * (1 + sessions * updates_each)


def test_columns_added_retyped_and_dropped_while_capture_streams_are_in_the_events_from_that_change_on(
    devstack: ConnectionSettings, pg_database: PgDatabase, pg_env: str, tmp_path: Path
) -> None:
    name = pg_env
    _sql(pg_database, "CREATE TABLE item (id int PRIMARY KEY, qty int)")
    config = _start(devstack, pg_database, name, ["public.item"], tmp_path)
    with capture_thread(config, name), psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        for sql in [
            "INSERT INTO item VALUES (1, 5)",
            "ALTER TABLE item ADD COLUMN note text",
            "INSERT INTO item VALUES (2, 6, 'hello')",
            "ALTER TABLE item ALTER COLUMN qty TYPE numeric(10,2)",
            "INSERT INTO item VALUES (3, 7.25, 'x')",
            "ALTER TABLE item DROP COLUMN note",
            "INSERT INTO item VALUES (4, 8)",
            # A type that did not exist when capture started.
            "CREATE TYPE mood AS ENUM ('ok', 'sad')",
            "ALTER TABLE item ADD COLUMN mood mood",
            "INSERT INTO item VALUES (5, 1, 'sad')",
            "UPDATE item SET qty = 2 WHERE id = 1",
        ]:
            conn.execute(sql)
        records = read_topics(devstack.kafka_bootstrap, [f"{name}.public.item"], until=6)
    assert [(r.value["op"], r.value["after"]) for r in records] == [
        ("c", {"id": 1, "qty": 5}),
        ("c", {"id": 2, "qty": 6, "note": "hello"}),
        ("c", {"id": 3, "qty": "7.25", "note": "x"}),
        ("c", {"id": 4, "qty": "8.00"}),
        ("c", {"id": 5, "qty": "1.00", "mood": "sad"}),
        ("u", {"id": 1, "qty": "2.00", "mood": None}),
    ]
