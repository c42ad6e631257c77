"""How the supervisor reads a worker's error: retriable ones (ours, or Kafka's transient ones) restart the
worker; anything else stops the pipeline with the worker's name and the error."""
from __future__ import annotations

import signal
import threading
import time

from confluent_kafka import KafkaError, KafkaException

from replicator.errors import FatalError, RetriableError
from replicator.pipeline.supervisor import Supervisor


class Scripted:
    """A worker whose first runs raise the scripted errors; the run after them waits until stopped."""

    def __init__(self, errors: list[BaseException], started: threading.Event) -> None:
        self.errors = errors
        self.started = started
        self._stop = threading.Event()

    def run(self) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.started.set()
        self._stop.wait(10)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None: ...


def _supervise(errors: list[BaseException]) -> tuple[Supervisor, threading.Event]:
    started = threading.Event()
    supervisor = Supervisor(max_backoff_s=0.05)
    script = list(errors)
    supervisor.add("apply:erp-writer", lambda: Scripted(script, started))
    supervisor.start()
    return supervisor, started


def test_a_kafka_partition_without_its_leader_yet_restarts_the_worker() -> None:
    not_yet = KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
    supervisor, started = _supervise([not_yet, RetriableError("database restarting")])
    assert started.wait(10), "the worker was not restarted after two retriable errors"
    supervisor.stop()
    assert supervisor.wait(10) == []
    assert supervisor.workers[0].restarts == 2
    assert supervisor.workers[0].last_error == "RetriableError: database restarting"  # the latest, for whoever asks


def test_a_kafka_error_that_is_not_transient_stops_the_pipeline_naming_the_worker() -> None:
    denied = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    supervisor, started = _supervise([denied])
    fatal = supervisor.wait(10)
    assert len(fatal) == 1 and fatal[0].startswith("apply:erp-writer: unexpected KafkaException")
    assert not started.is_set() and supervisor.stopping


def test_a_fatal_error_stops_the_pipeline_with_its_message() -> None:
    supervisor, _ = _supervise([FatalError("slot replicator_erp was dropped")])
    assert supervisor.wait(10) == ["apply:erp-writer: slot replicator_erp was dropped"]


def test_a_signal_handed_to_another_thread_still_stops_a_supervisor_the_main_thread_waits_on() -> None:
    # The kernel may give a process's SIGTERM to any thread (it does to a librdkafka or worker thread when the
    # process wakes from SIGSTOP); Python runs the handler in the main thread only when that thread runs.
    supervisor, started = _supervise([])
    assert started.wait(5)
    previous = signal.signal(signal.SIGUSR1, lambda *_: supervisor.stop())
    try:
        def signal_this_thread_later() -> None:
            time.sleep(0.5)  # the main thread is waiting on the supervisor by then
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

        other = threading.Thread(target=signal_this_thread_later)
        begun = time.monotonic()
        other.start()
        assert supervisor.wait(8) == []
        # An untimed wait would have returned only when the worker's own 10 s were up (here: the 8 s limit).
        assert time.monotonic() - begun < 4
        assert supervisor.stopping
        other.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
