"""What the mapping engine produces and the applier consumes: target row operations. Pure data.

The engine turns one source change (a Debezium envelope) into zero or more `TargetOp`s. Values that need
the target database to be known (an identity-map look-up, a natural-key look-up such as product reference
-> product id) are left as `Lookup` placeholders; the applier resolves them in batches before the conflict
resolver decides field by field what to write. Values computed over many rows of a database (stock = sum of
quants) are left as `Aggregate` placeholders, which render themselves as one SQL query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, make_dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar, cast

_T = TypeVar("_T")


class OpKind(StrEnum):
    UPSERT = "upsert"  # insert the row if its key is unknown, else update the given fields
    UPDATE = "update"  # update only; a missing row is a record-level error (dead letter)
    INSERT = "insert"  # append-only rows (e.g. an order-history row): insert once per source change
    DELETE = "delete"  # hard delete
    SOFT_DELETE = "soft_delete"  # set the configured column (e.g. active=false / deleted=1)


class Policy(StrEnum):
    OWNER = "owner"
    LAST_WRITER_WINS = "last_writer_wins"
    DELTA = "delta"
    MONOTONIC = "monotonic"


@dataclass(frozen=True, slots=True)
class Version:
    """Where a field value comes from. Ordered by commit time, then by the fixed system priority (lower
    number wins ties), then by source position, so every replica decides ties the same way."""

    ts_ms: int
    system: str
    priority: int
    position: str

    def sort_key(self) -> tuple[int, int, str]:
        # A higher priority number loses ties: negate it so that larger keys always win.
        return (self.ts_ms, -self.priority, self.position)


@dataclass(frozen=True, slots=True)
class Lookup:
    """A value to find in the target database before writing.

    `kind="identity"`: the target key that the identity map holds for (entity, source system, source key).
    `kind="natural"`: `returns` of the row of `table` whose `match` columns equal the given values
    (e.g. product_product.id where default_code = 'REF-1'). `required`: no row found is a record-level error;
    otherwise the value becomes NULL.
    """

    kind: str
    entity: str | None = None
    source_key: str | None = None
    table: str | None = None
    match: tuple[tuple[str, Any], ...] = ()
    returns: str | None = None
    required: bool = True


class _NoPrevious:
    def __repr__(self) -> str:
        return "NO_PREVIOUS"


NO_PREVIOUS: Any = _NoPrevious()  # the change's field value before it is unknown (an insert, no before image)


@dataclass(frozen=True, slots=True)
class Ranking:
    """How to rank a value the target already holds, for `monotonic`: a value edited locally since the
    replicator's last write has no stored rank, but its place in the declared order is known. `ranks` maps a
    value's text (`spec.value_text`) to its rank; the rank is that of column `column`'s current value (the
    field itself, or for `rank_by` the field it follows)."""

    column: str
    ranks: dict[str, int]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One target column's new value (or, for `delta`, the amount to add) and the policy that governs it.

    For `monotonic`, `rank` is the value's rank in the declared order. For `owner`, `owner` names the
    system that owns the field: writes from any other system are refused.
    """

    value: Any
    policy: Policy = Policy.LAST_WRITER_WINS
    rank: int | None = None
    owner: str | None = None
    ranking: Ranking | None = field(default=None, compare=False, hash=False)
    # last_writer_wins: the field's value in the source row before this change (NO_PREVIOUS if unknown). A
    # change made to the very value the target holds follows it, whatever the clocks say.
    previous: Any = field(default=NO_PREVIOUS, compare=False, hash=False)


