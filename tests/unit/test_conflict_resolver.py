"""Conflict resolution, decision by decision: every policy x row missing/present x local edit (known time,
unknown time, none, never replicated) x older/newer/tied incoming versions, in both directions between
the shop (priority 2) and the ERP (priority 1, wins ties). Each case asserts the outcome, the value the
field ends with, what is written and what is recorded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from replicator.conflict import Decision, FieldState, Outcome, Reassert, Resolution, resolve, resolve_field
from replicator.conflict.policies import add_delta, same_value
from replicator.errors import MappingError, SkippableRecordError
from replicator.mapping.ops import FieldChange, OpKind, Policy, TargetOp, Version

SHOP, ERP = "shop", "erp"
PRIORITY = {ERP: 1, SHOP: 2}  # a lower number wins ties


def v(ts: int, system: str, seq: int = 0) -> Version:
    return Version(ts, system, PRIORITY[system], f"{ts:06d}.{seq}")


def local(ts: int, system: str) -> Version:
    """A local edit's version as the applier builds it: the target system, no position."""
    return Version(ts, system, PRIORITY[system], "")


def decide(change: FieldChange, version: Version | None, state: FieldState | None) -> Decision:
    """One field of an op; `state=None` means the row is missing."""
    return resolve_field("f", change, version, state or FieldState(), state is not None)


# --- the matrix ---------------------------------------------------------------------------------------
# Directions: (incoming system, target system). The ERP wins ties against the shop.
DIRECTIONS = [(ERP, SHOP), (SHOP, ERP)]
STATES = ["missing", "clean", "local_known", "local_unknown", "never"]
INCOMING = ["older", "duplicate", "tie_later_position", "tie_earlier_position", "between", "tie_local", "newer"]


def state_for(name: str, incoming: str, target: str) -> FieldState | None:
    """The stored version is the incoming system's write at 100 (value "W"); a local edit ("L") is at 200."""
    stored = v(100, incoming)
    if name == "missing":
        return None
    if name == "clean":
        return FieldState(current="W", version=stored, written="W", local_version=local(900, target))
    if name == "local_known":
        return FieldState(current="L", version=stored, written="W", local_version=local(200, target))
    if name == "local_unknown":
        return FieldState(current="L", version=stored, written="W", local_version=None)
    if name == "never":
        # Never replicated: a pre-existing value. Its row time (900, after every incoming) is not used.
        return FieldState(current="P", local_version=local(900, target))
    raise AssertionError(name)


def incoming_for(name: str, system: str) -> tuple[Version, str]:
    if name == "older":
        return v(50, system), "N"
    if name == "duplicate":
        return v(100, system), "W"
    if name == "tie_later_position":
        return v(100, system, 1), "N"
    if name == "tie_earlier_position":
        return Version(100, system, PRIORITY[system], "000099.9"), "N"
    if name == "between":
        return v(150, system), "N"
    if name == "tie_local":
        return v(200, system), "N"
    if name == "newer":
        return v(300, system), "N"
    raise AssertionError(name)


def lww_expected(state: str, incoming: str, incoming_wins_ties: bool) -> tuple[Outcome, str]:
    """The last-writer-wins table, written out: (outcome, value the field ends with)."""
    applied = (Outcome.APPLIED, "W" if incoming == "duplicate" else "N")
    if state in ("missing", "never"):
        return applied
    if state == "clean":
        return {
            "older": (Outcome.LOST, "W"),
            "duplicate": (Outcome.UNCHANGED, "W"),
            "tie_later_position": applied,
            "tie_earlier_position": (Outcome.LOST, "W"),
            "between": applied,
            "tie_local": applied,
            "newer": applied,
        }[incoming]
    kept = (Outcome.KEPT_LOCAL, "L")
    if state == "local_known":
        return {
            "older": kept,
            "duplicate": kept,
            "tie_later_position": kept,
            "tie_earlier_position": kept,
            "between": kept,
            "tie_local": applied if incoming_wins_ties else kept,
            "newer": applied,
        }[incoming]
    # Unknown time: the local edit is dated just after the stored version (100).
    return {
        "older": kept,
        "duplicate": kept,
        "tie_later_position": applied,
        "tie_earlier_position": kept,
        "between": applied,
        "tie_local": applied,
        "newer": applied,
    }[incoming]


