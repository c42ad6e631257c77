"""Publishing apply decisions to `replicator.audit` and dead letters to `replicator.dlq`.

Records are published after the target transaction that made the decisions committed, so the topics
never tell of a decision the target does not hold. The target's own tables (row versions, dead letters)
remain the record of truth; a crash between commit and publish can lose the topic copy of one batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import Producer

from replicator.errors import FatalError
from replicator.transport.topics import AUDIT_TOPIC, DLQ_TOPIC


class AuditPublisher:
    def __init__(self, bootstrap: str, *, client_id: str) -> None:
        # Delivery reports only for failures: _on_delivery has nothing to do for the others.
        self._producer = Producer({"bootstrap.servers": bootstrap, "client.id": client_id,
                                   "enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4",
                                   "delivery.report.only.error": True})
        self._failure: str | None = None
        # The parts of new_row's records that repeat: per (target, table, mapping, source), per column.
        self._row_starts: dict[tuple[str, str, str, str], tuple[bytes, bytes, bytes]] = {}
        self._columns: dict[str, bytes] = {}

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None and self._failure is None:
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
        """The record `decision` writes for a row created from last_writer_wins fields only (`fields`: column
        -> its FieldChange), each field applied and written (`resolver.new_row_decisions`), the same bytes:
        written by joining orjson's text of each part, the parts that repeat from row to row made once (the
        record of every new row, so no dict per field)."""
        dumps = orjson.dumps
        start = self._row_starts.get((target, table, mapping, source))
        if start is None:
            head = b'{"target":' + dumps(target) + b',"table":' + dumps(table)
            start = self._row_starts[(target, table, mapping, source)] = (
                head, b'{"decision":"applied",' + head[1:] + b',"key":',
                b',"mapping":' + dumps(mapping) + b',"source":' + dumps(source) + b',"transaction":')
        head, record_start, after_key = start
        applied = b',"policy":"last_writer_wins","outcome":"applied","reason":' + dumps(reason) + b',"incoming":'
        written = b',"incoming_version":' + dumps(version) + b',"current":null,"current_version":null,"result":'
        key_json = dumps(key, default=str)
        parts = [record_start, key_json, after_key, dumps(transaction), b',"fields":[']
        columns = self._columns
        separator = b'{"column":'
        for column, change in fields.items():
            value_json = dumps(change.value, default=str)
            column_json = columns.get(column)
            if column_json is None:
                column_json = columns[column] = dumps(column)
            parts += (separator, column_json, applied, value_json, written, value_json, b',"written":true}')
            separator = b',{"column":'
        parts.append(b"]}")
        self._produce(AUDIT_TOPIC, head + b',"key":' + key_json + b"}", b"".join(parts))

    def dead_letter(self, *, target: str, source: str, transaction: str | None, error: str, held_behind: int | None,
                    envelopes: list[dict[str, Any]]) -> None:
        status = "held" if held_behind is not None else "dead_lettered"
        record = {"decision": status, "target": target, "source": source, "transaction": transaction,
                  "error_class": error.split(":", 1)[0], "error": error, "envelopes": envelopes}
        self._send(DLQ_TOPIC, {"target": target, "transaction": transaction}, record)
        self._send(AUDIT_TOPIC, {"target": target, "transaction": transaction},
                   {k: v for k, v in record.items() if k != "envelopes"})

    def echo_suppressed(self, *, source: str, transaction: str, origin: str) -> None:
        self._send(AUDIT_TOPIC, {"source": source, "transaction": transaction},
                   {"decision": "echo_suppressed", "source": source, "transaction": transaction, "origin": origin})

    def poll(self) -> None:
        self._producer.poll(0)
        if self._failure is not None:
            raise FatalError(self._failure)

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)
        if self._failure is not None:
            raise FatalError(self._failure)
