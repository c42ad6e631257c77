"""The mapping engine: one Debezium envelope in, the target row operations it implies out. Pure: no I/O.

Every rule is compiled once, at construction, into small functions (a reader of the source row and a
short tuple of value steps per target column), so the per-event work is a dict look-up to find the
rules of the event's table and a few calls per mapped column.

What the engine cannot decide alone it leaves to the applier as data: `Lookup`s (identity map, natural
keys), `Aggregate`s (sums over many rows), and per-field policies with versions for the conflict
resolver. A value it cannot convert (a bad decimal, an unmapped state, a string too long, a column
missing from the event) raises `SkippableRecordError` naming the rule, the columns and the value: the
applier dead-letters that event and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo

from replicator.envelope.debezium import UNAVAILABLE_VALUE_PLACEHOLDER
from replicator.errors import SkippableRecordError
from replicator.mapping import ops
from replicator.mapping.ops import FieldChange, Lookup, OpKind, Policy, TargetOp, Version
from replicator.mapping.spec import (
    AggregateSpec,
    Condition,
    FieldSpec,
    MappingSet,
    RuleSpec,
    ValueSpec,
    value_text,
)

Row = Mapping[str, Any]
Step = Callable[[Any], Any]

_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_DAY: Final = date(1970, 1, 1)
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
_CONVERSION_ERRORS: Final = (ValueError, ArithmeticError, TypeError, OverflowError)
_MODE_KINDS: Final = {"upsert": OpKind.UPSERT, "update": OpKind.UPDATE, "append": OpKind.INSERT}
# FieldChange(...) and Version(...) for every event, cheaper (see ops.frozen_factory).
_field_change: Final = ops.frozen_factory(FieldChange)
_version: Final = ops.frozen_factory(Version)


class _Unavailable(Exception):
    """The event does not carry the column's value (an unchanged TOASTed PostgreSQL column)."""


class _Missing(Exception):
    """The event has no such column at all."""


# --- time --------------------------------------------------------------------------------------------


def wall_clock(value: Any, unit: str = "ms") -> datetime:
    """A DATETIME/timestamp as it travels (epoch ms or µs of the wall-clock time read as UTC), an ISO
    string (with an offset: an instant, aware; without: wall-clock, naive), a date or a datetime."""
    if value.__class__ is int:  # how a DATETIME travels: checked first, it is the common case
        # timedelta(days, seconds, microseconds, milliseconds) by position: keywords cost as much as the sum.
        return _EPOCH + (timedelta(0, 0, 0, value) if unit == "ms" else timedelta(0, 0, value))
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + (timedelta(milliseconds=value) if unit == "ms" else timedelta(microseconds=value))
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise TypeError(f"not a date-time: {type(value).__name__}")


def instant_ms(wall: datetime, zone: ZoneInfo) -> int:
    """Epoch milliseconds of a naive wall-clock time in `zone` (fold=0, as convert_zone) or of an aware
    time, exactly: no float."""
    return ((wall if wall.tzinfo is not None else wall.replace(tzinfo=zone)) - _EPOCH_UTC) // _ONE_MS


def local_edit_ts_ms(value: Any, zone: ZoneInfo, unit: str) -> int | None:
    """When a row's own change-time column (`target.local_time`) says it was edited, as it travels in a
    change event; None when it says nothing (null, the zero date)."""
    if value is None or value == 0:
        return None  # a zero date travels as null (or the epoch in a NOT NULL column)
    return instant_ms(wall_clock(value, unit), zone)


def convert_zone(value: Any, from_zone: ZoneInfo, to_zone: ZoneInfo, unit: str = "ms") -> datetime:
    """Wall-clock time in `from_zone` -> naive wall-clock time in `to_zone`.

    A local time that occurs twice (the hour repeated when summer time ends) is read as its first
    occurrence; one that never occurs (the hour skipped when it starts) is read with the offset in force
    before the change, i.e. it lands one hour later on the clock. Both follow Python's `fold=0`."""
    moment = wall_clock(value, unit)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=from_zone)
    return moment.astimezone(to_zone).replace(tzinfo=None)


# --- casts -------------------------------------------------------------------------------------------


def to_int(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError("not a whole number")
    return int(number)


def to_decimal(scale: int | None) -> Step:
    exponent = None if scale is None else Decimal(1).scaleb(-scale)

    def cast(value: Any) -> Decimal:
        if value.__class__ is not str and isinstance(value, bool):  # text (decimal.handling.mode=string) first
            raise ValueError("a boolean is not a decimal")
        try:
            number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("not a decimal number") from None
        if not number.is_finite():
            raise ValueError("not a finite decimal number")
        # Half-up, as accounting (and Odoo's float_round) rounds money.
        return number if exponent is None else number.quantize(exponent, rounding=ROUND_HALF_UP)

    return cast


def to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


_TRUE_TEXT: Final = frozenset({"1", "true", "t", "yes", "y"})
_FALSE_TEXT: Final = frozenset({"0", "false", "f", "no", "n"})


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT or text in _FALSE_TEXT:
            return text in _TRUE_TEXT
    raise ValueError("not a boolean (expected 0/1, true/false)")


def to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH_DAY + timedelta(days=value)  # Debezium Date: days since the epoch
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"not a date: {type(value).__name__}")


def to_datetime(unit: str) -> Step:
    def cast(value: Any) -> datetime:
        moment = wall_clock(value, unit)
        # Instants become naive UTC, the way Odoo stores its timestamps.
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment

    return cast


