"""PostgreSQL as a target (the ERP side)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import psycopg
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from replicator.apply.dialect.base import Key, TargetDialect, json_value
from replicator.apply.versions import expand
from replicator.config import ResolvedConnection
from replicator.errors import ConfigError, RetriableError
from replicator.network import libpq_options

REPLICATOR_TABLES = [
    """CREATE TABLE IF NOT EXISTS replicator_progress (
        consumer text NOT NULL, topic text NOT NULL, kpartition int NOT NULL, next_offset bigint NOT NULL,
        PRIMARY KEY (consumer, topic, kpartition))""",
    """CREATE TABLE IF NOT EXISTS replicator_position (
        consumer text NOT NULL, source text NOT NULL, domain bigint NOT NULL, sequence numeric(20) NOT NULL,
        PRIMARY KEY (consumer, source, domain))""",
    """CREATE TABLE IF NOT EXISTS replicator_identity (
        entity text NOT NULL, source_system text NOT NULL, source_key text NOT NULL, target_key text NOT NULL,
        PRIMARY KEY (entity, source_system, source_key))""",
    "CREATE INDEX IF NOT EXISTS replicator_identity_target ON replicator_identity (entity, target_key)",
    """CREATE TABLE IF NOT EXISTS replicator_row_version (
        target_table text NOT NULL, row_key text NOT NULL, versions jsonb NOT NULL,
        PRIMARY KEY (target_table, row_key))""",
    """CREATE TABLE IF NOT EXISTS replicator_dead_letter (
        id bigserial PRIMARY KEY, consumer text NOT NULL, source text NOT NULL, transaction_id text,
        status text NOT NULL, error text NOT NULL, keys jsonb NOT NULL, envelopes jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), resolved_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS replicator_dead_letter_open ON replicator_dead_letter (consumer, status)",
]


