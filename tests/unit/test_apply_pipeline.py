"""The applier's shortcuts for new rows, and the runner's writer thread, against an in-memory target: they
decide, write, record and publish exactly what the general path does, and the progress stored with each batch
never covers a change that is not in the target."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest

from replicator.apply import applier as applier_module
from replicator.apply.applier import Applier, UnitOutcome
from replicator.apply.dialect.base import Progress
from replicator.apply.reassembly import Event, SourcePosition, Unit
from replicator.config import TargetConfig
from replicator.envelope import debezium
from replicator.events import Connector, MariaDbPosition, Op, RowChange, SourceTransaction, TableId
from replicator.mapping.engine import MappingEngine
from replicator.mapping.spec import MappingSet
from replicator.pipeline import apply_runner
from replicator.pipeline.apply_runner import ApplyRunner, SourceTopics
from replicator.transport.client import KafkaClient
from tests.unit.memory_target import MemoryTarget, recording_publisher

TABLE = "public.order_line"


def mapping(policy: str = "last_writer_wins") -> MappingSet:
    return MappingSet.model_validate({
        "systems": {
            "shop": {"kind": "mariadb", "priority": 2, "namespace": "shopdb", "source_name": "shop"},
            "erp": {"kind": "postgresql", "priority": 1, "namespace": "public", "source_name": "erp"},
        },
        "rules": [{
            "name": "order_line", "source": {"system": "shop", "table": "order_line", "key": ["id"]},
            "target": {"system": "erp", "table": "order_line"}, "key": {"id": "id"}, "on_delete": "hard",
            "fields": {"qty": {"from": "qty", "policy": policy, **({"owner": "erp"} if policy == "owner" else {})},
                       "sku": "sku",
                       "price": {"from": "price", "cast": "decimal", "scale": 2},
                       "created_at": {"from": "created_at", "cast": "datetime", "unit": "us"},
                       "note": {"from": "note", "required": False}},
        }],
    })


def source_row(i: int, qty: int | None = None) -> dict[str, Any]:
    return {"id": i, "qty": i % 7 if qty is None else qty, "sku": f"SKU-{i}", "price": f"{i}.{i % 100:02d}",
            "created_at": 1_780_000_000_000_000 + i * 1_000_007, "note": None if i % 3 else "n"}


def transaction(number: int, op: Op, row: dict[str, Any], before: dict[str, Any] | None = None) -> SourceTransaction:
    gtid = f"0-1-{number}"
    position = MariaDbPosition(gtid, "binlog.000001", 1000 + number, 1, 0)
    change = RowChange(TableId("shopdb", "order_line"), op, {"id": row["id"]}, before, row, position)
    return SourceTransaction(gtid, 1_780_000_000_000 + number * 10, position, [change])


INFO = debezium.SourceInfo("shop", Connector.MARIADB, "shopdb")


def unit_of(tx: SourceTransaction, offset: int) -> Unit:
    (change,) = [m for m in debezium.transaction_messages(tx, INFO, ts_ms=0) if m.topic != "shop.transaction"]
    assert change.value is not None
    return Unit(tx.id, SourcePosition(0, int(tx.id.rsplit("-", 1)[1])), [
        Event(change.topic, 0, offset, change.key, orjson.loads(orjson.dumps(change.value)))])


def apply_batches(batches: list[list[Unit]], *, shortcuts: bool, mapped: bool,
                  monkeypatch: pytest.MonkeyPatch, policy: str = "last_writer_wins") -> tuple[
                      MemoryTarget, list[list[UnitOutcome]], list[tuple[str, bytes, bytes]]]:
    with monkeypatch.context() as patch:
        if not shortcuts:
            patch.setattr(applier_module, "only_last_writer_wins", lambda op: False)
            patch.setattr(applier_module, "_plain_upsert", lambda op: False)
        target = MemoryTarget()
        engine = MappingEngine(mapping(policy), target="erp")
        applier = Applier(target, engine.ops_for, consumer="test", target_system="erp", target_priority=1)
        audit, producer = recording_publisher()
        results = []
        for units in batches:
            names = ["shop"] * len(units)
            result = applier.apply_batch(units, names, lambda outcomes: Progress(),
                                         mapped=[applier.map_unit(u) for u in units] if mapped else None)
            apply_runner._publish_outcomes(audit, "erp-writer", result.outcomes, names)
            results.append(result.outcomes)
    return target, results, producer.sent


def batches_of_changes() -> list[list[Unit]]:
    """New rows; then in one batch updates of some, a repeat, a new row and its update; then older events."""
    first = [unit_of(transaction(i, Op.CREATE, source_row(i)), i) for i in range(1, 41)]
    second = [
        unit_of(transaction(50, Op.UPDATE, source_row(3, qty=30), source_row(3)), 50),
        unit_of(transaction(51, Op.CREATE, source_row(100)), 51),
        unit_of(transaction(52, Op.UPDATE, source_row(100, qty=99), source_row(100)), 52),
        first[5],  # a repeat of an applied change: unchanged
        unit_of(transaction(53, Op.UPDATE, source_row(7, qty=1), source_row(7)), 53),
    ]
    third = [unit_of(transaction(4, Op.UPDATE, source_row(3, qty=4), source_row(3)), 60)]  # older than 50
    return [first, second, third]


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("policy", ["last_writer_wins", "owner"])
def test_the_new_row_shortcuts_decide_write_record_and_publish_what_the_general_path_does(
        mapped: bool, policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # "owner" (erp owns qty; the changes are shop's) is not a shortcut's case: both runs take the general path.
    general = apply_batches(batches_of_changes(), shortcuts=False, mapped=mapped, monkeypatch=monkeypatch,
                            policy=policy)
    fast = apply_batches(batches_of_changes(), shortcuts=True, mapped=mapped, monkeypatch=monkeypatch, policy=policy)
    general_target, general_outcomes, general_audit = general
    fast_target, fast_outcomes, fast_audit = fast
    assert fast_target.rows == general_target.rows
    assert fast_target.rows[TABLE][(3,)].get("qty") == (30 if policy == "last_writer_wins" else None)
    assert fast_target.rows[TABLE][(5,)]["price"] == Decimal("5.05")
    assert {key: fast_target.row_versions(TABLE, [key]) for _, key in fast_target.documents} == \
        {key: general_target.row_versions(TABLE, [key]) for _, key in general_target.documents}
    for fast_batch, general_batch in zip(fast_outcomes, general_outcomes, strict=True):
        assert [o.decisions for o in fast_batch] == [o.decisions for o in general_batch]
    assert fast_audit == general_audit


def test_rows_created_by_one_change_store_the_compact_document(monkeypatch: pytest.MonkeyPatch) -> None:
    target, _, _ = apply_batches(batches_of_changes()[:1], shortcuts=True, mapped=True, monkeypatch=monkeypatch)
    stored = orjson.loads(target.documents[(TABLE, "[2]")])
    assert stored == {"@": [1_780_000_000_020, "shop", 2, "0000000000-0000000001-00000000000000000002:0000000000"],
                      "qty": "2", "sku": "SKU-2", "price": "2.02", "created_at": "2026-05-28T20:26:42.000014",
                      "note": None}


def test_the_compact_form_is_not_used_by_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    target, _, _ = apply_batches(batches_of_changes()[:1], shortcuts=False, mapped=False, monkeypatch=monkeypatch)
    # The general path stores a compact document too when every field shares one version (versions.document).
    assert "@" in orjson.loads(target.documents[(TABLE, "[2]")])


# --- the runner's writer thread ----------------------------------------------------------------------


class Message:
    def __init__(self, topic: str, offset: int, key: bytes | None, value: bytes | None) -> None:
        self._topic, self._offset, self._key, self._value = topic, offset, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def backlog(count: int) -> list[Message]:
    offsets: dict[str, int] = {}
    messages = []
    for i in range(1, count + 1):
        for m in debezium.transaction_messages(transaction(i, Op.CREATE, source_row(i)), INFO, ts_ms=0):
            offset = offsets.get(m.topic, 0)
            offsets[m.topic] = offset + 1
            messages.append(Message(m.topic, offset, debezium.dumps(m.key), debezium.dumps(m.value)))
    return messages


class Consumer:
    """Hands out the backlog in chunks of random sizes; nothing more once it is all read."""

    def __init__(self, messages: list[Message], seed: int) -> None:
        self._chunks: Iterator[list[Message]] = self._split(messages, random.Random(seed))

    @staticmethod
    def _split(messages: list[Message], rng: random.Random) -> Iterator[list[Message]]:
        start = 0
        while start < len(messages):
            size = rng.randint(1, 17)
            yield messages[start : start + size]
            start += size

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        return next(self._chunks, [])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_written_by_the_writer_thread_store_progress_that_covers_only_what_they_hold(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    count = 120
    target = MemoryTarget()
    target.commit_s = 0.002  # the loop's thread reads ahead meanwhile
    engine = MappingEngine(mapping(), target="erp")
    config = TargetConfig.model_validate({"name": "erp-writer", "kind": "postgresql", "system": "erp",
                                          "apply_from": ["shop"], "connection": {"dsn": {"env": "UNUSED"}},
                                          "batch_max_events": 7})
    monkeypatch.setattr(apply_runner, "AuditPublisher", lambda *args, **kwargs: recording_publisher()[0])
    runner = ApplyRunner(config, target, engine.ops_for, [SourceTopics("shop", "shop", ["shopdb.order_line"])],
                         KafkaClient("unused:9092"), target_priority=1)

    def on_batch(result: Any) -> None:
        if runner.stats.units >= count:
            runner.stop()

    runner.on_batch = on_batch
    runner._loop(Consumer(backlog(count), seed))  # type: ignore[arg-type]

    assert sorted(target.rows[TABLE]) == [(i,) for i in range(1, count + 1)]
    assert runner.stats.batches == len(target.commits) > 5
    events_topic, markers_topic = "shop.shopdb.order_line", "shop.transaction"
    for progress, rows in target.commits:
        held = {key[0] for key in rows.get(TABLE, {})}
        # Row i's change is offset i - 1 of the table topic, its END marker offset 2i - 1 of the markers'.
        resume = progress.offsets[(events_topic, 0)]
        assert all(i in held for i in range(1, resume + 1)), (resume, sorted(held))
        resume_markers = progress.offsets[(markers_topic, 0)]
        assert all(i in held for i in range(1, resume_markers // 2 + 1)), (resume_markers, sorted(held))
        assert progress.positions[("shop", 0)] == max(held)
    final = target.commits[-1][0]
    assert final.offsets[(events_topic, 0)] == count and final.offsets[(markers_topic, 0)] == 2 * count