def _cast_step(spec: ValueSpec) -> Step | None:
    casts: dict[str | None, Step | None] = {
        None: None,
        "int": to_int,
        "decimal": to_decimal(spec.scale),
        "string": to_string,
        "bool": to_bool,
        # A date-time (epoch ms/us, as MariaDB DATETIME travels) cast to its wall-clock date: give `unit`.
        "date": (lambda value: to_datetime(spec.unit)(value).date()) if "unit" in spec.model_fields_set else to_date,
        "datetime": to_datetime(spec.unit),
    }
    return casts[spec.cast]


# --- value steps -------------------------------------------------------------------------------------


def _normaliser(name: str) -> Step:
    operations: dict[str, Callable[[str], str]] = {
        "trim": str.strip,
        "lower": str.lower,
        "upper": str.upper,
        "collapse_whitespace": lambda text: " ".join(text.split()),
    }
    operation = operations[name]
    return lambda value: operation(value) if isinstance(value, str) else value


def _affix(prefix: str, suffix: str) -> Step:
    return lambda value: f"{prefix}{to_string(value)}{suffix}"


def _value_map(spec: ValueSpec) -> Step:
    assert spec.map is not None
    table = dict(spec.map.values)
    has_default, default = spec.map.has_default, spec.map.default
    known = ", ".join(table)

    def mapped(value: Any) -> Any:
        text = value_text(value)
        if text in table:
            return table[text]
        if has_default:
            return default
        raise ValueError(f"no mapping for this value and no default (mapped: {known})")

    return mapped


def _zone_step(spec: ValueSpec) -> Step:
    assert spec.tz is not None
    from_zone, to_zone, unit = ZoneInfo(spec.tz.from_), ZoneInfo(spec.tz.to), spec.unit
    return lambda value: convert_zone(value, from_zone, to_zone, unit)


def _max_length(limit: int) -> Step:
    def checked(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"{len(value)} characters, more than max_length {limit}")
        return value

    return checked


def _strip_prefix(prefix: str) -> Step:
    def stripped(value: Any) -> Any:
        text = to_string(value)
        if not text.startswith(prefix):
            raise ValueError(f"does not start with {prefix!r} (strip_prefix)")
        return text[len(prefix):]

    return stripped


def value_steps(spec: ValueSpec) -> tuple[Step, ...]:
    """The transformations of a value, in the documented order; each leaves null alone."""
    steps: list[Step] = [_strip_prefix(spec.strip_prefix)] if spec.strip_prefix is not None else []
    steps += [_normaliser(name) for name in spec.normalize]
    if spec.prefix is not None or spec.suffix is not None:
        steps.append(_affix(spec.prefix or "", spec.suffix or ""))
    if spec.map is not None:
        steps.append(_value_map(spec))
    if spec.tz is not None:
        steps.append(_zone_step(spec))
    cast = _cast_step(spec)
    if cast is not None:
        steps.append(cast)
    if spec.max_length is not None:
        steps.append(_max_length(spec.max_length))
    return tuple(steps)


# --- reading the source row --------------------------------------------------------------------------


def _column(row: Row, column: str) -> Any:
    try:
        value = row[column]
    except KeyError:
        raise _Missing(column) from None
    if value.__class__ is str and value == UNAVAILABLE_VALUE_PLACEHOLDER:
        raise _Unavailable(column)
    return value


def _column_reader(column: str) -> Callable[[Row], Any]:
    """`_column` for one column, inlined: renames are most of the fields of most rules."""

    def read(row: Row) -> Any:
        try:
            value = row[column]
        except KeyError:
            raise _Missing(column) from None
        if value.__class__ is str and value == UNAVAILABLE_VALUE_PLACEHOLDER:
            raise _Unavailable(column)
        return value

    return read


def identity_key(values: Sequence[Any]) -> str:
    """The identity-map source key: the value's text for a one-column key, a JSON list for several."""
    if len(values) == 1:
        return str(values[0])
    return json.dumps(list(values), default=str, separators=(",", ":"))


def split_name(value: str, part: str) -> str:
    """'Jean Pierre Dupont' -> first 'Jean', rest 'Pierre Dupont'; a single word is all first."""
    first, _, rest = value.strip().partition(" ")
    return first if part == "first" else rest.strip()


def join_parts(values: Iterable[Any], separator: str) -> str | None:
    """Non-empty parts joined; None when every part is null or empty."""
    parts = [to_string(v) for v in values if v is not None and v != ""]
    return separator.join(parts) if parts else None


@dataclass(frozen=True, slots=True)
class _Context:
    """What a rule's readers need to know about where they read and write."""

    rule: str
    source_system: str
    target_system: str
    source_namespace: str
    source_table: str  # qualified: 'prestashop.ps_customer'
    source_label: str  # for messages: 'shop: prestashop.ps_customer'
    target_namespace: str
    target_label: str  # for messages: 'erp: public.res_partner'


def _reader(
    spec: ValueSpec, aggregate: Sequence[AggregateSpec], cast: str | None, context: _Context
) -> Callable[[Row], Any]:
    if spec.from_ is not None:
        return _column_reader(spec.from_)
    if spec.concat is not None:
        columns, separator = tuple(spec.concat), spec.separator
        return lambda row: join_parts((_column(row, c) for c in columns), separator)
    if spec.split is not None:
        column, part = spec.split.from_, spec.split.part
        return lambda row: None if (v := _column(row, column)) is None else split_name(to_string(v), part)
    if spec.lookup is not None:
        return _lookup_reader(spec, context)
    if aggregate:
        return _aggregate_reader(aggregate, cast == "int", context)
    constant = spec.const
    return lambda row: constant


