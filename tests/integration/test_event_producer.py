"""EventProducer against the real broker: confirmation in bulk (a flush with nothing left outstanding) and
failures reported by librdkafka raised with the topic's name, never passed over: a refused message as
fatal, one that timed out (no broker) as retriable."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Consumer, TopicPartition

from replicator.devstack import ConnectionSettings
from replicator.devstack.process import any_free_port
from replicator.errors import FatalError, RetriableError
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import EventProducer, TopicSpec, ensure_topics, watermarks

pytestmark = pytest.mark.integration


def _end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-event-producer"})
    try:
        return watermarks(consumer, TopicPartition(topic, 0), 10)[1]
    finally:
        consumer.close()


def test_confirm_returns_once_every_message_produced_before_it_is_in_kafka(
    devstack: ConnectionSettings, topic_prefix: str
) -> None:
    bootstrap = devstack.kafka_bootstrap
    topic = f"{topic_prefix}.confirmed"
    ensure_topics(KafkaClient(bootstrap), [TopicSpec(topic)])
    producer = EventProducer(KafkaClient(bootstrap), client_id="test", linger_ms=1000)  # nothing leaves on its own soon
    for i in range(500):
        producer.raw_produce(topic, b"v%d" % i, b"k%d" % i)
    producer.produce(topic, b"last", b"v")
    assert producer.unconfirmed == 501
    assert producer.confirm(30)
    assert producer.unconfirmed == 0
    assert _end_offset(bootstrap, topic) == 501


def test_a_message_the_broker_refuses_is_raised_naming_its_topic(
    devstack: ConnectionSettings, topic_prefix: str
) -> None:
    bootstrap = devstack.kafka_bootstrap
    topic = f"{topic_prefix}.small-messages"
    # The broker refuses any batch above 256 bytes for this topic: a permanent error, which librdkafka
    # reports without retrying.
    ensure_topics(KafkaClient(bootstrap), [TopicSpec(topic, config=(("max.message.bytes", "256"),))])
    producer = EventProducer(KafkaClient(bootstrap), client_id="test", compression="none")
    producer.produce(topic, b"k", b"x" * 2000)
    with pytest.raises(FatalError, match=f"Kafka did not take a message for {topic}"):
        producer.confirm(30)
    # The failure stays raised: nothing produced afterwards is confirmed past it.
    with pytest.raises(FatalError, match=topic):
        producer.produce(topic, b"k", b"small")


def test_a_message_kafka_never_confirmed_in_time_is_raised_as_retriable() -> None:
    # No broker listens there: the message times out in librdkafka's queue, as after an outage longer than
    # message.timeout.ms. A restart re-sends from the last acknowledged position, so it is worth one.
    producer = EventProducer(KafkaClient(f"127.0.0.1:{any_free_port()}"), client_id="test", message_timeout_ms=500)
    producer.produce("some.topic", b"k", b"v")
    with pytest.raises(RetriableError, match=r"Kafka did not take a message for some\.topic: .*timed out"):
        producer.confirm(10)


def test_closing_a_producer_drops_what_kafka_has_not_confirmed_instead_of_waiting_for_it() -> None:
    # The broker is away (a restart after an outage closes the attempt's producer): librdkafka's own close
    # would wait for each message until its message.timeout.ms (five minutes here) before giving up.
    producer = EventProducer(KafkaClient(f"127.0.0.1:{any_free_port()}"), client_id="test", message_timeout_ms=300_000)
    producer.produce("some.topic", b"k", b"v")
    closing = threading.Thread(target=producer.close, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive(), "close waited for a message no broker will confirm"
    producer.close()  # a second close does nothing
    with pytest.raises(RuntimeError, match="closed"):
        producer.produce("some.topic", b"k", b"v")
