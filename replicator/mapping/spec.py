"""The mapping vocabulary (DESIGN.md 4.2): pydantic models of the YAML files in `mappings/`.

The vocabulary is closed: every transformation is a keyword with data, never an expression to evaluate.
Unknown keys are refused, and every table and column name must be a plain identifier, so no SQL can hide
in a name (the applier quotes identifiers; it never has to escape them).

A file holds `systems:` (the databases and their capture names) and `rules:` (one source table to one
target table each). The models here check what one file can check on its own; checks across files and
rules (names, entities, policies of a shared target column) live in `loader.py`. docs/mapping.md explains
every keyword; `schemas/mapping.schema.json` is exported from these models (`write_json_schema`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, WithJsonSchema, model_validator

from replicator.config import IDENTIFIER, SOURCE_NAME, StrictModel
from replicator.mapping.ops import Policy

# --- scalar types ------------------------------------------------------------------------------------

_IDENTIFIER_RULE: Final = (
    "use letters, digits, '_' and '$', start with a letter or '_', at most 63 characters; names are never SQL"
)
_RULE_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def _identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain table or column name ({_IDENTIFIER_RULE})")
    return value


def _rule_name(value: str) -> str:
    if not _RULE_NAME.match(value):
        raise ValueError(f"{value!r} is not a rule name (letters, digits, '_', '.', '-'; at most 128)")
    return value


def _source_name(value: str) -> str:
    if not SOURCE_NAME.match(value):
        raise ValueError(f"{value!r} is not a source name (letters, digits, '_' and '-', as in topic names)")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris or UTC)") from None
    return value


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"expected a string, number, boolean or null, got {type(value).__name__}")


def _rank_entry(value: Any) -> Any:
    """An entry of a monotonic `order`: one value, or a list of values that share a rank."""
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list in 'order' ranks nothing")
        return [_scalar(v) for v in value]
    return _scalar(value)


def _number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected a number, got {value!r}")


def value_text(value: Any) -> str:
    """The text by which value maps and monotonic orders compare values: the YAML key `4`, the
    envelope's integer 4 and the string '4' are one value; booleans are 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_SCALAR_SCHEMA: Final = {"type": ["string", "number", "integer", "boolean", "null"]}

