"""Reassembling source transactions from a source's topics, in commit order. Pure: no I/O.

Capture publishes each transaction's events to the table topics (one partition per key) and BEGIN/END
markers to the source's single-partition transaction topic, whose order is the commit order. A
transaction is complete when as many distinct events (by `transaction.total_order`) have arrived as its
END announces; complete transactions are released in END order. Snapshot reads (no transaction block)
are released as they come: in every partition they precede the streamed changes of the same keys.

Capture re-sends an unacknowledged tail after a crash, so markers and events may repeat: repeats are
recognised by transaction id and total order, and whole transactions at or below the applied position by
`SourcePosition`. The assembler also says, per partition, from which offset a restart must re-read so
that nothing unapplied is skipped (`resume_offsets`).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from replicator.errors import SkippableRecordError

TopicPartition = tuple[str, int]

_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_PG_TX = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True, order=True, slots=True)
class SourcePosition:
    """A transaction's place in its source's commit order: (domain, sequence).

    PostgreSQL: domain 0 and the commit LSN. MariaDB: the GTID's replication domain and sequence number,
    which orders commits within a domain (domains are independent streams).
    """

    domain: int
    sequence: int


# Each id is parsed at least twice, for its END marker and for its events, which may come far apart: a
# consume returns up to 10,000 messages, often runs of one partition's, so the cache holds more than that.
@functools.lru_cache(maxsize=1 << 15)
def position_of(transaction_id: str) -> SourcePosition:
    """The commit-order position encoded in a transaction id ('xid:commit_lsn' or a GTID)."""
    match = _PG_TX.match(transaction_id)
    if match:
        return SourcePosition(0, int(match.group(2)))
    match = _GTID.match(transaction_id)
    if match:
        return SourcePosition(int(match.group(1)), int(match.group(3)))
    raise SkippableRecordError(f"transaction id {transaction_id!r} is neither 'xid:lsn' nor a GTID")


@dataclass(slots=True)
class Event:
    """One change event as read from Kafka, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: dict[str, Any]


@dataclass(slots=True)
class Unit:
    """What the applier applies atomically: a whole source transaction, or one snapshot read."""

    transaction_id: str | None
    position: SourcePosition | None
    events: list[Event]
    marker_offset: int | None = None  # offset of the END marker (transaction topic)
    error: str | None = None  # set for a message that could not even be read: it goes to the dead letters


@dataclass(slots=True)
class _End:
    transaction_id: str
    position: SourcePosition
    event_count: int
    offset: int


