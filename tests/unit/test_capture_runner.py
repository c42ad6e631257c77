"""CaptureRunner without servers: a scripted source and a producer whose Kafka confirms when the test
says so. A position is acknowledged only once Kafka confirmed every message produced before it (and a
transaction's position only once its last message was produced); an idle source is asked to look again
soon while confirmations are outstanding (Heartbeat.wait_s), and left to its own interval once none are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pymysql
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.base import Heartbeat, OneChangeTx, SnapshotDone, StreamItem, TxBegin, TxCommit
from replicator.capture.checkpoint import AckTracker
from replicator.config import TopicSettings
from replicator.envelope.debezium import transaction_end
from replicator.errors import RetriableError
from replicator.events import Connector, Op, Position, PostgresPosition, RowChange, SourceTransaction, TableId
from replicator.pipeline import capture_runner
from replicator.pipeline.capture_runner import _CONFIRM_WAIT_S, CaptureRunner

TABLE = TableId("public", "t")


class HeldProducer:
    """EventProducer's interface over a list. Kafka has confirmed the first `confirmed` messages; the
    test moves that mark (`confirm_all`). `confirm`, like the real flush with a timeout, answers whether
    everything produced so far is confirmed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.confirmed = 0
        self.confirm_calls = 0
        self.closed = False

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.sent.append((topic, key, value))

    def raw_produce(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        """confluent-kafka's argument order, as EventProducer.raw_produce."""
        self.produce(topic, key, value)

    def confirm_all(self) -> None:
        self.confirmed = len(self.sent)

    @property
    def unconfirmed(self) -> int:
        return len(self.sent) - self.confirmed

    def confirm(self, timeout: float) -> bool:
        self.confirm_calls += 1
        return self.unconfirmed == 0

    def poll(self, timeout: float = 0.0) -> None: ...

    def flush(self, timeout: float = 60.0) -> None:
        self.confirm_all()

    def close(self) -> None:
        self.closed = True


class ScriptedSource:
    name = "src"
    connector = Connector.POSTGRESQL
    database = "db"

    def __init__(self, producer: HeldProducer) -> None:
        self.producer = producer
        self.acknowledged: list[Position] = []
        self.heartbeats: list[Heartbeat] = []

    def _heartbeat(self) -> Heartbeat:
        heartbeat = Heartbeat(None)
        self.heartbeats.append(heartbeat)
        return heartbeat

    def stream(self) -> Iterator[StreamItem]:
        tx = SourceTransaction("7:100", 1_700_000_000_000, PostgresPosition(100, 100, 7))
        yield TxBegin(tx)
        yield RowChange(TABLE, Op.CREATE, {"id": 1}, None, {"id": 1}, PostgresPosition(90, 100, 7))
        yield TxCommit(tx, PostgresPosition(120, 100, 7))
        yield self._heartbeat()  # Kafka has confirmed nothing yet
        self.producer.confirm_all()
        yield self._heartbeat()  # now it has

    def acknowledge(self, position: Any) -> None:
        self.acknowledged.append(position)

    def open(self) -> None: ...

    def close(self) -> None: ...

    def stop(self) -> None: ...

    def tables(self) -> list[TableId]:
        return [TABLE]


def test_an_idle_source_is_asked_to_look_again_soon_while_confirmations_are_outstanding() -> None:
    producer = HeldProducer()
    source = ScriptedSource(producer)
    runner = CaptureRunner(source, producer, topic_settings=TopicSettings())  # type: ignore[arg-type]
    stats = runner.run()
    first, second = source.heartbeats
    assert first.wait_s == _CONFIRM_WAIT_S  # three messages in flight
    assert second.wait_s is None  # all confirmed: the source's own interval
    # Acknowledged once, at the second heartbeat, with the commit's end position.
    assert source.acknowledged == [PostgresPosition(120, 100, 7)]
    assert stats.acknowledged == PostgresPosition(120, 100, 7)
    assert [topic for topic, _, _ in producer.sent] == ["src.transaction", "src.public.t", "src.transaction"]


class FullQueueProducer(HeldProducer):
    """librdkafka's queue is full at the first attempt of every message the hot loop sends: BufferError, as
    confluent-kafka raises it, before anything is queued."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def raw_produce(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        self.refused += 1
        raise BufferError("Local: Queue full")


def test_a_change_refused_by_a_full_queue_is_produced_once_by_the_waiting_path() -> None:
    producer = FullQueueProducer()
    source = ScriptedSource(producer)
    runner = CaptureRunner(source, producer, topic_settings=TopicSettings())  # type: ignore[arg-type]
    runner.run()
    assert producer.refused == 3  # BEGIN, the change and END: each sent once, by the waiting path
    assert [topic for topic, _, _ in producer.sent] == ["src.transaction", "src.public.t", "src.transaction"]
    assert source.acknowledged == [PostgresPosition(120, 100, 7)]


# --- a transaction's message count and END marker (the runner counts messages itself and seals the
# count with the transaction; one table's END marker has its own rendering) -------------------------

OTHER = TableId("public", "u")


class StepSource(ScriptedSource):
    """Two transactions: the first touches two tables and deletes a row (a tombstone follows), the
    second one table. Heartbeats let the test confirm messages one at a time in between."""

    def __init__(self, producer: HeldProducer, steps: Iterator[None]) -> None:
        super().__init__(producer)
        self.steps = steps

    def stream(self) -> Iterator[StreamItem]:
        first = SourceTransaction("7:100", 1_700_000_000_000, PostgresPosition(100, 100, 7))
        yield TxBegin(first)
        yield RowChange(TABLE, Op.CREATE, {"id": 1}, None, {"id": 1}, PostgresPosition(90, 100, 7))
        yield RowChange(OTHER, Op.DELETE, {"id": 2}, {"id": 2}, None, PostgresPosition(95, 100, 7))
        yield RowChange(TABLE, Op.UPDATE, {"id": 1}, {"id": 1}, {"id": 1}, PostgresPosition(97, 100, 7))
        yield TxCommit(first, PostgresPosition(120, 100, 7))
        second = SourceTransaction("8:200", 1_700_000_000_001, PostgresPosition(200, 200, 8))
        yield TxBegin(second)
        yield RowChange(TABLE, Op.CREATE, {"id": 3}, None, {"id": 3}, PostgresPosition(190, 200, 8))
        yield TxCommit(second, PostgresPosition(220, 200, 8))
        for _ in self.steps:
            yield self._heartbeat()


def test_a_position_is_acknowledged_only_once_kafka_confirmed_every_message_produced_before_it() -> None:
    producer = HeldProducer()
    acknowledged_after: list[list[Position]] = []

    def steps() -> Iterator[None]:
        # BEGIN, 3 changes, a tombstone and END: 6 messages for the first transaction, 3 for the second.
        assert len(producer.sent) == 9
        for confirmed in (0, 6, 8, 9):
            producer.confirmed = confirmed
            yield
            acknowledged_after.append(list(source.acknowledged))

    source = StepSource(producer, steps())
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    # Nothing while any message is outstanding, even with the first transaction's all in; then the newest
    # sealed position, which stands for the first transaction's too.
    assert acknowledged_after == [[], [], [], [PostgresPosition(220, 200, 8)]]
    assert [value for _, _, value in producer.sent].count(None) == 1  # the tombstone


def test_end_markers_count_each_table_as_transaction_end_does() -> None:
    producer = HeldProducer()
    source = StepSource(producer, iter(()))
    runner = CaptureRunner(source, producer, topic_settings=TopicSettings())  # type: ignore[arg-type]
    runner.run()
    ends = [orjson.loads(value) for topic, _, value in producer.sent if topic == "src.transaction" and value
            and b'"END"' in value]
    first = SourceTransaction("7:100", 1_700_000_000_000, PostgresPosition(100, 100, 7))
    second = SourceTransaction("8:200", 1_700_000_000_001, PostgresPosition(200, 200, 8))
    assert ends == [
        transaction_end(first, runner.info, [(TABLE, 2), (OTHER, 1)])[1],
        transaction_end(second, runner.info, [(TABLE, 1)])[1],
    ]


# --- what the source saves on close reaches Kafka before the runner returns -----------------------------


class SavingOnCloseSource(ScriptedSource):
    """A source that, like the MariaDB one, saves its last acknowledged position on close without waiting."""

    def close(self) -> None:
        self.producer.produce("src.offsets", b"src", b'{"gtid": "0-1-7"}')


class FlushRecordingProducer(HeldProducer):
    def __init__(self) -> None:
        super().__init__()
        self._flushed = 0

    def flush(self, timeout: float = 60.0) -> None:
        super().flush(timeout)
        self._flushed = len(self.sent)


def test_a_save_the_source_makes_on_close_is_flushed_before_the_runner_returns() -> None:
    producer = FlushRecordingProducer()
    source = SavingOnCloseSource(producer)
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    assert producer.sent[-1][0] == "src.offsets"
    # Everything produced, the save on close included, was flushed: none is left for a producer being dropped.
    assert producer._flushed == len(producer.sent)


# --- while the source streams without pause -------------------------------------------------------------


class BusySource(ScriptedSource):
    """Twenty two-row transactions back to back, with no heartbeat in between. The producer records, at each
    acknowledgement, how many messages had been sent when Kafka last confirmed."""

    def stream(self) -> Iterator[StreamItem]:
        for n in range(20):
            lsn = 100 * (n + 1)
            tx = SourceTransaction(f"{n}:{lsn}", 1_700_000_000_000 + n, PostgresPosition(lsn, lsn, n))
            yield TxBegin(tx)
            for row in (2 * n, 2 * n + 1):
                yield RowChange(TABLE, Op.CREATE, {"id": row}, None, {"id": row}, PostgresPosition(lsn - 1, lsn, n))
            yield TxCommit(tx, PostgresPosition(lsn + 10, lsn, n))


class FlushingProducer(HeldProducer):
    """A broker that confirms whatever a flush waits for, and nothing on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.confirmed_at: list[int] = []

    def confirm(self, timeout: float) -> bool:
        self.confirm_all()
        self.confirmed_at.append(self.confirmed)
        return super().confirm(timeout)


def test_a_busy_source_is_acknowledged_every_confirm_interval_and_only_for_sealed_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Look at every boundary, and wait for Kafka at every look: each commit is acknowledged as it happens.
    monkeypatch.setattr(capture_runner, "_POLL_INTERVAL_S", 0.0)
    monkeypatch.setattr(capture_runner, "_CONFIRM_INTERVAL_S", 0.0)
    producer = FlushingProducer()
    acknowledged: list[tuple[Position, int]] = []

    class Source(BusySource):
        def acknowledge(self, position: Any) -> None:
            acknowledged.append((position, producer.confirmed_at[-1]))

    CaptureRunner(Source(producer), producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    assert [p for p, _ in acknowledged] == [PostgresPosition(100 * (n + 1) + 10, 100 * (n + 1), n) for n in range(20)]
    for n, (_, confirmed) in enumerate(acknowledged):
        # BEGIN, two rows, END per transaction: all of transaction n's were confirmed before its acknowledgement.
        assert confirmed >= 4 * (n + 1)


def test_a_busy_source_is_not_acknowledged_before_the_confirm_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_runner, "_POLL_INTERVAL_S", 0.0)
    monkeypatch.setattr(capture_runner, "_CONFIRM_INTERVAL_S", 3600.0)
    producer = FlushingProducer()
    source = BusySource(producer)
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    # Kafka never caught up on its own, so no flush stalled the stream: only the final one acknowledged.
    assert producer.confirmed_at == []
    assert source.acknowledged == [PostgresPosition(2010, 2000, 19)]


class SnapshotThenStreamSource(ScriptedSource):
    def stream(self) -> Iterator[StreamItem]:
        yield SnapshotDone()
        tx = SourceTransaction("7:100", 1_700_000_000_000, PostgresPosition(100, 100, 7))
        yield TxBegin(tx)
        yield RowChange(TABLE, Op.CREATE, {"id": 1}, None, {"id": 1}, PostgresPosition(90, 100, 7))
        yield TxCommit(tx, PostgresPosition(120, 100, 7))
        self.producer.confirm_all()
        yield self._heartbeat()


def test_a_completed_snapshot_is_acknowledged_on_its_own_before_the_position_after_it() -> None:
    producer = HeldProducer()
    source = SnapshotThenStreamSource(producer)
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    assert source.acknowledged == [SnapshotDone(), PostgresPosition(120, 100, 7)]


# --- AckTracker ------------------------------------------------------------------------------------------


def test_the_tracker_hands_out_the_newest_sealed_position_and_every_marker_once() -> None:
    tracker: AckTracker[str] = AckTracker()
    assert tracker.take_confirmed() == (None, []) and tracker.pending == 0
    tracker.seal("a")
    tracker.seal("snapshot-1", marker=True)
    tracker.seal("b")
    tracker.seal("snapshot-2", marker=True)
    assert tracker.pending == 4
    assert tracker.take_confirmed() == ("snapshot-2", ["snapshot-1", "snapshot-2"])
    assert tracker.pending == 0
    assert tracker.take_confirmed() == (None, [])
    tracker.seal("c")
    assert tracker.take_confirmed() == ("c", [])


class UnrelatedTransactionsSource(BusySource):
    """Between its transactions, a MariaDB-like source passes over many of tables it does not capture, each
    offered as a Heartbeat that is not idle."""

    def stream(self) -> Iterator[StreamItem]:
        for item in super().stream():
            yield item
            if isinstance(item, TxCommit):
                for _ in range(50):
                    yield Heartbeat(None, idle=False)


def test_a_busy_source_passing_over_other_tables_is_not_stalled_by_a_wait_for_kafka_at_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture_runner, "_CONFIRM_INTERVAL_S", 3600.0)
    producer = FlushingProducer()
    source = UnrelatedTransactionsSource(producer)
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    assert producer.confirmed_at == []  # a thousand heartbeats, no flush
    assert source.acknowledged == [PostgresPosition(2010, 2000, 19)]


