"""Debezium messages from the event model. Pure: no I/O.

The shapes are those of Debezium's PostgreSQL and MariaDB connectors as they reach Kafka through the
JSON converter with `schemas.enable=false` and `provide.transaction.metadata=true`: every field of the
Connect schema is present, in schema order, with null where the connector leaves it unset.

Row values in `before`/`after` and the key are already Debezium-encoded by the capture (see
docs/TYPES.md), so this module only assembles envelopes.

Where the event model carries less than Debezium has, this is what is emitted:
- `ts_us`/`ts_ns` (envelope and `source`) are derived from the millisecond values: the model keeps
  commit times in milliseconds.
- PostgreSQL `source.sequence` is `[<last commit LSN>, <this change's LSN>]` as JSON text; the
  caller passes the previous transaction's commit LSN (`last_commit_lsn`), else it is null.
- `source.origin` is the replication origin (PostgreSQL, as Debezium 3.5 emits) or the replicator's
  loop tag (MariaDB, which Debezium lacks; an extra field does not bother Debezium consumers).
  `origin_lsn` is null: the model does not keep it.
- The transaction id is `SourceTransaction.id` in the BEGIN and END messages and in every change's
  `transaction` block. Debezium's MariaDB connector uses the GTID there too. Its PostgreSQL connector
  writes `<xid>:<lsn>` but re-suffixes the LSN of each message, so BEGIN, the changes and END carry
  different ids (and BEGIN/END different keys); here the id (`postgres_transaction_id`, with the
  commit LSN) stays the same for the whole transaction, so its markers share a key and partition and a
  consumer can match them. Consumers that split Debezium's id at ':' read the same xid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from replicator import __version__
from replicator.events import (
    Connector,
    MariaDbPosition,
    Op,
    PostgresPosition,
    Row,
    RowChange,
    SourceTransaction,
    TableId,
)
from replicator.transport.topics import table_topic, transaction_topic

Json = dict[str, Any]

DEFAULT_VERSION: Final = f"{__version__}-replicator"

# Debezium's SnapshotRecord values, as `source.snapshot` spells them.
SnapshotMarker = Literal[
    "true", "first", "first_in_data_collection", "last_in_data_collection", "last", "false", "incremental"
]

# Debezium's placeholder for a value the log does not carry (PostgreSQL: an unchanged TOASTed column),
# its default `unavailable.value.placeholder`.
UNAVAILABLE_VALUE_PLACEHOLDER: Final = "__debezium_unavailable_value"

_MICROS_PER_MILLI: Final = 1_000
_NANOS_PER_MILLI: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """The configuration a source's envelopes depend on.

    `name` is the logical source name: Debezium's `topic.prefix`, emitted as `source.name`.
    `database` is the PostgreSQL database (`source.db`); for MariaDB `source.db` is each table's own
    database, so it is only a label there.
    """

    name: str
    connector: Connector
    database: str
    version: str = DEFAULT_VERSION


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record to produce: `key`/`value` None mean a null key/value (truncate key, tombstone)."""

    topic: str
    key: Json | None
    value: Json | None


def postgres_transaction_id(xid: int, lsn: int) -> str:
    """Debezium's PostgreSQL transaction id `<xid>:<lsn>`; pass the commit LSN (see module docstring)."""
    return f"{xid}:{lsn}"


def mariadb_transaction_id(gtid: str) -> str:
    """Debezium's MariaDB transaction id: the GTID ('domain-server-sequence')."""
    return gtid


def change_key(change: RowChange) -> Row | None:
    """The message key: the primary-key columns. Truncate events have no key, as in Debezium."""
    if change.op is Op.TRUNCATE:
        return None
    return dict(change.key)


def tombstone(change: RowChange) -> tuple[Row, None]:
    """The (key, null value) Debezium sends after a delete so compaction can drop the key.

    The producer decides from its configuration whether to send it.
    """
    if change.op is not Op.DELETE:
        raise ValueError(f"{change.table}: a tombstone follows a delete, not op {change.op.value!r}")
    return dict(change.key), None


def source_block(
    change: RowChange,
    tx: SourceTransaction,
    info: SourceInfo,
    *,
    snapshot: SnapshotMarker | None = None,
    last_commit_lsn: int | None = None,
) -> Json:
    """The `source` field of one change event."""
    marker: SnapshotMarker = snapshot or ("true" if tx.snapshot else "false")
    commit_ms = tx.commit_ts_ms
    common: Json = {
        "version": info.version,
        "connector": info.connector.value,
        "name": info.name,
        "ts_ms": commit_ms,
        "snapshot": marker,
    }
    position = change.position
    if info.connector is Connector.POSTGRESQL:
        if not isinstance(position, PostgresPosition):
            raise TypeError(f"{change.table}: a PostgreSQL source needs a PostgresPosition, got {position!r}")
        return {
            **common,
            "db": info.database,
            "sequence": orjson.dumps(
                [None if last_commit_lsn is None else str(last_commit_lsn), str(position.lsn)]
            ).decode(),
            "ts_us": commit_ms * _MICROS_PER_MILLI,
            "ts_ns": commit_ms * _NANOS_PER_MILLI,
            "schema": change.table.namespace,
            "table": change.table.table,
            "txId": position.tx_id,
            "lsn": position.lsn,
            "xmin": None,
            "origin": tx.origin,
            "origin_lsn": None,
        }
    if not isinstance(position, MariaDbPosition):
        raise TypeError(f"{change.table}: a MariaDB source needs a MariaDbPosition, got {position!r}")
    return {
        **common,
        "db": change.table.namespace,
        "sequence": None,
        "ts_us": commit_ms * _MICROS_PER_MILLI,
        "ts_ns": commit_ms * _NANOS_PER_MILLI,
        "table": change.table.table,
        "server_id": position.server_id,
        "gtid": position.gtid,
        "file": position.file,
        "pos": position.pos,
        "row": position.row,
        "thread": None,
        "query": None,
        "origin": tx.origin,
    }


