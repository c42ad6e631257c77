"""Resumable initial snapshots and re-snapshots: which rows are in Kafka, and as of which source point.

A snapshot reads each table in primary-key chunks. Each chunk is a transaction of `r` events whose
`TxCommit` position is a `SnapshotChunk`; once Kafka confirmed it (and everything before it), the
source records it in `SnapshotProgress` and stores that with its offsets. After a crash, capture
reads only what is not recorded yet, in a NEW consistent snapshot taken at a later source point,
and streams from the ORIGINAL point (where the first snapshot started), so no change is lost.

Rows are then published at different points: those of the first run as of the original point, those
of the resumed part as of the later one. A streamed change older than the point a row was read at is
already in that row's `r` event, so `ReplayWindow` drops it: every row gets its snapshot state and
then exactly the changes made after it, as if the whole snapshot had been read at once. Each resumed
run adds one more point; the progress keeps, per table, the key ranges and the point each was read at.

A re-snapshot of some tables on request (`replicator snapshot`, `Resnapshot`) works the same way: one
chunk is read between two streamed transactions, each in its own consistent snapshot at a known point,
and the window drops the streamed changes of the rows read so far that are older than their chunk's
point (rows not read yet keep all their changes: their later `r` event is the newer state).

Key-level resumption needs the primary key to order the same in Python as in the database: integer
keys only. A table with another key restarts from its beginning when it was interrupted (tables that
were finished are never read again).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replicator.capture.base import SnapshotChunk, SnapshotDone, StreamItem, TxCommit
from replicator.events import Op, Row, RowChange, SourceTransaction, TableId

if TYPE_CHECKING:
    from replicator.transport.kafka import OffsetStore, RequestWatcher

log = logging.getLogger(__name__)

Point = Any  # a source point: PostgreSQL LSN (int), MariaDB GTID state (str)
# One range of a table read at one point: the last key of the range (None: to the end of the table).
_Range = tuple[dict[str, int] | None, Point]


def row_id(key: Row) -> str:
    """A row's identity within its table, as stored with a window's passed deletes: the repr of its key
    values (a key value may be unhashable, jsonb)."""
    return repr(tuple(key.values()))


def _read_id(key: Row) -> str:
    """A row's identity within its table whatever the order of its key's columns (a snapshot read's key and a
    streamed change's are built by different code)."""
    return repr(sorted(key.items()))


@dataclass(slots=True)
class SnapshotProgress:
    """Per table, the key ranges already in Kafka, in key order, each with the point it was read at.
    `point` is the current run's: chunks recorded by this run are read as of it, and `point_of` gives it
    for keys beyond the recorded ranges (None: such keys are not read yet).

    `read_here`: per (table, point), the rows that reads made by this process at that point returned (not
    stored: a restarted capture knows only the ranges). It tells `ReplayWindow` whether a row was in the read
    that a streamed change is older than; kept while the window is open (the rows of every table read again
    in this run: about 100 bytes per row)."""

    ranges: dict[str, list[_Range]]
    point: Point
    read_here: dict[tuple[str, Point], set[str]] = field(default_factory=dict)

    def note_read(self, change: RowChange, point: Point) -> None:
        """`change`, an `r` event, was read at `point` by this process."""
        self.read_here.setdefault((str(change.table), point), set()).add(_read_id(change.key))

    def noting_reads(self, items: Iterator[StreamItem], table: TableId, point: Point) -> Iterator[StreamItem]:
        """`items` of a read of `table` at `point`, each `r` event noted (`note_read`) as it goes by; the read
        is known from the start, so one that returns no row says so too."""
        self.read_here.setdefault((str(table), point), set())
        for item in items:
            if isinstance(item, RowChange):
                self.note_read(item, point)
            yield item

    def in_read(self, table: TableId, key: Row, point: Point) -> bool | None:
        """Whether this process's read of `table` at `point` returned the row with `key`; None when no read of
        this process is known at that point (an earlier run's)."""
        rows = self.read_here.get((str(table), point))
        return None if rows is None else _read_id(key) in rows

    @classmethod
    def from_json(cls, data: Any, point: Point) -> SnapshotProgress:
        ranges: dict[str, list[_Range]] = {}
        if isinstance(data, dict):
            for table, entries in data.items():
                ranges[str(table)] = [(None if upper is None else dict(upper), at) for upper, at in entries]
        return cls(ranges, point)

    def to_json(self) -> dict[str, Any]:
        return {table: [[upper, at] for upper, at in entries] for table, entries in self.ranges.items()}

    def is_complete(self, table: TableId) -> bool:
        entries = self.ranges.get(str(table))
        return bool(entries) and entries[-1][0] is None  # type: ignore[index]

    def resume_after(self, table: TableId) -> dict[str, int] | None:
        """The last key of `table` already in Kafka (read on from after it), or None (from the start)."""
        entries = self.ranges.get(str(table))
        return entries[-1][0] if entries else None

    def record(self, chunk: SnapshotChunk, order: Sequence[TableId]) -> None:
        """Kafka confirmed `chunk` and everything before it: tables before its table (in snapshot order)
        are complete, and its table is read up to its last key."""
        for table in order:
            if table == chunk.table:
                break
            if not self.is_complete(table):
                self._extend(str(table), None)
        if chunk.complete:
            self._extend(str(chunk.table), None)
        elif chunk.last_key is not None:
            self._extend(str(chunk.table), chunk.last_key)

    def _extend(self, table: str, upper: dict[str, int] | None) -> None:
        entries = self.ranges.setdefault(table, [])
        if entries and entries[-1][1] == self.point and entries[-1][0] is not None:
            entries[-1] = (upper, self.point)
        else:
            entries.append((upper, self.point))

    def point_of(self, table: TableId, key: Row) -> Point:
        """The point the row with `key` was (or, in this run, will be) read at."""
        entries = self.ranges.get(str(table))
        if entries:
            for upper, at in entries:
                if upper is None or tuple(key[c] for c in upper) <= tuple(upper.values()):
                    return at
        return self.point


class ReplayWindow:
    """Drops, from the stream, the changes already contained in the `r` events of snapshot reads made at
    later points than the stream's position: after a resumed initial snapshot, or a re-snapshot of some
    tables on request. The source asks `covers` once per transaction and, only if it does, `drops` per
    change; once a transaction is `past` the `newest` point, the window closes for good.

    A change of one of `tables` is dropped when its transaction is `before` the point its row was read at
    (`SnapshotProgress.point_of`; no point: not read yet, so not dropped, its later `r` event being the
    newer state). A TRUNCATE (PostgreSQL) passes, and from there on nothing of its table is dropped:
    consumers empty the table, rows read later included, so every change after it must follow again.

    When this process made the read (`SnapshotProgress.in_read`), it knows whether the read returned the row:
    if it did, every change older than the read is dropped, deletes included (a row deleted and inserted
    again before the read is in it, newer than both); if not, they all pass, the last of them deleting the
    row consumers may still hold from an earlier read. Dropping such a delete matters: the read's `r` event
    was published before the stream got to the changes older than it (a resumed snapshot, or a re-snapshot
    chunk read while the stream lagged), so a passed delete and re-insert would have published the row's
    older states after its newer one.

    For a read made by an earlier run, whose rows are not known, a DELETE passes, and from there on nothing
    of its row is dropped: a row deleted before the point it was to be read at is not in that read, so only
    the delete tells consumers that still hold the row (from an earlier read) that it went; and since it now
    follows the read, the changes after it (a re-insert) must follow too.

    The passed deletes and truncates are stored with the window (`to_json`, `restore_passed`): a capture
    restarted inside the window after such a delete was acknowledged still passes the re-insert that
    follows it. The stored sets may name rows whose delete comes after the stored position (the stream
    is ahead of its acknowledgements); their older changes then pass too on replay, before the delete, which
    consumers apply and then undo: the end state is the same."""

    __slots__ = ("_before", "_deleted", "_past", "_progress", "_truncated", "_tx", "closed", "newest", "tables")

    def __init__(
        self,
        progress: SnapshotProgress,
        tables: frozenset[TableId],
        newest: Point,
        before: Callable[[SourceTransaction, Point], bool],
        past: Callable[[SourceTransaction, Point], bool],
    ) -> None:
        self._progress = progress
        self.tables = tables
        self.newest = newest
        self._before = before
        self._past = past
        self._truncated: set[TableId] = set()
        self._deleted: set[tuple[TableId, str]] = set()  # rows a passed DELETE removed
        self._tx: SourceTransaction | None = None
        self.closed = False

    @property
    def progress(self) -> SnapshotProgress:
        return self._progress

    def to_json(self) -> dict[str, Any]:
        """Stored with the offsets once the snapshot is in Kafka: a restart whose stream starts before the
        newest point must drop the same changes (`stored`) and pass the same rows (`restore_passed`)."""
        return {
            "ranges": self._progress.to_json(),
            "point": self._progress.point,
            "newest": self.newest,
            "tables": sorted(str(t) for t in self.tables),
            "passed": {"deleted": sorted([str(table), key] for table, key in self._deleted),
                       "truncated": sorted(str(table) for table in self._truncated)},
        }

    @property
    def passed_count(self) -> int:
        """How many rows and tables the window passes for good; it grows when a delete or truncate passes."""
        return len(self._deleted) + len(self._truncated)

    def restore_passed(self, data: Any) -> None:
        """Pass again the rows and tables a stored window (`to_json`) passed."""
        passed = data.get("passed") if isinstance(data, dict) else None
        if not isinstance(passed, dict):
            return
        for table, key in passed.get("deleted") or []:
            self._deleted.add((TableId(*str(table).split(".", 1)), str(key)))
        for table in passed.get("truncated") or []:
            self._truncated.add(TableId(*str(table).split(".", 1)))

    @staticmethod
    def stored(data: Any) -> tuple[SnapshotProgress, frozenset[TableId], Point] | None:
        """(progress, tables, newest point) of a window stored by `to_json`, or None."""
        if not isinstance(data, dict) or not isinstance(data.get("ranges"), dict):
            return None
        if data.get("newest") is None or not isinstance(data.get("tables"), list):
            return None
        tables = frozenset(TableId(*str(t).split(".", 1)) for t in data["tables"])
        return SnapshotProgress.from_json(data["ranges"], data.get("point")), tables, data["newest"]

    def covers(self, tx: SourceTransaction) -> bool:
        if self.closed:
            return False
        if self._past(tx, self.newest):
            self.closed = True
            self._progress.read_here.clear()  # past every read: no change is older than one any more
            return False
        self._tx = tx
        return True

    def drops(self, change: RowChange) -> bool:
        table = change.table
        if change.op is Op.TRUNCATE:
            self._truncated.add(table)
            return False
        if table not in self.tables or table in self._truncated or self._tx is None:
            return False
        row_key = row_id(change.key)
        point = self._progress.point_of(table, change.key)
        older = point is not None and self._before(self._tx, point)
        if older:
            in_read = self._progress.in_read(table, change.key, point)
            if in_read is not None:
                # Read by this process: a row the read returned has a newer state there than this change,
                # deletes included (a delete and re-insert before the read are in it too); a row it did not
                # return was deleted before it, and its changes pass, the last of them a delete.
                if in_read:
                    return True
                if change.op is Op.DELETE:
                    self._deleted.add((table, row_key))
                return False
        row = (table, row_key)
        if change.op is Op.DELETE:
            self._deleted.add(row)
            return False
        if row in self._deleted:
            return False
        return older


@dataclass(slots=True)
class Resnapshot:
    """A re-snapshot request being served: its tables are read one chunk at a time between streamed
    transactions, each chunk in its own consistent snapshot at a known point, recorded in `progress`
    (whose `point` is None: rows not read yet are not dropped from the stream)."""

    request: str
    tables: list[TableId]
    progress: SnapshotProgress
    window_tables: frozenset[TableId]  # the requested ones and those of a window still open before
    index: int = 0  # the table being read

    @classmethod
    def start(cls, request: str, tables: list[TableId], previous: ReplayWindow | None) -> Resnapshot:
        ranges: dict[str, list[_Range]] = {}
        read_here: dict[tuple[str, Point], set[str]] = {}
        window_tables = frozenset(tables)
        if previous is not None and not previous.closed:
            # Keep dropping what the open window drops for other tables (their rows not recorded in
            # ranges were read at its progress' point), with what its reads are known to have returned.
            old = previous.progress
            read_here.update(old.read_here)
            for table in previous.tables:
                entries = list(old.ranges.get(str(table), []))
                if old.point is not None and (not entries or entries[-1][0] is not None):
                    entries.append((None, old.point))
                ranges[str(table)] = entries
            window_tables |= previous.tables
        for table in tables:
            ranges[str(table)] = []
        return cls(request, tables, SnapshotProgress(ranges, None, read_here), window_tables)

    def read(self, items: Generator[StreamItem, None, None], point: Point) -> Iterator[StreamItem]:
        """The items of the next chunk of the current table, from `_snapshot_table`'s `items` read as of
        `point` (a key that orders differently in Python: the whole table); records what they cover."""
        table = self.tables[self.index]
        entries = self.progress.ranges.setdefault(str(table), [])
        finished = True
        try:
            for item in self.progress.noting_reads(items, table, point):
                yield item
                if isinstance(item, TxCommit) and isinstance(item.position, SnapshotChunk):
                    chunk = item.position
                    if chunk.complete:
                        break
                    if chunk.last_key is not None:
                        entries.append((chunk.last_key, point))
                        finished = False
                        break
        finally:
            items.close()
        if finished:
            entries.append((None, point))
            self.index += 1

    @property
    def done(self) -> bool:
        return self.index >= len(self.tables)


# How often a streaming source looks for a new re-snapshot request, in streamed transactions (and at
# every idle wake-up).
REQUEST_CHECK_TRANSACTIONS = 1000


class ResnapshotRequests(abc.ABC):
    """Serving `replicator snapshot` requests between streamed transactions: the part both sources share.
    A source provides the attributes below and reads the chunks (`_resnapshot_chunk`)."""

    name: str
    _tables: list[TableId]
    _window: ReplayWindow | None
    _watcher: RequestWatcher | None
    _request: dict[str, Any] | None
    _resnapshot_done: str | None
    _resnap: Resnapshot | None  # the request being served

    _stopping: bool
    _offsets: OffsetStore
    # Streamed transactions since the last look for a new request (`_after_commit`).
    _commits_since_check: int = 0

    @abc.abstractmethod
    def _resnapshot_table_chunk(self, state: Resnapshot, table: TableId) -> Iterator[StreamItem]:
        """Read the next chunk of `table` for the request being served (the source's own reading)."""

    def _resnapshot_chunk(self) -> Iterator[StreamItem]:
        """The next chunk of the re-snapshot being served; after the last one, SnapshotDone."""
        state = self._resnap
        assert state is not None
        if self._stopping:
            # Not completed in this run: the next start serves the request again.
            self._resnap = None
            return
        if state.done:
            self._resnap = None
            yield SnapshotDone(state.request)
            return
        yield from self._resnapshot_table_chunk(state, state.tables[state.index])

    def _no_requests_yet(self) -> None:
        """The request state before `_watch_requests`: no watcher, none pending, none served or done."""
        self._watcher = None
        self._request = None
        self._resnapshot_done = None
        self._resnap = None

    def _watch_requests(self) -> None:
        """At open: watch the request key, then read the newest request. Watching first means a request made
        in between is seen twice (same id, served once), never missed."""
        self._watcher = self._offsets.watch_requests()
        try:
            request = self._offsets.load_request()
        except BaseException:
            self._watcher.close()
            self._watcher = None
            raise
        if request is not None and request["id"] != self._resnapshot_done:
            self._request = request

    def _serve_request_before_streaming(self) -> Iterator[StreamItem]:
        """A request found at open is served before streaming starts, all its chunks at once."""
        if self._request is None:
            return
        request, self._request = self._request, None
        self._start_resnapshot(request)
        while self._resnap is not None and not self._stopping:
            yield from self._resnapshot_chunk()

    def _after_commit_due(self) -> bool:
        """Whether `_after_commit` has something to do after this commit (a request check is due, or a
        re-snapshot is being served); when it has not, the commit is counted here, so that a source's loop
        can skip the generator, once per transaction, as `_after_commit` would have counted it."""
        if self._resnap is not None or self._commits_since_check + 1 >= REQUEST_CHECK_TRANSACTIONS:
            return True
        self._commits_since_check += 1
        return False

    def _after_commit(self) -> Iterator[StreamItem]:
        """After each streamed transaction: every REQUEST_CHECK_TRANSACTIONS of them, look for a new request;
        while one is served, read one chunk (so a re-snapshot interleaves with the stream)."""
        self._commits_since_check += 1
        if self._commits_since_check >= REQUEST_CHECK_TRANSACTIONS:
            self._commits_since_check = 0
            yield from self._check_requests()
        if self._resnap is not None:
            yield from self._resnapshot_chunk()

    def _check_requests(self) -> Iterator[StreamItem]:
        """Between transactions: start serving a new re-snapshot request, if one came (and read its first
        chunk); one that comes while another is served waits for it to complete."""
        request = None if self._watcher is None else self._watcher.poll()
        if request is not None and request["id"] != self._resnapshot_done:
            self._request = request  # waits for the one being served, if any
        if self._request is not None and self._resnap is None:
            request, self._request = self._request, None
            self._start_resnapshot(request)
            yield from self._resnapshot_chunk()

    def _start_resnapshot(self, request: dict[str, Any]) -> None:
        wanted = {str(t): t for t in self._tables}
        tables = [wanted[name] for name in request["tables"] if name in wanted]
        unknown = [name for name in request["tables"] if name not in wanted]
        if unknown:
            log.warning("source %s: re-snapshot request %s names tables not captured: %s", self.name,
                        request["id"], unknown)
        log.info("source %s: re-snapshot %s of %s", self.name, request["id"], ", ".join(map(str, tables)))
        self._resnap = Resnapshot.start(request["id"], tables, self._window)


def integer_key(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)
