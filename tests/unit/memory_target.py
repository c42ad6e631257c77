"""In-memory stand-ins for unit tests of the apply path: a target (rows, field versions and progress, without a
server) and an audit publisher whose records go to a list instead of Kafka."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from replicator.apply.dialect.base import Key, Progress, TargetDialect
from replicator.apply.versions import expand
from replicator.transport.audit import AuditPublisher
from replicator.transport.client import KafkaClient


class MemoryTarget(TargetDialect):
    """Tables whose primary key is `id`. Writes of a transaction become visible to `committed` on commit."""

    name = "memory"
    sa_dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]

    def __init__(self) -> None:
        super().__init__(None, "test")  # type: ignore[arg-type]
        self.rows: dict[str, dict[Key, dict[str, Any]]] = {}
        self.documents: dict[tuple[str, str], bytes] = {}  # (table, row key) -> the stored JSON text
        self.commits: list[tuple[Progress, dict[str, dict[Key, dict[str, Any]]]]] = []
        self.commit_s = 0.0  # how long a commit waits (without the GIL), as a server's would
        self._progress = Progress()

    def connect(self, *, tag_writes: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if "RETURNING id" in sql:
            return [(1,)]
        return []  # dead letters, identities, progress: none

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise AssertionError(f"not expected here: {sql}")

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        time.sleep(self.commit_s)
        self.commits.append((copy.deepcopy(self._progress), copy.deepcopy(self.rows)))

    def rollback(self) -> None:
        raise AssertionError("no rollback expected")

    def ensure_replicator_tables(self) -> None:
        pass

    def primary_key_columns(self, table: str) -> tuple[str, ...]:
        return ("id",)

    def upsert_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        raise AssertionError(f"not expected here: {table}")

    def save_progress(self, consumer: str, progress: Progress) -> None:
        self._progress = progress

    def fetch_rows(self, table: str, key_columns: Sequence[str], keys: Sequence[Key],
                   columns: Sequence[str]) -> dict[Key, dict[str, Any]]:
        held = self.rows.get(table, {})
        return {key: {"id": key[0], **{c: held[key].get(c) for c in columns}} for key in keys if key in held}

    def row_versions(self, table: str, row_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {key: expand(orjson.loads(self.documents[(table, key)]))
                for key in row_keys if (table, key) in self.documents}

    def store_row_versions(self, table: str, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for row_key, document in items:
            self.documents[(table, row_key)] = orjson.dumps(document, default=str)

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        held = self.rows.setdefault(table, {})
        for row in rows:
            values = dict(zip(columns, row, strict=True))
            assert (values["id"],) not in held, f"{table}: row {values['id']} inserted twice"
            held[(values["id"],)] = values

    def update_many(self, table: str, key_columns: Sequence[str], columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.rows[table][tuple(row[len(columns):])].update(zip(columns, row, strict=False))

    def delete_many(self, table: str, key_columns: Sequence[str], keys: Sequence[Key]) -> None:
        for key in keys:
            del self.rows[table][tuple(key)]


class RecordingProducer:
    """Keeps what is produced, in order; never fails."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.sent.append((topic, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...

    def close(self) -> bool:
        return True


def recording_publisher() -> tuple[AuditPublisher, RecordingProducer]:
    """An AuditPublisher writing into a RecordingProducer (the record bytes are what these tests check)."""
    producer = RecordingProducer()
    return AuditPublisher(KafkaClient(""), client_id="test", producer=producer), producer
