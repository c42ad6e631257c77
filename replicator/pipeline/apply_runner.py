"""Runs one applier: Kafka topics of the systems it applies from -> reassembled transactions -> target.

Progress lives in the target database, written in the same transaction as the data, so the consumer
assigns its partitions itself at the stored offsets (no group offsets are trusted) and a crash at any
instruction resumes exactly where the last committed batch ended. Anything unexpected propagates: the
supervisor restarts the runner, which re-reads its progress from the target.
"""

from __future__ import annotations

import base64
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from replicator.apply.applier import Applier, BatchResult, UnitOutcome, positions_of
from replicator.apply.dialect.base import Progress, TargetDialect
from replicator.apply.reassembly import Event, TransactionAssembler, Unit
from replicator.config import ReplicatorConfig, TargetConfig
from replicator.errors import ConfigError, RetriableError, SkippableRecordError
from replicator.mapping.ops import TargetOp
from replicator.transport.audit import AuditPublisher
from replicator.transport.kafka import TopicSpec, ensure_topics
from replicator.transport.topics import AUDIT_TOPIC, DLQ_TOPIC, table_topic, transaction_topic

log = logging.getLogger(__name__)

GC_THRESHOLDS = (100_000, 50, 100)  # the cyclic collector's thresholds while the runner applies (see run)


@dataclass
class ApplyStats:
    batches: int = 0
    units: int = 0
    events: int = 0
    dead_letters: int = 0
    last_batch: BatchResult | None = None


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


class ApplyRunner:
    def __init__(
        self,
        target: TargetConfig,
        dialect: TargetDialect,
        ops_for: Callable[[dict[str, Any]], list[TargetOp]],
        sources: list[SourceTopics],
        bootstrap: str,
        *,
        target_priority: int,
        local_times: Mapping[str, tuple[str, str]] | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.target = target
        self.dialect = dialect
        self.sources = sources
        self.bootstrap = bootstrap
        self.applier = Applier(dialect, ops_for, consumer=target.name, target_system=target.system,
                               target_priority=target_priority, local_times=local_times)
        self.stats = ApplyStats()
        self.on_batch = on_batch
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self._deferred: list[tuple[str, Unit]] = []
        self.audit: AuditPublisher | None = AuditPublisher(bootstrap, client_id=f"replicator-apply-{target.name}")
        self._deferred_since: dict[int, float] = {}
        self._route: dict[str, SourceTopics] = {}
        self._markers: dict[str, SourceTopics] = {}
        for source in sources:
            for topic in source.table_topics:
                self._route[topic] = source
            self._markers[transaction_topic(source.source_name)] = source

    def stop(self) -> None:
        self._stopping.set()

    def _publish(self, result: BatchResult, names: list[str]) -> None:
        if self.audit is not None:
            _publish_outcomes(self.audit, self.target.name, result, names)

    def run(self) -> ApplyStats:
        self.dialect.connect()
        try:
            progress = self.applier.prepare()
            for source in self.sources:
                source.assembler.applied = {
                    domain: seq for (name, domain), seq in progress.positions.items() if name == source.source_name
                }
            consumer = self._consumer(progress)
            thresholds = gc.get_threshold()
            try:
                # Every event makes many short-lived objects, almost all freed by reference counting, while
                # batches of messages and units stay alive: with the default thresholds the cyclic collector
                # runs every 700 allocations and often scans the whole heap (a fifth of the applier's CPU).
                gc.set_threshold(*GC_THRESHOLDS)
                self.ready.set()
                self._loop(consumer)
            finally:
                gc.set_threshold(*thresholds)
                consumer.close()
                if self.audit is not None:
                    self.audit.flush()
        finally:
            self.dialect.close()
        return self.stats

    def _consumer(self, progress: Progress) -> Consumer:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"replicator-apply-{self.target.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 10,
        })
        topics = [*self._route, *self._markers]
        metadata = consumer.list_topics(timeout=30)
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
        consumer.assign(assignment)
        return consumer

    def _loop(self, consumer: Consumer) -> None:
        pending: list[tuple[str, Unit]] = []
        first_ready = 0.0
        limit = self.target.batch_max_events
        linger = self.target.batch_max_ms / 1000
        last_retry_check = 0.0
        last_deferred_try = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - last_retry_check >= 1.0 and not pending:
                last_retry_check = time.monotonic()
                self.applier.process_retries()
            messages = consumer.consume(num_messages=min(limit, 10000), timeout=0.05)
            for msg in messages:
                self._route_message(msg, pending)
            for source in self.sources:
                for unit in source.assembler.ready():
                    if not pending:
                        first_ready = time.monotonic()
                    pending.append((source.source_name, unit))
            events = sum(len(u.events) for _, u in pending)
            if pending and (events >= limit or time.monotonic() - first_ready >= linger or not messages):
                self._apply(pending)
                pending = []
            elif self._deferred and time.monotonic() - last_deferred_try >= 0.5:
                last_deferred_try = time.monotonic()
                self._apply([])
        if pending:
            self._apply(pending)

    def _route_message(self, msg: Any, pending: list[tuple[str, Unit]]) -> None:
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
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
            pending.append((source.source_name, Unit(None, None, [bad], None, error=f"unreadable message: {exc}")))

    @staticmethod
    def _check_envelope(topic: str, offset: int, value: dict[str, Any]) -> None:
        if "op" in value and "source" in value:
            return
        missing = [f for f in ("op", "source") if f not in value]
        if missing:
            raise SkippableRecordError(f"{topic}@{offset}: not a change event (no {', '.join(missing)})")

    # How long a snapshot read may wait for the row it refers to (tables of a snapshot arrive in no set
    # order) before it is dead-lettered like any other record that refers to a missing row.
    DEFER_LIMIT_S = 60.0

    def _apply(self, pending: list[tuple[str, Unit]]) -> None:
        pending = [*self._deferred, *pending]
        self._deferred = []
        by_name = {s.source_name: s for s in self.sources}
        units = [u for _, u in pending]
        names = [s for s, _ in pending]
        now = time.monotonic()

        def may_defer(unit: Unit) -> bool:
            return unit.transaction_id is None and now - self._deferred_since.setdefault(id(unit), now) < \
                self.DEFER_LIMIT_S

        def progress_for(outcomes: list[UnitOutcome]) -> Progress:
            applied = [(name, o.unit) for name, o in zip(names, outcomes, strict=True) if not o.deferred]
            for name, unit in applied:
                by_name[name].assembler.mark_applied(unit)
            progress = Progress()
            for source in self.sources:
                progress.offsets.update(source.assembler.resume_offsets())
            progress.positions.update(positions_of(applied))
            return progress

        result = self.applier.apply_batch(units, names, progress_for, may_defer=may_defer)
        for name, outcome in zip(names, result.outcomes, strict=True):
            if outcome.deferred:
                self._deferred.append((name, outcome.unit))
            else:
                self._deferred_since.pop(id(outcome.unit), None)
        self._publish(result, names)
        self.stats.batches += 1
        self.stats.units += len(units)
        self.stats.events += sum(len(u.events) for u in units)
        self.stats.dead_letters += sum(1 for o in result.outcomes if o.dead_letter or o.held_behind)
        self.stats.last_batch = result
        if self.on_batch is not None:
            self.on_batch(result)