# --- a transaction of one change handed over as one item -------------------------------------------------


class ItemsSource(ScriptedSource):
    def __init__(self, producer: HeldProducer, items: list[StreamItem]) -> None:
        super().__init__(producer)
        self.items = items

    def stream(self) -> Iterator[StreamItem]:
        yield from self.items
        self.producer.confirm_all()
        yield self._heartbeat()


_OPS = [Op.CREATE, Op.UPDATE, Op.DELETE, Op.TRUNCATE]


@st.composite
def _transactions(draw: st.DrawFn) -> list[tuple[SourceTransaction, list[RowChange], PostgresPosition]]:
    """Streamed transactions of one to three changes of two tables, some with the loop tag."""
    out = []
    for n in range(draw(st.integers(1, 12))):
        lsn = 100 * (n + 1)
        origin = draw(st.sampled_from([None, None, "replicator_erp"]))
        tx = SourceTransaction(f"{n}:{lsn}", 1_700_000_000_000 + draw(st.integers(0, 2)), PostgresPosition(lsn, lsn, n),
                               origin=origin)
        changes = []
        for r in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(_OPS))
            row = None if op is Op.TRUNCATE else {"id": n * 10 + r, "v": draw(st.text(max_size=3))}
            key = {} if row is None else {"id": row["id"]}
            before = row if op in (Op.UPDATE, Op.DELETE) else None
            after = row if op in (Op.CREATE, Op.UPDATE) else None
            table = draw(st.sampled_from([TABLE, OTHER]))
            changes.append(RowChange(table, op, key, before, after, PostgresPosition(lsn - 5 + r, lsn, n)))
        out.append((tx, changes, PostgresPosition(lsn + 10, lsn, n)))
    return out


