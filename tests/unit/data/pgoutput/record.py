"""Record raw pgoutput payloads for the decoder tests (tests/unit/test_pgoutput.py, test_pg_types.py).

Usage, against a throwaway PostgreSQL 15 started with `wal_level=logical`, `track_commit_timestamp=on`,
`logical_decoding_work_mem=64kB` and `timezone=Europe/Paris` (see README.md in this folder):

    .venv/bin/python tests/unit/data/pgoutput/record.py "host=127.0.0.1 port=56999 user=postgres"

It (re)creates the database `pgoutput_rec`, three slots and the replication origins it uses, runs one
fixed workload, then reads every slot up to an end marker and writes one JSON line per XLogData
message: `{"seq", "data_start", "wal_end", "hex"}`. LSNs, xids and commit times change from run to run,
so the tests' golden values must be re-checked after re-recording.
"""

from __future__ import annotations

import json
import select
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

DATABASE = "pgoutput_rec"
HERE = Path(__file__).resolve().parent

# slot name -> (output file, START_REPLICATION options)
SLOTS: dict[str, tuple[str, dict[str, str]]] = {
    "rec_v1": ("v1.jsonl", {"proto_version": "1", "publication_names": "pub_all", "messages": "true"}),
    "rec_v2": (
        "v2_streaming.jsonl",
        {"proto_version": "2", "publication_names": "pub_all", "streaming": "on", "messages": "true"},
    ),
    "rec_v1_binary": (
        "v1_binary.jsonl",
        {"proto_version": "1", "publication_names": "pub_binary", "binary": "true", "messages": "true"},
    ),
}
END_PREFIX = b"recorder\x00"
END_CONTENT = b"end-of-workload"

SCHEMA = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id int PRIMARY KEY,
    c_bool bool, c_int2 int2, c_int4 int4, c_int8 int8, c_oid oid,
    c_float4 float4, c_float8 float8, c_numeric numeric, c_numeric_10_2 numeric(10, 2),
    c_text text, c_varchar varchar(20), c_bpchar char(5), c_name name, c_char "char",
    c_uuid uuid, c_json json, c_jsonb jsonb, c_bytea bytea,
    c_date date, c_time time, c_time3 time(3), c_timetz timetz,
    c_ts timestamp, c_ts0 timestamp(0), c_ts3 timestamp(3),
    c_tstz timestamptz, c_tstz3 timestamptz(3), c_tstz0 timestamptz(0),
    c_interval interval, c_mood mood,
    c_int4_arr int4[], c_text_arr text[], c_int_2d int4[], c_numeric_arr numeric[],
    c_tstz_arr timestamptz[], c_mood_arr mood[], c_bytea_arr bytea[], c_date_arr date[]
);
CREATE TABLE docs (id int PRIMARY KEY, body text, counter int);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE customers_full (id int PRIMARY KEY, email text, phone text, notes text);
ALTER TABLE customers_full ALTER COLUMN notes SET STORAGE EXTERNAL;
ALTER TABLE customers_full REPLICA IDENTITY FULL;
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
CREATE TABLE kv (id serial PRIMARY KEY, k text NOT NULL, v text);
CREATE TABLE unsupported_money (id int PRIMARY KEY, price money);
CREATE PUBLICATION pub_all FOR ALL TABLES;
CREATE TABLE binary_sample (id int PRIMARY KEY, k text, n numeric(6, 2), b bytea, ts timestamptz);
CREATE PUBLICATION pub_binary FOR TABLE binary_sample;
"""

ALL_TYPES_ROW_1 = r"""
INSERT INTO all_types VALUES (
    1, true, -32768, 2147483647, -9223372036854775808, 4294967295,
    3.14, -1e-300, 12345678901234567890.000123400, 12345678.9,
    'héllo 😀 "quoted" \ back', 'varchar', 'ab', 'a_name', 'x',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [true, null]}', '{"b": 1, "a": [true, null]}',
    '\x00ff10',
    '2024-02-29', '23:59:59.999999', '12:34:56.789', '10:15:30.5+05:30',
    '2024-03-01 10:15:30.123456', '2024-03-01 10:15:30.6', '1969-12-31 23:59:59.999',
    '2024-03-01 10:15:30.123456+00', '2024-07-01 00:00:00.1+02', '1900-01-01 00:00:00+00',
    '1 year 2 mons 3 days 04:05:06.789', 'happy',
    '{1,NULL,-3}',
    ARRAY['a b', NULL, 'NULL', '', 'q"uote', 'back\slash', '{brace}', 'comma,', 'x'],
    '{{1,2},{3,4}}', '{1.50,NaN,-0.001}',
    ARRAY['2024-03-01 10:15:30+00'::timestamptz, NULL], '{sad,happy}',
    ARRAY['\x01'::bytea, '\x'::bytea, NULL], '[0:1]={2024-01-01,2024-01-02}'
)
"""

ALL_TYPES_ROW_3 = r"""
INSERT INTO all_types (id, c_float4, c_float8, c_numeric, c_numeric_10_2, c_date, c_time, c_timetz,
                       c_ts, c_ts3, c_tstz, c_tstz3, c_interval)
