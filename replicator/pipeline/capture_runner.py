"""Runs one capture: source -> Debezium envelopes -> Kafka -> acknowledgement to the source.

The source position of a transaction is acknowledged only once Kafka confirmed every message of it
and of every transaction before it (AckTracker). Transactions carrying the replicator's loop tag are
not published (unless configured): an `echo_suppressed` audit record stands for each, and their positions
still flow through the tracker in order.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import orjson

from replicator.capture.base import (
    CaptureSource,
    Heartbeat,
    OneChangeTx,
    SnapshotChunk,
    SnapshotDone,
    TxBegin,
    TxCommit,
)
from replicator.capture.checkpoint import AckTracker
from replicator.config import PostgresSourceConfig, ReplicatorConfig, TopicSettings
from replicator.envelope.debezium import EnvelopeEncoder, SourceInfo
from replicator.errors import ConfigError, RetriableError, lost_connection_errors
from replicator.events import Op, Position, PostgresPosition, RowChange, SourceTransaction, TableId
from replicator.transport.audit import echo_suppressed_record
from replicator.transport.kafka import EventProducer, OffsetStore, TopicSpec, ensure_topics
from replicator.transport.topics import AUDIT_TOPIC, offsets_topic, table_topic, transaction_topic

log = logging.getLogger(__name__)


@dataclass
class CaptureStats:
    transactions: int = 0
    events: int = 0
    skipped_own_transactions: int = 0
    acknowledged: Position | SnapshotDone | SnapshotChunk | None = None


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
    specs.append(TopicSpec(AUDIT_TOPIC, settings.partitions, settings.replication_factor, retention))
    specs.append(
        TopicSpec(offsets_topic(source_name), 1, settings.replication_factor, (("cleanup.policy", "compact"),))
    )
    return specs


@dataclass(slots=True, eq=False)
class _TableState:
    """Per captured table: its topic and its event count in the transaction numbered `tx` (END marker,
    data_collection_order)."""

    table: TableId
    topic: str
    tx: int = 0
    count: int = 0


# How often the runner serves Kafka's failure reports: every _POLL_EVENTS events inside a big
# transaction; and at the first transaction boundary after _POLL_INTERVAL_S or after _POLL_EVENTS
# events and transactions, where it also looks whether Kafka confirmed everything produced.
_POLL_EVENTS = 1000
_POLL_INTERVAL_S = 0.05
# While the source streams, how often confirmation is waited for when Kafka did not confirm everything
# on its own (the flush it takes stalls the stream for a few milliseconds); at most this long for each.
_CONFIRM_INTERVAL_S = 0.25
_CONFIRM_TIMEOUT_S = 1.0
# While the source is idle and transactions await confirmation: how long the runner waits for Kafka at a
# heartbeat, and how soon it asks the source to look again when that was not enough (`Heartbeat.wait_s`).
_IDLE_CONFIRM_TIMEOUT_S = 0.02
_CONFIRM_WAIT_S = 0.005


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
        self._tracker: AckTracker[Position | SnapshotDone | SnapshotChunk] = AckTracker()
        self._tables: dict[TableId, _TableState] = {}
        self._tx_topic = transaction_topic(source.name)
        self._last_confirm = time.monotonic()

    def _table(self, table: TableId) -> _TableState:
        state = self._tables.get(table)
        if state is None:
            state = self._tables[table] = _TableState(table, table_topic(self.info.name, table.namespace, table.table))
        return state

    def run(self) -> CaptureStats:
        """Open the source, stream until it stops, then flush Kafka and acknowledge what it confirmed. The
        source's connection lost anywhere is a RetriableError: capture starts again from the acknowledged
        position."""
        try:
            return self._open_and_run()
        except lost_connection_errors() as exc:
            raise RetriableError(f"source {self.info.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.close()

    def close(self) -> None:
        """Release the producer: the runner owns it, and a restart builds a new runner with a new one."""
        self.producer.close()

    def _open_and_run(self) -> CaptureStats:
        self.source.open()
        self.opened.set()
        try:
            stats = self._run()
        finally:
            self.source.close()
        # What the source saved while acknowledging, and on close, is not always waited for (a MariaDB
        # source's last GTID state and replay window): deliver it before the producer is dropped, or a clean
        # stop would restart from an older position than the one it acknowledged.
        self.producer.flush()
        return stats

    def stop(self) -> None:
        """Finish the current transaction, flush, acknowledge and return (safe from a signal handler)."""
        self.source.stop()

    def _run(self) -> CaptureStats:
        # The hot loop: one iteration per stream item, so per-event work is kept to the envelope's
        # variable parts (EnvelopeEncoder), one produce per message and counter increments; what it
        # calls is bound to locals first.
        source = self.source
        producer = self.producer
        produce = producer.produce
        raw_produce = producer.raw_produce
        tracker = self._tracker
        seal = tracker.seal
        stats = self.stats
        encoder = EnvelopeEncoder(self.info)
        encode = encoder.value
        encode_one = encoder.one
        dumps = orjson.dumps
        wall_clock = time.time
        clock = time.monotonic
        tx_topic = self._tx_topic
        source_name = self.info.name
        tombstones = self.tombstones
        publish_own_writes = self.publish_own_writes
        truncate, delete = Op.TRUNCATE, Op.DELETE
        tx: SourceTransaction | None = None
        tx_number = 0  # counts transactions, so that a table's count restarts in each
        urgent = False  # confirm at this boundary, whatever the interval
        skip = False
        total = 0  # events of the current transaction so far
        in_tx: list[_TableState] = []  # the current transaction's tables, in first-seen order
        table: TableId | None = None
        state = _TableState(TableId("", ""), "")
        tx_key = b""
        last_commit_lsn: int | None = None
        last_poll = clock()
        since_poll = 0  # events, or transactions, since the last poll
        for item in source.stream():
            if isinstance(item, RowChange):
                if skip:
                    continue
                if item.table is not table:
                    table = item.table
                    state = self._table(table)
                if state.tx != tx_number:
                    state.tx = tx_number
                    state.count = 0
                    in_tx.append(state)
                total += 1
                state.count += 1
                op = item.op
                key = None if op is truncate else dumps(item.key)
                value = encode(item, total, state.count)
                try:
                    raw_produce(state.topic, value, key)
                except BufferError:  # librdkafka's queue is full: produce waits for room
                    produce(state.topic, key, value)
                if tombstones and op is delete:
                    produce(state.topic, key, None)
                stats.events += 1
                since_poll += 1
                if since_poll >= _POLL_EVENTS:
                    since_poll = 0
                    producer.poll(0)
                continue
            if isinstance(item, OneChangeTx):
                # TxBegin, the change and TxCommit below, in one step (a streamed transaction).
                one = item.tx
                tx_number += 1
                if one.origin is not None and not publish_own_writes:
                    stats.skipped_own_transactions += 1
                    echo_key, echo_value = echo_suppressed_record(source_name, one.id, one.origin)
                    produce(AUDIT_TOPIC, echo_key, echo_value)
                else:
                    change = item.change
                    tx_key, begin, value, end = encode_one(one, change, ts_ms=int(wall_clock() * 1000),
                                                           last_commit_lsn=last_commit_lsn)
                    try:
                        raw_produce(tx_topic, begin, tx_key)
                    except BufferError:
                        produce(tx_topic, tx_key, begin)
                    if change.table is not table:
                        table = change.table
                        state = self._table(table)
                    op = change.op
                    key = None if op is truncate else dumps(change.key)
                    try:
                        raw_produce(state.topic, value, key)
                    except BufferError:
                        produce(state.topic, key, value)
                    if tombstones and op is delete:
                        produce(state.topic, key, None)
                    try:
                        raw_produce(tx_topic, end, tx_key)
                    except BufferError:
                        produce(tx_topic, tx_key, end)
                    stats.events += 1
                position = item.position
                seal(position)
                if isinstance(position, PostgresPosition):
                    last_commit_lsn = position.commit_lsn
                stats.transactions += 1
                since_poll += 1
            elif isinstance(item, TxBegin):
                tx = item.tx
                tx_number += 1
                skip = tx.origin is not None and not publish_own_writes
                total = 0
                in_tx.clear()
                if skip:
                    stats.skipped_own_transactions += 1
                    # Its audit record stands for the transaction: its position is sealed after it, so it is
                    # acknowledged only once Kafka has the record, and a crash never loses it.
                    echo_key, echo_value = echo_suppressed_record(source_name, tx.id, tx.origin)
                    produce(AUDIT_TOPIC, echo_key, echo_value)
                    continue
                encoder.start(tx, ts_ms=int(wall_clock() * 1000), last_commit_lsn=last_commit_lsn)
                if not tx.snapshot:
                    tx_key = encoder.key()
                    begin = encoder.begin()
                    try:
                        raw_produce(tx_topic, begin, tx_key)
                    except BufferError:
                        produce(tx_topic, tx_key, begin)
                continue
            elif isinstance(item, TxCommit):
                assert tx is not None
                if not skip and not tx.snapshot:
                    if len(in_tx) == 1:  # most transactions: no list of counts to build
                        only = in_tx[0]
                        end = encoder.end_single(only.table, only.count)
                    else:
                        end = encoder.end([(s.table, s.count) for s in in_tx])
                    try:
                        raw_produce(tx_topic, end, tx_key)
                    except BufferError:
                        produce(tx_topic, tx_key, end)
                seal(item.position)
                # A snapshot chunk is confirmed at once: its progress is recorded per chunk, and the read
                # of the next one may wait long (a locked table) with nothing else to confirm it.
                urgent = tx.snapshot
                if isinstance(item.position, PostgresPosition) and not tx.snapshot:
                    last_commit_lsn = item.position.commit_lsn
                stats.transactions += 1
                tx = None
                since_poll += 1
            elif isinstance(item, SnapshotDone):
                seal(item, marker=True)
                urgent = True
            elif isinstance(item, Heartbeat):
                # An idle source: have Kafka confirm now rather than at the next transaction. A busy one
                # passing over a transaction it does not publish: on the usual cadence.
                now = last_poll = clock()
                self._confirm_due(now, at_once=item.idle,
                                  timeout=_IDLE_CONFIRM_TIMEOUT_S if item.idle else _CONFIRM_TIMEOUT_S)
                if not tracker.pending:
                    if item.position is not None:
                        source.acknowledge(item.position)
                elif item.idle:
                    # Kafka still owes confirmations: have the source look again soon, so they are
                    # acknowledged (and the replay window after a crash shrinks) within milliseconds.
                    item.wait_s = _CONFIRM_WAIT_S
                continue
            # At transaction boundaries: serve failure reports, and acknowledge what Kafka confirmed:
            # at once when nothing is outstanding, else by waiting for it every _CONFIRM_INTERVAL_S.
            now = clock()
            if urgent or now - last_poll >= _POLL_INTERVAL_S or since_poll >= _POLL_EVENTS:
                last_poll = now
                since_poll = 0
                self._confirm_due(now, at_once=urgent, timeout=_CONFIRM_TIMEOUT_S)
                urgent = False
        producer.flush()
        self._acknowledge()
        return self.stats

    def _confirm_due(self, now: float, *, at_once: bool, timeout: float) -> None:
        """Serve failure reports; then, if sealed transactions await Kafka, and it is `at_once`, or Kafka has
        nothing outstanding, or _CONFIRM_INTERVAL_S passed since the last wait: wait up to `timeout` s for
        Kafka to confirm everything produced, and acknowledge if it did. The interval counts from the end
        of the wait: a broker slow to confirm still leaves the stream _CONFIRM_INTERVAL_S to run."""
        producer = self.producer
        producer.poll(0)
        if not self._tracker.pending or not (
            at_once or producer.unconfirmed == 0 or now - self._last_confirm >= _CONFIRM_INTERVAL_S
        ):
            return
        try:
            confirmed = producer.confirm(timeout)
        finally:
            self._last_confirm = time.monotonic()
        if confirmed:
            self._acknowledge()

    def _acknowledge(self) -> None:
        """Kafka confirmed everything produced: acknowledge the newest sealed position to the source."""
        position, markers = self._tracker.take_confirmed()
        # Completed snapshots, each acknowledged on its own (the source records them).
        for marker in markers:
            if marker is not position:
                self.source.acknowledge(marker)
        if position is not None:
            self.source.acknowledge(position)
            self.stats.acknowledged = position


def build_capture(config: ReplicatorConfig, source_name: str) -> CaptureRunner:
    """Wire one configured source to Kafka: topics created, offsets store, producer, runner."""
    source_config = config.source(source_name)
    kafka = config.kafka.client()
    producer = EventProducer(
        kafka,
        client_id=f"replicator-capture-{source_name}",
        linger_ms=config.kafka.linger_ms,
        compression=config.kafka.compression,
    )
    try:
        offsets = OffsetStore(kafka, offsets_topic(source_name), source_name, producer)
        source: CaptureSource
        if isinstance(source_config, PostgresSourceConfig):
            from replicator.capture.postgres.source import PostgresCaptureSource

            source = PostgresCaptureSource(source_config, offsets)
        else:
            from replicator.capture.mariadb.source import MariaDbCaptureSource

            source = MariaDbCaptureSource(source_config, offsets)
        tables = source.tables()
        created = ensure_topics(kafka, capture_topics(source_name, tables, config.kafka.topics))
    except BaseException:
        producer.close()  # no runner will own it (a source not answering: the supervisor builds again)
        raise
    if created:
        log.info("created topics", extra={"source": source_name, "topics": created})
    return CaptureRunner(
        source, producer, topic_settings=config.kafka.topics, publish_own_writes=source_config.publish_own_writes
    )


def request_snapshot(config: ReplicatorConfig, source_name: str, tables: list[str]) -> str:
    """Record a request to read `tables` of a source again (`replicator snapshot`); returns its id. The
    running capture picks it up between two transactions, or the next start does."""
    source_config = config.source(source_name)
    unknown = [t for t in tables if t not in source_config.tables]
    if not tables or unknown:
        raise ConfigError(
            f"source {source_name}: "
            + (f"{', '.join(unknown)} not among its tables" if unknown else "no table given")
            + f" (captured: {', '.join(source_config.tables)})"
        )
    kafka = config.kafka.client()
    topic = offsets_topic(source_name)
    ensure_topics(kafka, [s for s in capture_topics(source_name, [], config.kafka.topics) if s.name == topic])
    producer = EventProducer(kafka, client_id=f"replicator-snapshot-{source_name}")
    try:
        return OffsetStore(kafka, topic, source_name, producer).request_snapshot(tables)
    finally:
        producer.close()