Identifier = Annotated[
    str, AfterValidator(_identifier), WithJsonSchema({"type": "string", "pattern": IDENTIFIER.pattern})
]
RuleName = Annotated[str, AfterValidator(_rule_name), WithJsonSchema({"type": "string", "pattern": _RULE_NAME.pattern})]
SourceName = Annotated[
    str, AfterValidator(_source_name), WithJsonSchema({"type": "string", "pattern": SOURCE_NAME.pattern})
]
Zone = Annotated[str, AfterValidator(_zone), WithJsonSchema({"type": "string", "description": "IANA time zone"})]
Scalar = Annotated[Any, AfterValidator(_scalar), WithJsonSchema(_SCALAR_SCHEMA)]
Number = Annotated[Any, AfterValidator(_number), WithJsonSchema({"type": "number"})]
RankEntry = Annotated[
    Any,
    AfterValidator(_rank_entry),
    WithJsonSchema({"anyOf": [_SCALAR_SCHEMA, {"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1}]}),
]
MapKey = Annotated[str, BeforeValidator(lambda v: value_text(_scalar(v))), WithJsonSchema({"type": "string"})]

Normalisation = Literal["trim", "lower", "upper", "collapse_whitespace"]
CastName = Literal["int", "decimal", "string", "bool", "date", "datetime"]
Operator = Literal["eq", "ne", "in", "not_in", "is_null", "not_null", "gt", "ge", "lt", "le", "starts_with"]


# --- systems -----------------------------------------------------------------------------------------


class SystemSpec(StrictModel):
    """One database taking part in replication."""

    kind: Literal["mariadb", "postgresql"]
    priority: int = Field(
        ge=0, description="Breaks ties between changes with the same commit time: the lower number wins"
    )
    source_name: SourceName = Field(
        description="The logical name its capture uses: topic prefix and `source.name` of its events"
    )
    namespace: Identifier | None = Field(
        default=None,
        description="Database (MariaDB, required) or schema (PostgreSQL, default public) of its tables",
    )

    @model_validator(mode="after")
    def _namespace_for_mariadb(self) -> SystemSpec:
        if self.kind == "mariadb" and self.namespace is None:
            raise ValueError("a mariadb system needs 'namespace': the database that holds its tables")
        return self

    @property
    def default_namespace(self) -> str:
        return self.namespace or "public"


# --- conditions (filters, aggregate restrictions) ----------------------------------------------------


class Condition(StrictModel):
    """`column` compared with one operator: `eq`, `ne`, `in`, `not_in`, `is_null`, `not_null`, `gt`, `ge`,
    `lt`, `le`, `starts_with` (text). Values compare as they travel in events (decimals are strings,
    MariaDB booleans 0/1); `gt`..`le` compare numbers (decimal strings included)."""

    column: Identifier
    eq: Scalar = None
    ne: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    is_null: Literal[True] | None = None
    not_null: Literal[True] | None = None
    gt: Number = None
    ge: Number = None
    lt: Number = None
    le: Number = None
    starts_with: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [name for name in _OPERATOR_FIELDS if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(f"give exactly one operator of {', '.join(_OPERATOR_NAMES.values())}")
        return self

    @property
    def operator(self) -> Operator:
        name = next(name for name in _OPERATOR_FIELDS if name in self.model_fields_set)
        operator: Operator = _OPERATOR_NAMES[name]  # type: ignore[assignment]
        return operator

    @property
    def operand(self) -> Any:
        name = next(name for name in _OPERATOR_FIELDS if name in self.model_fields_set)
        return getattr(self, name)


_OPERATOR_NAMES: Final = {
    "eq": "eq", "ne": "ne", "in_": "in", "not_in": "not_in", "is_null": "is_null",
    "not_null": "not_null", "gt": "gt", "ge": "ge", "lt": "lt", "le": "le", "starts_with": "starts_with",
}  # fmt: skip
_OPERATOR_FIELDS: Final = tuple(_OPERATOR_NAMES)


# --- value sources and transformations ---------------------------------------------------------------


class SplitSpec(StrictModel):
    """One part of a source column split at its first space ('Jean Pierre Dupont' -> 'Jean' |
    'Pierre Dupont'). Lossy: a first name with a space does not come back as it was."""

    from_: Identifier = Field(alias="from")
    part: Literal["first", "rest"]


class ValueMapSpec(StrictModel):
    """A table of values (order states). A value not in `values` takes `default` when one is given
    (null included), else the record is refused (dead letter). Null stays null."""

    values: dict[MapKey, Scalar] = Field(min_length=1)
    default: Scalar = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class TimeZoneSpec(StrictModel):
    """Wall-clock time in zone `from` to wall-clock time in zone `to` (e.g. shop-local DATETIME -> UTC).
    Instants (ISO strings with an offset, as TIMESTAMP/timestamptz travel) ignore `from`."""

    from_: Zone = Field(alias="from")
    to: Zone


class LookupSpec(StrictModel):
    """A target key found by the applier. `identity: <entity>` + `from: <column>`: the target key that the
    identity map holds for that entity and source key (with `table` + `returns`: that column of the
    identified row of `table`, e.g. the partner of the sale order an invoice belongs to). `table` + `match`
    (+ `returns`, default id): a target row found by a natural key (product_product.id where default_code =
    product_reference)."""

    identity: Identifier | None = None
    from_: Identifier | None = Field(default=None, alias="from")
    table: Identifier | None = None
    match: dict[Identifier, Identifier] = Field(default_factory=dict, description="target column -> source column")
    returns: Identifier = "id"
    required: bool = Field(default=True, description="No row found is a record error; else the value is null")

    @model_validator(mode="after")
    def _identity_or_natural(self) -> LookupSpec:
        identity = self.identity is not None or self.from_ is not None
        natural = bool(self.match) or (not identity and (self.table is not None or "returns" in self.model_fields_set))
        if identity == natural:
            raise ValueError("give either 'identity' and 'from', or 'table' and 'match' (and maybe 'returns')")
        if identity and (self.identity is None or self.from_ is None):
            raise ValueError("an identity lookup needs both 'identity' (the entity) and 'from' (a source column)")
        if identity and ("returns" in self.model_fields_set) != (self.table is not None):
            raise ValueError("an identity lookup returning a column of the identified row needs 'table' and 'returns'")
        if natural and (self.table is None or not self.match):
            raise ValueError("a natural-key lookup needs 'table' and 'match'")
        return self

    @property
    def source_columns(self) -> tuple[str, ...]:
        return (self.from_,) if self.from_ is not None else tuple(self.match.values())


class JoinSpec(StrictModel):
    """Keep only aggregated rows whose referenced row (`via` -> `table`.`key`) satisfies `where`.
    (Not `on`: YAML reads a bare `on` as the boolean true.)"""

    table: Identifier
    via: Identifier = Field(description="column of the aggregated table referencing the joined table")
    key: Identifier = "id"
    where: list[Condition] = Field(default_factory=list)


class KeyRef(StrictModel):
    """A value taken from the target row's key (after its look-ups), e.g. the shop's `id_product`."""

    key: Identifier


class AggregateSpec(StrictModel):
    """One term of a value computed over rows of the **target** database, recomputed whenever the rule's
    source row changes: `sum` of `of` minus `minus`, `count`, `min` or `max` of one column; `negate`
    subtracts the term. A field's `aggregate` is one term or a list of terms, added up in one query."""

    function: Literal["sum", "count", "min", "max"] = "sum"
    of: list[Identifier] = Field(default_factory=list)
    minus: list[Identifier] = Field(default_factory=list)
    table: Identifier = Field(description="the aggregated table, in the target database")
    group_by: dict[Identifier, Identifier | KeyRef] = Field(
        min_length=1,
        description="aggregated column -> column of the changed source row, or {key: <target key column>}",
    )
    where: list[Condition] = Field(default_factory=list)
    join: JoinSpec | None = None
    negate: bool = Field(default=False, description="subtract this term from the others")

    @model_validator(mode="after")
    def _columns_fit_function(self) -> AggregateSpec:
        if self.function == "sum" and not self.of:
            raise ValueError("'sum' needs 'of' (the summed columns)")
        if self.function == "count" and (self.of or self.minus):
            raise ValueError("'count' counts rows: no 'of' or 'minus'")
        if self.function in ("min", "max") and (len(self.of) != 1 or self.minus):
            raise ValueError(f"'{self.function}' takes exactly one column in 'of' and no 'minus'")
        return self

    @property
    def row_columns(self) -> tuple[str, ...]:
        """The changed row's columns that select the group."""
        return tuple(v for v in self.group_by.values() if isinstance(v, str))

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The target key columns that select the group."""
        return tuple(v.key for v in self.group_by.values() if isinstance(v, KeyRef))


_SOURCE_KEYWORDS: Final = ("from_", "concat", "split", "const", "lookup", "aggregate")


def _one_or_many(value: Any) -> Any:
    """`aggregate: {...}` is short for a list of one term."""
    return [value] if isinstance(value, dict) else value


def _column_shorthand(value: Any) -> Any:
    """`email: email` is short for `email: {from: email}`."""
    return {"from": value} if isinstance(value, str) else value


class ValueSpec(StrictModel):
    """How one target value is made: exactly one source (`from`, `concat`, `split`, `const`, `lookup`),
    then, in this order: `strip_prefix`, `normalize`, `prefix`/`suffix`, `map`, `tz`, `cast`, `max_length`."""

    from_: Identifier | None = Field(default=None, alias="from", description="source column (rename)")
    concat: list[Identifier] | None = Field(default=None, min_length=2, description="source columns joined")
    separator: str = Field(default=" ", description="between concatenated parts; empty parts are skipped")
    split: SplitSpec | None = None
    const: Scalar = None
    lookup: LookupSpec | None = None
    normalize: list[Normalisation] = Field(default_factory=list)
    strip_prefix: str | None = Field(
        default=None, min_length=1, description="remove this text from the start; a value without it is refused"
    )
    prefix: str | None = None
    suffix: str | None = None
    map: ValueMapSpec | None = None
    tz: TimeZoneSpec | None = None
    cast: CastName | None = None
    scale: int | None = Field(default=None, ge=0, le=30, description="decimal places of `cast: decimal`")
    unit: Literal["ms", "us"] = Field(
        default="ms", description="unit of integer DATETIME values (DATETIME(4..6) travel in microseconds)"
    )
    max_length: int | None = Field(default=None, ge=1, description="longer strings are refused (dead letter)")
    required: bool = Field(default=False, description="a null value is refused (dead letter)")

    @model_validator(mode="after")
    def _one_source(self) -> ValueSpec:
        given = [name.rstrip("_") for name in self._source_keywords() if name in self.model_fields_set]
        if len(given) != 1:
            allowed = ", ".join(name.rstrip("_") for name in self._source_keywords())
            found = f" (found {', '.join(given)})" if given else ""
            raise ValueError(f"give exactly one value source of {allowed}{found}")
        if "separator" in self.model_fields_set and self.concat is None:
            raise ValueError("'separator' goes with 'concat'")
        if self.scale is not None and self.cast != "decimal":
            raise ValueError("'scale' goes with 'cast: decimal'")
        if "unit" in self.model_fields_set and self.tz is None and self.cast not in ("datetime", "date"):
            raise ValueError("'unit' goes with 'tz', 'cast: datetime' or 'cast: date'")
        return self

    def _source_keywords(self) -> tuple[str, ...]:
        return tuple(name for name in _SOURCE_KEYWORDS if name in type(self).model_fields)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """The source columns this value is made from (an update touching none leaves it alone)."""
        if self.from_ is not None:
            return (self.from_,)
        if self.concat is not None:
            return tuple(self.concat)
        if self.split is not None:
            return (self.split.from_,)
        if self.lookup is not None:
            return self.lookup.source_columns
        return ()


ColumnOrValue = Annotated[ValueSpec, BeforeValidator(_column_shorthand, json_schema_input_type=str | ValueSpec)]


class FieldSpec(ValueSpec):
    """One target column: how its value is made (see ValueSpec), or an `aggregate`, and its conflict policy:
    `policy: last_writer_wins` (default), `delta`, `monotonic` (with `order`) or `owner` (with `owner:
    <system>`; `owner: x` alone implies it)."""

    aggregate: Annotated[
        list[AggregateSpec] | None,
        BeforeValidator(_one_or_many, json_schema_input_type=AggregateSpec | list[AggregateSpec] | None),
    ] = Field(default=None, description="one term or a list of terms added up (see AggregateSpec)")
    policy: Policy | None = None
    owner: Identifier | None = Field(default=None, description="the system that owns this column")
    order: list[RankEntry] | None = Field(
        default=None, min_length=1, description="monotonic ranks, lowest first; a list shares one rank"
    )
    rank_by: Identifier | None = Field(
        default=None,
        description="monotonic: take the rank of this other field of the rule, so that both move together "
        "(ps_orders.valid and date_upd with current_state)",
    )

    @model_validator(mode="after")
    def _policy_fits(self) -> FieldSpec:
        policy = self.effective_policy
        if policy is Policy.OWNER and self.owner is None:
            raise ValueError("policy 'owner' needs 'owner: <system>'")
        if self.owner is not None and policy is not Policy.OWNER:
            raise ValueError(f"'owner' goes with policy 'owner', not '{policy.value}'")
        if policy is Policy.MONOTONIC:
            self._check_order()
        elif self.order is not None or self.rank_by is not None:
            raise ValueError("'order' and 'rank_by' go with policy 'monotonic'")
        if policy is Policy.DELTA:
            self._check_delta()
        if self.aggregate is not None:
            self._check_aggregate()
        return self

    @property
    def effective_policy(self) -> Policy:
        if self.policy is not None:
            return self.policy
        return Policy.OWNER if self.owner is not None else Policy.LAST_WRITER_WINS

    def ranks(self) -> dict[str, int]:
        """Value text -> rank (its index in `order`)."""
        ranks: dict[str, int] = {}
        for rank, entry in enumerate(self.order or ()):
            for value in entry if isinstance(entry, list) else [entry]:
                ranks[value_text(value)] = rank
        return ranks

    def _check_order(self) -> None:
        if self.rank_by is not None:
            if self.order is not None:
                raise ValueError("give 'order' or 'rank_by', not both")
            return
        if self.order is None:
            raise ValueError("policy 'monotonic' needs 'order' (the values from lowest to highest rank) or 'rank_by'")
        ranks = self.ranks()
        if len(ranks) != sum(len(e) if isinstance(e, list) else 1 for e in self.order):
            raise ValueError("a value appears twice in 'order'")
        if self.map is not None:
            outputs = list(self.map.values.values()) + ([self.map.default] if self.map.has_default else [])
            missing = sorted({value_text(v) for v in outputs if v is not None and value_text(v) not in ranks})
            if missing:
                raise ValueError(f"mapped values {', '.join(missing)} are not in 'order'")

    def _check_delta(self) -> None:
        if self.from_ is None:
            raise ValueError("policy 'delta' needs 'from': a numeric source column")
        extra = [name for name in ("normalize", "prefix", "suffix", "map", "tz") if name in self.model_fields_set]
        if extra or self.cast not in (None, "int", "decimal"):
            raise ValueError("policy 'delta' takes a number as it is: only 'cast: int' or 'cast: decimal'")

    @property
    def aggregate_terms(self) -> tuple[AggregateSpec, ...]:
        return tuple(self.aggregate or ())

    def _check_aggregate(self) -> None:
        if not self.aggregate:
            raise ValueError("'aggregate' needs at least one term")
        extra = [name for name in ("normalize", "prefix", "suffix", "map", "tz", "max_length")
                 if name in self.model_fields_set]  # fmt: skip
        if extra or self.cast not in (None, "int", "decimal"):
            raise ValueError("an aggregate is computed by the database: only 'cast: int' (floor) or 'decimal'")
        if self.effective_policy in (Policy.DELTA, Policy.MONOTONIC):
            raise ValueError("an aggregate is an absolute value: use last_writer_wins or owner")


ColumnOrField = Annotated[FieldSpec, BeforeValidator(_column_shorthand, json_schema_input_type=str | FieldSpec)]


# --- rules -------------------------------------------------------------------------------------------


class TableRef(StrictModel):
    system: Identifier
    table: Identifier
    namespace: Identifier | None = Field(default=None, description="[default: the system's namespace]")


class LocalTime(StrictModel):
    """A column the target's own application sets to the time of every change of the row (PrestaShop's
    `date_upd`), as wall-clock time in `tz`."""

    column: Identifier
    tz: Zone
    unit: Literal["ms", "us"] = Field(
        default="ms", description="how the column travels in change events: DATETIME(0..3) in milliseconds, "
        "DATETIME(4..6) in microseconds"
    )


class TargetRef(TableRef):
    local_time: LocalTime | None = Field(
        default=None,
        description="when the target database does not record commit times (MariaDB): the column that tells "
        "when a local edit happened. It dates the table's own changes on both sides: against the replicator's "
        "writes into it, and as the version of its changes replicated elsewhere",
    )


class SourceRef(TableRef):
    key: list[Identifier] = Field(min_length=1, description="the source table's primary-key columns")


def _entity_shorthand(value: Any) -> Any:
    """`identity: customer` is short for `identity: {entity: customer}`."""
    return {"entity": value} if isinstance(value, str) else value


class IdentitySpec(StrictModel):
    """Target rows get the target's own keys and are linked to the source row through the identity map
    of `entity`. The source key is the source table's key, or the columns in `from` (several source
    tables writing one target row name the same entity and the column that holds its key)."""

    entity: Identifier
    from_: list[Identifier] | None = Field(default=None, alias="from", min_length=1)


def _delete_shorthand(value: Any) -> Any:
    """`on_delete: hard` is short for `on_delete: {mode: hard}`."""
    return {"mode": value} if isinstance(value, str) else value


class DeleteSpec(StrictModel):
    """What a source delete does: `hard` (delete the target row), `soft` (set `column` to `value`),
    `ignore`, or `recompute` (rules with aggregates: recompute them for the deleted row's group)."""

    mode: Literal["hard", "soft", "ignore", "recompute"]
    column: Identifier | None = None
    value: Scalar = None

    @model_validator(mode="after")
    def _soft_needs_column(self) -> DeleteSpec:
        if self.mode == "soft" and (self.column is None or "value" not in self.model_fields_set):
            raise ValueError("a soft delete needs 'column' and 'value' (e.g. column: active, value: false)")
        if self.mode != "soft" and (self.column is not None or "value" in self.model_fields_set):
            raise ValueError("'column' and 'value' go with mode 'soft'")
        return self


Identity = Annotated[IdentitySpec, BeforeValidator(_entity_shorthand, json_schema_input_type=str | IdentitySpec)]
OnDelete = Annotated[DeleteSpec, BeforeValidator(_delete_shorthand, json_schema_input_type=str | DeleteSpec)]


class WhenWritten(StrictModel):
    """A field of another rule reading the same source table, by rule name and target column."""

    rule: RuleName
    field: Identifier


class RuleSpec(StrictModel):
    """One source table to one target table. Several rules may read the same source table (one change,
    several target rows) or write the same target row (several source tables, one identity)."""

    name: RuleName
    description: str = ""
    source: SourceRef
    target: TargetRef
    mode: Literal["upsert", "update", "append"] = Field(
        default="upsert",
        description="upsert: insert or update; update: the row must exist; append: insert a row per change",
    )
    key: dict[Identifier, ColumnOrValue] | None = Field(
        default=None, description="target key columns and how their values are made"
    )
    identity: Identity | None = None
    match_on: list[Identifier] = Field(
        default_factory=list, description="mapped target columns that link rows existing before replication"
    )
    filter: list[Condition] = Field(default_factory=list, description="all must hold for the rule to apply")
    when_changed: list[Identifier] = Field(
        default_factory=list, description="an update applies only when one of these source columns changed"
    )
    fields: dict[Identifier, ColumnOrField] = Field(default_factory=dict)
    on_delete: OnDelete | None = None
    when_written: WhenWritten | None = Field(
        default=None,
        description="append rules: add the row only when another rule, for the same change, wrote a new value "
        "into a field (a ps_order_history row only when current_state really moved)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        if self.source.system == self.target.system:
            raise ValueError("source and target are the same system")
        if self.mode == "append":
            self._check_append()
        elif (self.key is None) == (self.identity is None):
            raise ValueError("give exactly one of 'key' (target key columns) or 'identity' (an entity)")
        self._check_match_on()
        self._check_fields()
        self._check_delete()
        self._check_key_refs()
        if self.when_written is not None and self.mode != "append":
            raise ValueError("'when_written' goes with mode 'append'")
        return self

    def _check_key_refs(self) -> None:
        for name, spec in self.fields.items():
            for term in spec.aggregate_terms:
                missing = [c for c in term.key_columns if c not in (self.key or {})]
                if missing:
                    raise ValueError(
                        f"fields.{name}.aggregate.group_by: {{key: {', '.join(missing)}}} is not a column of the "
                        "rule's 'key'"
                    )

    def _check_append(self) -> None:
        if self.key is not None or self.identity is not None or self.match_on:
            raise ValueError("an append rule inserts rows with the target's own keys: no key, identity or match_on")
        if self.on_delete is not None and self.on_delete.mode != "ignore":
            raise ValueError("an append rule never deletes: on_delete must be 'ignore' or absent")

    def _check_match_on(self) -> None:
        if self.match_on and self.identity is None:
            raise ValueError("'match_on' links rows through the identity map: it needs 'identity'")
        missing = [column for column in self.match_on if column not in self.fields]
        if missing:
            raise ValueError(f"match_on columns {', '.join(missing)} must be mapped in 'fields'")

    def _check_fields(self) -> None:
        if not self.fields:
            raise ValueError("no 'fields': a rule writes at least one target column")
        overlap = sorted(set(self.key or ()) & set(self.fields))
        if overlap:
            raise ValueError(f"columns {', '.join(overlap)} are both key and field")
        systems = {self.source.system, self.target.system}
        for name, spec in self.fields.items():
            if spec.owner is not None and spec.owner not in systems:
                raise ValueError(f"fields.{name}: owner {spec.owner!r} is neither {' nor '.join(sorted(systems))}")
            if spec.rank_by is not None:
                leader = self.fields.get(spec.rank_by)
                if leader is None or leader.order is None:
                    raise ValueError(f"fields.{name}.rank_by: {spec.rank_by!r} is not a monotonic field with 'order'")

    def _check_delete(self) -> None:
        if self.mode != "append" and self.on_delete is None:
            raise ValueError("say what a source delete does: on_delete: hard | ignore | recompute | {mode: soft, ...}")
        aggregates = any(spec.aggregate is not None for spec in self.fields.values())
        if self.on_delete is not None and self.on_delete.mode == "recompute" and not aggregates:
            raise ValueError("on_delete 'recompute' needs aggregate fields")

    @property
    def delete_mode(self) -> str:
        return "ignore" if self.on_delete is None else self.on_delete.mode

    @property
    def identity_columns(self) -> tuple[str, ...]:
        """The source columns whose values form the identity-map key."""
        if self.identity is not None and self.identity.from_ is not None:
            return tuple(self.identity.from_)
        return tuple(self.source.key)


# --- the whole set -----------------------------------------------------------------------------------


class MappingDocument(StrictModel):
    """One mapping file. `systems` may be split across files; a system named twice must be identical."""

    systems: dict[Identifier, SystemSpec] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)


class MappingSet(MappingDocument):
    """Every mapping file of a folder, merged and checked across rules (see `loader.load_mappings`)."""

    _locations: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checked(self) -> MappingSet:
        from replicator.mapping.loader import cross_check  # the checks live with the loader, which adds files

        problems = cross_check(self.systems, [(f"rules[{i}]", rule) for i, rule in enumerate(self.rules)])
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def location(self, rule: RuleSpec) -> str:
        """Where a rule was written ('mappings/x.yaml: rules[2]'), for messages."""
        index = self.rules.index(rule)
        return self._locations.get(rule.name, f"rules[{index}] ({rule.name})")

    def namespace(self, ref: TableRef) -> str:
        return ref.namespace or self.systems[ref.system].default_namespace

    def qualified(self, ref: TableRef) -> str:
        """'schema.table' (PostgreSQL) or 'database.table' (MariaDB)."""
        return f"{self.namespace(ref)}.{ref.table}"

    def with_namespace(self, system: str, namespace: str) -> MappingSet:
        """The same mappings with `system`'s tables in another database or schema (a test database, a
        second shop): rules that name their own namespace keep it."""
        return self.with_system(system, namespace=namespace)

    def with_system(self, system: str, **updates: Any) -> MappingSet:
        """The same mappings with `system`'s settings changed (namespace, source_name)."""
        systems = dict(self.systems)
        systems[system] = SystemSpec.model_validate({**systems[system].model_dump(by_alias=True), **updates})
        moved = MappingSet(systems=systems, rules=self.rules)
        moved._locations = dict(self._locations)
        return moved


def mapping_json_schema() -> dict[str, Any]:
    schema = MappingSet.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "replicator mapping file"
    return schema


def write_json_schema(path: Path | str) -> None:
    """Write the JSON schema of mapping files (regenerate: python -m replicator.mapping.spec <path>)."""
    text = json.dumps(mapping_json_schema(), indent=2, sort_keys=True) + "\n"
    Path(path).write_text(text)


if __name__ == "__main__":
    write_json_schema(sys.argv[1] if len(sys.argv) > 1 else "schemas/mapping.schema.json")
