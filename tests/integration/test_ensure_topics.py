"""Topic creation at start-up when Kafka cannot be used: a cluster that does not answer is worth retrying and
says what the connection attempt met; one that refuses the client is not (tests/e2e/test_kafka_security.py)."""

from __future__ import annotations

import pytest

from replicator.devstack.process import any_free_port
from replicator.errors import RetriableError
from replicator.transport.client import KafkaClient
from replicator.transport.kafka import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration


def test_a_cluster_that_does_not_answer_is_retriable_and_the_error_says_what_connecting_met() -> None:
    nobody = f"127.0.0.1:{any_free_port()}"
    with pytest.raises(RetriableError, match=rf"Kafka at {nobody} did not answer: .*Connection refused"):
        ensure_topics(KafkaClient(nobody, {"log_level": 0}), [TopicSpec("some.topic")], timeout=2)
