"""The target's own edits, read back from its own change stream: which events count as edits of which columns
(`apply.own_changes`), how the applier records their versions, and how a conflict waits for them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from replicator.apply import applier as applier_module
from replicator.apply.applier import Applier, AwaitingOwnEdits
from replicator.apply.dialect.base import Progress
from replicator.apply.own_changes import OwnEdit, OwnEditError, OwnTable, own_edit
from replicator.apply.reassembly import Unit
from replicator.envelope.debezium import UNAVAILABLE_VALUE_PLACEHOLDER
from replicator.events import Op
from replicator.mapping.engine import MappingEngine
from replicator.mapping.ops import Version
from tests.unit.memory_target import MemoryTarget
from tests.unit.test_apply_pipeline import TABLE, mapping, source_row, transaction, unit_of

CUSTOMER = OwnTable("shopdb.customer", frozenset({"email", "phone"}))
VERSION = Version(1_780_000_000_000, "shop", 2, "p")


def version_of(source: Any, after: Any) -> Version:
    return Version(int(source["ts_ms"]), "shop", 2, str(source["pos"]))


def envelope(op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"op": op, "before": before, "after": after, "source": {"ts_ms": 1_780_000_000_000, "pos": "p"}}


ROW = {"id": 7, "email": "a@example.com", "phone": "1", "note": "x"}


def test_an_insert_is_an_edit_of_every_versioned_column_it_carries() -> None:
    assert own_edit(envelope("c", ROW), CUSTOMER, ("id",), version_of) == OwnEdit(
        "shopdb.customer", (7,), {"email": "a@example.com", "phone": "1"}, VERSION)


def test_an_update_is_an_edit_of_the_versioned_columns_it_changed_only() -> None:
    after = {**ROW, "phone": "2", "note": "y"}
    assert own_edit(envelope("u", after, ROW), CUSTOMER, ("id",), version_of) == OwnEdit(
        "shopdb.customer", (7,), {"phone": "2"}, VERSION)
    # Only unversioned columns changed, or a TOASTed value not carried: no edit.
    assert own_edit(envelope("u", {**ROW, "note": "y"}, ROW), CUSTOMER, ("id",), version_of) is None
    unavailable = {**ROW, "email": UNAVAILABLE_VALUE_PLACEHOLDER}
    assert own_edit(envelope("u", unavailable, ROW), CUSTOMER, ("id",), version_of) is None


TAGGED = {**envelope("c", ROW), "source": {"ts_ms": 1_780_000_000_000, "pos": "p", "origin": "skip_replication"}}


@pytest.mark.parametrize("event", [
    envelope("u", ROW, None),  # no before image: which columns changed is unknown, none is dated by it
    TAGGED,  # the replicator's own write, published with publish_own_writes
    envelope("r", ROW),  # a snapshot read is not an edit
    envelope("d", None, ROW),
    envelope("t", None),
])
def test_reads_deletes_tagged_writes_and_updates_without_a_before_image_are_no_edits(event: dict[str, Any]) -> None:
    assert own_edit(event, CUSTOMER, ("id",), version_of) is None


def test_an_edit_without_its_key_or_after_image_is_an_error_naming_the_table() -> None:
    with pytest.raises(OwnEditError, match=r"shopdb.customer: primary key column 'id'"):
        own_edit(envelope("c", {"email": "a@example.com"}), CUSTOMER, ("id",), version_of)
    with pytest.raises(OwnEditError, match=r"shopdb.customer: a 'u' event without its after image"):
        own_edit(envelope("u", None, ROW), CUSTOMER, ("id",), version_of)


# --- the applier ----------------------------------------------------------------------------------------


class RollbackTarget(MemoryTarget):
    """MemoryTarget whose rollback takes the transaction back (the batch that waits for own edits)."""

    def begin(self) -> None:
        self._saved = (copy.deepcopy(self.rows), dict(self.documents))

    def rollback(self) -> None:
        self.rows, self.documents = copy.deepcopy(self._saved[0]), dict(self._saved[1])


def erp_applier() -> tuple[RollbackTarget, Applier]:
    """The ERP side of `mapping()`: shop order lines into erp order_line; sku's local edits are read back."""
    target = RollbackTarget()
    applier = Applier(target, MappingEngine(mapping(), target="erp").ops_for, consumer="test",
                      target_system="erp", target_priority=1)
    applier.own_columns = {TABLE: frozenset({"sku"})}
    apply(applier, [unit_of(transaction(1, Op.CREATE, source_row(3)), 1)])  # row 3, sku SKU-3
    return target, applier


