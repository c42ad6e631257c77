"""The compiled row-image decoder (capture/mariadb/rows.py) against the general path it short-cuts:
mysql-replication's own rows-event parsing (`RowsEvent.rows`), then `types.RowDecoder`.

The table shapes are the table maps recorded from a real MariaDB 10.11 (tests/unit/data/mariadb/rows.json),
the payloads are generated: well-formed values of every type, and arbitrary bytes in every column's
place (invalid dates, out-of-range DECIMAL digit groups, undecodable text, short and long events). The
fast path must give exactly the general path's rows, or None; never a different row and never an error.
tests/integration/test_capture_mariadb.py does the same on rows events read from a real server.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql.protocol import MysqlPacket
from pymysqlreplication.column import Column
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from replicator.capture.mariadb.rows import (
    DELETE_ROWS_V1,
    UPDATE_ROWS_V1,
    UPDATE_ROWS_V2,
    UPDATE_TYPES,
    WRITE_ROWS_V1,
    WRITE_ROWS_V2,
    compile_image_decoder,
    decode_rows_event,
)
from replicator.capture.mariadb.types import ColumnSpec, MySqlType, RowDecoder

FIXTURE = Path(__file__).parent / "data" / "mariadb" / "rows.json"
TABLE_ID = 45
EVENT_TYPES = [WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1, WRITE_ROWS_V2, UPDATE_ROWS_V2, 0x20]


@cache
def _recorded_tables() -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {
        name: table["columns"] for name, table in json.loads(FIXTURE.read_text())["tables"].items()
    }
    return tables


def _shape(name: str) -> tuple[list[Column], list[ColumnSpec]]:
    """The library's columns of a recorded table map, and the ColumnSpecs capture makes of them."""
    columns, specs = [], []
    for data in _recorded_tables()[name]:
        attrs = {k: v for k, v in data.items() if k != "nullable"}
        column = Column(**attrs)
        columns.append(column)
        specs.append(ColumnSpec.from_binlog(column, table=f"typesdb.{name}", nullable=data["nullable"]))
    return columns, specs


SUPPORTED = [name for name in _recorded_tables() if name != "bits"]


def _column(**attrs: Any) -> Column:
    """A table-map column with the attributes the library's parser gives every column."""
    defaults = {"unsigned": False, "is_primary": False, "charset_id": None, "character_set_name": None,
                "collation_name": None, "enum_values": None, "set_values": None, "visibility": False}
    return Column(**{**defaults, **attrs})


class _Ctl:
    """What mysql-replication's event constructors ask of the control connection (no server involved)."""

    charset = "utf8mb4"

    def _get_dbms(self) -> str:
        return "mariadb"


def _packet(event_type: int, columns: int, rows: bytes) -> bytes:
    """A rows-event packet as the binlog dump sends it: OK byte, header, body, CRC32 place."""
    width = (columns + 7) // 8
    bitmaps = b"\xff" * width * (2 if event_type in UPDATE_TYPES else 1)
    post_header = TABLE_ID.to_bytes(6, "little") + b"\x01\x00"
    if event_type >= WRITE_ROWS_V2:
        post_header += b"\x02\x00"  # extra row data: only its own length
    body = post_header + bytes([columns]) + bitmaps + rows
    event_size = 19 + len(body) + 4
    header = struct.pack("<IBIIIH", 1_700_000_000, event_type, 1, event_size, 4242, 0)
    return b"\x00" + header + body + b"\xde\xad\xbe\xef"


