"""Apply throughput benchmark: the applier writing a Kafka backlog into PostgreSQL and MariaDB, against a
bare batched upsert of the same rows into the same table shape.

For each target (PostgreSQL ERP <- MariaDB shop changes; MariaDB shop <- PostgreSQL ERP changes):

1. a source database and a target database, each with the order-line table, and a config with the source's
   capture, one mapping rule (source table -> target table, key `id`, default policy) and the target's applier;
2. the backlog: N single-row source transactions, written server-side (capture's position established first);
3. the real capture reads the backlog into Kafka until its runner acknowledged the last transaction. Capture is
   not what is measured here: it only fills the topics, so that the applier finds the whole backlog;
4. the ceilings, each in a fresh Python process, the rows read from the source first (not timed), then written
   into a fresh copy of the target table in transactions of `batch_max_events` rows:
   PostgreSQL, psycopg 3 `executemany` of INSERT ... ON CONFLICT DO UPDATE (pipelined, as psycopg does by
   itself), and COPY into a staging table + INSERT ... SELECT ... ON CONFLICT DO UPDATE;
   MariaDB, PyMySQL multi-row INSERT ... ON DUPLICATE KEY UPDATE of 1000 rows per statement;
5. the applier: `build_apply` + `ApplyRunner.run()` in a fresh process, timed from the runner's `ready` event
   until the commit of the batch that holds the last row (that commit carries the runner's progress);
6. the ceilings again, so a machine that got busier or quieter during the case shows; the faster run counts;
7. the floor (`floor_worker`, not the product): the least an applier with the product's guarantees does per
   row, as one straight loop, consuming only and then applying, to show where Python's cost per row starts.

The target is then checked against the source (count, sums, times), its stored progress against the topics'
ends, and no dead letter may exist. CPU is the run's own process (getrusage: Python and librdkafka threads),
plus the target database server and the Kafka broker from /proc over the same window.

The source side (databases, workload procedures, capture start-up) and the measuring helpers are those of
`capture_bench.py`. Run `bench/apply_bench.py --help`; bench/README.md explains the output.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import capture_bench
import orjson
import yaml
from capture_bench import (
    HEARTBEAT_S,
    TABLE,
    MariaDbCase,
    PostgresCase,
    Window,
    bench_stack,
    delete_topics,
    establish_capture,
    git_commit,
    shown_path,
    topic_counts,
    versions,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULT_NAME = re.compile(r"apply-(\d{8}T\d{6}Z)\.json")

TARGETS = ("postgresql", "mariadb")
SOURCE_OF = {"postgresql": "mariadb", "mariadb": "postgresql"}  # a target applies the other side's changes
SYSTEM_OF = {"postgresql": "erp", "mariadb": "shop"}
CASES: dict[str, Callable[..., Any]] = {"postgresql": PostgresCase, "mariadb": MariaDbCase}
# Ceilings per target; the first is the bare batched upsert the applier is compared with.
CEILINGS = {"postgresql": ("executemany", "copy"), "mariadb": ("multirow",)}
CEILING_TEXT = {
    "executemany": "executemany upsert",
    "copy": "COPY + upsert",
    "multirow": "multi-row upsert",
}
MARIADB_STATEMENT_ROWS = 1000  # rows per multi-row INSERT of the MariaDB ceiling
COLUMNS = ("id", "qty", "sku", "price", "created_at")
DEFAULT_BATCH = 5000  # the applier's batch_max_events default (TargetConfig)


# --- the rows -----------------------------------------------------------------------------------------


def mariadb_connect_dsn(dsn: str, *, autocommit: bool = True) -> Any:
    """A PyMySQL connection from a 'mysql://user:password@host:port/database' DSN, in UTC."""
    import pymysql

    parts = urlsplit(dsn)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        autocommit=autocommit,
        charset="utf8mb4",
        init_command="SET SESSION time_zone = '+00:00'",
    )


def pg_connect_dsn(dsn: str, *, autocommit: bool = True) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=autocommit, options="-c TimeZone=UTC")


def read_rows(kind: str, dsn: str, table: str = TABLE) -> list[tuple[Any, ...]]:
    """Every row of `table` in key order, times as naive UTC (what the applier's datetime cast writes)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id"
    if kind == "postgresql":
        with pg_connect_dsn(dsn) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        with contextlib.closing(mariadb_connect_dsn(dsn)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
    return [(*row[:4], _naive_utc(row[4])) for row in rows]


def _naive_utc(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def table_summary(kind: str, dsn: str, table: str = TABLE) -> list[Any]:
    """Count, sums and time range of a table, comparable between PostgreSQL and MariaDB."""
    sql = (
        "SELECT count(*), sum(id), sum(qty), sum(price), sum(char_length(sku)), min(created_at), max(created_at) "
        f"FROM {table}"
    )
    if kind == "postgresql":
        with pg_connect_dsn(dsn) as conn:
            row = conn.execute(sql).fetchone()
    else:
        with contextlib.closing(mariadb_connect_dsn(dsn)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    count, ids, qty, price, sku_chars, first, last = row
    if not count:
        return [0]
    return [int(count), int(ids), int(qty), str(Decimal(price).quantize(Decimal("0.01"))), int(sku_chars),
            _naive_utc(first).isoformat(), _naive_utc(last).isoformat()]


# --- workers: each run in its own process -------------------------------------------------------------


class _HookedEvent(threading.Event):
    """A threading.Event that calls `hook`, in the thread that sets it, just before it is set: the runner's
    `ready` then starts the clock exactly when the runner starts consuming."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self._hook = hook

    def set(self) -> None:
        self._hook()
        super().set()


def threads_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process's threads, by kind: the main thread (the runner's loop), librdkafka's
    threads (named rdk:…: the consumer's fetches, the audit producer) and the others (the writer thread)."""
    found = {"main": 0.0, "writer": 0.0, "librdkafka": 0.0}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # a thread that just ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        kind = "main" if int(task.name) == os.getpid() else "librdkafka" if name.startswith("rdk:") else "writer"
        found[kind] += capture_bench._stat_cpu_ticks(stat) / capture_bench._CLOCK_TICKS
    return found


def apply_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The real applier in this process: `build_apply` then `ApplyRunner.run` in the main thread, stopped by
    its own `on_batch` hook once the batch holding the last row is committed."""
    from replicator.apply.applier import BatchResult
    from replicator.config import load_config
    from replicator.pipeline.apply_runner import build_apply

    runner = build_apply(load_config(Path(spec["config"])), spec["target"])
    rows = spec["rows"]
    window = Window(spec["server_pids"])
    profiler = cProfile.Profile() if spec.get("profile") else None
    # The runner writes its batches in a thread of its own (ApplyRunner._loop); cProfile follows one thread.
    writer_profiler = cProfile.Profile() if spec.get("profile") else None
    if writer_profiler is not None:
        apply_batch = runner._apply

        def profiled_apply(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is threading.main_thread() or "wall_s" in marks:
                return apply_batch(*args, **kwargs)
            writer_profiler.enable()
            try:
                return apply_batch(*args, **kwargs)
            finally:
                writer_profiler.disable()

        runner._apply = profiled_apply  # type: ignore[method-assign]
    marks: dict[str, Any] = {}
    sizes: list[int] = []  # events per batch
    in_batches = 0.0

    def on_ready() -> None:
        marks["ready_s"] = time.perf_counter() - run_started
        marks["threads_cpu_s"] = threads_cpu_seconds()
        window.start()
        if profiler is not None:
            profiler.enable()

    def on_batch(result: BatchResult) -> None:
        nonlocal in_batches
        sizes.append(sum(len(o.unit.events) for o in result.outcomes))
        in_batches += result.elapsed_s
        if len(sizes) == 1:
            marks["first_batch_s"] = window.elapsed()
        if runner.stats.events >= rows and "wall_s" not in marks:
            marks.update(window.stop())  # the loop thread's profiler stops with the run, right after
            marks["threads_cpu_s"] = {kind: cpu - marks["threads_cpu_s"][kind]
                                      for kind, cpu in threads_cpu_seconds().items()}
            runner.stop()

    def on_timeout() -> None:
        marks["error"] = f"timed out after {spec['timeout_s']}s: {runner.stats.events} of {rows} events applied"
        runner.stop()

    collecting: dict[str, float] = {"s": 0.0, "since": 0.0}

    def collection_timed(phase: str, info: dict[str, Any]) -> None:  # the cyclic collector's time in the window
        if phase == "start":
            collecting["since"] = time.perf_counter()
        elif "ready_s" in marks and "wall_s" not in marks:
            collecting["s"] += time.perf_counter() - collecting["since"]

    gc.callbacks.append(collection_timed)
    route = runner._route_messages

    def first_message_noted(messages: list[Any], pending: list[Any]) -> None:
        if messages and "first_message_s" not in marks and "ready_s" in marks:
            marks["first_message_s"] = window.elapsed()
        route(messages, pending)

    runner._route_messages = first_message_noted  # type: ignore[method-assign]
    runner.ready = _HookedEvent(on_ready)
    runner.on_batch = on_batch
    timer = threading.Timer(spec["timeout_s"], on_timeout)
    timer.daemon = True
    run_started = time.perf_counter()
    timer.start()
    try:
        stats = runner.run()
    finally:
        timer.cancel()
        if profiler is not None:
            profiler.disable()
    if profiler is not None and writer_profiler is not None:
        profiled = pstats.Stats(profiler)
        profiled.add(writer_profiler)
        profiled.dump_stats(spec["profile"])
    return {
        **marks,
        "batches": stats.batches,
        "units": stats.units,
        "events": stats.events,
        "dead_letters": stats.dead_letters,
        "in_batches_s": in_batches,
        "gc_s": collecting["s"],
        "max_batch": max(sizes, default=0),
    }


def ceiling_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The bare batched upsert of the source's rows (read first, not timed) into a fresh copy of the target
    table: one transaction per `batch` rows."""
    rows = read_rows(spec["source_kind"], os.environ[spec["source_env"]])
    batch = spec["batch"]
    chunks = [rows[start : start + batch] for start in range(0, len(rows), batch)]
    window = Window(spec["server_pids"])
    dsn = os.environ[spec["target_env"]]
    if spec["target_kind"] == "postgresql":
        conn = pg_connect_dsn(dsn, autocommit=False)
        write = pg_writer(conn, spec["table"], spec["method"])
    else:
        conn = mariadb_connect_dsn(dsn, autocommit=False)
        write = mariadb_writer(conn, spec["table"])
    with contextlib.closing(conn):
        window.start()
        for chunk in chunks:
            write(chunk)
            conn.commit()
        measured = window.stop()
    return {**measured, "rows": len(rows), "batches": len(chunks)}


def pg_writer(conn: Any, table: str, method: str) -> Callable[[list[tuple[Any, ...]]], None]:
    """Writes one chunk of rows into `table` (the caller commits): `executemany` of an INSERT ... ON CONFLICT
    (psycopg pipelines it by itself), or `copy`: COPY into a staging table, then one INSERT ... SELECT ... ON
    CONFLICT from it."""
    cols = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    cur = conn.cursor()
    if method == "executemany":
        upsert = (f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
                  f"ON CONFLICT (id) DO UPDATE SET {updates}")

        def executemany(chunk: list[tuple[Any, ...]]) -> None:
            cur.executemany(upsert, chunk)

        return executemany
    cur.execute(f"CREATE TEMP TABLE staging (LIKE {table}) ON COMMIT DELETE ROWS")
    conn.commit()
    merge = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM staging ON CONFLICT (id) DO UPDATE SET {updates}"

    def copy_and_merge(chunk: list[tuple[Any, ...]]) -> None:
        with cur.copy(f"COPY staging ({cols}) FROM STDIN") as copy:
            for row in chunk:
                copy.write_row(row)
        cur.execute(merge)

    return copy_and_merge


def mariadb_writer(conn: Any, table: str) -> Callable[[list[tuple[Any, ...]]], None]:
    """Writes one chunk of rows into `table` (the caller commits) as multi-row INSERT ... ON DUPLICATE KEY
    UPDATE statements of MARIADB_STATEMENT_ROWS rows: PyMySQL sends an executemany of INSERT ... VALUES as
    one such statement."""
    cols = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = VALUES({c})" for c in COLUMNS[1:])
    upsert = (f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
              f"ON DUPLICATE KEY UPDATE {updates}")
    cur = conn.cursor()

    def multirow(chunk: list[tuple[Any, ...]]) -> None:
        for start in range(0, len(chunk), MARIADB_STATEMENT_ROWS):
            cur.executemany(upsert, chunk[start : start + MARIADB_STATEMENT_ROWS])

    return multirow


# --- the floor: the least any applier with the product's guarantees does per row -----------------------


def floor_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Not the product: the least work an applier with its guarantees does for the same backlog, in a straight
    loop with none of the product's generality, to show where Python's cost per row starts (`--floor`).

    `consume`: read the table topic and the transaction topic (all three messages of each transaction), decode
    each change event and END marker (BEGIN markers skipped by their first bytes, as the applier does), and
    release transactions in END order once their event arrived. `apply`: that, plus per batch of `batch` rows
    one target transaction with the rows (PostgreSQL: COPY into a staging table and one upsert from it, the
    faster ceiling; MariaDB: the multi-row upsert of its ceiling), one compact versions document per row (one
    statement; on MariaDB as hex literals, as the product writes them), the consumer offsets, and one audit
    record per row confirmed by Kafka before the commit. No
    mapping engine, conflict reads, identity map, dead letters or overlap of Python work with the database."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    kind, batch, rows_expected = spec["target_kind"], spec["batch"], spec["rows"]
    event_topic, tx_topic, audit_topic = spec["event_topic"], spec["tx_topic"], spec["audit_topic"]
    consumer = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": f"floor-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": False, "fetch.wait.max.ms": 10,
                         "max.partition.fetch.bytes": 10485760})
    consumer.assign([TopicPartition(event_topic, 0, 0), TopicPartition(tx_topic, 0, 0)])
    audit = Producer({"bootstrap.servers": spec["bootstrap"], "enable.idempotence": True, "linger.ms": 20,
                      "compression.type": "lz4", "delivery.report.only.error": True})
    write_rows: Callable[[list[tuple[Any, ...]]], None] | None = None
    conn: Any = None
    if spec["variant"] == "apply":
        dsn = os.environ[spec["target_env"]]
        if kind == "postgresql":
            conn = pg_connect_dsn(dsn, autocommit=False)
            write_rows = pg_writer(conn, spec["table"], "copy")
        else:
            conn = mariadb_connect_dsn(dsn, autocommit=False)
            write_rows = mariadb_writer(conn, spec["table"])
    cursor = None if conn is None else conn.cursor()
    loads, dumps = orjson.loads, orjson.dumps
    pending: dict[str, dict[str, Any]] = {}  # transaction id -> its change event
    ends: list[str] = []  # transaction ids in END (commit) order
    released = applied = batches = 0
    window = Window(spec["server_pids"])
    window.start()
    while applied < rows_expected:
        for msg in consumer.consume(10000, 0.05):
            if msg.error() is not None:
                raise RuntimeError(f"floor: reading Kafka: {msg.error()}")
            raw, key = msg.value(), msg.key()
            if raw is None or key is None:
                raise RuntimeError(f"floor: a message without a value or key at {msg.topic()} {msg.offset()}")
            if msg.topic() == tx_topic:
                if not raw.startswith(b'{"status":"BEGIN",'):
                    ends.append(loads(raw)["id"])
            else:
                event = loads(raw)
                loads(key)
                pending[event["transaction"]["id"]] = event
        ready: list[dict[str, Any]] = []
        while released < len(ends) and ends[released] in pending and len(ready) < batch:
            ready.append(pending.pop(ends[released]))
            released += 1
        if not ready:
            continue
        if cursor is None:
            applied += len(ready)
            continue
        assert write_rows is not None
        values: list[tuple[Any, ...]] = []
        versions: dict[str, Any] = {}
        for event in ready:
            after, source = event["after"], event["source"]
            stamp = after["created_at"]
            created = (datetime.fromtimestamp(stamp / 1e6, UTC) if stamp.__class__ is int
                       else datetime.fromisoformat(stamp)).replace(tzinfo=None)
            values.append((after["id"], after["qty"], after["sku"], Decimal(after["price"]), created))
            position = f"{source.get('lsn') or source.get('gtid')}:{source.get('row', 0):010d}"
            version = [source["ts_ms"], "shop", 0, position]
            versions[f"[{after['id']}]"] = {"@": version, "id": str(after["id"]), "qty": str(after["qty"]),
                                            "sku": after["sku"], "price": after["price"],
                                            "created_at": created.isoformat()}
            audit.produce(audit_topic, dumps({"target": "floor", "table": spec["table"], "key": {"id": after["id"]}}),
                          dumps({"decision": "applied", "table": spec["table"], "key": {"id": after["id"]},
                                 "transaction": event["transaction"]["id"], "version": version, "values": after}))
        write_rows(values)
        if kind == "postgresql":
            cursor.execute("INSERT INTO floor_row_version SELECT key, value FROM jsonb_each(%s::jsonb) "
                           "ON CONFLICT (row_key) DO UPDATE SET versions = EXCLUDED.versions",
                           (dumps(versions).decode(),))
            progress = ("INSERT INTO floor_progress VALUES (%s, %s) "
                        "ON CONFLICT (topic) DO UPDATE SET next_offset = EXCLUDED.next_offset")
        else:
            # As the product's MariaDB dialect writes them: each document a utf8mb4 hex literal, so PyMySQL need
            # not escape it (the keys here are digits and brackets).
            cursor.execute("INSERT INTO floor_row_version VALUES "
                            + ", ".join(f"('{key}', _utf8mb4 X'{dumps(doc).hex()}')" for key, doc in versions.items())
                            + " ON DUPLICATE KEY UPDATE versions = VALUES(versions)")
            progress = ("INSERT INTO floor_progress VALUES (%s, %s) "
                        "ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset)")
        cursor.executemany(progress, [(event_topic, applied + len(ready)), (tx_topic, 2 * (applied + len(ready)))])
        if audit.flush(30):
            raise RuntimeError("floor: audit records unconfirmed after 30 s")
        conn.commit()
        applied += len(ready)
        batches += 1
    measured = window.stop()
    consumer.close()
    if conn is not None:
        conn.close()
    return {**measured, "rows": applied, "batches": batches or 1}


def create_floor_tables(kind: str, dsn: str) -> None:
    """The floor's versions and progress tables, beside the target table."""
    if kind == "postgresql":
        with pg_connect_dsn(dsn) as conn:
            conn.execute("CREATE TABLE floor_row_version (row_key text PRIMARY KEY, versions jsonb NOT NULL)")
            conn.execute("CREATE TABLE floor_progress (topic text PRIMARY KEY, next_offset bigint NOT NULL)")
    else:
        with contextlib.closing(mariadb_connect_dsn(dsn)) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE floor_row_version (row_key varchar(190) PRIMARY KEY, versions json NOT NULL)")
            cur.execute("CREATE TABLE floor_progress (topic varchar(190) PRIMARY KEY, next_offset bigint NOT NULL)")


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "apply": apply_worker,
    "ceiling": ceiling_worker,
    "floor": floor_worker,
}


def run_worker(role: str, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One of this script's workers in a fresh interpreter (capture_bench's plumbing)."""
    return capture_bench.run_worker(role, spec, workdir, script=Path(__file__))


# --- one case -----------------------------------------------------------------------------------------


def mapping_document(target_kind: str, source: Any, target: Any, source_name: str) -> dict[str, Any]:
    """The shop and erp systems, and one rule copying the order-line table from the source to the target."""
    source_kind = SOURCE_OF[target_kind]
    shop_database = (source if source_kind == "mariadb" else target).database

    def source_name_of(kind: str) -> str:  # the target side is not captured here: its name is never used
        return source_name if kind == source_kind else f"{source_name}-unused"

    systems = {
        "shop": {"kind": "mariadb", "priority": 2, "namespace": shop_database,
                 "source_name": source_name_of("mariadb")},
        "erp": {"kind": "postgresql", "priority": 1, "namespace": "public",
                "source_name": source_name_of("postgresql")},
    }
    # MariaDB DATETIME(6) travels as epoch microseconds, PostgreSQL timestamptz as ISO text: both cast.
    created_at = {"from": "created_at", "cast": "datetime", **({"unit": "us"} if source_kind == "mariadb" else {})}
    rule = {
        "name": "order_line",
        "source": {"system": SYSTEM_OF[source_kind], "table": TABLE, "key": ["id"]},
        "target": {"system": SYSTEM_OF[target_kind], "table": TABLE},
        "key": {"id": "id"},
        "on_delete": "hard",
        "fields": {
            "qty": "qty",
            "sku": "sku",
            "price": {"from": "price", "cast": "decimal", "scale": 2},
            "created_at": created_at,
        },
    }
    return {"systems": systems, "rules": [rule]}


def drain_capture(config_path: Path, source: str, attr: str, final: Any, timeout_s: float) -> dict[str, Any]:
    """Run the capture until its runner acknowledged the transaction `final` (Kafka confirmed everything
    before it), then stop it."""
    from replicator.config import load_config
    from replicator.pipeline.capture_runner import build_capture

    runner = build_capture(load_config(config_path), source)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)

    started = time.perf_counter()
    thread = threading.Thread(target=run, name=f"capture-{source}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while getattr(runner.stats.acknowledged, attr, None) != final and thread.is_alive():
        if time.monotonic() > deadline:
            runner.stop()
            thread.join(60)
            raise RuntimeError(f"capture timed out after {timeout_s}s: {runner.stats.events} events")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    runner.stop()
    thread.join(60)
    if failure:
        raise failure[0]
    return {"capture_s": elapsed, "captured_events": runner.stats.events}


def create_table_copy(kind: str, dsn: str, name: str) -> None:
    """A fresh, empty copy of the target table (same columns, types and primary key)."""
    if kind == "postgresql":
        with pg_connect_dsn(dsn) as conn:
            conn.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING ALL)")
    else:
        with contextlib.closing(mariadb_connect_dsn(dsn)) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {name} LIKE {TABLE}")


def applied_state(kind: str, dsn: str, consumer: str) -> tuple[dict[str, int], int]:
    """The applier's stored progress (topic -> next offset) and its dead letters, read from the target."""
    progress_sql = "SELECT topic, next_offset FROM replicator_progress WHERE consumer = %s"
    letters_sql = "SELECT count(*) FROM replicator_dead_letter"
    if kind == "postgresql":
        with pg_connect_dsn(dsn) as conn:
            progress = conn.execute(progress_sql, (consumer,)).fetchall()
            (letters,) = conn.execute(letters_sql).fetchone()
    else:
        with contextlib.closing(mariadb_connect_dsn(dsn)) as conn, conn.cursor() as cur:
            cur.execute(progress_sql, (consumer,))
            progress = cur.fetchall()
            cur.execute(letters_sql)
            (letters,) = cur.fetchone()
    return {str(topic): int(offset) for topic, offset in progress}, int(letters)


def drop_origin(admin_dsn: str, origin: str) -> None:
    """Replication origins are cluster-wide: the PostgreSQL applier's outlives its database."""
    with pg_connect_dsn(admin_dsn) as conn:
        conn.execute(
            "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = %s", (origin,)
        )


def run_case(target_kind: str, rows: int, ctx: dict[str, Any], profile_path: Path | None) -> dict[str, Any]:
    from replicator.config import load_config
    from replicator.transport.topics import offsets_topic, table_topic, transaction_topic

    settings, workdir, batch, timeout_s = ctx["settings"], ctx["workdir"], ctx["batch"], ctx["timeout_s"]
    source_kind = SOURCE_OF[target_kind]
    tag = f"ap_{target_kind[:2]}_{uuid.uuid4().hex[:6]}"
    source = CASES[source_kind](settings, f"{tag}_src", "single", rows, 0)  # no capture ceilings here
    target = CASES[target_kind](settings, f"{tag}_dst", "single", rows, 0)
    name = f"bench-{tag.replace('_', '-')}"
    target_name = f"{name}-writer"
    source_env, target_env = f"BENCH_DSN_{tag.upper()}_SRC", f"BENCH_DSN_{tag.upper()}_DST"
    # Read by the config (here and in the workers), never written to disk.
    os.environ[source_env], os.environ[target_env] = source.dsn, target.dsn
    target_server = "postgres" if target_kind == "postgresql" else "mariadb"
    server_pids = {"db": ctx["server_pids"][target_server], "kafka": ctx["server_pids"]["kafka"]}
    topics = [
        table_topic(name, *source.table.split(".")),
        transaction_topic(name),
        offsets_topic(name),
    ]
    result: dict[str, Any] = {
        "target": target_kind,
        "source": source_kind,
        "rows": rows,
        "batch_max_events": batch,
        "loadavg_before": os.getloadavg()[0],
    }
    origin: str | None = None  # the PostgreSQL applier's replication origin, once known
    print(f"\n== {target_kind} target <- {source_kind} changes, {rows:,} single-row transactions", flush=True)
    source.create()
    target.create()
    try:
        (workdir / f"{name}-mappings.yaml").write_text(
            yaml.safe_dump(mapping_document(target_kind, source, target, name))
        )
        config_path = workdir / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump({
            "kafka": {"bootstrap_servers": settings.kafka_bootstrap},
            "mappings": f"{name}-mappings.yaml",
            "sources": [{
                "name": name,
                "connection": {"dsn": {"env": source_env}},
                "snapshot": "never",
                "heartbeat_interval_s": HEARTBEAT_S,
                **source.source_config(),
            }],
            "targets": [{
                "name": target_name,
                "kind": target_kind,
                "system": SYSTEM_OF[target_kind],
                "apply_from": [SYSTEM_OF[source_kind]],
                "connection": {"dsn": {"env": target_env}},
                "batch_max_events": batch,
            }],
        }))
        target_config = load_config(config_path).target(target_name)
        result["batch_max_ms"] = target_config.batch_max_ms
        if target_kind == "postgresql":
            origin = target_config.origin_name
        establish_capture(config_path, name)

        started = time.perf_counter()
        txns = source.write()
        result["write_s"] = time.perf_counter() - started
        if txns != rows:
            raise RuntimeError(f"the workload made {txns} transactions, expected {rows}")
        print(f"   backlog written: {rows:,} rows in {txns:,} transactions, {result['write_s']:.1f}s", flush=True)
        result.update(drain_capture(config_path, name, source.final_attr, source.final, timeout_s))
        in_kafka = topic_counts(settings.kafka_bootstrap, topics[:2])
        if in_kafka != {topics[0]: rows, topics[1]: 2 * rows}:
            raise RuntimeError(f"Kafka holds {in_kafka}, expected {rows} change events and {2 * rows} markers")
        print(f"   captured into Kafka in {result['capture_s']:.1f}s (not measured)", flush=True)
        expected = table_summary(source_kind, source.dsn)

        common = {"server_pids": server_pids, "timeout_s": timeout_s}

        def ceiling(method: str, index: int) -> dict[str, Any]:
            table = f"ceiling_{method}_{index}"
            create_table_copy(target_kind, target.dsn, table)
            run = run_worker("ceiling", {
                **common, "method": method, "table": table, "batch": batch, "source_kind": source_kind,
                "target_kind": target_kind, "source_env": source_env, "target_env": target_env,
            }, workdir)
            _check_table(f"ceiling {CEILING_TEXT[method]} {index}", table_summary(target_kind, target.dsn, table),
                         expected)
            print(f"   ceiling {index} {CEILING_TEXT[method]:<18} {rows / run['wall_s']:>9,.0f} rows/s "
                  f"in {run['wall_s']:.2f}s", flush=True)
            return run

        ceiling_runs: dict[str, list[dict[str, Any]]] = {m: [ceiling(m, 1)] for m in CEILINGS[target_kind]}
        apply = run_worker("apply", {
            **common, "config": str(config_path), "target": target_name, "rows": rows,
            "profile": str(profile_path) if profile_path else None,
        }, workdir)
        if apply["events"] != rows or apply["units"] != rows:
            raise RuntimeError(f"the applier applied {apply['events']} events in {apply['units']} units, "
                               f"expected {rows} in {rows}")
        _check_table("applier", table_summary(target_kind, target.dsn), expected)
        progress, letters = applied_state(target_kind, target.dsn, target_name)
        if letters or progress != {topics[0]: rows, topics[1]: 2 * rows}:
            raise RuntimeError(f"the target holds progress {progress} and {letters} dead letters; "
                               f"expected offsets {rows} / {2 * rows} and none")
        print(f"   applier:   {rows / apply['wall_s']:>9,.0f} rows/s in {apply['wall_s']:.2f}s, "
              f"{apply['batches']} batches", flush=True)
        for method, runs in ceiling_runs.items():
            runs.append(ceiling(method, 2))
        floors: dict[str, dict[str, Any]] = {}
        if ctx["floor"]:
            from replicator.transport.client import KafkaClient
            from replicator.transport.kafka import TopicSpec, ensure_topics

            audit_topic = f"{name}.floor-audit"
            topics.append(audit_topic)
            ensure_topics(KafkaClient(settings.kafka_bootstrap), [TopicSpec(audit_topic)])
            create_floor_tables(target_kind, target.dsn)
            for variant in ("consume", "apply"):
                table = f"floor_{variant}"
                create_table_copy(target_kind, target.dsn, table)
                floors[variant] = run_worker("floor", {
                    **common, "variant": variant, "table": table, "batch": batch, "rows": rows,
                    "target_kind": target_kind, "target_env": target_env, "bootstrap": settings.kafka_bootstrap,
                    "event_topic": topics[0], "tx_topic": topics[1], "audit_topic": audit_topic,
                }, workdir)
                if variant == "apply":
                    _check_table("floor", table_summary(target_kind, target.dsn, table), expected)
                print(f"   floor {variant:<8} {rows / floors[variant]['wall_s']:>9,.0f} rows/s "
                      f"in {floors[variant]['wall_s']:.2f}s", flush=True)

        best = {m: max(runs, key=lambda run: rows / run["wall_s"]) for m, runs in ceiling_runs.items()}
        apply_rate = rows / apply["wall_s"]
        main_method = CEILINGS[target_kind][0]
        result.update(
            transactions=txns,
            kafka_messages=3 * rows,  # one change event, a BEGIN and an END marker per transaction
            apply=_figures(apply, rows),
            ceiling_method=main_method,
            ceilings={
                m: {**_figures(best[m], rows), "runs": [_figures(run, rows) for run in runs],
                    "ratio": apply_rate / (rows / best[m]["wall_s"])}
                for m, runs in ceiling_runs.items()
            },
            ratio=apply_rate / (rows / best[main_method]["wall_s"]),
            floors={variant: {**_figures(run, rows), "ratio": best[main_method]["wall_s"] / run["wall_s"]}
                    for variant, run in floors.items()},
            server_version=target.server_version(),
            loadavg_after=os.getloadavg()[0],
        )
        return result
    finally:
        with contextlib.suppress(Exception):
            source.cleanup()
        with contextlib.suppress(Exception):
            target.cleanup()
        if origin is not None:
            with contextlib.suppress(Exception):
                drop_origin(settings.erp_admin_dsn, origin)
        with contextlib.suppress(Exception):
            delete_topics(settings.kafka_bootstrap, topics)
        os.environ.pop(source_env, None)
        os.environ.pop(target_env, None)