def _publish_outcomes(audit: AuditPublisher, target: str, result: BatchResult, names: list[str]) -> None:
    for name, outcome in zip(names, result.outcomes, strict=True):
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
        by_op: dict[int, tuple[TargetOp, list[Any]]] = {}
        for op, decision in outcome.decisions:
            group = by_op.get(id(op))
            if group is None:
                group = by_op[id(op)] = (op, [])
            group[1].append(decision)
        for op, decisions in by_op.values():
            audit.decision(target=target, table=op.table, key=op.key, mapping=op.mapping, source=name,
                           transaction=unit.transaction_id, decisions=decisions)
    audit.poll()


def target_dialect(target: TargetConfig) -> TargetDialect:
    from replicator.apply.dialect.mariadb import MariaDbDialect
    from replicator.apply.dialect.postgres import PostgresDialect

    connection = target.connection.resolve(f"targets.{target.name}.connection",
                                           5432 if target.kind == "postgresql" else 3306)
    if target.kind == "postgresql":
        return PostgresDialect(connection, target.origin_name)
    return MariaDbDialect(connection, target.origin_name)


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
        source = envelope["source"]
        namespace = source.get("schema") if source.get("connector") == "postgresql" else source.get("db")
        if (source.get("name"), namespace, source.get("table")) not in routes:
            # It came on a topic this applier reads, yet no rule knows its table: never drop it silently.
            raise SkippableRecordError(
                f"no mapping rule reads {source.get('name')}.{namespace}.{source.get('table')}"
            )
        return engine.ops_for(envelope)

    settings = config.kafka.topics
    ensure_topics(config.kafka.bootstrap(), [
        TopicSpec(topic, settings.partitions, settings.replication_factor,
                  (("retention.ms", str(settings.retention_ms)),))
        for topic in (AUDIT_TOPIC, DLQ_TOPIC)
    ])
    local_times = {
        mapping_set.qualified(rule.target): (rule.target.local_time.column, rule.target.local_time.tz)
        for rule in mapping_set.rules
        if rule.target.system == target.system and rule.target.local_time is not None
    }
    return ApplyRunner(target, dialect, ops_for, sources, config.kafka.bootstrap(),
                       target_priority=mapping_set.systems[target.system].priority, local_times=local_times)