def _general(columns: list[Column], specs: list[ColumnSpec], event_type: int, data: bytes) -> list[Any]:
    """mysql-replication's rows for the packet, through RowDecoder, in decode_rows_event's shape."""
    table_map = {TABLE_ID: Table(TABLE_ID, "typesdb", "t", columns)}
    wrapped = BinLogPacketWrapper(
        MysqlPacket(data, "utf8"), table_map, _Ctl(), (0, 0, 0), True,
        frozenset({WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent}),
        None, None, None, None, True, False, False, True, False, False, None,
    )
    decoder = RowDecoder(specs)
    out: list[Any] = []
    for row in wrapped.event.rows:
        if event_type in UPDATE_TYPES:
            before = decoder.decode(row["before_values"], row["before_none_sources"])
            after = decoder.decode(row["after_values"], row["after_none_sources"])
            out.append((decoder.key(after), after, decoder.key(before), before))
        else:
            values = decoder.decode(row["values"], row["none_sources"])
            out.append((decoder.key(values), values, None, None))
    return out


def _fast(columns: list[Column], specs: list[ColumnSpec], event_type: int, data: bytes) -> list[Any] | None:
    image = compile_image_decoder(columns, specs)
    assert image is not None
    post_header = 10 if event_type >= WRITE_ROWS_V2 else 8
    return decode_rows_event(image, data, event_type, post_header, len(columns), len(data) - 4)


# --- value bytes --------------------------------------------------------------------------------------


def _decimal_bytes(negative: bool, whole: int, fraction: int, precision: int, scale: int) -> bytes:
    """MySQL's binary DECIMAL: digit groups big-endian, negatives inverted, the sign bit flipped."""
    digit_bytes = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
    integral = precision - scale
    whole_text = str(whole).rjust(integral, "0")[-integral:] if integral else ""
    frac_text = str(fraction).rjust(scale, "0")[-scale:] if scale else ""
    out = b""
    left = integral % 9
    if left:
        out += int(whole_text[:left]).to_bytes(digit_bytes[left], "big")
    for i in range(left, integral, 9):
        out += int(whole_text[i : i + 9]).to_bytes(4, "big")
    for i in range(0, scale - scale % 9, 9):
        out += int(frac_text[i : i + 9]).to_bytes(4, "big")
    if scale % 9:
        out += int(frac_text[scale - scale % 9 :]).to_bytes(digit_bytes[scale % 9], "big")
    if negative:
        out = bytes(b ^ 0xFF for b in out)
    return bytes([out[0] ^ 0x80]) + out[1:]


