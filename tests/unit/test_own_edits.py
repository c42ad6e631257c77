"""The target's own edits, read back from its own change stream: which events count as edits of which columns
(`apply.own_changes`), how the applier records their versions, and how a conflict waits for them."""

from __future__ import annotations

import copy
import time
from typing import Any

import orjson
import pytest

from replicator.apply import applier as applier_module
from replicator.apply.applier import Applier, AwaitingOwnEdits
from replicator.apply.dialect.base import Progress
from replicator.apply.own_changes import OwnEdit, OwnEditError, OwnTable, own_edit
from replicator.apply.reassembly import Unit
from replicator.config import TargetConfig
from replicator.conflict.policies import Outcome
from replicator.envelope import debezium
from replicator.envelope.debezium import UNAVAILABLE_VALUE_PLACEHOLDER
from replicator.events import Op
from replicator.mapping.engine import MappingEngine
from replicator.mapping.ops import Policy, Version
from replicator.pipeline import apply_runner
from replicator.pipeline.apply_runner import ApplyRunner, OwnTopics, SourceTopics
from replicator.transport.client import KafkaClient
from tests.unit.memory_target import MemoryTarget, recording_publisher
from tests.unit.test_apply_pipeline import INFO, TABLE, Message, mapping, source_row, transaction, unit_of

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
    applier.own_tables = {TABLE: OwnTable(TABLE, frozenset({"sku"}))}
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


# --- the runner: a batch waits for own changes still to be read ---------------------------------------


class ScriptedConsumer:
    """Hands out messages step by step; a callable step runs (then nothing is handed out that time)."""

    def __init__(self, steps: list[Any]) -> None:
        self._steps = iter(steps)

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        step = next(self._steps, [])
        if callable(step):
            step()
            return []
        if not step:
            time.sleep(timeout)
        return list(step)


def numbered(messages: list[tuple[str, bytes | None, bytes | None]], offsets: dict[str, int]) -> list[Message]:
    numbered_messages = []
    for topic, key, value in messages:
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        numbered_messages.append(Message(topic, offset, key, value))
    return numbered_messages


def shop_messages(transactions: list[Any], offsets: dict[str, int]) -> list[Message]:
    return numbered([(m.topic, debezium.dumps(m.key), debezium.dumps(m.value)) for tx in transactions
                     for m in debezium.transaction_messages(tx, INFO, ts_ms=0)], offsets)


def erp_own_change(row: int, ts_ms: int) -> tuple[str, bytes | None, bytes | None]:
    """The ERP user's sku edit of order line `row`, as the ERP's capture publishes it."""
    before = {"id": row, "sku": f"SKU-{row}", "qty": 1}
    source = {"name": "erp", "connector": "postgresql", "schema": "public", "table": "order_line",
              "ts_ms": ts_ms, "lsn": 1000 + row, "snapshot": "false", "origin": None}
    value = {"op": "u", "before": before, "after": {**before, "sku": f"ERP-{row}"}, "source": source}
    return ("erp.public.order_line", orjson.dumps({"id": row}), orjson.dumps(value))