VALUES (3, 'NaN', '-Infinity', 'NaN', -0.05, 'infinity', '24:00:00', '00:00:00-01',
        '-infinity', 'infinity', 'infinity', '-infinity', '-1 days +02:03:00')
"""

ALL_TYPES_ROW_4 = r"""
INSERT INTO all_types (id, c_float4, c_float8, c_numeric, c_date, c_ts, c_tstz, c_interval)
VALUES (4, 'Infinity', 1e308, '-Infinity', '0044-03-15 BC', '0001-01-01 00:00:00 BC',
        '294276-12-31 23:59:59.999999+00', '-00:00:00.000001')
"""


def _connect(dsn: str, dbname: str) -> Any:
    conn = psycopg2.connect(f"{dsn} dbname={dbname}")
    conn.autocommit = True
    return conn


def reset(dsn: str) -> None:
    admin = _connect(dsn, "postgres")
    cur = admin.cursor()
    for slot in SLOTS:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
    cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    cur.execute(f"CREATE DATABASE {DATABASE}")
    for origin in ("replicator_w1", "replicator_w2"):
        cur.execute("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = %s", (origin,))
        cur.execute("SELECT pg_replication_origin_create(%s)", (origin,))
    admin.close()
    db = _connect(dsn, DATABASE)
    db.cursor().execute(SCHEMA)
    cur = db.cursor()
    for slot in SLOTS:
        cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    db.close()


def workload(dsn: str) -> None:
    db = _connect(dsn, DATABASE)
    cur = db.cursor()
    # 1. Every type, then NULLs, then special values; one transaction each.
    cur.execute(ALL_TYPES_ROW_1)
    cur.execute("INSERT INTO all_types (id) VALUES (2)")
    cur.execute(ALL_TYPES_ROW_3)
    cur.execute(ALL_TYPES_ROW_4)
    # 2. Default replica identity: plain update (no old tuple), key change ('K'), delete ('K').
    cur.execute("UPDATE all_types SET c_text = 'changed' WHERE id = 1")
    cur.execute("UPDATE all_types SET id = 20 WHERE id = 2")
    cur.execute("DELETE FROM all_types WHERE id = 3")
    # 3. Unchanged TOASTed value: update another column of a row whose body lives out of line.
    cur.execute("INSERT INTO docs VALUES (1, repeat('0123456789abcdef', 400), 0)")
    cur.execute("UPDATE docs SET counter = 1 WHERE id = 1")
    # 4. REPLICA IDENTITY FULL: old row in 'O' (a TOASTed old value still comes as 'u').
    cur.execute("INSERT INTO customers_full VALUES (7, 'a@example.com', '+33 1 23', repeat('note ', 1000))")
    cur.execute("UPDATE customers_full SET phone = '+33 9 87' WHERE id = 7")
    cur.execute("DELETE FROM customers_full WHERE id = 7")
    # 5. Truncates: CASCADE over a foreign key, and RESTART IDENTITY.
    cur.execute("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)")
    cur.execute("TRUNCATE parent CASCADE")
    cur.execute("INSERT INTO kv (k, v) VALUES ('before-truncate', 'x')")
    cur.execute("TRUNCATE kv RESTART IDENTITY")
    # 6. A transactional logical message next to a row, and a non-transactional one with a NUL byte.
    db.autocommit = False
    cur.execute("INSERT INTO kv (k, v) VALUES ('with-message', 'm')")
    cur.execute("SELECT pg_logical_emit_message(true, 'replicator', '{\"trace\": \"abc\"}')")
    db.commit()
    db.autocommit = True
    cur.execute("SELECT pg_logical_emit_message(false, 'replicator', '\\x6e6f6e00747800'::bytea)")
    # 7. A transaction tagged with a replication origin, with origin LSN and commit time set.
    tagged = _connect(dsn, DATABASE)
    tcur = tagged.cursor()
    tcur.execute("SELECT pg_replication_origin_session_setup('replicator_w1')")
    tagged.autocommit = False
    tcur.execute("SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2001-02-03 04:05:06.789+00')")
    tcur.execute("INSERT INTO kv (k, v) VALUES ('origin', 'w1')")
    tagged.commit()
    tagged.close()
    # 8. A big transaction, streamed in proto 2, with an origin; another session commits in between.
    big = _connect(dsn, DATABASE)
    bcur = big.cursor()
    bcur.execute("SELECT pg_replication_origin_session_setup('replicator_w2')")
    big.autocommit = False
    bcur.execute("SELECT pg_replication_origin_xact_setup('0/1234', '2002-03-04 05:06:07+00')")
    bcur.execute("INSERT INTO kv (k, v) SELECT 'big-' || g, NULL FROM generate_series(1, 500) g")
    cur.execute("INSERT INTO kv (k, v) VALUES ('interleaved', 'x')")
    bcur.execute("INSERT INTO kv (k, v) SELECT 'big-' || g, NULL FROM generate_series(501, 600) g")
    big.commit()
    big.close()
    # 9. A streamed transaction that rolls back ('A' for the top xid) ...
    db.autocommit = False
    cur.execute("INSERT INTO kv (k, v) SELECT 'aborted-' || g, NULL FROM generate_series(1, 500) g")
    db.rollback()
    # ... and one whose streamed subtransaction rolls back ('A' with a subxid) before it commits.
    cur.execute("INSERT INTO kv (k, v) SELECT 'kept-' || g, NULL FROM generate_series(1, 300) g")
    cur.execute("SAVEPOINT s1")
    cur.execute("INSERT INTO kv (k, v) SELECT 'undone-' || g, NULL FROM generate_series(1, 500) g")
    cur.execute("ROLLBACK TO SAVEPOINT s1")
    cur.execute("INSERT INTO kv (k, v) VALUES ('after-savepoint', 'y')")
    db.commit()
    db.autocommit = True
    # 10. Binary-mode tuple data ('b' columns; only the rec_v1_binary slot publishes this table).
    cur.execute(
        "INSERT INTO binary_sample VALUES (1, 'bin', 12.50, '\\xdeadbeef', '2024-03-01 10:15:30.5+00'),"
        " (2, NULL, NULL, NULL, NULL)"
    )
    # 11. A table with a type the decoder refuses (money), so the R message can be tested.
    cur.execute("INSERT INTO unsupported_money VALUES (1, 12.34)")
    cur.execute("SELECT pg_logical_emit_message(false, 'recorder', %s::bytea)", (END_CONTENT,))
    db.close()


def read_slot(dsn: str, slot: str, options: dict[str, str]) -> list[dict[str, Any]]:
    conn = psycopg2.connect(f"{dsn} dbname={DATABASE}", connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=False, options=options)
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = cur.read_message()
        if msg is None:
            select.select([cur], [], [], 1.0)
            continue
        payload = bytes(msg.payload)
        records.append(
            {"seq": len(records), "data_start": msg.data_start, "wal_end": msg.wal_end, "hex": payload.hex()}
        )
        if payload[:1] == b"M" and END_PREFIX in payload and payload.endswith(END_CONTENT):
            conn.close()
            return records
    conn.close()
    raise SystemExit(f"slot {slot}: no end marker within 60 s after {len(records)} messages")


def main() -> None:
    dsn = sys.argv[1] if len(sys.argv) > 1 else "host=127.0.0.1 port=56999 user=postgres"
    reset(dsn)
    workload(dsn)
    for slot, (filename, options) in SLOTS.items():
        records = read_slot(dsn, slot, options)
        with (HERE / filename).open("w", encoding="ascii") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
        print(f"{slot}: {len(records)} messages -> {filename}")
    admin = _connect(dsn, "postgres")
    version = admin.cursor()
    version.execute("SHOW server_version")
    print("server_version", version.fetchone()[0])
    admin.close()


if __name__ == "__main__":
    main()
