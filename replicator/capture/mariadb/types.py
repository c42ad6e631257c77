"""MariaDB column values, as mysql-replication yields them, in Debezium's JSON encoding.

Pure: no I/O. One decoder is chosen per column from the table map's metadata (the binlog must carry
`binlog_row_metadata=FULL`: names, signedness, charsets, ENUM/SET members), then applied to every value
of that column, so the per-value work is a single small function call.

The target is Debezium's MariaDB connector with its defaults and `decimal.handling.mode=string`:
`time.precision.mode=adaptive_time_microseconds`, `binary.handling.mode=bytes` (base64 in JSON),
`enable.time.adjuster=true`. Where the binlog does not carry what Debezium's choice depends on (the
column's DDL text, its DDL default), the choice made here and the difference are stated in
docs/TYPES.md. Every conversion is checked against values recorded from a real MariaDB 10.11 server
(tests/unit/data/mariadb/).
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import decimal
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import orjson

from replicator.errors import FatalError
from replicator.events import Row

Decoder = Callable[[Any], Any]


class UnsupportedColumnType(FatalError, ValueError):
    """A captured column has a type (or lacks metadata) the MariaDB capture cannot encode.

    Fatal: the capture cannot publish the table faithfully, so it stops and names the column."""


class MySqlType(IntEnum):
    """Column type codes of the binlog's table map (MariaDB uses MySQL's numbering)."""

    DECIMAL = 0  # pre-5.0 decimal, never written by MariaDB 10.x
    TINY = 1
    SHORT = 2
    LONG = 3
    FLOAT = 4
    DOUBLE = 5
    NULL = 6
    TIMESTAMP = 7
    LONGLONG = 8
    INT24 = 9
    DATE = 10
    TIME = 11
    DATETIME = 12
    YEAR = 13
    NEWDATE = 14
    VARCHAR = 15
    BIT = 16
    TIMESTAMP2 = 17
    DATETIME2 = 18
    TIME2 = 19
    JSON = 245  # MySQL's binary JSON; MariaDB's JSON is a LONGTEXT and arrives as BLOB
    NEWDECIMAL = 246
    ENUM = 247
    SET = 248
    TINY_BLOB = 249
    MEDIUM_BLOB = 250
    LONG_BLOB = 251
    BLOB = 252
    VAR_STRING = 253
    STRING = 254
    GEOMETRY = 255


_INTEGER_TYPES = {MySqlType.TINY, MySqlType.SHORT, MySqlType.INT24, MySqlType.LONG, MySqlType.LONGLONG}
_STRING_TYPES = {
    MySqlType.VARCHAR, MySqlType.VAR_STRING, MySqlType.STRING, MySqlType.BLOB,
    MySqlType.TINY_BLOB, MySqlType.MEDIUM_BLOB, MySqlType.LONG_BLOB,
}
_BINARY_CHARSET = "binary"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """What the binlog's table map says about one column, independent of the reader library.

    `charset` is the Python codec name mysql-replication decodes the column with, or "binary" for
    binary strings. `max_length` is the declared byte length of CHAR/BINARY/VARCHAR columns.
    `declared_type` is optional DDL text (e.g. "json") for callers that know it; the binlog alone
    cannot tell a MariaDB JSON column from a LONGTEXT, and only the documented type name depends on it.
    """

    table: str
    name: str
    type_code: int
    nullable: bool = True
    unsigned: bool = False
    fsp: int = 0
    precision: int | None = None
    scale: int | None = None
    max_length: int | None = None
    float_size: int | None = None
    charset: str | None = None
    enum_values: tuple[str, ...] = ()
    set_values: tuple[str, ...] = ()
    bits: int = 0
    is_primary: bool = False
    declared_type: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.table}.{self.name}"

    @property
    def is_binary(self) -> bool:
        return self.charset == _BINARY_CHARSET

    @classmethod
    def from_binlog(cls, column: Any, *, table: str, nullable: bool = True) -> ColumnSpec:
        """Build from a pymysqlreplication `Column` (table map entry). `nullable` comes from the
        table map's null bitmap (`TableMapEvent.null_bitmask`), which the Column itself lacks."""
        attrs: Mapping[str, Any] = vars(column)
        charset = attrs.get("character_set_name")
        if attrs.get("collation_name") == _BINARY_CHARSET:
            charset = _BINARY_CHARSET
        # mysql-replication puts a "" member at index 0 of enum_values: MariaDB's index of the
        # empty "invalid value" that non-strict mode stores. The declared members follow.
        enum_values = tuple(attrs.get("enum_values") or ())[1:]
        return cls(
            table=table,
            name=str(attrs.get("name")),
            type_code=int(attrs["type"]),
            nullable=nullable,
            unsigned=bool(attrs.get("unsigned", False)),
            fsp=int(attrs.get("fsp") or 0),
            precision=attrs.get("precision"),
            scale=attrs.get("decimals"),
            max_length=attrs.get("max_length"),
            float_size=attrs.get("size") if attrs["type"] in (MySqlType.FLOAT, MySqlType.DOUBLE) else None,
            charset=charset,
            enum_values=enum_values,
            set_values=tuple(attrs.get("set_values") or ()),
            bits=int(attrs.get("bits") or 0),
            is_primary=bool(attrs.get("is_primary", False)),
        )


