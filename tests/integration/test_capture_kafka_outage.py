"""Kill -9 the Kafka broker, twice, while capture streams a workload, and start it again: Kafka ends up with
every change, and the only duplicates are whole re-sends. Capture acknowledges a position only once Kafka
confirmed everything up to it, so an outage can only delay acknowledgements; should librdkafka give up
on the producer, a restarted capture goes on from the last acknowledged position.

The broker is this test's own (the session's stays up for the other tests), on ports it keeps across
restarts, as a broker restarted by its operator does."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.support.crash import Workload, backend_of, check_nothing_lost, start_capture_of_workload_tables
from tests.support.servers import PrivateBroker

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_broker_killed_and_restarted_during_a_workload_loses_nothing(
    kind: str, request: pytest.FixtureRequest, topic_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(20261130)
    broker = PrivateBroker(tmp_path / "broker")
    request.addfinalizer(broker.close)
    bootstrap = broker.bootstrap

    name = topic_prefix.replace("test_", "outage")
    backend = backend_of(kind, request, name, bootstrap)
    capture = start_capture_of_workload_tables(backend, name, bootstrap, tmp_path)

    workload = Workload(backend)
    restarts = 0
    for _ in range(2):
        time.sleep(rng.uniform(0.5, 1.5))
        broker.kill()
        time.sleep(rng.uniform(1.0, 3.0))  # the source goes on being read while Kafka is away
        broker.start_again()
        if capture.proc.poll() is not None:  # a supervisor would start it again
            restarts += 1
            capture.restart()
    workload.finish()

    records = capture.read_workload()
    if capture.proc.poll() is None:
        capture.stop()
    events, unique = check_nothing_lost(records, backend)
    print(f"{kind}: 2 broker kills, {restarts} capture restarts, {events} events, {events - unique} re-sent")
