"""Kafka I/O: an idempotent producer whose bulk confirmations feed the capture checkpoint, topic creation,
and reading the last value of a key from a compacted topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from replicator.errors import FatalError, RetriableError
from replicator.transport.client import KafkaClient


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()


def close_producer(producer: Any) -> None:
    """Release a producer's threads and broker connections now. Messages it still holds are dropped, not
    waited for (confluent-kafka's close would wait for each until its message.timeout.ms, minutes when the
    broker is away): whoever needs them delivered has flushed them, and whatever was never confirmed was
    never acknowledged either, so it is sent again after a restart.

    Why not leave it to the garbage collector: a producer whose delivery callback is a method of its owner
    is in a reference cycle, freed only by a full collection, which a busy process runs rarely; a worker
    restarted every few seconds through an outage would pile up clients, a handful of threads each."""
    producer.purge(in_queue=True, in_flight=True, blocking=False)
    producer.close()


def _refused(error: KafkaError) -> bool:
    """Whether the cluster refused this client's credentials or certificate, or its own certificate could not
    be verified: not worth retrying. librdkafka has no code of its own for the certificate cases: a failed
    verification is an SSL error naming the certificate (other SSL errors, such as a handshake cut short by a
    restarting broker, are retried), and the broker's TLS alert about the client's certificate comes as a
    transport error."""
    code, text = error.code(), error.str()
    return (code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
            or (code == KafkaError._SSL and "certificate" in text)
            or (code == KafkaError._TRANSPORT and "tls alert" in text and "certificate" in text))


def ensure_topics(kafka: KafkaClient, specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    A broker that refuses (bad name, too few brokers for the replication factor, no permission) stops
    start-up with its own message and the topic's name; so does a cluster that refuses this client's
    credentials or whose certificate cannot be verified. A cluster that does not answer is retriable.
    """
    reported: list[KafkaError] = []  # librdkafka's errors (error_cb), which say why a request failed
    admin = AdminClient(kafka.config({"error_cb": reported.append}))
    existing = _cluster_topics(admin, kafka.bootstrap, reported, timeout)
    wanted = [spec for spec in specs if spec.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=s.replication_factor, config=dict(s.config)
            )
            for s in wanted
        ],
        request_timeout=timeout,
    )
    created: list[str] = []
    problems: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process created it meanwhile
            problems.append(f"topic {name}: the broker refused to create it: {error}")
    if problems:
        raise FatalError("; ".join(problems))
    _wait_for_leaders(admin, created, timeout)
    return created