class SemanticType(NamedTuple):
    """Kafka Connect schema type and Debezium logical name (None for plain Connect types)."""

    connect_type: str
    logical_name: str | None


# --- the value encodings -------------------------------------------------------------------------

_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH_DATETIME = dt.datetime(1970, 1, 1)
_ZONED_EPOCH = "1970-01-01T00:00:00Z"
# DECIMAL(65,30) has 65 digits; the default context (28) would round or refuse while rescaling.
_DECIMAL_CONTEXT = decimal.Context(prec=100)


def _adjust_two_digit_year(year: int) -> int:
    """Debezium's default `enable.time.adjuster`: years 0-69 become 2000-2069, 70-99 become 1970-1999
    (MySQL's reading of two-digit years, applied by Debezium to DATE/DATETIME/TIMESTAMP/YEAR values)."""
    if year <= 69:
        return year + 2000
    if year <= 99:
        return year + 1900
    return year


def _adjusted_date(value: dt.date) -> dt.date:
    return value if value.year >= 100 else value.replace(year=_adjust_two_digit_year(value.year))


def _adjusted_datetime(value: dt.datetime) -> dt.datetime:
    return value if value.year >= 100 else value.replace(year=_adjust_two_digit_year(value.year))


def epoch_days(value: dt.date) -> int:
    """io.debezium.time.Date: days since 1970-01-01."""
    return (_adjusted_date(value) - _EPOCH_DATE).days


def epoch_millis(value: dt.datetime) -> int:
    """io.debezium.time.Timestamp: a wall-clock DATETIME read as UTC, in milliseconds since the epoch."""
    delta = _adjusted_datetime(value) - _EPOCH_DATETIME
    # timedelta normalises to days/seconds >= 0/microseconds >= 0, so the floor division is exact
    # for pre-epoch values too (DATETIME(0-3) only holds whole milliseconds anyway).
    return delta.days * 86_400_000 + delta.seconds * 1_000 + delta.microseconds // 1_000


def epoch_micros(value: dt.datetime) -> int:
    """io.debezium.time.MicroTimestamp: a wall-clock DATETIME read as UTC, in µs since the epoch."""
    delta = _adjusted_datetime(value) - _EPOCH_DATETIME
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


def zoned_timestamp(value: dt.datetime, fsp: int) -> str:
    """io.debezium.time.ZonedTimestamp of a TIMESTAMP, which mysql-replication yields as a naive UTC
    datetime: ISO 8601 in UTC with exactly `fsp` fractional digits (none for fsp 0), as Debezium
    formats it with the column's precision."""
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if fsp:
        text += f".{value.microsecond:06d}"[: fsp + 1]
    return text + "Z"


