"""Applies reassembled source transactions to one target database, exactly once.

A batch of units (source transactions and snapshot reads) is applied in one target transaction together
with the consumer's progress, so a crash anywhere either keeps the whole batch or none of it. The batch
is first tried optimistically as a whole; if the target refuses something (constraint, value too long)
it is rolled back and replayed unit by unit under savepoints, so the one bad source transaction is
dead-lettered whole (never half-applied) and the others go on. Later units touching a key whose earlier
change is dead-lettered are held behind it, not applied out of order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from replicator.apply.dialect.base import Key, Progress, TargetDialect, json_value
from replicator.apply.own_changes import OwnEdit, OwnTable
from replicator.apply.reassembly import SourcePosition, Unit
from replicator.apply.rows import CachedRow, RowStore, row_key_text
from replicator.apply.versions import canonical, compact_document, version_from_json, version_json
from replicator.conflict.policies import Outcome, describe, same_value, stamp_of, to_decimal
from replicator.conflict.resolver import (
    Decision,
    FieldState,
    Resolution,
    new_row_decisions,
    only_last_writer_wins,
    resolve,
)
from replicator.errors import (
    FatalError,
    MissingReferenceError,
    RetriableError,
    SkippableRecordError,
    driver_errors,
    lost_connection_errors,
)
from replicator.mapping.engine import instant_ms
from replicator.mapping.ops import NO_PREVIOUS, Aggregate, FieldChange, Lookup, OpKind, Policy, TargetOp, Version
from replicator.mapping.spec import value_text

log = logging.getLogger(__name__)

def _data_error_types() -> tuple[type[BaseException], ...]:
    """Errors of the target that belong to the data, not to the connection: the record is at fault."""
    import psycopg
    import pymysql

    return (
        psycopg.errors.DataError,
        psycopg.errors.IntegrityError,
        pymysql.err.DataError,
        pymysql.err.IntegrityError,
    )


class AwaitingOwnEdits(Exception):
    """A batch needs the version of a local edit that the target's own change stream has not delivered yet:
    a last_writer_wins field that both sides changed since they last agreed, whose value here no version
    explains. The batch is rolled back; the runner hands it over again once more own changes were read (see
    `Applier.own_tables`)."""

    def __init__(self, fields: list[tuple[str, Key, str]]) -> None:
        self.fields = fields
        shown = ", ".join(f"{table}{list(key)}.{column}" for table, key, column in fields[:5])
        super().__init__(f"waiting for the versions of local edits of {shown}"
                         + (f" and {len(fields) - 5} more" if len(fields) > 5 else ""))


# How long a batch waits for the versions of local edits, and a value for its own change. It arrives within
# capture's latency when the target's own capture runs; a value that no own change will ever explain (it was
# there before replication, or differs from the other side's only by the mapping's normalisation) is then
# decided by its row's time, and not waited for again.
OWN_EDIT_WAIT_S = 3.0
# Primary keys drawn ahead per query for new rows of identified entities (`Applier._reserved_key`): one query per
# up to this many new rows instead of an INSERT ... RETURNING and an identity INSERT per row. The first draw of a
# table is KEYS_FIRST_DRAWN and each next one twice the last: a few new rows now and then leave few unused keys
# (gaps in the sequence) when the applier stops, a snapshot soon draws the most.
KEYS_FIRST_DRAWN = 16
KEYS_DRAWN = 500

# A unit's target ops as the mapping engine made them, or the record-level error that mapping it raised.
MappedUnit = list[TargetOp] | SkippableRecordError


@dataclass
class UnitOutcome:
    unit: Unit
    # Per op applied, in order, its field decisions; None for an op that created a row from last_writer_wins
    # fields only, whose decisions follow from the op alone (`resolver.new_row_decisions`): they are built only
    # when asked for (`decisions`), the audit record is written from the op itself.
    op_decisions: list[tuple[TargetOp, list[Decision] | None]] = field(default_factory=list)
    dead_letter: str | None = None  # the error, when the unit was dead-lettered
    held_behind: int | None = None
    # A unit whose referenced row has not arrived yet (a snapshot read, or a streamed transaction while a snapshot
    # is applied), or a streamed transaction of a source whose stream waits behind such a one: try again later.
    deferred: bool = False

    @property
    def decisions(self) -> list[tuple[TargetOp, Decision]]:
        """Every field decision of the unit, with its op."""
        return [(op, decision) for op, decisions in self.op_decisions
                for decision in (new_row_decisions(op) if decisions is None else decisions)]


@dataclass
class BatchResult:
    outcomes: list[UnitOutcome]
    elapsed_s: float


class TableShapes:
    """Primary-key columns of target tables, read once from the database's catalog."""

    def __init__(self, dialect: TargetDialect) -> None:
        self._dialect = dialect
        self._keys: dict[str, tuple[str, ...]] = {}

    def primary_key(self, table: str) -> tuple[str, ...]:
        cached = self._keys.get(table)
        if cached is None:
            cached = self._keys[table] = self._dialect.primary_key_columns(table)
            if not cached:
                raise FatalError(f"target table {table} has no primary key; the replicator needs one to find rows")
        return cached