class TransactionAssembler:
    """Collects one source's events and markers; releases complete units in commit order."""

    def __init__(self, transaction_topic: str, applied: dict[int, int] | None = None) -> None:
        self.transaction_topic = transaction_topic
        # domain -> highest applied sequence: transactions at or below it are repeats.
        self.applied: dict[int, int] = dict(applied or {})
        self._pending: dict[str, dict[int, Event]] = {}  # transaction id -> its events by total order
        self._ends: deque[_End] = deque()
        self._queued: set[str] = set()
        self._snapshots: deque[Unit] = deque()
        # Offsets of events consumed but not yet applied, per partition (for resume offsets).
        self._unapplied: dict[TopicPartition, dict[int, str | None]] = {}
        self._next: dict[TopicPartition, int] = {}
        # Once messages of the transaction topic were skipped as lost (`skip_to`): the replication domains whose
        # orphans (transactions whose END went with them) were dropped since. None: no such skip.
        self._orphans_dropped_in: set[int] | None = None
        # (transaction id, events dropped) of each orphan dropped, for the caller to report and clear.
        self.dropped_orphans: list[tuple[str, int]] = []
        # Whether messages of a table topic were skipped as lost: a transaction may then never be complete.
        self._events_lost = False

    def _is_applied(self, position: SourcePosition) -> bool:
        return position.sequence <= self.applied.get(position.domain, -1)

    def add_marker(self, partition: int, offset: int, value: dict[str, Any] | None) -> None:
        tp = (self.transaction_topic, partition)
        if offset >= self._next.get(tp, 0):
            self._next[tp] = offset + 1
        if value is None or value.get("status") != "END":
            return
        try:
            transaction_id = str(value["id"])
            event_count = int(value["event_count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SkippableRecordError(f"{self.transaction_topic}@{offset}: malformed END marker: {exc}") from None
        position = position_of(transaction_id)
        if transaction_id in self._queued or self._is_applied(position):
            return
        self._queued.add(transaction_id)
        self._ends.append(_End(transaction_id, position, event_count, offset))
        self._unapplied_in(tp)[offset] = transaction_id

    def add_event(self, event: Event) -> None:
        tp = (event.topic, event.partition)
        offset = event.offset
        if offset >= self._next.get(tp, 0):
            self._next[tp] = offset + 1
        transaction = event.value.get("transaction")
        if transaction is None:
            self._snapshots.append(Unit(None, None, [event]))
            self._unapplied_in(tp)[offset] = None
            return
        try:
            transaction_id = transaction["id"]
            if transaction_id.__class__ is not str:
                transaction_id = str(transaction_id)
            order = transaction["total_order"]
            if order.__class__ is not int:
                order = int(order)
        except (KeyError, TypeError, ValueError) as exc:
            raise SkippableRecordError(
                f"{event.topic}[{event.partition}]@{offset}: malformed transaction block: {exc}"
            ) from None
        position = position_of(transaction_id)
        if position.sequence <= self.applied.get(position.domain, -1):
            return
        events = self._pending.get(transaction_id)
        if events is None:
            events = self._pending[transaction_id] = {}
        if order not in events:
            events[order] = event
            waiting = self._unapplied.get(tp)
            if waiting is None:
                waiting = self._unapplied[tp] = {}
            waiting[offset] = transaction_id

    def _unapplied_in(self, tp: TopicPartition) -> dict[int, str | None]:
        waiting = self._unapplied.get(tp)
        if waiting is None:
            waiting = self._unapplied[tp] = {}
        return waiting

    def add_unreadable(self, topic: str, partition: int, offset: int) -> None:
        """A message nothing can read, which the caller dead-letters as a unit of its own: unapplied (so not
        skipped by a restart) until that unit is marked applied."""
        tp = (topic, partition)
        if offset >= self._next.get(tp, 0):
            self._next[tp] = offset + 1
        self._unapplied_in(tp)[offset] = None

    def add_tombstone(self, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def ready(self) -> list[Unit]:
        """Every unit that can be applied now, in order: snapshot reads first, then complete transactions
        from the head of the commit order (a transaction still missing events stops the release)."""
        units: list[Unit] = list(self._snapshots)
        self._snapshots.clear()
        while self._ends:
            end = self._ends[0]
            pending = self._pending.get(end.transaction_id)
            have = len(pending) if pending else 0
            if have < end.event_count:
                break
            self._ends.popleft()
            self._queued.discard(end.transaction_id)
            if pending is None:
                events = []
            elif len(pending) == 1:
                events = list(pending.values())
            else:
                events = [pending[k] for k in sorted(pending)]
            self._pending.pop(end.transaction_id, None)
            units.append(Unit(end.transaction_id, end.position, events, end.offset))
        return units

    def mark_applied(self, unit: Unit) -> None:
        """The unit is durably applied (or dead-lettered): forget it and advance the applied position."""
        if unit.position is not None:
            current = self.applied.get(unit.position.domain, -1)
            self.applied[unit.position.domain] = max(current, unit.position.sequence)
            if unit.marker_offset is not None:
                self._unapplied.get((self.transaction_topic, 0), {}).pop(unit.marker_offset, None)
        self._forget(unit.events)
        dropped_in = self._orphans_dropped_in
        if dropped_in is not None and unit.position is not None and unit.position.domain not in dropped_in:
            self._drop_orphans(unit.position.domain)
            dropped_in.add(unit.position.domain)

    def _forget(self, events: Iterable[Event]) -> None:
        """The events no longer wait to be applied: restarts need not read them again."""
        for event in events:
            self._unapplied.get((event.topic, event.partition), {}).pop(event.offset, None)

    def skip_to(self, tp: TopicPartition, offset: int) -> None:
        """The partition's records before `offset` are gone from Kafka and skipped (the target's
        `on_lost_messages: skip`): it resumes from `offset` at the latest, even if nothing follows."""
        self._next[tp] = max(self._next.get(tp, 0), offset)
        if tp[0] == self.transaction_topic:
            self._orphans_dropped_in = set()  # any domain may have lost END markers
        else:
            self._events_lost = True

    def blocked_head(self) -> str | None:
        """Once events were skipped as lost: the transaction at the head of the commit order while it misses
        events (it holds back every later one), else None."""
        if not self._events_lost or not self._ends:
            return None
        head = self._ends[0]
        pending = self._pending.get(head.transaction_id)
        return head.transaction_id if (len(pending) if pending else 0) < head.event_count else None

    def drop_incomplete(self) -> list[tuple[str, int, int]]:
        """Forget every transaction whose END was read and that still misses events, which the caller found
        can no longer come (every partition of the source read to its end after events were skipped as lost):
        its events and END marker no longer hold back the later transactions, nor the resume offsets. Returns
        (transaction id, events read, events its END announced) of each."""
        kept: deque[_End] = deque()
        dropped: list[tuple[str, int, int]] = []
        for end in self._ends:
            events = self._pending.get(end.transaction_id) or {}
            if len(events) >= end.event_count:
                kept.append(end)
                continue
            self._queued.discard(end.transaction_id)
            self._pending.pop(end.transaction_id, None)
            self._forget(events.values())
            self._unapplied.get((self.transaction_topic, 0), {}).pop(end.offset, None)
            dropped.append((end.transaction_id, len(events), end.event_count))
        self._ends = kept
        return dropped

    def _drop_orphans(self, domain: int) -> None:
        """Forget the transactions of `domain` at or below its applied position that no END announced: their
        END markers were among the skipped messages (ENDs come in commit order, so a transaction's END is read
        before any later one's, which is applied now). Their events cannot be applied as a whole transaction
        any more, and held would pin their partitions' resume offsets for good. Once per domain after a skip:
        events of such transactions read later are below the applied position, so `add_event` drops them."""
        applied = self.applied.get(domain, -1)
        for transaction_id, events in list(self._pending.items()):
            position = position_of(transaction_id)
            if transaction_id in self._queued or position.domain != domain or position.sequence > applied:
                continue
            del self._pending[transaction_id]
            self._forget(events.values())
            self.dropped_orphans.append((transaction_id, len(events)))

    def read_offsets(self) -> dict[TopicPartition, int]:
        """Per partition that delivered anything, the offset after the last record read."""
        return dict(self._next)

    def resume_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the offset a restart must read from: the oldest unapplied record, else the next."""
        offsets: dict[TopicPartition, int] = {}
        for tp, next_offset in self._next.items():
            waiting = self._unapplied.get(tp)
            offsets[tp] = min(waiting) if waiting else next_offset
        return offsets