def owner_expected(state: str, incoming: str) -> tuple[Outcome, str]:
    """Owner = the incoming system. Local edits in the target are not the owner's."""
    applied = (Outcome.APPLIED, "W" if incoming == "duplicate" else "N")
    if state in ("missing", "never"):
        return applied
    if state == "clean":
        return lww_expected("clean", incoming, True)
    reasserted = (Outcome.OWNER_REASSERTED, "W")
    return {
        "older": reasserted,
        "duplicate": reasserted,
        "tie_later_position": applied,
        "tie_earlier_position": reasserted,
        "between": applied,
        "tie_local": applied,
        "newer": applied,
    }[incoming]


def check(decision: Decision, state: FieldState | None, outcome: Outcome, final: Any) -> None:
    assert decision.outcome is outcome, decision.reason
    assert decision.result == final
    current = None if state is None else state.current
    assert decision.write == (final != current or (state is None and outcome is not Outcome.OWNER_REFUSED))
    assert decision.current_value == current
    assert decision.row_exists == (state is not None)


MATRIX = [(d, s, i) for d in DIRECTIONS for s in STATES for i in INCOMING]


@pytest.mark.parametrize(("direction", "state_name", "incoming_name"), MATRIX)
def test_last_writer_wins_matrix(direction: tuple[str, str], state_name: str, incoming_name: str) -> None:
    source, target = direction
    state = state_for(state_name, source, target)
    version, value = incoming_for(incoming_name, source)
    outcome, final = lww_expected(state_name, incoming_name, PRIORITY[source] < PRIORITY[target])
    decision = decide(FieldChange(value, Policy.LAST_WRITER_WINS), version, state)
    check(decision, state, outcome, final)
    assert decision.record == (outcome is Outcome.APPLIED)
    assert decision.incoming_value == value and decision.incoming_version == version


@pytest.mark.parametrize(("direction", "state_name", "incoming_name"), MATRIX)
def test_monotonic_equal_rank_matrix_is_last_writer_wins(
    direction: tuple[str, str], state_name: str, incoming_name: str
) -> None:
    source, target = direction
    state = state_for(state_name, source, target)
    if state is not None:
        state = FieldState(state.current, state.version, state.written, state.local_version, rank=1)
    version, value = incoming_for(incoming_name, source)
    outcome, final = lww_expected(state_name, incoming_name, PRIORITY[source] < PRIORITY[target])
    decision = decide(FieldChange(value, Policy.MONOTONIC, rank=1), version, state)
    check(decision, state, outcome, final)
    assert decision.record == (outcome is Outcome.APPLIED)


@pytest.mark.parametrize(("direction", "state_name", "incoming_name"), MATRIX)
@pytest.mark.parametrize("incoming_rank", [0, 2])
def test_monotonic_rank_decides_before_time(
    direction: tuple[str, str], state_name: str, incoming_name: str, incoming_rank: int
) -> None:
    source, target = direction
    state = state_for(state_name, source, target)
    if state is not None:
        state = FieldState(state.current, state.version, state.written, state.local_version, rank=1)
    version, value = incoming_for(incoming_name, source)
    decision = decide(FieldChange(value, Policy.MONOTONIC, rank=incoming_rank), version, state)
    if state is None or incoming_rank > 1:  # a new row, or a higher rank: applied even when older
        check(decision, state, Outcome.APPLIED, value)
    else:  # lower: refused even when newer
        check(decision, state, Outcome.MONOTONIC_KEPT, state.current)
        assert not decision.record
    assert decision.incoming_rank == incoming_rank


@pytest.mark.parametrize(("direction", "state_name", "incoming_name"), MATRIX)
def test_owner_write_matrix(direction: tuple[str, str], state_name: str, incoming_name: str) -> None:
    source, target = direction
    state = state_for(state_name, source, target)
    version, value = incoming_for(incoming_name, source)
    outcome, final = owner_expected(state_name, incoming_name)
    decision = decide(FieldChange(value, Policy.OWNER, owner=source), version, state)
    check(decision, state, outcome, final)
    assert decision.record == (outcome is Outcome.APPLIED)
    assert decision.reassert is None


