"""Rows events of one table map straight from the binlog bytes to (key, row) dicts: the capture's fast path.

mysql-replication decodes every value through a generic per-column dispatch (`RowsEvent.__read_values_name`:
a chain of type comparisons, a `struct` call and a wrapper method per read, a `none_sources` dict per row
image), and then `types.RowDecoder` converts the values again. For one-row transactions and for bulk
inserts that was most of the capture's CPU, and the very same work the bare-read ceiling does.
`compile_rows_decoder` instead writes, once per table map, a function for that table's exact columns: each
value is cut out of the row image and turned into its Debezium value in place (integers from the bytes,
text by decoding alone, DECIMAL digits to text without a `Decimal`), and the row and key are built as dict
displays. Where a type's raw value is more involved (dates and times, FLOAT, ENUM/SET, binary strings),
the code computes the raw value exactly as mysql-replication does (the same expressions, in the same
order) and hands it to the column's `types` decoder, so the conversion itself is shared.

Anything but the plain case makes the decoder return None and the caller takes mysql-replication's
path, which accepts or reports it exactly as before: a column type not handled here (BIT, pre-5.6
temporals, MySQL's binary JSON, GEOMETRY), a row image without every column (binlog_row_image other
than FULL), extra row data, a value outside what the library formats the same way (a DECIMAL digit
group over 999999999, a fraction of a second over 999999), a read past the event's end or any exception.
The fast path never raises and never decides anything the general path would decide differently;
tests/unit/test_mariadb_rows.py holds the two equal on generated and mutated payloads, and
tests/integration/test_capture_mariadb.py on every type recorded from a real server.
"""

from __future__ import annotations

import codecs
import datetime as dt
import struct
from collections.abc import Callable, Sequence
from typing import Any

from pymysqlreplication.row_event import RowsEvent

from replicator.capture.mariadb.types import ColumnSpec, MySqlType, make_decoder
from replicator.events import Row

# One row image: (data, position of its null bitmap) -> (key, row, position after it).
ImageDecoder = Callable[[bytes, int], "tuple[Row, Row, int]"]

WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1 = 0x17, 0x18, 0x19
WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2 = 0x1E, 0x1F, 0x20
ROWS_EVENT_TYPES = frozenset({
    WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1, WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2
})
UPDATE_TYPES = frozenset({UPDATE_ROWS_V1, UPDATE_ROWS_V2})
DELETE_TYPES = frozenset({DELETE_ROWS_V1, DELETE_ROWS_V2})
_V2_TYPES = frozenset({WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2})
# The post-header the library knows: table id (6) and flags (2); V2 adds the extra-data length (2).
KNOWN_POST_HEADER = {t: (10 if t in _V2_TYPES else 8) for t in ROWS_EVENT_TYPES}
# A packet is the OK byte, the 19-byte event header, then the event's own bytes.
BODY_START = 20

# Little-endian integers read with one struct call: (signed struct code, size); _unpack_<code> below.
_FIXED_INTEGERS = {MySqlType.SHORT: ("h", 2), MySqlType.LONG: ("i", 4), MySqlType.LONGLONG: ("q", 8)}
_unpack_h = struct.Struct("<h").unpack_from
_unpack_H = struct.Struct("<H").unpack_from
_unpack_i = struct.Struct("<i").unpack_from
_unpack_I = struct.Struct("<I").unpack_from
_unpack_q = struct.Struct("<q").unpack_from
_unpack_Q = struct.Struct("<Q").unpack_from
_unpack_f = struct.Struct("<f").unpack_from
_unpack_d = struct.Struct("<d").unpack_from
_from_bytes = int.from_bytes
_datetime = dt.datetime
_date = dt.date
_timedelta = dt.timedelta
_utcfromtimestamp = dt.datetime.utcfromtimestamp

# DECIMAL: bytes holding 0-8 leftover digits (MySQL's dig2bytes).
_DIGIT_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


class _Unsupported(Exception):
    """A column the fast path has no reader for: the table keeps the general path."""


class _Fallback(Exception):
    """A value the fast path does not format the way mysql-replication does: take the general path."""


def _fsp_bytes(fsp: int) -> int:
    if not 0 <= fsp <= 6:
        raise _Unsupported  # the library reads no fraction for such a (broken) table map
    return (fsp + 1) // 2


def _fraction(data: bytes, pos: int, fsp: int) -> int:
    """`RowsEvent.__read_fsp`: the fraction's big-endian (signed) integer in µs."""
    size = (fsp + 1) // 2  # fsp is 0-6: checked when the decoder is compiled
    if not size:
        return 0
    raw = _from_bytes(data[pos : pos + size], "big", signed=True)
    if fsp % 2:
        raw = int(raw / 10)
    micro: int = raw * 10 ** (6 - fsp)
    return micro


