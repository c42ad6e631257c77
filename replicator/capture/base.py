"""The contract between a database's change-log reader and the capture runner.

A source yields `TxBegin`, then the transaction's `RowChange`s in log order, then `TxCommit`, or, for a
streamed transaction of exactly one change, may yield the three as one `OneChangeTx`;
`Heartbeat`s tell the runner the source is alive (and idle) and, when nothing is in flight, which
position may be acknowledged so an idle source does not pin the log (PostgreSQL WAL). The runner
acknowledges a position only after Kafka confirmed every message up to it, by calling `acknowledge`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from replicator.events import Connector, Position, RowChange, SourceTransaction, TableId


@dataclass(slots=True)
class TxBegin:
    tx: SourceTransaction  # `changes` stays empty: changes stream as RowChange items


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """The acknowledgeable position of one snapshot chunk: once Kafka holds it (and all before it), the
    source records that `table` is in Kafka up to `last_key` (capture/snapshot.py)."""

    table: TableId
    last_key: dict[str, int] | None  # the chunk's last primary key; None: not resumable by key
    complete: bool  # the table's last chunk
    request: str | None = None  # the id of a re-snapshot request; None: the initial snapshot


@dataclass(slots=True)
class TxCommit:
    tx: SourceTransaction
    # What to acknowledge once everything of this transaction is in Kafka.
    position: Position | SnapshotChunk


@dataclass(slots=True)
class OneChangeTx:
    """`TxBegin(tx)`, `change`, `TxCommit(tx, position)` as one item: a streamed transaction (never a
    snapshot's) of exactly one change, as most of an OLTP stream is. The runner then takes one step per
    transaction rather than three (measured: about an eighth of its main thread's CPU per one-row transaction)."""

    tx: SourceTransaction
    change: RowChange
    position: Position


@dataclass(frozen=True, slots=True)
class SnapshotDone:
    """A snapshot has been read completely; acknowledged like a position once Kafka holds it all (the
    runner passes every SnapshotDone to `acknowledge`, even when later positions are confirmed too)."""

    request: str | None = None  # the id of a re-snapshot request; None: the initial snapshot


@dataclass(slots=True)
class Heartbeat:
    position: Position | None  # acknowledgeable when nothing is in flight (None: nothing new)
    # How long the source may wait for the next change before it yields again (None: its own heartbeat
    # interval). The runner lowers it while Kafka confirmations are outstanding, so that they are
    # acknowledged within milliseconds of arriving rather than at the next heartbeat; a source whose
    # read cannot wake up sooner (MariaDB's blocking binlog dump) may ignore it.
    wait_s: float | None = None
    # False: the source is not idle, it only passes over a transaction it does not publish (MariaDB: one
    # of tables it does not capture). The runner then confirms on its usual cadence rather than at once.
    idle: bool = True


StreamItem = TxBegin | RowChange | TxCommit | OneChangeTx | Heartbeat | SnapshotDone


class CaptureSource(Protocol):
    name: str
    connector: Connector
    database: str

    def open(self) -> None:
        """Connect, check the server's settings and the tables, and prepare the position to read from.
        Raises ConfigError / FatalError with what to fix."""

    def tables(self) -> list[TableId]:
        """The captured tables (known after open)."""

    def stream(self) -> Iterator[StreamItem]:
        """Snapshot (when due) then live changes, until `stop` is called."""

    def acknowledge(self, position: Position | SnapshotDone | SnapshotChunk) -> None:
        """Everything up to and including `position` is durable in Kafka."""

    def stop(self) -> None:
        """Ask `stream` to return at the next transaction boundary (callable from a signal handler)."""

    def close(self) -> None: ...