@pytest.mark.parametrize(("direction", "state_name", "incoming_name"), MATRIX)
def test_non_owner_write_matrix(direction: tuple[str, str], state_name: str, incoming_name: str) -> None:
    source, target = direction
    state = state_for(state_name, source, target)
    version, value = incoming_for(incoming_name, source)
    decision = decide(FieldChange(value, Policy.OWNER, owner=target), version, state)
    check(decision, state, Outcome.OWNER_REFUSED, None if state is None else state.current)
    assert not decision.write and not decision.record
    expected_reassert = {
        "missing": None,  # nothing to send back
        "clean": Reassert("W", v(100, source)),
        "local_known": Reassert("L", local(200, target)),
        "local_unknown": Reassert("L", None),
        "never": Reassert("P", local(900, target)),
    }[state_name]
    assert decision.reassert == expected_reassert


@pytest.mark.parametrize(("direction", "state_name", "incoming_name"), MATRIX)
def test_delta_matrix_ignores_versions(direction: tuple[str, str], state_name: str, incoming_name: str) -> None:
    source, target = direction
    numbers = {"W": 10, "L": 12, "P": 7}
    state = state_for(state_name, source, target)
    if state is not None:
        state = FieldState(
            numbers[state.current], state.version, None if state.written is None else 10, state.local_version
        )
    version, _ = incoming_for(incoming_name, source)
    decision = decide(FieldChange(5, Policy.DELTA), version, state)
    expected = {"missing": 5, "clean": 15, "local_known": 17, "local_unknown": 17, "never": 12}[state_name]
    check(decision, state, Outcome.DELTA_APPLIED, expected)
    assert decision.write and not decision.record


# --- last_writer_wins details -------------------------------------------------------------------------


def test_newer_write_of_the_value_already_there_records_the_version_without_writing() -> None:
    state = FieldState(current="W", version=v(100, SHOP), written="W")
    decision = decide(FieldChange("W", Policy.LAST_WRITER_WINS), v(200, SHOP), state)
    assert decision.outcome is Outcome.APPLIED
    assert not decision.write and decision.record


def test_tie_between_systems_is_decided_by_priority_both_ways() -> None:
    shop_value = FieldState(current="S", version=v(100, SHOP), written="S")
    erp_value = FieldState(current="E", version=v(100, ERP), written="E")
    assert decide(FieldChange("E", Policy.LAST_WRITER_WINS), v(100, ERP), shop_value).outcome is Outcome.APPLIED
    assert decide(FieldChange("S", Policy.LAST_WRITER_WINS), v(100, SHOP), erp_value).outcome is Outcome.LOST


def test_local_version_earlier_than_the_stored_one_is_raised_to_just_after_it() -> None:
    # The local edit replaced the value written at 100, so it happened after 100 whatever its clock says.
    state = FieldState(current="L", version=v(100, ERP), written="W", local_version=local(40, SHOP))
    between = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(60, ERP), state)
    assert between.outcome is Outcome.KEPT_LOCAL and between.estimated
    newer = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(101, ERP), state)
    assert newer.outcome is Outcome.APPLIED and newer.result == "N" and newer.conflict


def test_known_local_version_is_not_flagged_as_estimated() -> None:
    state = FieldState(current="L", version=v(100, ERP), written="W", local_version=local(200, SHOP))
    decision = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(150, ERP), state)
    assert decision.outcome is Outcome.KEPT_LOCAL
    assert decision.local_edit and not decision.estimated
    assert decision.current_version == local(200, SHOP)
    assert decision.stored_version == v(100, ERP) and decision.stored_value == "W"
    assert decision.conflict


def test_row_time_is_ignored_when_the_field_is_the_replicated_value() -> None:
    # The row changed locally at 900 (another column): this field still holds the replicated value.
    state = FieldState(current="W", version=v(100, ERP), written="W", local_version=local(900, SHOP))
    decision = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(150, ERP), state)
    assert decision.outcome is Outcome.APPLIED and decision.result == "N"
    assert not decision.local_edit and not decision.conflict


