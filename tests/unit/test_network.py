"""The TCP settings behind `network_timeout_s` (replicator/network.py): what they add up to, that libpq takes
their names, and that a socket gets them."""

from __future__ import annotations

import socket

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.network import keepalive, libpq_options, set_socket_keepalive


@given(st.integers(min_value=1, max_value=3600))
def test_probes_start_within_the_timeout_and_fit_in_it(timeout_s: int) -> None:
    settings = keepalive(timeout_s)
    assert settings.idle_s >= 1 and settings.interval_s >= 1 and settings.count >= 1
    assert settings.user_timeout_ms == timeout_s * 1000
    if timeout_s >= 3:  # below that one probe a second is the floor, and TCP_USER_TIMEOUT ends it on time
        assert settings.idle_s + settings.interval_s * settings.count <= timeout_s
        assert settings.count >= 2


def test_the_default_half_minute() -> None:
    settings = keepalive(30)
    assert (settings.idle_s, settings.interval_s, settings.count) == (10, 4, 5)


def test_a_timeout_under_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 s, got 0"):
        keepalive(0)


def test_libpq_knows_every_option_given() -> None:
    options = libpq_options(12)
    # libpq's own parser: an unknown keyword is an error.
    parsed = psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo("host=h dbname=d", **options))
    assert {key: int(value) for key, value in parsed.items() if key in options} == options
    assert options["tcp_user_timeout"] == 12_000 and options["connect_timeout"] == 12


def test_a_tcp_socket_gets_the_settings_and_a_unix_socket_is_left_alone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        set_socket_keepalive(client, 9)
        settings = keepalive(9)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == settings.idle_s
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == settings.interval_s
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == settings.count
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9000
    left, right = socket.socketpair()
    with left, right:
        set_socket_keepalive(left, 9)
        assert left.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
