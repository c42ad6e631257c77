"""PostgreSQL capture against the real server and broker."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from replicator.devstack import ConnectionSettings
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
