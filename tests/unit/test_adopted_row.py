"""A row linked by `match_on` is taken over: its last_writer_wins values, never replicated, do not compete with
the incoming ones even when their recorded versions are newer; other policies decide as for any row."""

from __future__ import annotations

from replicator.apply.applier import _adopted_states
from replicator.conflict.resolver import FieldState, Outcome, resolve
from replicator.mapping.ops import FieldChange, OpKind, Policy, TargetOp, Version

SHOP = Version(1_000, "shop", 1, "0000000001")
LATER_ERP_EDIT = Version(2_000, "erp", 2, "")  # the ERP created the partner after the customer signed up


def _op() -> TargetOp:
    return TargetOp(
        OpKind.UPSERT, "public.res_partner", {}, version=SHOP, adopted=True,
        fields={
            "ref": FieldChange("PS-C6"),
            "name": FieldChange("Wanda Inglis"),
            "comment": FieldChange("shop note", Policy.OWNER, owner="erp"),
        },
    )


def _states() -> dict[str, FieldState]:
    """The partner as the ERP created it: every column dated by that (own, recorded) edit."""
    return {
        "ref": FieldState(current=None, version=LATER_ERP_EDIT, written=None, local_version=LATER_ERP_EDIT),
        "name": FieldState(current="W. Inglis", version=LATER_ERP_EDIT, written="W. Inglis",
                           local_version=LATER_ERP_EDIT),
        "comment": FieldState(current="phone order", version=LATER_ERP_EDIT, written="phone order",
                              local_version=LATER_ERP_EDIT),
    }


def test_the_row_s_newer_values_lose_to_the_source_s_when_it_is_taken_over() -> None:
    op = _op()
    resolution = resolve(op, _adopted_states(op, _states()), True)
    assert resolution.writes == {"ref": "PS-C6", "name": "Wanda Inglis"}
    assert resolution.versions == {"ref": (SHOP, "PS-C6"), "name": (SHOP, "Wanda Inglis")}
    outcomes = {d.column: d.outcome for d in resolution.decisions}
    assert outcomes["comment"] is Outcome.OWNER_REFUSED  # the ERP owns it: kept, as on any row


def test_a_row_already_linked_keeps_deciding_by_version() -> None:
    op = _op()
    op.adopted = False
    resolution = resolve(op, _states(), True)  # what the applier decides for a row it found by identity
    assert "ref" not in resolution.writes and "name" not in resolution.writes
    assert {d.column: d.outcome for d in resolution.decisions}["name"] is Outcome.LOST
