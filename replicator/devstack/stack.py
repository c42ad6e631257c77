"""The local stack: PostgreSQL (ERP), MariaDB (shop) and Kafka in one state folder.

`replicator dev up|status|down`, the test fixtures, the demo and the benchmarks all go through `DevStack`.
State lives in `<state dir>/state.json`; connection settings are written to `<state dir>/env` as
KEY=value lines (the file holds passwords, so it is private to its owner).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pymysql

from replicator.devstack.kafka import KafkaServer
from replicator.devstack.mariadb import MariaDbServer
from replicator.devstack.postgres import PostgresServer
from replicator.devstack.process import LOOPBACK, pid_alive, stop_process_group
from replicator.devstack.servers import ServerState, stop_server
from replicator.errors import DevstackError

SHOP_DATABASE = "shop"
ERP_DATABASE = "erp"


def default_state_dir() -> Path:
    return Path(os.environ.get("REPLICATOR_DEVSTACK_DIR", ".devstack")).resolve()


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the stack. DSNs carry the generated passwords: never log them whole."""

    shop_dsn: str
    erp_dsn: str
    kafka_bootstrap: str
    shop_admin: dict[str, str | int]
    erp_admin_dsn: str

    def env_lines(self) -> list[str]:
        return [
            f"REPLICATOR_SHOP_DSN={self.shop_dsn}",
            f"REPLICATOR_ERP_DSN={self.erp_dsn}",
            f"REPLICATOR_KAFKA_BOOTSTRAP={self.kafka_bootstrap}",
        ]


def redact(text: str, secret_values: list[str]) -> str:
    for value in secret_values:
        if value:
            text = text.replace(value, "****")
    return text


@dataclass
class DevStack:
    state_dir: Path = field(default_factory=default_state_dir)
    pg_port: int | None = None
    mariadb_port: int | None = None
    kafka_port: int | None = None

    # -- persisted state ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"

    def _load(self) -> dict[str, ServerState]:
        if not self.state_file.exists():
            return {}
        data = json.loads(self.state_file.read_text())
        return {name: ServerState.from_json(s) for name, s in data.get("servers", {}).items()}

    def _save(self, servers: dict[str, ServerState]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"servers": {n: s.to_json() for n, s in servers.items()}}, indent=2))
        tmp.replace(self.state_file)

    def _passwords(self) -> dict[str, str]:
        path = self.state_dir / "secrets.json"
        if path.exists():
            loaded: dict[str, str] = json.loads(path.read_text())
            return loaded
        self.state_dir.mkdir(parents=True, exist_ok=True)
        generated = {"postgres": secrets.token_urlsafe(18), "mariadb": secrets.token_urlsafe(18)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(generated, out)
        return generated

    def secret_values(self) -> list[str]:
        return list(self._passwords().values()) if (self.state_dir / "secrets.json").exists() else []

    # -- servers -----------------------------------------------------------------------------------

    def _servers(self) -> list[PostgresServer | MariaDbServer | KafkaServer]:
        pw = self._passwords()
        return [
            PostgresServer(port=self.pg_port or 55432, port_explicit=self.pg_port is not None,
                           password=pw["postgres"]),
            MariaDbServer(port=self.mariadb_port or 53306, port_explicit=self.mariadb_port is not None,
                          password=pw["mariadb"]),
            KafkaServer(port=self.kafka_port or 59092, port_explicit=self.kafka_port is not None),
        ]

    def up(self) -> ConnectionSettings:
        """Start whatever is not running (reusing data folders), create the demo databases, write env."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / ".gitignore").write_text("*\n")
        states = self._load()
        try:
            for server in self._servers():
                previous = states.get(server.name)
                if previous is not None and previous.health()[0]:
                    continue
                states[server.name] = server.start(self.state_dir, previous)
                self._save(states)
        except DevstackError as exc:
            raise DevstackError(redact(str(exc), self.secret_values())) from None
        settings = self.settings()
        self._create_databases(settings)
        self._write_env(settings)
        return settings

    def status(self) -> dict[str, tuple[bool, str]]:
        states = self._load()
        report: dict[str, tuple[bool, str]] = {}
        for name in ("postgres", "mariadb", "kafka"):
            state = states.get(name)
            report[name] = state.health() if state else (False, "not started (run: replicator dev up)")
        return report

    def is_running(self) -> bool:
        return bool(self._load()) and all(ok for ok, _ in self.status().values())

    def down(self, *, purge: bool = False) -> None:
        """Stop a demo pipeline left running, then every server of the stack, Kafka first (it talks to no
        one, but is slowest to stop)."""
        self.stop_demo_pipeline()
        states = self._load()
        for server in reversed(self._servers()):
            state = states.get(server.name)
            if state is not None:
                stop_server(state, server.stop_signal)
        if purge:
            for state in states.values():
                data_parent = Path(state.data_dir).parent
                if not data_parent.is_relative_to(self.state_dir):
                    shutil.rmtree(data_parent, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)

    @property
    def demo_pid_file(self) -> Path:
        """Where `replicator demo` keeps the pid of the pipeline it started."""
        return self.state_dir / "demo" / "pipeline.pid"

    def stop_demo_pipeline(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the pipeline `replicator demo` left running (it drains, then exits), wait for it, and remove
        its pid file. Returns the pid stopped, or None when there was none."""
        path = self.demo_pid_file
        try:
            pid = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            path.unlink(missing_ok=True)
            return None
        stopped = None
        if pid_alive(pid) and _runs_replicator(pid):
            stop_process_group(pid, signal.SIGTERM, timeout)
            stopped = pid
        path.unlink(missing_ok=True)
        return stopped

    def settings(self) -> ConnectionSettings:
        states = self._load()
        missing = [name for name in ("postgres", "mariadb", "kafka") if name not in states]
        if missing:
            raise DevstackError(f"the stack in {self.state_dir} has never started {', '.join(missing)}")
        pg, maria, _ = self._servers()
        assert isinstance(pg, PostgresServer) and isinstance(maria, MariaDbServer)
        pg_port = states["postgres"].main_port
        maria_port = states["mariadb"].main_port
        return ConnectionSettings(
            shop_dsn=maria.dsn(maria_port, SHOP_DATABASE),
            erp_dsn=pg.dsn(pg_port, ERP_DATABASE),
            kafka_bootstrap=f"{LOOPBACK}:{states['kafka'].ports['broker']}",
            shop_admin={"host": LOOPBACK, "port": maria_port, "user": "root", "password": maria.password},
            erp_admin_dsn=pg.dsn(pg_port, "postgres"),
        )

    def _create_databases(self, settings: ConnectionSettings) -> None:
        with psycopg.connect(settings.erp_admin_dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ERP_DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{ERP_DATABASE}"')
        with contextlib.closing(mariadb_connect(settings.shop_admin)) as maria, maria.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{SHOP_DATABASE}` CHARACTER SET utf8mb4")

    def _write_env(self, settings: ConnectionSettings) -> None:
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(settings.env_lines()) + "\n")


def _runs_replicator(pid: int) -> bool:
    """Whether the process runs the replicator and leads its own process group, as the demo starts it (a pid
    file can outlive its process, and pids are reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"replicator" in command and os.getpgid(pid) == pid
    except OSError:
        return False


def mariadb_connect(
    admin: dict[str, str | int], database: str | None = None
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(
        host=str(admin["host"]),
        port=int(admin["port"]),
        user=str(admin["user"]),
        password=str(admin["password"]),
        database=database,
        autocommit=True,
        charset="utf8mb4",
    )
