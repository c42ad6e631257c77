"""The target's own edits, read from its own change stream, as field versions. Pure: no I/O.

`last_writer_wins` compares source commit times field by field, so every replica must know the commit time of
the value it holds. For a value the replicator wrote, the versions table has it. For a value the target's own
users typed, the target database knows only when the *row* last changed (PostgreSQL's commit timestamp,
PrestaShop's `date_upd`), which is later than the field's edit as soon as another column of the row is edited
after it. The other side, though, receives that edit as a change event with its exact version. Deciding the same
conflict with the row time on one side and the exact time on the other lets the two sides keep different values.

So the applier also reads its own system's captured topics for the tables it writes into (capture does not
publish the replicator's own writes: what arrives there are local edits) and records, for every column a
`last_writer_wins` rule writes there and the edit changed, the edit's version: exactly the one the other
side's applier gives the same event (`MappingEngine.version`). A later conflict then compares two exact
versions on both sides.

Only plain values are recorded: aggregates are recomputed, not edited (a shop sale changes the stock the ERP's
next recomputation decides); `delta` and `monotonic` fields do not compare times that way, and `owner` fields
are handled as follows.

A local edit of a field that a rule writing here says the other system owns is not kept: the applier writes
the owner's last value back (DESIGN 4.4: "the owner's value is re-asserted"), as the owner's next write would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from replicator.mapping.engine import changed_columns
from replicator.mapping.ops import Version

# The envelope's source block and after image -> the change's version (MappingEngine.version).
VersionOf = Callable[[Mapping[str, Any], Mapping[str, Any]], Version]


@dataclass(frozen=True, slots=True)
class OwnTable:
    """A target table whose own edits are read back: its topic's rows and the columns to version."""

    table: str  # qualified, as target ops name it
    columns: frozenset[str]  # written by a last_writer_wins rule with a plain value
    # Written by a rule that says another system owns them: a local edit of one is undone (the owner's value
    # re-asserted, DESIGN 4.4), column -> the owner.
    owned: Mapping[str, str] = field(default_factory=dict)

    @property
    def watched(self) -> frozenset[str]:
        return self.columns | frozenset(self.owned)


@dataclass(frozen=True, slots=True)
class OwnEdit:
    """One local edit of a row: the values it gave the versioned columns it changed, and its version."""

    table: str
    key: tuple[Any, ...]
    values: dict[str, Any]  # column -> the value as the change event carries it
    version: Version


class OwnEditError(ValueError):
    """An own change event that cannot be read as an edit (no key column, no version)."""


def own_edit(envelope: Mapping[str, Any], table: OwnTable, primary_key: tuple[str, ...],
             version_of: VersionOf) -> OwnEdit | None:
    """The edit an own change event makes to the versioned columns of `table`, or None when it makes none.

    Inserts count (a row the target's users created: its values are theirs, at its version) and updates
    count for the columns they changed; an update without a before image (PostgreSQL without REPLICA
    IDENTITY FULL) does not say which columns changed, so it records nothing rather than date every column
    by it. Snapshot reads are not edits (their version is the snapshot's time); deletes and truncates leave
    no value to date; writes tagged with a replication origin are not local edits."""
    op = envelope.get("op")
    if op not in ("c", "u"):
        return None
    after = envelope.get("after")
    if not isinstance(after, dict):
        raise OwnEditError(f"{table.table}: a {op!r} event without its after image")
    if op == "u":
        before = envelope.get("before")
        if not isinstance(before, dict):
            return None
        changed = changed_columns(before, after) & table.watched
    else:
        changed = frozenset(c for c in table.watched if c in after)
    if not changed:
        return None
    try:
        key = tuple(after[c] for c in primary_key)
    except KeyError as missing:
        raise OwnEditError(f"{table.table}: primary key column {missing} is not in the event") from None
    source = envelope.get("source")
    if not isinstance(source, dict):
        raise OwnEditError(f"{table.table}: an event without its source block")
    if source.get("origin") is not None:
        # A tagged write: the replicator's own (published with `publish_own_writes`), or another replication
        # tool's on PostgreSQL. Neither is a local user's edit; its fields stay dated as without own topics.
        return None
    return OwnEdit(table.table, key, {c: after[c] for c in sorted(changed)}, version_of(source, after))