def apply(applier: Applier, units: list[Unit], own: list[OwnEdit] | None = None) -> None:
    applier.apply_batch(units, ["shop"] * len(units), lambda outcomes: Progress(), own_edits=own or [])


def shop_sku_change(number: int) -> Unit:
    """The shop changes row 3's sku at 1_780_000_000_000 + number * 10 ms (its commit time)."""
    return unit_of(transaction(number, Op.UPDATE, {**source_row(3), "sku": "SHOP"}, source_row(3)), number)


def erp_edit(ts_ms: int) -> OwnEdit:
    return OwnEdit(TABLE, (3,), {"sku": "ERP"}, Version(ts_ms, "erp", 1, "00000000000000000001"))


@pytest.mark.parametrize(("erp_ms", "expected"), [(1_780_000_000_100, "SHOP"), (1_780_000_000_900, "ERP")])
def test_a_conflict_waits_for_the_local_edit_then_the_later_commit_wins(erp_ms: int, expected: str) -> None:
    target, applier = erp_applier()
    target.rows[TABLE][(3,)]["sku"] = "ERP"  # a local edit the own change stream has not delivered yet
    with pytest.raises(AwaitingOwnEdits, match=r"public.order_line\[3\].sku"):
        apply(applier, [shop_sku_change(50)])  # committed at ...500
    assert target.rows[TABLE][(3,)]["sku"] == "ERP"  # rolled back
    # Delivered: the ERP edit's own version decides, the very one the shop compares the two with.
    apply(applier, [shop_sku_change(50)], [erp_edit(erp_ms)])
    assert target.rows[TABLE][(3,)]["sku"] == expected


def test_without_its_local_edit_a_conflict_is_decided_as_before_once_the_wait_ran_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    target, applier = erp_applier()
    target.rows[TABLE][(3,)]["sku"] = "ERP"
    monkeypatch.setattr(applier_module, "OWN_EDIT_WAIT_S", 0.0)
    apply(applier, [shop_sku_change(50)])  # no wait: the local value, of unknown time, is older than the change
    assert target.rows[TABLE][(3,)]["sku"] == "SHOP"


def test_no_wait_when_the_change_replaces_the_value_the_target_holds_or_agrees_with_it() -> None:
    target, applier = erp_applier()
    apply(applier, [shop_sku_change(50)])  # its previous value is the target's
    assert target.rows[TABLE][(3,)]["sku"] == "SHOP"
    target, applier = erp_applier()
    target.rows[TABLE][(3,)]["sku"] = "SHOP"  # both sides made the same edit
    apply(applier, [shop_sku_change(50)])
    assert target.rows[TABLE][(3,)]["sku"] == "SHOP"


def test_an_own_edit_is_recorded_only_for_the_value_the_row_holds_and_only_if_newer() -> None:
    target, applier = erp_applier()
    stored = target.row_versions(TABLE, ["[3]"])["[3]"]["sku"]
    apply(applier, [], [erp_edit(1_780_000_000_100)])  # the row holds SKU-3, not this edit's value
    assert target.row_versions(TABLE, ["[3]"])["[3]"]["sku"] == stored
    target.rows[TABLE][(3,)]["sku"] = "ERP"
    apply(applier, [], [erp_edit(1_700_000_000_000)])  # older than the version stored: not recorded
    assert target.row_versions(TABLE, ["[3]"])["[3]"]["sku"] == stored
    apply(applier, [], [erp_edit(1_780_000_000_100)])
    assert target.row_versions(TABLE, ["[3]"])["[3]"]["sku"] == {
        "ts": 1_780_000_000_100, "sys": "erp", "pri": 1, "pos": "00000000000000000001", "val": "ERP"}