def _fraction_bytes(micro: int, fsp: int) -> bytes:
    if not fsp:
        return b""
    stored = micro // 10 ** (6 - fsp)
    if fsp % 2:
        stored *= 10  # odd precisions are stored with one more (zero) digit
    return stored.to_bytes((fsp + 1) // 2, "big")


def _size(column: Column) -> int:
    kind = column.type
    fixed = {MySqlType.TINY: 1, MySqlType.SHORT: 2, MySqlType.INT24: 3, MySqlType.LONG: 4, MySqlType.LONGLONG: 8,
             MySqlType.YEAR: 1, MySqlType.FLOAT: 4, MySqlType.DOUBLE: 8, MySqlType.DATE: 3}
    if kind in fixed:
        return fixed[kind]
    fsp_bytes = (getattr(column, "fsp", 0) + 1) // 2
    if kind == MySqlType.DATETIME2:
        return 5 + fsp_bytes
    if kind == MySqlType.TIMESTAMP2:
        return 4 + fsp_bytes
    if kind == MySqlType.TIME2:
        return 3 + fsp_bytes
    if kind == MySqlType.NEWDECIMAL:
        return len(_decimal_bytes(False, 0, 0, column.precision, column.decimals))
    if kind in (MySqlType.ENUM, MySqlType.SET):
        return int(column.size)
    raise AssertionError(f"no fixed size for type {kind}")


def _prefix_width(column: Column) -> int:
    if column.type == MySqlType.BLOB:
        return int(column.length_size)
    return 2 if column.max_length > 255 else 1


def _string(column: Column, content: bytes) -> bytes:
    return len(content).to_bytes(_prefix_width(column), "little") + content


_INT_FORMATS = {MySqlType.TINY: "<b", MySqlType.SHORT: "<h", MySqlType.LONG: "<i", MySqlType.LONGLONG: "<q"}
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
_LATIN1 = st.text(st.sampled_from("abcxyz é€ÿ-_0"), max_size=5)


def _valid(column: Column) -> st.SearchStrategy[bytes]:
    """Bytes of a well-formed value the fast path must take (not decline)."""
    kind = column.type
    if kind in (MySqlType.VARCHAR, MySqlType.STRING, MySqlType.BLOB):
        name = getattr(column, "character_set_name", None)
        if name == "binary":
            return st.binary(max_size=min(getattr(column, "max_length", 255) or 255, 40)).map(
                lambda b: _string(column, b)
            )
        if name == "cp1252":
            return _LATIN1.map(lambda t: _string(column, t.encode("cp1252")))
        limit = getattr(column, "max_length", None) or 200
        return _TEXT.filter(lambda t: len(t.encode()) <= limit).map(lambda t: _string(column, t.encode()))
    if kind == MySqlType.NEWDECIMAL:
        p, s = column.precision, column.decimals
        # Zeros on either side often: negative zero and "-0.05" are where the sign handling shows.
        return st.builds(
            _decimal_bytes, st.booleans(), st.one_of(st.just(0), st.integers(0, 10 ** (p - s) - 1)),
            st.one_of(st.just(0), st.integers(0, 10**s - 1)), st.just(p), st.just(s),
        )
    if kind in _INT_FORMATS:
        fmt = _INT_FORMATS[kind].upper() if column.unsigned else _INT_FORMATS[kind]
        bits = 8 * struct.calcsize(fmt)
        low, high = (0, 2**bits - 1) if column.unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return st.integers(low, high).map(lambda v: struct.pack(fmt, v))
    if kind == MySqlType.INT24:
        low, high = (0, 2**24 - 1) if column.unsigned else (-(2**23), 2**23 - 1)
        return st.integers(low, high).map(lambda v: v.to_bytes(3, "little", signed=not column.unsigned))
    fsp = getattr(column, "fsp", 0)
    micro = st.integers(0, 999_999)
    if kind == MySqlType.DATE:
        zero = st.sampled_from([0, (2024 << 9) | (0 << 5) | 10, (2024 << 9) | (1 << 5)])  # zero date, month, day
        real = st.dates().map(lambda d: (d.year << 9) | (d.month << 5) | d.day)
        return st.one_of(zero, real).map(lambda v: v.to_bytes(3, "little"))
    if kind == MySqlType.DATETIME2:
        # Any field values, invalid dates included (the library reads those as None, so must the fast path).
        def datetime2(y: int, m: int, d: int, h: int, mi: int, s: int, us: int) -> bytes:
            packed = (1 << 39) | ((y * 13 + m) << 22) | (d << 17) | (h << 12) | (mi << 6) | s
            return packed.to_bytes(5, "big") + _fraction_bytes(us, fsp)

        return st.builds(
            datetime2, st.integers(0, 9999), st.integers(0, 12), st.integers(0, 31), st.integers(0, 23),
            st.integers(0, 59), st.integers(0, 59), micro,
        )
    if kind == MySqlType.TIMESTAMP2:
        seconds = st.integers(0, 2**31 - 1)
        return st.builds(lambda s, us: s.to_bytes(4, "big") + _fraction_bytes(us, fsp), seconds, micro)
    if kind == MySqlType.TIME2:
        def time2(h: int, mi: int, s: int, us: int) -> bytes:
            return ((1 << 23) | (h << 12) | (mi << 6) | s).to_bytes(3, "big") + _fraction_bytes(us, fsp)

        return st.builds(time2, st.integers(0, 838), st.integers(0, 59), st.integers(0, 59), micro)
    if kind == MySqlType.ENUM:
        return st.integers(0, len(column.enum_values) - 1).map(lambda i: i.to_bytes(int(column.size), "little"))
    if kind == MySqlType.FLOAT:
        return st.floats(width=32, allow_nan=False).map(lambda f: struct.pack("<f", f))
    if kind == MySqlType.DOUBLE:
        return st.floats(allow_nan=False).map(lambda f: struct.pack("<d", f))
    return st.binary(min_size=_size(column), max_size=_size(column))


def _arbitrary(column: Column) -> st.SearchStrategy[bytes]:
    """Any bytes in the column's place: the right size for fixed-size types, any content for strings."""
    if column.type in (MySqlType.VARCHAR, MySqlType.STRING, MySqlType.BLOB):
        return st.binary(max_size=12).map(lambda b: _string(column, b))
    size = _size(column)
    return st.binary(min_size=size, max_size=size)


def _image(draw: Any, columns: list[Column], specs: list[ColumnSpec], valid: bool) -> bytes:
    nulls = 0
    for i, spec in enumerate(specs):
        if spec.nullable and draw(st.integers(0, 4)) == 0:
            nulls |= 1 << i
    out = nulls.to_bytes((len(columns) + 7) // 8, "little")
    for i, column in enumerate(columns):
        if not nulls & (1 << i):
            out += draw(_valid(column) if valid else st.one_of(_valid(column), _arbitrary(column)))
    return out


def _rows(draw: Any, columns: list[Column], specs: list[ColumnSpec], event_type: int, valid: bool) -> bytes:
    images = 2 if event_type in UPDATE_TYPES else 1
    return b"".join(
        _image(draw, columns, specs, valid) for _ in range(images * draw(st.integers(1, 3)))
    )


# --- the properties -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUPPORTED)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), event_type=st.sampled_from(EVENT_TYPES))
def test_well_formed_rows_take_the_fast_path_and_decode_as_the_library_does(
    name: str, data: Any, event_type: int
) -> None:
    columns, specs = _shape(name)
    packet = _packet(event_type, len(columns), _rows(data.draw, columns, specs, event_type, valid=True))
    fast = _fast(columns, specs, event_type, packet)
    assert fast is not None
    # repr: NaN-free values, but -0.0 and 0.0 must not pass for each other.
    assert repr(fast) == repr(_general(columns, specs, event_type, packet))


@pytest.mark.parametrize("name", SUPPORTED)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), event_type=st.sampled_from(EVENT_TYPES), cut=st.integers(-3, 3))
def test_any_payload_decodes_as_the_library_does_or_goes_to_it(
    name: str, data: Any, event_type: int, cut: int
) -> None:
    columns, specs = _shape(name)
    rows = _rows(data.draw, columns, specs, event_type, valid=False)
    # Rows cut short or followed by stray bytes.
    rows = rows[:cut] if cut < 0 else rows + bytes(range(cut))
    packet = _packet(event_type, len(columns), rows)
    fast = _fast(columns, specs, event_type, packet)
    if fast is None:
        return  # the general path decides, as it did before the fast path existed
    general = _general(columns, specs, event_type, packet)  # must not raise when the fast path did not
    assert repr(fast).replace("nan", "NaN") == repr(general).replace("nan", "NaN")


