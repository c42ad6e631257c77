"""The field versions of one target row, as the replicator's versions table holds them. Pure: no I/O.

Per target row, one JSON document records for each field the replicator wrote (or accepted) which version
it was and the value's canonical text (`canonical`), so that a later change can be compared with it and a
local edit recognised. Two forms, both read everywhere:

- general: `{"<column>": {"ts": …, "sys": …, "pri": …, "pos": …, "val": …[, "rank": …]}, …}`, one entry per
  field;
- compact: `{"@": [ts, sys, pri, pos], "<column>": <val>, …}`, when every field carries the same version and
  no rank, which is what a row the replicator created from one change holds (most rows). About a third of
  the text, and far less work to build and for the server to parse. "@" cannot be a column name (mapping
  identifiers start with a letter or "_").

In memory the applier works on the general form (`expand` gives it); `document` picks the form to store.
Documents written before the compact form existed stay valid as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

from replicator.mapping.ops import FieldChange, Version

COMPACT = "@"  # the key of the shared version in a compact document


def canonical(value: Any) -> Any:
    """A JSON-safe form of a column value that is equal for equal values whatever the driver returned:
    numbers by value (5, 5.0, Decimal('5.00') alike), booleans as 0/1 (MariaDB has no boolean), times as
    ISO text (UTC ones without their offset, as naive UTC columns return them)."""
    cls = value.__class__
    if cls is str or value is None:
        return value
    if cls is int and -_EXACT_INT < value < _EXACT_INT:
        return str(value)  # what the Decimal round trip below gives a whole number of this size
    if cls is Decimal:  # Decimal(str(value)) below is this very number: skip the round trip
        return str(value.quantize(_ONE)) if value == value.to_integral_value() else str(value.normalize())
    if cls is datetime:
        if value.tzinfo is not None and value.utcoffset() == _ZERO:
            value = value.replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal | float) or (isinstance(value, int) and not isinstance(value, bool)):
        number = Decimal(str(value))
        return str(number.quantize(Decimal(1))) if number == number.to_integral_value() else str(number.normalize())
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() == timedelta(0):
            value = value.replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date | time_of_day):
        return value.isoformat()
    return value


_EXACT_INT = 10**18
_ONE = Decimal(1)
_ZERO = timedelta(0)


def version_json(version: Version, value: Any, rank: int | None = None) -> dict[str, Any]:
    """One field's entry in the general form."""
    entry = {"ts": version.ts_ms, "sys": version.system, "pri": version.priority, "pos": version.position,
             "val": canonical(value)}
    if rank is not None:
        entry["rank"] = rank
    return entry


def version_from_json(data: dict[str, Any]) -> Version:
    return Version(ts_ms=int(data["ts"]), system=str(data["sys"]), priority=int(data["pri"]), position=str(data["pos"]))


def compact_document(version: Version, changes: Mapping[str, FieldChange]) -> dict[str, Any]:
    """The compact document of fields that all carry `version` (no rank): each change's value as written,
    made canonical here."""
    document: dict[str, Any] = {COMPACT: [version.ts_ms, version.system, version.priority, version.position]}
    for column, change in changes.items():
        document[column] = canonical(change.value)
    return document


def expand(document: dict[str, Any]) -> dict[str, Any]:
    """The general form of a stored document of either form (a general one is returned as it is)."""
    shared = document.get(COMPACT)
    if shared is None:
        return document
    ts, system, priority, position = shared
    return {column: {"ts": ts, "sys": system, "pri": priority, "pos": position, "val": value}
            for column, value in document.items() if column != COMPACT}


def document(entries: dict[str, Any]) -> dict[str, Any]:
    """What to store for general-form `entries`: the compact form when every entry has the same version and
    no rank, else the entries as they are."""
    shared: tuple[Any, ...] | None = None
    for entry in entries.values():
        if len(entry) != 5 or "val" not in entry:  # a rank, or not an entry written here: keep it as it is
            return entries
        stamp = (entry.get("ts"), entry.get("sys"), entry.get("pri"), entry.get("pos"))
        if shared is None:
            shared = stamp
        elif stamp != shared:
            return entries
    if shared is None or None in shared:
        return entries
    compact: dict[str, Any] = {COMPACT: list(shared)}
    for column, entry in entries.items():
        compact[column] = entry["val"]
    return compact