def _lookup_reader(spec: ValueSpec, context: _Context) -> Callable[[Row], Any]:
    lookup = spec.lookup
    assert lookup is not None
    required = lookup.required
    if lookup.identity is not None and lookup.from_ is not None:
        entity, column = lookup.identity, lookup.from_
        # With `table` + `returns`: that column of the identified row, not its key.
        row_table = None if lookup.table is None else f"{context.target_namespace}.{lookup.table}"
        row_column = None if lookup.table is None else lookup.returns

        def identity(row: Row) -> Lookup | None:
            value = _column(row, column)
            if value is None:
                return None  # no reference, nothing to look up
            return Lookup(kind="identity", entity=entity, source_key=identity_key((value,)), table=row_table,
                          returns=row_column, required=required)

        return identity
    assert lookup.table is not None
    table = f"{context.target_namespace}.{lookup.table}"
    pairs, returns = tuple(lookup.match.items()), lookup.returns

    def natural(row: Row) -> Lookup | None:
        match = tuple((target_column, _column(row, source_column)) for target_column, source_column in pairs)
        if any(value is None for _, value in match):
            return None
        return Lookup(kind="natural", table=table, match=match, returns=returns, required=required)

    return natural


def _conditions(conditions: Sequence[Condition]) -> tuple[ops.Condition, ...]:
    return tuple(
        ops.Condition(c.column, c.operator, tuple(c.operand) if c.operator in ("in", "not_in") else c.operand)
        for c in conditions
    )


def _aggregate_term(spec: AggregateSpec, namespace: str) -> ops.AggregateTerm:
    join = None
    if spec.join is not None:
        join = ops.AggregateJoin(
            table=f"{namespace}.{spec.join.table}",
            on=spec.join.via,
            key=spec.join.key,
            where=_conditions(spec.join.where),
        )
    return ops.AggregateTerm(
        table=f"{namespace}.{spec.table}",
        function=spec.function,
        group=(),
        add=tuple(spec.of),
        subtract=tuple(spec.minus),
        where=_conditions(spec.where),
        join=join,
        negate=spec.negate,
    )


def _aggregate_reader(terms: Sequence[AggregateSpec], integer: bool, context: _Context) -> Callable[[Row], Any]:
    """Aggregates read the target database (the applier's): a term's group comes from the changed row's
    columns, or from the target key (`{key: column}`), bound by the applier once the key is resolved."""
    templates = tuple(_aggregate_term(spec, context.target_namespace) for spec in terms)
    groups = tuple(tuple(spec.group_by.items()) for spec in terms)
    system = context.target_system

    def aggregate(row: Row) -> ops.Aggregate:
        bound = []
        for template, group in zip(templates, groups, strict=True):
            values = tuple(
                (column, _column(row, source) if isinstance(source, str) else ops.TargetKeyValue(source.key))
                for column, source in group
            )
            bound.append(replace(template, group=values))
        return ops.Aggregate(system=system, terms=tuple(bound), integer=integer)

    return aggregate


def _aggregate_columns(terms: Sequence[AggregateSpec]) -> frozenset[str]:
    # The changed row's group columns; what it changes in the aggregated tables is not known here, so an
    # aggregate field is recomputed on every change of the source row (CompiledRule._updated).
    return frozenset(column for spec in terms for column in spec.row_columns)


@dataclass(frozen=True, slots=True)
class CompiledValue:
    """One target value: `evaluate(row)` reads the source row and applies the steps. Errors name the rule,
    the columns and the value."""

    target: str  # e.g. 'erp: public.res_partner.email', for messages
    source: str  # e.g. 'shop: prestashop.ps_customer.email'
    rule: str
    columns: frozenset[str]
    evaluate: Callable[[Row], Any]
    # A value read from one source column and put through `steps`: (column, steps, required), what
    # `_column_evaluator` was made from (CompiledRule's insert function reads such values inline). None: other.
    plain: tuple[str, tuple[Step, ...], bool] | None = None


def _evaluator(
    read: Callable[[Row], Any], steps: tuple[Step, ...], required: bool, rule: str, source: str, target: str
) -> Callable[[Row], Any]:
    """One closure per value: it runs for every event, so it keeps everything it needs in locals."""

    def evaluate(row: Row) -> Any:
        try:
            value = read(row)
        except _Missing as missing:
            raise SkippableRecordError(
                f"rule {rule}: {source}: column {missing} is missing from the event (needed for {target})"
            ) from None
        if value is not None and steps:
            return _converted(value, steps, required, rule, source, target)
        if value is None and required:
            raise SkippableRecordError(f"rule {rule}: {source} -> {target}: value is null but required")
        return value

    return evaluate


def _converted(value: Any, steps: tuple[Step, ...], required: bool, rule: str, source: str, target: str) -> Any:
    """A non-null value through a field's steps; a conversion that fails or a required value that becomes
    null is a record error naming the rule, the columns and the value."""
    original = value
    try:
        for step in steps:
            value = step(value)
    except _CONVERSION_ERRORS as exc:
        raise SkippableRecordError(f"rule {rule}: {source} -> {target}: value {original!r}: {exc}") from None
    if value is None and required:
        raise SkippableRecordError(f"rule {rule}: {source} -> {target}: value is null but required")
    return value


