"""The target rows a batch touches: read once in bulk, then kept current in memory while the batch
plans its writes, which are emitted as an ordered list of statements merged into runs of one shape.

Keeping writes in order matters: foreign keys on the target stay enabled, so an order's lines must not
be inserted before the order. Merging consecutive writes of the same shape into one `executemany` is
what makes many small source transactions cheap to apply together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from replicator.apply import versions as field_versions
from replicator.apply.dialect.base import Key, TargetDialect


def row_key_text(key: Key) -> str:
    """The text form of a target key in the replicator's tables (identity map, row versions)."""
    return orjson.dumps(list(key), default=str).decode()


@dataclass(slots=True)
class Statement:
    kind: str  # insert | update | delete | versions
    table: str
    key_columns: tuple[str, ...]
    columns: tuple[str, ...]
    rows: list[Sequence[Any]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
        return (self.kind, self.table, self.key_columns, self.columns)


@dataclass(slots=True)
class CachedRow:
    values: dict[str, Any] | None  # None: the row does not exist
    versions: dict[str, Any]  # column -> its version entry, the general form (see apply.versions)
    xact_ts_ms: int | None = None  # when the row was last written (PostgreSQL commit timestamp), if known
    # A compact versions document instead of `versions` (which is then empty): a row created from one change
    # whose fields all carry its version. Expanded by `field_versions` if another op of the batch needs it.
    compact: dict[str, Any] | None = None

    def field_versions(self) -> dict[str, Any]:
        """The general form of the row's field versions, to read or change."""
        if self.compact is not None:
            self.versions = field_versions.expand(self.compact)
            self.compact = None
        return self.versions

    def versions_document(self) -> dict[str, Any]:
        """What the versions table is to hold for the row."""
        return self.compact if self.compact is not None else field_versions.document(self.versions)


class RowStore:
    """Current target rows and their field versions for one batch, plus the planned writes."""

    def __init__(self, dialect: TargetDialect) -> None:
        self.dialect = dialect
        self._rows: dict[tuple[str, Key], CachedRow] = {}
        self._statements: list[Statement] = []
        self._versions_dirty: dict[tuple[str, Key], None] = {}
        self._key_texts: dict[tuple[str, Key], str] = {}  # row_key_text of the rows `load` read, for `flush`
        self._identities: list[tuple[str, str, str, str]] = []  # identity map rows to insert

    def load(self, table: str, key_columns: Sequence[str], keys: Iterable[Key], columns: Sequence[str]) -> None:
        """Read the rows with these keys that are not cached yet."""
        missing = [k for k in dict.fromkeys(keys) if (table, k) not in self._rows]
        if not missing:
            return
        found = self.dialect.fetch_rows(table, key_columns, missing, columns)
        texts = [row_key_text(k) for k in missing]
        versions = self.dialect.row_versions(table, texts)
        rows, key_texts = self._rows, self._key_texts
        for key, text in zip(missing, texts, strict=True):
            row = found.get(key)
            xact = row.pop("__xact_ts_ms", None) if row is not None else None
            rows[(table, key)] = CachedRow(row, versions.get(text, {}), xact)
            key_texts[(table, key)] = text

    def get(self, table: str, key: Key) -> CachedRow:
        return self._rows[(table, key)]

    def cached(self, table: str, key: Key) -> CachedRow | None:
        """The cached row (a missing row is cached too, as values None), or None if not read yet."""
        return self._rows.get((table, key))

    def known(self, table: str, key: Key) -> bool:
        return (table, key) in self._rows

    def forget(self, table: str, key: Key) -> None:
        """Drop a cached row, so that the next `load` reads it again (after it was locked)."""
        self._rows.pop((table, key), None)
        self._key_texts.pop((table, key), None)

    def remember(self, table: str, key: Key, row: CachedRow) -> None:
        self._rows[(table, key)] = row

    def _add(self, kind: str, table: str, key_columns: tuple[str, ...], columns: tuple[str, ...],
             row: Sequence[Any]) -> None:
        last = self._statements[-1] if self._statements else None
        if (last is not None and last.columns == columns and last.table == table and last.kind == kind
                and last.key_columns == key_columns):
            last.rows.append(row)
        else:
            self._statements.append(Statement(kind, table, key_columns, columns, [row]))

    def insert(self, table: str, values: dict[str, Any]) -> None:
        self._add("insert", table, (), tuple(values), list(values.values()))

    def insert_new(self, table: str, key: Key, values: dict[str, Any], versions: dict[str, Any]) -> None:
        """Plan the insert of a row the target does not hold, with its compact versions document: `insert`,
        `remember` and `versions_changed` in one call (the one write of most source transactions)."""
        self._add("insert", table, (), tuple(values), list(values.values()))
        cached = self._rows.get((table, key))
        if cached is not None and cached.values is None:  # what `load` found: no row; now it is this one
            cached.values, cached.versions, cached.xact_ts_ms, cached.compact = values, {}, None, versions
        else:
            self._rows[(table, key)] = CachedRow(values, {}, None, versions)
        self._versions_dirty[(table, key)] = None

    def update(self, table: str, key_columns: Sequence[str], key: Key, values: dict[str, Any]) -> None:
        self._add("update", table, tuple(key_columns), tuple(values), [*values.values(), *key])

    def delete(self, table: str, key_columns: Sequence[str], key: Key) -> None:
        self._add("delete", table, tuple(key_columns), (), key)

    def add_identity(self, entity: str, system: str, source_key: str, target_key: str) -> None:
        """Plan the identity map row of a row inserted with a key drawn ahead (`TargetDialect.reserve_keys`)."""
        self._identities.append((entity, system, source_key, target_key))

    def versions_changed(self, table: str, key: Key) -> None:
        self._versions_dirty[(table, key)] = None

    def flush(self) -> None:
        """Send the planned writes, in order, then the identity map rows and field versions they came with."""
        dialect = self.dialect
        for statement in self._statements:
            if statement.kind == "insert":
                dialect.insert_many(statement.table, statement.columns, statement.rows)
            elif statement.kind == "update":
                dialect.update_many(statement.table, statement.key_columns, statement.columns, statement.rows)
            else:
                dialect.delete_many(statement.table, statement.key_columns, [tuple(r) for r in statement.rows])
        self._statements.clear()
        if self._identities:
            dialect.add_identities(self._identities)
            self._identities = []
        by_table: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        rows, key_texts = self._rows, self._key_texts
        for entry in self._versions_dirty:
            text = key_texts.get(entry)
            by_table.setdefault(entry[0], []).append((row_key_text(entry[1]) if text is None else text,
                                                      rows[entry].versions_document()))
        for table, items in by_table.items():
            dialect.store_row_versions(table, items)
        self._versions_dirty.clear()

    def discard_pending(self) -> None:
        """Forget planned writes and cached rows (after a rollback)."""
        self._statements.clear()
        self._identities = []
        self._versions_dirty.clear()
        self._rows.clear()
        self._key_texts.clear()