# --- examples and edges ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUPPORTED)
def test_every_recorded_shape_but_bit_compiles(name: str) -> None:
    assert compile_image_decoder(*_shape(name)) is not None


def test_bit_columns_keep_the_general_path() -> None:
    assert compile_image_decoder(*_shape("bits")) is None


@pytest.mark.parametrize(
    ("negative", "whole", "fraction", "precision", "scale", "text"),
    [
        (False, 12345678901234, 123456, 20, 6, "12345678901234.123456"),
        (True, 0, 50000, 20, 6, "-0.050000"),
        (True, 0, 0, 10, 2, "0.00"),  # no negative zero, as Java's BigDecimal
        (False, 42, 0, 10, 0, "42"),
        (True, 42, 0, 10, 0, "-42"),
        (False, 0, 5, 2, 2, "0.05"),
        (False, 10**35 - 1, 10**30 - 1, 65, 30, "9" * 35 + "." + "9" * 30),
    ],
)
def test_decimal_text(negative: bool, whole: int, fraction: int, precision: int, scale: int, text: str) -> None:
    columns = [_column(type=MySqlType.LONG, name="id", is_primary=True, unsigned=False),
               _column(type=MySqlType.NEWDECIMAL, name="d", precision=precision, decimals=scale, unsigned=False)]
    specs = [ColumnSpec.from_binlog(c, table="db.t", nullable=i == 1) for i, c in enumerate(columns)]
    image = b"\x00" + (7).to_bytes(4, "little") + _decimal_bytes(negative, whole, fraction, precision, scale)
    packet = _packet(WRITE_ROWS_V1, 2, image)
    fast = _fast(columns, specs, WRITE_ROWS_V1, packet)
    assert fast == _general(columns, specs, WRITE_ROWS_V1, packet) == [({"id": 7}, {"id": 7, "d": text}, None, None)]


