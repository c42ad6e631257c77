"""Kill -9 the capture process at random moments during a workload, for each source: nothing is lost,
and the only duplicates are re-sent copies of the unacknowledged tail, identical down to their source
position."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings
from tests.support.crash import Workload, backend_of, check_nothing_lost, start_capture_of_workload_tables

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_kill_9_during_a_workload_loses_nothing(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(20261129)
    name = topic_prefix.replace("test_", "crash")
    backend = backend_of(kind, request, name, devstack.kafka_bootstrap)
    capture = start_capture_of_workload_tables(backend, name, devstack.kafka_bootstrap, tmp_path)

    workload = Workload(backend)
    kills = 0
    while kills < 5:
        time.sleep(rng.uniform(0.5, 2.5))
        capture.proc.send_signal(signal.SIGKILL)
        capture.proc.wait()
        kills += 1
        capture.restart()
    workload.finish()

    # Let the last run catch up, then stop it cleanly.
    records = capture.read_workload()
    capture.stop()
    events, unique = check_nothing_lost(records, backend)
    print(f"{kind}: {kills} kills, {events} events, {events - unique} re-sent duplicates")
