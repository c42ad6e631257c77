"""Publishing apply decisions to `replicator.audit` and dead letters to `replicator.dlq`.

An applier publishes a batch's records, and waits until Kafka confirmed them, before the target
transaction that made the decisions commits: a crash can never lose the record of a committed decision.
It can repeat one: a batch whose records were published but which did not commit is applied again after
the restart and published again, later in the topic, so the last record of a source transaction and key
is the decision the target holds. The target's own tables (row versions, dead letters) remain the record
of truth.

An applied record lists its fields' decisions (`fields`). The commonest one, a row the target did not
hold created from one change with every field last_writer_wins, is written compactly instead: the
decision once (`new_row`: policy, outcome, reason, version) and the values (`values`), a fifth of the
size. `field_decisions` reads both forms alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import Producer

from replicator.conflict.policies import Outcome
from replicator.errors import FatalError, RetriableError
from replicator.mapping.ops import Policy, Version
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import close_producer
from replicator.transport.topics import AUDIT_TOPIC, DLQ_TOPIC


class AuditPublisher:
    def __init__(self, kafka: KafkaClient, *, client_id: str, producer: Any = None) -> None:
        """`producer`: a stand-in for confluent-kafka's Producer (tests that look at the record bytes)."""
        # Delivery reports only for failures: _on_delivery has nothing to do for the others.
        self._producer = producer or Producer(kafka.config({
            "client.id": client_id, "enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4",
            "delivery.report.only.error": True}))
        self._failure: str | None = None
        self._closed = False
        # The parts of new_row's records that repeat: per (target, table, mapping, source), per column.
        self._row_starts: dict[tuple[str, str, str, str], tuple[bytes, bytes, bytes]] = {}
        # The decision part of the last new-row record and what it was made of: the ops of one change share
        # it (most rows have a version of their own, so a cache keyed by version would only cost its hashing).
        self._decided: tuple[Any, str, bytes] | None = None

    def _on_delivery(self, err: Any, msg: Any) -> None:
        # Once closing, the reports are of the records `close` purged: dropped on purpose, not a failure.
        if err is not None and self._failure is None and not self._closed:
            self._failure = f"Kafka refused an audit record for {msg.topic()}: {err}"

    def _send(self, topic: str, key: dict[str, Any], value: dict[str, Any]) -> None:
        self._produce(topic, orjson.dumps(key, default=str), orjson.dumps(value, default=str))

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.1)

    def decision(self, *, target: str, table: str, key: dict[str, Any], mapping: str, source: str,
                 transaction: str | None, decisions: list[Any]) -> None:
        if _new_row_decisions(decisions):
            # The decisions `resolver.new_row_decisions` makes: the compact record, as `new_row` writes it.
            first = decisions[0]
            self._new_row(target, table, key, mapping, source, transaction, first.incoming_version, first.reason,
                          {d.column: d.incoming_value for d in decisions})
            return
        self._send(AUDIT_TOPIC, {"target": target, "table": table, "key": key}, {
            "decision": "applied", "target": target, "table": table, "key": key, "mapping": mapping,
            "source": source, "transaction": transaction,
            # orjson writes the policy and outcome enums as their text, and a Version (a dataclass) as
            # {"ts_ms", "system", "priority", "position"}.
            "fields": [{
                "column": d.column, "policy": d.policy, "outcome": d.outcome, "reason": d.reason,
                "incoming": d.incoming_value, "incoming_version": d.incoming_version,
                "current": d.current_value, "current_version": d.current_version,
                "result": d.result, "written": d.write,
            } for d in decisions],
        })

    def new_row(self, *, target: str, table: str, key: dict[str, Any], mapping: str, source: str,
                transaction: str | None, version: Any, reason: str, fields: Mapping[str, Any]) -> None:
        """The record of a row created from last_writer_wins fields only (`fields`: column -> its FieldChange),
        each field applied and written (`resolver.new_row_decisions`): the same bytes `decision` writes for
        those decisions."""
        self._new_row(target, table, key, mapping, source, transaction, version, reason,
                      {column: change.value for column, change in fields.items()})

    def _new_row(self, target: str, table: str, key: dict[str, Any], mapping: str, source: str,
                 transaction: str | None, version: Any, reason: str, values: dict[str, Any]) -> None:
        # Written by joining orjson's text of each part, the parts that repeat from row to row made once.
        dumps = orjson.dumps
        start = self._row_starts.get((target, table, mapping, source))
        if start is None:
            head = b'{"target":' + dumps(target) + b',"table":' + dumps(table)
            start = self._row_starts[(target, table, mapping, source)] = (
                head, b'{"decision":"applied",' + head[1:] + b',"key":',
                b',"mapping":' + dumps(mapping) + b',"source":' + dumps(source) + b',"transaction":')
        head, record_start, after_key = start
        key_json = dumps(key, default=str)
        last = self._decided
        if last is not None and last[0] is version and last[1] == reason:
            decided = last[2]
        else:
            # The version as orjson writes a Version dataclass, from a dict: orjson serialises a slotted
            # dataclass at less than half the speed of the same dict.
            decided = (b',"new_row":{"policy":"last_writer_wins","outcome":"applied","reason":' + dumps(reason)
                       + b',"version":' + dumps(_version_fields(version)) + b'},"values":')
            self._decided = (version, reason, decided)
        self._produce(AUDIT_TOPIC, head + b',"key":' + key_json + b"}", b"".join(
            (record_start, key_json, after_key, dumps(transaction), decided, dumps(values, default=str), b"}")))

    def dead_letter(self, *, target: str, source: str, transaction: str | None, error: str, held_behind: int | None,
                    envelopes: list[dict[str, Any]]) -> None:
        status = "held" if held_behind is not None else "dead_lettered"
        record = {"decision": status, "target": target, "source": source, "transaction": transaction,
                  "error_class": error.split(":", 1)[0], "error": error, "envelopes": envelopes}
        self._send(DLQ_TOPIC, {"target": target, "transaction": transaction}, record)
        self._send(AUDIT_TOPIC, {"target": target, "transaction": transaction},
                   {k: v for k, v in record.items() if k != "envelopes"})

    def close(self) -> None:
        """Release the client (see `close_producer`): records not flushed are dropped. A second call does
        nothing."""
        if not self._closed:
            self._closed = True
            close_producer(self._producer)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until Kafka confirmed every record produced so far (librdkafka sends at once, whatever
        linger.ms); a refused record is fatal, an unconfirmed one after `timeout` retriable."""
        remaining = self._producer.flush(timeout)
        if self._failure is not None:
            raise FatalError(self._failure)
        if remaining:
            raise RetriableError(f"{remaining} audit records still unconfirmed by Kafka after {timeout:.0f}s")


def _version_fields(version: Any) -> Any:
    """A Version's fields as orjson writes the dataclass itself (anything else: as it is)."""
    if isinstance(version, Version):
        return {"ts_ms": version.ts_ms, "system": version.system, "priority": version.priority,
                "position": version.position}
    return version


