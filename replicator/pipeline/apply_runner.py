"""Runs one applier: Kafka topics of the systems it applies from -> reassembled transactions -> target.

Progress lives in the target database, written in the same transaction as the data, so the consumer
assigns its partitions itself at the stored offsets (no group offsets are trusted) and a crash at any
instruction resumes exactly where the last committed batch ended. Anything unexpected propagates: the
supervisor restarts the runner, which re-reads its progress from the target.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from replicator.apply.applier import (
    Applier,
    AwaitingOwnEdits,
    BatchResult,
    MappedUnit,
    UnitOutcome,
    positions_of,
)
from replicator.apply.dialect.base import Progress, TargetDialect
from replicator.apply.own_changes import OwnEdit, OwnEditError, OwnTable, VersionOf, own_edit
from replicator.apply.reassembly import Event, TransactionAssembler, Unit
from replicator.config import ReplicatorConfig, TargetConfig
from replicator.conflict.resolver import new_row_reason
from replicator.errors import ConfigError, FatalError, RetriableError, SkippableRecordError, lost_connection_errors
from replicator.mapping.ops import Policy, TargetOp, Version
from replicator.mapping.spec import MappingSet
from replicator.pipeline.interpreter import applier_settings
from replicator.transport.audit import AuditPublisher
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import TopicSpec, ensure_topics, watermarks
from replicator.transport.topics import AUDIT_TOPIC, DLQ_TOPIC, table_topic, transaction_topic

log = logging.getLogger(__name__)

# How long units wait for the target's own topics to be read up to their end before they are applied anyway
# (see ApplyRunner._own_behind).
OWN_CATCH_UP_MAX_S = 2.0
OWN_RETRY_S = 0.1  # how soon a batch that waits for own edits is tried again (with the own messages read since)
# How long a batch waits for Kafka to confirm its audit records before it is rolled back (and retried).
AUDIT_CONFIRM_TIMEOUT_S = 30.0
# How long an applier waits at start for its sources' topics, before it restarts saying which are missing.
SOURCE_TOPICS_WAIT_S = 30.0
# A snapshot counts as being applied while batches held snapshot reads within this many seconds: a streamed
# transaction that refers to a row the target does not hold may then wait for it (target's reference_wait_s).
SNAPSHOT_ACTIVE_S = 10.0


@dataclass
class ApplyStats:
    batches: int = 0
    units: int = 0
    events: int = 0
    dead_letters: int = 0
    last_batch: BatchResult | None = None
    # Source commit to target commit of the newest source transaction of the last batch, in seconds.
    latency_s: float | None = None


@dataclass
class SourceTopics:
    """What the applier reads of one source system."""

    system: str
    source_name: str
    tables: list[str]  # '<namespace>.<table>' of the captured tables that mappings read
    assembler: TransactionAssembler = field(init=False)

    def __post_init__(self) -> None:
        self.assembler = TransactionAssembler(transaction_topic(self.source_name))

    @property
    def table_topics(self) -> list[str]:
        return [table_topic(self.source_name, *t.split(".", 1)) for t in self.tables]


@dataclass(frozen=True)
class OwnTopics:
    """The target system's own captured topics of tables it is written into (`apply.own_changes`)."""

    tables: dict[str, OwnTable]  # topic -> its table
    version_of: VersionOf


