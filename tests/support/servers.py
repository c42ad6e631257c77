"""Servers of a test's own, to kill -9 and start again without disturbing the session's: each on ports it
keeps across restarts, with its data, as a server restarted by its operator after a crash."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from pathlib import Path

from replicator.devstack.kafka import KafkaServer
from replicator.devstack.mariadb import MariaDbServer
from replicator.devstack.postgres import PostgresServer
from replicator.devstack.process import any_free_port
from replicator.devstack.servers import Server, ServerState, stop_server


class PrivateServer:
    def __init__(self, server: Server, root: Path) -> None:
        self._server = server
        self._root = root
        self._state: ServerState = server.start(root, None)
        self.ports = self._state.ports
        self.port = self._state.main_port
        self.restarts = 0
        self.thaws = 0

    def kill(self) -> None:
        """kill -9 of the server's whole process group (for PostgreSQL, the postmaster and every backend)."""
        stop_server(self._state, signal.SIGKILL)

    def start_again(self) -> None:
        self._state = self._server.start(self._root, self._state)
        assert self._state.ports == self.ports, (self._state.ports, self.ports)
        self.restarts += 1

    def freeze(self) -> None:
        """SIGSTOP of the server's whole process group: its connections stay open and its clients' requests
        hang, as with a paused virtual machine or a server stuck on its disk."""
        os.killpg(os.getpgid(self._state.pid), signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(os.getpgid(self._state.pid), signal.SIGCONT)
        self.thaws += 1

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(self._state.pid), signal.SIGCONT)  # a frozen one would not die of SIGKILL's wait
        stop_server(self._state, signal.SIGKILL)
        # As root PostgreSQL's data may live outside `root` (see PostgresServer.start): remove it too.
        shutil.rmtree(Path(self._state.data_dir).parent, ignore_errors=True)


class PrivateDatabase(PrivateServer):
    def __init__(self, server: PostgresServer | MariaDbServer, root: Path) -> None:
        super().__init__(server, root)
        self._database_server = server
        self.password = server.password

    def dsn(self, database: str) -> str:
        return self._database_server.dsn(self.port, database)


class PrivateBroker(PrivateServer):
    def __init__(self, root: Path) -> None:
        super().__init__(KafkaServer(port=any_free_port(), controller_port=any_free_port(), port_explicit=True,
                                     name="test-kafka", heap="384m"), root)
        self.bootstrap = f"127.0.0.1:{self.ports['broker']}"


def private_postgres(root: Path) -> PrivateDatabase:
    server = PostgresServer(port=any_free_port(), port_explicit=True, password=uuid.uuid4().hex,
                            name="test-postgres")
    return PrivateDatabase(server, root / "postgres")


def private_mariadb(root: Path) -> PrivateDatabase:
    server = MariaDbServer(port=any_free_port(), port_explicit=True, password=uuid.uuid4().hex, name="test-mariadb")
    return PrivateDatabase(server, root / "mariadb")
