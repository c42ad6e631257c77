"""The devstack itself: start, notice a dead server, restart it, stop without leaving a process."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from replicator.devstack import DevStack
from replicator.devstack.process import choose_port, pid_alive
from replicator.errors import DevstackError

pytestmark = pytest.mark.integration


def test_a_taken_preferred_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        chosen = choose_port("postgres", taken, explicit=False)
        assert chosen != taken
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", chosen))


def test_a_port_whose_server_just_stopped_is_free_again_despite_its_connections_in_time_wait() -> None:
    # A server that closed its end of a connection first leaves it in TIME_WAIT for a minute; the server
    # restarted on that port binds with SO_REUSEADDR and does not mind, so neither may the port check.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            accepted.close()  # the server's side closes first: TIME_WAIT is on the port
    assert choose_port("kafka broker", port, explicit=True) == port


def test_an_explicitly_requested_port_that_is_taken_fails_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        stack = DevStack(state_dir=tmp_path / "stack", pg_port=taken)
        with pytest.raises(DevstackError, match=rf"postgres: port {taken} is already taken"):
            stack.up()
        stack.down()


def test_status_reports_a_killed_server_up_restarts_it_and_down_leaves_no_process(tmp_path: Path) -> None:
    stack = DevStack(state_dir=tmp_path / "stack")
    started = time.monotonic()
    try:
        settings = stack.up()
        print(f"stack up in {time.monotonic() - started:.1f}s")
        env = dict(line.split("=", 1) for line in stack.env_file.read_text().splitlines())
        assert env == {
            "REPLICATOR_SHOP_DSN": settings.shop_dsn,
            "REPLICATOR_ERP_DSN": settings.erp_dsn,
            "REPLICATOR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        }
        assert oct(stack.env_file.stat().st_mode & 0o777) == "0o600"
        assert all(ok for ok, _ in stack.status().values())

        state = stack._load()
        os.kill(state["mariadb"].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(state["mariadb"].pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        report = stack.status()
        assert report["mariadb"][0] is False
        assert f"process {state['mariadb'].pid} is gone" in report["mariadb"][1]
        assert report["postgres"][0] and report["kafka"][0]

        stack.up()  # restarts only what is down, on its old data
        assert all(ok for ok, _ in stack.status().values())
        assert stack._load()["postgres"].pid == state["postgres"].pid
    finally:
        pids = [s.pid for s in stack._load().values()]
        stack.down()
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not any(ok for ok, _ in stack.status().values())
