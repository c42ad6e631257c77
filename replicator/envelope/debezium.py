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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from replicator import __version__
from replicator.events import (
    Connector,
    MariaDbPosition,
    Op,
    Position,
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


# --- straight to bytes, for the capture's hot loop ---------------------------------------------------
#
# `dumps(change_value(...))` costs about 5 µs per event, most of it building the 17-field `source` dict
# and the envelope around it for every event although only a few fields change from one event to the
# next. `EnvelopeEncoder` renders each message shape once (per table and op) into a `%` template and
# fills in per event only what varies. The templates are rendered *from* the functions above: their
# dicts are serialised by orjson with the variable fields replaced by markers, so field order, names
# and constants come from the same code the golden tests check; and every new encoder compares its
# output with theirs on probe transactions (`_self_check`), so the two cannot drift apart unnoticed.
#
# Templates have two stages. Stage 1 (per table, op and snapshot flag, cached for the source's life)
# leaves `%b` for the per-transaction fields and `%%b`/`%%d` for the per-event ones; stage 2 (per
# table and op within one transaction) fills the transaction's fields, leaving a template that one
# `%` per event completes. Literal '%' in constants is written '%%%%' in stage 1 and in transaction
# fields '%%' in stage 2, so each ends as one '%'. Most transactions are small, though, and making a
# stage-2 template for one event costs more than it saves: the first event of a shape in a
# transaction is rendered in one `%` from a one-stage copy of the stage-1 template instead, and the
# stage-2 template is made only for a second one.

# The per-event fields in the order each connector's envelope has them, and which go in as %d (the
# rest are JSON fragments, %b). Checked against the rendered templates.
_PG_EVENT_FIELDS: Final = ("before", "after", "seq_lsn", "xid", "lsn", "total_order", "collection_order")
_MARIADB_EVENT_FIELDS: Final = (
    "before", "after", "server_id", "gtid", "file", "pos", "row", "total_order", "collection_order",
)
_INT_FIELDS: Final = frozenset({"lsn", "seq_lsn", "total_order", "collection_order", "server_id", "pos", "row"})
# The per-transaction fields (all %b, timestamps included: %d of a 19-digit number costs 0.1 µs, so
# they are rendered once per transaction), in the order of the envelope; a snapshot's lacks `tx_id`
# (its `transaction` block is null). Checked against the rendered templates.
_PG_TX_FIELDS: Final = (
    "commit_ms", "seq_first", "commit_us", "commit_ns", "origin", "now_ms", "now_us", "now_ns", "tx_id",
)
_MARIADB_TX_FIELDS: Final = ("commit_ms", "commit_us", "commit_ns", "origin", "now_ms", "now_us", "now_ns", "tx_id")
# A create/update/delete envelope outside a snapshot with its per-transaction and per-event fields in
# one list, in the order they appear: a transaction's first event of a shape is rendered in one `%`
# with these (see `EnvelopeEncoder._value`), which beats making a stage-2 template for one event.
_PG_ONE_STAGE_FIELDS: Final = (
    "before", "after", "commit_ms", "seq_first", "seq_lsn", "commit_us", "commit_ns", "xid", "lsn", "origin",
    "now_ms", "now_us", "now_ns", "tx_id", "total_order", "collection_order",
)
_MARIADB_ONE_STAGE_FIELDS: Final = (
    "before", "after", "commit_ms", "commit_us", "commit_ns", "server_id", "gtid", "file", "pos", "row", "origin",
    "now_ms", "now_us", "now_ns", "tx_id", "total_order", "collection_order",
)
_NULL: Final = b"null"


def _marker(name: str) -> Any:
    # orjson writes a Fragment verbatim, and never writes a raw NUL itself (it escapes control
    # characters), so NUL-delimited names cannot collide with anything it rendered.
    return orjson.Fragment(b"\x00" + name.encode() + b"\x00")


_MARKER: Final = re.compile(rb"\x00(\w+)\x00")


def _template(value: Json, event_fields: tuple[str, ...] = (), *, stages: int = 1) -> tuple[bytes, list[str]]:
    """`value` (holding `_marker`s) serialised as a `%` template; returns it and the marker names in
    the order their placeholders appear. With `stages=2`, the fields named in `event_fields` stay
    escaped for a second `%` (see above)."""
    rendered = orjson.dumps(value).replace(b"%", b"%" * (2**stages))

    def placeholder(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode()
        return (b"%%" if name in event_fields else b"%") + (b"d" if name in _INT_FIELDS else b"b")

    return _MARKER.sub(placeholder, rendered), [m.decode() for m in _MARKER.findall(rendered)]


def _escaped(fragment: bytes) -> bytes:
    return fragment.replace(b"%", b"%%")


class _Clock:
    """A millisecond time as JSON, and in microseconds and nanoseconds (Debezium's ts_us/ts_ns),
    remembered for the next transaction: consecutive small transactions mostly share the millisecond."""

    __slots__ = ("ms", "rendered")

    def __init__(self) -> None:
        self.ms: int | None = None
        self.rendered = (b"", b"", b"")

    def render(self, ms: int) -> tuple[bytes, bytes, bytes]:
        if ms != self.ms:
            text = b"%d" % ms
            self.ms = ms
            # ms * 1000 written out is the digits of ms followed by 000, except for 0.
            self.rendered = (text, text + b"000", text + b"000000") if ms else (text, text, text)
        return self.rendered


# A stage-1 template, how many of the connector's transaction fields it takes (all, or all but `tx_id`
# for a snapshot's) and, for creates, updates and deletes outside a snapshot, the same as a one-stage
# template (fields as in _PG_ONE_STAGE_FIELDS / _MARIADB_ONE_STAGE_FIELDS).
_Stage1 = tuple[bytes, int, bytes | None]


class EnvelopeEncoder:
    """Debezium messages of one source as JSON bytes: the same bytes as `dumps` of `change_value`,
    `transaction_begin`/`transaction_end` and `transaction_key`, at a fraction of the cost.

    Stateful per transaction: `start` a transaction, then `value` for each of its changes (in order,
    with the numbers `EventOrder` gives) and `key`/`begin`/`end` for its markers.
    """

    __slots__ = (
        "_begin",
        "_collections",
        "_commit",
        "_commit_clock",
        "_end",
        "_event_fields",
        "_info",
        "_key",
        "_last1",
        "_last_collection",
        "_last_gtid",
        "_last_one_collections",
        "_now_clock",
        "_postgres",
        "_shape_op",
        "_shape_table",
        "_shape_template",
        "_shape_usual",
        "_shapes",
        "_stage1",
        "_tx",
        "_tx_args",
        "_tx_fields",
        "_tx_id",
        "_tx_last_commit_lsn",
        "_tx_ms",
        "_tx_raw",
        "_xid",
        "_xid_json",
    )

    def __init__(self, info: SourceInfo, *, check: bool = True) -> None:
        self._info = info
        self._postgres = info.connector is Connector.POSTGRESQL
        self._event_fields = _PG_EVENT_FIELDS if self._postgres else _MARIADB_EVENT_FIELDS
        self._tx_fields = _PG_TX_FIELDS if self._postgres else _MARIADB_TX_FIELDS
        self._stage1: dict[tuple[TableId, Op, bool], _Stage1] = {}
        # The stage-1 template used last and the stage-2 ones of the current transaction, found by
        # identity of the table and op (hashing TableId and Op runs Python code): few shapes per
        # transaction, and consecutive transactions mostly have the same one.
        self._last1: tuple[TableId | None, Op | None, bool | None, _Stage1] = (None, None, None, (b"", 0, None))
        # This transaction's shapes: [table, op, stage-2 template or None while it had one event].
        self._shapes: list[list[Any]] = []
        # The shape of the last event, when it has a stage-2 template; `_shape_usual` when that is a
        # create/update/delete outside a snapshot (the fast path of `value`).
        self._shape_table: TableId | None = None
        self._shape_op: Op | None = None
        self._shape_template = b""
        self._shape_usual = False
        # The rendered `data_collections` entry per table, with a "%d" for the count.
        self._collections: dict[TableId, bytes] = {}
        self._last_collection: tuple[TableId | None, bytes] = (None, b"")
        # `one`'s last table and its END marker's `data_collections` (an event count of 1).
        self._last_one_collections: tuple[TableId | None, bytes] = (None, b"")
        self._commit_clock = _Clock()
        self._commit = (b"", b"", b"")  # the transaction's commit time, rendered by _commit_clock
        self._now_clock = _Clock()
        self._tx = SourceTransaction(id="", commit_ts_ms=0, position=self._probe_position(0))
        self._tx_id = b'""'
        self._tx_ms = 0
        self._tx_last_commit_lsn: int | None = None
        self._tx_args: tuple[bytes, ...] | None = None
        self._tx_raw: tuple[bytes, ...] = ()
        # Per-event values that rarely change, rendered once.
        self._xid: int | None = None
        self._xid_json = _NULL
        self._last_gtid: tuple[str, bytes, str, bytes] = ("", b'""', "", b'""')
        probe = self._tx
        key = transaction_key(probe)
        key["id"] = _marker("tx_id")
        self._key = self._checked(_template(key), ["tx_id"])
        _, begin = transaction_begin(probe, info)
        begin.update(id=_marker("tx_id"), ts_ms=_marker("commit_ms"))
        self._begin = self._checked(_template(begin), ["tx_id", "commit_ms"])
        _, end = transaction_end(probe, info, ())
        end.update(id=_marker("tx_id"), event_count=_marker("total_order"), data_collections=_marker("collections"),
                   ts_ms=_marker("commit_ms"))
        self._end = self._checked(_template(end), ["tx_id", "total_order", "collections", "commit_ms"])
        if check:
            self._self_check()

    @staticmethod
    def _checked(template: tuple[bytes, list[str]], fields: list[str]) -> bytes:
        """The template, provided its placeholders are `fields` in that order (the order its `%` is
        given the values in); else the envelope functions changed shape and this class must follow."""
        if template[1] != fields:
            raise RuntimeError(f"envelope template has fields {template[1]}, expected {fields}")
        return template[0]

    def _probe_position(self, n: int) -> Position:
        if self._postgres:
            return PostgresPosition(lsn=n, commit_lsn=n, tx_id=n)
        return MariaDbPosition(gtid=str(n), file=str(n), pos=n, server_id=n, row=n)

    # -- per transaction ---------------------------------------------------------------------------

    def start(self, tx: SourceTransaction, *, ts_ms: int, last_commit_lsn: int | None = None) -> None:
        """Begin the messages of `tx`; arguments as for `change_value`."""
        self._tx = tx
        self._tx_id = orjson.dumps(tx.id)
        # Rendered once here for the markers and the events (a method call each time otherwise).
        self._commit = self._commit_clock.render(tx.commit_ts_ms)
        self._tx_ms = ts_ms
        self._tx_last_commit_lsn = last_commit_lsn
        self._tx_raw = ()  # rendered with the first change
        self._tx_args = None  # only if the transaction needs a stage-2 template
        self._shapes.clear()
        self._shape_table = None

    def one(
        self, tx: SourceTransaction, change: RowChange, *, ts_ms: int, last_commit_lsn: int | None = None
    ) -> tuple[bytes, bytes, bytes, bytes]:
        """A streamed transaction of one change in one call: the markers' key, BEGIN, the change's value
        and END; the same bytes as `start`, `key`, `begin`, `value(change, 1, 1)` and `end_single`."""
        self.start(tx, ts_ms=ts_ms, last_commit_lsn=last_commit_lsn)
        table, op = change.table, change.op
        last_table, last_op, last_snapshot, found = self._last1
        if last_table is not table or last_op is not op or last_snapshot is not tx.snapshot:
            found = self._stage1_template(table, op, tx.snapshot)
        one_stage = found[2]
        value = self._value(change, 1, 1) if one_stage is None else self._one_stage(one_stage, change, 1, 1)
        tx_id, commit_ms = self._tx_id, self._commit[0]
        last_table, collections = self._last_one_collections
        if table is not last_table:
            collections = b"[%b]" % (self._collection_entry(table) % 1,)
            self._last_one_collections = (table, collections)
        return (self._key % (tx_id,), self._begin % (tx_id, commit_ms), value,
                self._end % (tx_id, 1, collections, commit_ms))

    def key(self) -> bytes:
        """The key of the transaction's BEGIN and END markers."""
        return self._key % (self._tx_id,)

    def begin(self) -> bytes:
        return self._begin % (self._tx_id, self._commit[0])

    def end_single(self, table: TableId, count: int) -> bytes:
        """`end([(table, count)])`: the END marker of a transaction of one table (most are)."""
        return self._end % (
            self._tx_id, count, b"[%b]" % (self._collection_entry(table) % count,),
            self._commit[0],
        )

    def end(self, event_counts: Iterable[tuple[TableId, int]]) -> bytes:
        """The END marker, with each table's event count in the order given (first seen)."""
        entries = []
        total = 0
        for table, count in event_counts:
            entries.append(self._collection_entry(table) % count)
            total += count
        collections = b"[" + (entries[0] if len(entries) == 1 else b",".join(entries)) + b"]"
        return self._end % (self._tx_id, total, collections, self._commit[0])

    def _collection_entry(self, table: TableId) -> bytes:
        """The `data_collections` entry of `table`, with a "%d" for its count. The last one is found by
        identity: TableId hashes in Python, and consecutive transactions mostly touch the same table."""
        last_table, entry = self._last_collection
        if table is last_table:
            return entry
        found = self._collections.get(table)
        if found is None:
            rendered = _template({"data_collection": str(table), "event_count": _marker("total_order")})
            found = self._collections[table] = self._checked(rendered, ["total_order"])
        self._last_collection = (table, found)
        return found

    def _render_tx_raw(self) -> tuple[bytes, ...]:
        """The transaction's fields, in `_tx_fields` order."""
        tx = self._tx
        commit_ms, commit_us, commit_ns = self._commit
        now_ms, now_us, now_ns = self._now_clock.render(self._tx_ms)
        origin = _NULL if tx.origin is None else orjson.dumps(tx.origin)
        raw: tuple[bytes, ...]
        if self._postgres:
            lsn = self._tx_last_commit_lsn
            # The first element of `source.sequence`, as it reads inside that JSON string.
            seq_first = _NULL if lsn is None else b'\\"%d\\"' % lsn
            raw = (commit_ms, seq_first, commit_us, commit_ns, origin, now_ms, now_us, now_ns, self._tx_id)
        else:
            raw = (commit_ms, commit_us, commit_ns, origin, now_ms, now_us, now_ns, self._tx_id)
        self._tx_raw = raw
        return raw

    def _render_tx_args(self) -> tuple[bytes, ...]:
        """The transaction's fields for a stage-2 template: escaped for the `%` per event (only the
        origin and the transaction id, JSON strings, can hold a '%')."""
        raw = self._tx_raw or self._render_tx_raw()
        args = tuple(_escaped(a) if f in ("origin", "tx_id") else a for f, a in zip(self._tx_fields, raw, strict=True))
        self._tx_args = args
        return args

    def _stage1_template(self, table: TableId, op: Op, snapshot: bool) -> _Stage1:
        last_table, last_op, last_snapshot, found = self._last1
        if last_table is table and last_op is op and last_snapshot is snapshot:
            return found
        found = self._stage1.get((table, op, snapshot)) or self._render_stage1(table, op, snapshot)
        self._last1 = (table, op, snapshot, found)
        return found

    def _render_stage1(self, table: TableId, op: Op, snapshot: bool) -> _Stage1:
        truncate = op is Op.TRUNCATE
        probe_tx = SourceTransaction(id="", commit_ts_ms=0, position=self._probe_position(0), snapshot=snapshot)
        probe = RowChange(table, op, {}, None if truncate else {}, None if truncate else {}, self._probe_position(1))
        value = change_value(probe, probe_tx, self._info, data_collection_order=1, total_order=1, ts_ms=0,
                             last_commit_lsn=0)
        # The variable fields, by name, as change_value/source_block fill them. `before` and `after`
        # are taken as they are for every op but truncate (for which change_value writes nulls).
        if not truncate:
            value.update(before=_marker("before"), after=_marker("after"))
        value.update(ts_ms=_marker("now_ms"), ts_us=_marker("now_us"), ts_ns=_marker("now_ns"))
        if value["transaction"] is not None:
            value["transaction"] = {
                **value["transaction"],
                "id": _marker("tx_id"),
                "total_order": _marker("total_order"),
                "data_collection_order": _marker("collection_order"),
            }
        source = value["source"]
        source.update(ts_ms=_marker("commit_ms"), ts_us=_marker("commit_us"), ts_ns=_marker("commit_ns"),
                      origin=_marker("origin"))
        if self._postgres:
            source.update(sequence=orjson.Fragment(b'"[\x00seq_first\x00,\\"\x00seq_lsn\x00\\"]"'),
                          txId=_marker("xid"), lsn=_marker("lsn"))
        else:
            source.update(server_id=_marker("server_id"), gtid=_marker("gtid"), file=_marker("file"),
                          pos=_marker("pos"), row=_marker("row"))
        template, names = _template(value, self._event_fields, stages=2)
        # `value` and `_render_tx_args` give the fields in these orders.
        event_fields = [n for n in self._event_fields if n in names]
        tx_fields = [n for n in self._tx_fields if n in names]
        self._checked((template, [n for n in names if n in self._event_fields]), event_fields)
        self._checked((template, [n for n in names if n not in self._event_fields]), tx_fields)
        if tx_fields != list(self._tx_fields[: len(tx_fields)]):
            raise RuntimeError(f"envelope template has transaction fields {tx_fields}")
        one_stage = None
        if not snapshot and not truncate:
            fields = _PG_ONE_STAGE_FIELDS if self._postgres else _MARIADB_ONE_STAGE_FIELDS
            one_stage = self._checked(_template(value), list(fields))
        found = self._stage1[(table, op, snapshot)] = (template, len(tx_fields), one_stage)
        return found

    # -- per event ---------------------------------------------------------------------------------

    def value(self, change: RowChange, total_order: int, collection_order: int) -> bytes:
        """The message value of `change`, the `total_order`-th event of the transaction and the
        `collection_order`-th of its table."""
        if change.table is self._shape_table and change.op is self._shape_op and self._shape_usual:
            # The next create/update/delete like the one before in this transaction (not a snapshot's).
            position: Any = change.position
            if self._postgres:
                xid = position.tx_id
                if xid != self._xid:
                    self._set_xid(xid)
                lsn = position.lsn
                return self._shape_template % (orjson.dumps(change.before), orjson.dumps(change.after), lsn,
                                               self._xid_json, lsn, total_order, collection_order)
            gtid, file = self._gtid_and_file(position)
            return self._shape_template % (orjson.dumps(change.before), orjson.dumps(change.after),
                                           position.server_id, gtid, file, position.pos, position.row, total_order,
                                           collection_order)
        return self._value(change, total_order, collection_order)

    def _set_xid(self, xid: int | None) -> None:
        self._xid = xid
        self._xid_json = _NULL if xid is None else b"%d" % xid

    def _value(self, change: RowChange, total_order: int, collection_order: int) -> bytes:
        """`value` for the first event of its table and op in the transaction (rendered in one go, if a
        create/update/delete outside a snapshot), for the second (which makes the stage-2 template),
        and for the shapes without a fast path (snapshot reads, truncates)."""
        table, op, snapshot = change.table, change.op, self._tx.snapshot
        last_table, last_op, last_snapshot, found = self._last1
        if last_table is not table or last_op is not op or last_snapshot is not snapshot:
            found = self._stage1_template(table, op, snapshot)
        stage1, n_tx_fields, one_stage = found
        position: Any = change.position
        for shape in self._shapes:
            if shape[0] is table and shape[1] is op:
                break
        else:
            shape = [table, op, None]
            self._shapes.append(shape)
            if one_stage is not None:
                return self._one_stage(one_stage, change, total_order, collection_order)
        template: bytes | None = shape[2]
        if template is None:
            template = shape[2] = stage1 % (self._tx_args or self._render_tx_args())[:n_tx_fields]
        self._shape_table, self._shape_op, self._shape_template = table, op, template
        self._shape_usual = one_stage is not None
        if self._postgres:
            xid = position.tx_id
            if xid != self._xid:
                self._set_xid(xid)
            lsn = position.lsn
            source: tuple[Any, ...] = (lsn, self._xid_json, lsn)
        else:
            source = (position.server_id, *self._gtid_and_file(position), position.pos, position.row)
        orders = () if snapshot else (total_order, collection_order)
        if op is Op.TRUNCATE:
            return template % (*source, *orders)
        # orjson renders None as null, as the dict path does.
        return template % (orjson.dumps(change.before), orjson.dumps(change.after), *source, *orders)

    def _one_stage(self, template: bytes, change: RowChange, total_order: int, collection_order: int) -> bytes:
        position: Any = change.position
        before, after = orjson.dumps(change.before), orjson.dumps(change.after)
        if self._postgres:
            xid = position.tx_id
            if xid != self._xid:  # `_set_xid`, inline: with one-row transactions, once per event
                self._xid = xid
                self._xid_json = _NULL if xid is None else b"%d" % xid
            lsn = position.lsn
            commit_ms, seq_first, commit_us, commit_ns, origin, now_ms, now_us, now_ns, tx_id = (
                self._tx_raw or self._render_tx_raw()
            )
            return template % (before, after, commit_ms, seq_first, lsn, commit_us, commit_ns, self._xid_json, lsn,
                               origin, now_ms, now_us, now_ns, tx_id, total_order, collection_order)
        gtid, file = self._gtid_and_file(position)
        commit_ms, commit_us, commit_ns, origin, now_ms, now_us, now_ns, tx_id = self._tx_raw or self._render_tx_raw()
        return template % (before, after, commit_ms, commit_us, commit_ns, position.server_id, gtid, file,
                           position.pos, position.row, origin, now_ms, now_us, now_ns, tx_id, total_order,
                           collection_order)

    def _gtid_and_file(self, position: Any) -> tuple[bytes, bytes]:
        """A MariaDB position's GTID and file name as JSON (rendered again only when they change)."""
        gtid, gtid_json, file, file_json = self._last_gtid
        if position.gtid != gtid or position.file != file:
            gtid, file = position.gtid, position.file
            gtid_json, file_json = orjson.dumps(gtid), orjson.dumps(file)
            self._last_gtid = (gtid, gtid_json, file, file_json)
        return gtid_json, file_json

    def _self_check(self) -> None:
        """Compare with the dict-building functions on probe transactions covering every op and the
        nullable fields both ways; raise if any byte differs (a template out of step with them)."""
        info = self._info
        tables = [TableId("s%1", "t\u00e9\"%d"), TableId("s", "t")]
        row = {"id": 1, "v": "x%s\u00fc"}
        for snapshot, origin, last_commit_lsn, xid, commit_ms in [
            (False, None, None, None, 1_700_000_000_123), (False, "o%b\"\u00e9", 7, 42, 0), (True, None, 3, 9, -5),
        ]:
            tx = SourceTransaction(id=f"{xid}:%d\u00e9", commit_ts_ms=commit_ms, position=self._probe_position(5),
                                   origin=origin, snapshot=snapshot)
            self.start(tx, ts_ms=1_700_000_000_456, last_commit_lsn=last_commit_lsn)
            order = EventOrder()
            ops = [Op.READ] if snapshot else [Op.CREATE, Op.UPDATE, Op.DELETE, Op.TRUNCATE]
            shapes = [(op, table) for op in ops for table in tables]
            # Each shape's first event (one-stage), second (stage 2 made) and later ones (fast path),
            # in a row and interleaved with other shapes.
            events = [shape for shape in shapes for _ in range(3)] + shapes + shapes
            for n, (op, table) in enumerate(events):
                position: Position
                if self._postgres:
                    position = PostgresPosition(lsn=100 + n, commit_lsn=200, tx_id=xid)
                else:
                    # GTID and file change at different events (both are cached from one to the next).
                    position = MariaDbPosition(gtid=f"0-1-{n // 4}", file=f"f{n // 3}", pos=300 + n, server_id=n,
                                               row=n)
                change = RowChange(table, op, {"id": 1}, None if op in (Op.CREATE, Op.READ, Op.TRUNCATE) else row,
                                   None if op in (Op.DELETE, Op.TRUNCATE) else row, position)
                total, per_table = order.next(table)
                expected = dumps(change_value(change, tx, info, data_collection_order=per_table, total_order=total,
                                              ts_ms=1_700_000_000_456, last_commit_lsn=last_commit_lsn))
                if self.value(change, total, per_table) != expected:
                    raise RuntimeError(f"EnvelopeEncoder renders {op.value} events unlike change_value: {expected!r}")
            key, begin = transaction_begin(tx, info)
            _, end = transaction_end(tx, info, order.per_table)
            if (self.key(), self.begin(), self.end(order.per_table.items())) != (dumps(key), dumps(begin), dumps(end)):
                raise RuntimeError("EnvelopeEncoder renders transaction markers unlike transaction_begin/_end")
            for table in tables:
                _, end = transaction_end(tx, info, [(table, 3)])
                if self.end_single(table, 3) != dumps(end):
                    raise RuntimeError("EnvelopeEncoder.end_single renders END markers unlike transaction_end")
            if snapshot:
                continue
            for op in ops:
                for table in tables:  # each shape twice: the second finds its templates cached
                    for _ in range(2):
                        change = RowChange(table, op, {"id": 2}, None if op in (Op.CREATE, Op.TRUNCATE) else row,
                                           None if op in (Op.DELETE, Op.TRUNCATE) else row, position)
                        expected = dumps(change_value(change, tx, info, data_collection_order=1, total_order=1,
                                                      ts_ms=1_700_000_000_456, last_commit_lsn=last_commit_lsn))
                        _, end_one = transaction_end(tx, info, [(table, 1)])
                        got = self.one(tx, change, ts_ms=1_700_000_000_456, last_commit_lsn=last_commit_lsn)
                        if got != (dumps(key), dumps(begin), expected, dumps(end_one)):
                            raise RuntimeError(f"EnvelopeEncoder.one renders {op.value} transactions unlike "
                                               "change_value/transaction_begin/transaction_end")
        self._stage1.clear()
        self._last1 = (None, None, None, (b"", 0, None))
        self._collections.clear()
        self._last_collection = (None, b"")
        self._last_one_collections = (None, b"")
        self._shapes.clear()
        self._shape_table = None