def test_zero_dates_and_sets_as_the_general_path_encodes_them() -> None:
    columns, specs = _shape("zero_dates")
    image = b"\x00\x00" + (1).to_bytes(4, "little") + bytes(3) + bytes(5) + bytes(8) + bytes(4) + bytes(3) + bytes(7)
    image += bytes(8) + bytes(4) + bytes(7)
    packet = _packet(WRITE_ROWS_V1, len(columns), image)
    fast = _fast(columns, specs, WRITE_ROWS_V1, packet)
    assert fast is not None
    assert fast == _general(columns, specs, WRITE_ROWS_V1, packet)
    row = fast[0][1]
    assert row["d"] is None and row["nn_d"] == 0 and row["nn_ts0"] == "1970-01-01T00:00:00Z"


def test_a_row_image_without_every_column_goes_to_the_general_path() -> None:
    columns, specs = _shape("ints")
    packet = bytearray(_packet(WRITE_ROWS_V1, len(columns), bytes(2) + bytes(40)))
    packet[20 + 8 + 1] = 0xFE  # column 0 absent (binlog_row_image=MINIMAL)
    assert _fast(columns, specs, WRITE_ROWS_V1, bytes(packet)) is None


def test_invalid_text_goes_to_the_general_path_which_reports_it() -> None:
    columns = [_column(type=MySqlType.LONG, name="id", is_primary=True, unsigned=False),
               _column(type=MySqlType.VARCHAR, name="s", max_length=40, character_set_name="utf8")]
    specs = [ColumnSpec.from_binlog(c, table="db.t", nullable=True) for c in columns]
    packet = _packet(WRITE_ROWS_V1, 2, b"\x00" + (1).to_bytes(4, "little") + b"\x02\xff\xfe")
    assert _fast(columns, specs, WRITE_ROWS_V1, packet) is None
    with pytest.raises(UnicodeDecodeError):
        _general(columns, specs, WRITE_ROWS_V1, packet)


def test_a_longer_post_header_than_known_goes_to_the_general_path() -> None:
    columns, specs = _shape("ints")
    image = compile_image_decoder(columns, specs)
    assert image is not None
    packet = _packet(WRITE_ROWS_V1, len(columns), bytes(2) + bytes(40))
    assert decode_rows_event(image, packet, WRITE_ROWS_V1, 9, len(columns), len(packet) - 4) is None


def test_timestamps_read_as_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    columns = [_column(type=MySqlType.LONG, name="id", is_primary=True, unsigned=False),
               _column(type=MySqlType.TIMESTAMP2, name="ts", fsp=3)]
    specs = [ColumnSpec.from_binlog(c, table="db.t", nullable=True) for c in columns]
    seconds = int(dt.datetime(2024, 3, 10, 10, tzinfo=dt.UTC).timestamp())
    packet = _packet(
        WRITE_ROWS_V1, 2, b"\x00" + (1).to_bytes(4, "little") + seconds.to_bytes(4, "big") + _fraction_bytes(100_000, 3)
    )
    monkeypatch.setenv("TZ", "America/New_York")
    assert _fast(columns, specs, WRITE_ROWS_V1, packet) == [
        ({"id": 1}, {"id": 1, "ts": "2024-03-10T10:00:00.100Z"}, None, None)
    ]