def _datetime2(data: bytes, pos: int, fsp: int) -> dt.datetime | None:
    """`RowsEvent.__read_datetime2` (None for zero and invalid dates)."""
    packed = _from_bytes(data[pos : pos + 5], "big")
    year_month = (packed >> 22) & 0x1FFFF
    try:
        value = _datetime(
            int(year_month / 13),
            year_month % 13,
            (packed >> 17) & 0x1F,
            (packed >> 12) & 0x1F,
            (packed >> 6) & 0x3F,
            packed & 0x3F,
        )
    except ValueError:
        return None
    micro = _fraction(data, pos + 5, fsp)
    if micro > 0:
        value = value.replace(microsecond=micro)
    return value


def _timestamp2(data: bytes, pos: int, fsp: int) -> dt.datetime:
    """TIMESTAMP2 as mysql-replication reads it: a naive UTC datetime."""
    value = _utcfromtimestamp(_from_bytes(data[pos : pos + 4], "big", signed=True))
    micro = _fraction(data, pos + 4, fsp)
    if micro > 0:
        value = value.replace(microsecond=micro)
    return value


def _date3(data: bytes, pos: int) -> dt.date | None:
    """`RowsEvent.__read_date`."""
    packed = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
    if packed == 0:
        return None
    year = (packed & ((1 << 15) - 1) << 9) >> 9
    month = (packed & ((1 << 4) - 1) << 5) >> 5
    day = packed & ((1 << 5) - 1)
    if year == 0 or month == 0 or day == 0:
        return None
    return _date(year=year, month=month, day=day)


def _time2(data: bytes, pos: int, fsp: int) -> dt.timedelta:
    """`RowsEvent.__read_time2`, its arithmetic included (see types.micro_time for what it gets wrong)."""
    packed = _from_bytes(data[pos : pos + 3], "big", signed=True)
    sign = 1 if (packed >> 23) & 1 else -1
    if sign == -1:
        packed = ~packed + 1
    return (
        _timedelta(
            hours=(packed >> 12) & 0x3FF,
            minutes=(packed >> 6) & 0x3F,
            seconds=packed & 0x3F,
            microseconds=_fraction(data, pos + 3, fsp),
        )
        * sign
    )


def _decimal_reader(precision: int, scale: int) -> tuple[int, Callable[[bytes, int], str]]:
    """(byte size, reader) of a DECIMAL(precision, scale) column; the reader gives `types.decimal_text` of
    the value mysql-replication reads, computed from the digit groups without a Decimal."""
    integral = precision - scale
    int_groups, int_left = divmod(integral, 9)
    frac_groups, frac_left = divmod(scale, 9)
    int_left_bytes, frac_left_bytes = _DIGIT_BYTES[int_left], _DIGIT_BYTES[frac_left]
    size = int_left_bytes + 4 * (int_groups + frac_groups) + frac_left_bytes
    all_ones = (1 << (8 * size)) - 1
    sign_bit = 1 << (8 * size - 1)
    frac_left_limit = 10**frac_left
    frac_left_format = f"0{frac_left}d"
    frac_shifts = [8 * (4 * (frac_groups - 1 - g) + frac_left_bytes) for g in range(frac_groups)]
    int_shift_base = 8 * (4 * frac_groups + frac_left_bytes)
    int_shifts = [int_shift_base + 32 * (int_groups - 1 - g) for g in range(int_groups)]
    left_shift = int_shift_base + 32 * int_groups
    left_mask = (1 << (8 * int_left_bytes)) - 1

    def read(data: bytes, pos: int) -> str:
        chunk = data[pos : pos + size]
        if len(chunk) != size:
            raise _Fallback
        packed = _from_bytes(chunk, "big")
        # The sign is the first bit, set for positive values; negative ones are stored inverted.
        negative = not packed & sign_bit
        packed ^= all_ones ^ sign_bit if negative else sign_bit
        whole = (packed >> left_shift) & left_mask
        for shift in int_shifts:
            group = (packed >> shift) & 0xFFFFFFFF
            if group > 999_999_999:
                raise _Fallback  # the library would format it with more than 9 digits (or fail)
            whole = whole * 1_000_000_000 + group
        text = str(whole)
        if scale:
            digits = []
            for shift in frac_shifts:
                group = (packed >> shift) & 0xFFFFFFFF
                if group > 999_999_999:
                    raise _Fallback
                digits.append(f"{group:09d}")
            if frac_left_bytes:
                group = packed & ((1 << (8 * frac_left_bytes)) - 1)
                if group >= frac_left_limit:
                    raise _Fallback
                digits.append(format(group, frac_left_format))
            fraction = "".join(digits)
            text = f"{text}.{fraction}"
            if negative and (whole or fraction.strip("0")):
                text = "-" + text
        elif negative and whole:
            text = "-" + text
        return text

    if int_left_bytes > 4 or frac_left_bytes > 4:  # pragma: no cover - _DIGIT_BYTES tops out at 4
        raise ValueError("digit group wider than 4 bytes")
    return size, read