def test_never_replicated_field_gives_way_to_the_first_replicated_write() -> None:
    state = FieldState(current="P", local_version=local(900, SHOP))
    decision = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(1, ERP), state)
    assert decision.outcome is Outcome.APPLIED and decision.result == "N"
    assert decision.estimated and decision.local_edit
    empty = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(1, ERP), FieldState())
    assert empty.outcome is Outcome.APPLIED and not empty.estimated and not empty.local_edit


def test_numbers_compare_by_value_across_representations() -> None:
    # The database returns Decimal where the replicator wrote the Debezium decimal string.
    state = FieldState(current=Decimal("5.00"), version=v(100, ERP), written="5.00")
    decision = decide(FieldChange("6.00", Policy.LAST_WRITER_WINS), v(50, ERP), state)
    assert decision.outcome is Outcome.LOST and not decision.local_edit
    assert same_value(5, "5.0") and same_value(Decimal("1.10"), 1.1)
    assert not same_value("5.0", "5.00")  # two strings are text
    assert not same_value(None, 0) and same_value(None, None)
    assert not same_value(5, "five")


def test_same_position_text_orders_writes_of_one_system_at_the_same_millisecond() -> None:
    state = FieldState(current="A", version=Version(100, ERP, 1, "0/000000A0"), written="A")
    later = decide(FieldChange("B", Policy.LAST_WRITER_WINS), Version(100, ERP, 1, "0/000000B0"), state)
    earlier = decide(FieldChange("B", Policy.LAST_WRITER_WINS), Version(100, ERP, 1, "0/00000090"), state)
    assert (later.outcome, earlier.outcome) == (Outcome.APPLIED, Outcome.LOST)


# --- owner details ------------------------------------------------------------------------------------


def test_owner_write_overwrites_a_newer_non_owner_local_edit() -> None:
    state = FieldState(current="L", version=v(100, ERP), written="W", local_version=local(500, SHOP))
    decision = decide(FieldChange("N", Policy.OWNER, owner=ERP), v(200, ERP), state)
    assert decision.outcome is Outcome.APPLIED and decision.result == "N" and decision.conflict


def test_owner_local_edit_competes_with_the_owner_writes_by_time() -> None:
    # The target is the owner itself (e.g. a replay into the owner): its own edits are owner writes.
    state = FieldState(current="L", version=v(100, ERP), written="W", local_version=local(200, ERP))
    older = decide(FieldChange("N", Policy.OWNER, owner=ERP), v(150, ERP), state)
    assert older.outcome is Outcome.KEPT_LOCAL and older.result == "L" and not older.write
    newer = decide(FieldChange("N", Policy.OWNER, owner=ERP), v(250, ERP), state)
    assert newer.outcome is Outcome.APPLIED and newer.result == "N"


def test_stored_version_of_another_system_does_not_compete_with_the_owner() -> None:
    # E.g. written while the field was last_writer_wins: only the owner's own writes are compared.
    state = FieldState(current="S", version=v(500, SHOP), written="S")
    decision = decide(FieldChange("N", Policy.OWNER, owner=ERP), v(100, ERP), state)
    assert decision.outcome is Outcome.APPLIED and decision.result == "N"


def test_owner_policy_without_owner_is_a_record_error() -> None:
    with pytest.raises(SkippableRecordError, match="owner"):
        decide(FieldChange("N", Policy.OWNER), v(100, ERP), None)


