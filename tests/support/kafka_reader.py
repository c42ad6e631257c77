"""Reading what capture wrote: every message of some topics, from the beginning, until quiet."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any


def read_topics(bootstrap: str, topics: list[str], *, until: int | None = None, quiet_s: float = 3.0,
                timeout_s: float = 60.0, since_ms: int | None = None) -> list[Record]:
    """All records of `topics` from the start, or from the first one written at or after `since_ms` (a
    shared topic such as replicator.audit, which a reused stack may hold millions of records of); stops once
    `until` records arrived and nothing came for `quiet_s`, or (without `until`) after `quiet_s` of silence.
    Fails when `timeout_s` passes first."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "topic.metadata.refresh.interval.ms": 1000})
    records: list[Record] = []
    try:
        if since_ms is None:
            consumer.subscribe(topics)
        else:
            metadata = consumer.list_topics(timeout=10)
            wanted = [TopicPartition(topic, partition, since_ms) for topic in topics if topic in metadata.topics
                      for partition in metadata.topics[topic].partitions]
            # An offset of -1 (nothing written since): read from the end, i.e. what comes next.
            consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                             for tp in consumer.offsets_for_times(wanted, timeout=10)])
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"read {len(records)} records of {topics}, expected {until} within {timeout_s}s")
            if now - last > quiet_s and (until is None or len(records) >= until):
                return records
            batch = consumer.consume(10000, 0.5)
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                        continue
                    raise AssertionError(f"reading {topics}: {error}")
                key = msg.key()
                value = msg.value()
                records.append(Record(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                                      None if key is None else orjson.loads(key),
                                      None if value is None else orjson.loads(value)))
            if batch:
                last = time.monotonic()
    finally:
        consumer.close()


def replay_ids(records: list[Record]) -> dict[int, int]:
    """id -> n of a table with columns (id, n), as a consumer applying its events in topic order sees it
    (deletes remove the row; tombstones are skipped)."""
    state: dict[int, int] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value is None:
            continue
        if r.value["op"] == "d":
            state.pop(r.key["id"], None)
        else:
            state[r.key["id"]] = r.value["after"]["n"]
    return state