@dataclass(slots=True)
class TargetOp:
    """One operation on one target row.

    The row is identified by `key` (target column values, possibly `Lookup`s) or, for rows the replicator
    creates with the target's own keys, by `identity` = (entity, source key): the applier finds the target
    key in the identity map, or inserts the row and records the new key there in the same transaction.
    """

    kind: OpKind
    table: str  # schema.table (PostgreSQL) or database.table (MariaDB) in the target
    key: dict[str, Any]
    fields: dict[str, FieldChange] = field(default_factory=dict)
    identity: tuple[str, str] | None = None
    version: Version | None = None
    mapping: str = ""  # the mapping rule that produced it, for audit and errors
    # Natural-key values (target column -> value) that link a row existing before replication started,
    # when the identity map has no entry yet: the applier looks for a target row with these values before
    # inserting. Never written by themselves; a column written too is also in `fields`.
    match: dict[str, Any] = field(default_factory=dict)
    # Append rules with `when_written`: (rule, column) whose write of the same change must have changed the
    # column's value for this row to be added. `event` numbers the changes of a unit (set by the applier).
    when_written: tuple[str, str] | None = None
    event: int = 0
    # Set by the applier when it maps the op ahead of applying it (`Applier.map_unit`), for an op that creates
    # its row if the target has none, from last_writer_wins fields only, without look-ups or aggregates: the
    # field versions document such a row gets (`apply.versions.compact_document`). None: not worked out.
    new_row_versions: dict[str, Any] | None = field(default=None, compare=False)
    # Set by the mapping engine when it knows the op to be such an op (an upsert by plain key values, its fields
    # last_writer_wins values without rank, look-up or aggregate), so that the applier need not check.
    plain: bool = field(default=False, compare=False)
    # Set by the applier when it links the op's row by `match` (Applier._link_by_match): a row the target held
    # before the link, whose values were never replicated, so they do not compete with the incoming ones.
    adopted: bool = field(default=False, compare=False)


_SQL_COMPARISONS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True, slots=True)
class Condition:
    """`column <operator> value`; `in`/`not_in` take a tuple, `is_null`/`not_null` no value,
    `starts_with` a text prefix."""

    column: str
    operator: str
    value: Any = None

    def sql(self, alias: str, quote: str) -> tuple[str, tuple[Any, ...]]:
        column = f"{alias}.{quote}{self.column}{quote}"
        if self.operator == "is_null":
            return f"{column} IS NULL", ()
        if self.operator == "not_null":
            return f"{column} IS NOT NULL", ()
        if self.operator in ("in", "not_in"):
            values = tuple(self.value)
            negation = "NOT " if self.operator == "not_in" else ""
            return f"{column} {negation}IN ({', '.join(['%s'] * len(values))})", values
        if self.operator == "starts_with":
            # Backslash is LIKE's default escape character in both PostgreSQL and MariaDB.
            escaped = str(self.value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"{column} LIKE %s", (escaped + "%",)
        return f"{column} {_SQL_COMPARISONS[self.operator]} %s", (self.value,)


@dataclass(frozen=True, slots=True)
class AggregateJoin:
    """Restrict the aggregated rows through a referenced table: `JOIN table ON table.key = row.on`, keeping
    the joined rows that satisfy `where` (e.g. stock_location.usage = 'internal')."""

    table: str  # schema.table or database.table
    on: str
    key: str = "id"
    where: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetKeyValue:
    """In an aggregate's group: the value of the target row's key column `column`, known once the
    applier has resolved the key's look-ups (the shop's id_product of an ERP product)."""

    column: str


@dataclass(frozen=True, slots=True)
class AggregateTerm:
    """One term of an `Aggregate`: `function` over the rows of `table` selected by `group` (column, value)
    pairs, `where` and `join`; `add` and `subtract` are the summed columns (`sum`) or the one column
    (`min`/`max`); `count` uses neither. `negate` subtracts the term."""

    table: str  # schema.table or database.table
    function: str  # sum | count | min | max
    group: tuple[tuple[str, Any], ...]
    add: tuple[str, ...] = ()
    subtract: tuple[str, ...] = ()
    where: tuple[Condition, ...] = ()
    join: AggregateJoin | None = None
    negate: bool = False

    def select(self, quote: str) -> tuple[str, tuple[Any, ...]]:
        """`SELECT <function> FROM table AS a [JOIN ... AS j] WHERE ...` and its parameters."""
        params: list[Any] = []
        conditions: list[str] = []
        sql = f"SELECT {self._expression(quote)} FROM {_qualified(self.table, quote)} AS a"
        if self.join is not None:
            join = self.join
            on = [f"j.{quote}{join.key}{quote} = a.{quote}{join.on}{quote}"]
            for condition in join.where:
                text, values = condition.sql("j", quote)
                on.append(text)
                params.extend(values)
            sql += f" JOIN {_qualified(join.table, quote)} AS j ON {' AND '.join(on)}"
        for column, value in self.group:
            conditions.append(f"a.{quote}{column}{quote} = %s")
            params.append(value)
        for condition in self.where:
            text, values = condition.sql("a", quote)
            conditions.append(text)
            params.extend(values)
        if conditions:
            sql += f" WHERE {' AND '.join(conditions)}"
        return sql, tuple(params)

    def _expression(self, quote: str) -> str:
        if self.function == "count":
            return "COUNT(*)"
        if self.function != "sum":
            return f"{self.function.upper()}(a.{quote}{self.add[0]}{quote})"
        # COALESCE per column: one NULL column must not turn a whole row's contribution into NULL.
        terms = " + ".join(f"COALESCE(a.{quote}{c}{quote}, 0)" for c in self.add)
        terms += "".join(f" - COALESCE(a.{quote}{c}{quote}, 0)" for c in self.subtract)
        return f"COALESCE(SUM({terms}), 0)"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A value computed over rows of `system`'s database (always the applier's target) with one query,
    e.g. the shop's sellable stock of a product: the ERP's free quantity mirrored into the shop, plus what
    the ERP already holds for shop orders, minus the shop's open order lines.

    `integer` floors the result, so a fractional quantity never becomes a unit that can be sold. Group
    values may be `TargetKeyValue`s until `bind` gives them the target row's key.
    """

    system: str
    terms: tuple[AggregateTerm, ...]
    integer: bool = False

    def bind(self, key: dict[str, Any]) -> Aggregate:
        """The aggregate with every `TargetKeyValue` replaced by the key's value."""
        terms = tuple(
            replace(term, group=tuple(
                (column, key[value.column] if isinstance(value, TargetKeyValue) else value)
                for column, value in term.group
            ))
            for term in self.terms
        )
        return replace(self, terms=terms)

    def sql(self, quote: str) -> tuple[str, tuple[Any, ...]]:
        """The query and its parameters (`%s` placeholders, as psycopg and PyMySQL take them).
        `quote` is the identifier quote of the database: '"' for PostgreSQL, '`' for MariaDB. Identifiers
        were checked against a strict pattern when the mapping was loaded, so quoting them is enough."""
        if len(self.terms) == 1 and not self.terms[0].negate and self.terms[0].function in ("sum", "count"):
            sql, params = self.terms[0].select(quote)
            if self.integer:
                head, _, rest = sql.partition(" FROM ")
                sql = f"SELECT FLOOR({head.removeprefix('SELECT ')}) FROM {rest}"
            return sql, params
        parts: list[str] = []
        params_all: list[Any] = []
        for i, term in enumerate(self.terms):
            sql, params = term.select(quote)
            sign = "-" if term.negate else ("+" if i else "")
            parts.append(f"{sign} COALESCE(({sql}), 0)" if sign else f"COALESCE(({sql}), 0)")
            params_all.extend(params)
        total = " ".join(parts)
        return f"SELECT {f'FLOOR({total})' if self.integer else total}", tuple(params_all)