def _check_table(what: str, found: list[Any], expected: list[Any]) -> None:
    if found != expected:
        raise RuntimeError(f"{what}: the target table holds {found}, the source {expected} "
                           "(count, sum id, sum qty, sum price, sku chars, first and last time)")


def _figures(run: dict[str, Any], rows: int) -> dict[str, Any]:
    per_1k = 1000 / rows
    wall = run["wall_s"]
    figures = {
        "rows_per_s": rows / wall,
        "wall_s": wall,
        "cpu_s": run["cpu_s"],
        "cpu_s_per_1k": run["cpu_s"] * per_1k,
        "main_thread_busy": run["main_thread_cpu_s"] / wall,
        "db_cpu_s_per_1k": run["server_cpu_s"]["db"] * per_1k,
        "kafka_cpu_s_per_1k": run["server_cpu_s"]["kafka"] * per_1k,
        "max_rss_mb": run["max_rss_mb"],
        "batches": run["batches"],
        "avg_batch": rows / run["batches"] if run["batches"] else 0.0,
    }
    if "ready_s" in run:  # the applier: start-up, first commit, time inside apply_batch, largest batch
        figures.update(
            ready_s=run["ready_s"],
            first_batch_s=run["first_batch_s"],
            first_message_s=run.get("first_message_s"),
            gc_s=run.get("gc_s"),
            in_batches_s=run["in_batches_s"],
            outside_batches_s=wall - run["in_batches_s"],
            max_batch=run["max_batch"],
            threads_cpu_s_per_1k={kind: cpu * per_1k for kind, cpu in run.get("threads_cpu_s", {}).items()},
        )
    return figures