def _cluster_topics(admin: AdminClient, bootstrap: str, reported: list[KafkaError], timeout: float) -> set[str]:
    """The cluster's topic names. Asked a second at a time, so that a cluster that refuses this client (its
    reason comes through error_cb) stops start-up at once rather than after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return set(admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic()))).topics)
        except KafkaException as exc:
            failure = str(exc)
        # Raised outside the except block: an exception chained to the KafkaException would hold this frame, and
        # with it the admin client and its threads, in a reference cycle until a full garbage collection.
        admin.poll(0)  # serves error_cb
        refused = [e for e in reported if _refused(e)]
        if refused:
            raise FatalError(f"Kafka at {bootstrap} refused this client: {refused[-1].str()} "
                             "(see kafka.security_protocol, kafka.sasl and kafka.tls in the config)")
        if time.monotonic() >= deadline:
            why = [e for e in reported if e.code() != KafkaError._ALL_BROKERS_DOWN]
            raise RetriableError(f"Kafka at {bootstrap} did not answer: {why[-1].str() if why else failure}")


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout: float) -> None:
    """A created topic is usable once every partition has a leader; until then reads fail with
    NOT_LEADER_FOR_PARTITION, so wait here rather than make every caller retry."""
    deadline = time.monotonic() + timeout
    waiting = set(topics)
    while waiting:
        metadata = admin.list_topics(timeout=timeout)
        for name in list(waiting):
            topic = metadata.topics.get(name)
            if topic is not None and topic.error is None and topic.partitions and all(
                p.leader >= 0 for p in topic.partitions.values()
            ):
                waiting.discard(name)
        if waiting:
            if time.monotonic() > deadline:
                raise RetriableError(f"topics {sorted(waiting)} have no partition leader after {timeout:.0f}s")
            time.sleep(0.1)


class EventProducer:
    """An idempotent, ordered producer whose confirmations are taken in bulk.

    librdkafka reports failed deliveries only (it already retried them): the first one is kept and raised,
    naming the topic, by the next produce, poll, confirm or flush: as RetriableError when the message
    timed out (Kafka away longer than `message_timeout_ms`: a restart re-sends from the last acknowledged
    position) or librdkafka calls the error retriable, else as FatalError. Success is learnt from
    `confirm`: a flush that returns with nothing outstanding means every message produced before it is in
    Kafka. No per-message delivery report reaches Python, which spares the capture thread a call and a
    message object per event (capture/checkpoint.py).
    """

    def __init__(
        self, kafka: KafkaClient, *, client_id: str, linger_ms: int = 10, compression: str = "lz4",
        message_timeout_ms: int = 300_000,
    ) -> None:
        self._failure: str | None = None
        self._failure_retriable = False
        self._closed = False
        self._producer = Producer(
            kafka.config({
                "client.id": client_id,
                "enable.idempotence": True,  # implies acks=all and ordered, gap-free retries
                "compression.type": compression,
                "linger.ms": linger_ms,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 500000,
                "queue.buffering.max.kbytes": 1048576,
                "message.timeout.ms": message_timeout_ms,
                "delivery.report.only.error": True,
                "on_delivery": self._on_failure,
            })
        )
        # confluent-kafka's own produce(topic, value, key), for a caller's hot loop that would rather not
        # pay a Python call per message: it raises BufferError when librdkafka's queue is full, and the
        # caller then hands the same message to `produce`, which waits for room.
        self.raw_produce = self._producer.produce

    def _on_failure(self, err: Any, msg: Any) -> None:
        # Once closing, the reports are of the messages `close` purged: dropped on purpose, not a failure.
        if err is not None and self._failure is None and not self._closed:
            self._failure = f"Kafka did not take a message for {msg.topic()}: {err}"
            self._failure_retriable = isinstance(err, KafkaError) and (
                err.code() == KafkaError._MSG_TIMED_OUT or is_transient(err)
            )

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._raise_failure()
        produce = self._producer.produce
        while True:
            try:
                # Positional (topic, value, key): keyword arguments cost confluent-kafka a dict lookup each.
                produce(topic, value, key)
                return
            except BufferError:
                # The local queue is full: serve reports and let librdkafka send until there is room.
                self._producer.poll(0.1)
                self._raise_failure()

    @property
    def unconfirmed(self) -> int:
        """Messages produced and not yet confirmed by Kafka (0: everything produced so far is in)."""
        return len(self._producer)

    def confirm(self, timeout: float) -> bool:
        """Send what lingers now and wait up to `timeout` s: True once every message produced before the
        call is confirmed by Kafka; False if some are still on their way (nothing is lost: ask again)."""
        remaining = self._producer.flush(timeout)
        self._raise_failure()
        return remaining == 0

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)
        self._raise_failure()

    def flush(self, timeout: float = 60.0) -> None:
        if not self.confirm(timeout):
            raise RetriableError(f"{len(self._producer)} messages still unconfirmed by Kafka after {timeout:.0f}s")

    def close(self) -> None:
        """Release the client (see `close_producer`); a second call does nothing."""
        if not self._closed:
            self._closed = True
            close_producer(self._producer)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise (RetriableError if self._failure_retriable else FatalError)(self._failure)


def read_last_value(kafka: KafkaClient, topic: str, key: bytes, timeout: float = 30.0) -> bytes | None:
    """The value of the newest message with `key` in `topic` (a small compacted topic), or None."""
    consumer = Consumer(
        kafka.config({
            "group.id": "replicator-offsets-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        })
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = metadata.topics[topic].partitions
        assignments = [TopicPartition(topic, p, 0) for p in partitions]
        ends = {}
        for tp in assignments:
            low, high = watermarks(consumer, tp, timeout)
            ends[tp.partition] = high
            tp.offset = low
        todo = {p for p, high in ends.items() if high > 0}
        if not todo:
            return None
        consumer.assign([tp for tp in assignments if tp.partition in todo])
        found: bytes | None = None
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise RetriableError(f"timed out reading {topic}")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            partition = int(msg.partition() or 0)
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    todo.discard(partition)
                    continue
                raise RetriableError(f"reading {topic}: {error}")
            if msg.key() == key:
                found = msg.value()
            if int(msg.offset() or 0) + 1 >= ends[partition]:
                todo.discard(partition)
        return found
    finally:
        consumer.close()


# librdkafka does not flag these as retriable, but right after a topic is created they only mean "not yet".
_NOT_YET = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
})


def is_transient(error: object) -> bool:
    """Whether a Kafka error (the argument of a KafkaException) means "try again later"."""
    return isinstance(error, KafkaError) and (bool(error.retriable()) or error.code() in _NOT_YET)


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """A partition's (low, high) offsets. A just-created topic's leader may not serve requests yet
    (NOT_LEADER_FOR_PARTITION): retriable errors are retried until `timeout`, then raised as RetriableError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            if not is_transient(error) or time.monotonic() > deadline:
                raise RetriableError(f"reading {tp.topic}: {error}") from None
            time.sleep(0.2)