def echo_suppressed_record(source: str, transaction: str, origin: str | None) -> tuple[bytes, bytes]:
    """Key and value of the record a capture publishes for a transaction it does not publish because the
    replicator wrote it (`origin`: its tag, the writer session's replication origin or `skip_replication`)."""
    key = orjson.dumps({"source": source, "transaction": transaction})
    value = orjson.dumps({"decision": "echo_suppressed", "source": source, "transaction": transaction,
                          "origin": origin})
    return key, value


def _new_row_decisions(decisions: list[Any]) -> bool:
    """Whether `decisions` are a new row's (`resolver.new_row_decisions`): the row did not exist, and every
    field is last_writer_wins, applied, written as it came, from one version for one reason."""
    if not decisions:
        return False
    first = decisions[0]
    version, reason = first.incoming_version, first.reason
    if version is None:
        return False
    for d in decisions:
        if (d.row_exists or d.policy is not Policy.LAST_WRITER_WINS or d.outcome is not Outcome.APPLIED
                or not d.write or d.incoming_rank is not None or d.incoming_version != version or d.reason != reason
                or (d.result is not d.incoming_value and d.result != d.incoming_value)):
            return False
    return True


def field_decisions(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-field decisions of an applied audit record, in either form: its `fields`, or those its
    compact `new_row` form stands for (each field applied onto a missing row, current value and version
    null, result the incoming value, written)."""
    fields = record.get("fields")
    if isinstance(fields, list):
        return [f for f in fields if isinstance(f, dict)]
    decided, values = record.get("new_row"), record.get("values")
    if not isinstance(decided, dict) or not isinstance(values, dict):
        return []
    return [{"column": column, "policy": decided.get("policy"), "outcome": decided.get("outcome"),
             "reason": decided.get("reason"), "incoming": value, "incoming_version": decided.get("version"),
             "current": None, "current_version": None, "result": value, "written": True}
            for column, value in values.items()]
