"""The shortcuts of the apply path give exactly what the general code gives: frozen dataclasses built by
`frozen_factory`, `canonical` values, the audit records' JSON."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply import versions
from replicator.apply.applier import canonical, version_json
from replicator.conflict import Decision, Outcome, resolve
from replicator.conflict.policies import FieldState
from replicator.conflict.resolver import resolve_field
from replicator.mapping.ops import FieldChange, OpKind, Policy, TargetOp, Version, frozen_factory
from replicator.transport.audit import field_decisions
from tests.unit.memory_target import recording_publisher

# --- frozen_factory -----------------------------------------------------------------------------------


def test_frozen_factory_builds_the_same_frozen_instances() -> None:
    build = frozen_factory(FieldChange)
    made = build(5, Policy.OWNER, owner="erp")
    assert type(made) is FieldChange
    assert made == FieldChange(5, Policy.OWNER, owner="erp") and hash(made) == hash(FieldChange(5, Policy.OWNER,
                                                                                                 owner="erp"))
    assert build("x") == FieldChange("x")  # defaults
    assert repr(build("x")) == repr(FieldChange("x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.value = 6  # type: ignore[misc]
    with pytest.raises(TypeError):
        build()  # the value is required, as for FieldChange()
    version = frozen_factory(Version)(ts_ms=1, system="shop", priority=2, position="p")
    assert version == Version(1, "shop", 2, "p") and version.sort_key() == (1, -2, "p")


def test_frozen_factory_refuses_classes_it_cannot_copy() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (NoSlots, Checked):
        with pytest.raises(TypeError):
            frozen_factory(cls)


# --- canonical ----------------------------------------------------------------------------------------


def canonical_reference(value: Any) -> Any:
    """`canonical` as it was written first, without its shortcuts for text and small integers."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal | float) or (isinstance(value, int) and not isinstance(value, bool)):
        number = Decimal(str(value))
        return str(number.quantize(Decimal(1))) if number == number.to_integral_value() else str(number.normalize())
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() == timedelta(0):
            value = value.replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


@settings(deadline=None)
@given(st.one_of(st.integers(min_value=-(10**27), max_value=10**27), st.text(), st.none(), st.booleans(),
                 st.decimals(allow_nan=False, allow_infinity=False, places=4), st.floats(allow_nan=False,
                                                                                         allow_infinity=False),
                 st.datetimes(), st.dates()))
def test_canonical_shortcuts_change_nothing(value: Any) -> None:
    def outcome(function: Any) -> Any:
        try:
            result = function(value)
        except ArithmeticError as exc:  # a number beyond the default context's precision: both refuse it
            return type(exc)
        return type(result), result

    assert outcome(canonical) == outcome(canonical_reference)


def test_canonical_of_an_aware_utc_time_drops_the_offset() -> None:
    assert canonical(datetime(2026, 1, 1, 3, tzinfo=UTC)) == "2026-01-01T03:00:00"


# --- audit records ------------------------------------------------------------------------------------


def _version_dict(version: Version | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"ts_ms": version.ts_ms, "system": version.system, "priority": version.priority,
            "position": version.position}


