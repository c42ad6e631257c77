"""How long a database connection may go unanswered before it counts as lost (`network_timeout_s`).

A server host that vanishes (powered off, cut off by a network fault, its address moved to a standby by a
failover) sends no reset. The client's socket stays open, and a read waits for an answer that never comes:
Linux sends its first keepalive probe after two hours, and gives up retransmitting unacknowledged data only
after about fifteen minutes. Until then a capture or an applier waits without a word, holding its place.

With a timeout, the kernel ends such a connection itself. Keepalive probes start after a third of it, and
TCP_USER_TIMEOUT ends the connection once sent data or probes have gone unacknowledged for the whole of it.
The read then fails, the driver raises its lost-connection error, and the runner restarts the worker, which
connects again. The server's kernel acknowledges data and answers probes while the server itself is busy, so
a statement that runs long is never cut short by this; only silence of the host or the path is.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    PyMySqlConnection = Connection[Cursor]


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """TCP settings that end a connection unanswered for `timeout_s`."""

    timeout_s: int
    idle_s: int  # silence before the first probe
    interval_s: int  # between probes
    count: int  # unanswered probes that end the connection (TCP_USER_TIMEOUT usually ends it first)

    @property
    def user_timeout_ms(self) -> int:
        return self.timeout_s * 1000


def keepalive(timeout_s: int) -> KeepAlive:
    """Probes from a third of `timeout_s` on, five of them within it (one a second at least)."""
    if timeout_s < 1:
        raise ValueError(f"network timeout must be at least 1 s, got {timeout_s}")
    idle = max(1, timeout_s // 3)
    interval = max(1, (timeout_s - idle) // 5)
    count = max(1, (timeout_s - idle) // interval)
    return KeepAlive(timeout_s, idle, interval, count)


def libpq_options(timeout_s: int) -> dict[str, Any]:
    """libpq connection parameters (psycopg and psycopg2 take them as keyword arguments) for `timeout_s`,
    connecting included."""
    settings = keepalive(timeout_s)
    return {
        "connect_timeout": timeout_s,
        "keepalives": 1,
        "keepalives_idle": settings.idle_s,
        "keepalives_interval": settings.interval_s,
        "keepalives_count": settings.count,
        "tcp_user_timeout": settings.user_timeout_ms,
    }


def set_socket_keepalive(sock: socket.socket, timeout_s: int) -> None:
    """The same settings on an open TCP socket (PyMySQL has no options for them). A Unix socket has no
    network path to lose and is left as it is."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    settings = keepalive(timeout_s)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, settings.idle_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, settings.interval_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, settings.count)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, settings.user_timeout_ms)


def pymysql_connect(*, host: str, port: int, timeout_s: int, **options: Any) -> PyMySqlConnection:
    """`pymysql.connect(host=…, port=…, **options)` over a TCP socket with `timeout_s`'s settings (and
    PyMySQL's own TCP_NODELAY), connecting within `timeout_s`. A failure to connect raises PyMySQL's
    OperationalError 2003, as its own connect does."""
    import pymysql

    conn = pymysql.connect(host=host, port=port, connect_timeout=timeout_s, defer_connect=True, **options)
    try:
        sock = socket.create_connection((host, port), timeout_s)
    except OSError as exc:
        raise pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on {host!r} ({exc})") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_socket_keepalive(sock, timeout_s)
        conn.connect(sock)
    except BaseException:
        sock.close()
        raise
    return conn


def pymysql_connector(timeout_s: int) -> Callable[..., PyMySqlConnection]:
    """A stand-in for `pymysql.connect(**settings)` for code that connects by itself (mysql-replication's
    `pymysql_wrapper`): the same connection, with `timeout_s`'s settings."""

    def connect(*, host: str, port: int = 3306, **settings: Any) -> PyMySqlConnection:
        settings.pop("connect_timeout", None)  # `timeout_s` is the connect timeout too
        return pymysql_connect(host=host, port=port, timeout_s=timeout_s, **settings)

    return connect