def _run_items(items: list[StreamItem], tombstones: bool) -> tuple[list[tuple[str, bytes | None, bytes | None]], Any]:
    producer = HeldProducer()
    source = ItemsSource(producer, items)
    runner = CaptureRunner(source, producer, topic_settings=TopicSettings(tombstones=tombstones))  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(capture_runner.time, "time", lambda: 1_700_000_000.25)
        stats = runner.run()
    return producer.sent, (source.acknowledged, stats)


@given(_transactions(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_a_one_change_transaction_as_one_item_gives_the_same_messages_and_acknowledgements(
    transactions: list[tuple[SourceTransaction, list[RowChange], PostgresPosition]], tombstones: bool
) -> None:
    split: list[StreamItem] = []
    fused: list[StreamItem] = []
    for tx, changes, position in transactions:
        three: list[StreamItem] = [TxBegin(tx), *changes, TxCommit(tx, position)]
        split += three
        fused += [OneChangeTx(tx, changes[0], position)] if len(changes) == 1 else three
    assert _run_items(fused, tombstones) == _run_items(split, tombstones)


# --- the source's database going away -------------------------------------------------------------------


class LostConnectionSource(ScriptedSource):
    def stream(self) -> Iterator[StreamItem]:
        yield self._heartbeat()
        raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")


def test_a_connection_lost_anywhere_in_the_source_is_a_retriable_error_naming_the_source() -> None:
    producer = HeldProducer()
    with pytest.raises(RetriableError, match=r"source src: OperationalError: .*Lost connection"):
        CaptureRunner(LostConnectionSource(producer), producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    assert producer.closed  # the runner is done with it: the restart builds a new one


def test_a_runner_stopped_cleanly_closes_its_producer_after_confirming_everything() -> None:
    producer = HeldProducer()
    source = ScriptedSource(producer)
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    assert producer.closed and producer.unconfirmed == 0
