"""PostgreSQL capture: a pgoutput logical replication slot read over the streaming replication protocol.

psycopg 3 has no replication API, so the stream is read with psycopg2's LogicalReplicationConnection
(see shared notes); catalog queries and the snapshot use psycopg 3. Protocol version 1 is used on
purpose: the server then sends a transaction only once it committed, so its changes can be published
as they arrive, and the Origin message (the replicator's loop tag) always follows Begin directly.
"""

from __future__ import annotations

import contextlib
import logging
import select
import struct
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg import sql

from replicator.capture.base import (
    Heartbeat,
    OneChangeTx,
    SnapshotChunk,
    SnapshotDone,
    StreamItem,
    TxBegin,
    TxCommit,
)
from replicator.capture.postgres import pgoutput as pg
from replicator.capture.postgres.inserts import InsertDecoder, compile_insert_decoder
from replicator.capture.postgres.pgoutput import PG_EPOCH_UNIX_MS
from replicator.capture.postgres.types import Decoder, UnsupportedColumnType, make_decoder, make_relation_decoders
from replicator.capture.snapshot import ReplayWindow, Resnapshot, ResnapshotRequests, SnapshotProgress, integer_key
from replicator.config import PostgresSourceConfig, ResolvedConnection
from replicator.envelope.debezium import UNAVAILABLE_VALUE_PLACEHOLDER
from replicator.errors import ConfigError, FatalError, RetriableError
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
from replicator.network import libpq_options
from replicator.transport.kafka import OffsetStore

log = logging.getLogger(__name__)

# A re-snapshot reads one chunk per streamed transaction, and chunks for this long when the stream is idle.
_IDLE_CHUNKS_S = 0.2

# The session settings the text decoders rely on (see capture/postgres/types.py).
SESSION_OPTIONS = (
    "-c DateStyle=ISO -c IntervalStyle=postgres -c bytea_output=hex -c TimeZone=UTC -c extra_float_digits=3"
)


@dataclass(slots=True)
class _Table:
    table: TableId
    columns: tuple[str, ...]
    decoders: tuple[Decoder, ...]
    key_indexes: tuple[int, ...]
    key_names: tuple[str, ...]  # the primary key, in index order
    single_key: bool = False
    # Insert payload -> (key, row), or None for the general path (capture/postgres/inserts.py).
    decode_insert: InsertDecoder = field(init=False)

    def __post_init__(self) -> None:
        self.single_key = len(self.key_names) == 1
        self.decode_insert = compile_insert_decoder(self.columns, self.decoders, self.key_indexes)

    def key_of(self, row: Row) -> Row:
        """The message key: the primary-key columns of a decoded row."""
        return {name: row[name] for name in self.key_names}


# The Begin and Commit messages, read here rather than by pgoutput.parse_message (which builds a
# message object: 1 µs each, two per transaction); a payload of another length goes to parse_message
# for its error. Layouts as in pgoutput.py: B final_lsn, commit time, xid; C flags, commit_lsn,
# end_lsn, commit time.
_BEGIN = struct.Struct(">QqI")
_BEGIN_SIZE = 1 + _BEGIN.size
_COMMIT = struct.Struct(">BQQq")
_COMMIT_SIZE = 1 + _COMMIT.size


# PostgresPosition is a frozen dataclass, whose __init__ sets each field through object.__setattr__
# (0.7 µs; one position per event). Filling its slots directly gives the same object for half that.
_new_object = object.__new__
_set_lsn, _set_commit_lsn, _set_tx_id = (
    getattr(PostgresPosition, name).__set__ for name in ("lsn", "commit_lsn", "tx_id")
)


def _position(lsn: int, commit_lsn: int, tx_id: int | None) -> PostgresPosition:
    position: PostgresPosition = _new_object(PostgresPosition)
    _set_lsn(position, lsn)
    _set_commit_lsn(position, commit_lsn)
    _set_tx_id(position, tx_id)
    return position


@dataclass(frozen=True, slots=True)
class _Catalog:
    enum_oids: frozenset[int]
    array_element_oids: dict[int, int]
    domain_base_oids: dict[int, int]


