"""Check mappings against the live schemas of both databases (`replicator validate`). The one module of
the mapping layer that does I/O: it reads the catalogs through SQLAlchemy's inspector, nothing else.

Every problem is reported, each naming where the mapping says it and what the database has:
missing tables and columns, target columns whose type cannot hold the mapped value, policies that do not
fit their column, target keys that are not unique, and NOT NULL columns that an inserting rule leaves
out. Natural-key look-ups without an index are reported as warnings ('... : warning: ...'): they work,
slowly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.exc import SQLAlchemyError

from replicator.mapping.ops import Policy
from replicator.mapping.spec import (
    AggregateSpec,
    Condition,
    FieldSpec,
    MappingSet,
    RuleSpec,
    TableRef,
    ValueSpec,
    value_text,
)

# --- what a column holds -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """What a mapped value is. `epoch_date` and `epoch_datetime` are DATE and DATETIME/timestamp values
    as they travel in events (days / milliseconds since 1970, or ISO text): not yet dates."""

    name: str  # int | decimal | float | string | bool | date | datetime | epoch_date | epoch_datetime | any
    length: int | None = None
    scale: int | None = None

    def describe(self) -> str:
        if self.name == "string":
            return "text" if self.length is None else f"text of up to {self.length} characters"
        if self.name == "decimal" and self.scale is not None:
            return f"decimals with {self.scale} places"
        return {
            "int": "integers",
            "decimal": "decimals",
            "float": "floating-point numbers",
            "bool": "booleans",
            "date": "dates",
            "datetime": "date-times",
            "epoch_date": "DATE values as they travel (days since 1970)",
            "epoch_datetime": "date-time values as they travel (epoch numbers or ISO text)",
        }.get(self.name, "values")


ANY = Kind("any")


def column_kind(column_type: Any) -> Kind:
    """What a column of this SQL type holds (in a source table: as it travels in events)."""
    if isinstance(column_type, sqltypes.Boolean):
        return Kind("bool")
    if isinstance(column_type, sqltypes.Integer):
        return Kind("int")
    if isinstance(column_type, sqltypes.Float):
        return Kind("float")
    if isinstance(column_type, sqltypes.Numeric):
        return Kind("decimal", scale=column_type.scale)
    if isinstance(column_type, sqltypes.Enum):
        return Kind("string", length=max((len(e) for e in column_type.enums), default=None))
    if isinstance(column_type, sqltypes.String):
        return Kind("string", length=column_type.length)
    if isinstance(column_type, sqltypes.DateTime):
        return Kind("epoch_datetime")
    if isinstance(column_type, sqltypes.Date):
        return Kind("epoch_date")
    return ANY


def traveling_unit(column_type: Any) -> str | None:
    """How a naive date-time column's values travel in change events (docs/TYPES.md): 'ms' up to three
    fraction digits, else 'us'; None for an instant (MariaDB TIMESTAMP, timestamptz), which travels as ISO
    text with its zone, and for other types."""
    if isinstance(column_type, mysql.DATETIME):
        digits = column_type.fsp or 0
    elif isinstance(column_type, postgresql.TIMESTAMP) and not column_type.timezone:
        digits = 6 if column_type.precision is None else column_type.precision  # PostgreSQL keeps µs by default
    else:
        return None
    return "ms" if digits <= 3 else "us"


def target_category(column_type: Any) -> str:
    """The category of a target column: the kinds column_kind names, with real dates."""
    kind = column_kind(column_type).name
    return {"epoch_datetime": "datetime", "epoch_date": "date"}.get(kind, kind)


def _value_kind(value: Any) -> Kind:
    if value is None:
        return ANY
    if isinstance(value, bool):
        return Kind("bool")
    if isinstance(value, int):
        return Kind("int")
    if isinstance(value, float):
        return Kind("float")
    return Kind("string", length=len(str(value)))


def _common_kind(values: list[Any]) -> Kind:
    kinds = [_value_kind(v) for v in values if v is not None]
    names = {k.name for k in kinds}
    if len(names) != 1:
        return ANY
    if names == {"string"}:
        return Kind("string", length=max(k.length or 0 for k in kinds))
    return kinds[0]


def holds(kind: Kind, column_type: Any) -> str | None:
    """Why a target column of `column_type` cannot hold values of `kind`; None when it can."""
    category = target_category(column_type)
    if kind.name == "any" or category == "any":
        return None
    if kind.name in ("epoch_date", "epoch_datetime"):
        if category == "int":
            return None
        hint = "cast: date" if kind.name == "epoch_date" else "cast: datetime, or tz"
        return f"it would receive {kind.describe()}: add {hint}"
    accepted = {
        "int": {"int", "decimal", "float", "string"},
        "decimal": {"decimal", "float", "string"},
        "float": {"decimal", "float", "string"},
        "bool": {"bool", "int", "string"},
        "string": {"string"},
        "date": {"date", "datetime", "string"},
        "datetime": {"datetime", "string"},
    }[kind.name]
    if category not in accepted:
        return f"it cannot hold {kind.describe()}"
    if category == "string":
        return _length_problem(kind, column_type)
    if category == "decimal" and kind.name == "decimal":
        scale = getattr(column_type, "scale", None)
        if scale is not None and kind.scale is not None and kind.scale > scale:
            return f"it keeps {scale} decimal places; the values have {kind.scale} (add cast: decimal, scale: {scale})"
    return None


def _length_problem(kind: Kind, column_type: Any) -> str | None:
    limit = column_kind(column_type).length
    if limit is None or kind.name != "string":
        return None  # numbers, dates and booleans are short
    if kind.length is None:
        return f"it holds {limit} characters and the values are unbounded text (declare max_length: {limit})"
    if kind.length > limit:
        return f"it holds {limit} characters, shorter than the {kind.length} the values may have"
    return None


# --- the catalogs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type: Any
    nullable: bool
    generated: bool  # the database fills it when an insert leaves it out (default, serial, identity)


@dataclass(frozen=True, slots=True)
class TableInfo:
    label: str  # 'erp public.res_partner', for messages
    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...]
    unique_sets: tuple[frozenset[str], ...]
    indexes: tuple[tuple[str, ...], ...]

    def is_unique(self, columns: set[str]) -> bool:
        """Some primary key or unique index lies within `columns`, so they identify at most one row."""
        return any(unique <= columns for unique in self.unique_sets)

    def has_index_on(self, columns: set[str]) -> bool:
        """Some index starts with one of `columns`, so a look-up by them does not scan the table."""
        return any(index and index[0] in columns for index in self.indexes)


class Catalog:
    """One database's tables, read on demand through SQLAlchemy's inspector and kept."""

    def __init__(self, system: str, engine: Engine) -> None:
        self.system = system
        self._inspector = inspect(engine)
        self._tables: dict[tuple[str, str], TableInfo | None] = {}

    def table(self, namespace: str, name: str) -> TableInfo | None:
        key = (namespace, name)
        if key not in self._tables:
            self._tables[key] = self._read(namespace, name)
        return self._tables[key]

    def _read(self, namespace: str, name: str) -> TableInfo | None:
        inspector = self._inspector
        if not inspector.has_table(name, schema=namespace):
            return None
        columns = {
            c["name"]: ColumnInfo(
                name=c["name"],
                type=c["type"],
                nullable=bool(c["nullable"]),
                generated=c.get("default") is not None
                or c.get("autoincrement") is True
                or "identity" in c
                or "computed" in c,
            )
            for c in inspector.get_columns(name, schema=namespace)
        }
        primary_key = tuple(inspector.get_pk_constraint(name, schema=namespace).get("constrained_columns") or ())
        indexes = inspector.get_indexes(name, schema=namespace)
        uniques = [frozenset(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=namespace)]
        uniques += [frozenset(c for c in i["column_names"] if c) for i in indexes if i.get("unique")]
        if primary_key:
            uniques.append(frozenset(primary_key))
        index_columns = [tuple(c for c in i["column_names"] if c) for i in indexes]
        if primary_key:
            index_columns.append(primary_key)
        return TableInfo(
            label=f"{self.system} {namespace}.{name}",
            columns=columns,
            primary_key=primary_key,
            unique_sets=tuple(uniques),
            indexes=tuple(index_columns),
        )


# --- checking ----------------------------------------------------------------------------------------


def validate_against_databases(mapping_set: MappingSet, engines: dict[str, Engine]) -> list[str]:
    """Every problem of every rule against the live schemas; [] when all fit.

    `engines` maps each system name of the mappings to a SQLAlchemy engine on its database
    (`postgresql+psycopg://...`, `mysql+pymysql://...`)."""
    problems: list[str] = []
    catalogs: dict[str, Catalog] = {}
    for system in mapping_set.systems:
        engine = engines.get(system)
        if engine is None:
            problems.append(f"systems.{system}: no database connection given; its side is not checked")
            continue
        catalogs[system] = Catalog(system, engine)
    for rule in mapping_set.rules:
        try:
            RuleCheck(rule, mapping_set, catalogs, problems).run()
        except SQLAlchemyError as exc:
            problems.append(
                f"{mapping_set.location(rule)}: cannot read the schema: {getattr(exc, 'orig', None) or exc}"
            )
    return problems


class RuleCheck:
    """The checks of one rule. Problems are appended to the shared list."""

    def __init__(
        self, rule: RuleSpec, mapping_set: MappingSet, catalogs: dict[str, Catalog], problems: list[str]
    ) -> None:
        self.rule = rule
        self.mapping_set = mapping_set
        self.catalogs = catalogs
        self.problems = problems
        self.where = mapping_set.location(rule)

    def report(self, path: str, message: str) -> None:
        self.problems.append(f"{self.where}.{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.problems.append(f"{self.where}.{path}: warning: {message}")

    def _table(self, ref: TableRef, path: str, name: str | None = None) -> TableInfo | None:
        catalog = self.catalogs.get(ref.system)
        if catalog is None:
            return None
        namespace = self.mapping_set.namespace(ref)
        table_name = name or ref.table
        table = catalog.table(namespace, table_name)
        if table is None:
            self.report(path, f"{ref.system} table {namespace}.{table_name} does not exist")
        return table

    def run(self) -> None:
        source = self._table(self.rule.source, "source.table")
        target = self._table(self.rule.target, "target.table")
        if source is not None:
            self._check_source(source)
        if target is not None:
            self._check_target(target, source)

    # -- source side ------------------------------------------------------------------------------

    def _check_source(self, source: TableInfo) -> None:
        rule = self.rule
        for path, column in self._source_columns():
            if column not in source.columns:
                self.report(path, f"{source.label} has no column {column!r}")
        key = set(rule.source.key)
        if key <= set(source.columns) and not source.is_unique(key):
            self.report(
                "source.key", f"{source.label}: columns {_names(key)} are not unique (no primary key or unique index)"
            )
        for name, spec in rule.fields.items():
            terms = spec.aggregate_terms
            for i, term in enumerate(terms):
                self._check_aggregate(f"fields.{name}.aggregate" + (f"[{i}]" if len(terms) > 1 else ""), term)

    def _source_columns(self) -> Iterator[tuple[str, str]]:
        rule = self.rule
        for i, column in enumerate(rule.source.key):
            yield f"source.key[{i}]", column
        if rule.identity is not None:
            for i, column in enumerate(rule.identity.from_ or ()):
                yield f"identity.from[{i}]", column
        for i, condition in enumerate(rule.filter):
            yield f"filter[{i}].column", condition.column
        for i, column in enumerate(rule.when_changed):
            yield f"when_changed[{i}]", column
        for path, spec in self._values():
            yield from ((f"{path}.{sub}", column) for sub, column in _value_columns(spec))
            if isinstance(spec, FieldSpec):
                for term in spec.aggregate_terms:
                    for aggregated, source in term.group_by.items():
                        if isinstance(source, str):
                            yield f"{path}.aggregate.group_by.{aggregated}", source

    def _values(self) -> Iterator[tuple[str, ValueSpec]]:
        for name, key_spec in (self.rule.key or {}).items():
            yield f"key.{name}", key_spec
        for name, field_spec in self.rule.fields.items():
            yield f"fields.{name}", field_spec

    def _check_aggregate(self, path: str, spec: AggregateSpec) -> None:
        """An aggregate reads the target database (the applier's connection)."""
        table = self._table(self.rule.target, f"{path}.table", spec.table)
        if table is None:
            return
        columns = [(f"of[{i}]", c) for i, c in enumerate(spec.of)] + [
            (f"minus[{i}]", c) for i, c in enumerate(spec.minus)
        ]
        self._expect_columns(table, path, columns + _condition_columns("where", spec.where))
        self._expect_columns(table, path, [(f"group_by.{c}", c) for c in spec.group_by])
        for sub, column in columns:
            info = table.columns.get(column)
            if (
                info is not None
                and spec.function == "sum"
                and target_category(info.type) not in ("int", "decimal", "float")
            ):
                self.report(f"{path}.{sub}", f"{table.label}.{column} is {info.type}, not a number to sum")
        if spec.join is not None:
            self._expect_columns(table, path, [("join.via", spec.join.via)])
            joined = self._table(self.rule.target, f"{path}.join.table", spec.join.table)
            if joined is not None:
                conditions = [("join.key", spec.join.key), *_condition_columns("join.where", spec.join.where)]
                self._expect_columns(joined, path, conditions)

    def _expect_columns(self, table: TableInfo, path: str, columns: list[tuple[str, str]]) -> None:
        for sub, column in columns:
            if column not in table.columns:
                self.report(f"{path}.{sub}", f"{table.label} has no column {column!r}")

    # -- target side ------------------------------------------------------------------------------

    def _check_target(self, target: TableInfo, source: TableInfo | None) -> None:
        for path, spec in self._values():
            column = path.split(".", 1)[1]
            info = target.columns.get(column)
            if info is None:
                self.report(path, f"{target.label} has no column {column!r}")
                continue
            self._check_type(path, spec, info, target, source)
            if isinstance(spec, FieldSpec):
                self._check_policy(path, spec, info, target)
            self._check_natural_lookup(path, spec)
        self._check_keys(target)
        self._check_local_time(target)
        self._check_delete(target)
        self._check_inserts(target)

    def _check_type(
        self, path: str, spec: ValueSpec, column: ColumnInfo, target: TableInfo, source: TableInfo | None
    ) -> None:
        kind = self._kind(spec, source)
        problem = holds(kind, column.type)
        if problem is not None:
            self.report(path, f"{target.label}.{column.name} is {column.type}: {problem}")

    def _kind(self, spec: ValueSpec, source: TableInfo | None) -> Kind:
        """What the engine will produce for `spec`, as far as the schemas tell."""
        kind = self._base_kind(spec, source)
        if spec.prefix is not None or spec.suffix is not None:
            extra = len(spec.prefix or "") + len(spec.suffix or "")
            length = _text_length(kind)
            kind = Kind("string", length=None if length is None else length + extra)
        if spec.map is not None:
            outputs = list(spec.map.values.values()) + ([spec.map.default] if spec.map.has_default else [])
            kind = _common_kind(outputs)
        if spec.tz is not None:
            kind = Kind("datetime")
        if spec.cast is not None:
            kind = _cast_kind(spec, kind)
        if spec.max_length is not None:
            kind = Kind("string", length=spec.max_length)
        return kind

    def _base_kind(self, spec: ValueSpec, source: TableInfo | None) -> Kind:
        if isinstance(spec, FieldSpec) and spec.aggregate is not None:
            return Kind("int") if spec.cast == "int" else Kind("decimal")
        if spec.lookup is not None:
            return self._lookup_kind(spec)
        if "const" in spec.model_fields_set:
            return _value_kind(spec.const)
        columns = [_source_kind(source, c) for c in spec.source_columns]
        if spec.from_ is not None:
            return columns[0]
        if spec.split is not None:
            return Kind("string", length=columns[0].length)
        lengths = [k.length for k in columns]
        if any(length is None for length in lengths):
            return Kind("string")
        return Kind("string", length=sum(length or 0 for length in lengths) + len(spec.separator) * (len(lengths) - 1))

    def _lookup_kind(self, spec: ValueSpec) -> Kind:
        lookup = spec.lookup
        assert lookup is not None
        if lookup.table is None:
            return Kind("int")  # an identity: a target key, integers in both applications
        catalog = self.catalogs.get(self.rule.target.system)
        table = catalog.table(self.mapping_set.namespace(self.rule.target), lookup.table) if catalog else None
        returned = table.columns.get(lookup.returns) if table is not None else None
        return ANY if returned is None else Kind(target_category(returned.type), column_kind(returned.type).length)

    def _check_policy(self, path: str, spec: FieldSpec, column: ColumnInfo, target: TableInfo) -> None:
        policy = spec.effective_policy
        category = target_category(column.type)
        if policy is Policy.DELTA and category not in ("int", "decimal", "float"):
            self.report(f"{path}.policy", f"delta adds numbers, but {target.label}.{column.name} is {column.type}")
        if policy is Policy.MONOTONIC and spec.order is not None:
            self._check_order(path, spec, column, target)

    def _check_order(self, path: str, spec: FieldSpec, column: ColumnInfo, target: TableInfo) -> None:
        ranked = [v for entry in spec.order or () for v in (entry if isinstance(entry, list) else [entry])]
        unfit = [value_text(v) for v in ranked if holds(_value_kind(v), column.type) is not None]
        if unfit:
            self.report(
                f"{path}.order", f"{target.label}.{column.name} is {column.type}: it cannot hold {', '.join(unfit)}"
            )
        if isinstance(column.type, sqltypes.Enum):
            texts = {value_text(v) for v in ranked}
            missing = [e for e in column.type.enums if e not in texts]
            if missing:
                self.report(
                    f"{path}.order",
                    f"{target.label}.{column.name} may hold {', '.join(missing)}, which the order does not rank",
                )

    def _check_natural_lookup(self, path: str, spec: ValueSpec) -> None:
        lookup = spec.lookup
        if lookup is None or lookup.table is None:
            return
        table = self._table(self.rule.target, f"{path}.lookup.table", lookup.table)
        if table is not None and not lookup.match:  # an identity look-up reading a column of the row
            self._expect_columns(table, f"{path}.lookup", [("returns", lookup.returns)])
            return
        if table is None:
            return
        self._expect_columns(table, f"{path}.lookup", [(f"match.{c}", c) for c in lookup.match])
        self._expect_columns(table, f"{path}.lookup", [("returns", lookup.returns)])
        if set(lookup.match) <= set(table.columns) and not table.has_index_on(set(lookup.match)):
            self.warn(
                f"{path}.lookup.match",
                f"{table.label} has no index on {_names(set(lookup.match))}: every look-up scans the table",
            )

    def _check_local_time(self, target: TableInfo) -> None:
        local_time = self.rule.target.local_time
        if local_time is None:
            return
        info = target.columns.get(local_time.column)
        if info is None:
            self.report("target.local_time.column", f"{target.label} has no column {local_time.column!r}")
        elif target_category(info.type) != "datetime":
            self.report("target.local_time.column",
                        f"{target.label}.{local_time.column} is {info.type}, not a date-time column")
        else:
            unit = traveling_unit(info.type)
            if unit is not None and unit != local_time.unit:
                self.report("target.local_time.unit",
                            f"{target.label}.{local_time.column} travels in "
                            f"{'milliseconds' if unit == 'ms' else 'microseconds'} in change events: say unit: {unit}")

    def _check_keys(self, target: TableInfo) -> None:
        rule = self.rule
        if rule.key is not None:
            key = set(rule.key)
            if key <= set(target.columns) and not target.is_unique(key):
                self.report(
                    "key",
                    f"{target.label}: columns {_names(key)} are not unique (no primary key or unique index over them)",
                )
        if rule.identity is not None and not target.primary_key:
            self.report("identity", f"{target.label} has no primary key for the identity map to record")
        match = set(rule.match_on)
        if match and match <= set(target.columns) and not target.has_index_on(match):
            self.warn("match_on", f"{target.label} has no index on {_names(match)}: linking rows scans the table")

    def _check_delete(self, target: TableInfo) -> None:
        delete = self.rule.on_delete
        if delete is None or delete.column is None:
            return
        column = target.columns.get(delete.column)
        if column is None:
            self.report("on_delete.column", f"{target.label} has no column {delete.column!r}")
        elif (problem := holds(_value_kind(delete.value), column.type)) is not None:
            self.report("on_delete.value", f"{target.label}.{column.name} is {column.type}: {problem}")

    def _check_inserts(self, target: TableInfo) -> None:
        """A rule that may insert rows must write every NOT NULL column the database does not fill."""
        rule = self.rule
        if rule.mode == "update":
            return
        written = set(rule.fields) | set(rule.key or ())
        for column in target.columns.values():
            if not column.nullable and not column.generated and column.name not in written:
                self.report(
                    "fields",
                    f"{target.label}.{column.name} is NOT NULL without a default and this rule does not write it: "
                    "its inserts would fail",
                )


def _value_columns(spec: ValueSpec) -> Iterator[tuple[str, str]]:
    if spec.from_ is not None:
        yield "from", spec.from_
    for i, column in enumerate(spec.concat or ()):
        yield f"concat[{i}]", column
    if spec.split is not None:
        yield "split.from", spec.split.from_
    if spec.lookup is not None:
        if spec.lookup.from_ is not None:
            yield "lookup.from", spec.lookup.from_
        for target_column, column in spec.lookup.match.items():
            yield f"lookup.match.{target_column}", column


def _condition_columns(path: str, conditions: list[Condition]) -> list[tuple[str, str]]:
    return [(f"{path}[{i}].column", c.column) for i, c in enumerate(conditions)]


def _source_kind(source: TableInfo | None, column: str) -> Kind:
    info = source.columns.get(column) if source is not None else None
    return ANY if info is None else column_kind(info.type)


def _cast_kind(spec: ValueSpec, before: Kind) -> Kind:
    if spec.cast == "decimal":
        return Kind("decimal", scale=spec.scale if spec.scale is not None else before.scale)
    if spec.cast == "string":
        return Kind("string", length=_text_length(before))
    return Kind(str(spec.cast))


def _text_length(kind: Kind) -> int | None:
    """The longest text a value of `kind` becomes; integers have at most 20 characters."""
    if kind.name == "string":
        return kind.length
    return 20 if kind.name in ("int", "bool") else None


def _names(columns: set[str]) -> str:
    return "(" + ", ".join(sorted(columns)) + ")"