def _column_evaluator(
    column: str, steps: tuple[Step, ...], required: bool, rule: str, source: str, target: str
) -> Callable[[Row], Any]:
    """`_evaluator` of `_column_reader(column)`, with the read inlined: most values are a source column
    (renamed, perhaps cast), read for every event."""

    def evaluate(row: Row) -> Any:
        try:
            value = row[column]
        except KeyError:
            raise SkippableRecordError(
                f"rule {rule}: {source}: column {column} is missing from the event (needed for {target})"
            ) from None
        if value is None:
            if required:
                raise SkippableRecordError(f"rule {rule}: {source} -> {target}: value is null but required")
            return None
        if value.__class__ is str and value == UNAVAILABLE_VALUE_PLACEHOLDER:
            raise _Unavailable(column)
        if steps:
            return _converted(value, steps, required, rule, source, target)
        return value

    return evaluate


def _compile_value(
    spec: ValueSpec, target_column: str, context: _Context, aggregate: Sequence[AggregateSpec] = ()
) -> CompiledValue:
    columns = frozenset(spec.source_columns) | _aggregate_columns(aggregate)
    target = f"{context.target_label}.{target_column}"
    source = f"{context.source_label}.{', '.join(sorted(columns)) or 'constant'}"
    read = _reader(spec, aggregate, spec.cast, context)
    # An aggregate's cast is done by the database (FLOOR for int); the others here.
    steps = () if aggregate else value_steps(spec)
    plain = None
    if spec.from_ is not None and not aggregate:
        evaluate = _column_evaluator(spec.from_, steps, spec.required, context.rule, source, target)
        plain = (spec.from_, steps, spec.required)
    else:
        evaluate = _evaluator(read, steps, spec.required, context.rule, source, target)
    return CompiledValue(
        target=target,
        source=source,
        rule=context.rule,
        columns=columns,
        evaluate=evaluate,
        plain=plain,
    )


# --- fields ------------------------------------------------------------------------------------------


def _number(value: Any) -> int | float | Decimal:
    if value is None:
        return 0
    if isinstance(value, int | float | Decimal):
        return value
    return Decimal(str(value))


def delta_of(after: Any, before: Any) -> int | float | Decimal:
    """after - before, null counting as 0; exact (Decimal) as soon as either side is a decimal."""
    new, old = _number(after), _number(before)
    if isinstance(new, Decimal) or isinstance(old, Decimal):
        return Decimal(str(new)) - Decimal(str(old))
    return new - old


@dataclass(frozen=True, slots=True)
class CompiledField:
    name: str
    value: CompiledValue
    policy: Policy
    owner: str | None
    ranks: Mapping[str, int] | None
    is_aggregate: bool
    rank_source: CompiledField | None = None  # `rank_by`: the field whose rank this one takes
    ranking: ops.Ranking | None = None  # how the applier ranks the value the target holds

    @property
    def columns(self) -> frozenset[str]:
        return self.value.columns

    def change(self, after: Row | None, before: Row | None) -> FieldChange:
        """The field's change. For `delta`, after - before (a missing image counts as 0)."""
        evaluate = self.value.evaluate
        if self.policy is Policy.DELTA:
            new = evaluate(after) if after is not None else None
            old = evaluate(before) if before is not None else None
            return FieldChange(self._delta(new, old), Policy.DELTA)
        row = after if after is not None else before
        assert row is not None
        value = evaluate(row)
        if self.policy is Policy.LAST_WRITER_WINS and after is not None and before is not None:
            return FieldChange(value, self.policy, None, self.owner, previous=self._previous(before))
        if self.rank_source is not None:
            return FieldChange(value, self.policy, self.rank_source.rank_in(row), self.owner, self.ranking)
        if self.ranks is not None:
            return FieldChange(value, self.policy, self.rank_of(value), self.owner, self.ranking)
        return _field_change(value, self.policy, None, self.owner)



    def _previous(self, before: Row) -> Any:
        try:
            return self.value.evaluate(before)
        except (_Missing, _Unavailable, SkippableRecordError):
            return ops.NO_PREVIOUS  # a before image without the column (PostgreSQL's default identity)

    def rank_in(self, row: Row) -> int | None:
        return self.rank_of(self.value.evaluate(row))

    def _delta(self, new: Any, old: Any) -> int | float | Decimal:
        try:
            return delta_of(new, old)
        except _CONVERSION_ERRORS:
            raise SkippableRecordError(
                f"rule {self.value.rule}: {self.value.source} -> {self.value.target}: delta of "
                f"{old!r} -> {new!r}: not numbers"
            ) from None

    def rank_of(self, value: Any) -> int | None:
        if self.ranks is None:
            return None
        rank = self.ranks.get(value_text(value))
        if rank is None:
            raise SkippableRecordError(
                f"rule {self.value.rule}: {self.value.source} -> {self.value.target}: value {value!r} "
                f"is not in the monotonic order ({', '.join(self.ranks)})"
            )
        return rank


def _compile_fields(fields: Mapping[str, FieldSpec], context: _Context) -> tuple[CompiledField, ...]:
    """Every field in declaration order; `rank_by` fields get the field they follow."""
    leaders = {name: _compile_field(name, spec, context, None) for name, spec in fields.items() if not spec.rank_by}
    return tuple(
        leaders[name] if not spec.rank_by else _compile_field(name, spec, context, leaders[spec.rank_by])
        for name, spec in fields.items()
    )