class Applier:
    def __init__(
        self,
        dialect: TargetDialect,
        ops_for: Callable[[dict[str, Any]], list[TargetOp]],
        *,
        consumer: str,
        target_system: str,
        target_priority: int = 100,
        local_times: Mapping[str, tuple[str, str]] | None = None,
        tracked_columns: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.dialect = dialect
        self.ops_for = ops_for
        self.consumer = consumer
        self.target_system = target_system
        self.target_priority = target_priority
        # Per target table: the column that dates local edits and its time zone (mapping `local_time`).
        self.local_times = {table: (column, ZoneInfo(zone)) for table, (column, zone) in (local_times or {}).items()}
        # Per target table: every column some rule writes, whose local edits `_adopt_local_edits` pins; only
        # where the database dates rows (PostgreSQL): elsewhere there is nothing to pin, so nothing more to read.
        self.tracked_columns = {table: frozenset(columns) for table, columns in (tracked_columns or {}).items()
                                if dialect.row_written_ms_sql is not None}
        self.shapes = TableShapes(dialect)
        self.held_keys: dict[str, int] = {}  # source record key -> dead letter id holding it
        # Identities created in the current target transaction: (entity, system, source key) -> target key.
        self._created_identities: dict[tuple[str, str, str], Key] = {}
        # Per target table, primary keys drawn ahead for new rows of identified entities (`_reserved_key`), and how
        # many the last draw took.
        self._key_pool: dict[str, deque[Key]] = {}
        self._keys_drawn: dict[str, int] = {}
        self._record_errors: tuple[type[BaseException], ...] = (*_data_error_types(), SkippableRecordError)
        # Per target table, what the runner reads back from the target's own change stream: the columns whose
        # local edits are versioned (`record_own_edits`; a conflict on one waits for the edit's version) and those
        # another system owns (a local edit of one is undone).
        self.own_tables: dict[str, OwnTable] = {}
        # The owner values the current batch wrote back over local edits: (table, key, decision), for the audit.
        self.reasserted: list[tuple[str, dict[str, Any], Decision]] = []
        # (table, key, column, value) of local edits waited for -> since when (monotonic); when the batch being
        # applied first waited (None once a batch commits).
        self._own_waits: dict[tuple[str, Key, str, Any], float] = {}
        self._own_wait_started: float | None = None

    # -- start-up ---------------------------------------------------------------------------------------

    def prepare(self) -> Progress:
        """Create the replicator's tables if needed, and read progress and the keys held by dead letters."""
        self.dialect.ensure_replicator_tables()
        for letter_id, keys in self.dialect.execute(
            "SELECT id, " + self.dialect.quote("keys") + " FROM replicator_dead_letter "
            "WHERE consumer = %s AND status IN ('dead', 'held', 'retry') ORDER BY id",
            (self.consumer,),
        ):
            for key in json_value(keys):
                self.held_keys.setdefault(key, int(letter_id))
        return self.dialect.load_progress(self.consumer)

    def _open_letters(self) -> list[tuple[int, str, str, list[str], list[dict[str, Any]]]]:
        rows = self.dialect.execute(
            "SELECT id, status, source, " + self.dialect.quote("keys") + ", envelopes FROM replicator_dead_letter "
            "WHERE consumer = %s AND status IN ('dead', 'held', 'retry') ORDER BY id",
            (self.consumer,),
        )
        return [(int(i), str(st), str(src), json_value(k), json_value(e)) for i, st, src, k, e in rows]

    def _reload_holds(self, letters: list[tuple[int, str, str, list[str], list[dict[str, Any]]]]) -> None:
        self.held_keys = {}
        for letter_id, _, _, keys, _ in letters:
            for key in keys:
                self.held_keys.setdefault(key, letter_id)

    def process_retries(self) -> list[tuple[int, str]]:
        """Re-apply dead letters marked for retry, and held ones whose blocker is gone, in order.

        Returns (letter id, new status) for each letter tried. A letter is tried only when no earlier open
        letter holds one of its keys, so a key's changes still apply in their source order.
        """
        letters = self._open_letters()
        tried: list[tuple[int, str]] = []
        for letter_id, status, source, keys, envelopes in letters:
            if status == "dead":
                continue
            blocked = any(self.held_keys.get(key, letter_id) < letter_id for key in keys)
            if blocked:
                continue
            from replicator.apply.reassembly import Event

            events = [Event(e["topic"], e["partition"], e["offset"], e["key"], e["value"]) for e in envelopes]
            unit = Unit(None, None, events)
            self.dialect.begin()
            try:
                store = RowStore(self.dialect)
                self._created_identities.clear()  # those of an earlier transaction, which may have rolled back
                self._apply_unit(unit, store, UnitOutcome(unit))
                store.flush()
                new_status, error = "applied", None
            except AwaitingOwnEdits:
                self.dialect.rollback()
                break  # tried again with the next retries, once own changes were read (later letters wait behind)
            except self._record_errors as exc:
                self.dialect.rollback()
                self.dialect.begin()
                new_status, error = "dead", f"{type(exc).__name__}: {exc}"
            self.dialect.execute(
                "UPDATE replicator_dead_letter SET status = %s, error = COALESCE(%s, error), "
                "resolved_at = CASE WHEN %s = 'applied' THEN CURRENT_TIMESTAMP ELSE NULL END WHERE id = %s",
                (new_status, error, new_status, letter_id),
            )
            self.dialect.commit()
            tried.append((letter_id, new_status))
            log.info("dead letter retried", extra={"dead_letter": letter_id, "status": new_status,
                                                   "source": source})
            self._reload_holds(self._open_letters())
        if not tried:
            self._reload_holds(letters)
        return tried

    # -- batches ----------------------------------------------------------------------------------------

    def apply_batch(
        self,
        units: Sequence[Unit],
        sources: Sequence[str],
        progress_for: Callable[[list[UnitOutcome]], Progress],
        *,
        may_defer: Callable[[Unit], bool] = lambda unit: False,
        mapped: Sequence[MappedUnit | None] | None = None,
        before_commit: Callable[[list[UnitOutcome]], None] | None = None,
        own_edits: Sequence[OwnEdit] = (),
        isolated_from: int | None = None,
    ) -> BatchResult:
        """Apply `units` (each tagged with its source name in `sources`) and, in the same transaction, the
        progress that `progress_for` derives from what was applied (deferred units are not).

        `mapped`: per unit, what `map_unit` gave for it if the caller mapped it already (while the previous
        batch was written), else None; the ops are used once, by the optimistic pass. `before_commit`: called
        with the outcomes once everything is written, before the commit (the audit records, which must be
        durable before the decisions are); if it raises, the batch is rolled back. `own_edits`: the target's own
        edits read since the previous batch, whose versions are recorded first (`record_own_edits`). `may_defer`:
        whether a unit that refers to a row the target does not hold yet may wait for it (its outcome `deferred`)
        rather than be dead-lettered; a deferred streamed transaction defers its source's later ones, untried.
        `isolated_from`: the index from which units are applied one by one (each in a savepoint) after the others
        are applied together: units that waited for a row in an earlier batch, which may well wait again, without
        making the whole batch fall back to being applied one by one."""
        started = time.monotonic()
        dialect = self.dialect
        try:
            # Inside: a connection lost between two batches shows here first (PyMySQL sends the BEGIN).
            dialect.begin()
            try:
                outcomes = self._apply_all(units, sources, isolate=False, may_defer=may_defer, mapped=mapped,
                                           own_edits=own_edits, isolated_from=isolated_from)
            except self._record_errors:
                dialect.rollback()
                dialect.begin()
                outcomes = self._apply_all(units, sources, isolate=True, may_defer=may_defer, own_edits=own_edits)
            dialect.save_progress(self.consumer, progress_for(outcomes))
            if before_commit is not None:
                before_commit(outcomes)
            dialect.commit()
            self._own_wait_started = None
        except lost_connection_errors() as exc:
            # A deadlock with a local transaction (a shop order locking the stock row the batch recomputes),
            # a lock-wait timeout, a lost connection: nothing of the batch is committed; the supervisor
            # restarts the applier, which resumes from the progress stored with the last committed batch.
            # The rollback of a lost connection fails too (and the server has rolled back): what the batch
            # failed with is what is reported.
            with contextlib.suppress(*driver_errors()):
                dialect.rollback()
            raise RetriableError(f"target {self.consumer}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            dialect.rollback()
            raise
        return BatchResult(outcomes, time.monotonic() - started)

    def _apply_all(self, units: Sequence[Unit], sources: Sequence[str], *, isolate: bool,
                   may_defer: Callable[[Unit], bool],
                   mapped: Sequence[MappedUnit | None] | None = None,
                   own_edits: Sequence[OwnEdit] = (), isolated_from: int | None = None) -> list[UnitOutcome]:
        store = RowStore(self.dialect)
        self._created_identities.clear()
        self.reasserted = []
        if own_edits:
            # Before any unit is decided, and written at once: a unit's savepoint must not take them back.
            self.record_own_edits(own_edits, store)
            store.flush()
        outcomes: list[UnitOutcome] = []
        # Sources whose stream waits behind a deferred transaction: their later transactions wait too, untried, so
        # that a source's transactions are applied in commit order and its applied position never passes one.
        waiting_streams: set[str] = set()
        # Optimistic pass: map every unit first, then look up and read all their target rows in bulk (a
        # few queries per batch instead of per source transaction); the units then run from memory. Units from
        # `isolated_from` on (units tried before that waited for a row) are applied one by one after the others.
        prepared: list[tuple[UnitOutcome, list[TargetOp]]] = []
        bulk = len(units) if isolate or isolated_from is None else isolated_from

        def apply_one(index: int, unit: Unit, source: str, one_by_one: bool) -> None:
            outcome = UnitOutcome(unit)
            outcomes.append(outcome)
            if waiting_streams and unit.transaction_id is not None and source in waiting_streams:
                outcome.deferred = True
                return
            keys = unit_keys(unit) if self.held_keys or one_by_one else []
            if unit.error is not None:
                # Every dead-letter error starts with its class, as the DLQ topic's error_class reports it.
                outcome.dead_letter = f"UnreadableMessage: {unit.error}"
                self._dead_letter(unit, source, outcome.dead_letter, "dead", [])
                return
            holder = next((self.held_keys[k] for k in keys if k in self.held_keys), None) if keys else None
            if holder is not None:
                outcome.held_behind = holder
                letter = self._dead_letter(unit, source, f"HeldBehind: dead letter {holder}", "held", keys)
                for key in keys:
                    self.held_keys.setdefault(key, letter)
                return
            if not one_by_one:
                done = mapped[index] if mapped is not None else None
                if done is None:
                    prepared.append((outcome, self._ops_of(unit)))
                elif isinstance(done, SkippableRecordError):
                    raise done  # as _ops_of would have raised here
                else:
                    prepared.append((outcome, done))
                return
            savepoint = f"u{index}"
            self.dialect.savepoint(savepoint)
            try:
                self._apply_unit(unit, store, outcome)
                store.flush()
                self.dialect.release(savepoint)
            except self._record_errors as exc:
                self.dialect.rollback_to(savepoint)
                store.discard_pending()
                self._created_identities.clear()  # some were rolled back; the rest are found in the table
                outcome.op_decisions.clear()
                if isinstance(exc, MissingReferenceError) and may_defer(unit):
                    outcome.deferred = True
                    if unit.transaction_id is not None:
                        waiting_streams.add(source)
                    return
                outcome.dead_letter = f"{type(exc).__name__}: {exc}"
                letter = self._dead_letter(unit, source, outcome.dead_letter, "dead", keys)
                for key in keys:
                    self.held_keys.setdefault(key, letter)

        for index in range(bulk):
            apply_one(index, units[index], sources[index], isolate)
        if prepared:
            every_op = [op for _, ops in prepared for op in ops]
            self._resolve_lookups(every_op, strict=False, store=store)
            self._load_rows(every_op, store)
            primary_key = self.shapes.primary_key
            for outcome, ops in prepared:
                if len(ops) == 1 and ops[0].new_row_versions is not None:
                    # What _run_ops and _apply_op do for the one op of a unit that creates a row the target does
                    # not hold (its row was read above), without their calls: most units of most batches.
                    op, versions = ops[0], ops[0].new_row_versions
                    row_key = _key_of(op.key, primary_key(op.table))
                    cached = None if row_key is None else store.cached(op.table, row_key)
                    if (cached is not None and cached.values is None and not cached.versions
                            and cached.compact is None and row_key is not None and versions is not None):
                        store.insert_new(op.table, row_key, _new_row_values(op), versions)
                        outcome.op_decisions.append((op, None))
                        continue
                self._run_ops(ops, store, outcome)
        store.flush()
        for index in range(bulk, len(units)):
            apply_one(index, units[index], sources[index], True)
        return outcomes

    def record_own_edits(self, edits: Sequence[OwnEdit], store: RowStore) -> None:
        """Record the versions of the target's own edits (see `apply.own_changes`): for each column an edit
        changed and the row still holds, the edit's version, unless the field's stored version is as new. A
        value the row no longer holds is not recorded (a later edit or write replaced it, and dates itself);
        nor is one whose event form is not the row's (times arrive as numbers): such a field keeps being dated
        by its row, as before."""
        by_table: dict[str, list[OwnEdit]] = {}
        for edit in edits:
            by_table.setdefault(edit.table, []).append(edit)
        for table, table_edits in by_table.items():
            pk = self.shapes.primary_key(table)
            own = self.own_tables.get(table)
            owned = own.owned if own is not None else {}
            columns = {c for edit in table_edits for c in edit.values}
            store.load(table, pk, [edit.key for edit in table_edits], self._columns_to_read(table, columns))
            for edit in table_edits:
                cached = store.get(table, edit.key)
                if cached.values is None:
                    continue  # deleted since
                incoming = stamp_of(edit.version)
                recorded = False
                for column, raw in edit.values.items():
                    current = cached.values.get(column)
                    if current.__class__ not in _OWN_RECORDABLE:
                        continue
                    if raw.__class__ is str and current.__class__ is Decimal:
                        try:
                            raw = to_decimal(raw)  # numeric/decimal columns travel as text
                        except SkippableRecordError:
                            continue  # NaN, or not a number: not comparable with the row's
                    if canonical(current) != canonical(raw):
                        continue
                    if column in owned:
                        self._reassert_owner(table, pk, edit, column, owned[column], cached, store)
                        continue
                    entries = cached.field_versions()
                    stored = entries.get(column)
                    if isinstance(stored, dict) and stamp_of(version_from_json(stored)) >= incoming:
                        continue
                    entries[column] = version_json(edit.version, current, None)
                    recorded = True
                if recorded:
                    store.versions_changed(table, edit.key)

    def _reassert_owner(self, table: str, pk: tuple[str, ...], edit: OwnEdit, column: str, owner: str,
                        cached: CachedRow, store: RowStore) -> None:
        """A local edit of a field `owner` owns, still held by the row: write the owner's last value back, the
        one the replicator last wrote (with no such value, the owner never spoke: the edit stays)."""
        assert cached.values is not None
        stored = cached.field_versions().get(column)
        if not isinstance(stored, dict) or stored.get("sys") != owner:
            return
        current = cached.values.get(column)
        value: Any = stored.get("val")
        if current.__class__ is bool and value is not None:
            value = bool(int(value))  # stored as 0/1 (canonical)
        if canonical(current) == stored.get("val"):
            return  # the owner's value already
        store.update(table, pk, edit.key, {column: value})
        cached.values[column] = value
        owner_version = version_from_json(stored)
        self.reasserted.append((table, dict(zip(pk, edit.key, strict=True)), Decision(
            column=column, policy=Policy.OWNER, outcome=Outcome.OWNER_REASSERTED,
            reason=f"a local edit ({describe(edit.version)}) of a field {owner} owns: the owner's last value "
                   f"({describe(owner_version)}) written back",
            incoming_value=current, incoming_version=edit.version, incoming_rank=None, row_exists=True,
            current_value=current, current_version=edit.version, current_rank=None, stored_version=owner_version,
            stored_value=stored.get("val"), local_edit=True, estimated=False, write=True, result=value,
            record=False)))

    def _dead_letter(self, unit: Unit, source: str, error: str, status: str, keys: list[str]) -> int:
        rows = self.dialect.execute(
            "INSERT INTO replicator_dead_letter (consumer, source, transaction_id, status, error, "
            + self.dialect.quote("keys") + ", envelopes) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (self.consumer, source, unit.transaction_id, status, error, orjson.dumps(keys).decode(),
             orjson.dumps([{"topic": e.topic, "partition": e.partition, "offset": e.offset, "key": e.key,
                            "value": e.value} for e in unit.events]).decode()),
        )
        letter_id = int(rows[0][0])
        # The error in the message too: a plain log format shows no extras.
        log.warning("dead-lettered transaction %s as #%d: %s", unit.transaction_id, letter_id, error,
                    extra={"consumer": self.consumer, "dead_letter": letter_id,
                           "transaction": unit.transaction_id, "error": error})
        return letter_id

    # -- one unit ---------------------------------------------------------------------------------------

    def map_unit(self, unit: Unit) -> MappedUnit:
        """The target ops of a unit, or the record-level error mapping it raised. Pure (the mapping engine
        only): the runner maps the next batch with it while this one is being written."""
        try:
            ops = self._ops_of(unit)
        except SkippableRecordError as exc:
            return exc
        for op in ops:
            if op.plain or _plain_upsert(op):
                assert op.version is not None
                op.new_row_versions = compact_document(op.version, op.fields)
        return ops

    def _ops_of(self, unit: Unit) -> list[TargetOp]:
        ops: list[TargetOp] = []
        for number, event in enumerate(unit.events):
            try:
                event_ops = self.ops_for(event.value)
            except SkippableRecordError as exc:
                raise SkippableRecordError(f"{event.topic}[{event.partition}]@{event.offset}: {exc}") from exc
            if number == 0 and len(event_ops) == 1 and event_ops[0].plain and len(unit.events) == 1:
                return event_ops  # the common unit, one op without aggregates (event number 0): as below
            for op in event_ops:
                op.event = number
            ops.extend(event_ops)
        # Aggregates (stock = mirrored ERP quants - open shop order lines) are computed after every other
        # write of the source transaction, so that they count the rows it changed, whatever its event order.
        aggregated = [op for op in ops if _has_aggregates(op)]
        return [op for op in ops if not _has_aggregates(op)] + aggregated if aggregated else ops

    def _apply_unit(self, unit: Unit, store: RowStore, outcome: UnitOutcome) -> None:
        ops = self._ops_of(unit)
        if not ops:
            return
        self._resolve_lookups(ops, strict=False, store=store)
        self._load_rows(ops, store)
        self._run_ops(ops, store, outcome)

    def _run_ops(self, ops: list[TargetOp], store: RowStore, outcome: UnitOutcome) -> None:
        # Bulk look-ups ran first; what they missed may be created by an earlier op (an order's lines look
        # up the order inserted just before them), so an op with a look-up left looks again right before.
        if len(ops) == 1 and ops[0].when_written is None:  # the common unit: what the loop below does for it
            op = ops[0]
            if op.new_row_versions is None and _has_lookups(op):
                self._resolve_lookups([op], strict=True, store=store)
            decisions = self._apply_op(op, store)
            if decisions is None or decisions:
                outcome.op_decisions.append((op, decisions))
            return
        written: set[tuple[int, str, str]] = set()  # (event, rule, column) whose value changed
        track = any(op.when_written is not None for op in ops)  # only appends with when_written ask
        for op in ops:
            if op.when_written is not None and (op.event, *op.when_written) not in written:
                continue  # e.g. no order-history row: the state did not move
            if op.new_row_versions is None and _has_lookups(op):  # a mapped plain upsert has none
                self._resolve_lookups([op], strict=True, store=store)
            decisions = self._apply_op(op, store)
            if track:
                for decision in new_row_decisions(op) if decisions is None else decisions:
                    if decision.write and decision.result != decision.current_value:
                        written.add((op.event, op.mapping, decision.column))
            if decisions is None or decisions:
                outcome.op_decisions.append((op, decisions))

    def _resolve_lookups(self, ops: list[TargetOp], *, strict: bool, store: RowStore) -> None:
        """Replace the Lookups in keys and field values by what the target holds, in bulk. Required ones
        not found stay in place unless `strict`, which makes them a record-level error. Identities created in this
        transaction are known without a query; before a query, `store` sends its planned writes, so that the rows
        and identities of earlier ops are found."""
        wanted: dict[tuple[Any, ...], list[Lookup]] = {}
        group: tuple[Any, ...]
        for op in ops:
            if op.new_row_versions is not None:
                continue  # a plain upsert, mapped ahead: no look-up (_plain_upsert)
            system = op.version.system if op.version else ""
            for value in (*op.key.values(), *(f.value for f in op.fields.values())):
                if isinstance(value, Lookup):
                    if value.kind == "identity":
                        # Identities are looked up among those the same source system created.
                        group = ("identity", value.entity, system)
                    else:
                        group = ("natural", value.table, tuple(c for c, _ in value.match), value.returns)
                    wanted.setdefault(group, []).append(value)
        if not wanted:
            return  # no look-up anywhere: nothing to replace
        results: dict[Lookup, Any] = {}
        created = self._created_identities
        for group, lookups in wanted.items():
            if group[0] == "identity":
                entity, system = str(group[1]), str(group[2] or "")
                unknown = []
                for lk in lookups:
                    key = created.get((entity, system, str(lk.source_key)))
                    if key is None:
                        unknown.append(lk)
                    else:
                        results[lk] = key[0]
                if unknown:
                    store.flush()
                    found = self.dialect.identities(entity, system, (str(lk.source_key) for lk in unknown))
                    for lk in unknown:
                        target = found.get(str(lk.source_key))
                        results[lk] = None if target is None else orjson.loads(target)[0]
                if any(lk.table is not None for lk in lookups):
                    store.flush()
                    self._identified_columns(lookups, results)
            else:
                store.flush()
                table, columns, returns = str(group[1]), list(group[2]), str(group[3])
                values = [tuple(v for _, v in lk.match) for lk in lookups]
                found_nat = self.dialect.natural_lookup(table, columns, returns, values)
                for lk, value in zip(lookups, values, strict=True):
                    results[lk] = found_nat.get(value)
        for op in ops:
            if op.new_row_versions is not None:
                continue
            for column, value in list(op.key.items()):
                if isinstance(value, Lookup) and (strict or results.get(value) is not None or not value.required):
                    op.key[column] = self._looked_up(op, column, value, results)
            for column, change in list(op.fields.items()):
                lookup = change.value
                if isinstance(lookup, Lookup) and (strict or results.get(lookup) is not None or not lookup.required):
                    op.fields[column] = FieldChange(self._looked_up(op, column, lookup, results),
                                                    change.policy, change.rank, change.owner)

    def _identified_columns(self, lookups: list[Lookup], results: dict[Lookup, Any]) -> None:
        """Identity look-ups with `table` + `returns` want a column of the identified row (the partner of the
        sale order an invoice belongs to), not its key: read those columns, per table, in one query."""
        by_table: dict[tuple[str, str], list[Lookup]] = {}
        for lk in lookups:
            if lk.table is not None and lk.returns is not None and results.get(lk) is not None:
                by_table.setdefault((lk.table, lk.returns), []).append(lk)
        for (table, returns), wanted in by_table.items():
            pk = self.shapes.primary_key(table)
            found = self.dialect.natural_lookup(table, pk[:1], returns, [(results[lk],) for lk in wanted])
            for lk in wanted:
                results[lk] = found.get((results[lk],))

    @staticmethod
    def _looked_up(op: TargetOp, column: str, lookup: Lookup, results: dict[Lookup, Any]) -> Any:
        value = results.get(lookup)
        if value is None and lookup.required:
            what = (f"identity of {lookup.entity} {lookup.source_key}" if lookup.kind == "identity"
                    else f"{lookup.table} row where {dict(lookup.match)}")
            raise MissingReferenceError(f"{op.mapping}: {op.table}.{column}: no {what} in the target")
        return value

    def _load_rows(self, ops: list[TargetOp], store: RowStore) -> None:
        identity_ops = [op for op in ops if op.identity is not None]
        by_entity: dict[tuple[str, str], list[str]] = {}
        for op in identity_ops:
            assert op.identity is not None
            by_entity.setdefault((op.identity[0], op.version.system if op.version else ""), []).append(op.identity[1])
        for (entity, system), source_keys in by_entity.items():
            found = self.dialect.identities(entity, system, source_keys)
            for op in identity_ops:
                assert op.identity is not None
                if op.identity[0] != entity or (op.version.system if op.version else "") != system:
                    continue
                pk = self.shapes.primary_key(op.table)
                target = found.get(op.identity[1])
                if target is None and op.match:
                    target = self._link_by_match(op, system)
                    if target is not None:
                        found[op.identity[1]] = target
                if target is not None:
                    op.key = dict(zip(pk, orjson.loads(target), strict=True))
        per_table: dict[str, tuple[set[Key], set[str]]] = {}
        for op in ops:
            key = _key_of(op.key, self.shapes.primary_key(op.table))
            if key is None:
                continue
            entry = per_table.get(op.table)
            if entry is None:
                entry = per_table[op.table] = (set(), set())
            entry[0].add(key)
            entry[1].update(op.fields)
        for table, (keys, columns) in per_table.items():
            store.load(table, self.shapes.primary_key(table), keys, self._columns_to_read(table, columns))

    def _reserved_key(self, table: str, pk: tuple[str, ...]) -> Key | None:
        """A primary key for a new row of `table` drawn ahead (`TargetDialect.reserve_keys`, see KEYS_DRAWN), or None
        where the target cannot draw keys ahead."""
        pool = self._key_pool.get(table)
        if not pool:
            count = min(KEYS_DRAWN, 2 * self._keys_drawn.get(table, KEYS_FIRST_DRAWN // 2))
            keys = self.dialect.reserve_keys(table, pk, count)  # the dialect remembers which tables cannot
            if not keys:
                return None
            self._keys_drawn[table] = count
            pool = self._key_pool[table] = deque(keys)
        return pool.popleft()

    def _link_by_match(self, op: TargetOp, system: str) -> str | None:
        """A row that existed before replication: find it by its natural key and record the link.

        A row already linked to another source row of the entity is not one: it is that row's (a shop customer
        who registers with the e-mail an ERP partner of another customer holds at that moment must not take
        that partner away from its customer). Ambiguity (several unlinked rows match) is a record-level error:
        guessing would merge two customers."""
        assert op.identity is not None
        pk = self.shapes.primary_key(op.table)
        columns = sorted(op.match)
        rows = self.dialect.execute(
            f"SELECT {', '.join(self.dialect.quote(c) for c in pk)} FROM {self.dialect.table_ref(op.table)} WHERE "
            + " AND ".join(f"{self.dialect.quote(c)} = %s" for c in columns),
            [op.match[c] for c in columns],
        )
        if rows:
            keys = [row_key_text(tuple(row)) for row in rows]
            linked = {str(key) for (key,) in self.dialect.execute(
                "SELECT target_key FROM replicator_identity WHERE entity = %s AND target_key IN ("
                + ", ".join(["%s"] * len(keys)) + ")", (op.identity[0], *keys))}
            rows = [row for row, key in zip(rows, keys, strict=True) if key not in linked]
        if not rows:
            return None
        if len(rows) > 1:
            raise SkippableRecordError(
                f"{op.mapping}: {op.table}: {len(rows)} rows match {op.match}; link {op.identity[0]} "
                f"{op.identity[1]} by hand (replicator_identity) or make the natural key unique"
            )
        target_key = row_key_text(tuple(rows[0]))
        self.dialect.add_identity(op.identity[0], system, op.identity[1], target_key)
        op.adopted = True
        return target_key

    def _find_primary_key(self, op: TargetOp, pk: tuple[str, ...], store: RowStore) -> None:
        """The rule's key is another unique key of the table (ps_stock_available's product, attribute, shop
        and shop group): find the row's primary key, keeping the rule's key columns for aggregates."""
        store.flush()  # the row may have been inserted by an earlier op of this batch
        columns = sorted(op.key)
        where = " AND ".join(f"{self.dialect.quote(c)} = %s" for c in columns)
        rows = self.dialect.execute(
            f"SELECT {', '.join(self.dialect.quote(c) for c in pk)} FROM {self.dialect.table_ref(op.table)} "
            f"WHERE {where}",
            [op.key[c] for c in columns],
        )
        if len(rows) > 1:
            raise SkippableRecordError(
                f"{op.mapping}: {op.table}: {len(rows)} rows have {op.key}; the key must be unique"
            )
        if rows:
            op.key = {**op.key, **dict(zip(pk, rows[0], strict=True))}

    def _resolve_aggregates(self, op: TargetOp, store: RowStore) -> None:
        """Compute aggregate field values (e.g. sellable stock) with one query each, in the target database.

        The target row is locked first and the aggregate read after the lock: a local transaction that
        changed the row (a shop order decrementing its stock) is then either committed and counted, or
        waits for us and applies its change on top of our value. The row is re-read after the lock, so the
        conflict resolver compares with what the row really holds."""
        if not _has_aggregates(op):
            return
        aggregates = {c: ch for c, ch in op.fields.items() if isinstance(ch.value, Aggregate)}
        pk = self.shapes.primary_key(op.table)
        if all(c in op.key for c in pk):
            key = tuple(op.key[c] for c in pk)
            store.flush()
            self.dialect.lock_row(op.table, pk, key)
            store.forget(op.table, key)
            store.load(op.table, pk, [key], self._columns_to_read(op.table, op.fields))
        for column, change in aggregates.items():
            value = change.value
            assert isinstance(value, Aggregate)
            if value.system != self.target_system:
                raise SkippableRecordError(
                    f"{op.mapping}: {op.table}.{column}: the aggregate reads {value.system}'s database, which this "
                    f"applier (writing {self.target_system}) cannot query"
                )
            try:
                bound = value.bind(op.key)
            except KeyError as exc:
                raise SkippableRecordError(
                    f"{op.mapping}: {op.table}.{column}: the aggregate's group needs key column {exc} of the row"
                ) from None
            sql, params = bound.sql(self.dialect.identifier_quote)
            rows = self.dialect.execute(sql, params)
            result = rows[0][0] if rows else None
            if value.integer and result is not None:
                result = int(result)
            op.fields[column] = FieldChange(result, change.policy, change.rank, change.owner)

    def _apply_op(self, op: TargetOp, store: RowStore) -> list[Decision] | None:
        """Decide and plan one op; its decisions, or None when they are `new_row_decisions(op)`."""
        pk = self.shapes.primary_key(op.table)
        key = _key_of(op.key, pk)
        if op.new_row_versions is not None and key is not None:
            # What the general path below does for such an op (no look-up, aggregate or identity to resolve),
            # up to the shortcut for a new row, with the versions document worked out when it was mapped.
            cached = store.cached(op.table, key)
            if cached is None:
                store.load(op.table, pk, [key], self._columns_to_read(op.table, op.fields))
                cached = store.get(op.table, key)
            if cached.values is None and not cached.versions and cached.compact is None:
                self._insert_new_row(op, key, store, op.new_row_versions)
                return None
        if key is None:
            if op.identity is not None:
                # Created by an earlier op of this unit (after the unit's identities were looked up)?
                created = self._created_identities.get((op.identity[0], op.version.system if op.version else "",
                                                        op.identity[1]))
                if created is not None:
                    op.key = dict(zip(pk, created, strict=True))
            if op.key and not all(c in op.key for c in pk):
                self._find_primary_key(op, pk, store)
            key = _key_of(op.key, pk)
        if op.kind is not OpKind.DELETE:
            self._resolve_aggregates(op, store)
        cached = store.cached(op.table, key) if key is not None else None
        if cached is None and key is not None:
            store.load(op.table, pk, [key], self._columns_to_read(op.table, op.fields))
            cached = store.get(op.table, key)
        exists = cached is not None and cached.values is not None

        if op.kind is OpKind.DELETE:
            if exists and key is not None:
                store.delete(op.table, pk, key)
                store.remember(op.table, key, CachedRow(None, {}))
            return []
        if op.kind is OpKind.SOFT_DELETE and not exists:
            return []  # nothing to mark deleted
        if op.kind is OpKind.INSERT and not op.key and op.identity is None:
            # An appended row (e.g. an order-history line) gets the target's own key; it is never updated.
            row = {c: change.value for c, change in op.fields.items()}
            store.insert(op.table, row)
            return []

        if (not exists and key is not None and op.version is not None and op.kind is not OpKind.UPDATE
                and (cached is None or (not cached.versions and cached.compact is None))
                and only_last_writer_wins(op)):
            # A row the target does not hold, nor any versions of: every field is applied, written and recorded
            # with the op's version (what `resolve` decides, see new_row_decisions), stored in the compact form.
            self._insert_new_row(op, key, store, compact_document(op.version, op.fields))
            return None

        # A missing row's fields are decided without their states (nothing competes with the incoming values).
        has_versions = cached is not None and (bool(cached.versions) or cached.compact is not None)
        states = self._field_states(op, cached) if exists or has_versions else {}
        if op.adopted:
            states = _adopted_states(op, states)
        elif exists and key is not None and op.table in self.own_tables:
            self._await_own_edits(op, key, states)
        resolution: Resolution = resolve(op, states, exists)
        writes = dict(resolution.writes)
        if exists and key is not None and cached is not None and cached.values is not None:
            if op.kind is OpKind.INSERT:
                raise SkippableRecordError(f"{op.mapping}: {op.table}: row {dict(zip(pk, key, strict=True))} exists")
            if writes:
                if (cached.xact_ts_ms is not None
                        and self._adopt_local_edits(op.table, cached, writes, resolution.versions)):
                    store.versions_changed(op.table, key)
                store.update(op.table, pk, key, writes)
                cached.values.update(writes)
        else:
            if op.kind is OpKind.UPDATE:
                raise SkippableRecordError(f"{op.mapping}: {op.table}: no row {op.key} to update")
            row = {**{c: v for c, v in op.key.items() if v is not None}, **writes}
            if op.identity is not None and key is None:
                system = op.version.system if op.version else ""
                reserved = self._reserved_key(op.table, pk)
                if reserved is not None:
                    # A key drawn ahead: the row and its identity are written with the transaction's other writes,
                    # in order (later ops that refer to it find it in _created_identities).
                    key = reserved
                    row.update(zip(pk, key, strict=True))
                    store.insert(op.table, row)
                    store.add_identity(op.identity[0], system, op.identity[1], row_key_text(key))
                else:
                    store.flush()  # the new key must come from the target now: later ops may refer to it
                    returned = self.dialect.insert_returning(op.table, row, pk)
                    key = tuple(returned[c] for c in pk)
                    self.dialect.add_identity(op.identity[0], system, op.identity[1], row_key_text(key))
                self._created_identities[(op.identity[0], system, op.identity[1])] = key
            else:
                assert key is not None
                store.insert(op.table, row)
            cached = CachedRow(dict(row), {})
            store.remember(op.table, key, cached)
        assert cached is not None and key is not None
        if resolution.versions:
            entries = cached.field_versions()
            for column, (version, value) in resolution.versions.items():
                entries[column] = version_json(version, value, op.fields[column].rank)
            store.versions_changed(op.table, key)
        return list(resolution.decisions)

    def _await_own_edits(self, op: TargetOp, key: Key, states: Mapping[str, FieldState]) -> None:
        """Raise AwaitingOwnEdits if a last_writer_wins field of `op` holds a value both sides changed since they
        last agreed (the change's previous value is not the one here) that no stored version explains yet, and
        the wait for its own change has not run out: its version decides the conflict, exactly as the other
        side decides it."""
        columns = self.own_tables[op.table].columns
        waiting: list[tuple[str, Key, str]] = []
        now = time.monotonic()
        if self._own_wait_started is not None and now - self._own_wait_started >= OWN_EDIT_WAIT_S:
            return  # this batch waited long enough (new units join it while it waits: it must end)
        for column, change in op.fields.items():
            if column not in columns or change.policy is not Policy.LAST_WRITER_WINS or change.rank is not None:
                continue
            state = states.get(column)
            previous = change.previous
            if state is None or previous is NO_PREVIOUS:
                continue
            current = state.current
            if current.__class__ not in _OWN_RECORDABLE:
                continue  # a time, bytes, a document: own events carry another form of it (record_own_edits)
            if state.version is not None and same_value(current, state.written):
                continue  # the value the stored version is for
            if same_value(previous, current) or same_value(change.value, current):
                continue  # the source changed this very value, or both sides agree
            item = (op.table, key, column, canonical(current))
            since = self._own_waits.setdefault(item, now)
            if now - since < OWN_EDIT_WAIT_S:
                waiting.append((op.table, key, column))
        if waiting:
            if self._own_wait_started is None:
                self._own_wait_started = now
            if len(self._own_waits) > 10_000:  # waits long over are of no use any more
                self._own_waits = {k: t for k, t in self._own_waits.items() if now - t < 10 * OWN_EDIT_WAIT_S}
            raise AwaitingOwnEdits(waiting)

    @staticmethod
    def _insert_new_row(op: TargetOp, key: Key, store: RowStore, versions: dict[str, Any]) -> None:
        """Plan the insert of a row the target does not hold, its fields all written with the op's version
        (`versions`, a compact document: see new_row_decisions)."""
        store.insert_new(op.table, key, _new_row_values(op), versions)

    @staticmethod
    def _held_rank(change: FieldChange, stored: dict[str, Any] | None, current: Any, written: Any,
                   values: dict[str, Any] | None) -> int | None:
        """The rank of the value the replicator wrote, or, when the value was edited locally since (or
        never written by us), the declared rank of the value the row holds now: a shop order cancelled in
        the shop must not be revived by the ERP's later 'processing'."""
        if stored is not None and current == written and stored.get("rank") is not None:
            return int(stored["rank"])
        return _rank_of_current(change, values)

    def _adopt_local_edits(self, table: str, cached: CachedRow, writes: Mapping[str, Any],
                           recorded: Mapping[str, Any]) -> bool:
        """Before the replicator writes a row that a local transaction wrote last: pin the time of that row's
        local edits into the versions of the fields that hold them (and that this write leaves alone).

        PostgreSQL dates a row, not a field: once our write commits, the row's commit time is ours, and a
        later decision about a field edited locally before it would credit that edit with our time, later
        than it was. The other side decides against the edit's own commit time (its change event's), so
        the two would disagree about an incoming value made in between. Only last_writer_wins fields
        (no rank) are pinned; a field whose local time is unknown later is decided as before. Fields whose local
        edits the own change stream dates (`own_tables`) are not: their edit's exact version is recorded when it
        arrives, and a pin, later than that version whenever the row was edited again, would keep it out.
        Returns whether a version was pinned."""
        assert cached.values is not None and cached.xact_ts_ms is not None
        local = Version(cached.xact_ts_ms, self.target_system, self.target_priority, "")
        pinned = False
        entries = cached.field_versions()
        own = self.own_tables[table].columns if table in self.own_tables else frozenset()
        for column, stored in list(entries.items()):
            if column in writes or column in recorded or column not in cached.values or column in own:
                continue
            if not isinstance(stored, dict) or stored.get("rank") is not None:
                continue
            current = cached.values[column]
            if canonical(current) != stored.get("val"):
                entries[column] = version_json(local, current, None)
                pinned = True
        cached.xact_ts_ms = None  # the row's last writer is about to be us
        return pinned

    def _columns_to_read(self, table: str, columns: Iterable[str]) -> list[str]:
        wanted = {*columns, *self.tracked_columns.get(table, ())}
        local_time = self.local_times.get(table)
        if local_time is not None:
            wanted.add(local_time[0])
        return sorted(wanted)

    def _local_version(self, table: str, cached: CachedRow | None) -> Version | None:
        """When the row was last written by someone else than us: the database's commit time (PostgreSQL),
        or the row's own change-time column (`local_time`: PrestaShop's date_upd on MariaDB). The mapping
        engine versions the table's changes by the same column, so both sides date a shop edit alike."""
        if cached is None:
            return None
        if cached.xact_ts_ms is not None:
            return Version(cached.xact_ts_ms, self.target_system, self.target_priority, "")
        local_time = self.local_times.get(table)
        if local_time is None or cached.values is None:
            return None
        moment = cached.values.get(local_time[0])
        if not isinstance(moment, datetime):
            return None  # null or a zero date: unknown
        # The same instant the mapping engine gives this table's changes as their version (instant_ms).
        return Version(instant_ms(moment, local_time[1]), self.target_system, self.target_priority, "")

    def _field_states(self, op: TargetOp, cached: CachedRow | None) -> dict[str, FieldState]:
        states: dict[str, FieldState] = {}
        values = cached.values if cached is not None and cached.values is not None else None
        versions = cached.field_versions() if cached is not None else {}
        local = self._local_version(op.table, cached)
        for column in op.fields:
            stored = versions.get(column)
            current = None if values is None else values.get(column)
            written = None if stored is None else stored.get("val")
            if stored is not None and canonical(current) == written:
                # The same value in another representation (Decimal vs its text, datetime vs ISO text):
                # hand the resolver identical objects, so it does not mistake it for a local edit.
                written = current
            states[column] = FieldState(
                current=current,
                version=None if stored is None else version_from_json(stored),
                written=written,
                local_version=local,
                rank=self._held_rank(op.fields[column], stored, current, written, values),
            )
        return states


# The classes of column values whose own change events carry the same value (Decimal: as its text): times travel
# as numbers, bytes as base64, documents as text, so those are neither recorded nor waited for.
_OWN_RECORDABLE: frozenset[type] = frozenset({str, int, float, Decimal, bool, type(None)})


def _adopted_states(op: TargetOp, states: Mapping[str, FieldState]) -> dict[str, FieldState]:
    """The states of a row linked by `match_on` as its op decides them: its last_writer_wins values without
    their times. Until the link, the row was not the source row's replica: its values were never sent to the
    source, and an edit of one (an ERP partner created after the customer signed up, its ref empty) is not a
    newer write that the source's values lose to. Without a time, a last_writer_wins field takes the incoming
    value, as a field the replicator never wrote does, on this side as on the source's (which never heard of
    the row's values). Owner, delta, monotonic and ranked fields are decided as for any row."""
    adopted = dict(states)
    for column, change in op.fields.items():
        state = states.get(column)
        if state is not None and change.policy is Policy.LAST_WRITER_WINS and change.rank is None:
            adopted[column] = FieldState(current=state.current, rank=state.rank)
    return adopted


def _rank_of_current(change: FieldChange, values: dict[str, Any] | None) -> int | None:
    """The declared rank of what the target row holds now (a local edit: PrestaShop cancelling an order)."""
    ranking = change.ranking
    if ranking is None or values is None:
        return None
    return ranking.ranks.get(value_text(values.get(ranking.column)))


def _new_row_values(op: TargetOp) -> dict[str, Any]:
    """The column values of the row an op creates: its key's (but nulls), then its fields'."""
    row = {c: v for c, v in op.key.items() if v is not None}
    for column, change in op.fields.items():
        row[column] = change.value
    return row


def _key_of(key: dict[str, Any], pk: tuple[str, ...]) -> Key | None:
    """The primary key values of a row from its key columns, or None if some are missing."""
    try:
        return tuple([key[c] for c in pk])
    except KeyError:
        return None


def _has_aggregates(op: TargetOp) -> bool:
    # Plain loops, not any(generator): these run for every op, several times.
    for change in op.fields.values():  # noqa: SIM110
        if isinstance(change.value, Aggregate):
            return True
    return False


def _plain_upsert(op: TargetOp) -> bool:
    """Whether the op is one that `Applier._apply_op` decides without the resolver when its row is new: an
    upsert or insert by a key of plain values and a version, its fields last_writer_wins values (no rank,
    look-up or aggregate)."""
    if op.kind is not OpKind.UPSERT and op.kind is not OpKind.INSERT:
        return False
    if not op.key or op.identity is not None or op.version is None or op.when_written is not None:
        return False
    for value in op.key.values():
        if isinstance(value, Lookup):
            return False
    for change in op.fields.values():
        if (change.policy is not Policy.LAST_WRITER_WINS or change.rank is not None
                or isinstance(change.value, Lookup | Aggregate)):
            return False
    return True


def _has_lookups(op: TargetOp) -> bool:
    for value in op.key.values():
        if isinstance(value, Lookup):
            return True
    for change in op.fields.values():  # noqa: SIM110
        if isinstance(change.value, Lookup):
            return True
    return False


def unit_keys(unit: Unit) -> list[str]:
    """The source record keys a unit touches, as the hold list stores them."""
    return list(dict.fromkeys(f"{e.topic}:{orjson.dumps(e.key, option=orjson.OPT_SORT_KEYS).decode()}"
                              for e in unit.events))


def positions_of(units: Iterable[tuple[str, Unit]]) -> dict[tuple[str, int], int]:
    positions: dict[tuple[str, int], int] = {}
    for source, unit in units:
        position: SourcePosition | None = unit.position
        if position is not None:
            current = positions.get((source, position.domain), -1)
            positions[(source, position.domain)] = max(current, position.sequence)
    return positions
