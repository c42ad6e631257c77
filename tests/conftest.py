"""Shared fixtures: one real PostgreSQL + MariaDB + Kafka stack per test session, isolated per test.

The stack is the devstack's: if one already runs in $REPLICATOR_DEVSTACK_DIR (e.g. after
`replicator dev up`), it is reused and left running; otherwise one is started in a temporary folder and
stopped at the end. A server that cannot start fails the tests that need it, with the server's log.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from replicator.devstack import ConnectionSettings, DevStack, mariadb_connect


@pytest.fixture(scope="session")
def devstack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The running stack's state folder (what $REPLICATOR_DEVSTACK_DIR names for the CLI and benchmarks)."""
    reuse_dir = os.environ.get("REPLICATOR_DEVSTACK_DIR")
    if reuse_dir:
        reused = DevStack(state_dir=Path(reuse_dir).resolve())
        if reused.is_running():
            yield reused.state_dir
            return
    stack = DevStack(state_dir=tmp_path_factory.mktemp("devstack"))
    try:
        stack.up()
        yield stack.state_dir
    finally:
        stack.down()


@pytest.fixture(scope="session")
def devstack(devstack_dir: Path) -> ConnectionSettings:
    return DevStack(state_dir=devstack_dir).settings()


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class PgDatabase:
    name: str
    dsn: str
    admin_dsn: str


@pytest.fixture
def pg_database(devstack: ConnectionSettings) -> Iterator[PgDatabase]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards with its slots."""
    name = _unique("t")
    with psycopg.connect(devstack.erp_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(devstack.erp_admin_dsn)
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    yield PgDatabase(name=name, dsn=dsn, admin_dsn=devstack.erp_admin_dsn)
    with psycopg.connect(devstack.erp_admin_dsn, autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (slot,),
            )
            with contextlib.suppress(psycopg.errors.ObjectInUse):
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class MariaDatabase:
    name: str
    admin: dict[str, str | int]


@pytest.fixture
def mariadb_database(devstack: ConnectionSettings) -> Iterator[MariaDatabase]:
    """A fresh MariaDB database for one test, dropped afterwards."""
    name = _unique("t")
    with contextlib.closing(mariadb_connect(devstack.shop_admin)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield MariaDatabase(name=name, admin=devstack.shop_admin)
    with contextlib.closing(mariadb_connect(devstack.shop_admin)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def topic_prefix() -> str:
    """A topic-name prefix no other test uses."""
    return _unique("test")