def test_the_runner_holds_a_batch_until_the_own_changes_it_needs_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shop changes of sku reach the ERP applier before the ERP's own edits of the same rows (made meanwhile,
    their events still on their way): the batch waits, in order, and is decided by the exact versions."""
    rows = range(1, 11)
    target = RollbackTarget()
    engine = MappingEngine(mapping(), target="erp")
    config = TargetConfig.model_validate({"name": "erp-writer", "kind": "postgresql", "system": "erp",
                                          "apply_from": ["shop"], "connection": {"dsn": {"env": "UNUSED"}},
                                          "batch_max_events": 7})
    monkeypatch.setattr(apply_runner, "AuditPublisher", lambda *args, **kwargs: recording_publisher()[0])
    own = OwnTopics({"erp.public.order_line": OwnTable(TABLE, frozenset({"sku"}))}, engine.version)
    runner = ApplyRunner(config, target, engine.ops_for, [SourceTopics("shop", "shop", ["shopdb.order_line"])],
                         KafkaClient("unused:9092"), target_priority=1, own=own)
    runner.applier.own_tables = {TABLE: OwnTable(TABLE, frozenset({"sku"}))}

    def erp_users_edit() -> None:
        deadline = time.monotonic() + 10
        while len(target.rows.get(TABLE, {})) < len(rows) and time.monotonic() < deadline:
            time.sleep(0.01)
        for row in rows:
            target.rows[TABLE][(row,)]["sku"] = f"ERP-{row}"

    # The shop's changes are at 1_780_000_000_000 + 10 ms * their number: 50 + row. Odd rows' ERP edits are
    # earlier than that, even rows' later.
    def erp_ms(row: int) -> int:
        return 1_780_000_000_000 + (50 + row) * 10 + (5 if row % 2 == 0 else -5)

    offsets: dict[str, int] = {}
    steps: list[Any] = [
        shop_messages([transaction(row, Op.CREATE, source_row(row)) for row in rows], offsets),
        [], [], erp_users_edit,
        shop_messages([transaction(50 + row, Op.UPDATE, {**source_row(row), "sku": "SHOP"}, source_row(row))
                       for row in rows], offsets),
        *[[] for _ in range(6)],  # a batch of them tries, waits, tries again
        numbered([erp_own_change(row, erp_ms(row)) for row in rows], offsets),
    ]
    runner.on_batch = lambda result: runner.stop() if runner.stats.units >= 2 * len(rows) else None
    runner._loop(ScriptedConsumer(steps))  # type: ignore[arg-type]

    assert {row: target.rows[TABLE][(row,)]["sku"] for row in rows} == {
        row: f"ERP-{row}" if row % 2 == 0 else "SHOP" for row in rows}
    final = target.commits[-1][0]
    assert final.offsets[("erp.public.order_line", 0)] == len(rows)
    assert final.offsets[("shop.shopdb.order_line", 0)] == 2 * len(rows)
    versions = target.row_versions(TABLE, ["[2]"])["[2]"]["sku"]
    assert (versions["sys"], versions["ts"], versions["val"]) == ("erp", erp_ms(2), "ERP-2")


# --- fields the other system owns ------------------------------------------------------------------------


def test_a_local_edit_of_a_field_the_other_system_owns_is_undone_with_the_owners_last_value() -> None:
    owned = mapping().model_copy(deep=True)
    owned.rules[0].fields["sku"] = owned.rules[0].fields["sku"].model_copy(
        update={"owner": "shop", "policy": Policy.OWNER})
    target = RollbackTarget()
    applier = Applier(target, MappingEngine(owned, target="erp").ops_for, consumer="test", target_system="erp",
                      target_priority=1)
    applier.own_tables = {TABLE: OwnTable(TABLE, frozenset(), {"sku": "shop"})}
    apply(applier, [unit_of(transaction(1, Op.CREATE, source_row(3)), 1)])  # the shop wrote SKU-3
    target.rows[TABLE][(3,)]["sku"] = "ERP"
    apply(applier, [], [erp_edit(1_780_000_000_100)])
    assert target.rows[TABLE][(3,)]["sku"] == "SKU-3"
    ((table, key, decision),) = applier.reasserted
    assert (table, key, decision.outcome, decision.current_value, decision.result) == (
        TABLE, {"id": 3}, Outcome.OWNER_REASSERTED, "ERP", "SKU-3")
    assert "a local edit (erp@1780000000100/00000000000000000001) of a field shop owns" in decision.reason
    # A value the owner never wrote (no version of the shop's) stays: nothing to restore.
    target.rows[TABLE][(3,)]["sku"] = "ERP-2"
    target.documents.clear()
    apply(applier, [], [OwnEdit(TABLE, (3,), {"sku": "ERP-2"}, Version(1_780_000_000_200, "erp", 1, "2"))])
    assert target.rows[TABLE][(3,)]["sku"] == "ERP-2" and applier.reasserted == []


def test_a_change_made_from_the_recorded_local_value_follows_it_even_with_an_older_stamp() -> None:
    """The shop received the ERP's edit and changed it within the same second: MariaDB's whole seconds date the
    shop's change before the ERP's edit, yet the change was made from it, so it wins (as it did before the
    ERP's edit had a recorded version)."""
    target, applier = erp_applier()
    target.rows[TABLE][(3,)]["sku"] = "ERP"
    apply(applier, [], [erp_edit(1_780_000_000_900)])  # recorded at ...900
    from_erp = unit_of(transaction(50, Op.UPDATE, {**source_row(3), "sku": "SHOP"}, {**source_row(3), "sku": "ERP"}),
                       50)  # at ...500, previous value ERP
    apply(applier, [from_erp])
    assert target.rows[TABLE][(3,)]["sku"] == "SHOP"
