"""A Kafka broker of a test's own, to kill and start again without disturbing the session's: on ports it
keeps across restarts, with its data, as a broker restarted by its operator."""

from __future__ import annotations

import signal
from pathlib import Path

from replicator.devstack.kafka import KafkaServer
from replicator.devstack.process import any_free_port
from replicator.devstack.servers import ServerState, stop_server


class PrivateBroker:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._server = KafkaServer(port=any_free_port(), controller_port=any_free_port(), port_explicit=True,
                                   name="test-kafka", heap="384m")
        self._state: ServerState = self._server.start(root, None)
        self._ports = self._state.ports
        self.bootstrap = f"127.0.0.1:{self._ports['broker']}"
        self.restarts = 0

    def kill(self) -> None:
        """kill -9 of the broker's whole process group."""
        stop_server(self._state, signal.SIGKILL)

    def start_again(self) -> None:
        self._state = self._server.start(self._root, self._state)
        assert self._state.ports == self._ports, (self._state.ports, self._ports)
        self.restarts += 1

    def close(self) -> None:
        stop_server(self._state, signal.SIGKILL)
