"""CaptureRunner without servers: a scripted source and a producer whose confirmations arrive when the
test says so. Acknowledgement waits for Kafka; an idle source is asked to look again soon while
confirmations are outstanding (Heartbeat.wait_s), and left to its own interval once none are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from replicator.capture.base import Heartbeat, StreamItem, TxBegin, TxCommit
from replicator.config import TopicSettings
from replicator.events import Connector, Op, Position, PostgresPosition, RowChange, SourceTransaction, TableId
from replicator.pipeline.capture_runner import _CONFIRM_WAIT_S, CaptureRunner

TABLE = TableId("public", "t")


class HeldProducer:
    """Keeps every delivery callback until `confirm_all`; `poll` serves the confirmed ones."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self._held: list[Any] = []
        self._ready: list[Any] = []

    def produce(self, topic: str, key: bytes | None, value: bytes | None, callback: Any) -> None:
        self.sent.append((topic, key, value))
        self._held.append(callback)

    def confirm_all(self) -> None:
        self._ready += self._held
        self._held = []

    def poll(self, timeout: float = 0.0) -> None:
        ready, self._ready = self._ready, []
        for callback in ready:
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
