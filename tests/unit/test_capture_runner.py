"""CaptureRunner without servers: a scripted source and a producer whose confirmations arrive when the
test says so. Acknowledgement waits for Kafka; an idle source is asked to look again soon while
confirmations are outstanding (Heartbeat.wait_s), and left to its own interval once none are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from replicator.capture.base import Heartbeat, StreamItem, TxBegin, TxCommit
from replicator.config import TopicSettings
from replicator.envelope.debezium import transaction_end
from replicator.events import Connector, Op, Position, PostgresPosition, RowChange, SourceTransaction, TableId
from replicator.pipeline.capture_runner import _CONFIRM_WAIT_S, CaptureRunner

TABLE = TableId("public", "t")


class HeldProducer:
    """Keeps every delivery callback until `confirm_all`; `poll` serves the confirmed ones."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self._held: list[Any] = []
        self._ready: list[Any] = []

    any_partition = -1

    def produce(self, topic: str, key: bytes | None, value: bytes | None, callback: Any) -> None:
        self.sent.append((topic, key, value))
        self._held.append(callback)

    def raw_produce(self, topic: str, value: bytes | None, key: bytes | None, partition: int, callback: Any) -> None:
        """confluent-kafka's argument order, as EventProducer.raw_produce."""
        self.produce(topic, key, value, callback)

    def confirm_all(self) -> None:
        self._ready += self._held
        self._held = []

    def poll(self, timeout: float = 0.0) -> None:
        ready, self._ready = self._ready, []
        for callback in ready:
            if callback is not None:  # an offsets save asks for no report
                callback(None, None)

    def flush(self, timeout: float = 60.0) -> None:
        self.confirm_all()
        self.poll()


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
    """librdkafka's queue is full at the first attempt of every change event: BufferError, as confluent-kafka
    raises it, before anything is queued."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def raw_produce(self, topic: str, value: bytes | None, key: bytes | None, partition: int, callback: Any) -> None:
        self.refused += 1
        raise BufferError("Local: Queue full")


def test_a_change_refused_by_a_full_queue_is_produced_once_by_the_waiting_path() -> None:
    producer = FullQueueProducer()
    source = ScriptedSource(producer)
    runner = CaptureRunner(source, producer, topic_settings=TopicSettings())  # type: ignore[arg-type]
    runner.run()
    assert producer.refused == 1
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


def test_a_position_is_acknowledged_once_every_message_up_to_it_is_confirmed() -> None:
    producer = HeldProducer()
    acknowledged_after: list[list[Position]] = []

    def steps() -> Iterator[None]:
        # BEGIN, 3 changes, a tombstone and END: 6 messages for the first transaction, 3 for the second.
        assert len(producer.sent) == 9
        held = producer._held
        for n in range(len(held)):
            producer._ready.append(held[n])
            yield
            acknowledged_after.append(list(source.acknowledged))
        producer._held = []

    source = StepSource(producer, steps())
    CaptureRunner(source, producer, topic_settings=TopicSettings()).run()  # type: ignore[arg-type]
    first, second = PostgresPosition(120, 100, 7), PostgresPosition(220, 200, 8)
    assert acknowledged_after == [[]] * 5 + [[first]] * 3 + [[first, second]]
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
        self.producer.produce("src.offsets", b"src", b'{"gtid": "0-1-7"}', None)


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
