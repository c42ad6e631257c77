"""The PostgreSQL source's inlined hot paths against the general ones they short-cut, without a server: a
scripted replication cursor feeds `_replicate` pgoutput payloads built here (protocol 1, as capture starts
it). Transaction ids and times, positions and rows are what the general functions give; the re-snapshot
request check still runs every REQUEST_CHECK_TRANSACTIONS transactions; and the timestamptz case the
insert decoder writes inline decodes as the column's decoder does."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.base import Heartbeat, OneChangeTx, TxBegin, TxCommit
from replicator.capture.postgres import pgoutput as pg
from replicator.capture.postgres.inserts import compile_insert_decoder
from replicator.capture.postgres.source import PostgresCaptureSource
from replicator.capture.postgres.types import make_decoder, zoned_timestamp_utc_layout
from replicator.capture.snapshot import REQUEST_CHECK_TRANSACTIONS
from replicator.config import PostgresSourceConfig
from replicator.envelope.debezium import postgres_transaction_id
from replicator.events import Op, PostgresPosition, RowChange, SourceTransaction, TableId
from tests.unit.test_pg_inserts import _payload

TABLE = TableId("public", "order_lines")
OID = 16390
# id int4 (key), qty int4, sku varchar(40), price numeric(10,2), created_at timestamptz
COLUMNS = [("id", 23, -1), ("qty", 23, -1), ("sku", 1043, 44), ("price", 1700, 655366), ("created_at", 1184, -1)]


def _relation() -> bytes:
    out = b"R" + struct.pack(">I", OID) + b"public\x00order_lines\x00d" + struct.pack(">H", len(COLUMNS))
    for i, (name, type_oid, typmod) in enumerate(COLUMNS):
        out += bytes([1 if i == 0 else 0]) + name.encode() + b"\x00" + struct.pack(">Ii", type_oid, typmod)
    return out


def _insert(values: list[str | None]) -> bytes:
    return _payload(values, oid=OID)


def _row(n: int) -> list[str | None]:
    return [str(n), str(n % 100), f"SKU-{n}", f"{n % 1000}.{n % 100:02d}", f"2026-11-29 08:28:{n % 60:02d}.{n:06d}+00"]


class _Message:
    def __init__(self, payload: bytes, data_start: int) -> None:
        self.payload = payload
        self.data_start = data_start
        self.wal_end = data_start


class _Cursor:
    """The replication cursor: hands out the scripted messages, asking the source to stop with the last
    one (it stops at the next transaction boundary, so the stream ends there without an idle wait)."""

    def __init__(self, source: PostgresCaptureSource, messages: list[_Message]) -> None:
        self._source = source
        self._messages = list(messages)
        self._next = 0
        self.wal_end = 0

    def read_message(self) -> _Message:
        message = self._messages[self._next]
        self._next += 1
        if self._next == len(self._messages):
            self._source.stop()
        return message

    def send_feedback(self, **_: Any) -> None: ...

    def fileno(self) -> int:
        raise AssertionError("the stream is never idle here")


class _Watcher:
    def __init__(self) -> None:
        self.polls = 0

    def poll(self) -> None:
        self.polls += 1

    def close(self) -> None: ...


class _Offsets:
    topic = "src.offsets"


def _transactions(count: int, rows_per_tx: int) -> list[_Message]:
    messages = []
    lsn = 0x1000
    n = 0
    for t in range(count):
        xid = 700 + t
        first = lsn
        final_lsn = first + 0x100 * (rows_per_tx + 1)
        ts = 817_000_000_000_000 + t * 1_234
        messages.append(_Message(b"B" + struct.pack(">QqI", final_lsn, ts, xid), 0))
        if t == 0:
            messages.append(_Message(_relation(), 0))
        for r in range(rows_per_tx):
            n += 1
            messages.append(_Message(_insert(_row(n)), first + 0x100 * r))
        messages.append(_Message(b"C" + struct.pack(">BQQq", 0, final_lsn, final_lsn + 0x30, ts), final_lsn))
        lsn = final_lsn + 0x100
    return messages


def _source(messages: list[_Message]) -> tuple[PostgresCaptureSource, _Watcher]:
    config = PostgresSourceConfig.model_validate(
        {"name": "src", "kind": "postgresql", "tables": [str(TABLE)], "snapshot": "never",
         "connection": {"user": "u", "database": "d"}}
    )
    source = PostgresCaptureSource(config, _Offsets())  # type: ignore[arg-type]
    source._primary_keys[TABLE] = ("id",)
    source._cursor = _Cursor(source, messages)
    watcher = _Watcher()
    source._watcher = watcher  # type: ignore[assignment]
    return source, watcher


def _stream(messages: list[_Message]) -> Iterator[Any]:
    source, _ = _source(messages)
    return source._replicate()


def _split(items: list[Any]) -> list[Any]:
    """The stream with each OneChangeTx as the three items it stands for."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, OneChangeTx):
            out += [TxBegin(item.tx), item.change, TxCommit(item.tx, item.position)]
        else:
            out.append(item)
    return out