def _text_encoding(column: Any) -> tuple[str, bool]:
    """(codec, whether mysql-replication yields bytes) for a string column, as `RowsEvent.__read_string`
    decides it: the column's charset through `charset_to_encoding`, utf-8 without one, and the raw bytes
    when Python has no such codec (MariaDB's "binary")."""
    name = getattr(column, "character_set_name", None)
    if name is None:
        return "utf-8", False
    encoding = RowsEvent.charset_to_encoding(name)
    try:
        codecs.lookup(encoding)
    except LookupError:
        return encoding, True
    return encoding, False


def _length_code(size: int) -> str:
    if size == 1:
        return "data[p]"
    if size == 2:
        return "unpack_H(data, p)[0]"
    if 3 <= size <= 8:
        return f"from_bytes(data[p:p + {size}], 'little')"
    raise _Unsupported


def _column_code(i: int, column: Any, spec: ColumnSpec, env: dict[str, Any]) -> str:
    """Statements reading column `i` at `p` into `v{i}` and moving `p` past it."""
    kind = column.type
    unsigned = bool(getattr(column, "unsigned", False))
    decoder = make_decoder(spec)
    env[f"d{i}"] = decoder

    def via_decoder(raw: str, size: int | str) -> str:
        return f"v{i} = d{i}({raw}); p += {size}"

    if kind == MySqlType.TINY:
        if unsigned:
            return f"v{i} = data[p]; p += 1"
        return f"v{i} = data[p]; v{i} = v{i} - 256 if v{i} > 127 else v{i}; p += 1"
    fixed = _FIXED_INTEGERS.get(kind)
    if fixed is not None:
        code, size = fixed  # the struct code of the signed type; its capital is the unsigned one's
        return f"v{i} = unpack_{code.upper() if unsigned else code}(data, p)[0]; p += {size}"
    if kind == MySqlType.INT24:
        return f"v{i} = from_bytes(data[p:p + 3], 'little', signed={not unsigned}); p += 3"
    if kind == MySqlType.YEAR:
        return f"v{i} = data[p] + 1900; p += 1"
    if kind == MySqlType.FLOAT:
        return via_decoder("unpack_f(data, p)[0]", 4)
    if kind == MySqlType.DOUBLE:
        return via_decoder("unpack_d(data, p)[0]", 8)
    if kind == MySqlType.NEWDECIMAL:
        size, read = _decimal_reader(int(column.precision), int(column.decimals))
        env[f"r{i}"] = read
        return f"v{i} = r{i}(data, p); p += {size}"
    if kind in (MySqlType.VARCHAR, MySqlType.STRING, MySqlType.BLOB):
        # The length prefix: the library's `length_size` for BLOB/TEXT, else 2 bytes over 255 declared.
        width = int(column.length_size) if kind == MySqlType.BLOB else 2 if column.max_length > 255 else 1
        encoding, raw_bytes = _text_encoding(column)
        if raw_bytes != spec.is_binary:
            raise _Unsupported  # a charset the library and `types` read differently: leave it to them
        length = _length_code(width)
        if raw_bytes:
            # The library's bytes ('' when empty, which `types` treats the same) through `types`.
            return f"n = {length}; p += {width}; v{i} = d{i}(data[p:p + n]); p += n"
        env[f"e{i}"] = encoding
        return f"n = {length}; p += {width}; v{i} = data[p:p + n].decode(e{i}); p += n"
    if kind == MySqlType.DATE:
        return via_decoder("date3(data, p)", 3)
    if kind == MySqlType.DATETIME2:
        fsp = int(column.fsp)
        return via_decoder(f"datetime2(data, p, {fsp})", 5 + _fsp_bytes(fsp))
    if kind == MySqlType.TIMESTAMP2:
        fsp = int(column.fsp)
        return via_decoder(f"timestamp2(data, p, {fsp})", 4 + _fsp_bytes(fsp))
    if kind == MySqlType.TIME2:
        fsp = int(column.fsp)
        return via_decoder(f"time2(data, p, {fsp})", 3 + _fsp_bytes(fsp))
    if kind == MySqlType.ENUM and column.enum_values:
        size = int(column.size)
        env[f"m{i}"] = tuple(column.enum_values)
        return via_decoder(f"m{i}[{_length_code(size)}]", size)
    if kind == MySqlType.SET and column.set_values:
        size = int(column.size)
        env[f"m{i}"] = tuple(enumerate(column.set_values))
        # The library's set of members; the empty set is "" (what RowDecoder makes of its none_sources).
        return (
            f"b = {_length_code(size)}; p += {size}; s = {{m for x, m in m{i} if b & (1 << x)}}; "
            f"v{i} = d{i}(s) if s else ''"
        )
    raise _Unsupported