def _compile_field(name: str, spec: FieldSpec, context: _Context, rank_source: CompiledField | None) -> CompiledField:
    policy = spec.effective_policy
    ranks = spec.ranks() if spec.order is not None else None
    # How the applier ranks the target's current value (ops.Ranking): the field's own order, or its leader's.
    leader_name, leader_ranks = (rank_source.name, rank_source.ranks) if rank_source is not None else (name, ranks)
    return CompiledField(
        name=name,
        value=_compile_value(spec, name, context, spec.aggregate_terms),
        policy=policy,
        owner=spec.owner,
        ranks=ranks,
        is_aggregate=spec.aggregate is not None,
        rank_source=rank_source,
        ranking=None if leader_ranks is None else ops.Ranking(leader_name, dict(leader_ranks)),
    )


# --- filters -----------------------------------------------------------------------------------------

Predicate = Callable[[Row], bool]


def _compare(value: Any, operand: Any, test: Callable[[Decimal, Decimal], bool]) -> bool:
    if value is None:
        return False  # as in SQL: null is neither greater nor smaller
    try:
        return test(Decimal(str(value)), Decimal(str(operand)))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _predicate(condition: Condition) -> Callable[[Any], bool]:
    operator, operand = condition.operator, condition.operand
    if operator in ("eq", "ne"):
        wanted = None if operand is None else value_text(operand)
        equal: Callable[[Any], bool] = (
            (lambda v: v is None) if wanted is None else (lambda v: v is not None and value_text(v) == wanted)
        )
        return equal if operator == "eq" else (lambda v: not equal(v))
    if operator in ("in", "not_in"):
        members = frozenset(value_text(v) for v in operand)
        inside = operator == "in"
        return lambda v: (v is not None and value_text(v) in members) == inside
    if operator in ("is_null", "not_null"):
        null = operator == "is_null"
        return lambda v: (v is None) == null
    if operator == "starts_with":
        prefix = str(operand)
        return lambda v: isinstance(v, str) and v.startswith(prefix)
    tests: dict[str, Callable[[Decimal, Decimal], bool]] = {
        "gt": Decimal.__gt__, "ge": Decimal.__ge__, "lt": Decimal.__lt__, "le": Decimal.__le__,
    }  # fmt: skip
    test = tests[operator]
    return lambda v: _compare(v, operand, test)


@dataclass(frozen=True, slots=True)
class _Filter:
    rule: str
    table: str
    tests: tuple[tuple[str, Callable[[Any], bool]], ...]

    def passes(self, row: Row, *, lenient: bool = False) -> bool:
        """All conditions hold. `lenient`: a column the row lacks passes (a delete's before image may
        hold only the key)."""
        for column, test in self.tests:
            if column not in row:
                if lenient:
                    continue
                raise SkippableRecordError(
                    f"rule {self.rule}: {self.table}: filter column {column} is missing from the event"
                )
            try:
                if not test(row[column]):
                    return False
            except ValueError as exc:
                raise SkippableRecordError(f"rule {self.rule}: {self.table}.{column}: filter: {exc}") from None
        return True


# --- rules -------------------------------------------------------------------------------------------


def changed_columns(before: Row, after: Row) -> frozenset[str]:
    """Columns whose value differs; a value the event does not carry (TOAST placeholder) is unchanged."""
    missing = object()
    return frozenset(
        column
        for column, value in after.items()
        if value != before.get(column, missing)
        and not (value.__class__ is str and value == UNAVAILABLE_VALUE_PLACEHOLDER)
    )