class ApplyRunner:
    def __init__(
        self,
        target: TargetConfig,
        dialect: TargetDialect,
        ops_for: Callable[[dict[str, Any]], list[TargetOp]],
        sources: list[SourceTopics],
        kafka: KafkaClient,
        *,
        target_priority: int,
        local_times: Mapping[str, tuple[str, str]] | None = None,
        tracked_columns: Mapping[str, Iterable[str]] | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
        own: OwnTopics | None = None,
    ) -> None:
        self.target = target
        self.dialect = dialect
        self.sources = sources
        self.kafka = kafka
        self.applier = Applier(dialect, ops_for, consumer=target.name, target_system=target.system,
                               target_priority=target_priority, local_times=local_times,
                               tracked_columns=tracked_columns)
        self.stats = ApplyStats()
        self.on_batch = on_batch
        self._stopping = threading.Event()
        self.ready = threading.Event()
        # Units to try again in the next batch (at its end): snapshot reads waiting for a row they refer to, and per
        # source at most one streamed transaction doing so (its stream's head); and per source, its streamed
        # transactions waiting behind that head, in commit order (released into batches once the head is applied).
        # Both are the writer's; `_retry` tells the loop's thread whether any of them is to be tried again.
        self._deferred: list[tuple[str, Unit]] = []
        self._waiting: dict[str, deque[Unit]] = {}
        self._retry = False
        # Lost messages were skipped and no batch has stored the position after them yet (see `_lost_messages`).
        self._skip_unrecorded = False
        self._reads_at = float("-inf")  # when a batch last held a snapshot read
        self.audit: AuditPublisher | None = AuditPublisher(kafka, client_id=f"replicator-apply-{target.name}")
        # Per deferred unit (by id): when it was first deferred, and the sources' partitions' ends then (None: not
        # known yet). A streamed transaction's row may still come until every record before those ends is read.
        self._deferred_since: dict[int, tuple[float, dict[tuple[str, int], int | None]]] = {}
        self._kafka: Consumer | None = None  # the consumer, once assigned
        self._start_offsets: dict[tuple[str, int], int] = {}  # the sources' partitions, from where they are read
        # Per source, the transaction seen holding back the others at the last check, missing events that a
        # skip of lost messages may have taken (`_drop_transactions_missing_lost_events`).
        self._blocked_heads: dict[str, str] = {}
        # The assemblers are fed by the loop's thread and told what was applied by the writer's (_loop).
        self._assembly = threading.Lock()
        self._route: dict[str, SourceTopics] = {}
        self._markers: dict[str, SourceTopics] = {}
        for source in sources:
            for topic in source.table_topics:
                self._route[topic] = source
            self._markers[transaction_topic(source.source_name)] = source
        self.own = own
        self._own_tables: dict[str, OwnTable] = dict(own.tables) if own is not None else {}
        # Own change messages read but not yet handed to the writer, and per own partition the next offset to
        # read; the offsets the end of the own topics had when the consumer was assigned.
        self._own_pending: list[tuple[str, int, int, bytes | None]] = []
        self._own_next: dict[tuple[str, int], int] = {}
        self._own_ends: dict[tuple[str, int], int] = {}
        self._absent_own: dict[str, OwnTable] = {}  # own topics that did not exist when the consumer was assigned

    def stop(self) -> None:
        self._stopping.set()

    def _publish(self, outcomes: list[UnitOutcome], names: list[str]) -> None:
        """The batch's audit and dead-letter records, confirmed by Kafka, before its target transaction commits:
        a crash can then repeat a batch's records (it is applied again), never lose them."""
        if self.audit is not None:
            _publish_outcomes(self.audit, self.target.name, outcomes, names)
            for table, key, decision in self.applier.reasserted:  # owner values written back over local edits
                self.audit.decision(target=self.target.name, table=table, key=key, mapping="",
                                    source=self.target.system, transaction=None, decisions=[decision])
            self.audit.flush(AUDIT_CONFIRM_TIMEOUT_S)

    def run(self) -> ApplyStats:
        """Apply until stopped. The target's connection lost anywhere (in a batch, reading dead letters or own
        edits) is a RetriableError: the supervisor starts the applier again, from its stored progress."""
        try:
            return self._run()
        except lost_connection_errors() as exc:
            raise RetriableError(f"target {self.target.name}: {type(exc).__name__}: {exc}") from exc

    def _run(self) -> ApplyStats:
        try:
            self.dialect.connect()
            progress = self.applier.prepare()
            for source in self.sources:
                source.assembler.applied = {
                    domain: seq for (name, domain), seq in progress.positions.items() if name == source.source_name
                }
            consumer = self._consumer(progress)
            try:
                with applier_settings():  # the collector's thresholds and the switch interval (see there)
                    self.ready.set()
                    self._loop(consumer)
            finally:
                consumer.close()
                if self.audit is not None:
                    self.audit.flush()
        finally:
            self.dialect.close()
            self.close()
        return self.stats

    def close(self) -> None:
        """Release the audit producer: the runner owns it, and a restart builds a new runner with a new one."""
        if self.audit is not None:
            self.audit.close()

    def _consumer(self, progress: Progress) -> Consumer:
        consumer = Consumer(self.kafka.config({
            "group.id": f"replicator-apply-{self.target.name}",
            "enable.auto.commit": False,
            # Never "earliest": a stored offset Kafka no longer holds would silently skip to the oldest message.
            "auto.offset.reset": "error",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 10,
        }))
        try:
            return self._assign(consumer, progress)
        except BaseException:
            consumer.close()  # no loop will use it (topics missing: the supervisor builds the runner again)
            raise

    def _assign(self, consumer: Consumer, progress: Progress) -> Consumer:
        topics = [*self._route, *self._markers]
        metadata = consumer.list_topics(timeout=30)
        # In one `replicator run` the captures create their topics while the appliers start: wait for them a while
        # rather than restart, which would log a warning (and count a restart) for a normal start.
        deadline = time.monotonic() + SOURCE_TOPICS_WAIT_S
        waiting = [t for t in topics if t not in metadata.topics]
        if waiting:
            log.info("waiting for the sources' topics", extra={"target": self.target.name, "topics": waiting})
        while waiting and time.monotonic() < deadline and not self._stopping.wait(0.2):
            metadata = consumer.list_topics(timeout=30)
            waiting = [t for t in topics if t not in metadata.topics]
        absent_own = sorted(t for t in self._own_tables if t not in metadata.topics)
        if absent_own:
            # Not an error: the target's own capture may not run yet (in the same `replicator run` it may be
            # creating them right now). Its local edits are dated by their rows, as without the own topics, until
            # they appear (`_adopt_own_topics`).
            log.warning("own topics absent: local edits dated by their rows until they appear", extra={
                "target": self.target.name, "topics": absent_own})
            for topic in absent_own:
                self._absent_own[topic] = self._own_tables.pop(topic)
        topics += list(self._own_tables)
        self.applier.own_tables = {own.table: own for own in self._own_tables.values()}
        missing = [t for t in topics if t not in metadata.topics]
        if missing:
            raise RetriableError(
                f"target {self.target.name}: topics {', '.join(sorted(missing))} do not exist yet; "
                "is the capture of their source running?"
            )
        assignment = []
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                offset = progress.offsets.get((topic, partition), 0)
                assignment.append(TopicPartition(topic, partition, offset))
                if topic in self._own_tables:
                    self._own_next[(topic, partition)] = offset
                else:
                    self._start_offsets[(topic, partition)] = offset
        consumer.assign(assignment)
        self._kafka = consumer
        for topic, partition in self._own_next:
            # The own topics may have been created by the capture a moment ago, in the same `replicator run`.
            _, end = watermarks(consumer, TopicPartition(topic, partition), timeout=30)
            self._own_ends[(topic, partition)] = end
        return consumer

    def _adopt_own_topics(self, consumer: Consumer) -> None:
        """Start reading the own topics that were absent at start and exist now, from their first message."""
        metadata = consumer.list_topics(timeout=10)
        found = sorted(t for t in self._absent_own if t in metadata.topics)
        if not found:
            return
        assignment = []
        for topic in found:
            self._own_tables[topic] = self._absent_own.pop(topic)
            for partition in metadata.topics[topic].partitions:
                assignment.append(TopicPartition(topic, partition, 0))
                self._own_next[(topic, partition)] = 0
                self._own_ends[(topic, partition)] = watermarks(consumer, TopicPartition(topic, partition), 30)[1]
        consumer.incremental_assign(assignment)
        self.applier.own_tables = {own.table: own for own in self._own_tables.values()}
        log.info("own topics appeared: local edits dated by them from now on", extra={
            "target": self.target.name, "topics": found})

    def _lost_messages(self, topic: str, partition: int, offset: int) -> None:
        """Kafka does not hold `offset` of a partition, which this applier has not applied: retention deleted it
        (and maybe more) first, or the topic was deleted and created again. Stop naming what is lost, unless the
        target says to skip (`on_lost_messages`); then read on from the oldest message Kafka holds. An own topic
        is always skipped over: its messages only date the target's local edits (which, without them, are dated
        by their rows)."""
        consumer = self._kafka
        assert consumer is not None
        low, high = watermarks(consumer, TopicPartition(topic, partition), timeout=30)
        if offset > high:
            what = (f"the partition ends at offset {high}, before offset {offset} that this applier had reached "
                    "(was the topic deleted and created again?)")
        else:
            what = f"offsets {offset} to {low - 1} were deleted (the topic's retention) before this applier read them"
        if self.target.on_lost_messages == "stop" and topic not in self._own_tables:
            raise FatalError(
                f"target {self.target.name}: {topic} [{partition}]: {what}; the changes they held are lost for "
                "this target. Request a new snapshot of the source's tables (replicator snapshot), then start the "
                f"applier once with on_lost_messages: skip, which goes on from offset {low}"
            )
        log.warning("messages lost: reading on from the oldest Kafka holds", extra={
            "target": self.target.name, "topic": topic, "partition": partition, "lost": what, "from_offset": low})
        # Not `seek`: librdkafka refuses it for a partition stopped by its offset-reset error.
        consumer.incremental_unassign([TopicPartition(topic, partition)])
        consumer.incremental_assign([TopicPartition(topic, partition, low)])
        if topic in self._own_tables:
            self._own_next[(topic, partition)] = low
            return
        # The loop's thread holds `_assembly` here (`_route_messages`).
        (self._markers.get(topic) or self._route[topic]).assembler.skip_to((topic, partition), low)
        self._start_offsets[(topic, partition)] = low
        # Stored at once by a batch of its own if no other comes: a restart, maybe with on_lost_messages set back
        # to stop, then starts after the gap instead of meeting it again.
        self._skip_unrecorded = True

    def _drop_transactions_missing_lost_events(self, consumer: Consumer) -> None:
        """After messages of a table topic were skipped as lost (`on_lost_messages: skip`), a transaction whose END
        was read may miss events that went with them, and would hold back its source's later transactions for
        good. Seen at the head at two checks in a row (a second apart, so that no event is merely on its way),
        with every partition of its source read to its end, it and every other transaction still missing events
        are dropped, with a warning that names them: their changes are lost for this target, as the skipped
        messages are."""
        for source in self.sources:
            with self._assembly:
                head = source.assembler.blocked_head()
            if head is None:
                self._blocked_heads.pop(source.source_name, None)
                continue
            if self._blocked_heads.get(source.source_name) != head:
                self._blocked_heads[source.source_name] = head  # seen once: look again at the next check
                continue
            topics = {source.assembler.transaction_topic, *source.table_topics}
            for (topic, partition), read in self._read_offsets().items():
                if topic in topics and read < watermarks(consumer, TopicPartition(topic, partition), timeout=10)[1]:
                    break  # more to read: the missing events may still come
            else:
                with self._assembly:
                    dropped = source.assembler.drop_incomplete()
                self._blocked_heads.pop(source.source_name, None)
                self._warn_dropped(source, "missing events that were",
                                   [f"{tx} ({have} of {n} events)" for tx, have, n in dropped])

    def _warn_dropped(self, source: SourceTopics, why: str, transactions: list[str]) -> None:
        """Transactions left incomplete by lost messages that were skipped are dropped: say which."""
        log.warning(f"transactions {why} among the lost messages skipped are dropped: their changes are lost for "
                    "this target, as the skipped ones", extra={
                        "target": self.target.name, "source": source.source_name, "count": len(transactions),
                        "transactions": transactions[:20]})

    def _own_behind(self, consumer: Consumer) -> bool:
        """Whether some own topic has messages this runner has not read yet: the end it had at start, or the
        end the last fetch saw. Units wait for them (up to OWN_CATCH_UP_MAX_S), so that a conflict is decided
        with the versions of every local edit capture published before it."""
        for (topic, partition), next_offset in self._own_next.items():
            _, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if next_offset < max(end, self._own_ends.get((topic, partition), -1)):
                return True
        return False

    def _loop(self, consumer: Consumer) -> None:
        """Consume, decode, reassemble and map in this thread; apply each batch in the writer thread.

        Batch N is written (its reads, decisions, writes, progress and commit) by the writer while this thread
        prepares batch N+1 up to its mapping: the database's work and its round trips overlap with the Python
        work of the next batch (the drivers release the GIL while they wait). One batch at a time is written
        and the next one is handed over only when it is done, so every read of batch N+1 happens after batch
        N committed, and the progress stored with a batch covers no more than it: what the assembler has read
        beyond the batch stays unapplied (`TransactionAssembler.resume_offsets`). Dead-letter retries and the
        retries of deferred units run here, between batches, when the writer is idle."""
        pending: list[tuple[str, Unit]] = []
        first_ready = 0.0
        limit = self.target.batch_max_events
        linger = self.target.batch_max_ms / 1000
        last_retry_check = 0.0
        last_deferred_try = 0.0
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"apply-{self.target.name}-writer")
        writing: Future[tuple[BatchResult, list[str]]] | None = None
        # What the writer is writing: its units and own change messages, handed back if it waits for own edits.
        handed: tuple[list[tuple[str, Unit]], list[tuple[str, int, int, bytes | None]]] = ([], [])
        hold_until = 0.0  # a batch waiting for own edits is tried again from then

        def written() -> list[tuple[str, Unit]]:
            """Wait for the batch being written and finish it; its failure is this loop's. Returns its units
            when it waits for own edits (`AwaitingOwnEdits`), to be handed over again."""
            nonlocal writing
            if writing is None:
                return []
            done, writing = writing, None
            try:
                result = done.result()
            except AwaitingOwnEdits:
                return handed_back()
            self._finish(*result)
            return []

        def handed_back() -> list[tuple[str, Unit]]:
            """The units of a batch that was rolled back to wait for own edits; its own change messages go back
            in front of those read since. Nothing of it was committed or published."""
            nonlocal hold_until
            units, own = handed
            self._own_pending = [*own, *self._own_pending]
            hold_until = time.monotonic() + OWN_RETRY_S
            return units

        def hand_over(batch: list[tuple[str, Unit]]) -> list[tuple[str, Unit]]:
            """Map the batch, wait for the one being written, give the writer this one (with the own change
            messages read so far), and only then finish the previous one (its stats and hook). If the previous
            one waits for own edits, it and this batch are returned, to be handed over again, in that order."""
            nonlocal writing, handed
            mapped = [self.applier.map_unit(unit) if unit.error is None else None for _, unit in batch]
            previous, writing = writing, None
            try:
                done = previous.result() if previous is not None else None  # its failure is this loop's
            except AwaitingOwnEdits:
                return [*handed_back(), *batch]
            own, self._own_pending = self._own_pending, []
            own_offsets = dict(self._own_next) if own else {}
            handed = (batch, own)
            writing = writer.submit(self._apply, batch, mapped, own, own_offsets, self._read_offsets())
            if done is not None:
                self._finish(*done)
            return []

        try:
            while not self._stopping.is_set():
                if writing is not None and writing.done():
                    pending = [*written(), *pending]
                if time.monotonic() - last_retry_check >= 1.0 and not pending:
                    last_retry_check = time.monotonic()
                    pending = written()
                    if not pending:
                        self.applier.process_retries()
                        self._drop_transactions_missing_lost_events(consumer)
                    if self._absent_own:
                        self._adopt_own_topics(consumer)
                elif time.monotonic() - last_retry_check >= 1.0 and writing is None:
                    # Units wait (for own edits) with no batch being written: the writer session would fall
                    # silent, and the server ends a session silent for writer_session_timeout_s.
                    last_retry_check = time.monotonic()
                    self.dialect.keep_alive()
                messages = consumer.consume(num_messages=min(limit, 10000), timeout=0.05)
                with self._assembly:
                    if not pending and not self._own_pending:
                        first_ready = time.monotonic()
                    self._route_messages(messages, pending)
                    for source in self.sources:
                        pending.extend((source.source_name, unit) for unit in source.assembler.ready())
                events = sum(len(u.events) for _, u in pending) + len(self._own_pending)
                now = time.monotonic()
                if ((pending or self._own_pending) and now >= hold_until
                        and (events >= limit or now - first_ready >= linger or not messages)):
                    if (pending and self._own_next and events < limit and self._own_behind(consumer)
                            and now - first_ready < OWN_CATCH_UP_MAX_S):
                        continue  # local edits published before these units are still to be read: read them first
                    pending = hand_over(pending)
                elif (self._retry_due() or self._skip_unrecorded) and now - last_deferred_try >= 0.5 and not pending:
                    last_deferred_try = now
                    pending = written()
                    if (self._retry_due() or self._skip_unrecorded) and not pending:
                        self._skip_unrecorded = False
                        # Waiting for own edits, the deferred units stay deferred (`_apply`), tried again in 0.5 s.
                        with contextlib.suppress(AwaitingOwnEdits):
                            self._finish(*self._apply([], read=self._read_offsets()))
            # Stopping: what is pending or waits for own edits is not committed; the next start reads it again.
            if pending:
                hand_over(pending)
            written()
        finally:
            # On a failure here, the batch being written still ends (committed or rolled back) before the
            # connection is closed; its own failure, if any, is then secondary.
            writer.shutdown(wait=True)

    def _route_messages(self, messages: list[Any], pending: list[tuple[str, Unit]]) -> None:
        """`_route_message` for each message, with the common cases inline: a readable END or BEGIN marker, a
        readable change event (one call per message, and its look-ups, cost as much as what it does)."""
        markers, routes, loads, own = self._markers, self._route, orjson.loads, self._own_tables
        for msg in messages:
            topic = msg.topic()
            raw = msg.value()
            if own and topic in own and msg.error() is None:
                partition, offset = msg.partition(), msg.offset()
                self._own_pending.append((topic, partition, offset, raw))
                self._own_next[(topic, partition)] = offset + 1
                continue
            if raw is None or msg.error() is not None:
                self._route_message(msg, pending)
                continue
            source = markers.get(topic)
            if source is not None and raw.startswith(b'{"status":"BEGIN",'):
                # A BEGIN marker tells the assembler nothing but its offset (the END has the id and the count):
                # not decoded. One written otherwise (another producer) takes the general path below.
                source.assembler.add_marker(msg.partition(), msg.offset(), None)
                continue
            try:
                value = loads(raw)
                if value.__class__ is not dict:
                    raise SkippableRecordError("the message value is not a JSON object")
                if source is not None:
                    source.assembler.add_marker(msg.partition(), msg.offset(), value)
                    continue
                source = routes[topic]
                if "op" not in value or "source" not in value:
                    self._check_envelope(topic, msg.offset(), value)
                key = msg.key()
                source.assembler.add_event(Event(topic, msg.partition(), msg.offset(),
                                                 None if key is None else loads(key), value))
            except (orjson.JSONDecodeError, SkippableRecordError):
                self._route_message(msg, pending)  # the general path dead-letters it (and decodes it again)

    def _route_message(self, msg: Any, pending: list[tuple[str, Unit]]) -> None:
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return
            if error.code() == KafkaError._AUTO_OFFSET_RESET:
                self._lost_messages(msg.topic(), int(msg.partition()), int(msg.offset()))
                return
            raise RetriableError(f"target {self.target.name}: reading Kafka: {error}")
        topic = msg.topic()
        partition = int(msg.partition())
        offset = int(msg.offset())
        raw = msg.value()
        marker_source = self._markers.get(topic)
        source = marker_source or self._route[topic]
        try:
            value = None if raw is None else orjson.loads(raw)
            if value is not None and not isinstance(value, dict):
                raise SkippableRecordError("the message value is not a JSON object")
            if marker_source is not None:
                source.assembler.add_marker(partition, offset, value)
            elif value is None:
                source.assembler.add_tombstone(topic, partition, offset)
            else:
                key = None if msg.key() is None else orjson.loads(msg.key())
                self._check_envelope(topic, offset, value)
                source.assembler.add_event(Event(topic, partition, offset, key, value))
        except (orjson.JSONDecodeError, SkippableRecordError) as exc:
            # A message nothing can read: dead-letter it as a unit of its own, keep its raw bytes.
            # Base64: the bytes may be anything, even a NUL that no text column accepts.
            bad = Event(topic, partition, offset, None, {"raw_base64": base64.b64encode(raw or b"").decode(),
                                                          "key_base64": base64.b64encode(msg.key() or b"").decode()})
            source.assembler.add_unreadable(topic, partition, offset)
            pending.append((source.source_name, Unit(None, None, [bad], None, error=f"unreadable message: {exc}")))

    @staticmethod
    def _check_envelope(topic: str, offset: int, value: dict[str, Any]) -> None:
        if "op" in value and "source" in value:
            return
        missing = [f for f in ("op", "source") if f not in value]
        if missing:
            raise SkippableRecordError(f"{topic}@{offset}: not a change event (no {', '.join(missing)})")

    def _read_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition of the sources' topics, the offset after the last record read (in the loop's thread: every
        snapshot read before it is in `pending` or applied)."""
        with self._assembly:
            read = dict(self._start_offsets)
            for source in self.sources:
                for tp, offset in source.assembler.read_offsets().items():
                    read[tp] = max(offset, read.get(tp, 0))
        return read

    def _ends(self) -> dict[tuple[str, int], int | None]:
        """Per partition of the sources' topics, its end as the consumer's last fetch saw it (None: not fetched yet).
        No request to the broker: the consumer's cached watermarks."""
        ends: dict[tuple[str, int], int | None] = {}
        consumer = self._kafka
        for topic, partition in self._start_offsets:
            end = None
            if consumer is not None:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
                end = int(high) if high >= 0 else None
            ends[(topic, partition)] = end
        return ends

    def _retry_due(self) -> bool:
        """Units wait to be tried again: deferred ones, or streamed transactions released from behind a head (read
        from the loop's thread: one attribute, set by the writer's)."""
        return self._retry

    def _note_retry(self) -> None:
        self._retry = bool(self._deferred) or any(self._waiting.values())

    def _batch_units(self, pending: list[tuple[str, Unit]], mapped: list[MappedUnit | None] | None,
                     now: float) -> tuple[list[tuple[str, Unit]], list[MappedUnit | None], int]:
        """The next batch's units with what is known of their ops, in order, and how many of them, at the end, are
        units tried before that waited for a row. In order: the streamed transactions that waited behind a head no
        longer deferred (up to a batch's worth per source); `pending`, except the streamed transactions of a source
        whose stream still waits, which join its queue; the deferred snapshot reads, then the heads, after the reads
        that may bring the rows they wait for. A source's transactions thus reach the applier in commit order, and
        none after one that is not applied yet. (Snapshot reads may come after other changes of their rows: what
        the target ends with does not depend on the order changes arrive in, `conflict.resolver`.)"""
        heads = [(name, unit) for name, unit in self._deferred if unit.transaction_id is not None]
        retried = [(name, unit) for name, unit in self._deferred if unit.transaction_id is None]
        retried += heads
        self._deferred = []
        units: list[tuple[str, Unit]] = []
        waiting_on = {name for name, _ in heads}
        for name, queue in self._waiting.items():
            if name not in waiting_on:
                units.extend((name, queue.popleft()) for _ in range(min(len(queue), self.target.batch_max_events)))
        ops: list[MappedUnit | None] = [None] * len(units)
        for index, (name, unit) in enumerate(pending):
            if unit.transaction_id is not None and (name in waiting_on or self._waiting.get(name)):
                self._waiting.setdefault(name, deque()).append(unit)
                continue
            units.append((name, unit))
            ops.append(None if mapped is None else mapped[index])
        units += retried
        ops += [None] * len(retried)
        if any(unit.transaction_id is None and unit.error is None for _, unit in units):
            self._reads_at = now
        self._note_retry()
        return units, ops, len(retried)

    def _defer(self, names: list[str], outcomes: list[UnitOutcome]) -> None:
        """After a batch: its deferred units are tried again in the next one; per source, the first deferred
        streamed transaction is its stream's head and the later ones go back to the front of its queue."""
        heads: set[str] = set()
        behind: dict[str, list[Unit]] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            unit = outcome.unit
            if not outcome.deferred:
                if self._deferred_since.pop(id(unit), None) is not None and unit.transaction_id is not None:
                    log.info("a streamed transaction that waited for a row is "
                             + ("dead-lettered" if outcome.dead_letter is not None else "applied")
                             + f" ({unit.transaction_id}): its source's stream goes on",
                             extra={"target": self.target.name, "source": name, "transaction": unit.transaction_id})
            elif unit.transaction_id is None or name not in heads:
                self._deferred.append((name, unit))
                if unit.transaction_id is not None:
                    heads.add(name)
            else:
                behind.setdefault(name, []).append(unit)
        for name, units in behind.items():
            self._waiting.setdefault(name, deque()).extendleft(reversed(units))
        for name in [name for name, queue in self._waiting.items() if not queue]:
            del self._waiting[name]
        self._note_retry()

    def _apply(self, pending: list[tuple[str, Unit]], mapped: list[MappedUnit | None] | None = None,
               own: list[tuple[str, int, int, bytes | None]] | None = None,
               own_offsets: dict[tuple[str, int], int] | None = None,
               read: dict[tuple[str, int], int] | None = None) -> tuple[BatchResult, list[str]]:
        """Apply one batch, with the units deferred by the previous one (`_batch_units`); `_finish` then publishes it.
        `mapped`: the units' ops if already mapped (`Applier.map_unit`). `own`: own change messages read since
        the previous batch, recorded first, and `own_offsets` the own topics' offsets after them."""
        own_edits = self._own_edits(own) if own else []
        now = time.monotonic()
        deferred, waiting = list(self._deferred), {name: deque(queue) for name, queue in self._waiting.items()}
        pending, ops, retried = self._batch_units(pending, mapped, now)
        by_name = {s.source_name: s for s in self.sources}
        units = [u for _, u in pending]
        names = [s for s, _ in pending]
        snapshot_active = now - self._reads_at < SNAPSHOT_ACTIVE_S
        limit_s = self.target.reference_wait_s
        ends_now: dict[tuple[str, int], int | None] | None = None

        def read_past(ends: dict[tuple[str, int], int | None]) -> bool:
            """Whether every record before `ends` was read by the time this batch was handed over (then every snapshot
            read among them is applied, or in this batch ahead of the streamed transactions that wait)."""
            if read is None:
                return False
            for tp, end in ends.items():
                if end is None:
                    end = ends[tp] = self._ends().get(tp)
                    if end is None:
                        return False
                if read.get(tp, 0) < end:
                    return False
            return True

        def may_defer(unit: Unit) -> bool:
            """Whether a unit that refers to a row the target does not hold may wait for it. A snapshot read may, up to
            the limit: the tables of a snapshot arrive in no set order, and capture may still be reading the row's.
            A streamed transaction may while the row can still come: snapshot reads are being applied, or records
            the topics held when it was first deferred are not read yet (capture publishes a source's initial
            snapshot before any of its streamed changes, so once those are read, that snapshot is all in); else it
            is dead-lettered."""
            nonlocal ends_now
            first = self._deferred_since.get(id(unit))
            if first is None:
                if ends_now is None:
                    ends_now = self._ends()
                first = self._deferred_since[id(unit)] = (now, dict(ends_now))
                if unit.transaction_id is not None:
                    log.info(f"a streamed transaction ({unit.transaction_id}) refers to a row not applied yet: it and "
                             "its source's later transactions wait while the row may still come", extra={
                                 "target": self.target.name, "transaction": unit.transaction_id, "limit_s": limit_s})
            since, ends = first
            if unit.transaction_id is not None and not snapshot_active and read_past(ends):
                return False  # every record there was when it was first deferred is read: its row is not coming
            return now - since < limit_s

        def progress_for(outcomes: list[UnitOutcome]) -> Progress:
            applied = [(name, o.unit) for name, o in zip(names, outcomes, strict=True) if not o.deferred]
            progress = Progress()
            with self._assembly:  # the loop's thread is adding the next batch's messages meanwhile
                for name, unit in applied:
                    by_name[name].assembler.mark_applied(unit)
                for source in self.sources:
                    orphans = source.assembler.dropped_orphans
                    if orphans:
                        self._warn_dropped(source, "whose END marker was",
                                           [f"{tx} ({n} events)" for tx, n in orphans])
                        orphans.clear()
                    progress.offsets.update(source.assembler.resume_offsets())
            if own_offsets:
                progress.offsets.update(own_offsets)
            progress.positions.update(positions_of(applied))
            return progress

        try:
            result = self.applier.apply_batch(units, names, progress_for, may_defer=may_defer, mapped=ops,
                                              before_commit=lambda outcomes: self._publish(outcomes, names),
                                              own_edits=own_edits, isolated_from=len(units) - retried)
        except BaseException as exc:
            # Rolled back: the deferred and waiting units are as they were (`pending` goes back to the caller).
            self._deferred, self._waiting = deferred, waiting
            self._note_retry()
            if isinstance(exc, AwaitingOwnEdits):
                log.info("batch rolled back to wait for own changes", extra={"target": self.target.name,
                                                                              "reason": str(exc)})
            raise
        self._defer(names, result.outcomes)
        return result, names

    def _own_edits(self, messages: list[tuple[str, int, int, bytes | None]]) -> list[OwnEdit]:
        """The edits of the own change messages. One that cannot be read is logged and passed over: it is not
        applied here (the other side's applier dead-letters it), only its version would have been recorded,
        and its field is then dated by its row as without the own topics."""
        assert self.own is not None
        edits: list[OwnEdit] = []
        for topic, partition, offset, raw in messages:
            if raw is None:
                continue  # a tombstone after a delete
            table = self._own_tables[topic]
            try:
                envelope = orjson.loads(raw)
                if not isinstance(envelope, dict):
                    raise OwnEditError("the message value is not a JSON object")
                edit = own_edit(envelope, table, self.applier.shapes.primary_key(table.table), self.own.version_of)
            except (orjson.JSONDecodeError, OwnEditError, SkippableRecordError) as exc:
                log.warning("own change not readable: its fields stay dated by their row", extra={
                    "target": self.target.name, "topic": topic, "partition": partition, "offset": offset,
                    "error": str(exc)})
                continue
            if edit is not None:
                edits.append(edit)
        return edits

    def _finish(self, result: BatchResult, names: list[str]) -> None:
        """After a batch committed, in the loop's thread (the writer goes on with the next batch meanwhile):
        the stats, the on_batch hook."""
        self.stats.batches += 1
        self.stats.units += len(result.outcomes)
        events = dead_letters = 0
        for outcome in result.outcomes:  # one loop, no generator: the batch may hold thousands
            events += len(outcome.unit.events)
            if outcome.dead_letter or outcome.held_behind:
                dead_letters += 1
        self.stats.events += events
        self.stats.dead_letters += dead_letters
        self.stats.last_batch = result
        if result.outcomes and result.outcomes[-1].unit.events:
            source = result.outcomes[-1].unit.events[-1].value.get("source")
            committed_ms = source.get("ts_ms") if isinstance(source, dict) else None
            if isinstance(committed_ms, int):  # (a message that could not be read has none)
                self.stats.latency_s = max(0.0, time.time() - committed_ms / 1000)
        if self.on_batch is not None:
            self.on_batch(result)


