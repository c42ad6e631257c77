"""MariaDB as a target (the shop side)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import pymysql
from pymysql.constants import CLIENT
from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

from replicator.apply.dialect.base import TargetDialect
from replicator.config import ResolvedConnection
from replicator.errors import RetriableError, SkippableRecordError
from replicator.locks import mariadb_lock_name
from replicator.network import pymysql_connect

REPLICATOR_TABLES = [
    """CREATE TABLE IF NOT EXISTS replicator_progress (
        consumer VARCHAR(190) NOT NULL, topic VARCHAR(249) NOT NULL, kpartition INT NOT NULL,
        next_offset BIGINT NOT NULL, PRIMARY KEY (consumer, topic, kpartition)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS replicator_position (
        consumer VARCHAR(190) NOT NULL, source VARCHAR(190) NOT NULL, domain BIGINT NOT NULL,
        sequence DECIMAL(20) NOT NULL, PRIMARY KEY (consumer, source, domain)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS replicator_identity (
        entity VARCHAR(190) NOT NULL, source_system VARCHAR(64) NOT NULL, source_key VARCHAR(255) NOT NULL,
        target_key VARCHAR(255) NOT NULL, PRIMARY KEY (entity, source_system, source_key),
        KEY replicator_identity_target (entity, target_key)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS replicator_row_version (
        target_table VARCHAR(190) NOT NULL, row_key VARCHAR(255) NOT NULL, versions LONGTEXT NOT NULL,
        PRIMARY KEY (target_table, row_key)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS replicator_dead_letter (
        id BIGINT AUTO_INCREMENT PRIMARY KEY, consumer VARCHAR(190) NOT NULL, source VARCHAR(190) NOT NULL,
        transaction_id VARCHAR(255), status VARCHAR(32) NOT NULL, error TEXT NOT NULL, `keys` LONGTEXT NOT NULL,
        envelopes LONGTEXT NOT NULL, created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        resolved_at DATETIME(6), KEY replicator_dead_letter_open (consumer, status)) ENGINE=InnoDB""",
]


def sql_literal(value: Any, escape: Callable[[Any], str]) -> str:
    """The SQL literal PyMySQL writes for `value` (`escape`: the connection's, which handles everything else,
    text included, as the server's sql_mode wants it): integers, null, finite decimals and naive datetimes
    here without its encoder look-up, in the very form its encoders give."""
    cls = value.__class__
    if cls is int:
        return str(value)  # escape_int (a bool is not of class int: escape_bool writes 1/0)
    if value is None:
        return "NULL"
    if cls is Decimal and value.is_finite():
        return format(value, "f")  # Decimal2Literal
    if cls is datetime and value.tzinfo is None:
        # escape_datetime: YYYY-MM-DD HH:MM:SS, then .ffffff when there are microseconds, which isoformat writes too.
        moment: datetime = value
        return "'" + moment.isoformat(" ") + "'"
    return escape(value)


class MariaDbDialect(TargetDialect):
    name = "mariadb"
    identifier_quote = "`"
    sa_dialect = MySQLDialect_pymysql()

    def __init__(
        self, connection: ResolvedConnection, writer_tag: str, *, session_timeout_s: int | None = None
    ) -> None:
        super().__init__(connection, writer_tag, session_timeout_s=session_timeout_s)
        self._conn: pymysql.connections.Connection[pymysql.cursors.Cursor] | None = None

    def connect(self, *, tag_writes: bool = True) -> None:
        info = self.connection
        session = "SET SESSION time_zone='+00:00'"
        if tag_writes:
            # skip_replication tags every event this session writes to the binlog (no privilege needed), so the
            # shop's capture recognises the replicator's writes and does not send them back. READ COMMITTED: an
            # aggregate read after locking its target row must see the shop's transactions that committed while
            # we waited for that lock (REPEATABLE READ would not).
            session += ", skip_replication=1, tx_isolation='READ-COMMITTED'"
            if self.session_timeout_s is not None:
                # The server ends a session silent this long, in a transaction or not: that rolls back what it
                # had not committed and releases its writer lock.
                session += f", wait_timeout={self.session_timeout_s}"
        try:
            self._conn = pymysql_connect(
                host=info.host, port=info.port, timeout_s=info.network_timeout_s, user=info.user,
                password=info.password.get_secret_value(),
                database=info.database, autocommit=True, charset="utf8mb4", init_command=session,
                # Several statements per round trip (update_many, delete_many): each as it would run alone.
                client_flag=CLIENT.MULTI_STATEMENTS,
            )
        except pymysql.err.OperationalError as exc:
            raise RetriableError(f"target {info.describe()}: cannot connect: {exc.args[-1]}") from None
        if tag_writes:
            # A named lock on the writer tag, held for the session's life (see `_writer_busy`).
            name = mariadb_lock_name("writer", self.writer_tag)
            if self.execute("SELECT GET_LOCK(%s, 0)", (name,))[0][0] != 1:
                self.close()
                raise self._writer_busy()

    def _require(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        if self._conn is None:
            raise RetriableError("target connection is not open")
        return self._conn

    def primary_key_columns(self, table: str) -> tuple[str, ...]:
        database, _, name = table.rpartition(".")
        rows = self.execute(
            """SELECT COLUMN_NAME FROM information_schema.STATISTICS
               WHERE TABLE_SCHEMA = COALESCE(NULLIF(%s, ''), DATABASE()) AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'
               ORDER BY SEQ_IN_INDEX""",
            (database, name),
        )
        return tuple(r[0] for r in rows)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with _classified(), self._require().cursor() as cur:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall()) if cur.description else []

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _classified(), self._require().cursor() as cur:
            cur.executemany(sql, [tuple(r) for r in rows])

    def begin(self) -> None:
        self._require().begin()

    def commit(self) -> None:
        self._require().commit()

    def rollback(self) -> None:
        self._require().rollback()

    def ensure_replicator_tables(self) -> None:
        for statement in REPLICATOR_TABLES:
            self.execute(statement)

    def upsert_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        # ON DUPLICATE KEY UPDATE fires on ANY unique index, not just the key meant here: callers only use
        # it for tables whose only unique index is `key_columns` (validate checks), else they read first.
        if not rows:
            return
        all_columns = [*key_columns, *columns]
        cols = ", ".join(self.quote(c) for c in all_columns)
        updates = ", ".join(f"{self.quote(c)} = VALUES({self.quote(c)})" for c in (columns or key_columns[:1]))
        sql = (f"INSERT INTO {self.table_ref(table)} ({cols}) VALUES ({', '.join(['%s'] * len(all_columns))}) "
               f"ON DUPLICATE KEY UPDATE {updates}")
        self.execute_many(sql, rows)

    INSERT_CHARS = 250_000  # characters of values per multi-row INSERT: at most 1 MB of utf8mb4, as PyMySQL's

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """The multi-row INSERT that PyMySQL's executemany sends, each value written as the very literal PyMySQL
        writes (`sql_literal`), with the common types (int, None, Decimal, naive datetime) written directly
        instead of through its encoder dispatch, which was a third of the writer's time."""
        if len(rows) < 2:
            super().insert_many(table, columns, rows)
            return
        conn = self._require()
        escape = conn.escape
        prefix = f"INSERT INTO {self.table_ref(table)} ({', '.join(self.quote(c) for c in columns)}) VALUES "
        width = len(columns)
        with _classified(), conn.cursor() as cur:
            values: list[str] = []
            size = 0
            for row in rows:
                if len(row) != width:
                    raise ValueError(f"{table}: a row of {len(row)} values for {width} columns")
                text = "(" + ",".join([sql_literal(value, escape) for value in row]) + ")"
                if values and size + len(text) > self.INSERT_CHARS:
                    cur.execute(prefix + ",".join(values))  # no parameters: sent as it is
                    values, size = [], 0
                values.append(text)
                size += len(text) + 1
            cur.execute(prefix + ",".join(values))

    STATEMENTS_PER_TRIP = 500  # UPDATE / DELETE statements sent together by update_many and delete_many

    def update_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        if len(rows) < 2:
            super().update_many(table, key_columns, columns, rows)
            return
        self._each_row(self._update_sql(table, tuple(key_columns), tuple(columns)), rows)

    def delete_many(self, table: str, key_columns: Sequence[str], keys: Sequence[Any]) -> None:
        if len(keys) < 2:
            super().delete_many(table, key_columns, keys)
            return
        where = " AND ".join(f"{self.quote(c)} = %s" for c in key_columns)
        self._each_row(f"DELETE FROM {self.table_ref(table)} WHERE {where}", keys)

    def _each_row(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """What PyMySQL's executemany does for a statement that is not an INSERT, one statement per row with
        the row's values escaped in, but STATEMENTS_PER_TRIP of them per round trip instead of one. They run
        in order; the first error stops the others and is raised."""
        with _classified(), self._require().cursor() as cur:
            for start in range(0, len(rows), self.STATEMENTS_PER_TRIP):
                chunk = rows[start : start + self.STATEMENTS_PER_TRIP]
                cur.execute(";\n".join(cur.mogrify(sql, tuple(row)) for row in chunk))  # no parameters: as is
                while cur.nextset():  # every statement's result, so that an error is raised here
                    pass

    VERSION_ROWS = 1000  # rows per statement of store_row_versions: about 1 MB, far below max_allowed_packet

    def store_row_versions(self, table: str, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """The same multi-row upsert as the generic one, with each JSON document sent as a hex literal of
        utf8mb4 text (`_utf8mb4 X'...'`, the very string a parameter would send, converted to the column's
        character set alike): PyMySQL need not escape every document, which was most of the CPU of writing
        versions. Rows of one statement apply in order, so a key given twice keeps its last versions."""
        if len(items) < 2:
            super().store_row_versions(table, items)
            return
        escape = self._require().escape
        target = escape(table)
        for start in range(0, len(items), self.VERSION_ROWS):
            values = ", ".join(
                f"({target}, {escape(row_key)}, _utf8mb4 X'{orjson.dumps(versions, default=str).hex()}')"
                for row_key, versions in items[start : start + self.VERSION_ROWS]
            )
            # execute() formats with no parameters: a % in an escaped key must be written %%.
            self.execute(("INSERT INTO replicator_row_version (target_table, row_key, versions) VALUES " + values
                          + " ON DUPLICATE KEY UPDATE versions = VALUES(versions)").replace("%", "%%"))


# PyMySQL raises OperationalError both for a busy or lost server and for some errors of the data: only these
# are worth trying again (the applier restarts and resumes from its stored progress).
_TRANSIENT_CODES = frozenset({
    1040,  # too many connections
    1053,  # server shutdown in progress
    1205,  # lock wait timeout
    1213,  # deadlock
    1317,  # query interrupted
    1927,  # connection killed
    2002, 2003, 2006, 2013, 2055,  # cannot connect, server gone away, lost connection
})


@contextlib.contextmanager
def _classified() -> Iterator[None]:
    """Make an OperationalError that belongs to the record (1364: a NOT NULL column without a default left
    out) a record-level error, which dead-letters the transaction instead of restarting the applier."""
    try:
        yield
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code in _TRANSIENT_CODES:
            raise
        raise SkippableRecordError(f"MariaDB error {code}: {exc.args[-1] if exc.args else exc}") from exc