class PostgresDialect(TargetDialect):
    name = "postgresql"
    sa_dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]

    def __init__(
        self, connection: ResolvedConnection, writer_tag: str, *, session_timeout_s: int | None = None
    ) -> None:
        super().__init__(connection, writer_tag, session_timeout_s=session_timeout_s)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._tagged = True

    def connect(self, *, tag_writes: bool = True) -> None:
        info = self.connection
        options = "-c TimeZone=UTC -c DateStyle=ISO"
        if tag_writes and self.session_timeout_s is not None:
            # Silent outside a transaction or inside one: either way the server ends the session, which rolls
            # back what it had not committed and releases its writer lock and replication origin.
            limit = f"{self.session_timeout_s}s"
            options += f" -c idle_session_timeout={limit} -c idle_in_transaction_session_timeout={limit}"
        try:
            self._conn = psycopg.connect(
                host=info.host, port=info.port, user=info.user, dbname=info.database,
                password=info.password.get_secret_value(), autocommit=True, options=options,
                **libpq_options(info.network_timeout_s),
            )
        except psycopg.OperationalError as exc:
            raise RetriableError(f"target {info.describe()}: cannot connect: {exc}") from None
        self._tagged = tag_writes
        if tag_writes:
            self._lock_writer_tag()
            self._setup_origin()

    def _lock_writer_tag(self) -> None:
        """A session-level advisory lock on the writer tag (see `_writer_busy`)."""
        conn = self._require()
        row = conn.execute("SELECT pg_try_advisory_lock(hashtext('replicator writer'), hashtext(%s))",
                           (self.writer_tag,)).fetchone()
        if not (row and row[0]):
            self.close()
            raise self._writer_busy()

    def _setup_origin(self) -> None:
        """Tag every transaction of this session with a replication origin, so that capture of this database
        recognises (and does not send back) what the replicator wrote. One origin per writer session."""
        conn = self._require()
        try:
            exists = conn.execute(
                "SELECT 1 FROM pg_replication_origin WHERE roname = %s", (self.writer_tag,)
            ).fetchone()
            if not exists:
                conn.execute("SELECT pg_replication_origin_create(%s)", (self.writer_tag,))
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", (self.writer_tag,))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"target {self.connection.describe()}: the writer may not use replication origins ({exc}). "
                "As a superuser: SELECT pg_replication_origin_create('<tag>'); and GRANT EXECUTE ON FUNCTION "
                "pg_replication_origin_session_setup(text), pg_replication_origin_session_reset(), "
                "pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO <writer>"
            ) from None
        except psycopg.errors.ObjectInUse as exc:
            # Set up by a session that does not hold the writer lock (not an applier of this version).
            self.close()
            raise RetriableError(
                f"target {self.connection.describe()}: replication origin {self.writer_tag} is in use by another "
                f"session ({exc}); waiting until it is gone"
            ) from None

    def _require(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None:
            raise RetriableError("target connection is not open")
        return self._conn

    # track_commit_timestamp=on (required, as for capture) dates the transaction that last wrote a row. Only
    # a local transaction's time is wanted: one under a replication origin (the replicator's writers) says
    # nothing about when the row's local edits were made (Applier._adopt_local_edits pinned them first).
    row_written_ms_sql = (
        "CASE WHEN (pg_xact_commit_timestamp_origin(xmin)).roident = 0 THEN "
        "(extract(epoch FROM (pg_xact_commit_timestamp_origin(xmin)).timestamp) * 1000)::bigint END"
    )

    def identities(self, entity: str, system: str, source_keys: Iterable[str]) -> dict[str, str]:
        # As row_versions: with an IN list of 500 parameters, looking up 500 keys took 0.09 s once the table held
        # 10,500 rows, and more as it grew (measured); with the array, the primary key index whatever the count.
        keys = list(dict.fromkeys(source_keys))
        if not keys:
            return {}
        rows = self.execute(
            "SELECT source_key, target_key FROM replicator_identity "
            "WHERE entity = %s AND source_system = %s AND source_key = ANY(%s)",
            (entity, system, keys),
        )
        return {str(source_key): str(target_key) for source_key, target_key in rows}

    def row_versions(self, table: str, row_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        # One array parameter instead of an IN list: one plan, and the primary key index, whatever the count.
        keys = list(dict.fromkeys(row_keys))
        if not keys:
            return {}
        rows = self.execute(
            "SELECT row_key, versions FROM replicator_row_version WHERE target_table = %s AND row_key = ANY(%s)",
            (table, keys),
        )
        return {row_key: expand(json_value(versions)) for row_key, versions in rows}

    def reserve_keys(self, table: str, key_columns: Sequence[str], count: int) -> list[Key] | None:
        """From the sequence of a one-column key (serial, or an identity column BY DEFAULT), which hands out each
        value once whatever other sessions insert; values of a transaction that rolls back are not reused (gaps,
        as with any insert). Not for GENERATED ALWAYS identity columns, which refuse a given value."""
        if len(key_columns) != 1:
            return None
        sequence = self._key_sequence(table, key_columns[0])
        if sequence is None:
            return None
        rows = self.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, count))
        return [(int(row[0]),) for row in rows]

    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _key_sequence(self, table: str, column: str) -> str | None:
        rows = self.execute(
            "SELECT pg_get_serial_sequence(%s, %s), a.attidentity FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attname = %s",
            (self.table_ref(table), column, self.table_ref(table), column),
        )
        if not rows or rows[0][0] is None or rows[0][1] == "a":
            return None
        return str(rows[0][0])

    def primary_key_columns(self, table: str) -> tuple[str, ...]:
        schema, _, name = table.rpartition(".")
        rows = self.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indisprimary AND c.relname = %s AND n.nspname = COALESCE(NULLIF(%s, ''), current_schema())
               ORDER BY k.ord""",
            (name, schema),
        )
        return tuple(r[0] for r in rows)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._require().execute(sql, params)
        return cur.fetchall() if cur.description else []

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._require().cursor() as cur:
            cur.executemany(sql, rows)

    def begin(self) -> None:
        conn = self._require()
        if self._tagged:
            # Without a per-transaction setup, commit timestamps under a session origin freeze (shared notes).
            # Both statements in one round trip (no parameters: the simple query protocol).
            conn.execute("BEGIN; SELECT pg_replication_origin_xact_setup('0/0', clock_timestamp())")
        else:
            conn.execute("BEGIN")

    def commit(self) -> None:
        self._require().execute("COMMIT")

    def rollback(self) -> None:
        self._require().execute("ROLLBACK")

    def ensure_replicator_tables(self) -> None:
        for statement in REPLICATOR_TABLES:
            self.execute(statement)

    # Rows per multi-row INSERT, and keys per SELECT of fetch_rows: a whole batch of the default size in one
    # statement (one round trip; the writer thread waits for each), within the protocol's 65535 parameters.
    INSERT_ROWS = 5000
    KEYS_PER_READ = 5000

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Several rows per INSERT ... VALUES (...), (...): each row is coerced to the target's columns as a
        one-row INSERT is, in one statement and one round trip instead of one per row. Row triggers, checks
        and unique keys see each row as before; what PostgreSQL does once per statement (statement triggers,
        non-deferred foreign-key checks) now happens once per chunk, so a row may refer to a later row of
        the same chunk (a parent category inserted after its child)."""
        if len(rows) < 2:
            super().insert_many(table, columns, rows)
            return
        width = max(1, len(columns))
        size = max(1, min(self.INSERT_ROWS, 65535 // width))
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            sql = self._insert_values_sql(table, tuple(columns), len(chunk))
            self.execute_generated(sql, [value for row in chunk for value in row])

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few shapes per dialect instance, kept for its lifetime
    def _insert_values_sql(self, table: str, columns: tuple[str, ...], count: int) -> str:
        width = len(columns)
        marks = self.marks(count * width)
        rows = ", ".join("(" + ", ".join(marks[i * width : (i + 1) * width]) + ")" for i in range(count))
        cols = ", ".join(self.quote(c) for c in columns)
        return f"INSERT INTO {self.table_ref(table)} ({cols}) VALUES {rows}"

    def marks(self, count: int) -> list[str]:
        # The server's own placeholders, run by a RawCursor: psycopg need not parse (nor cache) long texts.
        return [f"${n}" for n in range(1, count + 1)]

    def execute_generated(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with psycopg.RawCursor(self._require()) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def store_row_versions(self, table: str, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Every row's versions in one statement: one JSON object of row key -> versions, split by the server
        (jsonb_each). A key given twice keeps its last versions, as consecutive upserts would."""
        if len(items) < 2:
            super().store_row_versions(table, items)
            return
        self.execute(
            "INSERT INTO replicator_row_version (target_table, row_key, versions) "
            "SELECT %s, key, value FROM jsonb_each(%s::jsonb) "
            "ON CONFLICT (target_table, row_key) DO UPDATE SET versions = EXCLUDED.versions",
            (table, orjson.dumps(dict(items), default=str).decode()),
        )

    def upsert_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        all_columns = [*key_columns, *columns]
        cols = ", ".join(self.quote(c) for c in all_columns)
        conflict = ", ".join(self.quote(c) for c in key_columns)
        updates = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}" for c in columns)
        action = f"DO UPDATE SET {updates}" if columns else "DO NOTHING"
        sql = (f"INSERT INTO {self.table_ref(table)} ({cols}) VALUES ({', '.join(['%s'] * len(all_columns))}) "
               f"ON CONFLICT ({conflict}) {action}")
        self.execute_many(sql, rows)
