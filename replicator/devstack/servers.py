"""What the devstack knows about each server it runs, persisted between `replicator dev` calls."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from replicator.devstack.process import pid_alive, port_accepts, stop_process_group


@dataclass
class ServerState:
    """One running (or once running) server: enough to check on it and to stop it."""

    name: str
    pid: int
    ports: dict[str, int]
    data_dir: str
    log_path: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerState:
        return cls(**data)

    @property
    def main_port(self) -> int:
        return next(iter(self.ports.values()))

    def health(self) -> tuple[bool, str]:
        """(healthy, human description) as `replicator dev status` prints it."""
        if not pid_alive(self.pid):
            return False, f"down: process {self.pid} is gone (log: {self.log_path})"
        closed = [f"{label} {port}" for label, port in self.ports.items() if not port_accepts(port)]
        if closed:
            return False, f"process {self.pid} runs but does not answer on {', '.join(closed)}"
        ports = ", ".join(f"{label} {port}" for label, port in self.ports.items())
        return True, f"running, pid {self.pid}, {ports}"


class Server(Protocol):
    """A throwaway local server. `start` is idempotent over an existing data directory."""

    name: str
    stop_signal: signal.Signals

    def start(self, root: Path, previous: ServerState | None) -> ServerState: ...


def stop_server(state: ServerState, stop_signal: signal.Signals, timeout: float = 30.0) -> None:
    if pid_alive(state.pid):
        stop_process_group(state.pid, stop_signal, timeout)
