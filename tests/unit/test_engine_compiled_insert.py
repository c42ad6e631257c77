"""The function a plain rule compiles for inserts (`CompiledRule._compile_insert`) gives exactly what the
general path gives: the same ops, or, for anything it does not handle, nothing, so that the general path
runs and raises its own errors. Checked on generated rows full of awkward values, and on the position
text of GTIDs, whose padded prefix is now cached."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply.applier import _plain_upsert
from replicator.envelope.debezium import UNAVAILABLE_VALUE_PLACEHOLDER
from replicator.errors import SkippableRecordError
from replicator.mapping.engine import MappingEngine, position_text
from replicator.mapping.ops import TargetOp
from replicator.mapping.spec import MappingSet

unhurried = settings(deadline=None, max_examples=400)

SYSTEMS = {
    "shop": {"kind": "mariadb", "priority": 2, "source_name": "shop", "namespace": "prestashop"},
    "erp": {"kind": "postgresql", "priority": 1, "source_name": "erp"},
}
# Every step a plain field may have, required and optional values, a key that is cast.
PLAIN_RULE: dict[str, Any] = {
    "name": "lines", "source": {"system": "shop", "table": "line", "key": ["id"]},
    "target": {"system": "erp", "table": "line"}, "key": {"id": {"from": "id", "cast": "int"}}, "on_delete": "hard",
    "fields": {
        "qty": {"from": "qty", "cast": "int", "required": True},
        "sku": {"from": "sku", "normalize": ["trim", "upper"], "max_length": 8},
        "ref": {"from": "sku", "strip_prefix": "SKU-", "prefix": "R", "suffix": "!"},
        "price": {"from": "price", "cast": "decimal", "scale": 2},
        "at": {"from": "at", "cast": "datetime", "unit": "us"},
        "local": {"from": "at", "tz": {"from": "Europe/Paris", "to": "UTC"}, "cast": "datetime", "unit": "us"},
        "state": {"from": "state", "map": {"values": {"1": "new", "2": "paid"}}},
        "flag": {"from": "flag", "cast": "bool"},
        "note": "note",
    },
}
COLUMNS = ("id", "qty", "sku", "price", "at", "state", "flag", "note")


def engines(rule: dict[str, Any]) -> tuple[MappingEngine, MappingEngine]:
    """The engine as it is, and one whose rules have no compiled insert (the general path only)."""
    mapping_set = MappingSet.model_validate({"systems": SYSTEMS, "rules": [rule]})
    compiled, general = MappingEngine(mapping_set), MappingEngine(mapping_set)
    for rules in general._routes.values():
        for compiled_rule in rules:
            compiled_rule._insert = None
    return compiled, general


def envelope(after: Any, op: str = "c", gtid: str = "0-1-7") -> dict[str, Any]:
    return {"op": op, "before": None, "after": after,
            "source": {"name": "shop", "connector": "mariadb", "db": "prestashop", "table": "line",
                       "ts_ms": 1_717_236_001_000, "snapshot": "false" if op == "c" else "true",
                       "gtid": gtid, "row": 0}}


def outcome(engine: MappingEngine, event: dict[str, Any]) -> list[TargetOp] | str:
    try:
        return engine.ops_for(event)
    except SkippableRecordError as exc:
        return f"SkippableRecordError: {exc}"


awkward = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["1", "2", "3", " 42 ", "SKU-ab", "12.345", "1e3", "abc", "-0",
                                           UNAVAILABLE_VALUE_PLACEHOLDER, "2026-03-29T02:30:00", "true"]),
    st.integers(0, 2_000_000_000_000_000),
)


@unhurried
@given(row=st.dictionaries(st.sampled_from(COLUMNS), awkward), op=st.sampled_from(["c", "r"]))
def test_the_compiled_insert_gives_what_the_general_path_gives(row: dict[str, Any], op: str) -> None:
    compiled, general = engines(PLAIN_RULE)
    expected = outcome(general, envelope(row, op))
    got = outcome(compiled, envelope(row, op))
    assert got == expected
    if isinstance(got, list):
        for made, wanted in zip(got, expected, strict=True):
            assert isinstance(wanted, TargetOp)
            # Equal fields may still differ in type (1 == 1.0 == True): the values must be the very same.
            assert [(type(c.value), c.value) for c in made.fields.values()] == \
                [(type(c.value), c.value) for c in wanted.fields.values()]
            # `plain` is a promise the applier acts on without checking: never made for an op that is not. An op
            # the compiled function left to the general path (a value unavailable, say) is unmarked even when
            # plain; the applier then checks it (`op.plain or _plain_upsert(op)`).
            assert not made.plain or _plain_upsert(made)


plausible_rows = st.fixed_dictionaries({
    "id": st.one_of(st.integers(-(2**63), 2**63), st.sampled_from(["7", " 8"])),
    "qty": st.one_of(st.integers(0, 1000), st.sampled_from(["3", "4.0"])),
    "sku": st.one_of(st.none(), st.text(max_size=6).map(lambda text: "SKU-" + text)),
    "price": st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)),
    "at": st.one_of(st.none(), st.integers(0, 4_000_000_000_000_000)),
    "state": st.one_of(st.none(), st.sampled_from([1, 2, "1", "2"])),
    "flag": st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, "true", "n"])),
    "note": st.one_of(st.none(), st.text(max_size=5), st.integers()),
})


@unhurried
@given(row=plausible_rows)
def test_a_row_the_general_path_maps_takes_the_compiled_function(row: dict[str, Any]) -> None:
    compiled, general = engines(PLAIN_RULE)
    expected = outcome(general, envelope(row))
    got = outcome(compiled, envelope(row))
    assert got == expected
    if isinstance(got, list):
        (op,) = got
        assert op.plain  # made by the compiled function: it fell back on nothing the general path maps


def test_a_usual_row_takes_the_compiled_function_and_is_marked_plain() -> None:
    compiled, general = engines(PLAIN_RULE)
    row = {"id": 5, "qty": "3", "sku": "SKU-1 ", "price": "2.345", "at": 1_780_000_000_000_000, "state": 2,
           "flag": 1, "note": None}
    (op,) = compiled.ops_for(envelope(row))
    assert op.plain and op == general.ops_for(envelope(row))[0]
    assert op.key == {"id": 5} and op.fields["price"].value == Decimal("2.35")
    assert op.fields["state"].value == "paid" and op.fields["flag"].value is True


@pytest.mark.parametrize("change", [
    {"policy": "owner", "owner": "shop"},
    {"policy": "monotonic", "order": ["a", "b"]},
    {"policy": "delta"},
])
def test_rules_with_other_policies_have_no_compiled_insert(change: dict[str, Any]) -> None:
    rule = {**PLAIN_RULE, "fields": {"qty": {"from": "qty", **change}}}
    compiled, _ = engines(rule)
    (compiled_rule,) = [r for rules in compiled._routes.values() for r in rules]
    assert compiled_rule._insert is None


def test_filtered_or_identity_rules_have_no_compiled_insert() -> None:
    filtered = {**PLAIN_RULE, "filter": [{"column": "qty", "gt": 0}]}
    identity = {key: value for key, value in PLAIN_RULE.items() if key != "key"} | {"identity": "line"}
    for rule in (filtered, identity):
        compiled, _ = engines(rule)
        (compiled_rule,) = [r for rules in compiled._routes.values() for r in rules]
        assert compiled_rule._insert is None


def _position_text_before(gtid: Any, row: int) -> str:
    """position_text for MariaDB as it was written before the prefix cache."""
    if not gtid:
        return ""
    try:
        domain, server, sequence = str(gtid).split("-")
        return f"{int(domain):010d}-{int(server):010d}-{int(sequence):020d}:{row:010d}"
    except ValueError:
        return f"{gtid}:{row:010d}"


@unhurried
@given(gtid=st.one_of(st.none(), st.text(alphabet="0123456789- +_x", max_size=14),
                      st.tuples(st.integers(0, 2**32), st.integers(0, 2**32), st.integers(0, 2**64)).map(
                          lambda t: f"{t[0]}-{t[1]}-{t[2]}")),
       row=st.integers(0, 10**6))
def test_position_text_of_a_gtid_is_what_it_was(gtid: str | None, row: int) -> None:
    assert position_text({"gtid": gtid, "row": row}, "mariadb") == _position_text_before(gtid, row)
    assert position_text({"gtid": gtid, "row": row}, "mariadb") == _position_text_before(gtid, row)  # cached