def compile_image_decoder(columns: Sequence[Any], specs: Sequence[ColumnSpec]) -> ImageDecoder | None:
    """The fast path for one row image of a table map, or None when a column needs the general path.

    `columns` are mysql-replication's `Column`s of the table map (what its own decoding reads), `specs`
    the `ColumnSpec`s made of them (what `types` encodes by). Column names go into the code as string
    literals (repr), readers and decoders as globals of the generated function.
    """
    if len(columns) != len(specs) or not columns:
        raise ValueError("one ColumnSpec per column")
    env: dict[str, Any] = {
        "unpack_h": _unpack_h, "unpack_H": _unpack_H, "unpack_i": _unpack_i, "unpack_I": _unpack_I,
        "unpack_q": _unpack_q, "unpack_Q": _unpack_Q, "unpack_f": _unpack_f, "unpack_d": _unpack_d,
        "from_bytes": _from_bytes, "datetime2": _datetime2, "timestamp2": _timestamp2, "date3": _date3,
        "time2": _time2,
    }
    count = len(columns)
    null_bytes = (count + 7) // 8
    lines = [f"nb{b} = data[pos + {b}]" for b in range(null_bytes)]
    lines.append(f"p = pos + {null_bytes}")
    try:
        for i, (column, spec) in enumerate(zip(columns, specs, strict=True)):
            env[f"z{i}"] = make_decoder(spec)(None)  # SQL NULL, as RowDecoder encodes it
            lines.append(f"if nb{i // 8} & {1 << (i % 8)}:")
            lines.append(f"    v{i} = z{i}")
            lines.append("else:")
            lines.append(f"    {_column_code(i, column, spec, env)}")
    except _Unsupported:
        return None
    row = ", ".join(f"{spec.name!r}: v{i}" for i, spec in enumerate(specs))
    key = ", ".join(f"{spec.name!r}: v{i}" for i, spec in enumerate(specs) if spec.is_primary)
    body = "\n    ".join(lines)
    source = f"def decode_image(data, pos):\n    {body}\n    return {{{key}}}, {{{row}}}, p\n"
    names = ", ".join(spec.name for spec in specs)
    exec(compile(source, f"<row image decoder: {names[:200]}>", "exec"), env)
    decode_image: ImageDecoder = env["decode_image"]
    return decode_image


def decode_rows_event(
    image: ImageDecoder, data: bytes, event_type: int, post_header: int, columns: int, end: int
) -> list[tuple[Row, Row, Row | None, Row | None]] | None:
    """The rows of a rows-event packet `data` (`end`: where its rows end, before any checksum) as
    (key, row, before key, before row) for updates and (key, row, None, None) otherwise, or None for the
    general path.

    `post_header` is the length the format description declares for this event type, `columns` the
    table map's column count.
    """
    try:
        if post_header != KNOWN_POST_HEADER[event_type]:
            return None  # a longer post-header than the library knows: its `_advance_to_payload` decides
        pos = BODY_START + post_header
        if post_header == 10 and _unpack_H(data, BODY_START + 8)[0] != 2:
            return None  # V2 extra row data (NDB, partition info): the library reads it
        if data[pos] != columns or columns >= 251:
            return None  # not a one-byte count equal to the table map's
        pos += 1
        width = (columns + 7) // 8
        full = (1 << columns) - 1
        images = 2 if event_type in UPDATE_TYPES else 1
        for _ in range(images):
            # Every column present (binlog_row_image=FULL); the library skips the others as None.
            if _from_bytes(data[pos : pos + width], "little") & full != full:
                return None
            pos += width
        rows: list[tuple[Row, Row, Row | None, Row | None]] = []
        if images == 2:
            while pos < end:
                old_key, before, pos = image(data, pos)
                key, after, pos = image(data, pos)
                rows.append((key, after, old_key, before))
        else:
            while pos < end:
                key, row, pos = image(data, pos)
                rows.append((key, row, None, None))
    except Exception:  # noqa: BLE001 - any surprise is the general path's to accept or report
        return None
    if pos != end:
        return None  # a value ran past the rows (or stopped short): the library's reading decides
    return rows
