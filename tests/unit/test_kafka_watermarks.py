"""`watermarks`: a just-created topic answers "not leader" for a moment; that is retried, real errors are not."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from replicator.errors import RetriableError
from replicator.transport.kafka import watermarks


class ScriptedConsumer:
    """Answers `get_watermark_offsets` from a script: an exception to raise or offsets to return."""

    def __init__(self, script: list[BaseException | tuple[int, int]]) -> None:
        self.script = script
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        return step


def _error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


@pytest.mark.parametrize("code", [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION])
def test_a_partition_without_a_leader_yet_is_asked_again_until_it_answers(code: int) -> None:
    consumer = ScriptedConsumer([_error(code), _error(code), (3, 17)])
    assert watermarks(consumer, TopicPartition("t", 0), timeout=5) == (3, 17)  # type: ignore[arg-type]
    assert consumer.calls == 3


def test_a_partition_that_never_gets_a_leader_ends_in_a_retriable_error_naming_the_topic() -> None:
    consumer = ScriptedConsumer([_error(KafkaError.NOT_LEADER_FOR_PARTITION)])
    with pytest.raises(RetriableError, match=r"erp\.public\.res_partner"):
        watermarks(consumer, TopicPartition("erp.public.res_partner", 0), timeout=0.5)  # type: ignore[arg-type]
    assert consumer.calls >= 2


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    consumer = ScriptedConsumer([_error(KafkaError.TOPIC_AUTHORIZATION_FAILED), (0, 0)])
    with pytest.raises(RetriableError, match="t0"):
        watermarks(consumer, TopicPartition("t0", 0), timeout=5)  # type: ignore[arg-type]
    assert consumer.calls == 1