def change_value(
    change: RowChange,
    tx: SourceTransaction,
    info: SourceInfo,
    *,
    data_collection_order: int,
    total_order: int,
    ts_ms: int,
    snapshot: SnapshotMarker | None = None,
    last_commit_lsn: int | None = None,
) -> Json:
    """The message value of one change: Debezium's envelope with the transaction block.

    `total_order` and `data_collection_order` are 1-based positions of the event in its transaction,
    overall and among the events of its table (`EventOrder` counts them). `ts_ms` is when the
    replicator processed the event. Truncate events have null `before` and `after`.
    """
    truncate = change.op is Op.TRUNCATE
    return {
        "before": None if truncate else change.before,
        "after": None if truncate else change.after,
        "source": source_block(change, tx, info, snapshot=snapshot, last_commit_lsn=last_commit_lsn),
        "op": change.op.value,
        "ts_ms": ts_ms,
        "ts_us": ts_ms * _MICROS_PER_MILLI,
        "ts_ns": ts_ms * _NANOS_PER_MILLI,
        # Snapshot reads belong to no source transaction: Debezium leaves the block null for them.
        "transaction": None
        if tx.snapshot
        else {
            "id": tx.id,
            "total_order": total_order,
            "data_collection_order": data_collection_order,
        },
    }


def transaction_key(tx: SourceTransaction) -> Json:
    """The key of BEGIN/END messages on the transaction topic."""
    return {"id": tx.id}


def transaction_begin(tx: SourceTransaction, info: SourceInfo, ts_ms: int | None = None) -> tuple[Json, Json]:
    """(key, value) of the BEGIN marker. `ts_ms` defaults to the source commit time, which is what
    Debezium puts there when the source provides it (both connectors do). `info` names the source;
    Debezium's marker itself has no source block."""
    del info  # the marker's shape is the same for both connectors
    value: Json = {
        "status": "BEGIN",
        "id": tx.id,
        "event_count": None,
        "data_collections": None,
        "ts_ms": tx.commit_ts_ms if ts_ms is None else ts_ms,
    }
    return transaction_key(tx), value


def transaction_end(
    tx: SourceTransaction,
    info: SourceInfo,
    event_counts: Mapping[TableId, int] | Iterable[tuple[TableId, int]],
    ts_ms: int | None = None,
) -> tuple[Json, Json]:
    """(key, value) of the END marker with the number of events per table, in first-seen order.

    `data_collection` is '<schema>.<table>' (PostgreSQL) or '<database>.<table>' (MariaDB).
    """
    del info
    pairs = event_counts.items() if isinstance(event_counts, Mapping) else event_counts
    collections = [{"data_collection": str(table), "event_count": count} for table, count in pairs]
    value: Json = {
        "status": "END",
        "id": tx.id,
        "event_count": sum(c["event_count"] for c in collections),
        "data_collections": collections,
        "ts_ms": tx.commit_ts_ms if ts_ms is None else ts_ms,
    }
    return transaction_key(tx), value


@dataclass(slots=True)
class EventOrder:
    """Numbers the events of one transaction as Debezium's transaction metadata does."""

    total: int = 0
    per_table: dict[TableId, int] = field(default_factory=dict)

    def next(self, table: TableId) -> tuple[int, int]:
        """Count one more event of `table`; return its (total_order, data_collection_order)."""
        self.total += 1
        order = self.per_table.get(table, 0) + 1
        self.per_table[table] = order
        return self.total, order


def transaction_messages(
    tx: SourceTransaction,
    info: SourceInfo,
    *,
    ts_ms: int,
    tombstones_on_delete: bool = True,
    last_commit_lsn: int | None = None,
) -> list[Message]:
    """Every message of one source transaction, in publishing order: BEGIN, each change (a delete
    followed by its tombstone when `tombstones_on_delete`), END. Tombstones are not counted as events.

    For PostgreSQL, `last_commit_lsn` is the commit LSN of the previous transaction (`sequence`);
    changes within this transaction use it too, as Debezium does.
    """
    tx_topic = transaction_topic(info.name)
    begin_key, begin_value = transaction_begin(tx, info)
    messages = [Message(tx_topic, begin_key, begin_value)]
    order = EventOrder()
    for change in tx.changes:
        total_order, collection_order = order.next(change.table)
        topic = table_topic(info.name, change.table.namespace, change.table.table)
        value = change_value(
            change, tx, info,
            data_collection_order=collection_order, total_order=total_order, ts_ms=ts_ms,
            last_commit_lsn=last_commit_lsn,
        )
        messages.append(Message(topic, change_key(change), value))
        if tombstones_on_delete and change.op is Op.DELETE:
            key, _ = tombstone(change)
            messages.append(Message(topic, key, None))
    end_key, end_value = transaction_end(tx, info, order.per_table)
    messages.append(Message(tx_topic, end_key, end_value))
    return messages


def dumps(value: Json | None) -> bytes | None:
    """JSON bytes for a Kafka key or value; None stays None (a null key or tombstone value).

    Integers are exact over -2**63..2**64-1 (BIGINT UNSIGNED included); values are pre-encoded, so no
    Decimal, datetime or bytes ever reaches here (orjson would refuse them).
    """
    if value is None:
        return None
    return orjson.dumps(value)


def loads(data: bytes | None) -> Json | None:
    """Inverse of `dumps`."""
    if data is None:
        return None
    result: Json = orjson.loads(data)
    return result
