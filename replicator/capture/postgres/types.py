"""PostgreSQL column values (pgoutput text form) to their Debezium JSON encoding. Pure; no I/O.

The encodings are those of Debezium's PostgreSQL connector with its defaults
`decimal.handling.mode=string`, `time.precision.mode=adaptive`, `binary.handling.mode=bytes` and
`interval.handling.mode=numeric`, as they appear in Kafka with the JSON converter (schemas disabled).
`debezium_semantic_type` gives the matching Kafka Connect schema type and Debezium logical name;
docs/TYPES.md is written from it. Choices that are not obvious:

- float4/float8 NaN and ±Infinity become the JSON strings "NaN", "Infinity", "-Infinity": JSON has no such
  numbers and Kafka Connect's JSON converter (Jackson) writes them quoted.
- numeric is the exact text PostgreSQL printed (its scale kept), including "NaN", "Infinity", "-Infinity".
- date/timestamp ±infinity get Debezium's sentinel numbers (inherited from the PostgreSQL JDBC driver):
  date 'infinity' -> -2147472692 and '-infinity' -> -2147472691 (sic), timestamp 'infinity' ->
  9223372036825200000 µs (9223372036825200 ms), '-infinity' -> -9223372036832400000 µs
  (-9223372036832400 ms). timestamptz ±infinity become the strings "infinity" / "-infinity".
- interval counts a month as 365.25 / 12 = 30.4375 days (a year as 365.25 days), like Debezium's
  MicroDuration, but in exact integer arithmetic: Debezium's floating-point sum can come out 1 µs lower.
  Beyond the int64 range it saturates at the int64 limits, as Debezium's cast does; a timestamp beyond it
  (years after about 294247, as µs since 1970) is refused with a ValueError rather than wrapped.
- timestamptz (ZonedTimestamp) is UTC with exactly as many fraction digits as the column's precision
  (6 when unspecified, none for precision 0), like Debezium 2.2+. timetz (ZonedTime) is UTC with the
  shortest fraction (trailing zeros dropped); '24:00:00+00' stays "24:00:00Z".
- Years outside 1..9999 are written as Java's ISO formatter does: "+10000-01-01...", "-0043-03-15...".
- Enums and types this module does not know but the server created (OID >= 16384: extensions, user
  types) pass through as their text. Builtin types without a faithful encoding (money, bit, geometric
  types, ...) are refused up front with `UnsupportedColumnType`.

Input assumptions (the replication session must set them): DateStyle=ISO, IntervalStyle=postgres,
bytea_output=hex, and a UTF8 database. Any TimeZone works; TimeZone=UTC is the fastest.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from replicator.capture.postgres.pgoutput import Relation

Decoder: TypeAlias = Callable[[str], Any]
SemanticType: TypeAlias = tuple[str, str | None]

# OIDs below this are assigned by PostgreSQL itself; user types, extensions and enums get higher ones.
FIRST_NORMAL_OBJECT_ID: Final = 16384

# Debezium's values for ±infinity (see the module docstring).
DATE_POSITIVE_INFINITY_DAYS: Final = -2_147_472_692
DATE_NEGATIVE_INFINITY_DAYS: Final = -2_147_472_691
TIMESTAMP_POSITIVE_INFINITY_US: Final = 9_223_372_036_825_200_000
TIMESTAMP_NEGATIVE_INFINITY_US: Final = -9_223_372_036_832_400_000

_US_PER_SECOND: Final = 1_000_000
_US_PER_DAY: Final = 86_400 * _US_PER_SECOND
_US_PER_MONTH: Final = 2_629_800 * _US_PER_SECOND  # 30.4375 days
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)
_UNIX_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_UNIX_EPOCH: Final = datetime(1970, 1, 1)
_ONE_US: Final = timedelta(microseconds=1)
_UTC: Final = UTC


class UnsupportedColumnType(ValueError):
    """A column whose PostgreSQL type has no supported Debezium encoding; capture refuses to start."""

    def __init__(self, table: str | None, column: str | None, type_name: str) -> None:
        self.table = table
        self.column = column
        self.type_name = type_name
        where = f"{table or '?'}.{column or '?'}"
        super().__init__(
            f"column {where} has PostgreSQL type {type_name}, which the replicator cannot encode as "
            "Debezium JSON; leave the column out of the publication (column list) or change its type"
        )


# --- dates and times -------------------------------------------------------------------------------


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date; `year` is astronomical (0 = 1 BC)."""
    # H. Hinnant's days_from_civil: count in 400-year eras of years starting on March 1st, so that the
    # leap day is the last day of a year.
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Inverse of `_days_from_civil`."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def _java_iso_year(year: int) -> str:
    # java.time's ISO_LOCAL_DATE: four digits, a '+' above 9999, a '-' for years before year 0.
    if year > 9999:
        return f"+{year}"
    if year < 0:
        return f"-{-year:04d}"
    return f"{year:04d}"