def primary_key_columns(conn: psycopg.Connection[tuple[Any, ...]], table: TableId) -> tuple[str, ...]:
    """The primary-key columns of a table, in index order."""
    rows = conn.execute(
        """SELECT a.attname FROM pg_index i
           JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.ord""",
        (f'"{table.namespace}"."{table.table}"',),
    ).fetchall()
    return tuple(r[0] for r in rows)


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class PostgresCaptureSource(ResnapshotRequests):
    connector = Connector.POSTGRESQL

    def __init__(self, config: PostgresSourceConfig, offsets: OffsetStore) -> None:
        self.config = config
        self.name = config.name
        self._conn_info: ResolvedConnection = config.connection.resolve(f"sources.{config.name}.connection", 5432)
        self.database = self._conn_info.database
        self._offsets = offsets
        self._tables: list[TableId] = [TableId(*t.split(".", 1)) for t in config.tables]
        self._relations: dict[int, _Table] = {}
        # The same relations keyed by the 4 bytes of their OID as an Insert payload carries them (bytes 1-4):
        # a slice and a dict lookup, where decoding the OID first costs twice as much (once per row).
        self._relations_by_oid_bytes: dict[bytes, _Table] = {}
        self._primary_keys: dict[TableId, tuple[str, ...]] = {}
        self._catalog = _Catalog(frozenset(), {}, {})
        self._repl: Any = None
        self._cursor: Any = None
        self._snapshot_name: str | None = None
        self._needs_snapshot = False
        self._snapshot_saved = False
        self._snapshot_ts_ms = 0
        # What of an interrupted snapshot is in Kafka (capture/snapshot.py), and whether this run resumes one.
        self._progress = SnapshotProgress({}, 0)
        self._resuming = False
        self._created_at_lsn = ""
        # Changes to drop because a snapshot read later contains them (None: nothing to drop).
        self._window: ReplayWindow | None = None
        self._last_window: ReplayWindow | None = None  # the newest one, open or closed: stored with the offsets
        # Whether a done record (with the window) was saved, and how many passes its window held then.
        self._snapshot_done_saved = False
        self._window_saved_passed = 0
        self._no_requests_yet()  # re-snapshot requests (ResnapshotRequests)
        self._stopping = False
        self._flush_lsn = 0
        self._feedback_due = False
        self._last_feedback = 0.0

    # -- set-up ------------------------------------------------------------------------------------

    def tables(self) -> list[TableId]:
        return list(self._tables)

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            info = self._conn_info
            return psycopg.connect(
                host=info.host,
                port=info.port,
                user=info.user,
                dbname=info.database,
                password=info.password.get_secret_value(),
                options=SESSION_OPTIONS,
                autocommit=True,
                **libpq_options(info.network_timeout_s),
            )
        except psycopg.OperationalError as exc:
            raise RetriableError(f"source {self.name}: cannot connect to {self._conn_info.describe()}: {exc}") from None

    def open(self) -> None:
        with self._connect() as conn:
            self._check_server(conn)
            self._check_tables(conn)
            self._catalog = self._load_catalog(conn)
            self._ensure_publication(conn)
            slot_exists = (
                conn.execute(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()",
                    (self.config.slot_name,),
                ).fetchone()
                is not None
            )
        state = self._offsets.load() or {}
        if state.get("slot") == self.config.slot_name and state.get("snapshot_done") and not slot_exists:
            raise FatalError(
                f"source {self.name}: replication slot {self.config.slot_name} was dropped, so the changes made "
                f"since the slot was last read are lost to capture. Delete the source's offsets topic "
                f"({self._offsets.topic}) to start over with a new snapshot, or restore the slot."
            )
        snapshot_pending = self.config.snapshot == "initial" and not (
            slot_exists and state.get("slot") == self.config.slot_name and state.get("snapshot_done")
        )
        self._repl = self._replication_connection()
        self._cursor = self._repl.cursor()
        progress = state.get("snapshot_progress")
        created_at = state.get("created_at_lsn")
        if (
            slot_exists
            and snapshot_pending
            and state.get("slot") == self.config.slot_name
            and isinstance(progress, dict)
            and isinstance(created_at, str)
        ):
            # An interrupted snapshot whose progress was recorded: the slot has not moved since it was
            # created (nothing streamed is acknowledged before the snapshot is complete), so stream from
            # it and read only the rest of the snapshot, in a new exported snapshot (see _snapshot).
            self._progress = SnapshotProgress.from_json(progress, 0)
            self._created_at_lsn = created_at
            self._resuming = True
            log.info("source %s: resuming the interrupted snapshot (%s)", self.name, self._progress.to_json())
        elif slot_exists and snapshot_pending:
            # A snapshot was interrupted (or never recorded): its exported snapshot died with the session,
            # so start over from a fresh slot rather than stream from a point the snapshot did not match.
            log.warning("source %s: snapshot was not completed; recreating slot %s", self.name, self.config.slot_name)
            self._cursor.execute(f'DROP_REPLICATION_SLOT "{self.config.slot_name}" WAIT')
            slot_exists = False
        if not slot_exists:
            mode = "EXPORT_SNAPSHOT" if snapshot_pending else "NOEXPORT_SNAPSHOT"
            # Snapshot reads are versioned at the moment before the slot's consistent point: every change
            # streamed after it committed later, so conflict resolution never prefers the snapshot's value.
            self._snapshot_ts_ms = int(time.time() * 1000) - 1
            self._cursor.execute(f'CREATE_REPLICATION_SLOT "{self.config.slot_name}" LOGICAL pgoutput {mode}')
            _, consistent_point, snapshot_name, _ = self._cursor.fetchone()
            self._snapshot_name = snapshot_name
            self._created_at_lsn = consistent_point
            self._progress = SnapshotProgress({}, _parse_lsn(consistent_point))
            record: dict[str, Any] = {
                "slot": self.config.slot_name,
                "snapshot_done": not snapshot_pending,
                "created_at_lsn": consistent_point,
            }
            if snapshot_pending:
                record["snapshot_progress"] = {}
            self._offsets.save(record, wait=True)
        self._needs_snapshot = snapshot_pending
        done = state.get("resnapshot_done")
        self._resnapshot_done = done if isinstance(done, str) else None
        stored_window = ReplayWindow.stored(state.get("replay_window"))
        if slot_exists and not snapshot_pending and stored_window is not None:
            # The stream may restart before the point of the last snapshot read: drop what it contains.
            self._window = self._replay_window(*stored_window)
            self._window.restore_passed(state.get("replay_window"))
            self._snapshot_done_saved = True
            self._window_saved_passed = self._window.passed_count
        self._watch_requests()

    def _replication_connection(self) -> Any:
        info = self._conn_info
        try:
            return psycopg2.connect(
                host=info.host,
                port=info.port,
                user=info.user,
                dbname=info.database,
                password=info.password.get_secret_value(),
                # The walsender ends a stream whose reader stopped answering (a lost host, a frozen process)
                # after wal_sender_timeout, which frees the slot for a standby capture.
                options=f"{SESSION_OPTIONS} -c wal_sender_timeout={self.config.session_timeout_s}s",
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
                **libpq_options(info.network_timeout_s),
            )
        except psycopg2.OperationalError as exc:
            raise RetriableError(
                f"source {self.name}: cannot open a replication connection to {info.describe()}: "
                f"{str(exc).strip()} (the user needs the REPLICATION attribute and a pg_hba 'replication' entry)"
            ) from None

    def _check_server(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        problems = []
        (wal_level,) = conn.execute("SHOW wal_level").fetchone() or ("?",)
        if wal_level != "logical":
            problems.append(
                f"source {self.name}: the server runs with wal_level={wal_level}; logical decoding needs "
                "wal_level=logical in postgresql.conf (then restart PostgreSQL)"
            )
        (encoding,) = conn.execute("SHOW server_encoding").fetchone() or ("?",)
        if encoding != "UTF8":
            problems.append(f"source {self.name}: database encoding is {encoding}; capture needs UTF8")
        if problems:
            raise ConfigError(problems)

    def _check_tables(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        problems: list[str] = []
        for table in self._tables:
            row = conn.execute(
                """SELECT c.oid, c.relreplident,
                          EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""",
                (table.namespace, table.table),
            ).fetchone()
            if row is None:
                problems.append(f"source {self.name}: table {table} does not exist")
                continue
            _oid, replident, has_pk = row
            if not has_pk:
                problems.append(
                    f"source {self.name}: table {table} has no primary key; events are keyed by it, so add one "
                    f"(ALTER TABLE {table} ADD PRIMARY KEY (...))"
                )
            if replident == "n":
                problems.append(f"source {self.name}: table {table} has REPLICA IDENTITY NOTHING; use DEFAULT or FULL")
        if problems:
            raise ConfigError(problems)
        catalog = self._load_catalog(conn)
        for table in self._tables:
            for name, type_oid, typmod, type_name in conn.execute(
                """SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod)
                   FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
                   ORDER BY a.attnum""",
                (f'"{table.namespace}"."{table.table}"',),
            ).fetchall():
                try:
                    make_decoder(
                        type_oid,
                        typmod,
                        type_name=type_name,
                        enum_oids=catalog.enum_oids,
                        array_element_oids=catalog.array_element_oids,
                        domain_base_oids=catalog.domain_base_oids,
                        table=str(table),
                        column=name,
                    )
                except UnsupportedColumnType as exc:
                    problems.append(f"source {self.name}: {exc}")
        if problems:
            raise ConfigError(problems)

    @staticmethod
    def _load_catalog(conn: psycopg.Connection[tuple[Any, ...]]) -> _Catalog:
        enums = frozenset(oid for (oid,) in conn.execute("SELECT oid::int FROM pg_type WHERE typtype = 'e'"))
        arrays = dict(
            conn.execute(
                "SELECT oid::int, typelem::int FROM pg_type WHERE typcategory = 'A' AND typelem <> 0 AND oid >= 16384"
            ).fetchall()
        )
        domains = dict(conn.execute("SELECT oid::int, typbasetype::int FROM pg_type WHERE typtype = 'd'").fetchall())
        return _Catalog(enums, arrays, domains)

    def _ensure_publication(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        name = sql.Identifier(self.config.publication_name)
        tables = sql.SQL(", ").join(sql.Identifier(t.namespace, t.table) for t in self._tables)
        exists = conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.config.publication_name,)
        ).fetchone()
        try:
            if exists:
                conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, tables))
            else:
                conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, tables))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"source {self.name}: cannot create or alter publication {self.config.publication_name}: {exc}; "
                "create it as the tables' owner or grant ownership"
            ) from None

    # -- streaming ---------------------------------------------------------------------------------

    def stream(self) -> Iterator[StreamItem]:
        if self._needs_snapshot:
            yield from self._snapshot()
        if self._stopping:
            return
        if self._resuming:
            # The slot streams from the first snapshot's point; rows read later already contain the
            # changes committed before the point they were read at.
            self._window = self._replay_window(self._progress, frozenset(self._tables), self._progress.point)
        yield from self._serve_request_before_streaming()
        if self._stopping:
            return
        try:
            self._cursor.start_replication(
                slot_name=self.config.slot_name,
                decode=False,
                status_interval=max(1.0, self.config.heartbeat_interval_s),  # psycopg2 refuses less
                options={"proto_version": "1", "publication_names": self.config.publication_name},
            )
        except psycopg2.errors.UndefinedObject as exc:
            raise FatalError(
                f"source {self.name}: {str(exc).strip()}; the slot was dropped while capture ran"
            ) from None
        except psycopg2.OperationalError as exc:
            raise RetriableError(f"source {self.name}: could not start replication: {str(exc).strip()}") from None
        except psycopg2.Error as exc:
            raise FatalError(f"source {self.name}: could not start replication: {str(exc).strip()}") from None
        yield from self._replicate()

    def _replay_window(self, progress: SnapshotProgress, tables: frozenset[TableId], newest: int) -> ReplayWindow:
        def before(tx: SourceTransaction, point: Any) -> bool:
            assert isinstance(tx.position, PostgresPosition)
            return bool(tx.position.commit_lsn < point)

        def past(tx: SourceTransaction, newest: Any) -> bool:
            assert isinstance(tx.position, PostgresPosition)
            return bool(tx.position.commit_lsn >= newest)

        window = self._last_window = ReplayWindow(progress, tables, newest, before, past)
        return window

    def _replicate(self) -> Iterator[StreamItem]:
        cursor = self._cursor
        read_message = cursor.read_message
        parse = pg.parse_message
        relations = self._relations
        by_oid_bytes = self._relations_by_oid_bytes
        create = Op.CREATE
        new = _new_object
        set_lsn, set_commit_lsn, set_tx_id = _set_lsn, _set_commit_lsn, _set_tx_id
        tx: SourceTransaction | None = None
        # The open transaction's position fields, for its events' positions.
        tx_lsn = commit_lsn = 0
        xid: int | None = None
        begun = False  # the transaction's TxBegin was yielded
        pending: RowChange | None = None  # its first change, not yielded yet (see OneChangeTx)
        last_heartbeat = time.monotonic()
        interval = self.config.heartbeat_interval_s
        # The replay window, when one is open: `covered` when the open transaction is inside it.
        window = self._window
        covered = False
        while True:
            if tx is None and self._stopping:
                return
            try:
                msg = read_message()
            except psycopg2.OperationalError as exc:
                raise RetriableError(f"source {self.name}: replication stream lost: {str(exc).strip()}") from None
            except psycopg2.errors.ObjectNotInPrerequisiteState as exc:
                raise FatalError(f"source {self.name}: {str(exc).strip()}") from None
            if msg is None:
                self._send_feedback(force=False)
                wait = min(1.0, interval)
                if tx is None:
                    # Idle: let the runner serve Kafka's confirmations; every interval, also offer the
                    # server's WAL position so an idle slot does not pin WAL.
                    now = time.monotonic()
                    position = None
                    if now - last_heartbeat >= interval:
                        last_heartbeat = now
                        if cursor.wal_end:
                            position = PostgresPosition(lsn=cursor.wal_end, commit_lsn=cursor.wal_end, tx_id=None)
                        # Ask for a keepalive: it carries how far the server has decoded (skipping other
                        # tables' changes), which becomes the next heartbeat's position.
                        self._request_keepalive()
                    heartbeat = Heartbeat(position)
                    yield heartbeat
                    if heartbeat.wait_s is not None:
                        wait = min(wait, heartbeat.wait_s)
                    yield from self._check_requests()
                    if self._resnap is not None:
                        # Idle: read chunks for a while before looking at the stream again.
                        until = time.monotonic() + _IDLE_CHUNKS_S
                        while self._resnap is not None and not self._stopping and time.monotonic() < until:
                            yield from self._resnapshot_chunk()
                        window = self._window
                        continue  # look at the stream without waiting
                    window = self._window
                with contextlib.suppress(InterruptedError):
                    select.select([cursor], [], [], wait)
                continue
            payload = msg.payload
            kind = payload[0]
            if kind == 0x42:  # B
                if len(payload) == _BEGIN_SIZE:
                    tx_lsn, commit_ts_us, begin_xid = _BEGIN.unpack_from(payload, 1)
                else:  # malformed: parse_message raises its decode error
                    begin = parse(payload, False)
                    assert isinstance(begin, pg.Begin)
                    tx_lsn, commit_ts_us, begin_xid = begin.final_lsn, begin.commit_ts_pg_us, begin.xid
                commit_lsn = tx_lsn
                xid = begin_xid
                # Inlined, as in the Insert branch below (one transaction per row is common): the id is
                # postgres_transaction_id's and the time pgoutput.pg_timestamp_to_unix_ms's (both
                # checked against them in tests/unit/test_pg_capture_fast_paths.py).
                tx = SourceTransaction(
                    f"{begin_xid}:{commit_lsn}",
                    commit_ts_us // 1000 + PG_EPOCH_UNIX_MS,
                    _position(tx_lsn, commit_lsn, begin_xid),
                )
                begun = False
                if window is not None:
                    covered = window.covers(tx)
                    if window.closed:
                        window = self._window = None
                continue
            if kind == 0x4F:  # O: written by a session with a replication origin
                origin = pg.parse_message(payload, False)
                assert isinstance(origin, pg.Origin) and tx is not None
                if origin.name.startswith(self.config.origin_prefix):
                    tx.origin = origin.name
                continue
            if tx is None:
                if kind == 0x52:  # R can only come inside a transaction, but be lenient
                    self._on_relation(pg.parse_message(payload, False))
                    continue
                raise FatalError(f"source {self.name}: pgoutput message {chr(kind)!r} outside a transaction")
            if kind == 0x49:  # I: most of any stream, so handled here rather than in _changes
                if pending is not None:  # a second change: the transaction is not one of one change
                    begun = True
                    yield TxBegin(tx)
                    yield pending
                    pending = None
                known = by_oid_bytes.get(payload[1:5])
                decoded = None if known is None else known.decode_insert(payload)
                if decoded is not None and known is not None:
                    rel = known
                    key, after = decoded
                else:  # the general path, which also reports what is wrong with the payload
                    insert = parse(payload, False)
                    assert isinstance(insert, pg.Insert)
                    rel = relations.get(insert.relation_oid) or self._relation(insert.relation_oid)
                    after = self._full_row(rel, insert.new)
                    key = {rel.key_names[0]: after[rel.key_names[0]]} if rel.single_key else rel.key_of(after)
                # The position and the change filled slot by slot, as `_position` does: a dataclass
                # __init__ call costs twice as much, and this runs once per row.
                row_position: PostgresPosition = new(PostgresPosition)
                set_lsn(row_position, msg.data_start or tx_lsn)
                set_commit_lsn(row_position, commit_lsn)
                set_tx_id(row_position, xid)
                change: RowChange = new(RowChange)
                change.table = rel.table
                change.op = create
                change.key = key
                change.before = None
                change.after = after
                change.position = row_position
                if covered and window is not None and window.drops(change):
                    continue
                if not begun:
                    pending = change  # the first: held until the next message says whether it is the only one
                    continue
                yield change
                continue
            if pending is not None:
                # The transaction's first change was held back: if the commit follows, the two go out with
                # the begin as one item; anything else, and they go out as they came.
                if kind == 0x43 and len(payload) == _COMMIT_SIZE:
                    _flags, commit_lsn, end_lsn, _ts = _COMMIT.unpack_from(payload, 1)
                    yield OneChangeTx(tx, pending, _position(end_lsn, commit_lsn, xid))
                    pending = tx = None
                    covered = False
                    if self._after_commit_due():  # re-snapshot requests and chunks
                        yield from self._after_commit()
                        window = self._window
                    continue
                begun = True
                yield TxBegin(tx)
                yield pending
                pending = None
            elif not begun:
                begun = True
                yield TxBegin(tx)
            if kind == 0x43:  # C
                if len(payload) == _COMMIT_SIZE:
                    _flags, commit_lsn, end_lsn, _ts = _COMMIT.unpack_from(payload, 1)
                else:  # malformed: parse_message raises its decode error
                    commit = parse(payload, False)
                    assert isinstance(commit, pg.Commit)
                    commit_lsn, end_lsn = commit.commit_lsn, commit.end_lsn
                yield TxCommit(tx, _position(end_lsn, commit_lsn, xid))
                tx = None
                covered = False
                if self._after_commit_due():  # re-snapshot requests and chunks
                    yield from self._after_commit()
                    window = self._window
                continue
            message = parse(payload, False)
            if isinstance(message, pg.Relation):
                self._on_relation(message)
            elif isinstance(message, pg.TypeDefinition | pg.LogicalMessage):
                continue
            else:
                if covered and window is not None:
                    for change in self._changes(message, tx, msg.data_start):
                        if not window.drops(change):
                            yield change
                else:
                    yield from self._changes(message, tx, msg.data_start)

    def _on_relation(self, message: pg.Message) -> None:
        assert isinstance(message, pg.Relation)
        table = TableId(message.namespace, message.name)
        catalog = self._catalog
        try:
            decoders = make_relation_decoders(
                message,
                enum_oids=catalog.enum_oids,
                array_element_oids=catalog.array_element_oids,
                domain_base_oids=catalog.domain_base_oids,
            )
        except UnsupportedColumnType as exc:
            raise FatalError(f"source {self.name}: {exc}") from None
        # The message key is the primary key, in index order (as the snapshot writes it, so that both give
        # the same key bytes and partition); with REPLICA IDENTITY FULL every column is flagged as key.
        names = [c.name for c in message.columns]
        primary_key = self._primary_keys.get(table)
        if primary_key is None:
            primary_key = self._primary_keys[table] = self._load_primary_key(table)
        missing = [c for c in primary_key if c not in names]
        if not primary_key or missing:
            raise FatalError(f"source {self.name}: table {table} has no primary key (or lost columns {missing})")
        keys = tuple(names.index(c) for c in primary_key)
        rel = _Table(table, tuple(names), decoders, keys, tuple(primary_key))
        self._relations[message.relation_oid] = rel
        self._relations_by_oid_bytes[message.relation_oid.to_bytes(4, "big")] = rel

    def _load_primary_key(self, table: TableId) -> tuple[str, ...]:
        with self._connect() as conn:
            return primary_key_columns(conn, table)

    def _row(self, rel: _Table, values: pg.TupleData, fallback: pg.TupleData | None = None) -> Row:
        row: Row = {}
        for index, (name, decode, value) in enumerate(zip(rel.columns, rel.decoders, values, strict=True)):
            if value is None:
                row[name] = None
            elif value is pg.UNCHANGED_TOAST:
                # Not in the WAL: take it from the full old row if we have one, else mark it unavailable.
                old = fallback[index] if fallback is not None else None
                row[name] = decode(old) if isinstance(old, str) else UNAVAILABLE_VALUE_PLACEHOLDER
            elif isinstance(value, str):
                try:
                    row[name] = decode(value)
                except ValueError as exc:
                    raise FatalError(
                        f"source {self.name}: {rel.table}.{name}: cannot decode {value[:60]!r}: {exc}"
                    ) from None
            else:
                raise FatalError(f"source {self.name}: {rel.table}.{name}: unexpected binary value")
        return row

    def _full_row(self, rel: _Table, values: pg.TupleData) -> Row:
        """`_row` for a tuple that has every value (an insert's, a delete's old row): one comprehension
        instead of the general loop, which runs only to report an error or an unexpected value."""
        if pg.UNCHANGED_TOAST not in values:
            # str or None: no binary values, as the stream is started without the `binary` option.
            texts: tuple[Any, ...] = values
            try:
                return {
                    name: None if value is None else decode(value)
                    for name, decode, value in zip(rel.columns, rel.decoders, texts, strict=True)
                }
            except (ValueError, TypeError):
                pass
        return self._row(rel, values)

    def _key(self, rel: _Table, values: pg.TupleData) -> Row:
        key: Row = {}
        for i in rel.key_indexes:
            value = values[i]
            key[rel.columns[i]] = rel.decoders[i](value) if isinstance(value, str) else None
        return key

    def _changes(self, message: pg.Message, tx: SourceTransaction, lsn: int) -> Iterator[RowChange]:
        # Inserts are turned into RowChanges inline in `_replicate` (the same as the branch below).
        assert isinstance(tx.position, PostgresPosition)
        position = _position(lsn or tx.position.lsn, tx.position.commit_lsn, tx.position.tx_id)
        if isinstance(message, pg.Insert):
            rel = self._relation(message.relation_oid)
            after = self._full_row(rel, message.new)
            yield RowChange(rel.table, Op.CREATE, rel.key_of(after), None, after, position)
        elif isinstance(message, pg.Update):
            rel = self._relation(message.relation_oid)
            new_key = self._key(rel, message.new)
            full_old = message.old if message.old_kind == "O" else None
            after = self._row(rel, message.new, full_old)
            if message.old is not None:
                old_key = self._key(rel, message.old)
                if old_key != new_key:
                    # The key changed: like Debezium, a delete of the old key and a create of the new one,
                    # so each key's events stay in its own partition and order.
                    yield RowChange(rel.table, Op.DELETE, old_key, self._row(rel, message.old), None, position)
                    yield RowChange(rel.table, Op.CREATE, new_key, None, after, position)
                    return
            before_row = None if full_old is None else self._row(rel, full_old)
            yield RowChange(rel.table, Op.UPDATE, new_key, before_row, after, position)
        elif isinstance(message, pg.Delete):
            rel = self._relation(message.relation_oid)
            # With REPLICA IDENTITY DEFAULT the old tuple holds the key columns only (others null).
            before = self._full_row(rel, message.old)
            yield RowChange(rel.table, Op.DELETE, rel.key_of(before), before, None, position)
        elif isinstance(message, pg.Truncate):
            for oid in message.relation_oids:
                rel = self._relation(oid)
                yield RowChange(rel.table, Op.TRUNCATE, {}, None, None, position)
        else:
            raise FatalError(f"source {self.name}: unexpected pgoutput message {message!r}")

    def _relation(self, oid: int) -> _Table:
        try:
            return self._relations[oid]
        except KeyError:
            raise FatalError(f"source {self.name}: change for relation {oid} before its Relation message") from None

    # -- snapshot ----------------------------------------------------------------------------------

    def _snapshot(self) -> Iterator[StreamItem]:
        """Read every table as of the slot's exported snapshot, in primary-key chunks, as `r` events.

        Resuming an interrupted snapshot, the slot's snapshot is gone: the rest is read as of a snapshot
        exported by a temporary slot, whose consistent point becomes this run's point in the progress."""
        helper: Any = None
        try:
            if self._resuming:
                started_ms = int(time.time() * 1000) - 1
                helper, point, snapshot_name = self._temporary_snapshot()
                self._progress.point = _parse_lsn(point)
                log.info("source %s: reading the rest of the snapshot as of %s", self.name, point)
            else:
                assert self._snapshot_name is not None
                snapshot_name = self._snapshot_name
                started_ms = self._snapshot_ts_ms
            with self._connect() as conn:
                # autocommit stays on so that this BEGIN is the transaction's first statement, as
                # SET TRANSACTION SNAPSHOT requires.
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
                if helper is not None:
                    # Imported: the temporary slot (dropped with its session) is no longer needed.
                    helper.close()
                    helper = None
                yield from self._snapshot_tables(conn, started_ms)
        finally:
            if helper is not None:
                helper.close()

    def _temporary_snapshot(self) -> tuple[Any, str, str]:
        """(replication connection, consistent point, snapshot name) of a temporary slot created to export
        a snapshot whose point is known exactly; the slot goes with the connection."""
        helper = self._replication_connection()
        try:
            cursor = helper.cursor()
            temporary = f"{self.config.slot_name}_snap"[:63]
            cursor.execute(f'CREATE_REPLICATION_SLOT "{temporary}" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT')
            _, point, snapshot_name, _ = cursor.fetchone()
        except psycopg2.Error as exc:
            helper.close()
            raise RetriableError(f"source {self.name}: could not export a snapshot: {str(exc).strip()}") from None
        return helper, point, snapshot_name

    def _resnapshot_table_chunk(self, state: Resnapshot, table: TableId) -> Iterator[StreamItem]:
        """The next chunk of the re-snapshot being served, as `r` events read in a snapshot exported at a
        known point; then the streamed changes of the rows read so far that are older than their read
        point are dropped."""
        started_ms = int(time.time() * 1000) - 1
        helper, point, snapshot_name = self._temporary_snapshot()
        lsn = _parse_lsn(point)
        try:
            with self._connect() as conn:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
                helper.close()
                helper = None
                yield from state.read(
                    self._snapshot_table(conn, table, started_ms, state.progress, state.request), lsn
                )
                conn.execute("ROLLBACK")
        finally:
            if helper is not None:
                helper.close()
        if self._stopping:
            self._resnap = None  # the read may have stopped short: served again at the next start
            return
        self._window = self._replay_window(state.progress, state.window_tables, lsn)

    def _snapshot_tables(self, conn: psycopg.Connection[tuple[Any, ...]], started_ms: int) -> Iterator[StreamItem]:
        for table in self._tables:
            if self._progress.is_complete(table):
                continue  # in Kafka since an earlier run
            rows = self._snapshot_table(conn, table, started_ms, self._progress, None)
            # Resuming, this run reads at a later point than the stream starts from: the replay window needs
            # to know which rows the read returned.
            yield from self._progress.noting_reads(rows, table, self._progress.point) if self._resuming else rows
            if self._stopping:
                conn.execute("ROLLBACK")
                return
        conn.execute("ROLLBACK")
        yield SnapshotDone()

    def _snapshot_table(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        table: TableId,
        started_ms: int,
        progress: SnapshotProgress,
        request: str | None,
    ) -> Generator[StreamItem, None, None]:
        columns, decoders, key_cols = self._table_shape(conn, table)
        ident = sql.SQL("{} AS t").format(sql.Identifier(table.namespace, table.table))
        # Values are read as text so that the pgoutput decoders encode them exactly as streamed ones.
        select_list = sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in columns)
        key_list = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in key_cols)
        resume = progress.resume_after(table)
        last_key: tuple[Any, ...] | None = None
        if resume is not None and list(resume) == key_cols:
            last_key = tuple(resume.values())  # read on after the last chunk an earlier run got into Kafka
        chunk = self.config.snapshot_chunk_rows
        key_pos = [columns.index(c) for c in key_cols]
        raw_key = key_list
        chunk_no = 0
        while not self._stopping:
            if last_key is None:
                query = sql.SQL("SELECT {}, {} FROM {} ORDER BY {} LIMIT {}").format(
                    select_list, raw_key, ident, key_list, sql.Literal(chunk)
                )
                rows = conn.execute(query).fetchall()
            else:
                query = sql.SQL("SELECT {}, {} FROM {} WHERE ({}) > ({}) ORDER BY {} LIMIT {}").format(
                    select_list,
                    raw_key,
                    ident,
                    key_list,
                    sql.SQL(", ").join(sql.Placeholder() for _ in key_cols),
                    key_list,
                    sql.Literal(chunk),
                )
                rows = conn.execute(query, last_key).fetchall()
            if not rows:
                return
            chunk_no += 1
            tx = SourceTransaction(
                id=f"snapshot:{table}:{chunk_no}",
                commit_ts_ms=started_ms,
                position=PostgresPosition(lsn=0, commit_lsn=0, tx_id=None),
                snapshot=True,
            )
            yield TxBegin(tx)
            width = len(columns)
            for raw in rows:
                after = {
                    name: (None if value is None else decode(value))
                    for name, decode, value in zip(columns, decoders, raw[:width], strict=True)
                }
                key = {columns[i]: after[columns[i]] for i in key_pos}
                yield RowChange(table, Op.READ, key, None, after, tx.position)
            last_key = tuple(rows[-1][width:])
            resumable = dict(zip(key_cols, last_key, strict=True)) if integer_key(last_key) else None
            yield TxCommit(tx, SnapshotChunk(table, resumable, len(rows) < chunk, request))
            if len(rows) < chunk:
                return

    def _table_shape(
        self, conn: psycopg.Connection[tuple[Any, ...]], table: TableId
    ) -> tuple[list[str], list[Decoder], list[str]]:
        catalog = self._catalog
        rows = conn.execute(
            """SELECT a.attname, a.atttypid::int, a.atttypmod,
                      COALESCE(a.attnum = ANY (i.indkey), false)
               FROM pg_attribute a
               LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
               WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
            (f'"{table.namespace}"."{table.table}"',),
        ).fetchall()
        columns = [r[0] for r in rows]
        decoders = [
            make_decoder(
                r[1],
                r[2],
                enum_oids=catalog.enum_oids,
                array_element_oids=catalog.array_element_oids,
                domain_base_oids=catalog.domain_base_oids,
                table=str(table),
                column=r[0],
            )
            for r in rows
        ]
        key_cols = list(primary_key_columns(conn, table))
        return columns, decoders, key_cols

    # -- acknowledgement and shutdown ----------------------------------------------------------------

    def acknowledge(self, position: PostgresPosition | MariaDbPosition | SnapshotDone | SnapshotChunk) -> None:
        if isinstance(position, SnapshotDone) and position.request is not None:
            self._resnapshot_done = position.request
            self._offsets.save(self._done_record())
            return
        if isinstance(position, SnapshotChunk):
            if position.request is not None:
                return  # a re-snapshot is recorded once complete
            # Not waited for: a lost record only means that chunk is read again after a crash.
            self._progress.record(position, self._tables)
            self._offsets.save(
                {
                    "slot": self.config.slot_name,
                    "snapshot_done": False,
                    "created_at_lsn": self._created_at_lsn,
                    "snapshot_progress": self._progress.to_json(),
                }
            )
            return
        snapshot_chunk = isinstance(position, PostgresPosition) and position.lsn == 0
        if self._needs_snapshot and not self._snapshot_saved and not snapshot_chunk:
            # Positions are acknowledged in order, so the snapshot (read before any streamed change) is
            # wholly in Kafka: record it, or a restart would snapshot again.
            self._snapshot_saved = True
            # Waited for: once streamed positions are acknowledged to the slot, a restart that missed this
            # record would take a fresh snapshot instead of resuming.
            self._offsets.save(self._done_record(), wait=True)
        if not isinstance(position, PostgresPosition) or snapshot_chunk:
            return
        window = self._last_window
        if (window is not None and self._resnap is None and self._snapshot_done_saved
                and window.passed_count != self._window_saved_passed):
            # A delete or truncate passed the stored window since it was saved: store it again before the slot
            # moves past it, or a restart would drop the changes that follow it. Only a finished window is
            # stored (one still being read restarts from scratch); passes are rare, so this waits.
            self._offsets.save(self._done_record(), wait=True)
        if position.lsn > self._flush_lsn:
            self._flush_lsn = position.lsn
            self._feedback_due = True
            self._send_feedback(force=False)

    def _done_record(self) -> dict[str, Any]:
        self._snapshot_done_saved = True
        self._window_saved_passed = 0 if self._last_window is None else self._last_window.passed_count
        return {
            "slot": self.config.slot_name,
            "snapshot_done": True,
            "resnapshot_done": self._resnapshot_done,
            # Saved only once Kafka holds the snapshot reads it filters for; closes at once when passed.
            "replay_window": None if self._last_window is None else self._last_window.to_json(),
        }

    def _request_keepalive(self) -> None:
        try:
            self._cursor.send_feedback(flush_lsn=self._flush_lsn, reply=True)
        except psycopg2.Error as exc:
            raise RetriableError(f"source {self.name}: replication stream lost: {str(exc).strip()}") from None
        self._last_feedback = time.monotonic()
        self._feedback_due = False

    def _send_feedback(self, *, force: bool) -> None:
        if self._cursor is None or not self._flush_lsn:
            return
        now = time.monotonic()
        # Feedback is cheap but not free: at most ten a second unless asked to force it.
        if force or (self._feedback_due and now - self._last_feedback >= 0.1):
            try:
                self._cursor.send_feedback(flush_lsn=self._flush_lsn, reply=force)
            except psycopg2.Error as exc:
                raise RetriableError(
                    f"source {self.name}: could not acknowledge LSN {_lsn_text(self._flush_lsn)}: {exc}"
                ) from None
            self._feedback_due = False
            self._last_feedback = now

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._repl is not None:
            with contextlib.suppress(psycopg2.Error):
                self._send_feedback(force=True)
            self._repl.close()
            self._repl = None
            self._cursor = None