def test_audit_decision_record_is_the_documented_json() -> None:
    publisher, producer = recording_publisher()
    version = Version(1_780_000_000_123, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000")
    op = TargetOp(OpKind.UPSERT, "public.order_line", {"id": 42}, {
        "sku": FieldChange("SKU-42"), "price": FieldChange(Decimal("4.20")),
        "at": FieldChange(datetime(2026, 11, 29, 3, 4, 5, 6)), "qty": FieldChange(3, Policy.DELTA),
    }, version=version, mapping="order_line")
    decisions: list[Decision] = list(resolve(op, {}, False).decisions)
    stored = Version(1_770_000_000_000, "erp", 1, "00000000000000000007")
    decisions.append(resolve_field("sku", FieldChange("old"), stored, FieldState("SKU-42", version, "SKU-42"), True))
    assert {d.outcome for d in decisions} == {Outcome.APPLIED, Outcome.DELTA_APPLIED, Outcome.LOST}
    publisher.decision(target="erp-writer", table=op.table, key=op.key, mapping=op.mapping, source="shop",
                       transaction="0-1-42", decisions=decisions)
    ((topic, key, value),) = producer.sent
    assert topic == "replicator.audit"
    assert orjson.loads(key) == {"target": "erp-writer", "table": "public.order_line", "key": {"id": 42}}
    expected = {
        "decision": "applied", "target": "erp-writer", "table": "public.order_line", "key": {"id": 42},
        "mapping": "order_line", "source": "shop", "transaction": "0-1-42",
        "fields": [{
            "column": d.column, "policy": str(d.policy), "outcome": str(d.outcome), "reason": d.reason,
            "incoming": d.incoming_value, "incoming_version": _version_dict(d.incoming_version),
            "current": d.current_value, "current_version": _version_dict(d.current_version),
            "result": d.result, "written": d.write,
        } for d in decisions],
    }
    assert value == orjson.dumps(expected, default=str)


def test_audit_record_of_a_new_row_is_the_decision_record_of_its_decisions() -> None:
    from replicator.conflict.resolver import new_row_decisions, new_row_reason

    publisher, producer = recording_publisher()
    version = Version(1_780_000_000_123, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000")
    for key, transaction in (({"id": 42}, "0-1-42"), ({"a": "x\"y", "b": Decimal("1.5")}, None)):
        op = TargetOp(OpKind.UPSERT, "public.order_line", key, {
            "sku": FieldChange("SKU-\u00e9\"42"), "price": FieldChange(Decimal("4.20")), "none": FieldChange(None),
            "at": FieldChange(datetime(2026, 11, 29, 3, 4, 5, 6)), "qty": FieldChange(3), "ok": FieldChange(True),
        }, version=version, mapping="order_line")
        publisher.decision(target="erp-writer", table=op.table, key=op.key, mapping=op.mapping, source="shop",
                           transaction=transaction, decisions=new_row_decisions(op))
        publisher.new_row(target="erp-writer", table=op.table, key=op.key, mapping=op.mapping, source="shop",
                          transaction=transaction, version=version, reason=new_row_reason(version),
                          fields=op.fields)
        general, fast = producer.sent[-2:]
        assert fast == general
        # The compact form, and every field's decision it stands for, exactly as the full form lists them.
        record = orjson.loads(fast[2])
        assert "fields" not in record and record["new_row"] == {
            "policy": "last_writer_wins", "outcome": "applied", "reason": new_row_reason(version),
            "version": _version_dict(version)}
        assert field_decisions(record) == orjson.loads(orjson.dumps([{
            "column": d.column, "policy": str(d.policy), "outcome": str(d.outcome), "reason": d.reason,
            "incoming": d.incoming_value, "incoming_version": _version_dict(d.incoming_version),
            "current": d.current_value, "current_version": _version_dict(d.current_version),
            "result": d.result, "written": d.write,
        } for d in new_row_decisions(op)], default=str))
        assert len(fast[2]) < len(orjson.dumps({"fields": field_decisions(record)}, default=str)) / 2


@pytest.mark.parametrize("change", ["row existed", "two versions", "a refused field", "a delta field"])
def test_decisions_that_are_not_a_new_rows_keep_the_full_form(change: str) -> None:
    from replicator.conflict.resolver import new_row_decisions

    publisher, producer = recording_publisher()
    version = Version(1_780_000_000_123, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000")
    op = TargetOp(OpKind.UPSERT, "public.order_line", {"id": 42}, {"sku": FieldChange("SKU-42"),
                  "qty": FieldChange(3)}, version=version, mapping="order_line")
    decisions = new_row_decisions(op)
    if change == "row existed":
        decisions[1] = dataclasses.replace(decisions[1], row_exists=True)
    elif change == "two versions":
        decisions[1] = dataclasses.replace(decisions[1], incoming_version=dataclasses.replace(version, ts_ms=1))
    elif change == "a refused field":
        decisions[1] = dataclasses.replace(decisions[1], outcome=Outcome.LOST, write=False)
    else:
        decisions[1] = dataclasses.replace(decisions[1], policy=Policy.DELTA, outcome=Outcome.DELTA_APPLIED)
    publisher.decision(target="erp-writer", table=op.table, key=op.key, mapping=op.mapping, source="shop",
                       transaction="0-1-42", decisions=decisions)
    record = orjson.loads(producer.sent[-1][2])
    assert "new_row" not in record and [f["column"] for f in record["fields"]] == ["sku", "qty"]
    assert field_decisions(record) == record["fields"]


def test_the_live_view_reads_both_forms_alike() -> None:
    from replicator.conflict.resolver import new_row_decisions
    from replicator.demo.live import FlowCatalog, parse_audit_record

    publisher, producer = recording_publisher()
    version = Version(1_780_000_000_123, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000")
    op = TargetOp(OpKind.UPSERT, "public.order_line", {"id": 42}, {"sku": FieldChange("SKU-42")},
                  version=version, mapping="order_line")
    decisions = new_row_decisions(op)
    publisher.decision(target="erp-writer", table=op.table, key=op.key, mapping=op.mapping, source="shop",
                       transaction="0-1-42", decisions=decisions)
    publisher.decision(target="erp-writer", table=op.table, key=op.key, mapping=op.mapping, source="shop",
                       transaction="0-1-42", decisions=[dataclasses.replace(decisions[0], row_exists=True)])
    catalog = FlowCatalog(flows=("orders",), rule_flow={"order_line": "orders"}, table_flows={})
    compact, full = (parse_audit_record(value, 1_780_000_000_500, catalog) for _, _, value in producer.sent[-2:])
    assert compact == full == ("orders", 377.0, 0)


# --- the resolver's Decision objects ------------------------------------------------------------------


def test_decisions_of_both_paths_are_plain_frozen_decisions() -> None:
    version = Version(5, "erp", 1, "x")
    op = TargetOp(OpKind.UPSERT, "t.t", {"id": 1}, {"a": FieldChange(1)}, version=version)
    fast = resolve(op, {}, False).decisions[0]
    general = resolve_field("a", FieldChange(1), version, FieldState(), False)
    assert type(fast) is Decision and type(general) is Decision and fast == general
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.reason = "changed"  # type: ignore[misc]


# --- field versions documents ----------------------------------------------------------------------------


def test_a_compact_document_expands_to_the_entries_it_stands_for() -> None:
    version = Version(1_780_000_000_123, "shop", 2, "0000000000-0000000001-00000000000000000042:0000000000")
    values = {"sku": "SKU-42", "price": Decimal("4.20"), "at": datetime(2026, 11, 29, 3, 4, 5, 6), "qty": 3,
              "note": None}
    entries = {column: version_json(version, value) for column, value in values.items()}
    compact = versions.compact_document(version, {column: FieldChange(value) for column, value in values.items()})
    assert compact == {"@": [version.ts_ms, "shop", 2, version.position], "sku": "SKU-42", "price": "4.2",
                       "at": "2026-11-29T03:04:05.000006", "qty": "3", "note": None}
    stored = orjson.loads(orjson.dumps(compact))
    assert versions.expand(stored) == entries
    assert versions.document(entries) == compact  # what the general path stores for the same entries
    assert versions.expand(entries) is entries  # the general form is read as it is


def test_entries_of_several_versions_or_with_a_rank_keep_the_general_form() -> None:
    older, newer = Version(1, "shop", 2, "a"), Version(2, "erp", 1, "b")
    mixed = {"a": version_json(older, 1), "b": version_json(newer, 2)}
    ranked = {"a": version_json(older, "paid", 3), "b": version_json(older, 2)}
    assert versions.document(mixed) is mixed
    assert versions.document(ranked) is ranked
    assert versions.document({}) == {}


# --- MariaDB literals ---------------------------------------------------------------------------------


@settings(deadline=None, max_examples=500)
@given(value=st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(), st.datetimes(), st.datetimes(timezones=st.just(UTC)), st.dates(), st.times(),
    st.timedeltas(), st.binary(max_size=8),
))
def test_mariadb_literals_are_pymysqls(value: Any) -> None:
    """sql_literal writes what PyMySQL's encoders write (text goes to the connection's escape, not here)."""
    import pymysql.converters

    from replicator.apply.dialect.mariadb import sql_literal

    def escape(other: Any) -> str:
        return str(pymysql.converters.escape_item(other, "utf8mb4"))

    try:
        expected = escape(value)
    except pymysql.err.ProgrammingError as exc:  # a decimal NaN or infinity: refused the same way
        with pytest.raises(pymysql.err.ProgrammingError, match=str(exc)):
            sql_literal(value, escape)
        return
    assert sql_literal(value, escape) == expected