def _offset_seconds(text: str) -> int:
    """'+05', '-03:30', '+00:09:21' to signed seconds east of UTC."""
    parts = text[1:].split(":")
    if not 1 <= len(parts) <= 3 or text[0] not in "+-":
        raise ValueError(f"not a UTC offset: {text!r}")
    seconds = int(parts[0]) * 3600
    if len(parts) > 1:
        seconds += int(parts[1]) * 60
    if len(parts) > 2:
        seconds += int(parts[2])
    return -seconds if text[0] == "-" else seconds


_TIME_RE: Final = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_DATE_RE: Final = re.compile(r"(\d{4,})-(\d\d)-(\d\d)( BC)?")
_TIMESTAMP_RE: Final = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d(?::\d\d){0,2})?( BC)?"
)


def _fraction_us(digits: str | None) -> int:
    return int(digits.ljust(6, "0")) if digits else 0


def _time_of_day_us(text: str) -> int:
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a PostgreSQL time: {text!r}")
    hours, minutes, seconds, fraction = match.groups()
    return (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * _US_PER_SECOND + _fraction_us(fraction)


def _time_of_day_iso(us: int) -> str:
    """Time of day as java.time's ISO_LOCAL_TIME prints it: seconds always, shortest fraction."""
    seconds, fraction = divmod(us, _US_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{fraction:06d}".rstrip("0") if fraction else text


def _decode_date(text: str) -> int:
    if len(text) == 10:  # 'YYYY-MM-DD', the common case
        return date.fromisoformat(text).toordinal() - _UNIX_EPOCH_ORDINAL
    if text == "infinity":
        return DATE_POSITIVE_INFINITY_DAYS
    if text == "-infinity":
        return DATE_NEGATIVE_INFINITY_DAYS
    match = _DATE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a PostgreSQL ISO date: {text!r}")
    year = int(match[1])
    return _days_from_civil(1 - year if match[4] else year, int(match[2]), int(match[3]))


def _timestamp_us_slow(text: str) -> int:
    """Any ISO timestamp PostgreSQL prints (BC, 5-digit years, offsets) to µs since the Unix epoch."""
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a PostgreSQL ISO timestamp: {text!r}")
    year, month, day, hours, minutes, seconds, fraction, offset, bc = match.groups()
    days = _days_from_civil(1 - int(year) if bc else int(year), int(month), int(day))
    local_seconds = days * 86_400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    utc_seconds = local_seconds - (_offset_seconds(offset) if offset else 0)
    return utc_seconds * _US_PER_SECOND + _fraction_us(fraction)


def _timestamp_us(text: str) -> int:
    """timestamp without time zone to µs since the Unix epoch (the wall clock read as UTC)."""
    if text[4:5] == "-" and text[-1] != "C":  # 4-digit year AD: let the C parser do it
        return (datetime.fromisoformat(text) - _UNIX_EPOCH) // _ONE_US
    if text == "infinity":
        return TIMESTAMP_POSITIVE_INFINITY_US
    if text == "-infinity":
        return TIMESTAMP_NEGATIVE_INFINITY_US
    return _timestamp_us_slow(text)


def _micro_timestamp(text: str) -> int:
    us = _timestamp_us(text)
    if us > _INT64_MAX:  # from about year 294247 on; PostgreSQL accepts up to 294276
        raise ValueError(f"timestamp {text!r} is beyond the 64-bit range of io.debezium.time.MicroTimestamp")
    return us


def _milli_timestamp(text: str) -> int:
    return _timestamp_us(text) // 1000


def _zoned_timestamp_from_us(us: int, precision: int) -> str:
    seconds, fraction = divmod(us, _US_PER_SECOND)
    days, second_of_day = divmod(seconds, 86_400)
    year, month, day = _civil_from_days(days)
    clock = _time_of_day_iso(second_of_day * _US_PER_SECOND)
    text = f"{_java_iso_year(year)}-{month:02d}-{day:02d}T{clock}"
    if precision > 0:
        text += "." + f"{fraction:06d}"[:precision]
    return text + "Z"


# The decoder made for each precision (one per precision, so that `zoned_timestamp_utc_layout` can
# recognise it), and its (utc_length, cut) as used in its first branch.
_ZONED_DECODERS: dict[int, Decoder] = {}
_ZONED_LAYOUTS: dict[Decoder, tuple[int, int]] = {}


def zoned_timestamp_utc_layout(decoder: Decoder) -> tuple[int, int] | None:
    """For a timestamptz decoder, (length, cut) of its common case: a text of `length` characters with
    '-' at index 4 and ending in '+00' decodes to `text[:10] + "T" + text[11:cut] + "Z"`. The insert
    decoder (inserts.py) writes that case inline, calling the decoder for every other text. None for
    any other decoder."""
    return _ZONED_LAYOUTS.get(decoder)


def _make_zoned_timestamp_decoder(precision: int) -> Decoder:
    found = _ZONED_DECODERS.get(precision)
    if found is None:
        found = _ZONED_DECODERS[precision] = _new_zoned_timestamp_decoder(precision)
    return found


def _new_zoned_timestamp_decoder(precision: int) -> Decoder:
    # Debezium prints exactly `precision` fraction digits; PostgreSQL already rounded the value to it.
    cut = 19 if precision == 0 else 20 + precision
    padding = "." + "0" * precision if precision else ""
    # 'YYYY-MM-DD HH:MM:SS[.fraction]+00' with every fraction digit (PostgreSQL drops trailing zeros):
    # in a TimeZone=UTC session most values, and the answer is the same text with 'T' and 'Z'.
    utc_length = cut + 3

    def decode_timestamptz(text: str) -> str:
        if len(text) == utc_length and text[4] == "-" and text.endswith("+00"):
            return text[:10] + "T" + text[11:cut] + "Z"
        if text[4:5] == "-" and text[-1] != "C":
            if text.endswith("+00"):  # already UTC (session TimeZone=UTC): string surgery only
                body = text[:-3]
                iso = body[:10] + "T" + body[11:]
            else:
                try:
                    utc = datetime.fromisoformat(text).astimezone(_UTC)
                except OverflowError:  # the instant is in year 0 or 10000 once moved to UTC
                    return _zoned_timestamp_from_us(_timestamp_us_slow(text), precision)
                iso = utc.replace(tzinfo=None).isoformat()
            if len(iso) == 19:  # isoformat() and PostgreSQL both omit a zero fraction
                iso += padding
            else:
                iso = (iso + "00000")[:cut]
            return iso + "Z"
        if text == "infinity" or text == "-infinity":
            return text
        return _zoned_timestamp_from_us(_timestamp_us_slow(text), precision)

    _ZONED_LAYOUTS[decode_timestamptz] = (utc_length, cut)
    return decode_timestamptz


def _micro_time(text: str) -> int:
    return _time_of_day_us(text)


def _milli_time(text: str) -> int:
    return _time_of_day_us(text) // 1000


def _decode_timetz(text: str) -> str:
    sign_at = max(text.rfind("+"), text.rfind("-"))
    if sign_at < 8:
        raise ValueError(f"not a PostgreSQL time with time zone: {text!r}")
    local_us = _time_of_day_us(text[:sign_at])
    offset = _offset_seconds(text[sign_at:])
    if local_us == _US_PER_DAY and offset == 0:
        return "24:00:00Z"  # PostgreSQL's end-of-day boundary, kept as Debezium keeps it
    return _time_of_day_iso((local_us - offset * _US_PER_SECOND) % _US_PER_DAY) + "Z"


_INTERVAL_RE: Final = re.compile(
    r"(?:([+-]?\d+) years? ?)?(?:([+-]?\d+) mons? ?)?(?:([+-]?\d+) days? ?)?"
    r"(?:([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
)


def _decode_interval(text: str) -> int:
    """IntervalStyle=postgres text ('1 year 2 mons -3 days +04:05:06.789') to microseconds."""
    match = _INTERVAL_RE.fullmatch(text)
    if match is None or not text:
        raise ValueError(f"not a PostgreSQL interval in IntervalStyle=postgres: {text!r}")
    years, months, days, sign, hours, minutes, seconds, fraction = match.groups()
    total = (int(years or 0) * 12 + int(months or 0)) * _US_PER_MONTH + int(days or 0) * _US_PER_DAY
    if hours is not None:
        clock = (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * _US_PER_SECOND + _fraction_us(fraction)
        total += -clock if sign == "-" else clock
    # Debezium computes in floating point and casts to long, which saturates: so do we (PostgreSQL
    # intervals reach about 5.6e21 µs).
    if total > _INT64_MAX:
        return _INT64_MAX
    if total < _INT64_MIN:
        return _INT64_MIN
    return total


# --- other scalars -----------------------------------------------------------------------------------


def _decode_bool(text: str) -> bool:
    # pgoutput sends boolout's 't'/'f'; the snapshot's `column::text` cast gives 'true'/'false'.
    if text in ("t", "true"):
        return True
    if text in ("f", "false"):
        return False
    raise ValueError(f"not a PostgreSQL boolean: {text!r}")


_FLOAT_SPECIALS: Final = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


def _decode_float(text: str) -> float | str:
    special = _FLOAT_SPECIALS.get(text)
    return float(text) if special is None else special


def _decode_bytea(text: str) -> str:
    if not text.startswith("\\x"):
        raise ValueError("bytea value not in hex format; the replication session needs bytea_output=hex")
    return binascii.b2a_base64(binascii.a2b_hex(text[2:]), newline=False).decode("ascii")


# `str` returns its argument unchanged: the identity decoder for types whose text is the encoding.
_identity: Final[Decoder] = str


# --- arrays --------------------------------------------------------------------------------------------

_QUOTED_ELEMENT: Final = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_UNQUOTED_ELEMENT: Final = re.compile(r'[^,{}"]*')
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)


def _parse_array_level(text: str, pos: int, element: Decoder) -> tuple[list[Any], int]:
    # text[pos] is '{'. Elements: a nested '{...}', a double-quoted string with backslash escapes, or an
    # unquoted token (array_out quotes anything that is empty, looks like NULL or has special characters).
    items: list[Any] = []
    pos += 1
    if text[pos] == "}":
        return items, pos + 1
    while True:
        first = text[pos]
        if first == "{":
            nested, pos = _parse_array_level(text, pos, element)
            items.append(nested)
        elif first == '"':
            quoted = _QUOTED_ELEMENT.match(text, pos)
            if quoted is None:
                raise ValueError(f"unterminated quoted array element at {pos}")
            raw = quoted[1]
            items.append(element(_ESCAPE.sub(r"\1", raw) if "\\" in raw else raw))
            pos = quoted.end()
        else:
            token = _UNQUOTED_ELEMENT.match(text, pos)
            assert token is not None  # the pattern matches the empty string
            value = token[0]
            items.append(None if value == "NULL" else element(value))
            pos = token.end()
        separator = text[pos]
        pos += 1
        if separator == "}":
            return items, pos
        if separator != ",":
            raise ValueError(f"unexpected {separator!r} at {pos - 1}")


def parse_array(text: str, element: Decoder) -> list[Any]:
    """A PostgreSQL array literal (as array_out prints it) to nested lists of decoded elements.

    SQL NULL elements become None. Explicit bounds ('[0:1]={...}') are dropped, as Debezium does.
    """
    try:
        start = text.index("=") + 1 if text[0] == "[" else 0
        if text[start] != "{" or text[-1] != "}":
            raise ValueError("missing braces")
        if '"' not in text and "{" not in text[start + 1 :]:  # flat and unquoted: the common case
            inner = text[start + 1 : -1]
            if not inner:
                return []
            return [None if item == "NULL" else element(item) for item in inner.split(",")]
        items, end = _parse_array_level(text, start, element)
        if end != len(text):
            raise ValueError(f"trailing text at {end}")
        return items
    except (IndexError, ValueError) as exc:
        raise ValueError(f"cannot decode PostgreSQL array {text!r}: {exc}") from exc


def _make_array_decoder(element: Decoder) -> Decoder:
    def decode_array(text: str) -> list[Any]:
        return parse_array(text, element)

    return decode_array


# --- the type table -------------------------------------------------------------------------------------


def _precision(typmod: int) -> int:
    # time/timestamp/timestamptz/timetz: typmod is the fractional-second precision, -1 when unspecified.
    return 6 if typmod < 0 else typmod


@dataclass(frozen=True, slots=True)
class _ScalarType:
    name: str
    semantic: Callable[[int], SemanticType]
    decoder: Callable[[int], Decoder]


def _fixed(schema: str, logical: str | None, decoder: Decoder, name: str) -> _ScalarType:
    return _ScalarType(name, lambda _typmod: (schema, logical), lambda _typmod: decoder)


def _time_semantic(typmod: int) -> SemanticType:
    if _precision(typmod) <= 3:
        return ("int32", "io.debezium.time.Time")
    return ("int64", "io.debezium.time.MicroTime")


def _timestamp_semantic(typmod: int) -> SemanticType:
    if _precision(typmod) <= 3:
        return ("int64", "io.debezium.time.Timestamp")
    return ("int64", "io.debezium.time.MicroTimestamp")


_STRING = "string"
_SCALARS: Final[dict[int, _ScalarType]] = {
    16: _fixed("boolean", None, _decode_bool, "boolean"),
    17: _fixed("bytes", None, _decode_bytea, "bytea"),
    18: _fixed(_STRING, None, _identity, '"char"'),
    19: _fixed(_STRING, None, _identity, "name"),
    20: _fixed("int64", None, int, "bigint"),
    21: _fixed("int16", None, int, "smallint"),
    23: _fixed("int32", None, int, "integer"),
    25: _fixed(_STRING, None, _identity, "text"),
    26: _fixed("int64", None, int, "oid"),
    114: _fixed(_STRING, "io.debezium.data.Json", _identity, "json"),
    142: _fixed(_STRING, "io.debezium.data.Xml", _identity, "xml"),
    650: _fixed(_STRING, None, _identity, "cidr"),
    700: _fixed("float32", None, _decode_float, "real"),
    701: _fixed("float64", None, _decode_float, "double precision"),
    774: _fixed(_STRING, None, _identity, "macaddr8"),
    829: _fixed(_STRING, None, _identity, "macaddr"),
    869: _fixed(_STRING, None, _identity, "inet"),
    1042: _fixed(_STRING, None, _identity, "character"),
    1043: _fixed(_STRING, None, _identity, "character varying"),
    1082: _fixed("int32", "io.debezium.time.Date", _decode_date, "date"),
    1083: _ScalarType(
        "time without time zone",
        _time_semantic,
        lambda typmod: _milli_time if _precision(typmod) <= 3 else _micro_time,
    ),
    1114: _ScalarType(
        "timestamp without time zone",
        _timestamp_semantic,
        lambda typmod: _milli_timestamp if _precision(typmod) <= 3 else _micro_timestamp,
    ),
    1184: _ScalarType(
        "timestamp with time zone",
        lambda _typmod: (_STRING, "io.debezium.time.ZonedTimestamp"),
        lambda typmod: _make_zoned_timestamp_decoder(_precision(typmod)),
    ),
    1186: _fixed("int64", "io.debezium.time.MicroDuration", _decode_interval, "interval"),
    1266: _fixed(_STRING, "io.debezium.time.ZonedTime", _decode_timetz, "time with time zone"),
    1700: _fixed(_STRING, None, _identity, "numeric"),  # decimal.handling.mode=string: no logical name
    2950: _fixed(_STRING, "io.debezium.data.Uuid", _identity, "uuid"),
    3614: _fixed(_STRING, "io.debezium.data.TsVector", _identity, "tsvector"),
    3802: _fixed(_STRING, "io.debezium.data.Json", _identity, "jsonb"),
    3904: _fixed(_STRING, None, _identity, "int4range"),
    3906: _fixed(_STRING, None, _identity, "numrange"),
    3908: _fixed(_STRING, None, _identity, "tsrange"),
    3910: _fixed(_STRING, None, _identity, "tstzrange"),
    3912: _fixed(_STRING, None, _identity, "daterange"),
    3926: _fixed(_STRING, None, _identity, "int8range"),
}

# Builtin array type OID -> element type OID (pg_type.typarray of the supported scalars).
_BUILTIN_ARRAYS: Final[dict[int, int]] = {
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1007: 23, 1009: 25, 1028: 26,
    199: 114, 143: 142, 651: 650, 1021: 700, 1022: 701, 775: 774, 1040: 829, 1041: 869,
    1014: 1042, 1015: 1043, 1182: 1082, 1183: 1083, 1115: 1114, 1185: 1184, 1187: 1186, 1270: 1266,
    1231: 1700, 2951: 2950, 3643: 3614, 3807: 3802, 3905: 3904, 3907: 3906, 3909: 3908, 3911: 3910,
    3913: 3912, 3927: 3926,
}  # fmt: skip

# Names of builtin types that are refused, for the error message.
_UNSUPPORTED_NAMES: Final[dict[int, str]] = {
    790: "money", 791: "money[]", 1560: "bit", 1561: "bit[]", 1562: "bit varying", 1563: "bit varying[]",
    600: "point", 601: "lseg", 602: "path", 603: "box", 604: "polygon", 628: "line", 718: "circle",
    3220: "pg_lsn", 3615: "tsquery", 27: "tid", 28: "xid", 29: "cid", 5069: "xid8", 2205: "regclass",
    4451: "int4multirange", 4532: "nummultirange", 4533: "tsmultirange", 4534: "tstzmultirange",
    4535: "datemultirange", 4536: "int8multirange",
}  # fmt: skip

BUILTIN_TYPE_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {oid: spec.name for oid, spec in _SCALARS.items()}
    | {array: _SCALARS[element].name + "[]" for array, element in _BUILTIN_ARRAYS.items()}
)
"""Every builtin type OID this module encodes (scalars and their arrays), with its SQL name."""

_NO_OIDS: Final[Mapping[int, int]] = MappingProxyType({})


def _type_label(type_oid: int, type_name: str | None) -> str:
    name = type_name or BUILTIN_TYPE_NAMES.get(type_oid) or _UNSUPPORTED_NAMES.get(type_oid)
    return f"{name} (oid {type_oid})" if name else f"oid {type_oid}"


def array_element_oid(type_oid: int, *, array_element_oids: Mapping[int, int] = _NO_OIDS) -> int | None:
    """The element type of an array type (builtin, or user-declared in `array_element_oids`), else None."""
    return _BUILTIN_ARRAYS.get(type_oid) or array_element_oids.get(type_oid)


def _resolve(
    type_oid: int,
    domain_base_oids: Mapping[int, int],
) -> int:
    # A domain is encoded as its base type (domains over domains resolve step by step).
    seen = 0
    while type_oid in domain_base_oids and seen < 32:
        type_oid = domain_base_oids[type_oid]
        seen += 1
    return type_oid


def make_decoder(
    type_oid: int,
    typmod: int,
    *,
    type_name: str | None = None,
    enum_oids: frozenset[int] = frozenset(),
    array_element_oids: Mapping[int, int] = _NO_OIDS,
    domain_base_oids: Mapping[int, int] = _NO_OIDS,
    table: str | None = None,
    column: str | None = None,
) -> Decoder:
    """Choose, once per column, the function that turns its pgoutput text into Debezium JSON.

    `type_oid`/`typmod` come from the Relation message. User types need catalog knowledge from the
    caller: `enum_oids` (pg_enum), `array_element_oids` (user array type -> element, pg_type.typelem)
    and `domain_base_oids` (domain -> base type, pg_type.typbasetype). `type_name` (e.g. from a Type
    message), `table` and `column` only make error messages clearer. Raises `UnsupportedColumnType`.
    The decoder raises ValueError on text that is not in the expected format; it is never called for
    NULLs or unchanged TOAST values.
    """
    resolved = _resolve(type_oid, domain_base_oids)
    element_oid = array_element_oid(resolved, array_element_oids=array_element_oids)
    if element_oid is not None:
        element = make_decoder(
            element_oid,
            typmod,
            type_name=None if type_name is None else f"element of {type_name}",
            enum_oids=enum_oids,
            array_element_oids=array_element_oids,
            domain_base_oids=domain_base_oids,
            table=table,
            column=column,
        )
        return _make_array_decoder(element)
    scalar = _SCALARS.get(resolved)
    if scalar is not None:
        return scalar.decoder(typmod)
    if resolved in enum_oids or resolved >= FIRST_NORMAL_OBJECT_ID:
        return _identity
    raise UnsupportedColumnType(table, column, _type_label(type_oid, type_name))


def debezium_semantic_type(
    type_oid: int,
    typmod: int,
    *,
    enum_oids: frozenset[int] = frozenset(),
    array_element_oids: Mapping[int, int] = _NO_OIDS,
    domain_base_oids: Mapping[int, int] = _NO_OIDS,
) -> SemanticType:
    """Kafka Connect schema type and Debezium logical name (or None) of a column's values.

    Arrays are ('array', None); ask again with `array_element_oid(...)` for the element's type.
    Raises `UnsupportedColumnType` (without table and column) where `make_decoder` would.
    """
    resolved = _resolve(type_oid, domain_base_oids)
    if array_element_oid(resolved, array_element_oids=array_element_oids) is not None:
        return ("array", None)
    scalar = _SCALARS.get(resolved)
    if scalar is not None:
        return scalar.semantic(typmod)
    if resolved in enum_oids:
        return (_STRING, "io.debezium.data.Enum")
    if resolved >= FIRST_NORMAL_OBJECT_ID:
        return (_STRING, None)
    raise UnsupportedColumnType(None, None, _type_label(type_oid, None))


def make_relation_decoders(
    relation: Relation,
    *,
    type_names: Mapping[int, str] = MappingProxyType({}),
    enum_oids: frozenset[int] = frozenset(),
    array_element_oids: Mapping[int, int] = _NO_OIDS,
    domain_base_oids: Mapping[int, int] = _NO_OIDS,
) -> tuple[Decoder, ...]:
    """One decoder per column of a Relation message, in column order (the order of its tuples)."""
    table = f"{relation.namespace}.{relation.name}"
    return tuple(
        make_decoder(
            column.type_oid,
            column.typmod,
            type_name=type_names.get(column.type_oid),
            enum_oids=enum_oids,
            array_element_oids=array_element_oids,
            domain_base_oids=domain_base_oids,
            table=table,
            column=column.name,
        )
        for column in relation.columns
    )