def micro_time(value: dt.timedelta) -> int:
    """io.debezium.time.MicroTime: a TIME (a duration, -838:59:59 to 838:59:59) in microseconds.

    mysql-replication (1.0.17 and its master as of 2026) decodes negative TIME values that have a
    fractional part with the fraction complemented: '-12:30:45.123456' comes out as
    -(12:30:45 + 0.876544 s). Measured against the server's TIME_TO_SEC for fsp 1-6 (see the fixture);
    the whole seconds are right, so only the fraction is turned back.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros < 0:
        whole, fraction = divmod(-micros, 1_000_000)
        if fraction:
            return -(whole * 1_000_000 + (1_000_000 - fraction))
    return micros


def decimal_text(value: decimal.Decimal, scale: int) -> str:
    """decimal.handling.mode=string: plain notation (never an exponent) with the column's scale,
    as Java's BigDecimal.toPlainString after Debezium rescales to the column scale."""
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()  # Java's BigDecimal has no negative zero
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -scale:
        value = value.quantize(decimal.Decimal(1).scaleb(-scale), context=_DECIMAL_CONTEXT)
    return format(value, "f")


def float32(value: float) -> float:
    """A FLOAT column's value as the shortest decimal that is the same single-precision number.

    The binlog stores 4 bytes; mysql-replication widens them to a double (1.1 → 1.100000023841858).
    Debezium emits the Java float, which prints as the shortest round-tripping decimal (1.1).
    """
    if not math.isfinite(value):
        return value
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack("<f", candidate) == packed:
                return candidate
        except OverflowError:
            continue  # rounding near ±3.4e38 can leave the single-precision range
    return value


def base64_bytes(value: bytes) -> str:
    """BYTES in Kafka Connect's JSON converter: standard base64."""
    return base64.b64encode(value).decode("ascii")


