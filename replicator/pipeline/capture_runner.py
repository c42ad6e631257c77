"""Runs one capture: source -> Debezium envelopes -> Kafka -> acknowledgement to the source.

The source position of a transaction is acknowledged only once Kafka confirmed every message of it
and of every transaction before it (AckTracker). Transactions carrying the replicator's loop tag are
not published (unless configured), but their positions still flow through the tracker in order.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from replicator.capture.base import CaptureSource, Heartbeat, SnapshotDone, TxBegin, TxCommit
from replicator.capture.checkpoint import AckTracker
from replicator.config import PostgresSourceConfig, ReplicatorConfig, TopicSettings
from replicator.envelope.debezium import (
    EventOrder,
    SourceInfo,
    change_value,
    dumps,
    transaction_begin,
    transaction_end,
)
from replicator.events import Op, Position, PostgresPosition, RowChange, SourceTransaction, TableId
from replicator.transport.kafka import EventProducer, OffsetStore, TopicSpec, ensure_topics
from replicator.transport.topics import offsets_topic, table_topic, transaction_topic

log = logging.getLogger(__name__)


@dataclass
class CaptureStats:
    transactions: int = 0
    events: int = 0
    skipped_own_transactions: int = 0
    acknowledged: Position | SnapshotDone | None = None


def capture_topics(source_name: str, tables: list[TableId], settings: TopicSettings) -> list[TopicSpec]:
    """The topics a capture writes: one per table, the transaction topic and the compacted offsets topic."""
    retention = (("retention.ms", str(settings.retention_ms)),)
    specs = [
        TopicSpec(
            table_topic(source_name, t.namespace, t.table), settings.partitions, settings.replication_factor, retention
        )
        for t in tables
    ]
    specs.append(TopicSpec(transaction_topic(source_name), 1, settings.replication_factor, retention))
    specs.append(
        TopicSpec(offsets_topic(source_name), 1, settings.replication_factor, (("cleanup.policy", "compact"),))
    )
    return specs


class CaptureRunner:
    def __init__(
        self,
        source: CaptureSource,
        producer: EventProducer,
        *,
        topic_settings: TopicSettings,
        publish_own_writes: bool = False,
    ) -> None:
        self.source = source
        self.producer = producer
        self.info = SourceInfo(name=source.name, connector=source.connector, database=source.database)
        self.tombstones = topic_settings.tombstones
        self.publish_own_writes = publish_own_writes
        self.stats = CaptureStats()
        # Set once the source holds its position (slot created, GTID read): later changes will be captured.
        self.opened = threading.Event()
        self._tracker: AckTracker[Position | SnapshotDone] = AckTracker()
        self._topics: dict[TableId, str] = {}
        self._tx_topic = transaction_topic(source.name)

    def _topic(self, table: TableId) -> str:
        topic = self._topics.get(table)
        if topic is None:
            topic = self._topics[table] = table_topic(self.info.name, table.namespace, table.table)
        return topic

    def run(self) -> CaptureStats:
        """Open the source, stream until it stops, then flush Kafka and acknowledge what it confirmed."""
        self.source.open()
        self.opened.set()
        try:
            return self._run()
        finally:
            self.source.close()

    def stop(self) -> None:
        """Finish the current transaction, flush, acknowledge and return (safe from a signal handler)."""
        self.source.stop()

    def _run(self) -> CaptureStats:
        source = self.source
        producer = self.producer
        tracker = self._tracker
        info = self.info
        tx: SourceTransaction | None = None
        skip = False
        seq = -1
        order = EventOrder()
        callback: Any = None
        now_ms = 0
        last_commit_lsn: int | None = None
        last_poll = time.monotonic()
        since_poll = 0
        for item in source.stream():
            if isinstance(item, RowChange):
                if skip:
                    continue
                assert tx is not None
                total_order, collection_order = order.next(item.table)
                topic = self._topic(item.table)
                value = change_value(
                    item,
                    tx,
                    info,
                    data_collection_order=collection_order,
                    total_order=total_order,
                    ts_ms=now_ms,
                    last_commit_lsn=last_commit_lsn,
                )
                key = None if item.op is Op.TRUNCATE else dumps(item.key)
                producer.produce(topic, key, dumps(value), callback)
                sent = 1
                if self.tombstones and item.op is Op.DELETE:
                    producer.produce(topic, key, None, callback)
                    sent = 2
                tracker.sent(seq, sent)
                self.stats.events += 1
                since_poll += 1
                if since_poll >= 1000:
                    since_poll = 0
                    producer.poll(0)
                continue
            if isinstance(item, TxBegin):
                tx = item.tx
                skip = tx.origin is not None and not self.publish_own_writes
                seq = tracker.open(tx.position)
                callback = producer.delivery_callback(_confirm(tracker, seq))
                order = EventOrder()
                now_ms = int(time.time() * 1000)
                if skip:
                    self.stats.skipped_own_transactions += 1
                elif not tx.snapshot:
                    tx_key, begin = transaction_begin(tx, info)
                    producer.produce(self._tx_topic, dumps(tx_key), dumps(begin), callback)
                    tracker.sent(seq)
                continue
            if isinstance(item, TxCommit):
                assert tx is not None
                if not skip and not tx.snapshot:
                    tx_key, end = transaction_end(tx, info, order.per_table)
                    producer.produce(self._tx_topic, dumps(tx_key), dumps(end), callback)
                    tracker.sent(seq)
                tracker.seal(seq, item.position)
                if isinstance(item.position, PostgresPosition) and not tx.snapshot:
                    last_commit_lsn = item.position.commit_lsn
                self.stats.transactions += 1
                tx = None
            elif isinstance(item, SnapshotDone):
                done = tracker.open(item)
                tracker.seal(done)
            elif isinstance(item, Heartbeat):
                # The source is idle: collect confirmations now rather than at the next transaction.
                last_poll = time.monotonic()
                producer.poll(0)
                self._acknowledge()
                if item.position is not None and tracker.in_flight == 0:
                    source.acknowledge(item.position)
                continue
            # At transaction boundaries: serve delivery reports and acknowledge what became durable.
            now = time.monotonic()
            if now - last_poll >= 0.05 or tracker.in_flight > 10000:
                last_poll = now
                producer.poll(0)
                self._acknowledge()
        producer.flush()
        self._acknowledge()
        return self.stats

    def _acknowledge(self) -> None:
        position = self._tracker.take_acknowledgeable()
        if position is not None:
            self.source.acknowledge(position)
            self.stats.acknowledged = position


def _confirm(tracker: AckTracker[Any], seq: int) -> Any:
    def confirmed() -> None:
        tracker.confirmed(seq)

    return confirmed


def build_capture(config: ReplicatorConfig, source_name: str) -> CaptureRunner:
    """Wire one configured source to Kafka: topics created, offsets store, producer, runner."""
    source_config = config.source(source_name)
    bootstrap = config.kafka.bootstrap()
    producer = EventProducer(
        bootstrap,
        client_id=f"replicator-capture-{source_name}",
        linger_ms=config.kafka.linger_ms,
        compression=config.kafka.compression,
    )
    offsets = OffsetStore(bootstrap, offsets_topic(source_name), source_name, producer)
    source: CaptureSource
    if isinstance(source_config, PostgresSourceConfig):
        from replicator.capture.postgres.source import PostgresCaptureSource

        source = PostgresCaptureSource(source_config, offsets)
    else:
        from replicator.capture.mariadb.source import MariaDbCaptureSource

        source = MariaDbCaptureSource(source_config, offsets)
    tables = source.tables()
    created = ensure_topics(bootstrap, capture_topics(source_name, tables, config.kafka.topics))
    if created:
        log.info("created topics", extra={"source": source_name, "topics": created})
    return CaptureRunner(
        source, producer, topic_settings=config.kafka.topics, publish_own_writes=source_config.publish_own_writes
    )
