"""MariaDB capture: the binary log read as a replica reads it, positioned by GTID.

The stream is mysql-replication's `BinLogStreamReader` in MariaDB GTID mode (`auto_position`), always
with `blocking=True`: against 10.11 a non-blocking dump loses events when the server resets the
connection at the end of the log (shared notes), so the reader blocks and the server's heartbeats
wake it up to notice `stop()`. Row values are decoded by `types.RowDecoder` from the table map alone
(`binlog_row_metadata=FULL`), so streaming never queries information_schema.

Positions. The resumable position is the GTID state: per replication domain, the last transaction
read ('0-1-42,7-3-9'). The state that goes with every handed-out transaction is remembered, and
`acknowledge` stores the state of the acknowledged one: it covers every transaction read before it in
every domain, captured or not, so a domain that only carries other tables still moves on and is not
left pointing at binlogs that get purged. Transactions without captured rows are not published: they
end in a `Heartbeat` whose position the runner acknowledges only when nothing is in flight.

Reading. `reader.CaptureReader` reads the four events nearly every transaction consists of (GTID,
TABLE_MAP, rows, XID) from the packet bytes, and `rows.py` compiles a decoder per table map that turns row
images into Debezium-encoded rows in place; mysql-replication's own parsing remains the general path
for every other event and for any row the compiled decoder declines (see those modules).

Loop prevention: a transaction whose GTID event carries LOG_EVENT_SKIP_REPLICATION_F (0x8000), set by
the replicator's writers with `SET SESSION skip_replication=1`, is tagged with origin
"skip_replication". The reader's own session must never set that flag: the server would then drop
those transactions from the dump altogether, and their positions would never be acknowledged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql
from pymysqlreplication.constants.CHARSET import charset_by_id
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from replicator.capture.base import Heartbeat, SnapshotChunk, SnapshotDone, StreamItem, TxBegin, TxCommit
from replicator.capture.mariadb.reader import CaptureReader, Gtid, Rows, Xid
from replicator.capture.mariadb.rows import (
    DELETE_TYPES,
    UPDATE_TYPES,
    ImageDecoder,
    compile_image_decoder,
    decode_rows_event,
)
from replicator.capture.mariadb.types import (
    ColumnSpec,
    Decoder,
    MySqlType,
    RowDecoder,
    UnsupportedColumnType,
    make_decoder,
)
from replicator.capture.snapshot import ReplayWindow, Resnapshot, ResnapshotRequests, SnapshotProgress, integer_key
from replicator.config import MariaDbSourceConfig, ResolvedConnection
from replicator.envelope.debezium import mariadb_transaction_id
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
from replicator.locks import mariadb_lock_name
from replicator.network import pymysql_connect, pymysql_connector
from replicator.transport.kafka import OffsetStore

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Connection = pymysql.connections.Connection[pymysql.cursors.Cursor]

# The `origin` of transactions carrying the replicator's loop tag.
ORIGIN_SKIP_REPLICATION = "skip_replication"
# LOG_EVENT_SKIP_REPLICATION_F in the event header; mysql-replication has no name for it.
_SKIP_REPLICATION_FLAG = 0x8000
# Gtid_log_event FL_STANDALONE: the group is a single statement (DDL) that no XID/COMMIT closes.
_GTID_STANDALONE = 0x01
# The server id of snapshot-read positions. No binlog event carries 0 (a server with server_id=0
# refuses replicas), so it tells snapshot chunks apart in `acknowledge`; Debezium's MySQL/MariaDB
# snapshot records carry server_id 0 too.
SNAPSHOT_SERVER_ID = 0
# Offsets are saved at most this often while acknowledgements stream in (always on close).
_SAVE_INTERVAL_S = 0.2
# A re-snapshot reads one chunk per streamed transaction, and chunks for this long when the stream is idle.
_IDLE_CHUNKS_S = 0.2
# The blocking read wakes up at least this often (the server's heartbeat, sent only while it has no
# event to send) to notice `stop()`, and to serve Kafka's last confirmations soon after the binlog goes
# quiet: the read cannot be woken any other way (so `Heartbeat.wait_s` goes unused), and without this
# the position of the last transaction of a burst was acknowledged only a whole heartbeat interval
# later. An idle wake-up costs well under a millisecond, twenty a second.
_MAX_WAKEUP_S = 0.05
# `TRUNCATE [TABLE] name` or `db.name`, each part plain or `quoted` (a doubled backtick is one backtick).
_NAME_PART = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_TRUNCATE = re.compile(
    rf"TRUNCATE\s+(?:TABLE\s+)?(?P<first>{_NAME_PART})(?:\s*\.\s*(?P<second>{_NAME_PART}))?", re.IGNORECASE
)

_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)  # kept in the logged statement text
# `ALTER [ONLINE] [IGNORE] TABLE [db.]name ... {TRUNCATE|DROP|EXCHANGE} PARTITION ...`: rows go (or come)
# without row events.
_PARTITION_ROWS = re.compile(
    rf"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?P<first>{_NAME_PART})(?:\s*\.\s*(?P<second>{_NAME_PART}))?"
    r".*?\b(?P<action>TRUNCATE|DROP|EXCHANGE)\s+PARTITION\b",
    re.IGNORECASE | re.DOTALL,
)


def _unquoted(part: str) -> str:
    return part[1:-1].replace("``", "`") if part.startswith("`") else part


_ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236
_ACCESS_ERRORS = {1044, 1045, 1142, 1227}

_GTID = re.compile(r"(\d+)-(\d+)-(\d+)")

GtidState = dict[int, tuple[int, int]]  # domain -> (server id, sequence number) of its last transaction


def parse_gtid_state(text: str) -> GtidState:
    """'0-1-42,7-3-9' -> {0: (1, 42), 7: (3, 9)}. Raises ValueError on anything else."""
    state: GtidState = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = _GTID.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not a MariaDB GTID (domain-server-sequence)")
        domain, server, seq = (int(g) for g in match.groups())
        if domain in state:
            raise ValueError(f"domain {domain} appears twice in {text!r}")
        state[domain] = (server, seq)
    return state


def format_gtid_state(state: GtidState) -> str:
    return ",".join(f"{domain}-{server}-{seq}" for domain, (server, seq) in sorted(state.items()))


def purged_domains(stored: GtidState, oldest: GtidState) -> list[int]:
    """Domains with transactions after our position that are no longer in the binlogs.

    `oldest` is the GTID state at the start of the oldest binlog file: everything up to it is gone.
    A domain we have no position for but the oldest binlog already continues lost its beginning.
    """
    lost = []
    for domain, (_server, seq) in oldest.items():
        ours = stored.get(domain)
        if ours is None or ours[1] < seq:
            lost.append(domain)
    return sorted(lost)


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


# --- catalog -> ColumnSpec, for start-up validation and the snapshot ----------------------------------

_CATALOG_TYPES: dict[str, MySqlType] = {
    "tinyint": MySqlType.TINY,
    "smallint": MySqlType.SHORT,
    "mediumint": MySqlType.INT24,
    "int": MySqlType.LONG,
    "bigint": MySqlType.LONGLONG,
    "decimal": MySqlType.NEWDECIMAL,
    "float": MySqlType.FLOAT,
    "double": MySqlType.DOUBLE,
    "date": MySqlType.DATE,
    "datetime": MySqlType.DATETIME2,
    "timestamp": MySqlType.TIMESTAMP2,
    "time": MySqlType.TIME2,
    "year": MySqlType.YEAR,
    "char": MySqlType.STRING,
    "binary": MySqlType.STRING,
    "varchar": MySqlType.VARCHAR,
    "varbinary": MySqlType.VARCHAR,
    "tinytext": MySqlType.BLOB,
    "text": MySqlType.BLOB,
    "mediumtext": MySqlType.BLOB,
    "longtext": MySqlType.BLOB,
    "tinyblob": MySqlType.BLOB,
    "blob": MySqlType.BLOB,
    "mediumblob": MySqlType.BLOB,
    "longblob": MySqlType.BLOB,
    "enum": MySqlType.ENUM,
    "set": MySqlType.SET,
    "bit": MySqlType.BIT,
}
_BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
# ENUM/SET members in COLUMN_TYPE: quoted, with '' for a quote and a backslash escaped as \\.
_MEMBER = re.compile(r"'((?:[^'\\]|''|\\.)*)'")

_COLUMNS_SQL = """
    SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, c.NUMERIC_PRECISION, c.NUMERIC_SCALE,
           c.DATETIME_PRECISION, c.CHARACTER_OCTET_LENGTH, co.ID
    FROM information_schema.COLUMNS c
    LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME
    WHERE c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s
    ORDER BY c.ORDINAL_POSITION"""

_PRIMARY_KEY_SQL = """
    SELECT COLUMN_NAME FROM information_schema.STATISTICS
    WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'
    ORDER BY SEQ_IN_INDEX"""


def _members(column_type: str) -> tuple[str, ...]:
    return tuple(
        re.sub(r"''|\\(.)", lambda m: m.group(1) or "'", raw) for raw in _MEMBER.findall(column_type)
    )


def catalog_column_spec(table: TableId, row: Sequence[Any], primary_key: Sequence[str]) -> ColumnSpec:
    """A ColumnSpec equal to what the binlog's table map gives for the column (FULL metadata), built
    from one `_COLUMNS_SQL` row. Raises UnsupportedColumnType for types the capture cannot encode."""
    name, data_type, column_type, is_nullable, precision, scale, fsp, octets, collation_id = row
    qualified = f"{table}.{name}"
    kind = _CATALOG_TYPES.get(str(data_type).lower())
    if kind is None:
        raise UnsupportedColumnType(f"{qualified}: column type {column_type} is not supported by the MariaDB capture")
    binary = data_type in _BINARY_TYPES
    charset: str | None = None
    if binary:
        charset = "binary"
    elif collation_id is not None:
        # The codec name mysql-replication decodes the column with (utf8mb4 -> utf8, latin1 -> cp1252).
        known = charset_by_id(int(collation_id), "mariadb")
        charset = known.encoding if known is not None else "utf8"
    members = _members(column_type) if kind in (MySqlType.ENUM, MySqlType.SET) else ()
    return ColumnSpec(
        table=str(table),
        name=name,
        type_code=int(kind),
        nullable=is_nullable == "YES",
        unsigned="unsigned" in str(column_type).lower(),
        fsp=int(fsp or 0),
        precision=int(precision) if precision is not None and kind is MySqlType.NEWDECIMAL else None,
        scale=int(scale) if scale is not None and kind is MySqlType.NEWDECIMAL else None,
        max_length=int(octets) if octets is not None and kind in (MySqlType.STRING, MySqlType.VARCHAR) else None,
        charset=charset,
        enum_values=members if kind is MySqlType.ENUM else (),
        set_values=members if kind is MySqlType.SET else (),
        bits=int(precision or 0) if kind is MySqlType.BIT else 0,
        is_primary=name in primary_key,
    )


# --- snapshot values: PyMySQL's Python values in the shape mysql-replication gives --------------------


def _time_micros(value: Any) -> Any:
    # PyMySQL parses negative TIMEs with fractions correctly, unlike mysql-replication (whose bug
    # `types.micro_time` undoes), so the snapshot takes the plain microsecond count.
    if value is None:
        return None
    if not isinstance(value, dt.timedelta):
        raise ValueError(f"unexpected TIME value {value!r}")
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def snapshot_decoder(spec: ColumnSpec) -> tuple[str, Decoder]:
    """(select expression, decoder) that turn a column read by SELECT into exactly the value the binlog
    path produces for the same row. The decoders are `types`' own; only the input is adapted."""
    kind = MySqlType(spec.type_code)
    column = _quote(spec.name)
    if kind is MySqlType.TIME2:
        return column, _time_micros
    decode = make_decoder(spec)
    if kind is MySqlType.FLOAT:
        # The server prints FLOAT with 6 significant digits (123456.789 -> 123457); as a DOUBLE it
        # gives the stored single-precision number exactly, which is what the binlog carries.
        return f"CAST({column} AS DOUBLE)", decode
    if kind in (MySqlType.DATE, MySqlType.DATETIME2, MySqlType.TIMESTAMP2):
        # PyMySQL returns zero and invalid dates ('0000-00-00', '2024-00-10') as text; mysql-replication
        # gives None for them, which the decoder turns into null or the NOT NULL fallback.
        return column, lambda value: decode(None if isinstance(value, str) else value)
    if kind is MySqlType.BIT:
        width = spec.bits
        # PyMySQL gives the bytes, mysql-replication the bits as text, most significant first.
        return column, lambda value: decode(
            None if value is None else format(int.from_bytes(value, "big"), f"0{width}b")
        )
    if kind is MySqlType.SET:
        return column, lambda value: decode(None if value is None else {m for m in value.split(",") if m})
    if kind is MySqlType.YEAR:
        # YEAR 0000 is the byte 0 in the binlog, which mysql-replication (and Debezium's binlog reader)
        # read as 1900; SELECT gives 0.
        return column, lambda value: decode(1900 if value == 0 else value)
    return column, decode


