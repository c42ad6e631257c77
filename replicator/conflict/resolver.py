"""Field-by-field conflict resolution of one `TargetOp` against the target row. Pure: no I/O.

The applier reads the row (does it exist, and per field a `FieldState`), calls `resolve`, writes
`Resolution.writes` and stores `Resolution.versions` in the same transaction, and publishes the
`Resolution.decisions` to the audit topic. The rules are those of `policies` (see its module doc).

Merging is per field: each field of the op is decided on its own, so a field refused here does not stop
another field of the same op from being written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, assert_never

from replicator.conflict.policies import (
    FieldState,
    Outcome,
    Reassert,
    TargetValue,
    Verdict,
    decide_delta,
    decide_last_writer_wins,
    decide_monotonic,
    decide_owner,
    describe,
)
from replicator.errors import MappingError, SkippableRecordError
from replicator.mapping.ops import FieldChange, OpKind, Policy, TargetOp, Version, frozen_factory

__all__ = ["Decision", "FieldState", "Outcome", "Reassert", "Resolution", "new_row_decisions", "new_row_reason",
           "only_last_writer_wins",
           "resolve", "resolve_field"]

# Outcomes where the incoming value did not simply become the field's value.
_REFUSALS = frozenset(
    {Outcome.LOST, Outcome.KEPT_LOCAL, Outcome.OWNER_REFUSED, Outcome.OWNER_REASSERTED, Outcome.MONOTONIC_KEPT}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """One field's decision, with everything the audit topic needs to explain it."""

    column: str
    policy: Policy
    outcome: Outcome
    reason: str
    incoming_value: Any  # for delta: the amount
    incoming_version: Version | None
    incoming_rank: int | None
    row_exists: bool
    current_value: Any  # before this op; None if the row is missing
    current_version: Version | None  # credited to current_value: stored version, or local_version
    current_rank: int | None
    stored_version: Version | None  # the versions table's entry before this op
    stored_value: Any
    local_edit: bool  # current_value is not the replicator's last write: a local edit, or pre-replication
    estimated: bool  # the local value's time was assumed (unknown, clamped, or not comparable)
    write: bool  # `result` is written to the column
    result: Any  # the column's value after this op
    record: bool  # (incoming_version, incoming_value) is stored in the versions table
    reassert: Reassert | None = None  # OWNER_REFUSED: the value the target keeps, to send back

    @property
    def conflict(self) -> bool:
        """Whether two writers disagreed: the incoming value was refused, or it replaced a local edit."""
        if self.outcome in _REFUSALS:
            return True
        return self.outcome is Outcome.APPLIED and self.local_edit and self.write


_decision = frozen_factory(Decision)  # Decision(...), cheaper: one per field of every op