# --- reporting ----------------------------------------------------------------------------------------


def previous_results(rows: int, batch: int, exclude: Path) -> tuple[list[Path], dict[str, Any]]:
    """For each target, its result in the most recent earlier file of the same size and batch size; and the
    files those came from."""
    found: dict[str, Any] = {}
    used: list[Path] = []
    results_dir = exclude.parent  # the folder the new results go to
    if not results_dir.exists():
        return used, found
    for path in sorted((p for p in results_dir.iterdir() if RESULT_NAME.fullmatch(p.name)), reverse=True):
        if path == exclude:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        meta = data.get("meta", {})
        if meta.get("rows") != rows or meta.get("batch_max_events") != batch:
            continue
        for result in data.get("results", []):
            if "apply" in result and result["target"] not in found:
                found[result["target"]] = result
                if path not in used:
                    used.append(path)
    return used, found


def _delta(now: float, before: float | None) -> str:
    if not before:
        return "-"
    return f"{(now - before) / before * 100:+.1f}%"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain-text table: the first two columns left-aligned, figures right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def report(results: list[dict[str, Any]], previous: dict[str, Any]) -> str:
    done = [r for r in results if "apply" in r]
    out = []
    if done:
        apply_rows, detail_rows, ceiling_rows = [], [], []
        for r in done:
            app = r["apply"]
            main = r["ceilings"][r["ceiling_method"]]
            prev = previous.get(r["target"])
            case = [r["target"], r["source"]]
            apply_rows.append(
                [
                    *case,
                    f"{r['rows']:,}",
                    f"{app['rows_per_s']:,.0f}",
                    f"{main['rows_per_s']:,.0f}",
                    f"{r['ratio'] * 100:.1f}%",
                    f"{app['wall_s']:.2f}",
                    f"{app['cpu_s_per_1k']:.3f}",
                    f"{app['main_thread_busy'] * 100:.0f}%",
                    f"{app['db_cpu_s_per_1k']:.3f}",
                    f"{app['kafka_cpu_s_per_1k']:.3f}",
                    f"{app['batches']:,}",
                    f"{app['avg_batch']:,.0f}",
                    _delta(app["rows_per_s"], prev and prev["apply"]["rows_per_s"]),
                    _delta(app["cpu_s_per_1k"], prev and prev["apply"]["cpu_s_per_1k"]),
                ]
            )
            detail_rows.append(
                [
                    *case,
                    f"{r['transactions']:,}",
                    f"{r['kafka_messages']:,}",
                    f"{app['ready_s']:.2f}",
                    "-" if app.get("first_message_s") is None else f"{app['first_message_s']:.2f}",
                    f"{app['first_batch_s']:.2f}",
                    f"{app['in_batches_s']:.2f}",
                    f"{app['outside_batches_s']:.2f}",
                    f"{app['max_batch']:,}",
                    "-" if app.get("gc_s") is None else f"{app['gc_s']:.2f}",
                    " / ".join(f"{app.get('threads_cpu_s_per_1k', {}).get(kind, 0.0):.3f}"
                               for kind in ("main", "writer", "librdkafka")),
                    f"{app['max_rss_mb']:.0f}",
                    f"{r['write_s']:.1f}",
                    f"{r['capture_s']:.1f}",
                    f"{r['loadavg_before']:.2f}",
                ]
            )
            for method, ceil in r["ceilings"].items():
                prev_ceil = prev and prev["ceilings"].get(method)
                ceiling_rows.append(
                    [
                        r["target"],
                        CEILING_TEXT[method],
                        " / ".join(f"{run['rows_per_s']:,.0f}" for run in ceil["runs"]),
                        " / ".join(f"{run['wall_s']:.2f}" for run in ceil["runs"]),
                        f"{ceil['cpu_s_per_1k']:.3f}",
                        f"{ceil['main_thread_busy'] * 100:.0f}%",
                        f"{ceil['db_cpu_s_per_1k']:.3f}",
                        f"{ceil['batches']:,}",
                        f"{ceil['ratio'] * 100:.1f}%",
                        _delta(ceil["rows_per_s"], prev_ceil and prev_ceil["rows_per_s"]),
                    ]
                )
        out += [
            "apply from Kafka (runner ready -> every row in the target, committed with the runner's progress):",
            _table(
                ["target", "from", "rows", "apply rows/s", "ceiling rows/s", "apply/ceil", "wall s",
                 "cpu s/1k rows", "main thread", "db cpu s/1k", "kafka cpu s/1k", "batches", "avg batch",
                 "Δ rows/s", "Δ cpu/1k"],
                apply_rows,
            ),
            "",
            "apply details (seconds from ready; in batches = inside Applier.apply_batch, outside = the rest of "
            "the loop):",
            _table(
                ["target", "from", "txns", "kafka msgs", "ready s", "first msg s", "first batch s", "in batches s",
                 "outside s",
                 "max batch", "gc s", "cpu s/1k: main / writer / librdkafka", "rss MB", "write s", "capture s", "load"],
                detail_rows,
            ),
            "",
            "bare ceilings (before / after the applier run; the faster one is compared with):",
            _table(
                ["target", "ceiling", "rows/s", "wall s", "cpu s/1k rows", "main thread", "db cpu s/1k", "txns",
                 "apply/this", "Δ rows/s (faster)"],
                ceiling_rows,
            ),
        ]
    floor_rows = [
        [r["target"], variant, f"{f['rows_per_s']:,.0f}", f"{f['ratio'] * 100:.1f}%", f"{f['cpu_s_per_1k']:.3f}",
         f"{f['main_thread_busy'] * 100:.0f}%", f"{f['db_cpu_s_per_1k']:.3f}", f"{f['kafka_cpu_s_per_1k']:.3f}"]
        for r in done for variant, f in r.get("floors", {}).items()
    ]
    if floor_rows:
        out += ["", "floor (not the product: the least an applier with its guarantees does, in one straight loop):",
                _table(["target", "variant", "rows/s", "of ceiling", "cpu s/1k rows", "main thread", "db cpu s/1k",
                        "kafka cpu s/1k"], floor_rows)]
    for r in results:
        if "error" in r:
            out.append(f"FAILED {r['target']} <- {r['source']}: {r['error']}")
    return "\n".join(out)