_ROWS_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)

# MariaDbPosition is a frozen dataclass, whose __init__ sets each field through object.__setattr__
# (about 1 µs; one position per row). Filling its slots directly gives the same object for less.
_new_object = object.__new__
_set_gtid, _set_file, _set_pos, _set_server_id, _set_row = (
    getattr(MariaDbPosition, name).__set__ for name in ("gtid", "file", "pos", "server_id", "row")
)


def _position(gtid: str, file: str, pos: int, server_id: int, row: int = 0) -> MariaDbPosition:
    position: MariaDbPosition = _new_object(MariaDbPosition)
    _set_gtid(position, gtid)
    _set_file(position, file)
    _set_pos(position, pos)
    _set_server_id(position, server_id)
    _set_row(position, row)
    return position


@dataclass(frozen=True, slots=True)
class _TableShape:
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]  # in index order, for keyset pagination


@dataclass(slots=True)
class _OpenTx:
    tx: SourceTransaction
    domain: int
    server_id: int
    seq: int
    standalone: bool
    begun: bool = False
    own: bool = False
    last_pos: int = 0


@dataclass(frozen=True, slots=True)
class _MappedTable:
    table: TableId
    decoder: RowDecoder
    # The compiled decoder of this table map's row images (rows.py), None when a column needs the general path.
    image: ImageDecoder | None
    columns: int