def _qualified(table: str, quote: str) -> str:
    return ".".join(f"{quote}{part}{quote}" for part in table.split("."))


def frozen_factory(cls: type[_T]) -> Callable[..., _T]:
    """A faster constructor for the frozen slots dataclass `cls`, for hot paths: `frozen_factory(cls)(...)`
    takes what `cls(...)` takes and returns the same thing, an instance of `cls` (equal, hashable, frozen).

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`, several times the cost of a
    plain attribute store; with many fields that dominates. The factory is a mutable twin class with the same
    slots in the same order, whose `__init__` ends by giving the new instance the class `cls`, which Python
    allows because the two layouts are the same. Fields must all be `init` fields and `cls` must have no
    `__post_init__`."""
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not a slots dataclass without __post_init__")
    specs: list[tuple[str, Any, Any]] = []
    for spec in fields(cls):  # type: ignore[arg-type]
        if not spec.init:
            raise TypeError(f"{cls.__name__}.{spec.name} is not an __init__ field")
        default = field(default=spec.default) if spec.default is not MISSING else (
            field(default_factory=spec.default_factory) if spec.default_factory is not MISSING else field())
        specs.append((spec.name, Any, default))

    def retype(instance: Any) -> None:  # the twin's __post_init__: the last step of its __init__
        instance.__class__ = cls

    twin = make_dataclass(f"_{cls.__name__}Builder", specs, slots=True, eq=False, repr=False,
                          namespace={"__post_init__": retype,
                                     "__doc__": f"Builds a {cls.__name__} (see frozen_factory)."})
    return cast(Callable[..., _T], twin)