@pytest.mark.parametrize("rows_per_tx", [1, 2])
def test_streamed_transactions_are_what_the_general_functions_give(rows_per_tx: int) -> None:
    messages = _transactions(3, rows_per_tx)
    streamed = list(_stream(messages))
    if rows_per_tx == 1:
        # One item per transaction of one change, but for the first, whose Relation message came between
        # its begin and its change.
        expected = ["TxBegin", "RowChange", "TxCommit", "OneChangeTx", "OneChangeTx"]
        assert [type(i).__name__ for i in streamed] == expected
    else:
        assert [type(i).__name__ for i in streamed] == ["TxBegin", "RowChange", "RowChange", "TxCommit"] * 3
    items = _split(streamed)
    names = [name for name, _, _ in COLUMNS]
    decoders = [make_decoder(oid, typmod) for _, oid, typmod in COLUMNS]
    parsed = [(pg.parse_message(m.payload, False), m.data_start) for m in messages]
    begins = [b for b, _ in parsed if isinstance(b, pg.Begin)]
    commits = [c for c, _ in parsed if isinstance(c, pg.Commit)]
    inserts = [(i, lsn) for i, lsn in parsed if isinstance(i, pg.Insert)]
    markers = [i for i in items if isinstance(i, TxBegin | TxCommit)]
    for index, item in enumerate(markers):
        begin = begins[index // 2]
        tx: SourceTransaction = item.tx
        assert tx.id == postgres_transaction_id(begin.xid, begin.final_lsn)
        assert tx.commit_ts_ms == pg.pg_timestamp_to_unix_ms(begin.commit_ts_pg_us)
        assert tx.position == PostgresPosition(begin.final_lsn, begin.final_lsn, begin.xid)
        if isinstance(item, TxCommit):
            commit = commits[index // 2]
            assert item.position == PostgresPosition(commit.end_lsn, commit.commit_lsn, begin.xid)
    changes = [i for i in items if isinstance(i, RowChange)]
    for n, (change, (insert, lsn)) in enumerate(zip(changes, inserts, strict=True)):
        begin = begins[n // rows_per_tx]
        after = {
            name: None if value is None else decode(value)
            for name, decode, value in zip(names, decoders, insert.new, strict=True)
            if value is None or isinstance(value, str)
        }
        assert len(after) == len(names)
        assert change == RowChange(
            TABLE, Op.CREATE, {"id": after["id"]}, None, after, PostgresPosition(lsn, begin.final_lsn, begin.xid)
        )


def test_the_request_check_still_runs_every_so_many_transactions() -> None:
    count = 2 * REQUEST_CHECK_TRANSACTIONS + 5
    source, watcher = _source(_transactions(count, 1))
    commits = sum(isinstance(item, TxCommit | OneChangeTx) for item in source._replicate())
    assert commits == count
    assert watcher.polls == 2
    assert source._commits_since_check == 5


def test_heartbeats_are_not_part_of_a_busy_stream() -> None:
    assert not any(isinstance(item, Heartbeat) for item in _stream(_transactions(2, 3)))


# --- the timestamptz case the insert decoder writes inline ------------------------------------------

_digits = st.integers(0, 9).map(str)
_utc_text = st.builds(
    lambda y, mo, d, h, mi, s, f: f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{f:06d}+00",
    st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
    st.integers(0, 59), st.integers(0, 999_999),
)


@st.composite
def _near_utc_text(draw: st.DrawFn) -> str:
    """A UTC text of the common shape, sometimes with one character replaced (non-ASCII included) or cut."""
    text = draw(_utc_text)
    precision = draw(st.integers(0, 6))
    text = text[: 20 + precision] + "+00" if precision else text[:19] + "+00"
    change = draw(st.sampled_from(["none", "replace", "cut"]))
    if change == "replace":
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.characters(exclude_categories=["Cs"])) + text[at + 1 :]
    elif change == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=400, deadline=None)
@given(_near_utc_text(), st.integers(0, 6))
def test_inline_timestamptz_decodes_as_its_decoder(text: str, precision: int) -> None:
    decoder = make_decoder(1184, precision)
    assert zoned_timestamp_utc_layout(decoder) is not None
    decode = compile_insert_decoder(["t"], [decoder], [0])
    payload = _insert([text])
    try:
        expected = decoder(text)
    except (ValueError, OverflowError):
        assert decode(payload) is None  # left to the general path, which reports it
        return
    assert decode(payload) == ({"t": expected}, {"t": expected})


def test_only_timestamptz_decoders_have_a_utc_layout() -> None:
    assert zoned_timestamp_utc_layout(make_decoder(1184, 3)) == (26, 23)
    assert zoned_timestamp_utc_layout(make_decoder(1184, 0)) == (22, 19)
    assert zoned_timestamp_utc_layout(make_decoder(1114, 6)) is None
    assert zoned_timestamp_utc_layout(make_decoder(25, -1)) is None