# Where the applier's time goes, by stage: (label, file suffix, function name) of the function whose
# cumulative time is the stage's. Indented stages are part of the one above them; "~" is a C function.
PROFILE_STAGES: tuple[tuple[str, str, str], ...] = (
    ("runner loop (all of the window)", "pipeline/apply_runner.py", "_loop"),
    ("  Kafka consume (librdkafka, C)", "~", "<method 'consume' of 'cimpl.Consumer' objects>"),
    ("  route messages", "pipeline/apply_runner.py", "_route_messages"),
    ("    JSON decode (orjson.loads)", "~", "<orjson.loads>"),
    ("    assembler add_event", "apply/reassembly.py", "add_event"),
    ("    assembler add_marker", "apply/reassembly.py", "add_marker"),
    ("  assembler ready", "apply/reassembly.py", "ready"),
    ("  map the next batch (Applier.map_unit)", "apply/applier.py", "map_unit"),
    ("    engine ops_for", "mapping/engine.py", "ops_for"),
    ("  wait for the writer thread", "~", "<method 'acquire' of '_thread.lock' objects>"),
    ("  audit records to Kafka (after each commit)", "pipeline/apply_runner.py", "_publish_outcomes"),
    ("writer thread: ApplyRunner._apply", "pipeline/apply_runner.py", "_apply"),
    ("    Applier.apply_batch", "apply/applier.py", "apply_batch"),
    ("      begin", "/dialect/", "begin"),
    ("      unit_keys (hold check)", "apply/applier.py", "unit_keys"),
    ("      Applier._apply_all", "apply/applier.py", "_apply_all"),
    ("        resolve lookups", "apply/applier.py", "_resolve_lookups"),
    ("        load rows (RowStore.load)", "apply/rows.py", "load"),
    ("          SELECT target rows", "dialect/base.py", "fetch_rows"),
    ("          SELECT row versions", "/dialect/", "row_versions"),
    ("        Applier._apply_op", "apply/applier.py", "_apply_op"),
    ("          field states", "apply/applier.py", "_field_states"),
    ("          conflict resolver", "conflict/resolver.py", "resolve"),
    ("          version_json", "apply/versions.py", "version_json"),
    ("          compact_document", "apply/versions.py", "compact_document"),
    ("          RowStore.insert", "apply/rows.py", "insert"),
    ("      RowStore.flush", "apply/rows.py", "flush"),
    ("        insert_many (multi-row INSERTs)", "/dialect/", "insert_many"),
    ("        store_row_versions (multi-row upserts)", "/dialect/", "store_row_versions"),
    ("      progress_for (resume offsets)", "pipeline/apply_runner.py", "progress_for"),
    ("      save_progress", "/dialect/", "save_progress"),
    ("      commit", "/dialect/", "commit"),
    ("(any caller) dialect.execute: one statement", "/dialect/", "execute"),
    ("(any caller) dialect.execute_many", "/dialect/", "execute_many"),
    ("(any caller) dialect.execute_generated: long IN/VALUES lists", "/dialect/", "execute_generated"),
)