def _publish_outcomes(audit: AuditPublisher, target: str, outcomes: list[UnitOutcome], names: list[str]) -> None:
    last_version: Version | None = None
    reason = ""
    for name, outcome in zip(names, outcomes, strict=True):
        unit = outcome.unit
        if outcome.dead_letter is not None or outcome.held_behind is not None:
            audit.dead_letter(
                target=target, source=name, transaction=unit.transaction_id,
                error=outcome.dead_letter or f"HeldBehind: dead letter {outcome.held_behind}",
                held_behind=outcome.held_behind,
                envelopes=[{"topic": e.topic, "partition": e.partition, "offset": e.offset, "key": e.key,
                            "value": e.value} for e in unit.events],
            )
            continue
        for op, decisions in outcome.op_decisions:
            if decisions is not None:
                audit.decision(target=target, table=op.table, key=op.key, mapping=op.mapping, source=name,
                               transaction=unit.transaction_id, decisions=decisions)
                continue
            version = op.version
            assert version is not None  # an op decided by new_row_decisions has one
            if version is not last_version:  # the ops of one change share their version
                last_version, reason = version, new_row_reason(version)
            audit.new_row(target=target, table=op.table, key=op.key, mapping=op.mapping, source=name,
                          transaction=unit.transaction_id, version=version, reason=reason,
                          fields=op.fields)