# --- delta details ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "amount", "expected"),
    [
        (None, 3, 3),
        (None, "2.50", "2.50"),
        (None, "-1.5", "-1.5"),
        (10, -4, 6),
        (10, "3.00", 13),  # an integral decimal into an int column stays int
        ("10.00", "2.5", "12.50"),  # the column's scale is kept
        ("10.00", 3, "13.00"),
        ("10", "0.25", "10.25"),  # a finer amount widens the scale rather than round
        ("1.00", "-1.00", "0.00"),
        ("-0.50", "0.50", "0.00"),  # never "-0.00"
        (Decimal("4.000"), "1.5", Decimal("5.500")),
        (2.5, 0.25, 2.75),
        ("12345678901234567890123456789.01", "0.01", "12345678901234567890123456789.02"),  # > 28 digits
        (10**30, 1, 10**30 + 1),
    ],
)
def test_delta_is_exact_and_keeps_the_representation(current: Any, amount: Any, expected: Any) -> None:
    result = add_delta(current, amount)
    assert result == expected and type(result) is type(expected)
    state = None if current is None else FieldState(current=current)
    decision = decide(FieldChange(amount, Policy.DELTA), v(1, SHOP), state)
    assert decision.outcome is Outcome.DELTA_APPLIED and decision.result == expected and decision.write


def test_delta_onto_null_counts_from_zero() -> None:
    decision = decide(FieldChange(4, Policy.DELTA), v(1, SHOP), FieldState(current=None))
    assert decision.outcome is Outcome.DELTA_APPLIED and decision.result == 4


def test_zero_delta_changes_nothing() -> None:
    decision = decide(FieldChange("0.00", Policy.DELTA), v(1, SHOP), FieldState(current="3.00"))
    assert decision.outcome is Outcome.UNCHANGED and not decision.write and decision.result == "3.00"
    created = decide(FieldChange(0, Policy.DELTA), v(1, SHOP), None)
    assert created.outcome is Outcome.DELTA_APPLIED and created.write and created.result == 0


def test_delta_needs_no_version() -> None:
    decision = decide(FieldChange(2, Policy.DELTA), None, FieldState(current=1))
    assert decision.result == 3


@pytest.mark.parametrize(
    ("current", "amount", "message"),
    [
        (10, "0.5", "integer column"),
        (10, "abc", "not a decimal"),
        (10, True, "not a number"),
        ("x", 1, "not a decimal"),
        (10, "NaN", "finite"),
        (10, [1], "not a number"),
    ],
)
def test_delta_refuses_what_it_cannot_add(current: Any, amount: Any, message: str) -> None:
    with pytest.raises(SkippableRecordError, match=message):
        decide(FieldChange(amount, Policy.DELTA), v(1, SHOP), FieldState(current=current))


# --- monotonic details --------------------------------------------------------------------------------


def test_monotonic_local_edit_of_higher_rank_is_kept_even_against_newer_writes() -> None:
    state = FieldState(current="shipped", version=v(100, ERP), written="paid", local_version=None, rank=2)
    decision = decide(FieldChange("paid", Policy.MONOTONIC, rank=1), v(900, ERP), state)
    assert decision.outcome is Outcome.MONOTONIC_KEPT and decision.result == "shipped" and decision.conflict


def test_monotonic_moves_forward_over_a_local_step_back() -> None:
    state = FieldState(current="new", version=v(100, ERP), written="paid", local_version=local(500, SHOP), rank=0)
    decision = decide(FieldChange("paid", Policy.MONOTONIC, rank=1), v(50, ERP), state)
    assert decision.outcome is Outcome.APPLIED and decision.result == "paid"


def test_monotonic_unranked_target_value_is_replaced() -> None:
    state = FieldState(current="custom-state", version=v(100, ERP), written="custom-state", rank=None)
    decision = decide(FieldChange("paid", Policy.MONOTONIC, rank=1), v(50, ERP), state)
    assert decision.outcome is Outcome.APPLIED and decision.result == "paid"


def test_monotonic_value_without_rank_is_a_record_error() -> None:
    with pytest.raises(SkippableRecordError, match="no rank"):
        decide(FieldChange("weird", Policy.MONOTONIC), v(1, ERP), None)


# --- resolve: the whole op ----------------------------------------------------------------------------


def op(fields: dict[str, FieldChange], version: Version | None = None, kind: OpKind = OpKind.UPSERT) -> TargetOp:
    return TargetOp(kind, "public.res_partner", {"id": 7}, fields, version=version, mapping="customers")