def profile_stages(stats: pstats.Stats, events: int) -> str:
    """The stages' cumulative times, per event and as a share of the loop."""
    entries = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, tuple[int, float]] = {}
    for label, where, function in PROFILE_STAGES:
        calls, cumulative = 0, 0.0
        for (filename, _, name), (_, ncalls, _, ct, _) in entries.items():
            matches = filename == "~" if where == "~" else where in filename.replace(os.sep, "/")
            if matches and name == function:
                calls += ncalls
                cumulative += ct
        totals[label] = (calls, cumulative)
    loop = totals[PROFILE_STAGES[0][0]][1] or 1.0
    rows = [
        [label, f"{calls:,}", f"{ct:.2f}", f"{ct / events * 1e6:.1f}", f"{ct / loop * 100:.1f}%"]
        for label, (calls, ct) in totals.items()
    ]
    return _table(["stage (cumulative, nested)", "calls", "s", "µs/event", "of loop"], rows)


def profile_summary(path: Path, events: int, top: int) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(str(path), stream=stream)
    total = stats.total_tt  # type: ignore[attr-defined]
    stages = profile_stages(stats, events)
    stats.sort_stats("tottime").print_stats(top)
    return (
        f"profile {path.name}: {total:.2f}s profiled, {total / events * 1e6:.1f} µs/event under cProfile\n"
        + stages + "\n" + stream.getvalue()
    )


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Applier throughput from a Kafka backlog vs a bare batched upsert, into PostgreSQL and MariaDB.",
        epilog="Reuses the stack in $REPLICATOR_DEVSTACK_DIR when one runs there; else starts its own.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=200_000, help="single-row source transactions (default 200000)")
    size.add_argument("--quick", action="store_true", help="20000 transactions")
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=0.0,
        help="exit 1 if apply/ceiling falls below this for any target, e.g. 0.5 (default 0: report only)",
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of: %(default)s")
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help="the applier's batch_max_events and the ceilings' rows per transaction (default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per run (default 900)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the applier under cProfile (slower), print where the time goes; results are not saved",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed per profile (default 25)")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor runs (the least work an applier with the product's guarantees does, in a straight loop)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where result files (and profiles) are written and earlier ones looked for"
                        " (default: bench/results)")
    parser.add_argument("--worker", nargs=2, metavar=("ROLE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 20_000
    args.targets = [t for t in args.targets.split(",") if t]
    bad = [t for t in args.targets if t not in TARGETS]
    if bad:
        parser.error(f"unknown target: {', '.join(bad)}")
    if args.rows < 1 or args.batch < 1:
        parser.error("--rows and --batch must be positive")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        return capture_bench.worker_main(args.worker[0], Path(args.worker[1]), WORKERS)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    meta: dict[str, Any] = {
        "timestamp": stamp,
        "rows": args.rows,
        "batch_max_events": args.batch,
        "git_commit": git_commit(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions(),
        "loadavg_start": os.getloadavg(),
        "heartbeat_interval_s": HEARTBEAT_S,
    }
    profiles: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="apply-bench-") as tmp, bench_stack(Path(tmp)) as stack:
        settings, server_pids, stack_text = stack
        meta["stack"] = stack_text
        ctx = {"settings": settings, "server_pids": server_pids, "workdir": Path(tmp), "timeout_s": args.timeout,
               "batch": args.batch, "floor": not args.no_floor}
        for target_kind in args.targets:
            profile_path = None
            if args.profile:
                args.results_dir.mkdir(parents=True, exist_ok=True)
                profile_path = args.results_dir / f"profile-{stamp}-apply-{target_kind}.pstats"
            try:
                results.append(run_case(target_kind, args.rows, ctx, profile_path))
                if profile_path is not None:
                    profiles.append(profile_path)
            except Exception as exc:  # noqa: BLE001 - reported, and the other target still runs
                results.append({"target": target_kind, "source": SOURCE_OF[target_kind], "rows": args.rows,
                                "error": str(exc)})
                print(f"   FAILED: {exc}", flush=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["total_s"] = time.monotonic() - started

    print()
    print(f"apply benchmark {stamp}: {args.rows:,} single-row transactions per target, batches of up to "
          f"{args.batch:,} events, {meta['cpus']} CPUs, load {meta['loadavg_start'][0]:.2f} -> "
          f"{meta['loadavg_end'][0]:.2f}, stack {meta['stack']}, {meta['total_s']:.0f}s in all")
    if args.profile:
        print("(profiled run: applier figures include cProfile's overhead and are not saved)")
        print(report(results, {}))
        for path in profiles:
            print()
            print(profile_summary(path, args.rows, args.profile_top))
    else:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out_path = args.results_dir / f"apply-{stamp}.json"
        prev_paths, previous = previous_results(args.rows, args.batch, exclude=out_path)
        compared = ", ".join(shown_path(p) for p in prev_paths)
        print(f"compared with: {compared or 'nothing (no earlier run of this size)'}")
        print(report(results, previous))
        out_path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"\nresults: {shown_path(out_path)}")

    failed = any("error" in r for r in results)
    below = [r for r in results if "ratio" in r and r["ratio"] < args.min_ratio]
    for r in below:
        print(f"BELOW --min-ratio {args.min_ratio}: {r['target']} <- {r['source']} at {r['ratio']:.3f}")
    if failed:
        return 2
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
