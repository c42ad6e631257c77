"""A source server whose settings capture cannot work with stops capture at start-up, saying what to fix.

PostgreSQL: a private server started with `wal_level=replica` (the devstack's own `PostgresServer`, in
a temporary folder, stopped at the end). MariaDB's binlog settings (binlog_format, row image, row
metadata) are covered by test_capture_mariadb.py::test_every_configuration_problem_is_reported_at_once.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from replicator.config import load_config
from replicator.devstack import ConnectionSettings
from replicator.devstack.postgres import PostgresServer
from replicator.devstack.process import any_free_port
from replicator.devstack.servers import stop_server
from replicator.errors import ConfigError
from replicator.pipeline.capture_runner import build_capture
from tests.support.capture import write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replica_level_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL of our own running with wal_level=replica; stopped and deleted after the module."""
    server = PostgresServer(port=any_free_port(), port_explicit=True, password=uuid.uuid4().hex,
                            name="postgres-replica-level", extra_settings={"wal_level": "replica"})
    root = tmp_path_factory.mktemp("pg-replica-level")
    state = server.start(root, None)
    try:
        yield server.dsn(state.main_port, "postgres")
    finally:
        stop_server(state, server.stop_signal)
        # As root the data may live outside `root` (see PostgresServer.start): remove it too.
        shutil.rmtree(Path(state.data_dir).parent, ignore_errors=True)


def test_wal_level_other_than_logical_stops_capture_at_start_up_saying_how_to_fix_it(
    devstack: ConnectionSettings, replica_level_dsn: str, topic_prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with psycopg.connect(replica_level_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
    name = topic_prefix.replace("test_", "wal")
    monkeypatch.setenv("DSN_WAL", replica_level_dsn)
    config = write_config(tmp_path / "c.yaml", devstack.kafka_bootstrap, [{
        "name": name, "kind": "postgresql", "connection": {"dsn": {"env": "DSN_WAL"}}, "tables": ["public.t"],
    }])
    runner = build_capture(load_config(config), name)
    with pytest.raises(ConfigError) as raised:
        runner.run()
    text = "\n".join(raised.value.problems)
    assert "wal_level=replica" in text
    assert "wal_level=logical in postgresql.conf (then restart PostgreSQL)" in text
    with psycopg.connect(replica_level_dsn, autocommit=True) as conn:
        # Stopped before touching anything: no slot, no publication.
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
