"""Kill -9 the Kafka broker, twice, while capture streams a workload, and start it again: Kafka ends up with
every change, and the only duplicates are whole re-sends. Capture acknowledges a position only once Kafka
confirmed everything up to it, so an outage can only delay acknowledgements; should librdkafka give up
on the producer, a restarted capture goes on from the last acknowledged position.

The broker is this test's own (the session's stays up for the other tests), on ports it keeps across
restarts, as a broker restarted by its operator does."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings
from replicator.devstack.kafka import KafkaServer
from replicator.devstack.process import any_free_port
from replicator.devstack.servers import ServerState, stop_server
from tests.support.capture import start_capture_process, write_config
from tests.support.crash import TRANSACTIONS, check_nothing_lost, mariadb_backend, pg_backend, run_workload
from tests.support.kafka_reader import read_topics

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_broker_killed_and_restarted_during_a_workload_loses_nothing(
    kind: str, request: pytest.FixtureRequest, devstack: ConnectionSettings, topic_prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(20261130)
    controller_port = any_free_port()
    broker = KafkaServer(port=any_free_port(), controller_port=controller_port, port_explicit=True,
                         name="outage-kafka", heap="384m")
    root = tmp_path / "broker"
    running: list[ServerState] = [broker.start(root, None)]
    request.addfinalizer(lambda: stop_server(running[-1], signal.SIGKILL))
    bootstrap = f"127.0.0.1:{running[0].ports['broker']}"

    name = topic_prefix.replace("test_", "outage")
    if kind == "postgresql":
        backend = pg_backend(request.getfixturevalue("pg_database"), name)
    else:
        backend = mariadb_backend(request.getfixturevalue("mariadb_database"), name, bootstrap)
    request.addfinalizer(backend.close)
    backend.run_sql([("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)", ())])
    backend.run_sql([("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)", ())])
    backend.run_sql([("INSERT INTO counter VALUES (1, 0)", ())])
    ns = backend.namespace
    config = write_config(tmp_path / "c.yaml", bootstrap, [{
        "name": name, **backend.source, "tables": [f"{ns}.item", f"{ns}.counter"], "heartbeat_interval_s": 1,
    }])
    log = tmp_path / "capture.log"
    proc = start_capture_process(config, name, backend.env, log)
    deadline = time.monotonic() + 60
    while not backend.ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "capture did not take its position"
        time.sleep(0.2)

    errors: list[BaseException] = []
    writer = threading.Thread(target=run_workload, args=(backend, errors))
    writer.start()
    restarts = 0
    for _ in range(2):
        time.sleep(rng.uniform(0.5, 1.5))
        stop_server(running[-1], signal.SIGKILL)
        time.sleep(rng.uniform(1.0, 3.0))  # the source goes on being read while Kafka is away
        running.append(broker.start(root, running[-1]))
        assert running[-1].ports == running[0].ports
        if proc.poll() is not None:  # a supervisor would start it again
            restarts += 1
            proc = start_capture_process(config, name, backend.env, log)
    writer.join()
    assert not errors, errors

    expected_items = 2 * TRANSACTIONS + TRANSACTIONS // 3  # inserts + deletes
    records = read_topics(bootstrap, [f"{name}.{ns}.item", f"{name}.{ns}.counter"],
                          until=expected_items + TRANSACTIONS, quiet_s=4, timeout_s=180)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    events, unique = check_nothing_lost(records, backend)
    print(f"{kind}: 2 broker kills, {restarts} capture restarts, {events} events, {events - unique} re-sent")
