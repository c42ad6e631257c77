"""The per-field conflict policies of DESIGN 4.4. Pure: no I/O, no clock.

Each policy compares one incoming field change with what the target holds for that field and returns a
`Verdict`: whether to write, whether to record the incoming version, and why. `resolver.resolve` runs
them over the fields of a `TargetOp`.

The order of writes
    Writes are ordered by `Stamp`: `Version.sort_key()` (source commit time, then the fixed system
    priority, then the source position), then the system name, so that the order stays total even if
    two systems were configured with the same priority. Every replica compares the same stamps, so
    it decides the same way whatever the arrival order. Positions are compared as text: they must be
    formatted so that text order is commit order within a system (fixed-width numbers).

What the target holds (`TargetValue.of`)
    The applier records the version of a local edit from the target's own change stream (`apply.own_changes`),
    so a local edit usually has a stored version like a replicated write, and where it matters it waits for
    it (`Applier._await_own_edits`). The cases below without one are the values no own change explains.
    - Row missing: nothing competes with the incoming value.
    - Field never written by the replicator (`FieldState.version is None`): the value was there before
      replication or was typed locally; it has no field-level time. It counts as older than every
      replicated write. `local_version` is deliberately not used here: the target only knows when the
      *row* changed, and an edit of another column would then block this field, which is exactly the
      per-field merge that DESIGN 4.4 promises ("concurrent edits of different fields both survive").
    - `current == written`: the replicator's last accepted write, at `FieldState.version`. A
      `local_version` is ignored: the row changed, this field did not.
    - `current != written`: a local edit the replicator has not seen. It replaced the replicated value,
      so it happened after `version`. Its time is `local_version`, raised to "just after `version`" if
      it is earlier (clock skew). When `local_version` is unknown the edit is dated just after
      `version`, the earliest moment it can have happened: it then wins against every incoming write
      that is not newer than the replicator's last write of the field (an old or repeated event never
      undoes a user's edit) and loses against newer ones. Both estimates are flagged (`estimated`).
      A local edit that sets the field back to exactly `written` cannot be told from no edit.

Policies
    - last_writer_wins: the greater stamp wins; an equal stamp is a duplicate and changes nothing. One
      exception: a change whose previous value is the target's value, and that value is the target's own
      (a local edit, recorded or not), follows it causally (the source had received it): it wins even with
      an older stamp, as MariaDB's whole seconds can give an edit made just after ours.
    - owner: only the owner's writes change the field. A write from another system is refused
      (OWNER_REFUSED) and the target's value is handed back as `Reassert`, so that the caller can send
      the owner's value back to the writer. In the two-system topology the target of a refused write is
      the owner, so its value is the owner's. Send it back as a write of the owner: at the writer any
      owner write, new or repeated, replaces a non-owner edit (see below). Prefer a fresh version:
      `Reassert.version` may be unknown or only the row's time, and an overestimated version would
      make the owner's later genuine writes look older. Among the owner's writes the later wins; a
      local edit by the target's own users is not the owner's (unless its known `local_version` names
      the owner) and is overwritten by the next owner write, even an old or repeated one, which then
      restores the owner's newest known value (OWNER_REASSERTED).
    - delta: always applied: current + amount (a missing row or NULL counts as 0), exactly, keeping the
      column's representation. Exactly-once is guaranteed upstream by positions; no version is kept.
    - monotonic: a lower rank never replaces a higher one; an equal rank falls back to
      last_writer_wins. The rank of the target's value is precise (the applier ranks `current`), so
      local edits are ranked like any other value.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from replicator.errors import SkippableRecordError
from replicator.mapping.ops import NO_PREVIOUS, Version

# (ts_ms, -priority, position, system, after): `after` = 1 places an estimated local edit just after the
# version it replaced, and below every real version that is newer.
Stamp = tuple[int, int, str, str, int]


def stamp_of(version: Version) -> Stamp:
    return (*version.sort_key(), version.system, 0)


def just_after(version: Version) -> Stamp:
    return (*version.sort_key(), version.system, 1)


def describe(version: Version | None) -> str:
    if version is None:
        return "unknown time"
    return f"{version.system}@{version.ts_ms}" + (f"/{version.position}" if version.position else "")


class Outcome(StrEnum):
    APPLIED = "applied"  # the incoming value is written (or already there) and its version recorded
    LOST = "lost"  # an older (or tie-losing) write than the replicated value the target holds
    KEPT_LOCAL = "kept_local"  # the target's newer local edit stays
    OWNER_REFUSED = "owner_refused"  # a non-owner's write of an owned field; the target's value stays
    OWNER_REASSERTED = "owner_reasserted"  # an owner write restored the owner's value over a local edit
    DELTA_APPLIED = "delta_applied"  # current + amount written
    MONOTONIC_KEPT = "monotonic_kept"  # a lower rank refused
    UNCHANGED = "unchanged"  # a duplicate of the version the target holds, or a zero delta


@dataclass(frozen=True, slots=True)
class FieldState:
    """What the target knows about one field of the row, as read by the applier.

    current: the value in the target row now (None if the row is missing).
    version, written: the version and value the replicator last wrote or accepted for this field (its
        versions table); None if never.
    local_version: when the target's own users last changed the row, if known, as a Version of the
        target system (its name and priority, position ""), e.g. from the row's commit timestamp or
        `date_upd`. Only used when `current != written` (see the module doc).
    rank: for monotonic fields, the rank of `current` in the declared order; None if it has none.
    """

    current: Any = None
    version: Version | None = None
    written: Any = None
    local_version: Version | None = None
    rank: int | None = None


@dataclass(frozen=True, slots=True)
class Reassert:
    """The value a target keeps for an owned field after refusing a non-owner's write: the value to send
    back to the writer, with its version if known."""

    value: Any
    version: Version | None


@dataclass(frozen=True, slots=True)
class TargetValue:
    """One field of the target as the policies compare it (see the module doc for the rules)."""

    exists: bool
    value: Any
    version: Version | None  # credited to `value`: the stored version, or local_version for a local value
    stamp: Stamp | None  # where `value` sits in the order of writes; None: older than every write
    local: bool  # `value` is not the replicator's last write
    estimated: bool  # the local value's time is assumed, not known
    rank: int | None
    stored_version: Version | None
    written: Any

    @classmethod
    def of(cls, row_exists: bool, state: FieldState) -> TargetValue:
        if not row_exists:
            return _MISSING
        current, stored, written, rank = state.current, state.version, state.written, state.rank
        if stored is None:
            # The row time is shown for the audit but not compared (see the module doc).
            present = current is not None
            return cls(True, current, state.local_version, None, present, present, rank, stored, written)
        if same_value(current, written):
            return cls(True, current, stored, stamp_of(stored), False, False, rank, stored, written)
        floor = just_after(stored)
        local = state.local_version
        if local is None:
            return cls(True, current, None, floor, True, True, rank, stored, written)
        known = stamp_of(local)
        return cls(True, current, local, max(known, floor), True, known < floor, rank, stored, written)

    def local_by(self, system: str) -> bool:
        """Whether the value is a local edit known to come from `system`."""
        return self.local and self.version is not None and self.version.system == system


_MISSING = TargetValue(False, None, None, None, False, False, None, None, None)  # what a missing row holds


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str
    write: bool = False
    value: Any = None  # what to write, when `write`
    record: bool = False  # store (incoming version, incoming value) in the versions table
    reassert: Reassert | None = None


def decide_last_writer_wins(value: Any, version: Version, held: TargetValue, previous: Any = NO_PREVIOUS) -> Verdict:
    incoming = stamp_of(version)
    if held.stamp is None or incoming > held.stamp:
        return _accept(value, held, f"{describe(version)} is newer than the target's {_held(held)}")
    if (previous is not NO_PREVIOUS and held.exists and _not_from(held, version.system)
            and same_value(previous, held.value)):
        # The source changed the very value this target holds: it had received it (this target's own edit,
        # replicated there) before changing it, so the change follows it. Clocks cannot tell within a second
        # (MariaDB stamps whole seconds), causality can.
        return _accept(value, held, f"{describe(version)} changed the target's value {held.value!r} itself")
    if incoming == held.stamp:
        return Verdict(Outcome.UNCHANGED, f"duplicate of {describe(version)}, which the target holds")
    return _refuse(held, f"{describe(version)} is older than the target's {_held(held)}")


def _not_from(held: TargetValue, system: str) -> bool:
    """Whether the target's value is not one `system` wrote: a local edit, unrecorded (`local`) or recorded from
    the target's own change stream (its stored version is the target system's)."""
    return held.local or (held.stored_version is not None and held.stored_version.system != system)


def decide_monotonic(value: Any, rank: int | None, version: Version, held: TargetValue) -> Verdict:
    if rank is None:
        raise SkippableRecordError(f"monotonic value {value!r} has no rank in the declared order")
    if not held.exists:
        return _accept(value, held, "new row")
    if held.rank is None:
        return _accept(value, held, f"the target's value {held.value!r} has no rank")
    if rank > held.rank:
        return _accept(value, held, f"rank {rank} is above the target's rank {held.rank}")
    if rank < held.rank:
        return Verdict(Outcome.MONOTONIC_KEPT, f"rank {rank} is below the target's rank {held.rank}")
    return decide_last_writer_wins(value, version, held)


def decide_owner(value: Any, owner: str | None, version: Version, held: TargetValue) -> Verdict:
    if owner is None:
        raise SkippableRecordError("owner policy without an owner system")
    if version.system != owner:
        reason = f"{version.system} does not own the field ({owner} does)"
        reassert = Reassert(held.value, held.version) if held.exists else None
        return Verdict(Outcome.OWNER_REFUSED, reason, reassert=reassert)
    latest = _owner_latest(held, owner)
    incoming = stamp_of(version)
    if latest is None or incoming > latest[0]:
        return _accept(value, held, f"owner write {describe(version)} is the owner's newest")
    if held.local and not held.local_by(owner):
        # A local edit of an owned field is not the owner's: whenever the owner speaks, even with an old
        # or repeated event, the target returns to the owner's newest known value.
        return Verdict(
            Outcome.OWNER_REASSERTED,
            "the owner's newest value replaces a non-owner local edit",
            write=True,
            value=latest[1],
        )
    if incoming == latest[0]:
        return Verdict(Outcome.UNCHANGED, f"duplicate of {describe(version)}, which the target holds")
    return _refuse(held, f"owner write {describe(version)} is older than the owner's {_held(held)}")


def decide_delta(amount: Any, held: TargetValue) -> Verdict:
    start = held.value if held.exists else None
    total = add_delta(start, amount)
    if start is not None and to_decimal(amount).is_zero():
        return Verdict(Outcome.UNCHANGED, "zero delta")
    return Verdict(
        Outcome.DELTA_APPLIED, f"{start if start is not None else 0} + {amount} = {total}", write=True, value=total
    )


def _owner_latest(held: TargetValue, owner: str) -> tuple[Stamp, Any] | None:
    """The newest owner value the target knows: the replicated one, or a local edit by the owner."""
    candidates: list[tuple[Stamp, Any]] = []
    if held.stored_version is not None and held.stored_version.system == owner:
        candidates.append((stamp_of(held.stored_version), held.written))
    if held.local_by(owner) and held.stamp is not None:
        candidates.append((held.stamp, held.value))
    return max(candidates, key=lambda candidate: candidate[0], default=None)


def _held(held: TargetValue) -> str:
    if held.local:
        return f"local edit ({describe(held.version)}{', estimated' if held.estimated else ''})"
    return describe(held.version)


def _accept(value: Any, held: TargetValue, reason: str) -> Verdict:
    # Writing a value the row already has would only cost a statement and a change event: skip it, but
    # still record the version so that older events keep losing.
    needed = not (held.exists and same_value(held.value, value))
    return Verdict(Outcome.APPLIED, reason, write=needed, value=value, record=True)


def _refuse(held: TargetValue, reason: str) -> Verdict:
    return Verdict(Outcome.KEPT_LOCAL if held.local else Outcome.LOST, reason)


# Exact decimal arithmetic: addition never rounds under this context, and bad operands raise.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Overflow],
)


def to_decimal(value: Any) -> Decimal:
    """A number as an exact Decimal: ints, Decimals, decimal strings (Debezium's encoding) and floats."""
    if isinstance(value, bool):
        raise SkippableRecordError(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest decimal that round-trips, not the binary expansion
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise SkippableRecordError(f"{value!r} is not a decimal number") from None
    else:
        raise SkippableRecordError(f"{value!r} ({type(value).__name__}) is not a number")
    if not number.is_finite():
        raise SkippableRecordError(f"{value!r} is not a finite number")
    return number


def add_delta(current: Any, amount: Any) -> Any:
    """`current + amount`, exact, in the representation of `current` (of `amount` if current is None).

    int stays int (a fractional result is an error: the column cannot hold it); a decimal string stays a
    decimal string, with the larger scale of the two operands so that nothing is rounded (equal scales,
    the usual case, keep the column's scale); Decimal stays Decimal; float stays float.
    """
    total = _EXACT.add(Decimal(0) if current is None else to_decimal(current), to_decimal(amount))
    if total.is_zero():
        total = total.copy_abs()  # never "-0"
    shape = amount if current is None else current
    if isinstance(shape, int) and not isinstance(shape, bool):
        if total != total.to_integral_value():
            raise SkippableRecordError(f"{current!r} + {amount!r} = {total} does not fit an integer column")
        return int(total)
    if isinstance(shape, float):
        return float(total)
    if isinstance(shape, Decimal):
        return total
    return format(total, "f")


def same_value(left: Any, right: Any) -> bool:
    """Whether two values of a column are the same. Numbers compare by value across representations
    (the database returns Decimal where the replicator wrote a decimal string)."""
    if left is None or right is None:
        return left is None and right is None
    if _is_number(left) or _is_number(right):
        try:
            return to_decimal(left) == to_decimal(right)
        except SkippableRecordError:
            return False
    return bool(left == right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