def bits_little_endian(value: str, bits: int) -> str:
    """io.debezium.data.Bits of a BIT(n>1): the number's bytes little-endian, ceil(n/8) long, base64.

    mysql-replication yields the bits as text, most significant first ('10101').
    """
    return base64_bytes(int(value, 2).to_bytes((bits + 7) // 8, "little"))


def set_text(members: Sequence[str]) -> Callable[[Any], str]:
    """io.debezium.data.EnumSet: chosen members comma-joined in declaration order ('a,c')."""
    order = {member: index for index, member in enumerate(members)}

    def encode(value: Any) -> str:
        return ",".join(sorted(value, key=order.__getitem__))

    return encode


def json_text(value: Any) -> str:
    """io.debezium.data.Json: the document as text.

    MariaDB stores JSON as LONGTEXT, so the binlog (and Debezium) carry the text exactly as written;
    it is passed through unchanged. A parsed structure only comes from MySQL's binary JSON type;
    it is written compactly.
    """
    if isinstance(value, str):
        return value
    return orjson.dumps(_text_keys(value)).decode()


def _text_keys(value: Any) -> Any:
    # mysql-replication's binary-JSON parser yields bytes for keys and strings.
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {_text_keys(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text_keys(v) for v in value]
    return value


# --- decoder factory ----------------------------------------------------------------------------


def _null_safe(encode: Callable[[Any], Any], when_none: Any = None) -> Decoder:
    def decode(value: Any) -> Any:
        return when_none if value is None else encode(value)

    return decode


def make_decoder(column: ColumnSpec) -> Decoder:
    """The function that turns this column's raw mysql-replication values into Debezium JSON values.

    `None` stands for SQL NULL and for what mysql-replication cannot represent: zero and invalid
    dates ('0000-00-00', '2024-00-10') and, for SET, the empty set. Debezium emits null for those in
    nullable columns and a fallback in NOT NULL ones (the epoch for dates, '' for SET), which is done
    here. For a nullable SET, NULL and the empty set differ only in mysql-replication's
    `none_sources`; `RowDecoder` uses them.
    """
    try:
        kind = MySqlType(column.type_code)
    except ValueError:
        raise UnsupportedColumnType(
            f"{column.qualified_name}: unknown binlog column type code {column.type_code}"
        ) from None
    not_null = not column.nullable

    if kind in _INTEGER_TYPES or kind is MySqlType.YEAR:
        # Exact ints for every width, BIGINT UNSIGNED included: JSON numbers are unbounded, so the
        # full 0..2**64-1 range survives (see docs/TYPES.md on bigint.unsigned.handling.mode).
        return _null_safe(_identity)
    if kind is MySqlType.NEWDECIMAL:
        scale = column.scale or 0
        return _null_safe(lambda value: decimal_text(value, scale))
    if kind is MySqlType.FLOAT:
        return _null_safe(float32)
    if kind is MySqlType.DOUBLE:
        return _null_safe(_identity)
    if kind in _STRING_TYPES:
        return _string_decoder(column, kind)
    if kind is MySqlType.DATE:
        return _null_safe(epoch_days, 0 if not_null else None)
    if kind in (MySqlType.DATETIME2, MySqlType.DATETIME):
        encode = epoch_millis if column.fsp <= 3 else epoch_micros
        return _null_safe(encode, 0 if not_null else None)
    if kind in (MySqlType.TIMESTAMP2, MySqlType.TIMESTAMP):
        return _timestamp_decoder(column)
    if kind in (MySqlType.TIME2, MySqlType.TIME):
        return _null_safe(micro_time)
    if kind is MySqlType.ENUM:
        _require_members(column, column.enum_values, "ENUM")
        return _null_safe(_identity)
    if kind is MySqlType.SET:
        _require_members(column, column.set_values, "SET")
        return _null_safe(set_text(column.set_values), "" if not_null else None)
    if kind is MySqlType.BIT:
        if column.bits <= 1:
            return _null_safe(lambda value: value == "1")
        bits = column.bits
        return _null_safe(lambda value: bits_little_endian(value, bits))
    if kind is MySqlType.JSON:
        return _null_safe(json_text)
    raise UnsupportedColumnType(
        f"{column.qualified_name}: column type {kind.name} is not supported by the MariaDB capture"
    )


def _identity(value: Any) -> Any:
    return value


def _require_members(column: ColumnSpec, members: Sequence[str], what: str) -> None:
    if not members:
        raise UnsupportedColumnType(
            f"{column.qualified_name}: {what} members missing from the binlog; "
            "the server needs binlog_row_metadata=FULL"
        )


def _string_decoder(column: ColumnSpec, kind: MySqlType) -> Decoder:
    if column.is_binary:
        pad_to = column.max_length if kind is MySqlType.STRING else None

        def encode_binary(value: Any) -> str:
            if isinstance(value, str):
                # mysql-replication returns '' for an empty binary value: Python decodes b'' with any
                # codec name, even the unknown "binary", without looking it up.
                value = value.encode("utf-8")
            if pad_to is not None and len(value) < pad_to:
                # BINARY(n) loses its trailing 0x00 bytes in the binlog; Debezium pads them back.
                value = value.ljust(pad_to, b"\x00")
            return base64_bytes(value)

        return _null_safe(encode_binary)

    if column.charset is not None:
        try:
            codecs.lookup(column.charset)
        except LookupError:
            raise UnsupportedColumnType(
                f"{column.qualified_name}: character set {column.charset!r} has no Python codec, "
                "so mysql-replication cannot decode it"
            ) from None

    def encode_text(value: Any) -> Any:
        if not isinstance(value, str):
            raise UnsupportedColumnType(
                f"{column.qualified_name}: expected text, mysql-replication gave {type(value).__name__}"
            )
        return value

    return _null_safe(encode_text)


def _timestamp_decoder(column: ColumnSpec) -> Decoder:
    fsp = column.fsp
    fallback = _ZONED_EPOCH if not column.nullable else None

    def encode(value: Any) -> Any:
        # mysql-replication turns the zero TIMESTAMP (epoch second 0, below the type's minimum of
        # 1970-01-01 00:00:01 UTC) into 1970-01-01 00:00:00 instead of None; Debezium treats it as a
        # zero date.
        if value == _EPOCH_DATETIME:
            return fallback
        return zoned_timestamp(value, fsp)

    return _null_safe(encode, fallback)


# --- rows ---------------------------------------------------------------------------------------

_EMPTY_SET = "empty set"  # pymysqlreplication.constants.NONE_SOURCE.EMPTY_SET


class RowDecoder:
    """Decodes whole rows of one table version (one table map) into Debezium-encoded `Row`s."""

    __slots__ = ("_columns", "_decoders", "_set_columns", "key_columns")

    def __init__(self, columns: Sequence[ColumnSpec]) -> None:
        self._columns = tuple(columns)
        self._decoders = tuple((c.name, make_decoder(c)) for c in self._columns)
        self._set_columns = frozenset(c.name for c in self._columns if c.type_code == MySqlType.SET)
        self.key_columns = tuple(c.name for c in self._columns if c.is_primary)

    @classmethod
    def from_table_map(cls, table_map: Any) -> RowDecoder:
        """From a pymysqlreplication `TableMapEvent` (columns plus the null bitmap)."""
        mask: bytes = table_map.null_bitmask
        table = f"{table_map.schema}.{table_map.table}"
        return cls([
            ColumnSpec.from_binlog(column, table=table, nullable=bool(mask[i // 8] & (1 << (i % 8))))
            for i, column in enumerate(table_map.columns)
        ])

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        return self._columns

    def decode(self, values: Mapping[str, Any], none_sources: Mapping[str, str] | None = None) -> Row:
        row = {name: decode(values[name]) for name, decode in self._decoders}
        if none_sources and self._set_columns:
            for name in self._set_columns:
                if none_sources.get(name) == _EMPTY_SET:
                    row[name] = ""
        return row

    def key(self, row: Row) -> Row:
        """The primary-key columns of an encoded row (Debezium's message key)."""
        return {name: row[name] for name in self.key_columns}


# --- documentation ------------------------------------------------------------------------------


def debezium_semantic_type(column: ColumnSpec) -> SemanticType:
    """The Kafka Connect type and Debezium logical name Debezium's MariaDB connector gives this column
    (with the defaults named in the module docstring and decimal.handling.mode=string)."""
    try:
        kind = MySqlType(column.type_code)
    except ValueError:
        raise UnsupportedColumnType(
            f"{column.qualified_name}: unknown binlog column type code {column.type_code}"
        ) from None
    if kind in _INTEGER_TYPES:
        return SemanticType(_INTEGER_CONNECT_TYPES[(kind, column.unsigned)], None)
    simple = _SEMANTIC_TYPES.get(kind)
    if simple is not None:
        return simple
    if kind in _STRING_TYPES:
        if column.is_binary:
            return SemanticType("BYTES", None)
        if (column.declared_type or "").strip().lower() == "json":
            return SemanticType("STRING", "io.debezium.data.Json")
        return SemanticType("STRING", None)
    if kind in (MySqlType.DATETIME2, MySqlType.DATETIME):
        name = "io.debezium.time.Timestamp" if column.fsp <= 3 else "io.debezium.time.MicroTimestamp"
        return SemanticType("INT64", name)
    if kind is MySqlType.BIT:
        return SemanticType("BOOLEAN", None) if column.bits <= 1 else SemanticType("BYTES", "io.debezium.data.Bits")
    raise UnsupportedColumnType(
        f"{column.qualified_name}: column type {kind.name} is not supported by the MariaDB capture"
    )


_INTEGER_CONNECT_TYPES: dict[tuple[MySqlType, bool], str] = {
    (MySqlType.TINY, False): "INT8",
    (MySqlType.TINY, True): "INT16",
    (MySqlType.SHORT, False): "INT16",
    (MySqlType.SHORT, True): "INT32",
    (MySqlType.INT24, False): "INT32",
    (MySqlType.INT24, True): "INT32",
    (MySqlType.LONG, False): "INT32",
    (MySqlType.LONG, True): "INT64",
    (MySqlType.LONGLONG, False): "INT64",
    (MySqlType.LONGLONG, True): "INT64",
}

_SEMANTIC_TYPES: dict[MySqlType, SemanticType] = {
    MySqlType.NEWDECIMAL: SemanticType("STRING", None),
    MySqlType.FLOAT: SemanticType("FLOAT32", None),
    MySqlType.DOUBLE: SemanticType("FLOAT64", None),
    MySqlType.DATE: SemanticType("INT32", "io.debezium.time.Date"),
    MySqlType.TIMESTAMP2: SemanticType("STRING", "io.debezium.time.ZonedTimestamp"),
    MySqlType.TIMESTAMP: SemanticType("STRING", "io.debezium.time.ZonedTimestamp"),
    MySqlType.TIME2: SemanticType("INT64", "io.debezium.time.MicroTime"),
    MySqlType.TIME: SemanticType("INT64", "io.debezium.time.MicroTime"),
    MySqlType.YEAR: SemanticType("INT32", "io.debezium.time.Year"),
    MySqlType.ENUM: SemanticType("STRING", "io.debezium.data.Enum"),
    MySqlType.SET: SemanticType("STRING", "io.debezium.data.EnumSet"),
    MySqlType.JSON: SemanticType("STRING", "io.debezium.data.Json"),
}
