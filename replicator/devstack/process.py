"""Process plumbing shared by the devstack servers: ports, detached spawning, readiness, teardown."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from replicator.errors import DevstackError

LOOPBACK = "127.0.0.1"

# Servers started by this process, kept so that stopping one reaps it (no zombie, no ResourceWarning
# about a Popen collected while its process runs: servers are meant to outlive their Popen object).
_children: dict[int, subprocess.Popen[bytes]] = {}


def port_is_free(port: int) -> bool:
    """True when nothing listens on the loopback port and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind (SO_REUSEADDR): connections of a server just stopped, left in TIME_WAIT for a
        # minute, do not keep it from listening on its port again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def choose_port(server: str, preferred: int, *, explicit: bool, avoid: Sequence[int] = ()) -> int:
    """The preferred port when free; otherwise another free one, unless the user asked for that port."""
    if preferred not in avoid and port_is_free(preferred):
        return preferred
    if explicit:
        raise DevstackError(
            f"{server}: port {preferred} is already taken by another process; "
            f"free it or pass a different port"
        )
    for _ in range(20):
        port = any_free_port()
        if port not in avoid:
            return port
    raise DevstackError(f"{server}: could not find a free loopback port")


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    *,
    user: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own session so that it outlives `replicator dev up` and can be stopped
    as a whole process group; stdout and stderr go to its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env=env,
            user=user,
            extra_groups=[] if user else None,
        )
    _children[proc.pid] = proc
    return proc


def run_checked(
    argv: Sequence[str], what: str, *, user: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a set-up command to completion; on failure raise with its output."""
    proc = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        user=user,
        extra_groups=[] if user else None,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
        raise DevstackError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(output))
    return proc.stdout


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (reaping it when it is our own child)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    server: str,
    pid: int,
    log_path: Path,
    probe: Callable[[], bool],
    timeout: float,
) -> None:
    """Poll `probe` until it succeeds; fail fast, with the log's tail, if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise DevstackError(
                f"{server} exited during start-up; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if probe():
            return
        time.sleep(0.2)
    raise DevstackError(
        f"{server} did not become ready within {timeout:.0f}s; last lines of {log_path}:\n{log_tail(log_path)}"
    )


def stop_process_group(pid: int, sig: signal.Signals, timeout: float) -> None:
    """Ask a server to stop with `sig`; kill its whole process group if it has not gone by `timeout`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid) and not _group_alive(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (pid_alive(pid) or _group_alive(pgid)):
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies keep a group "alive" for killpg; look for a live member instead.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
