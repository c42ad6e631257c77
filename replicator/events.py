"""The in-memory model of captured changes, shared by every pipeline stage.

A source reader turns its database's log into `SourceTransaction`s; the envelope stage turns those into
Debezium messages. Row values in `before`/`after` are already in their Debezium JSON encoding (see
docs/TYPES.md): readers convert once, at the edge, so nothing downstream needs to know column types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A row as a JSON-ready mapping of column name to its Debezium-encoded value.
Row = dict[str, Any]


class Op(StrEnum):
    """Debezium operation codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot read
    TRUNCATE = "t"


class Connector(StrEnum):
    POSTGRESQL = "postgresql"
    MARIADB = "mariadb"


@dataclass(frozen=True, slots=True)
class TableId:
    """A captured table. `namespace` is the PostgreSQL schema or the MariaDB database."""

    namespace: str
    table: str

    def __str__(self) -> str:
        return f"{self.namespace}.{self.table}"


@dataclass(frozen=True, slots=True)
class PostgresPosition:
    """Where a PostgreSQL change sits in the WAL.

    `commit_lsn` orders transactions; `lsn` is the change's own record position (Debezium's `source.lsn`).
    """

    lsn: int
    commit_lsn: int
    tx_id: int | None


@dataclass(frozen=True, slots=True)
class MariaDbPosition:
    """Where a MariaDB change sits in the binlog. The GTID is the resumable position."""

    gtid: str
    file: str
    pos: int
    server_id: int
    row: int = 0


Position = PostgresPosition | MariaDbPosition


@dataclass(slots=True)
class RowChange:
    """One row change of one table. `key` holds the primary-key columns (Debezium's message key)."""

    table: TableId
    op: Op
    key: Row
    before: Row | None
    after: Row | None
    position: Position


@dataclass(slots=True)
class SourceTransaction:
    """All row changes of one committed source transaction, in log order.

    `origin` is set when the transaction carries the replicator's loop tag (PostgreSQL replication
    origin name, MariaDB `skip_replication`); capture does not publish those by default.
    """

    id: str
    commit_ts_ms: int
    position: Position
    changes: list[RowChange] = field(default_factory=list)
    origin: str | None = None
    snapshot: bool = False