def test_fields_of_one_op_are_decided_each_on_its_own() -> None:
    states = {
        "email": FieldState("e@old", v(100, ERP), "e@old"),
        "phone": FieldState("555-local", v(100, ERP), "555", local_version=local(400, SHOP)),
        "price": FieldState("9.99", None, None),
        "qty": FieldState(10),
        "state": FieldState("shipped", v(100, ERP), "shipped", rank=2),
    }
    resolution = resolve(
        op(
            {
                "email": FieldChange("e@new"),
                "phone": FieldChange("556"),
                "price": FieldChange("1.00", Policy.OWNER, owner=SHOP),
                "qty": FieldChange(-2, Policy.DELTA),
                "state": FieldChange("paid", Policy.MONOTONIC, rank=1),
            },
            v(300, ERP),
        ),
        states,
        True,
    )
    outcomes = {d.column: d.outcome for d in resolution.decisions}
    assert outcomes == {
        "email": Outcome.APPLIED,
        "phone": Outcome.KEPT_LOCAL,
        "price": Outcome.OWNER_REFUSED,
        "qty": Outcome.DELTA_APPLIED,
        "state": Outcome.MONOTONIC_KEPT,
    }
    assert resolution.writes == {"email": "e@new", "qty": 8}
    assert resolution.versions == {"email": (v(300, ERP), "e@new")}
    assert resolution.changed
    price = next(d for d in resolution.decisions if d.column == "price")
    assert price.reassert == Reassert("9.99", None)


def test_new_row_gets_every_accepted_field() -> None:
    resolution = resolve(
        op(
            {
                "email": FieldChange("e@x"),
                "qty": FieldChange("3.0", Policy.DELTA),
                "price": FieldChange("1.00", Policy.OWNER, owner=SHOP),
                "state": FieldChange("paid", Policy.MONOTONIC, rank=1),
            },
            v(5, ERP),
        ),
        {},
        False,
    )
    assert resolution.writes == {"email": "e@x", "qty": "3.0", "state": "paid"}
    assert resolution.versions == {"email": (v(5, ERP), "e@x"), "state": (v(5, ERP), "paid")}
    refused = next(d for d in resolution.decisions if d.column == "price")
    assert refused.outcome is Outcome.OWNER_REFUSED and refused.reassert is None


def test_nothing_to_persist_when_every_field_loses() -> None:
    states = {"email": FieldState("e", v(100, ERP), "e")}
    resolution = resolve(op({"email": FieldChange("old")}, v(50, ERP)), states, True)
    assert resolution.writes == {} and resolution.versions == {} and not resolution.changed
    assert [d.outcome for d in resolution.decisions] == [Outcome.LOST]


def test_a_version_alone_is_something_to_persist() -> None:
    states = {"email": FieldState("e", v(100, ERP), "e")}
    resolution = resolve(op({"email": FieldChange("e")}, v(200, ERP)), states, True)
    assert resolution.writes == {} and resolution.versions == {"email": (v(200, ERP), "e")}
    assert resolution.changed


def test_delete_has_nothing_to_decide() -> None:
    assert resolve(op({}, v(1, ERP), OpKind.DELETE), {}, True) == Resolution()


def test_soft_delete_column_is_decided_like_any_field() -> None:
    states = {"active": FieldState(True, v(100, ERP), True)}
    resolution = resolve(op({"active": FieldChange(False)}, v(200, ERP), OpKind.SOFT_DELETE), states, True)
    assert resolution.writes == {"active": False}


def test_missing_version_is_a_mapping_error_naming_the_field() -> None:
    with pytest.raises(MappingError, match=r"public\.res_partner\.email \(customers\).*version"):
        resolve(op({"email": FieldChange("x")}), {}, False)


def test_record_errors_name_the_table_column_and_mapping() -> None:
    with pytest.raises(SkippableRecordError, match=r"public\.res_partner\.qty \(customers\): .*integer"):
        resolve(op({"qty": FieldChange("0.5", Policy.DELTA)}, v(1, ERP)), {"qty": FieldState(1)}, True)


def test_unknown_policy_is_a_mapping_error() -> None:
    change = FieldChange("x", "first_writer_wins")  # type: ignore[arg-type]
    with pytest.raises(MappingError, match="first_writer_wins"):
        resolve(op({"f": change}, v(1, ERP)), {}, False)


