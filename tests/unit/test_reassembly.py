"""Reassembling source transactions from table topics and the transaction topic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply.reassembly import Event, SourcePosition, TransactionAssembler, position_of
from replicator.errors import SkippableRecordError

TX_TOPIC = "shop.transaction"


def _event(topic: str, partition: int, offset: int, tx: str | None, order: int, key: int) -> Event:
    transaction = None if tx is None else {"id": tx, "total_order": order, "data_collection_order": order}
    return Event(topic, partition, offset, {"id": key}, {"op": "c", "after": {"id": key}, "source": {},
                                                          "transaction": transaction})


def _end(tx: str, count: int) -> dict[str, object]:
    return {"status": "END", "id": tx, "event_count": count, "data_collections": [], "ts_ms": 0}


def test_positions_come_from_transaction_ids() -> None:
    assert position_of("123:45678") == SourcePosition(0, 45678)
    assert position_of("0-1-42") == SourcePosition(0, 42)
    assert position_of("7-3-9") == SourcePosition(7, 9)
    with pytest.raises(SkippableRecordError, match="neither"):
        position_of("snapshot:1")


def test_a_transaction_is_released_only_when_all_its_events_arrived_and_in_end_order() -> None:
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.add_marker(0, 0, {"status": "BEGIN", "id": "0-1-1"})
    assembler.add_marker(0, 1, _end("0-1-1", 2))
    assembler.add_marker(0, 3, _end("0-1-2", 1))
    assembler.add_event(_event("t.a", 0, 0, "0-1-2", 1, 9))
    assembler.add_event(_event("t.a", 0, 1, "0-1-1", 1, 1))
    assert assembler.ready() == []  # 0-1-1 still misses an event; 0-1-2 waits behind it
    assembler.add_event(_event("t.b", 1, 0, "0-1-1", 2, 2))
    units = assembler.ready()
    assert [(u.transaction_id, [e.key["id"] for e in u.events]) for u in units] == [("0-1-1", [1, 2]), ("0-1-2", [9])]


def test_repeats_are_dropped_and_applied_positions_are_skipped() -> None:
    assembler = TransactionAssembler(TX_TOPIC, applied={0: 5})
    assembler.add_marker(0, 0, _end("0-1-5", 1))  # already applied before a restart
    assembler.add_event(_event("t.a", 0, 0, "0-1-5", 1, 1))
    assembler.add_marker(0, 1, _end("0-1-6", 1))
    assembler.add_event(_event("t.a", 0, 1, "0-1-6", 1, 2))
    assembler.add_event(_event("t.a", 0, 2, "0-1-6", 1, 2))  # re-sent copy
    assembler.add_marker(0, 2, _end("0-1-6", 1))  # re-sent END
    units = assembler.ready()
    assert [u.transaction_id for u in units] == ["0-1-6"]
    assert len(units[0].events) == 1


def test_snapshot_reads_are_released_at_once() -> None:
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.add_event(_event("t.a", 0, 0, None, 0, 1))
    (unit,) = assembler.ready()
    assert unit.transaction_id is None and unit.position is None and unit.events[0].key == {"id": 1}


def test_resume_offsets_point_at_the_oldest_unapplied_record() -> None:
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.add_marker(0, 0, _end("1:100", 1))
    assembler.add_event(_event("t.a", 0, 7, "1:100", 1, 1))
    assembler.add_marker(0, 1, _end("2:200", 1))
    assembler.add_event(_event("t.a", 0, 8, "2:200", 1, 2))
    assembler.add_tombstone("t.a", 0, 9)
    first, second = assembler.ready()
    assembler.mark_applied(first)
    assert assembler.resume_offsets() == {(TX_TOPIC, 0): 1, ("t.a", 0): 8}
    assembler.mark_applied(second)
    assert assembler.resume_offsets() == {(TX_TOPIC, 0): 2, ("t.a", 0): 10}
    assert assembler.applied == {0: 200}


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=6),
    seed=st.randoms(use_true_random=False),
    duplicate=st.booleans(),
)
def test_any_arrival_order_and_duplication_releases_each_transaction_once_in_commit_order(
    sizes: list[int], seed: object, duplicate: bool
) -> None:
    import random

    rng = seed if isinstance(seed, random.Random) else random.Random(0)
    transactions = [(f"0-1-{n + 1}", size) for n, size in enumerate(sizes)]
    # Events keep their order within a partition (one partition per key here): shuffle across partitions.
    per_partition: dict[int, list[Event]] = {}
    offsets: dict[int, int] = {}
    for tx, size in transactions:
        for order in range(1, size + 1):
            partition = rng.randrange(3)
            offset = offsets.get(partition, 0)
            offsets[partition] = offset + 1
            per_partition.setdefault(partition, []).append(_event("t.a", partition, offset, tx, order, order))
    streams: list[list[tuple[str, object]]] = [[("event", e) for e in events] for events in per_partition.values()]
    streams.append([("marker", (i, _end(tx, size))) for i, (tx, size) in enumerate(transactions)])
    if duplicate:
        streams = [s + s[len(s) // 2:] for s in streams]
    assembler = TransactionAssembler(TX_TOPIC)
    released: list[str] = []
    while any(streams):
        stream = rng.choice([s for s in streams if s])
        kind, item = stream.pop(0)
        if kind == "event":
            assert isinstance(item, Event)
            assembler.add_event(item)
        else:
            offset, value = item  # type: ignore[misc]
            assembler.add_marker(0, offset, value)
        for unit in assembler.ready():
            assert unit.transaction_id is not None
            assert [e.value["transaction"]["total_order"] for e in unit.events] == list(
                range(1, dict(transactions)[unit.transaction_id] + 1))
            released.append(unit.transaction_id)
            assembler.mark_applied(unit)
    assert released == [tx for tx, _ in transactions]


def test_after_lost_end_markers_are_skipped_their_transactions_events_are_dropped_and_unpin_resume_offsets() -> None:
    # Retention deleted the transaction topic's offsets 0-3 (the ENDs of 0-1-1 and 0-1-2, and of 7-3-1 in a
    # second domain) while the table topic still holds their events.
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.add_event(_event("t.a", 0, 0, "0-1-1", 1, 1))
    assembler.add_event(_event("t.a", 0, 1, "0-1-2", 1, 2))
    assembler.add_event(_event("t.a", 0, 2, "7-3-1", 1, 3))
    assembler.skip_to((TX_TOPIC, 0), 4)
    assembler.add_marker(0, 4, _end("0-1-3", 1))
    assembler.add_event(_event("t.a", 0, 3, "0-1-3", 1, 4))
    (unit,) = assembler.ready()
    assert unit.transaction_id == "0-1-3"
    assert assembler.resume_offsets()[("t.a", 0)] == 0  # pinned by the orphans until something is applied
    assembler.mark_applied(unit)
    assert assembler.dropped_orphans == [("0-1-1", 1), ("0-1-2", 1)]
    # Domain 7's orphan goes once a transaction of that domain is applied; its copies read later are dropped.
    assert assembler.resume_offsets()[("t.a", 0)] == 2
    assembler.add_marker(0, 5, _end("7-3-2", 1))
    assembler.add_event(_event("t.a", 0, 4, "7-3-2", 1, 5))
    (later,) = assembler.ready()
    assembler.mark_applied(later)
    assert assembler.dropped_orphans[2:] == [("7-3-1", 1)]
    assert assembler.resume_offsets() == {(TX_TOPIC, 0): 6, ("t.a", 0): 5}
    assembler.add_event(_event("t.a", 0, 5, "0-1-2", 1, 2))  # a copy of an orphan's event, re-sent
    assert assembler.ready() == [] and assembler.resume_offsets()[("t.a", 0)] == 6


def test_without_a_skip_events_waiting_for_their_end_are_kept() -> None:
    # Events often arrive before their END: only a skip of the transaction topic can make orphans.
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.add_event(_event("t.a", 0, 0, "0-1-2", 1, 2))
    assembler.add_marker(0, 0, _end("0-1-1", 1))
    assembler.add_event(_event("t.a", 0, 1, "0-1-1", 1, 1))
    (first,) = assembler.ready()
    assembler.mark_applied(first)
    assert assembler.dropped_orphans == []
    assembler.add_marker(0, 1, _end("0-1-2", 1))
    assert [u.transaction_id for u in assembler.ready()] == ["0-1-2"]


def test_after_lost_events_are_skipped_transactions_missing_them_can_be_dropped_to_release_the_later_ones() -> None:
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.add_marker(0, 0, _end("0-1-1", 2))
    assembler.add_marker(0, 1, _end("0-1-2", 1))
    assembler.add_marker(0, 2, _end("0-1-3", 1))
    assert assembler.blocked_head() is None  # no skip: waiting for events is normal
    # Retention deleted the table topic's offsets 0-1 (0-1-1's first event and 0-1-2's only one).
    assembler.skip_to(("t.a", 0), 2)
    assembler.add_event(_event("t.a", 0, 2, "0-1-1", 2, 2))
    assembler.add_event(_event("t.a", 0, 3, "0-1-3", 1, 3))
    assert assembler.ready() == []
    assert assembler.blocked_head() == "0-1-1"
    assert assembler.drop_incomplete() == [("0-1-1", 1, 2), ("0-1-2", 0, 1)]
    assert assembler.blocked_head() is None
    (unit,) = assembler.ready()
    assert unit.transaction_id == "0-1-3"
    assembler.mark_applied(unit)
    assert assembler.resume_offsets() == {(TX_TOPIC, 0): 3, ("t.a", 0): 4}


def test_dropping_incomplete_transactions_keeps_the_complete_ones_in_order() -> None:
    assembler = TransactionAssembler(TX_TOPIC)
    assembler.skip_to(("t.a", 0), 5)
    assembler.add_marker(0, 0, _end("1:10", 1))
    assembler.add_marker(0, 1, _end("2:20", 1))
    assembler.add_marker(0, 2, _end("3:30", 2))
    assembler.add_event(_event("t.a", 0, 5, "2:20", 1, 2))
    assembler.add_event(_event("t.a", 0, 6, "3:30", 1, 3))
    assembler.add_event(_event("t.a", 0, 7, "3:30", 2, 4))
    assert assembler.blocked_head() == "1:10"
    assert assembler.drop_incomplete() == [("1:10", 0, 1)]
    assert [u.transaction_id for u in assembler.ready()] == ["2:20", "3:30"]
