"""A throwaway PostgreSQL 15 server with logical decoding enabled (the ERP side)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from replicator.devstack.process import (
    LOOPBACK,
    choose_port,
    pid_alive,
    run_checked,
    spawn_detached,
    wait_until_ready,
)
from replicator.devstack.servers import ServerState
from replicator.errors import DevstackError

PG_MAJOR = "15"

# Durability is traded for speed: this server is throwaway and the tests kill the replicator, not it.
SERVER_SETTINGS = {
    "listen_addresses": LOOPBACK,
    "wal_level": "logical",
    "track_commit_timestamp": "on",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    "max_connections": "200",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "shared_buffers": "256MB",
    "logical_decoding_work_mem": "64MB",
    "log_min_messages": "warning",
    "timezone": "UTC",
}


def find_bindir() -> Path:
    candidates = [os.environ.get("REPLICATOR_PG_BINDIR", ""), f"/usr/lib/postgresql/{PG_MAJOR}/bin"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise DevstackError(
        f"PostgreSQL {PG_MAJOR} server binaries not found (looked in /usr/lib/postgresql/{PG_MAJOR}/bin "
        f"and $REPLICATOR_PG_BINDIR); install Debian's postgresql-{PG_MAJOR} (scripts/setup.sh does)"
    )


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: run it as the `postgres` system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise DevstackError(
            "running as root, PostgreSQL needs the 'postgres' system user, which does not exist; "
            "install Debian's postgresql package (it creates the user)"
        ) from exc
    return "postgres"


def _reachable_by(user: str, path: Path) -> bool:
    entry = pwd.getpwnam(user)
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == entry.pw_uid:
            continue
        mask = 0o010 if st.st_gid == entry.pw_gid else 0o001
        if not st.st_mode & mask:
            return False
    return True


@dataclass
class PostgresServer:
    port: int = 55432
    port_explicit: bool = False
    password: str = ""
    name: str = "postgres"
    stop_signal: signal.Signals = signal.SIGINT  # "fast" shutdown; SIGTERM waits for clients to leave
    # Server settings that override (or add to) SERVER_SETTINGS, e.g. {"wal_level": "replica"} for a
    # server that logical decoding cannot read.
    extra_settings: dict[str, str] = field(default_factory=dict)

    def start(self, root: Path, previous: ServerState | None) -> ServerState:
        bindir = find_bindir()
        user = _run_as()
        base = root / "postgres"
        if user and not _reachable_by(user, root):
            # The state folder sits below a folder that user cannot enter (e.g. /root): keep the data
            # where it can, and remember where.
            digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
            base = Path("/tmp") / f"replicator-devstack-pg-{digest}"
        data_dir = Path(previous.data_dir) if previous else base / "data"
        log_path = root / "logs" / "postgres.log"
        sock_dir = data_dir.parent / "sock"
        port = (
            previous.main_port
            if previous
            else choose_port("postgres", self.port, explicit=self.port_explicit)
        )
        if previous and not self.port_explicit:
            port = choose_port("postgres", port, explicit=False)

        if not (data_dir / "PG_VERSION").exists():
            self._init(bindir, data_dir, user)
        sock_dir.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(sock_dir, user, user)
        _remove_stale_pidfile(data_dir)

        argv = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(sock_dir)]
        for key, value in {**SERVER_SETTINGS, **self.extra_settings}.items():
            argv += ["-c", f"{key}={value}"]
        proc = spawn_detached(argv, log_path, user=user)
        dsn = self.dsn(port, "postgres")

        def probe() -> bool:
            try:
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                return False

        wait_until_ready("postgres", proc.pid, log_path, probe, timeout=60)
        return ServerState(
            name=self.name,
            pid=proc.pid,
            ports={"port": port},
            data_dir=str(data_dir),
            log_path=str(log_path),
        )

    def _init(self, bindir: Path, data_dir: Path, user: str | None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        pwfile = data_dir.parent / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        if user:
            for path in (data_dir.parent, data_dir, pwfile):
                shutil.chown(path, user, user)
        try:
            run_checked(
                [
                    str(bindir / "initdb"),
                    "-D", str(data_dir),
                    "-U", "postgres",
                    "-E", "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                "initdb",
                user=user,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def dsn(self, port: int, dbname: str) -> str:
        return f"postgresql://postgres:{self.password}@{LOOPBACK}:{port}/{dbname}"


def _remove_stale_pidfile(data_dir: Path) -> None:
    """A server killed with -9 leaves postmaster.pid behind; PostgreSQL copes unless the pid was reused."""
    pidfile = data_dir / "postmaster.pid"
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (ValueError, IndexError):
        pidfile.unlink(missing_ok=True)
        return
    if not pid_alive(pid):
        pidfile.unlink(missing_ok=True)
    else:
        raise DevstackError(
            f"postgres: {data_dir} is in use by running process {pid}; stop it first (replicator dev down)"
        )