def target_dialect(target: TargetConfig) -> TargetDialect:
    from replicator.apply.dialect.mariadb import MariaDbDialect
    from replicator.apply.dialect.postgres import PostgresDialect

    connection = target.connection.resolve(f"targets.{target.name}.connection",
                                           5432 if target.kind == "postgresql" else 3306)
    dialect = PostgresDialect if target.kind == "postgresql" else MariaDbDialect
    return dialect(connection, target.origin_name, session_timeout_s=target.writer_session_timeout_s)


def build_apply(config: ReplicatorConfig, target_name: str) -> ApplyRunner:
    """Wire one configured target: mappings, dialect, the topics of the systems it applies from."""
    from replicator.mapping.engine import MappingEngine

    target = config.target(target_name)
    assert config.mappings is not None
    mapping_set = config.mapping_set()
    if target.system not in mapping_set.systems:
        raise ConfigError(f"target {target.name}: system {target.system!r} is not in the mappings")
    dialect = target_dialect(target)
    engine = MappingEngine(mapping_set, target=target.system)  # only the rules writing into this target
    sources: list[SourceTopics] = []
    for system in target.apply_from:
        spec = mapping_set.systems.get(system)
        if spec is None:
            raise ConfigError(f"target {target.name}: apply_from system {system!r} is not in the mappings")
        tables = sorted({mapping_set.qualified(rule.source) for rule in mapping_set.rules
                         if rule.source.system == system and rule.target.system == target.system})
        sources.append(SourceTopics(system, spec.source_name, tables))

    routes = {tuple(route) for route in MappingEngine(mapping_set).source_tables()}

    def ops_for(envelope: dict[str, Any]) -> list[TargetOp]:
        ops = engine.ops_for(envelope)
        if ops:
            return ops  # some rule of this target read the table, so some rule knows it
        source = envelope["source"]
        namespace = source.get("schema") if source.get("connector") == "postgresql" else source.get("db")
        if (source.get("name"), namespace, source.get("table")) not in routes:
            # It came on a topic this applier reads, yet no rule knows its table: never drop it silently.
            raise SkippableRecordError(
                f"no mapping rule reads {source.get('name')}.{namespace}.{source.get('table')}"
            )
        return ops

    settings = config.kafka.topics
    kafka = config.kafka.client()
    ensure_topics(kafka, [
        TopicSpec(topic, settings.partitions, settings.replication_factor,
                  (("retention.ms", str(settings.retention_ms)),))
        for topic in (AUDIT_TOPIC, DLQ_TOPIC)
    ])
    local_times = {
        mapping_set.qualified(rule.target): (rule.target.local_time.column, rule.target.local_time.tz)
        for rule in mapping_set.rules
        if rule.target.system == target.system and rule.target.local_time is not None
    }
    tracked_columns: dict[str, set[str]] = {}
    for rule in mapping_set.rules:
        if rule.target.system == target.system:
            tracked_columns.setdefault(mapping_set.qualified(rule.target), set()).update(rule.fields)
    return ApplyRunner(target, dialect, ops_for, sources, kafka,
                       target_priority=mapping_set.systems[target.system].priority, local_times=local_times,
                       tracked_columns=tracked_columns, own=own_topics(mapping_set, target.system, engine.version))