class CompiledRule:
    """One mapping rule, ready to turn source row changes into target operations."""

    def __init__(self, rule: RuleSpec, mapping_set: MappingSet) -> None:
        source_ns = mapping_set.namespace(rule.source)
        target_ns = mapping_set.namespace(rule.target)
        context = _Context(
            rule=rule.name,
            source_system=rule.source.system,
            target_system=rule.target.system,
            source_namespace=source_ns,
            source_table=f"{source_ns}.{rule.source.table}",
            source_label=f"{rule.source.system}: {source_ns}.{rule.source.table}",
            target_namespace=target_ns,
            target_label=f"{rule.target.system}: {target_ns}.{rule.target.table}",
        )
        self.name = rule.name
        self.table = f"{target_ns}.{rule.target.table}"
        self.mode_kind = _MODE_KINDS[rule.mode]
        self.is_append = rule.mode == "append"
        self.delete_mode = rule.delete_mode
        self.fields = _compile_fields(rule.fields, context)
        self.delta_fields = tuple(f for f in self.fields if f.policy is Policy.DELTA)
        self.aggregate_fields = tuple(f for f in self.fields if f.is_aggregate)
        self.key = tuple((name, _compile_value(spec, name, context)) for name, spec in (rule.key or {}).items())
        self.entity = rule.identity.entity if rule.identity is not None else None
        self.identity_columns = rule.identity_columns
        self.match_on = tuple(f for f in self.fields if f.name in rule.match_on)
        self.when_changed = frozenset(rule.when_changed)
        self.when_written = None if rule.when_written is None else (rule.when_written.rule, rule.when_written.field)
        self.filter = _Filter(rule.name, context.source_label, tuple((c.column, _predicate(c)) for c in rule.filter))
        self.soft_delete = self._soft_delete(rule)
        self.key_columns = frozenset(self.identity_columns) | frozenset().union(*(v.columns for _, v in self.key))
        self.source_label = context.source_label
        # When no field is a delta or ranked: (name, evaluate, policy, owner) of each, for `_changes`.
        plain = all(f.policy is not Policy.DELTA and f.rank_source is None and f.ranks is None for f in self.fields)
        self._plain_fields = tuple((f.name, f.value.evaluate, f.policy, f.owner) for f in self.fields) if plain \
            else None
        self._insert = self._compile_insert()

    def _soft_delete(self, rule: RuleSpec) -> tuple[str, FieldChange] | None:
        if rule.on_delete is None or rule.on_delete.mode != "soft":
            return None
        assert rule.on_delete.column is not None
        column = rule.on_delete.column
        declared = next((f for f in self.fields if f.name == column), None)
        policy = (
            declared.policy if declared is not None and declared.policy is not Policy.DELTA else Policy.LAST_WRITER_WINS
        )
        owner = declared.owner if declared is not None else None
        rank = declared.rank_of(rule.on_delete.value) if declared is not None and declared.ranks is not None else None
        return column, FieldChange(rule.on_delete.value, policy, rank, owner,
                                   declared.ranking if declared is not None else None)

    # -- per event --------------------------------------------------------------------------------

    def _compile_insert(self) -> Callable[[Any, Version], TargetOp | None] | None:
        """For a rule that upserts by plain key columns and whose fields are all source columns (renamed,
        perhaps converted) under last_writer_wins without owner or rank: a function compiled for it that
        turns an insert's row into its op with every value read and converted inline (the common event, for
        which the general path's calls per field cost more than what they do). It returns None for anything
        unusual (a missing or unavailable column, a null where one is refused, a conversion that fails), and
        the general path then handles the event, errors included, as it always does."""
        if (self.is_append or self.entity is not None or self.filter.tests or not self.key
                or self.mode_kind is not OpKind.UPSERT):
            return None
        for f in self.fields:
            if (f.policy is not Policy.LAST_WRITER_WINS or f.owner is not None or f.ranks is not None
                    or f.rank_source is not None or f.is_aggregate or f.value.plain is None):
                return None
        if any(value.plain is None for _, value in self.key):
            return None
        values = [*self.key, *((f.name, f.value) for f in self.fields)]
        namespace: dict[str, Any] = {
            "_FC": _field_change, "_LWW": Policy.LAST_WRITER_WINS, "_OP": TargetOp, "_KIND": self.mode_kind,
            "_TABLE": self.table, "_NAME": self.name, "_PH": UNAVAILABLE_VALUE_PLACEHOLDER, "_str": str,
        }
        body = ["def insert(after, version):", " try:"]
        for i, (_, value) in enumerate(values):
            assert value.plain is not None
            column, steps, required = value.plain
            body.append(f"  x{i} = after[{column!r}]")
            body.append(f"  if x{i} is not None:")
            body.append(f"   if x{i}.__class__ is _str and x{i} == _PH: return None")
            for j, step in enumerate(steps):
                namespace[f"_s{i}_{j}"] = step
                body.append(f"   x{i} = _s{i}_{j}(x{i})")
            if required and steps:
                body.append(f"   if x{i} is None: return None")
            if required:
                body.append("  else: return None")
        body.append(" except Exception: return None  # the general path says what is wrong")
        keys = ", ".join(f"{name!r}: x{i}" for i, (name, _) in enumerate(self.key))
        fields = ", ".join(f"{name!r}: _FC(x{i}, _LWW, None, None)"
                           for i, (name, _) in enumerate(values) if i >= len(self.key))
        body.append(f" return _OP(_KIND, _TABLE, {{{keys}}}, {{{fields}}}, None, version, _NAME, plain=True)")
        exec("\n".join(body), namespace)  # the text above holds only repr()s of names and numbered locals
        return namespace["insert"]  # type: ignore[no-any-return]

    def ops(self, op: str, before: Row | None, after: Row | None, version: Version) -> list[TargetOp]:
        if op in ("c", "r"):
            if self._insert is not None and after is not None and (op == "c" or not self.is_append):
                fast = self._insert(after, version)
                if fast is not None:
                    return [fast]
            return self._created(self._image(after, op), version, snapshot=op == "r")
        if op == "u":
            return self._updated(before, self._image(after, op), version)
        if op == "d":
            return self._deleted(self._image(before, op), version)
        raise SkippableRecordError(f"rule {self.name}: {self.source_label}: op {op!r} is not replicated")

    def _image(self, row: Row | None, op: str) -> Row:
        if row is None:
            raise SkippableRecordError(f"rule {self.name}: {self.source_label}: op {op!r} event without its row image")
        return row

    def _created(self, after: Row, version: Version, *, snapshot: bool = False) -> list[TargetOp]:
        if (snapshot and self.is_append) or not self.filter.passes(after):
            # A snapshot read is a row as it is, not a change: an append rule records changes only.
            return []
        fields = self._changes(self.fields, after, None)
        return [self._op(self.mode_kind, after, fields, version)]

    def _updated(self, before: Row | None, after: Row, version: Version) -> list[TargetOp]:
        if before is None:
            # No before image (PostgreSQL without REPLICA IDENTITY FULL): every mapped field, as it is now.
            if not self.filter.passes(after):
                return []
            if self.delta_fields:
                raise SkippableRecordError(
                    f"rule {self.name}: {self.source_label}: a delta needs the row's previous values "
                    "(set REPLICA IDENTITY FULL on the source table)"
                )
            return [self._op(self.mode_kind, after, self._changes(self.fields, after, None), version)]
        now_in, was_in = self.filter.passes(after), self.filter.passes(before, lenient=True)
        if now_in != was_in:
            # The row enters the rule's scope (a full insert) or leaves it (handled as a delete).
            return self._created(after, version) if now_in else self._deleted(before, version)
        if not now_in:
            return []
        changed = changed_columns(before, after)
        if self.when_changed and not changed & self.when_changed:
            return []
        if changed & self.key_columns and not self.is_append:
            return self._moved(before, after, version)
        if self.is_append:
            # An appended row is a new row: every field, constants included (a history row's id_employee).
            return [self._op(self.mode_kind, after, self._changes(self.fields, after, before), version)]
        fields = [f for f in self.fields if f.is_aggregate or f.columns & changed]
        if not fields:
            return []
        return [self._op(self.mode_kind, after, self._changes(fields, after, before), version)]

    def _moved(self, before: Row, after: Row, version: Version) -> list[TargetOp]:
        """The row now belongs to another target row (its key or aggregate group changed): the old
        target row is handled as a delete, the new one as an insert."""
        return self._deleted(before, version) + self._created(after, version)

    def _deleted(self, before: Row, version: Version) -> list[TargetOp]:
        if self.is_append or not self.filter.passes(before, lenient=True):
            return []
        if self.delete_mode == "hard":
            return [self._op(OpKind.DELETE, before, {}, version)]
        deltas = self._changes(self.delta_fields, None, before)
        if self.delete_mode == "soft":
            assert self.soft_delete is not None
            column, change = self.soft_delete
            return [self._op(OpKind.SOFT_DELETE, before, {**deltas, column: change}, version)]
        if self.delete_mode == "recompute":
            return [self._op(self.mode_kind, before, self._changes(self.aggregate_fields, before, None), version)]
        return [self._op(self.mode_kind, before, deltas, version)] if deltas else []

    def _changes(
        self, fields: Iterable[CompiledField], after: Row | None, before: Row | None
    ) -> dict[str, FieldChange]:
        changes = {}
        if before is None and after is not None and fields is self.fields and self._plain_fields is not None:
            # Every field is a value of the row with its policy (CompiledField.change of an insert, inlined).
            for name, evaluate, policy, owner in self._plain_fields:
                try:
                    changes[name] = _field_change(evaluate(after), policy, None, owner)
                except _Unavailable:
                    continue
            return changes
        for field in fields:
            try:
                changes[field.name] = field.change(after, before)
            except _Unavailable:
                continue  # not carried by the event, hence unchanged: leave the target as it is
        return changes

    def _op(self, kind: OpKind, row: Row, fields: dict[str, FieldChange], version: Version) -> TargetOp:
        if self.entity is None and not self.is_append:
            return TargetOp(kind, self.table, self._key(row), fields, None, version, self.name)
        op = TargetOp(kind=kind, table=self.table, key={}, fields=fields, version=version, mapping=self.name)
        if self.is_append:
            op.when_written = self.when_written
            return op
        if self.entity is not None:
            values = [self._identity_value(row, column) for column in self.identity_columns]
            op.identity = (self.entity, identity_key(values))
            if kind not in (OpKind.DELETE, OpKind.SOFT_DELETE):
                # Linking by natural key matters when a row is first seen; a delete's image may hold only the key.
                op.match = self._match(row)
        else:
            op.key = self._key(row)
        return op

    def _key(self, row: Row) -> dict[str, Any]:
        try:
            return {name: value.evaluate(row) for name, value in self.key}
        except _Unavailable as unavailable:
            raise SkippableRecordError(
                f"rule {self.name}: {self.source_label}: key column {unavailable} is not in the event"
            ) from None

    def _identity_value(self, row: Row, column: str) -> Any:
        if column not in row:
            raise SkippableRecordError(
                f"rule {self.name}: {self.source_label}: key column {column} is missing from the event"
            )
        value = row[column]
        if value is None:
            raise SkippableRecordError(f"rule {self.name}: {self.source_label}: key column {column} is null")
        return value

    def _match(self, row: Row) -> dict[str, Any]:
        match = {}
        for field in self.match_on:
            try:
                match[field.name] = field.value.evaluate(row)
            except _Unavailable:
                continue
        return match