class OffsetStore:
    """A source's stored position: the newest value under the source's key in its compacted offsets topic.

    Saves go through the capture's own producer; `save` is called only for positions whose events Kafka
    already confirmed, so a lost save re-sends a tail on restart and never skips one.
    """

    def __init__(self, kafka: KafkaClient, topic: str, key: str, producer: EventProducer) -> None:
        self.kafka = kafka
        self.topic = topic
        self._key = key.encode()
        self._producer = producer

    def load(self) -> dict[str, Any] | None:
        raw = read_last_value(self.kafka, self.topic, self._key)
        if raw is None:
            return None
        value = orjson.loads(raw)
        if not isinstance(value, dict):
            raise FatalError(f"offsets topic {self.topic}: the value under key {self._key.decode()!r} is not an object")
        return value

    def save(self, state: dict[str, Any], *, wait: bool = False) -> None:
        self._producer.produce(self.topic, self._key, orjson.dumps(state))
        if wait:
            self._producer.flush()

    # Re-snapshot requests (`replicator snapshot`) live in the same topic under their own key; the newest
    # one counts. Capture records the id of the last one it completed in its own state.

    @property
    def request_key(self) -> bytes:
        return self._key + b":snapshot-request"

    def load_request(self) -> dict[str, Any] | None:
        raw = read_last_value(self.kafka, self.topic, self.request_key)
        return _request(raw)

    def request_snapshot(self, tables: list[str]) -> str:
        """Record a request to read `tables` again; returns its id."""
        request_id = uuid.uuid4().hex
        value = {"id": request_id, "tables": tables, "requested_at_ms": int(time.time() * 1000)}
        self._producer.produce(self.topic, self.request_key, orjson.dumps(value))
        self._producer.flush()
        return request_id

    def watch_requests(self) -> RequestWatcher:
        return RequestWatcher(self.kafka, self.topic, self.request_key)


def _request(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = orjson.loads(raw)
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not isinstance(value.get("tables"), list):
        return None
    return value


class RequestWatcher:
    """The values written under one key of a (small) topic after the watcher was created, read without
    waiting: `poll` returns the newest one that arrived since the last call, if any."""

    def __init__(self, kafka: KafkaClient, topic: str, key: bytes, timeout: float = 30.0) -> None:
        self._key = key
        self._consumer = Consumer(
            kafka.config({
                "group.id": "replicator-requests-reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
            })
        )
        try:
            metadata = self._consumer.list_topics(topic, timeout=timeout)
            assignments = []
            for p in metadata.topics[topic].partitions:
                tp = TopicPartition(topic, p, 0)
                tp.offset = watermarks(self._consumer, tp, timeout)[1]
                assignments.append(tp)
            self._consumer.assign(assignments)
        except BaseException:
            self._consumer.close()
            raise

    def poll(self) -> dict[str, Any] | None:
        newest: dict[str, Any] | None = None
        try:
            messages = self._consumer.consume(100, 0)
        except KafkaException as exc:
            raise RetriableError(f"reading snapshot requests: {exc}") from None
        for msg in messages:
            if msg.error() is None and msg.key() == self._key:
                newest = _request(msg.value()) or newest
        return newest

    def close(self) -> None:
        self._consumer.close()
