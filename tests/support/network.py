"""Cutting a process's established TCP connections off without closing them: what a vanished host or a broken
network path looks like to its peers. Packets of those connections are dropped (iptables, both directions),
so nothing answers and nothing resets; new connections to the same ports go through, as they would to a
server that failed over. Needs root and iptables (scripts/setup.sh installs it)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator


def established_connections(pid: int, ports: set[int]) -> list[tuple[int, int]]:
    """(local port, remote port) of every established TCP connection of `pid` to one of `ports`."""
    out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()  # Recv-Q Send-Q local:port peer:port users:(("name",pid=N,fd=M),...)
        if len(fields) < 5 or f"pid={pid}," not in " ".join(fields[4:]):
            continue
        local, peer = int(fields[2].rsplit(":", 1)[1]), int(fields[3].rsplit(":", 1)[1])
        if peer in ports:
            found.append((local, peer))
    return found


def _rules(connections: list[tuple[int, int]]) -> list[list[str]]:
    rules = []
    for local, peer in connections:
        rules.append(["-p", "tcp", "--sport", str(local), "--dport", str(peer), "-j", "DROP"])
        rules.append(["-p", "tcp", "--sport", str(peer), "--dport", str(local), "-j", "DROP"])
    return rules


@contextlib.contextmanager
def black_hole(connections: list[tuple[int, int]]) -> Iterator[None]:
    """Drop every packet of `connections` (local port, peer port; on this host's loopback) until the block
    ends. The rules are removed even when the block fails; a rule that cannot be removed fails the test."""
    added: list[list[str]] = []
    try:
        for rule in _rules(connections):
            subprocess.run(["iptables", "-I", "INPUT", *rule], check=True, capture_output=True)
            added.append(rule)
        yield
    finally:
        failed = [rule for rule in added
                  if subprocess.run(["iptables", "-D", "INPUT", *rule], capture_output=True).returncode != 0]
        if failed:
            raise RuntimeError(f"could not remove iptables rules {failed}")