# --- the engine --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _System:
    name: str
    kind: str
    priority: int


def position_text(source: Mapping[str, Any], kind: str) -> str:
    """The change's place in its source's log, as text that sorts in log order: the LSN zero-padded
    (PostgreSQL); the GTID with zero-padded parts, ':' and the row number in the event (MariaDB)."""
    if kind == "postgresql":
        lsn = source.get("lsn")
        return "" if lsn is None else f"{int(lsn):020d}"
    gtid, row = source.get("gtid"), int(source.get("row") or 0)
    if not gtid:
        return ""
    text = str(gtid)
    # The domain and server of a GTID repeat from event to event: their padded text is worked out once.
    domain_server, _, sequence = text.rpartition("-")
    prefix = _GTID_PREFIXES.get(domain_server)
    if prefix is None:
        try:
            domain, server = domain_server.split("-")
            prefix = f"{int(domain):010d}-{int(server):010d}-"
        except ValueError:
            prefix = ""  # not a MariaDB GTID
        if len(_GTID_PREFIXES) >= 1024:
            _GTID_PREFIXES.clear()
        _GTID_PREFIXES[domain_server] = prefix
    if prefix:
        try:
            return f"{prefix}{int(sequence):020d}:{row:010d}"
        except ValueError:
            pass
    return f"{gtid}:{row:010d}"  # not a MariaDB GTID: keep it as it is


