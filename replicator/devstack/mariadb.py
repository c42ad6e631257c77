"""A throwaway MariaDB 10.11 server with a ROW binlog and GTIDs (the shop side)."""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pymysql

from replicator.devstack.process import (
    LOOPBACK,
    choose_port,
    port_accepts,
    run_checked,
    spawn_detached,
    wait_until_ready,
)
from replicator.devstack.servers import ServerState
from replicator.errors import DevstackError

SERVER_ID = 1

# Binlog settings the shop capture depends on; durability is relaxed because the server is throwaway.
SERVER_OPTIONS = [
    f"--server-id={SERVER_ID}",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--gtid-strict-mode=ON",
    "--log-slave-updates=ON",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--innodb-buffer-pool-size=256M",
    "--innodb-flush-log-at-trx-commit=2",
    "--sync-binlog=0",
    "--max-connections=300",
    "--max-allowed-packet=64M",
    "--default-time-zone=+00:00",
    "--skip-log-error",  # errors go to stderr, which the devstack keeps in its log file
]


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise DevstackError(f"MariaDB binary {name!r} not found; install Debian's mariadb-server (scripts/setup.sh does)")


@dataclass
class MariaDbServer:
    port: int = 53306
    port_explicit: bool = False
    password: str = ""
    name: str = "mariadb"
    stop_signal: signal.Signals = signal.SIGTERM

    def start(self, root: Path, previous: ServerState | None) -> ServerState:
        mariadbd = _binary("mariadbd")
        base = root / "mariadb"
        data_dir = Path(previous.data_dir) if previous else base / "data"
        log_path = root / "logs" / "mariadb.log"
        socket_path = base / "mariadb.sock"
        port = previous.main_port if previous else self.port
        port = choose_port("mariadb", port, explicit=self.port_explicit)

        fresh = not (data_dir / "mysql").exists()
        if fresh:
            data_dir.mkdir(parents=True, exist_ok=True)
            run_checked(
                [
                    _binary("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={data_dir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *_user_option(),
                ],
                "mariadb-install-db",
            )
        argv = [
            mariadbd,
            "--no-defaults",
            f"--datadir={data_dir}",
            f"--port={port}",
            f"--bind-address={LOOPBACK}",
            f"--socket={socket_path}",
            f"--pid-file={base / 'mariadb.pid'}",
            f"--log-bin={base / 'binlog' / 'shop-bin'}",
            *SERVER_OPTIONS,
            *_user_option(),
        ]
        (base / "binlog").mkdir(parents=True, exist_ok=True)
        proc = spawn_detached(argv, log_path)

        def probe() -> bool:
            # PyMySQL leaks its socket when a connect fails, so only try once the server listens.
            if not (socket_path.exists() and port_accepts(port)):
                return False
            try:
                conn = pymysql.connect(unix_socket=str(socket_path), user="root", connect_timeout=2,
                                       password="" if fresh else self.password)
            except pymysql.err.OperationalError:
                return False
            conn.close()
            return True

        wait_until_ready("mariadb", proc.pid, log_path, probe, timeout=60)
        if fresh:
            self._secure(socket_path)
        return ServerState(
            name=self.name,
            pid=proc.pid,
            ports={"port": port},
            data_dir=str(data_dir),
            log_path=str(log_path),
            extra={"socket": str(socket_path)},
        )

    def _secure(self, socket_path: Path) -> None:
        """Give root a password and let it in over TCP from the loopback address."""
        conn = pymysql.connect(unix_socket=str(socket_path), user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (self.password,))
                cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY %s", (self.password,))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        finally:
            conn.close()

    def dsn(self, port: int, database: str) -> str:
        return f"mysql://root:{self.password}@{LOOPBACK}:{port}/{database}"


def _user_option() -> list[str]:
    # mariadbd refuses to run as root unless told to; the devstack's data is ours, so stay root.
    return ["--user=root"] if os.geteuid() == 0 else []
