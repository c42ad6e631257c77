"""Reading what capture wrote: every message of some topics, from the beginning, until quiet."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any


def read_topics(bootstrap: str, topics: list[str], *, until: int | None = None, quiet_s: float = 3.0,
                timeout_s: float = 60.0) -> list[Record]:
    """All records of `topics` from the start; stops once `until` records arrived and nothing came for
    `quiet_s`, or (without `until`) after `quiet_s` of silence. Fails when `timeout_s` passes first."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "topic.metadata.refresh.interval.ms": 1000})
    records: list[Record] = []
    try:
        consumer.subscribe(topics)
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