_GTID_PREFIXES: dict[str, str] = {}  # GTID 'domain-server' -> its padded text + '-', or '' if not numbers


class MappingEngine:
    """Turns envelopes into target operations with the rules of a MappingSet.

    `ops_for(envelope)` is the whole per-event API; `source_tables()` tells a consumer which tables (and
    so which topics) the rules read."""

    def __init__(self, mapping_set: MappingSet, *, target: str | None = None) -> None:
        """`target`: compile only the rules writing into that system (an applier's), so that another
        target's rule can neither cost time nor dead-letter an event here."""
        self.mapping_set = mapping_set
        self._systems = {
            spec.source_name: _System(name, spec.kind, spec.priority) for name, spec in mapping_set.systems.items()
        }
        routes: dict[tuple[str, str, str], list[CompiledRule]] = {}
        for rule in mapping_set.rules:
            if target is not None and rule.target.system != target:
                continue
            source_name = mapping_set.systems[rule.source.system].source_name
            route = (source_name, mapping_set.namespace(rule.source), rule.source.table)
            routes.setdefault(route, []).append(CompiledRule(rule, mapping_set))
        self._routes = {route: tuple(rules) for route, rules in routes.items()}
        # Tables whose own change-time column dates their edits (`target.local_time` of the rules writing
        # into them, read here as sources): their changes are versioned by that column, the time the
        # applier writing into the same table compares the replicator's writes with. Versioning them by
        # the binlog's commit second instead lets the two sides disagree: an edit built at 12:00:04.9 and
        # committed at 12:00:05.1 would be 04 on one side and 05 on the other, and an ERP edit at 04.95
        # would win on one side and lose on the other.
        self._local_times: dict[tuple[Any, Any, Any], tuple[str, ZoneInfo, str]] = {}
        for rule in mapping_set.rules:
            local_time = rule.target.local_time
            if local_time is not None:
                route = (mapping_set.systems[rule.target.system].source_name, mapping_set.namespace(rule.target),
                         rule.target.table)
                self._local_times.setdefault(route, (local_time.column, ZoneInfo(local_time.tz), local_time.unit))

    def source_tables(self, system: str | None = None) -> list[tuple[str, str, str]]:
        """(source name, schema or database, table) of every table some rule reads, optionally only
        those of one system."""
        wanted = None if system is None else self.mapping_set.systems[system].source_name
        return sorted(route for route in self._routes if wanted is None or route[0] == wanted)

    def rules_for(self, source_name: str, namespace: str, table: str) -> tuple[CompiledRule, ...]:
        return self._routes.get((source_name, namespace, table), ())

    def version(self, source: Mapping[str, Any], row: Row | None = None) -> Version:
        """The version of a change: its commit time, or the time its row's change-time column gives (`row`,
        the after image, of a table some rule declares a `local_time` for); then system and position."""
        system = self._systems[source["name"]]
        # A snapshot read sorts before every streamed change of the same commit time: its position is empty.
        snapshot = source.get("snapshot") not in (None, "false", False)
        ts_ms = source["ts_ms"]
        ts_ms = ts_ms if ts_ms.__class__ is int else int(ts_ms)
        if row is not None and self._local_times:
            ts_ms = self._local_edit_ts_ms(source, system, row, ts_ms)
        return _version(ts_ms, system.name, system.priority, "" if snapshot else position_text(source, system.kind))

    def _local_edit_ts_ms(self, source: Mapping[str, Any], system: _System, row: Row, commit_ts_ms: int) -> int:
        namespace = source.get("schema") if system.kind == "postgresql" else source.get("db")
        local_time = self._local_times.get((source["name"], namespace, source.get("table")))
        if local_time is None:
            return commit_ts_ms
        column, zone, unit = local_time
        try:
            edited = local_edit_ts_ms(row.get(column), zone, unit)
        except _CONVERSION_ERRORS as error:
            raise SkippableRecordError(
                f"{source['name']}.{namespace}.{source.get('table')}.{column} (the table's local_time): "
                f"value {row.get(column)!r} is not a date-time: {error}"
            ) from error
        return commit_ts_ms if edited is None else edited

    def ops_for(self, envelope: Mapping[str, Any]) -> list[TargetOp]:
        """The target operations of one change event, in rule order; [] when no rule reads its table."""
        source = envelope["source"]
        system = self._systems.get(source.get("name"))
        if system is None:
            return []
        namespace = source.get("schema") if system.kind == "postgresql" else source.get("db")
        rules = self._routes.get((source["name"], namespace, source.get("table")), ())
        if not rules:
            return []
        before, after, op = envelope.get("before"), envelope.get("after"), envelope.get("op")
        version = self.version(source, after)
        if op == "t":
            raise SkippableRecordError(
                f"{source['name']}.{namespace}.{source.get('table')}: a truncate is not replicated "
                f"(rules {', '.join(r.name for r in rules)}); empty the target table by hand if that is meant"
            )
        if len(rules) == 1:
            return rules[0].ops(str(op), before, after, version)  # a list of its own: the caller may keep it
        result: list[TargetOp] = []
        for rule in rules:
            result.extend(rule.ops(str(op), before, after, version))
        return result
