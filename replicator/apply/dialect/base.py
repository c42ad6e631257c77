"""What the applier needs from a target database, and the SQL both dialects share.

Identifiers are checked against a strict pattern by the mapping spec and quoted here by SQLAlchemy's
preparer for the dialect; values are always bound parameters. Statements are built once per shape and
cached, because the applier issues the same few shapes millions of times.

The replicator keeps its own state in the target, next to the data and written in the same transaction:
- `replicator_progress`: per consumer and Kafka partition, the offset to resume from;
- `replicator_position`: per consumer, source and domain, the last applied source position;
- `replicator_identity`: which target key a source key of an entity became;
- `replicator_row_version`: per target row, the version (and value) of each field the replicator wrote;
- `replicator_dead_letter`: transactions that could not be applied, and keys held behind them.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.engine.interfaces import Dialect as SqlAlchemyDialect

from replicator.apply.versions import expand
from replicator.config import ResolvedConnection
from replicator.errors import RetriableError

Key = tuple[Any, ...]


@dataclass
class Progress:
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # (source, domain) -> sequence


class TargetDialect(abc.ABC):
    """One target database: a single writer connection, tagged so capture does not echo its writes."""

    name: str
    sa_dialect: SqlAlchemyDialect

    def __init__(
        self, connection: ResolvedConnection, writer_tag: str, *, session_timeout_s: int | None = None
    ) -> None:
        self.connection = connection
        self.writer_tag = writer_tag
        # The writer session's silence limit (TargetConfig.writer_session_timeout_s): the server ends a session
        # whose client stopped speaking, so that the writer lock of a lost or frozen applier does not outlive it.
        # None: the server's own limits (administration sessions, which hold no writer lock, use them).
        self.session_timeout_s = session_timeout_s
        self.quote = self.sa_dialect.identifier_preparer.quote

    # -- connection and transactions ------------------------------------------------------------------

    @abc.abstractmethod
    def connect(self, *, tag_writes: bool = True) -> None:
        """Open the connection; `tag_writes=False` for administration sessions (dead-letter commands),
        which write only the replicator's own tables and must not take the applier's writer tag."""

    def _writer_busy(self) -> RetriableError:
        """A tagged session could not take its writer lock: one writer session per writer tag, held for the
        session's life (released when it ends, a crash included), so that a second applier of the same target
        waits instead of applying the same changes again."""
        return RetriableError(
            f"target {self.connection.describe()}: another session writes as {self.writer_tag} (a second applier "
            "of this target, or one still stopping): this one waits until it is gone"
        )

    def keep_alive(self) -> None:
        """One round trip, so that the server does not take the session for a lost one (`session_timeout_s`)."""
        self.execute("SELECT 1")

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def begin(self) -> None:
        """Start a target transaction, tagged with the loop tag."""

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    def savepoint(self, name: str) -> None:
        self.execute(f"SAVEPOINT {self.quote(name)}")

    def rollback_to(self, name: str) -> None:
        self.execute(f"ROLLBACK TO SAVEPOINT {self.quote(name)}")

    def release(self, name: str) -> None:
        self.execute(f"RELEASE SAVEPOINT {self.quote(name)}")

    # -- the replicator's own tables ------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_replicator_tables(self) -> None: ...

    def table_ref(self, table: str) -> str:
        """'schema.table' / 'database.table' quoted; a bare name stays bare (the connection's default)."""
        return ".".join(self.quote(part) for part in table.split("."))

    def load_progress(self, consumer: str) -> Progress:
        progress = Progress()
        for topic, partition, offset in self.execute(
            "SELECT topic, kpartition, next_offset FROM replicator_progress WHERE consumer = %s", (consumer,)
        ):
            progress.offsets[(topic, int(partition))] = int(offset)
        for source, domain, sequence in self.execute(
            "SELECT source, domain, sequence FROM replicator_position WHERE consumer = %s", (consumer,)
        ):
            progress.positions[(source, int(domain))] = int(sequence)
        return progress

    def save_progress(self, consumer: str, progress: Progress) -> None:
        self.upsert_many("replicator_progress", ("consumer", "topic", "kpartition"), ("next_offset",),
                         [(consumer, topic, part, offset) for (topic, part), offset in progress.offsets.items()])
        self.upsert_many("replicator_position", ("consumer", "source", "domain"), ("sequence",),
                         [(consumer, source, domain, seq) for (source, domain), seq in progress.positions.items()])

    def identities(self, entity: str, system: str, source_keys: Iterable[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(source_keys))
        if not keys:
            return {}
        found: dict[str, str] = {}
        for chunk in _chunks(keys, 500):
            marks = ", ".join(["%s"] * len(chunk))
            for source_key, target_key in self.execute(
                "SELECT source_key, target_key FROM replicator_identity "
                f"WHERE entity = %s AND source_system = %s AND source_key IN ({marks})",
                (entity, system, *chunk),
            ):
                found[source_key] = target_key
        return found

    def add_identity(self, entity: str, system: str, source_key: str, target_key: str) -> None:
        self.execute(
            "INSERT INTO replicator_identity (entity, source_system, source_key, target_key) VALUES (%s, %s, %s, %s)",
            (entity, system, source_key, target_key),
        )

    def add_identities(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """`add_identity` for many (entity, system, source key, target key), in few statements."""
        self.insert_many("replicator_identity", ("entity", "source_system", "source_key", "target_key"), rows)

    def reserve_keys(self, table: str, key_columns: Sequence[str], count: int) -> list[Key] | None:
        """`count` primary keys for new rows of `table`, drawn ahead from what generates its key (a sequence), so
        that new rows need not be inserted one at a time to learn their keys; None where keys cannot be drawn so
        (the rows are then inserted one by one, their keys returned)."""
        return None

    def row_versions(self, table: str, row_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The field versions of these rows (row key text -> general form, whichever form is stored)."""
        keys = list(dict.fromkeys(row_keys))
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(keys, 500):
            marks = ", ".join(["%s"] * len(chunk))
            for row_key, versions in self.execute(
                "SELECT row_key, versions FROM replicator_row_version "
                f"WHERE target_table = %s AND row_key IN ({marks})",
                (table, *chunk),
            ):
                found[row_key] = expand(json_value(versions))
        return found

    def store_row_versions(self, table: str, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        rows = [(table, row_key, orjson.dumps(versions, default=str).decode()) for row_key, versions in items]
        self.upsert_many("replicator_row_version", ("target_table", "row_key"), ("versions",), rows)

    # -- data ---------------------------------------------------------------------------------------

    identifier_quote: str = '"'

    # An SQL expression for when a row was last written, in ms since the epoch, if the database knows.
    row_written_ms_sql: str | None = None

    @abc.abstractmethod
    def primary_key_columns(self, table: str) -> tuple[str, ...]: ...

    KEYS_PER_READ = 500  # keys per SELECT of fetch_rows (each a round trip)

    def fetch_rows(self, table: str, key_columns: Sequence[str], keys: Sequence[Key],
                   columns: Sequence[str]) -> dict[Key, dict[str, Any]]:
        """Current values of `columns` for the rows with these keys (absent keys are missing rows); with
        `__xact_ts_ms` when the database can tell when each row was last written.

        The rows are locked until the transaction ends (FOR UPDATE): the applier decides from what it read
        (a monotonic state's rank, a local edit's time), so a local transaction must not change the row
        between that read and the write (a shop cancelling an order the ERP is moving to 'processing')."""
        wanted = list(dict.fromkeys([*key_columns, *columns]))
        names = [*wanted, "__xact_ts_ms"] if self.row_written_ms_sql else wanted
        found: dict[Key, dict[str, Any]] = {}
        width = len(key_columns)
        per_statement = max(1, min(self.KEYS_PER_READ, 65535 // width))
        for chunk in _chunks(list(dict.fromkeys(keys)), per_statement):
            sql = self._select_sql(table, tuple(key_columns), tuple(wanted), len(chunk), bool(self.row_written_ms_sql),
                                   lock=True)
            params = [value for key in chunk for value in key]
            for row in self.execute_generated(sql, params):
                record = dict(zip(names, row, strict=True))
                found[tuple(row[:width])] = record
        return found

    @functools.lru_cache(maxsize=512)  # noqa: B019 - a few shapes per dialect instance, kept for its lifetime
    def _select_sql(self, table: str, key_columns: tuple[str, ...], columns: tuple[str, ...], count: int,
                    with_written: bool = False, *, lock: bool = False) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        if with_written and self.row_written_ms_sql:
            cols += f", {self.row_written_ms_sql}"
        width = len(key_columns)
        if width == 1:
            where = f"{self.quote(key_columns[0])} IN ({', '.join(self.marks(count))})"
        else:
            marks = self.marks(count * width)
            rows = ", ".join("(" + ", ".join(marks[i * width : (i + 1) * width]) + ")" for i in range(count))
            where = f"({', '.join(self.quote(c) for c in key_columns)}) IN ({rows})"
        return f"SELECT {cols} FROM {self.table_ref(table)} WHERE {where}" + (" FOR UPDATE" if lock else "")

    def marks(self, count: int) -> list[str]:
        """Parameter placeholders for statements this class generates and runs with `execute_generated`."""
        return ["%s"] * count

    def execute_generated(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a statement whose placeholders come from `marks` (long generated IN lists and VALUES lists)."""
        return self.execute(sql, params)

    def lock_row(self, table: str, key_columns: Sequence[str], key: Key) -> None:
        """Lock one row (if it exists) until the transaction ends."""
        where = " AND ".join(f"{self.quote(c)} = %s" for c in key_columns)
        self.execute(f"SELECT 1 FROM {self.table_ref(table)} WHERE {where} FOR UPDATE", list(key))

    def insert_returning(self, table: str, row: dict[str, Any], returning: Sequence[str]) -> dict[str, Any]:
        columns = tuple(row)
        sql = self._insert_sql(table, columns, tuple(returning))
        result = self.execute(sql, [row[c] for c in columns])
        return dict(zip(returning, result[0], strict=True)) if returning else {}

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def _insert_sql(self, table: str, columns: tuple[str, ...], returning: tuple[str, ...]) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        sql = f"INSERT INTO {self.table_ref(table)} ({cols}) VALUES ({', '.join(['%s'] * len(columns))})"
        if returning:
            sql += " RETURNING " + ", ".join(self.quote(c) for c in returning)
        return sql

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.execute_many(self._insert_sql(table, tuple(columns), ()), rows)

    @abc.abstractmethod
    def upsert_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows, or update `columns` of those whose key exists (the primary key named here only)."""

    def update_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """`rows` hold the new column values followed by the key values."""
        if rows:
            self.execute_many(self._update_sql(table, tuple(key_columns), tuple(columns)), rows)

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def _update_sql(self, table: str, key_columns: tuple[str, ...], columns: tuple[str, ...]) -> str:
        sets = ", ".join(f"{self.quote(c)} = %s" for c in columns)
        where = " AND ".join(f"{self.quote(c)} = %s" for c in key_columns)
        return f"UPDATE {self.table_ref(table)} SET {sets} WHERE {where}"

    def delete_many(self, table: str, key_columns: Sequence[str], keys: Sequence[Key]) -> None:
        if keys:
            where = " AND ".join(f"{self.quote(c)} = %s" for c in key_columns)
            self.execute_many(f"DELETE FROM {self.table_ref(table)} WHERE {where}", keys)

    def natural_lookup(self, table: str, match_columns: Sequence[str], returns: str,
                       values: Sequence[Key]) -> dict[Key, Any]:
        """`returns` of the rows whose `match_columns` equal each value tuple; ambiguous matches are None."""
        found: dict[Key, Any] = {}
        seen: dict[Key, int] = {}
        width = len(match_columns)
        for chunk in _chunks(list(dict.fromkeys(values)), 500):
            sql = self._select_sql(table, tuple(match_columns), (*match_columns, returns), len(chunk))
            for row in self.execute_generated(sql, [v for value in chunk for v in value]):
                key = tuple(row[:width])
                seen[key] = seen.get(key, 0) + 1
                found[key] = row[width] if seen[key] == 1 else None
        return found


def json_value(value: Any) -> Any:
    """A JSON column's value: PostgreSQL's jsonb arrives decoded, MariaDB's LONGTEXT as text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