def own_topics(mapping_set: MappingSet, system: str, version_of: VersionOf) -> OwnTopics | None:
    """The topics of `system`'s own tables that rules write into and its capture publishes (some rule reads
    them), with the columns whose local edits are versioned: those a last_writer_wins rule writes with a
    plain value (`apply.own_changes`)."""
    captured = {mapping_set.qualified(rule.source) for rule in mapping_set.rules if rule.source.system == system}
    columns: dict[str, set[str]] = {}
    owned: dict[str, dict[str, str]] = {}
    for rule in mapping_set.rules:
        table = mapping_set.qualified(rule.target)
        if rule.target.system != system or table not in captured:
            continue
        local_time = rule.target.local_time.column if rule.target.local_time is not None else None
        for name, spec in rule.fields.items():
            policy = spec.effective_policy
            # The row's own edit-time column dates edits; it is not one (and travels as a number).
            if policy is Policy.LAST_WRITER_WINS and spec.aggregate is None and name != local_time:
                columns.setdefault(table, set()).add(name)
            elif policy is Policy.OWNER and spec.owner is not None and spec.owner != system:
                owned.setdefault(table, {})[name] = spec.owner
    if not columns and not owned:
        return None
    source_name = mapping_set.systems[system].source_name
    return OwnTopics({table_topic(source_name, *table.split(".", 1)): OwnTable(
        table, frozenset(columns.get(table, ())), owned.get(table, {})) for table in {*columns, *owned}}, version_of)