def test_existing_row_needs_a_state_for_every_field() -> None:
    with pytest.raises(ValueError, match="no FieldState"):
        resolve(op({"email": FieldChange("x")}, v(1, ERP)), {}, True)


def test_decision_explains_itself() -> None:
    state = FieldState(current="L", version=v(100, ERP), written="W", local_version=None)
    decision = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(50, ERP), state)
    assert decision.outcome is Outcome.KEPT_LOCAL
    assert "erp@50" in decision.reason and "estimated" in decision.reason
    assert decision.policy is Policy.LAST_WRITER_WINS
    assert decision.current_version is None and decision.estimated


# --- the new-row shortcut of resolve ------------------------------------------------------------------

NEW_ROW_CHANGES = [
    FieldChange("e@x"),
    FieldChange(Decimal("1.50")),
    FieldChange(None),
    FieldChange(7, Policy.LAST_WRITER_WINS, rank=3),
    FieldChange("3.0", Policy.DELTA),
    FieldChange(2, Policy.DELTA),
    FieldChange("1.00", Policy.OWNER, owner=SHOP),
    FieldChange("1.00", Policy.OWNER, owner=ERP),
    FieldChange("paid", Policy.MONOTONIC, rank=1),
    FieldChange("x", "last_writer_wins"),  # type: ignore[arg-type]  # a policy given as its text
]


@pytest.mark.parametrize("system", [ERP, SHOP])
@pytest.mark.parametrize("kind", [OpKind.UPSERT, OpKind.INSERT, OpKind.SOFT_DELETE])
def test_new_row_resolution_is_the_field_by_field_one(system: str, kind: OpKind) -> None:
    """resolve() decides a missing row's last_writer_wins fields without the general machinery: its decisions,
    writes and versions are exactly those of deciding each field on its own."""
    fields = {f"c{i}": change for i, change in enumerate(NEW_ROW_CHANGES)}
    version = v(42, system, 3)
    resolution = resolve(op(fields, version, kind), {}, False)
    expected = [resolve_field(column, change, version, FieldState(), False) for column, change in fields.items()]
    assert resolution.decisions == expected
    assert [d.reason for d in resolution.decisions] == [d.reason for d in expected]
    assert resolution.writes == {d.column: d.result for d in expected if d.write}
    assert list(resolution.writes) == [d.column for d in expected if d.write]
    assert resolution.versions == {d.column: (d.incoming_version, d.incoming_value) for d in expected if d.record}


def test_new_row_resolution_keeps_the_general_errors() -> None:
    with pytest.raises(SkippableRecordError, match=r"public\.res_partner\.state \(customers\).*no rank"):
        resolve(op({"email": FieldChange("x"), "state": FieldChange("x", Policy.MONOTONIC)}, v(1, ERP)), {}, False)


def test_a_change_of_the_very_value_the_target_holds_follows_it_whatever_the_clocks_say() -> None:
    # The ERP edited the e-mail at 2001 ms (local edit L); the shop received L, then changed it to N. MariaDB
    # stamps the shop's commit with whole seconds: 2000 ms, "before" the ERP's edit. The shop's before image
    # holds L: its change is based on the ERP's value, so it wins on the ERP too.
    state = FieldState(current="L", version=v(1000, SHOP), written="W", local_version=local(2001, ERP))
    follows = decide(FieldChange("N", Policy.LAST_WRITER_WINS, previous="L"), v(2000, SHOP), state)
    assert follows.outcome is Outcome.APPLIED and follows.write and follows.result == "N"
    assert "changed the target's value 'L' itself" in follows.reason
    # A concurrent change (made to another value) is decided by the clocks, as before.
    concurrent = decide(FieldChange("N", Policy.LAST_WRITER_WINS, previous="W"), v(2000, SHOP), state)
    assert concurrent.outcome is Outcome.KEPT_LOCAL and not concurrent.write
    unknown = decide(FieldChange("N", Policy.LAST_WRITER_WINS), v(2000, SHOP), state)
    assert unknown.outcome is Outcome.KEPT_LOCAL