class MariaDbCaptureSource(ResnapshotRequests):
    connector = Connector.MARIADB

    def __init__(self, config: MariaDbSourceConfig, offsets: OffsetStore) -> None:
        self.config = config
        self.name = config.name
        self._conn_info: ResolvedConnection = config.connection.resolve(f"sources.{config.name}.connection", 3306)
        self.database = self._conn_info.database
        self._offsets = offsets
        self._tables: list[TableId] = [TableId(*t.split(".", 1)) for t in config.tables]
        self._captured = frozenset(self._tables)
        self._publish_own = config.publish_own_writes
        self._reader: Any = None
        # The session holding this source's capture lock (see `_take_lock`), and when it was last checked.
        self._lock: Connection | None = None
        self._lock_checked = 0.0
        self._needs_snapshot = False
        # What of an interrupted snapshot is in Kafka (capture/snapshot.py; points are GTID states), and
        # whether this run resumes one.
        self._progress = SnapshotProgress({}, "")
        self._resuming = False
        # Changes to drop because a snapshot read later contains them (None: nothing to drop).
        self._window: ReplayWindow | None = None
        self._last_window: ReplayWindow | None = None  # the newest one, open or closed: stored with the offsets
        self._no_requests_yet()  # re-snapshot requests (ResnapshotRequests)
        # Whether acknowledged stream positions may be stored: not while a snapshot is not wholly in
        # Kafka, or a restart would stream on without re-reading the missing part of the snapshot.
        self._may_save = False
        self._stopping = False
        # The GTID state streaming starts from, and the state after each transaction read since.
        self._start_state = ""
        self._read_state: GtidState = {}
        # (GTID, state after it) of each transaction handed out as TxCommit and not yet acknowledged.
        self._pending: deque[tuple[str, str]] = deque()
        # The position offered in the Heartbeat being yielded right now, with its state.
        self._offered: tuple[str, str] | None = None
        self._last_read: tuple[MariaDbPosition, str] | None = None
        self._acked_state: str | None = None
        self._save_due = False
        self._last_save = 0.0
        self._maps: dict[int, _MappedTable] = {}
        # (table, its columns, the library's columns) -> decoders; a table map is parsed once per table id,
        # and ids change with every ALTER TABLE and server restart, so few shapes repeat but some do.
        self._decoders: dict[
            tuple[TableId, tuple[ColumnSpec, ...], tuple[str, ...]], tuple[RowDecoder, ImageDecoder | None]
        ] = {}
        self._warned_statements: set[str] = set()

    # -- set-up ------------------------------------------------------------------------------------

    def tables(self) -> list[TableId]:
        return list(self._tables)

    def _connect(self) -> Connection:
        info = self._conn_info
        try:
            return pymysql_connect(
                host=info.host,
                port=info.port,
                timeout_s=info.network_timeout_s,
                user=info.user,
                password=info.password.get_secret_value(),
                database=info.database,
                charset="utf8mb4",
                autocommit=True,
            )
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code in _ACCESS_ERRORS:
                raise ConfigError(f"source {self.name}: {info.describe()} refused the login: {exc.args[-1]}") from None
            raise RetriableError(f"source {self.name}: cannot connect to {info.describe()}: {exc.args[-1]}") from None

    def _take_lock(self) -> None:
        """One capture per source at a time: a named lock held by a session of its own for the capture's life.
        A second capture of the source (a second `replicator run` by mistake, or a standby) would otherwise
        stream too: both would publish every change, and as the server lets one binlog dump per server id,
        each connection would end the other's dump in turn. The server ends the session once it is silent for
        `session_timeout_s` (its capture's host lost, or its process frozen), which frees the lock."""
        name = mariadb_lock_name("capture", self.name)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET SESSION wait_timeout = {int(self.config.session_timeout_s)}")
                cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
                row = cur.fetchone()
        except pymysql.err.MySQLError as exc:
            conn.close()
            raise RetriableError(f"source {self.name}: could not take the capture lock: {exc.args[-1]}") from None
        if row is None or row[0] != 1:
            conn.close()
            raise RetriableError(
                f"source {self.name}: another capture of this source runs (it holds the lock {name!r} on "
                f"{self._conn_info.describe()}): this one waits until it is gone"
            )
        self._lock = conn
        self._lock_checked = time.monotonic()

    def _keep_lock(self) -> None:
        """At most once a second: the lock's session is alive (which keeps it so). If the server ended it, a
        standby capture may be streaming now: stop, and wait for the lock again."""
        now = time.monotonic()
        if self._lock is None or now - self._lock_checked < 1.0:
            return
        self._lock_checked = now
        try:
            self._lock.ping(reconnect=False)
        except (pymysql.err.MySQLError, OSError) as exc:
            raise RetriableError(
                f"source {self.name}: the session holding the capture lock ended ({exc}); another capture may "
                "have taken over, this one waits for the lock again"
            ) from None

    def _release_lock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(pymysql.err.MySQLError, OSError):
                self._lock.close()
            self._lock = None

    def open(self) -> None:
        self._take_lock()
        try:
            self._open_stream_position()
        except BaseException:
            self._release_lock()  # the runner closes only a source that opened
            raise

    def _open_stream_position(self) -> None:
        """Check the server and tables, and settle where streaming starts (stored GTID, snapshot or now)."""
        with self._connect() as conn:
            problems = self._check_server(conn)
            # The shapes are read again inside the snapshot transaction, where they match the data.
            self._check_tables(conn, problems)
            if problems:
                raise ConfigError(problems)
            stored = self._offsets.load()
            done = (stored or {}).get("resnapshot_done")
            self._resnapshot_done = done if isinstance(done, str) else None
            resume = self._resume_state(stored)
            if resume is not None:
                stored_window = ReplayWindow.stored((stored or {}).get("replay_window"))
                if stored_window is not None:
                    # The stream may restart before the point of the last snapshot read: drop what it contains.
                    self._window = self._replay_window(*stored_window)
                    self._window.restore_passed((stored or {}).get("replay_window"))
                self._check_not_purged(conn, resume)
                self._start_state = resume
                self._acked_state = resume
                self._may_save = True
            elif self.config.snapshot == "initial":
                self._needs_snapshot = True
                interrupted = self._interrupted_snapshot(stored)
                if interrupted is not None:
                    # Stream from where the first snapshot was taken, so no change since is lost; read the
                    # rest of the snapshot in a new one (see _snapshot).
                    self._check_not_purged(conn, interrupted[0])
                    self._start_state = interrupted[0]
                    self._acked_state = interrupted[0]
                    self._progress = SnapshotProgress.from_json(interrupted[1], "")
                    self._resuming = True
                    log.info("source %s: resuming the interrupted snapshot taken at GTID %s (%s)",
                             self.name, self._start_state, self._progress.to_json())
            else:
                # No snapshot wanted: start at the current end of the binlog, and record that start
                # at once so a restart before the first acknowledgement does not skip what came since.
                self._start_state = self._query_one(conn, "SELECT @@GLOBAL.gtid_binlog_pos") or ""
                self._acked_state = self._start_state
                self._may_save = True
                self._offsets.save(
                    {"gtid": self._start_state, "snapshot_done": True, "resnapshot_done": self._resnapshot_done},
                    wait=True,
                )
        self._read_state = parse_gtid_state(self._start_state)
        self._watch_requests()

    def _resume_state(self, stored: dict[str, Any] | None) -> str | None:
        """The stored GTID state to stream from, or None when capture starts over."""
        if not stored or not stored.get("snapshot_done"):
            # Nothing stored, or a snapshot that never finished (resumed: see _interrupted_snapshot).
            return None
        gtid = stored.get("gtid")
        try:
            if not isinstance(gtid, str):
                raise ValueError(f"expected a GTID state string, found {gtid!r}")
            return format_gtid_state(parse_gtid_state(gtid))
        except ValueError as exc:
            raise FatalError(
                f"source {self.name}: the stored position in {self._offsets.topic} is unreadable ({exc}); "
                "delete the offsets topic to start over with a new snapshot"
            ) from None

    def _interrupted_snapshot(self, stored: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
        """(GTID state the snapshot was taken at, its recorded progress) of an interrupted snapshot."""
        if not stored or stored.get("snapshot_done") or not isinstance(stored.get("snapshot_progress"), dict):
            return None
        gtid = stored.get("gtid")
        try:
            if not isinstance(gtid, str):
                raise ValueError(f"expected a GTID state string, found {gtid!r}")
            return format_gtid_state(parse_gtid_state(gtid)), stored["snapshot_progress"]
        except ValueError as exc:
            raise FatalError(
                f"source {self.name}: the stored position in {self._offsets.topic} is unreadable ({exc}); "
                "delete the offsets topic to start over with a new snapshot"
            ) from None

    @staticmethod
    def _query_one(conn: Connection, query: str, args: Any = None) -> Any:
        with conn.cursor() as cur:
            cur.execute(query, args)
            row = cur.fetchone()
        return None if row is None else row[0]

    def _check_server(self, conn: Connection) -> list[str]:
        """Every server-level problem (binlog settings, privileges), each saying what to change."""
        problems: list[str] = []
        with conn.cursor() as cur:
            cur.execute(
                "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, "
                "@@GLOBAL.binlog_row_metadata"
            )
            row = cur.fetchone()
        assert row is not None
        log_bin, binlog_format, row_image, row_metadata = row
        where = f"source {self.name}: server {self._conn_info.host}:{self._conn_info.port}"
        if not log_bin:
            problems.append(
                f"{where} runs without a binary log (log_bin=OFF); start mariadbd with --log-bin "
                "(log_bin=ON), which needs a restart"
            )
        if str(binlog_format).upper() != "ROW":
            problems.append(
                f"{where} has binlog_format={binlog_format}; capture reads row images, so set "
                "binlog_format=ROW in the server configuration and with SET GLOBAL binlog_format='ROW' "
                "(sessions already open keep their format until they reconnect)"
            )
        if str(row_image).upper() != "FULL":
            problems.append(
                f"{where} has binlog_row_image={row_image}; capture needs whole before and after images: "
                "set binlog_row_image=FULL in the server configuration and with SET GLOBAL"
            )
        if str(row_metadata).upper() != "FULL":
            problems.append(
                f"{where} has binlog_row_metadata={row_metadata}; column names, signedness, character sets and "
                "ENUM/SET members reach the binlog only with binlog_row_metadata=FULL: set it in the server "
                "configuration and with SET GLOBAL binlog_row_metadata='FULL'"
            )
        missing = self._missing_privileges(conn)
        if missing:
            user = self._query_one(conn, "SELECT CURRENT_USER()") or self._conn_info.user
            account = "'{}'@'{}'".format(*str(user).rsplit("@", 1)) if "@" in str(user) else str(user)
            problems.append(
                f"source {self.name}: user {account} lacks {' and '.join(missing)}, which reading the binlog "
                f"needs: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO {account}"
            )
        return problems

    def _missing_privileges(self, conn: Connection) -> list[str]:
        missing: list[str] = []
        with conn.cursor() as cur:
            try:
                cur.execute("SHOW BINARY LOGS")
                cur.fetchall()
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _ACCESS_ERRORS:
                    missing.append("BINLOG MONITOR")
                # Without a binary log the statement fails too; _check_server reports log_bin.
            # The dump itself is the only functional test of REPLICATION SLAVE, so look at the grants
            # of the user and of its enabled roles.
            cur.execute(
                """SELECT 1 FROM information_schema.USER_PRIVILEGES
                   WHERE PRIVILEGE_TYPE = 'REPLICATION SLAVE'
                     AND (GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                            SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
                          OR GRANTEE IN (SELECT CONCAT('''', ROLE_NAME, '''')
                                         FROM information_schema.ENABLED_ROLES))
                   LIMIT 1"""
            )
            if cur.fetchone() is None:
                missing.insert(0, "REPLICATION SLAVE")
        return missing

    def _check_tables(self, conn: Connection, problems: list[str]) -> None:
        """Add every table problem (missing, no primary key, unsupported column types) to `problems`."""
        for table in self._tables:
            exists = self._query_one(
                conn,
                "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (table.namespace, table.table),
            )
            if exists is None:
                problems.append(
                    f"source {self.name}: table {table} does not exist (or user {self._conn_info.user} "
                    "has no privilege on it)"
                )
                continue
            if exists != "BASE TABLE":
                problems.append(f"source {self.name}: {table} is a {str(exists).lower()}, not a table")
                continue
            try:
                self._table_shape(conn, table)
            except ConfigError as exc:
                problems.extend(exc.problems)

    def _table_shape(self, conn: Connection, table: TableId) -> _TableShape:
        """Columns and primary key from the catalog. Raises ConfigError listing unsupported columns and
        a missing primary key together."""
        with conn.cursor() as cur:
            cur.execute(_PRIMARY_KEY_SQL, (table.namespace, table.table))
            primary_key = tuple(r[0] for r in cur.fetchall())
            cur.execute(_COLUMNS_SQL, (table.namespace, table.table))
            rows = cur.fetchall()
        problems: list[str] = []
        if not primary_key:
            problems.append(
                f"source {self.name}: table {table} has no primary key; events are keyed by it, so add one "
                f"(ALTER TABLE {table} ADD PRIMARY KEY (...))"
            )
        columns: list[ColumnSpec] = []
        for row in rows:
            try:
                spec = catalog_column_spec(table, row, primary_key)
                make_decoder(spec)  # the check the binlog path makes on its table map
                columns.append(spec)
            except UnsupportedColumnType as exc:
                problems.append(f"source {self.name}: {exc}")
        if problems:
            raise ConfigError(problems)
        return _TableShape(tuple(columns), primary_key)

    def _oldest_binlog(self, conn: Connection) -> tuple[str, str]:
        """(first binlog file on the server, GTID state at its start)."""
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            logs = cur.fetchall()
        if not logs:
            return "", ""
        first = str(logs[0][0])
        return first, str(self._query_one(conn, "SELECT BINLOG_GTID_POS(%s, 4)", (first,)) or "")

    def _check_not_purged(self, conn: Connection, stored: str) -> None:
        first, oldest = self._oldest_binlog(conn)
        lost = purged_domains(parse_gtid_state(stored), parse_gtid_state(oldest))
        if lost:
            raise FatalError(self._purged_message(stored, first, oldest, f"domain(s) {', '.join(map(str, lost))}"))

    def _purged_message(self, stored: str, first: str, oldest: str, detail: str) -> str:
        return (
            f"source {self.name}: the stored position (GTID {stored or 'none'}) is no longer in the server's "
            f"binlogs ({detail}): the oldest binlog, {first or '?'}, starts after GTID {oldest or 'none'}, so "
            f"the changes in between are lost to capture. Re-snapshot: delete the offsets topic "
            f"{self._offsets.topic} and start capture again (keep binlogs longer: binlog_expire_logs_seconds)"
        )

    # -- streaming ---------------------------------------------------------------------------------

    def stream(self) -> Iterator[StreamItem]:
        if self._needs_snapshot:
            yield from self._snapshot(self._tables, self._progress, None)
        if self._stopping:
            return
        if self._resuming:
            # Streaming from the first snapshot's GTID: rows read later already contain the changes logged
            # before the GTID state they were read at.
            self._window = self._replay_window(self._progress, self._captured, self._progress.point)
        yield from self._serve_request_before_streaming()
        if self._stopping:
            return
        yield from self._replicate()

    def _resnapshot_table_chunk(self, state: Resnapshot, table: TableId) -> Iterator[StreamItem]:
        """The next chunk of the re-snapshot being served, as `r` events read in a consistent snapshot at a
        known GTID state; then the streamed changes of the rows read so far that are older than their read
        point are dropped."""
        started_ms = int(time.time()) * 1000
        with self._snapshot_connection() as conn:
            log_file, log_pos, point = self._open_snapshot(conn)
            position = MariaDbPosition(gtid=point, file=log_file, pos=log_pos, server_id=SNAPSHOT_SERVER_ID)
            yield from state.read(
                self._snapshot_table(conn, table, started_ms, position, state.progress, state.request), point
            )
        if self._stopping:
            self._resnap = None  # the read may have stopped short: served again at the next start
            return
        self._window = self._replay_window(state.progress, state.window_tables, point)

    def _replay_window(self, progress: SnapshotProgress, tables: frozenset[TableId], newest: str) -> ReplayWindow:
        parsed: dict[str, GtidState] = {}

        def state_of(point: str) -> GtidState:
            state = parsed.get(point)
            if state is None:
                state = parsed[point] = parse_gtid_state(point)
            return state

        def before(tx: SourceTransaction, point: Any) -> bool:
            assert isinstance(tx.position, MariaDbPosition)
            domain, _server, seq = (int(part) for part in tx.position.gtid.split("-"))
            last = state_of(point).get(domain)
            return last is not None and seq <= last[1]

        def past(tx: SourceTransaction, newest: Any) -> bool:
            state = state_of(newest)
            if len(state) != 1:
                return False
            assert isinstance(tx.position, MariaDbPosition)
            domain, _server, seq = (int(part) for part in tx.position.gtid.split("-"))
            return domain in state and seq > state[domain][1]

        window = self._last_window = ReplayWindow(progress, tables, newest, before, past)
        return window

    def _open_reader(self) -> Any:
        info = self._conn_info
        wakeup = min(self.config.heartbeat_interval_s, _MAX_WAKEUP_S)
        namespaces = sorted({t.namespace for t in self._tables})
        names = sorted({t.table for t in self._tables})
        return CaptureReader(
            # Rows events of table ids not in `_maps` are skipped unread (reader.py).
            wanted=self._maps,
            # No init_command: this session must not set skip_replication (see module docstring).
            connection_settings={
                "host": info.host,
                "port": info.port,
                "user": info.user,
                "password": info.password.get_secret_value(),
                "charset": "utf8mb4",
                # A silent network failure surfaces as a read timeout (the server sends a heartbeat every
                # `wakeup` s while idle), or sooner through the connection's TCP settings
                # (`network_timeout_s`); mysql-replication then reconnects from `auto_position`, which is
                # kept at the last complete transaction.
                "read_timeout": max(30, int(wakeup * 10)),
            },
            pymysql_wrapper=pymysql_connector(info.network_timeout_s),
            server_id=self.config.server_id,
            is_mariadb=True,
            auto_position=self._start_state,
            blocking=True,
            resume_stream=True,
            only_events=[
                MariadbGtidEvent,
                XidEvent,
                XAPrepareEvent,
                QueryEvent,
                TableMapEvent,
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                RotateEvent,
                HeartbeatLogEvent,
            ],
            # Coarse filters (each by name alone) so other tables' rows are never decoded; the exact
            # database.table match is made on each table map.
            only_schemas=namespaces,
            only_tables=names,
            slave_heartbeat=wakeup,
            enable_logging=False,
            # Parse each table id's table map once rather than in every transaction (its parsing was
            # most of the reader's time for small transactions). Safe because MariaDB gives a table a
            # new id whenever its definition changes (every ALTER TABLE, INSTANT ones included, and
            # RENAME, TRUNCATE, OPTIMIZE, FLUSH TABLES; tested on 10.11) and never reuses an id while
            # it runs; ids restart with the server, so every RotateEvent (one starts each new binlog and
            # every (re)connection) drops the cached maps: see `_forget_table_maps`.
            freeze_schema=True,
        )

    def _forget_table_maps(self) -> None:
        """Drop every known table id, ours and the reader's: after a rotate the ids may belong to other
        tables (a restarted server numbers them anew), and with `freeze_schema` the reader would
        otherwise keep decoding an id with the columns it first saw for it."""
        self._maps.clear()
        if self._reader is not None:
            self._reader.table_map = {}

    def _replicate(self) -> Iterator[StreamItem]:
        reader = self._reader = self._open_reader()
        self._forget_table_maps()
        maps = self._maps
        open_tx: _OpenTx | None = None
        # The replay window, when one is open: `covered` when the open transaction is inside it.
        window = self._window
        covered = False
        while True:
            if open_tx is None and self._stopping:
                return
            try:
                event = reader.fetchone()
            except pymysql.err.MySQLError as exc:
                raise self._stream_error(exc) from None
            if event is None:
                if self._stopping:
                    return
                raise RetriableError(f"source {self.name}: the server ended the binlog stream")
            kind = type(event)
            # The reader's own records first (reader.py): nearly every event of a busy binlog is one.
            if kind is Rows or isinstance(event, _ROWS_EVENTS):
                mapped = maps.get(event.table_id)
                if mapped is None or open_tx is None:
                    continue
                open_tx.last_pos = event.log_pos if kind is Rows else event.packet.log_pos
                if not open_tx.begun:
                    open_tx.begun = True
                    yield TxBegin(open_tx.tx)
                if open_tx.own and not self._publish_own:
                    continue  # the runner would drop them: skip decoding
                if kind is Rows:
                    changes = self._fast_row_changes(event, mapped, open_tx.tx, reader.log_file)
                else:
                    changes = self._row_changes(event, mapped, open_tx.tx, reader.log_file)
                if covered and window is not None:
                    for change in changes:
                        if not window.drops(change):
                            yield change
                else:
                    yield from changes
            elif kind is Xid or isinstance(event, XAPrepareEvent):
                # XA transactions are published at XA PREPARE, where their rows are in the binlog.
                if open_tx is not None:
                    end_pos = event.log_pos if kind is Xid else event.packet.log_pos
                    yield from self._end(open_tx, reader.log_file, end_pos)
                    open_tx = None
                    if self._after_commit_due():  # re-snapshot requests and chunks
                        yield from self._after_commit()
                        window = self._window
            elif kind is Gtid:
                if open_tx is not None:
                    # A GTID event starts a new group, so the previous one is complete in the binlog
                    # even though no end event we know of closed it (e.g. XA COMMIT of a prepared one).
                    if open_tx.begun:
                        log.warning(
                            "source %s: transaction %s had no end event; closing it", self.name, open_tx.tx.id
                        )
                    yield from self._end(open_tx, reader.log_file, open_tx.last_pos)
                open_tx = self._begin(event, reader.log_file)
                if window is not None:
                    covered = window.covers(open_tx.tx)
                    if window.closed:
                        window = self._window = None
            elif isinstance(event, TableMapEvent):
                self._on_table_map(event)
            elif isinstance(event, QueryEvent):
                if open_tx is None:
                    continue
                statement = event.query.strip().upper()
                if statement == "BEGIN":
                    continue
                if statement in ("COMMIT", "ROLLBACK") or open_tx.standalone:
                    # COMMIT/ROLLBACK close groups of non-transactional engines (whose rows stay
                    # written); a standalone group (DDL) is its one statement. A DDL on a captured
                    # table needs nothing here (the next table map carries the new shape), except
                    # TRUNCATE, which removes rows without logging them.
                    if open_tx.standalone and statement.startswith("TRUNCATE"):
                        yield from self._truncated(event, open_tx, reader.log_file)
                    elif open_tx.standalone and statement.startswith("ALTER") and "PARTITION" in statement:
                        self._warn_partition_rows(event, open_tx, reader.log_file)
                    yield from self._end(open_tx, reader.log_file, event.packet.log_pos)
                    open_tx = None
                else:
                    open_tx.last_pos = event.packet.log_pos
                    self._warn_statement(event, statement)
            elif isinstance(event, RotateEvent):
                self._forget_table_maps()
                if open_tx is not None:
                    # Groups never span files, so a rotate inside one means mysql-replication reconnected
                    # and the server re-sends the group from its start.
                    if open_tx.begun:
                        raise RetriableError(
                            f"source {self.name}: the binlog stream restarted inside transaction {open_tx.tx.id}"
                        )
                    open_tx = None
            elif isinstance(event, HeartbeatLogEvent) and open_tx is None:
                yield from self._idle()
                yield from self._check_requests()
                if self._resnap is not None:
                    # Idle: read chunks for a while before looking at the stream again.
                    until = time.monotonic() + _IDLE_CHUNKS_S
                    while self._resnap is not None and not self._stopping and time.monotonic() < until:
                        yield from self._resnapshot_chunk()
                window = self._window

    def _begin(self, event: Gtid, log_file: str) -> _OpenTx:
        own = bool(event.header_flags & _SKIP_REPLICATION_FLAG)
        gtid = event.gtid
        tx = SourceTransaction(
            id=mariadb_transaction_id(gtid),
            # The binlog keeps whole seconds: the GTID event's header timestamp, in ms.
            commit_ts_ms=int(event.timestamp) * 1000,
            position=_position(gtid, log_file, event.log_pos, event.server_id),
            origin=ORIGIN_SKIP_REPLICATION if own else None,
        )
        return _OpenTx(
            tx=tx,
            domain=event.domain_id,
            server_id=event.server_id,
            seq=event.gtid_seq_no,
            standalone=bool(event.flags & _GTID_STANDALONE),
            own=own,
            last_pos=event.log_pos,
        )

    def _end(self, open_tx: _OpenTx, log_file: str, pos: int) -> Iterator[StreamItem]:
        """Close a transaction: TxCommit when it was handed out, else a Heartbeat with its position."""
        read_state = self._read_state
        read_state[open_tx.domain] = (open_tx.server_id, open_tx.seq)
        # With one replication domain (the usual case) the state is this transaction's GTID alone.
        if len(read_state) == 1:
            state = f"{open_tx.domain}-{open_tx.server_id}-{open_tx.seq}"
        else:
            state = format_gtid_state(read_state)
        # Should mysql-replication reconnect (it does on lost connections), resume after this one.
        self._reader.auto_position = state
        position = _position(open_tx.tx.id, log_file, pos, open_tx.server_id)
        self._last_read = (position, state)
        if open_tx.begun:
            self._pending.append((open_tx.tx.id, state))
            yield TxCommit(open_tx.tx, position)
        else:
            yield from self._offer(position, state, idle=False)

    def _offer(self, position: MariaDbPosition, state: str, *, idle: bool = True) -> Iterator[StreamItem]:
        # The runner acknowledges a Heartbeat's position (if at all) before the generator resumes.
        self._offered = (position.gtid, state)
        try:
            yield Heartbeat(position, idle=idle)
        finally:
            self._offered = None

    def _idle(self) -> Iterator[StreamItem]:
        """The server has nothing to send: offer the position of everything read, save offsets if due."""
        self._keep_lock()
        self._save(force=False)
        if self._last_read is None:
            yield Heartbeat(None)
        else:
            yield from self._offer(*self._last_read)

    def _on_table_map(self, event: Any) -> None:
        table = TableId(event.schema, event.table)
        if table not in self._captured:
            self._maps.pop(event.table_id, None)
            return
        mask: bytes = event.null_bitmask
        specs = tuple(
            ColumnSpec.from_binlog(column, table=str(table), nullable=bool(mask[i // 8] & (1 << (i % 8))))
            for i, column in enumerate(event.columns)
        )
        # The compiled decoder depends on how the library reads each column, which ColumnSpec does not
        # wholly say (a TEXT and a MEDIUMTEXT differ only in the length prefix): the library's column
        # attributes are part of the key.
        layout = tuple(repr(sorted(vars(column).items())) for column in event.columns)
        key = (table, specs, layout)
        known = self._decoders.get(key)
        if known is None:
            try:
                decoder = RowDecoder(specs)
            except UnsupportedColumnType as exc:
                raise FatalError(f"source {self.name}: {exc}") from None
            if not decoder.key_columns:
                raise FatalError(
                    f"source {self.name}: table {table} has no primary key in the binlog's table map; "
                    f"events are keyed by it, so add one (ALTER TABLE {table} ADD PRIMARY KEY (...))"
                )
            # Compiled from the library's columns as well: they say how its general path reads each value.
            known = self._decoders[key] = (decoder, compile_image_decoder(event.columns, specs))
        self._maps[event.table_id] = _MappedTable(table, known[0], known[1], len(specs))

    def _row_changes(
        self, event: Any, mapped: _MappedTable, tx: SourceTransaction, log_file: str
    ) -> Iterator[RowChange]:
        table = mapped.table
        decoder = mapped.decoder
        gtid = tx.id
        pos: int = event.packet.log_pos
        server_id: int = event.packet.server_id
        index = 0
        try:
            if isinstance(event, WriteRowsEvent):
                for index, row in enumerate(event.rows):
                    after = decoder.decode(row["values"], row["none_sources"])
                    position = _position(gtid, log_file, pos, server_id, index)
                    yield RowChange(table, Op.CREATE, decoder.key(after), None, after, position)
            elif isinstance(event, DeleteRowsEvent):
                for index, row in enumerate(event.rows):
                    before = decoder.decode(row["values"], row["none_sources"])
                    position = _position(gtid, log_file, pos, server_id, index)
                    yield RowChange(table, Op.DELETE, decoder.key(before), before, None, position)
            else:
                for index, row in enumerate(event.rows):
                    before = decoder.decode(row["before_values"], row["before_none_sources"])
                    after = decoder.decode(row["after_values"], row["after_none_sources"])
                    position = _position(gtid, log_file, pos, server_id, index)
                    old_key = decoder.key(before)
                    new_key = decoder.key(after)
                    if old_key != new_key:
                        # Like Debezium: a key change is a delete of the old key and a create of the new
                        # one, so each key's events stay in order in its own partition.
                        yield RowChange(table, Op.DELETE, old_key, before, None, position)
                        yield RowChange(table, Op.CREATE, new_key, None, after, position)
                    else:
                        yield RowChange(table, Op.UPDATE, new_key, before, after, position)
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            raise FatalError(
                f"source {self.name}: {table}: cannot encode row {index} of the event at {log_file}:{pos} "
                f"(transaction {gtid}): {exc}"
            ) from None

    def _fast_row_changes(
        self, event: Rows, mapped: _MappedTable, tx: SourceTransaction, log_file: str
    ) -> Iterator[RowChange]:
        """The changes of a rows event decoded by the table map's compiled decoder (rows.py); when it
        declines, by mysql-replication's event for the same bytes through `_row_changes`, as before."""
        decoded = None
        if mapped.image is not None:
            decoded = decode_rows_event(
                mapped.image, event.data, event.event_type, event.post_header, mapped.columns, event.end
            )
        if decoded is None:
            yield from self._row_changes(self._reader.library_event(event), mapped, tx, log_file)
            return
        table = mapped.table
        gtid = tx.id
        pos = event.log_pos
        server_id = event.server_id
        kind = event.event_type
        if kind in UPDATE_TYPES:
            for index, (new_key, after, old_key, before) in enumerate(decoded):
                position = _position(gtid, log_file, pos, server_id, index)
                if old_key != new_key:
                    # Like Debezium: a key change is a delete of the old key and a create of the new one
                    # (as `_row_changes`).
                    yield RowChange(table, Op.DELETE, old_key, before, None, position)  # type: ignore[arg-type]
                    yield RowChange(table, Op.CREATE, new_key, None, after, position)
                else:
                    yield RowChange(table, Op.UPDATE, new_key, before, after, position)
        elif kind in DELETE_TYPES:
            for index, (key, row, _, _) in enumerate(decoded):
                yield RowChange(table, Op.DELETE, key, row, None, _position(gtid, log_file, pos, server_id, index))
        else:
            for index, (key, row, _, _) in enumerate(decoded):
                yield RowChange(table, Op.CREATE, key, None, row, _position(gtid, log_file, pos, server_id, index))

    def _truncated(self, event: Any, open_tx: _OpenTx, log_file: str) -> Iterator[StreamItem]:
        """A `TRUNCATE [TABLE] [db.]name` group: a truncate event when the table is captured (as PostgreSQL's
        Truncate gives), so consumers learn that every row went. A TRUNCATE naming a captured table in a form
        not understood stops capture rather than let the rows vanish unnoticed."""
        query = event.query.decode() if isinstance(event.query, bytes) else str(event.query)
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        statement = _COMMENT.sub(" ", query).strip().rstrip(";").strip()
        found = _TRUNCATE.fullmatch(statement)
        if found is None:
            if any(re.search(rf"(?<![\w$]){re.escape(t.table)}(?![\w$])", statement) for t in self._tables):
                raise FatalError(
                    f"source {self.name}: cannot tell which table the statement at {log_file}:"
                    f"{event.packet.log_pos} (transaction {open_tx.tx.id}) truncates: {query[:200]!r}; "
                    "re-snapshot the captured tables it may name (replicator snapshot)"
                )
            return
        first, second = _unquoted(found.group("first")), found.group("second")
        table = TableId(first, _unquoted(second)) if second is not None else TableId(schema, first)
        if table not in self._captured:
            return
        open_tx.last_pos = event.packet.log_pos
        if not open_tx.begun:
            open_tx.begun = True
            yield TxBegin(open_tx.tx)
        if open_tx.own and not self._publish_own:
            return
        position = _position(open_tx.tx.id, log_file, event.packet.log_pos, open_tx.server_id, 0)
        yield RowChange(table, Op.TRUNCATE, {}, None, None, position)

    def _warn_partition_rows(self, event: Any, open_tx: _OpenTx, log_file: str) -> None:
        """`ALTER TABLE … TRUNCATE/DROP/EXCHANGE PARTITION` of a captured table: rows went (or came) that the
        binlog does not list, so no event can tell consumers which. Said loudly, with what to do; capture goes
        on (stopping would meet the same statement again at every restart)."""
        query = event.query.decode() if isinstance(event.query, bytes) else str(event.query)
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        found = _PARTITION_ROWS.match(_COMMENT.sub(" ", query).strip())
        if found is None:
            return
        first, second = _unquoted(found.group("first")), found.group("second")
        table = TableId(first, _unquoted(second)) if second is not None else TableId(schema, first)
        if table not in self._captured:
            return
        log.warning(
            "source %s: %s PARTITION on captured table %s at %s:%s (transaction %s) changed rows that the binlog "
            "does not list, so consumers were not told which: %r. Re-read the table (replicator snapshot) and "
            "remove from targets by hand the rows the partition held.",
            self.name, found.group("action").upper(), table, log_file, event.packet.log_pos, open_tx.tx.id,
            query[:200],
        )

    def _warn_statement(self, event: Any, statement: str) -> None:
        """A statement logged inside a transaction (`statement` upper-cased): row changes it made are not
        in the binlog as rows."""
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        if statement.startswith(("SAVEPOINT", "ROLLBACK TO", "XA ")):
            return
        if schema in {t.namespace for t in self._tables} and schema not in self._warned_statements:
            self._warned_statements.add(schema)
            log.warning(
                "source %s: a statement-format event in database %s (binlog position %s); changes made by "
                "statement-logged DML are not captured (was binlog_format changed for a session?)",
                self.name,
                schema,
                event.packet.log_pos,
            )

    def _stream_error(self, exc: pymysql.err.MySQLError) -> Exception:
        code = exc.args[0] if exc.args else None
        message = str(exc.args[-1]) if exc.args else str(exc)
        position = str(getattr(self._reader, "auto_position", "") or self._start_state)
        if code == _ER_MASTER_FATAL_ERROR_READING_BINLOG:
            first, oldest = "", ""
            with contextlib.suppress(ConfigError, RetriableError, pymysql.err.MySQLError), self._connect() as conn:
                first, oldest = self._oldest_binlog(conn)
            return FatalError(self._purged_message(position, first, oldest, f"server error {code}: {message}"))
        if code in _ACCESS_ERRORS:
            return FatalError(
                f"source {self.name}: the server refused the binlog dump: {message}; the capture user needs "
                "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*"
            )
        return RetriableError(
            f"source {self.name}: binlog stream from {self._conn_info.describe()} at GTID {position} failed: {message}"
        )

    # -- snapshot ----------------------------------------------------------------------------------

    def _snapshot(
        self, tables: Sequence[TableId], progress: SnapshotProgress, request: str | None
    ) -> Iterator[StreamItem]:
        """Read `tables` in one consistent-snapshot transaction, in primary-key chunks, as `r` events; the
        initial snapshot (no `request`) then streams from the binlog position that snapshot corresponds to,
        unless it resumes an interrupted one."""
        # Snapshot reads are versioned at the start of the snapshot, floored to the binlog's whole seconds:
        # every change streamed after the snapshot then has an equal or later commit time, so conflict
        # resolution never lets a snapshot read win over a later change (ties fall to the log position).
        started_ms = int(time.time()) * 1000
        with self._snapshot_connection() as conn:
            log_file, log_pos, snapshot_state = self._open_snapshot(conn)
            progress.point = snapshot_state
            if request is None and not self._resuming:
                self._start_state = snapshot_state
                self._read_state = parse_gtid_state(self._start_state)
                self._acked_state = self._start_state
            position = MariaDbPosition(gtid=snapshot_state, file=log_file, pos=log_pos, server_id=SNAPSHOT_SERVER_ID)
            log.info("source %s: snapshot at %s:%s (GTID %s)", self.name, log_file, log_pos, snapshot_state)
            for table in tables:
                if progress.is_complete(table):
                    continue  # in Kafka since an earlier run
                rows = self._snapshot_table(conn, table, started_ms, position, progress, request)
                # Resuming, this run reads at a later point than the stream starts from: the replay window
                # needs to know which rows the read returned.
                resumed = request is None and self._resuming
                yield from progress.noting_reads(rows, table, snapshot_state) if resumed else rows
                if self._stopping:
                    return
        yield SnapshotDone(request)

    @contextlib.contextmanager
    def _snapshot_connection(self) -> Iterator[Connection]:
        """A connection for one consistent-snapshot read, rolled back and closed after it. A server error is
        retriable: the read is done again, from the last chunk Kafka confirmed."""
        conn = self._connect()
        try:
            yield conn
            conn.rollback()
        except pymysql.err.MySQLError as exc:
            raise RetriableError(f"source {self.name}: snapshot failed: {exc.args[-1] if exc.args else exc}") from None
        finally:
            with contextlib.suppress(pymysql.err.Error):
                conn.close()

    def _open_snapshot(self, conn: Connection) -> tuple[str, int, str]:
        """Start a consistent-snapshot transaction on `conn`: (binlog file, position, GTID state) of it."""
        with conn.cursor() as cur:
            # TIMESTAMPs come out in UTC, as the binlog carries them.
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            # The binlog position of exactly this snapshot, without a global read lock.
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {str(name).lower(): value for name, value in cur.fetchall()}
        log_file = str(status.get("binlog_snapshot_file") or "")
        log_pos = int(status.get("binlog_snapshot_position") or 0)
        gtid = self._query_one(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (log_file, log_pos))
        if not log_file or gtid is None:
            raise FatalError(
                f"source {self.name}: the server gave no GTID for the snapshot's binlog position "
                f"{log_file or '?'}:{log_pos}; is the binary log enabled?"
            )
        return log_file, log_pos, format_gtid_state(parse_gtid_state(str(gtid)))

    def _snapshot_table(
        self,
        conn: Connection,
        table: TableId,
        started_ms: int,
        position: MariaDbPosition,
        progress: SnapshotProgress,
        request: str | None,
    ) -> Generator[StreamItem, None, None]:
        try:
            shape = self._table_shape(conn, table)
        except ConfigError as exc:
            raise FatalError("; ".join(exc.problems)) from None
        names = [c.name for c in shape.columns]
        readers = [snapshot_decoder(c) for c in shape.columns]
        key_positions = [names.index(c) for c in shape.primary_key]
        # Key in table column order, as RowDecoder.key gives it: the message key bytes (hence the
        # partition) of a row must be the same for its snapshot read and its later changes.
        key_names = [c.name for c in shape.columns if c.is_primary]
        select = ", ".join([expr for expr, _ in readers] + [_quote(c) for c in shape.primary_key])
        source = f"{_quote(table.namespace)}.{_quote(table.table)}"
        order = ", ".join(_quote(c) for c in shape.primary_key)
        limit = self.config.snapshot_chunk_rows
        width = len(names)
        last_key: tuple[Any, ...] | None = None
        resume = progress.resume_after(table)
        if resume is not None and list(resume) == list(shape.primary_key):
            last_key = tuple(resume.values())  # read on after the last chunk an earlier run got into Kafka
        chunk_no = 0
        while not self._stopping:
            where, args = ("", ()) if last_key is None else _after_key(shape.primary_key, last_key)
            with conn.cursor() as cur:
                cur.execute(f"SELECT {select} FROM {source}{where} ORDER BY {order} LIMIT {limit}", args)
                rows = cur.fetchall()
            if not rows:
                return
            chunk_no += 1
            tx = SourceTransaction(
                id=f"snapshot:{table}:{chunk_no}", commit_ts_ms=started_ms, position=position, snapshot=True
            )
            yield TxBegin(tx)
            for raw in rows:
                try:
                    after: Row = {
                        name: decode(value)
                        for name, (_, decode), value in zip(names, readers, raw[:width], strict=True)
                    }
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    keys = {shape.primary_key[i]: raw[width + i] for i in range(len(key_positions))}
                    raise FatalError(f"source {self.name}: {table} row {keys}: cannot encode: {exc}") from None
                yield RowChange(table, Op.READ, {k: after[k] for k in key_names}, None, after, position)
            last_key = tuple(rows[-1][width:])
            resumable = dict(zip(shape.primary_key, last_key, strict=True)) if integer_key(last_key) else None
            yield TxCommit(tx, SnapshotChunk(table, resumable, len(rows) < limit, request))
            if len(rows) < limit:
                return

    # -- acknowledgement and shutdown ----------------------------------------------------------------

    def acknowledge(self, position: PostgresPosition | MariaDbPosition | SnapshotDone | SnapshotChunk) -> None:
        self._keep_lock()
        if isinstance(position, SnapshotDone) and position.request is not None:
            self._resnapshot_done = position.request
            self._save_due = True
            self._save(force=True)
            return
        if isinstance(position, SnapshotChunk):
            if self._may_save or position.request is not None:
                return
            # Not waited for: a lost record only means that chunk is read again after a crash.
            self._progress.record(position, self._tables)
            self._offsets.save(
                {"gtid": self._start_state, "snapshot_done": False, "snapshot_progress": self._progress.to_json()}
            )
            return
        if isinstance(position, SnapshotDone):
            self._snapshot_done()
            return
        if not isinstance(position, MariaDbPosition) or position.server_id == SNAPSHOT_SERVER_ID:
            return  # snapshot chunks: the stream position is recorded once the whole snapshot is in
        if not self._may_save:
            # Positions are acknowledged in order and the tracker may skip over SnapshotDone: a streamed
            # position means the snapshot before it is wholly in Kafka.
            self._may_save = True
        state = self._state_of(position.gtid)
        if state is None:
            log.warning("source %s: acknowledged GTID %s was never handed out; ignored", self.name, position.gtid)
            return
        if state != self._acked_state:
            self._acked_state = state
            self._save_due = True
        self._save(force=False)

    def _state_of(self, gtid: str) -> str | None:
        """The GTID state that goes with an acknowledged transaction; forgets the ones before it."""
        if any(g == gtid for g, _ in self._pending):
            while self._pending:
                handed, state = self._pending.popleft()
                if handed == gtid:
                    return state
        if self._offered is not None and self._offered[0] == gtid:
            return self._offered[1]
        return None

    def _snapshot_done(self) -> None:
        if self._may_save:
            return
        self._may_save = True
        self._save_due = True
        self._save(force=True)

    def _save(self, *, force: bool, wait: bool = False) -> None:
        if not self._save_due or self._acked_state is None or not self._may_save:
            return
        now = time.monotonic()
        if force or now - self._last_save >= _SAVE_INTERVAL_S:
            self._offsets.save(
                {
                    "gtid": self._acked_state,
                    "snapshot_done": True,
                    "resnapshot_done": self._resnapshot_done,
                    # The last snapshot window, kept: one already passed closes at once, or (several
                    # domains) drops nothing older than the stored position.
                    "replay_window": None if self._last_window is None else self._last_window.to_json(),
                },
                wait=wait,
            )
            self._save_due = False
            self._last_save = now

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._reader is not None:
            with contextlib.suppress(pymysql.err.Error, OSError):
                self._reader.close()
            self._reader = None
        try:
            self._save(force=True, wait=True)
        except (FatalError, RetriableError) as exc:
            # Not fatal on its own: the next start re-sends from the last saved position.
            log.warning("source %s: could not save the last position %s: %s", self.name, self._acked_state, exc)
        finally:
            # Last: a standby capture that takes the lock then resumes from the position just saved.
            self._release_lock()


def _after_key(columns: Sequence[str], values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """WHERE clause for keyset pagination: rows whose key sorts after `values`. Written as ORs of
    prefix equalities rather than a row comparison, which MariaDB's range optimizer does not use."""
    terms: list[str] = []
    args: list[Any] = []
    for i, column in enumerate(columns):
        parts = [f"{_quote(c)} = %s" for c in columns[:i]] + [f"{_quote(column)} > %s"]
        terms.append("(" + " AND ".join(parts) + ")")
        args.extend(values[: i + 1])
    return " WHERE " + " OR ".join(terms), tuple(args)

