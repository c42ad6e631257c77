"""Database servers of a test's own, to kill -9 and start again without disturbing the session's: each on a
port it keeps across restarts, with its data, as a server restarted by its operator after a crash."""

from __future__ import annotations

import shutil
import signal
import uuid
from pathlib import Path

from replicator.devstack.mariadb import MariaDbServer
from replicator.devstack.postgres import PostgresServer
from replicator.devstack.process import any_free_port
from replicator.devstack.servers import ServerState, stop_server


class PrivateServer:
    def __init__(self, server: PostgresServer | MariaDbServer, root: Path) -> None:
        self._server = server
        self._root = root
        self._state: ServerState = server.start(root, None)
        self.port = self._state.main_port
        self.password = server.password
        self.restarts = 0

    def dsn(self, database: str) -> str:
        return self._server.dsn(self.port, database)

    def kill(self) -> None:
        """kill -9 of the server's whole process group (the server and, for PostgreSQL, every backend)."""
        stop_server(self._state, signal.SIGKILL)

    def start_again(self) -> None:
        self._state = self._server.start(self._root, self._state)
        assert self._state.main_port == self.port, (self._state.main_port, self.port)
        self.restarts += 1

    def close(self) -> None:
        stop_server(self._state, signal.SIGKILL)
        # As root PostgreSQL's data may live outside `root` (see PostgresServer.start): remove it too.
        shutil.rmtree(Path(self._state.data_dir).parent, ignore_errors=True)


def private_postgres(root: Path) -> PrivateServer:
    server = PostgresServer(port=any_free_port(), port_explicit=True, password=uuid.uuid4().hex,
                            name="test-postgres")
    return PrivateServer(server, root / "postgres")


def private_mariadb(root: Path) -> PrivateServer:
    server = MariaDbServer(port=any_free_port(), port_explicit=True, password=uuid.uuid4().hex, name="test-mariadb")
    return PrivateServer(server, root / "mariadb")