@dataclass(frozen=True, slots=True)
class Resolution:
    writes: dict[str, Any] = field(default_factory=dict)  # column -> value to write
    versions: dict[str, tuple[Version, Any]] = field(default_factory=dict)  # column -> (version, value)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether there is anything to persist: data to write or versions to record. A version can
        change without the data (a newer write of the value the row already has): it must still be
        stored, or an older event arriving later would win."""
        return bool(self.writes or self.versions)


def resolve(op: TargetOp, states: Mapping[str, FieldState], row_exists: bool) -> Resolution:
    """Decide every field of `op`. `states` holds a FieldState per field when the row exists; for a
    missing row it may be empty. A DELETE has no fields to decide: the empty resolution is returned."""
    if op.kind is OpKind.DELETE:
        return Resolution()
    if not row_exists and op.version is not None:
        return _resolve_new_row(op, op.version)
    decisions = [_resolve_in_context(op, column, change, states, row_exists) for column, change in op.fields.items()]
    writes = {d.column: d.result for d in decisions if d.write}
    versions = {
        d.column: (d.incoming_version, d.incoming_value)
        for d in decisions
        if d.record and d.incoming_version is not None
    }
    return Resolution(writes, versions, decisions)


def new_row_decisions(op: TargetOp) -> list[Decision]:
    """What `resolve(op, {}, False).decisions` is for an op with a version whose fields are all
    last_writer_wins (`only_last_writer_wins`): every incoming value applied, written and recorded. The
    applier's fast path for new rows writes and records exactly that without building these objects,
    except when they are asked for."""
    version = op.version
    assert version is not None
    reason = new_row_reason(version)
    # Positional, in Decision's field order (see _resolve_new_row).
    return [_decision(column, Policy.LAST_WRITER_WINS, Outcome.APPLIED, reason, change.value, version, change.rank,
                      False, None, None, None, None, None, False, False, True, change.value, True)
            for column, change in op.fields.items()]


def only_last_writer_wins(op: TargetOp) -> bool:
    """Whether every field of `op` is last_writer_wins without a rank."""
    for change in op.fields.values():
        if change.policy is not Policy.LAST_WRITER_WINS or change.rank is not None:
            return False
    return True


def new_row_reason(version: Version) -> str:
    """The reason of a last_writer_wins decision on a row the target does not hold."""
    return f"{describe(version)} is newer than the target's {describe(None)}"


def _resolve_new_row(op: TargetOp, version: Version) -> Resolution:
    """`resolve` for a row the target does not hold (the common case of a fresh row): nothing competes with
    the incoming values. A last_writer_wins field is decided here directly, exactly as
    `decide_last_writer_wins` decides it against a missing row (accepted, written, its version recorded);
    the other policies take the general path."""
    writes: dict[str, Any] = {}
    versions: dict[str, tuple[Version, Any]] = {}
    decisions: list[Decision] = []
    newer: str | None = None
    for column, change in op.fields.items():
        if change.policy is Policy.LAST_WRITER_WINS:
            if newer is None:
                newer = new_row_reason(version)
            value = change.value
            # Positional, in Decision's field order (cheaper than keywords, once per field of every new row):
            # column, policy, outcome, reason, incoming value, version and rank, row_exists, current value,
            # version and rank, stored version and value, local_edit, estimated, write, result, record.
            decision = _decision(column, Policy.LAST_WRITER_WINS, Outcome.APPLIED, newer, value, version, change.rank,
                                 False, None, None, None, None, None, False, False, True, value, True)
            writes[column] = value
            versions[column] = (version, value)
        else:
            decision = _resolve_in_context(op, column, change, _NO_STATES, False)
            if decision.write:
                writes[column] = decision.result
            if decision.record and decision.incoming_version is not None:
                versions[column] = (decision.incoming_version, decision.incoming_value)
        decisions.append(decision)
    return Resolution(writes, versions, decisions)


_NO_STATES: Mapping[str, FieldState] = {}


def resolve_field(
    column: str, change: FieldChange, version: Version | None, state: FieldState, row_exists: bool
) -> Decision:
    """Decide one field. Raises SkippableRecordError for a value the policy cannot use and MappingError
    when the op lacks what the policy needs (a version)."""
    policy = change.policy
    if policy.__class__ is not Policy:
        try:
            policy = Policy(policy)
        except ValueError:
            raise MappingError(f"unknown conflict policy {change.policy!r}") from None
    held = TargetValue.of(row_exists, state)
    verdict = _verdict(policy, change, version, held)
    return _decision(
        column=column,
        policy=policy,
        outcome=verdict.outcome,
        reason=verdict.reason,
        incoming_value=change.value,
        incoming_version=version,
        incoming_rank=change.rank,
        row_exists=row_exists,
        current_value=held.value,
        current_version=held.version,
        current_rank=held.rank,
        stored_version=held.stored_version,
        stored_value=held.written,
        local_edit=held.local,
        estimated=held.estimated,
        write=verdict.write,
        result=verdict.value if verdict.write else held.value,
        record=verdict.record,
        reassert=verdict.reassert,
    )


def _verdict(policy: Policy, change: FieldChange, version: Version | None, held: TargetValue) -> Verdict:
    if policy is Policy.DELTA:
        # Deltas do not compare versions: each source change is applied exactly once upstream.
        return decide_delta(change.value, held)
    if version is None:
        raise MappingError(f"a {policy.value} field needs the op's version to decide")
    if policy is Policy.LAST_WRITER_WINS:
        return decide_last_writer_wins(change.value, version, held, change.previous)
    if policy is Policy.OWNER:
        return decide_owner(change.value, change.owner, version, held)
    if policy is Policy.MONOTONIC:
        return decide_monotonic(change.value, change.rank, version, held)
    assert_never(policy)


def _resolve_in_context(
    op: TargetOp, column: str, change: FieldChange, states: Mapping[str, FieldState], row_exists: bool
) -> Decision:
    state = states.get(column)
    if state is None:
        if row_exists:
            raise ValueError(f"{op.table}.{column}: the applier passed no FieldState for an existing row")
        state = FieldState()
    try:
        return resolve_field(column, change, op.version, state, row_exists)
    except (SkippableRecordError, MappingError) as exc:
        where = f"{op.table}.{column}" + (f" ({op.mapping})" if op.mapping else "")
        raise type(exc)(f"{where}: {exc}") from exc
