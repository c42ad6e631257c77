"""Kill -9 the capture process at random moments during a workload, for each source: nothing is lost,
and the only duplicates are re-sent copies of the unacknowledged tail, identical down to their source
position."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings
from tests.support.capture import start_capture_process, write_config
from tests.support.crash import TRANSACTIONS, check_nothing_lost, mariadb_backend, pg_backend, run_workload
from tests.support.kafka_reader import read_topics

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_kill_9_during_a_workload_loses_nothing(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(20261129)
    name = topic_prefix.replace("test_", "crash")
    if kind == "postgresql":
        backend = pg_backend(request.getfixturevalue("pg_database"), name)
    else:
        backend = mariadb_backend(request.getfixturevalue("mariadb_database"), name, devstack.kafka_bootstrap)
    request.addfinalizer(backend.close)
    backend.run_sql([("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)", ())])
    backend.run_sql([("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)", ())])
    backend.run_sql([("INSERT INTO counter VALUES (1, 0)", ())])
    ns = backend.namespace
    config = write_config(tmp_path / "c.yaml", devstack.kafka_bootstrap, [{
        "name": name, **backend.source, "tables": [f"{ns}.item", f"{ns}.counter"], "heartbeat_interval_s": 1,
    }])
    log = tmp_path / "capture.log"

    proc = start_capture_process(config, name, backend.env, log)
    # Let the first run take its position before the workload starts, so its snapshot is the empty tables.
    deadline = time.monotonic() + 60
    while not backend.ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "capture did not take its position"
        time.sleep(0.2)

    errors: list[BaseException] = []
    writer = threading.Thread(target=run_workload, args=(backend, errors))
    writer.start()
    kills = 0
    while kills < 5:
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = start_capture_process(config, name, backend.env, log)
    writer.join()
    assert not errors, errors

    # Let the last run catch up, then stop it cleanly.
    expected_items = 2 * TRANSACTIONS + TRANSACTIONS // 3  # inserts + deletes
    records = read_topics(devstack.kafka_bootstrap, [f"{name}.{ns}.item", f"{name}.{ns}.counter"],
                          until=expected_items + TRANSACTIONS, quiet_s=4, timeout_s=180)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]

    events, unique = check_nothing_lost(records, backend)
    print(f"{kind}: {kills} kills, {events} events, {events - unique} re-sent duplicates")
