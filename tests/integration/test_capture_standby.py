"""One capture per source at a time, and a standby that takes over from a frozen one.

A second capture of the same source (a standby, or a second `replicator run` by mistake) waits while the first
streams: PostgreSQL lets one reader use a slot at a time; on MariaDB, where nothing would stop both from
streaming (each binlog dump with the same server id ends the other's in turn), the capture holds a named lock.
When the first freezes (SIGSTOP: a paused virtual machine, a host cut off), the source's server ends its silent
session after `session_timeout_s` (PostgreSQL's wal_sender_timeout, MariaDB's wait_timeout), the standby takes
over from the last acknowledged position, and the first, woken up, finds its session gone and stops. Kafka then
holds every change of the workload, the only copies being whole re-sends of an unacknowledged tail."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings
from tests.support.crash import TRANSACTIONS, Workload, backend_of, check_nothing_lost, start_capture_of_workload_tables
from tests.support.kafka_reader import read_topics
from tests.support.processes import start_replicator_run

pytestmark = pytest.mark.integration

SESSION_TIMEOUT_S = 3


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_standby_capture_waits_then_takes_over_from_a_frozen_one(
    kind: str, devstack: ConnectionSettings, request: pytest.FixtureRequest, tmp_path: Path, topic_prefix: str,
) -> None:
    name = topic_prefix.replace("test_", "standby")
    bootstrap = devstack.kafka_bootstrap
    backend = backend_of(kind, request, name, bootstrap)
    backend.source["session_timeout_s"] = SESSION_TIMEOUT_S
    first = start_capture_of_workload_tables(backend, name, bootstrap, tmp_path)
    standby_log = tmp_path / "standby.log"
    # `replicator run` waits and tries again where `replicator capture` alone would exit for its service
    # manager to restart it.
    standby = start_replicator_run(first.config, standby_log, backend.env)
    try:
        refusal = "another capture of this source runs" if kind == "mariadb" else "is active for PID"
        deadline = time.monotonic() + 30
        while refusal not in standby_log.read_text(errors="replace"):
            assert standby.poll() is None and time.monotonic() < deadline, standby_log.read_text()[-3000:]
            time.sleep(0.2)
        workload = Workload(backend)
        time.sleep(1)
        first.proc.send_signal(signal.SIGSTOP)
        workload.finish()
        # Only the standby can publish the rest of the workload: within seconds, not the servers' default
        # of a minute before they end a silent stream.
        topics = [f"{name}.{backend.namespace}.item", f"{name}.{backend.namespace}.counter"]
        changes = 2 * TRANSACTIONS + TRANSACTIONS // 3 + TRANSACTIONS
        read_topics(bootstrap, topics, until=changes, quiet_s=1, timeout_s=40)
        first.proc.send_signal(signal.SIGCONT)
        # Woken up, the first capture finds its session ended, and exits for its service manager.
        assert first.proc.wait(60) == 1, first.log.read_text()[-3000:]
        records = read_topics(bootstrap, topics, until=changes, quiet_s=2, timeout_s=60)
        check_nothing_lost(records, backend)
        # One capture published at a time: the counter's values run in order but where a capture started from
        # an earlier acknowledged position (the standby taking over; at most once more while the first one
        # woke up), not back and forth between two captures streaming at once.
        counter = sorted((r for r in records if r.topic.endswith(".counter") and r.value and r.value["op"] == "u"),
                         key=lambda r: r.offset)
        values = [r.value["after"]["value"] for r in counter]
        rewinds = [(a, b) for a, b in itertools.pairwise(values) if b <= a]
        assert len(rewinds) <= 2, rewinds
        log_text = first.log.read_text(errors="replace")
        assert ("the session holding the capture lock ended" if kind == "mariadb" else "source") in log_text
    finally:
        for proc in (first.proc, standby):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        first.proc.wait(60)
        code = standby.wait(60)
    assert code == 0, standby_log.read_text()[-3000:]
