"""PostgreSQL text values to Debezium JSON: recorded rows (tests/unit/data/pgoutput) and edge cases."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.postgres.pgoutput import (
    Insert,
    Message,
    Relation,
    StreamStart,
    StreamStop,
    TypeDefinition,
    parse_message,
)
from replicator.capture.postgres.types import (
    BUILTIN_TYPE_NAMES,
    DATE_NEGATIVE_INFINITY_DAYS,
    DATE_POSITIVE_INFINITY_DAYS,
    TIMESTAMP_NEGATIVE_INFINITY_US,
    TIMESTAMP_POSITIVE_INFINITY_US,
    UnsupportedColumnType,
    _civil_from_days,
    _days_from_civil,
    _timestamp_us_slow,
    _zoned_timestamp_from_us,
    array_element_oid,
    debezium_semantic_type,
    make_decoder,
    make_relation_decoders,
    parse_array,
)

DATA = Path(__file__).parent / "data" / "pgoutput"
EPOCH = datetime(1970, 1, 1)


def recorded_messages() -> list[Message]:
    out = []
    in_stream = False
    for line in (DATA / "v1.jsonl").read_text(encoding="ascii").splitlines():
        message = parse_message(bytes.fromhex(json.loads(line)["hex"]), in_stream)
        in_stream = isinstance(message, StreamStart) or (in_stream and not isinstance(message, StreamStop))
        out.append(message)
    return out


MESSAGES = recorded_messages()
TYPE_NAMES = {m.type_oid: m.name for m in MESSAGES if isinstance(m, TypeDefinition)}
MOOD = next(oid for oid, name in TYPE_NAMES.items() if name == "mood")
MOOD_ARRAY = next(oid for oid, name in TYPE_NAMES.items() if name == "_mood")
# What capture learns from the catalog (pg_enum, pg_type.typelem) for the user types of the recording.
ENUMS = frozenset({MOOD})
USER_ARRAYS = {MOOD_ARRAY: MOOD}


def relation(name: str) -> Relation:
    return next(m for m in MESSAGES if isinstance(m, Relation) and m.name == name)


def decoded_inserts(table: str) -> list[dict[str, Any]]:
    rel = relation(table)
    decoders = make_relation_decoders(rel, type_names=TYPE_NAMES, enum_oids=ENUMS, array_element_oids=USER_ARRAYS)
    rows = []
    for message in MESSAGES:
        if isinstance(message, Insert) and message.relation_oid == rel.relation_oid:
            rows.append(
                {
                    column.name: decode(value)
                    for column, decode, value in zip(rel.columns, decoders, message.new, strict=True)
                    if isinstance(value, str)
                }
            )
    return rows


def test_recorded_row_with_every_type() -> None:
    assert decoded_inserts("all_types")[0] == {
        "id": 1,
        "c_bool": True,
        "c_int2": -32768,
        "c_int4": 2147483647,
        "c_int8": -9223372036854775808,
        "c_oid": 4294967295,
        "c_float4": 3.14,
        "c_float8": -1e-300,
        "c_numeric": "12345678901234567890.000123400",
        "c_numeric_10_2": "12345678.90",
        "c_text": 'héllo 😀 "quoted" \\ back',
        "c_varchar": "varchar",
        "c_bpchar": "ab   ",
        "c_name": "a_name",
        "c_char": "x",
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_json": '{"b": 1, "a": [true, null]}',
        "c_jsonb": '{"a": [true, null], "b": 1}',
        "c_bytea": "AP8Q",  # base64 of 00 ff 10
        "c_date": 19782,  # 2024-02-29
        "c_time": 86_399_999_999,  # 23:59:59.999999 in µs (MicroTime)
        "c_time3": 45_296_789,  # 12:34:56.789 in ms (Time, precision 3)
        "c_timetz": "04:45:30.5Z",  # 10:15:30.5+05:30
        "c_ts": 1_709_288_130_123_456,  # 2024-03-01T10:15:30.123456 in µs (MicroTimestamp)
        "c_ts0": 1_709_288_131_000,  # rounded by PostgreSQL to 10:15:31; ms (Timestamp)
        "c_ts3": -1,  # 1969-12-31T23:59:59.999 in ms
        "c_tstz": "2024-03-01T10:15:30.123456Z",  # sent as 11:15:30.123456+01
        "c_tstz3": "2024-06-30T22:00:00.100Z",  # sent as 2024-07-01 00:00:00.1+02
        "c_tstz0": "1900-01-01T00:00:00Z",  # sent with Paris local mean time +00:09:21
        "c_interval": 37_091_106_789_000,  # 14 months * 30.4375 d + 3 d + 04:05:06.789
        "c_mood": "happy",
        "c_int4_arr": [1, None, -3],
        "c_text_arr": ["a b", None, "NULL", "", 'q"uote', "back\\slash", "{brace}", "comma,", "x"],
        "c_int_2d": [[1, 2], [3, 4]],
        "c_numeric_arr": ["1.50", "NaN", "-0.001"],
        "c_tstz_arr": ["2024-03-01T10:15:30.000000Z", None],
        "c_mood_arr": ["sad", "happy"],
        "c_bytea_arr": ["AQ==", "", None],
        "c_date_arr": [19723, 19724],  # bounds [0:1] dropped
    }


def test_recorded_row_with_special_values() -> None:
    assert decoded_inserts("all_types")[2] == {
        "id": 3,
        "c_float4": "NaN",
        "c_float8": "-Infinity",
        "c_numeric": "NaN",
        "c_numeric_10_2": "-0.05",
        "c_date": DATE_POSITIVE_INFINITY_DAYS,
        "c_time": 86_400_000_000,  # 24:00:00
        "c_timetz": "01:00:00Z",  # 00:00:00-01
        "c_ts": TIMESTAMP_NEGATIVE_INFINITY_US,
        "c_ts3": TIMESTAMP_POSITIVE_INFINITY_US // 1000,
        "c_tstz": "infinity",
        "c_tstz3": "-infinity",
        "c_interval": -79_020_000_000,  # -1 days +02:03:00
    }


def test_recorded_row_with_extreme_dates() -> None:
    assert decoded_inserts("all_types")[3] == {
        "id": 4,
        "c_float4": "Infinity",
        "c_float8": 1e308,
        "c_numeric": "-Infinity",
        "c_date": -735_160,  # 0044-03-15 BC = astronomical year -43
        "c_ts": -62_167_219_200_000_000,  # 0001-01-01 00:00:00 BC = year 0
        "c_tstz": "+294276-12-31T23:59:59.999999Z",  # sent as 294277-01-01 00:59:59.999999+01
        "c_interval": -1,
    }


def test_debezium_infinity_sentinels() -> None:
    # Debezium's values, via the JDBC driver: dates -5877611-06-21 / -06-22, timestamps 9223372036825200000 and
    # -9223372036832400000 µs.
    assert _days_from_civil(-5_877_611, 6, 21) == DATE_POSITIVE_INFINITY_DAYS
    assert _days_from_civil(-5_877_611, 6, 22) == DATE_NEGATIVE_INFINITY_DAYS
    assert make_decoder(1082, -1)("-infinity") == -2_147_472_691
    assert make_decoder(1114, -1)("infinity") == 9_223_372_036_825_200_000
    assert make_decoder(1114, 3)("-infinity") == -9_223_372_036_832_400


def test_semantic_types_of_the_recorded_columns() -> None:
    rel = relation("all_types")
    got = {
        c.name: debezium_semantic_type(c.type_oid, c.typmod, enum_oids=ENUMS, array_element_oids=USER_ARRAYS)
        for c in rel.columns
    }
    assert got == {
        "id": ("int32", None),
        "c_bool": ("boolean", None),
        "c_int2": ("int16", None),
        "c_int4": ("int32", None),
        "c_int8": ("int64", None),
        "c_oid": ("int64", None),
        "c_float4": ("float32", None),
        "c_float8": ("float64", None),
        "c_numeric": ("string", None),
        "c_numeric_10_2": ("string", None),
        "c_text": ("string", None),
        "c_varchar": ("string", None),
        "c_bpchar": ("string", None),
        "c_name": ("string", None),
        "c_char": ("string", None),
        "c_uuid": ("string", "io.debezium.data.Uuid"),
        "c_json": ("string", "io.debezium.data.Json"),
        "c_jsonb": ("string", "io.debezium.data.Json"),
        "c_bytea": ("bytes", None),
        "c_date": ("int32", "io.debezium.time.Date"),
        "c_time": ("int64", "io.debezium.time.MicroTime"),
        "c_time3": ("int32", "io.debezium.time.Time"),
        "c_timetz": ("string", "io.debezium.time.ZonedTime"),
        "c_ts": ("int64", "io.debezium.time.MicroTimestamp"),
        "c_ts0": ("int64", "io.debezium.time.Timestamp"),
        "c_ts3": ("int64", "io.debezium.time.Timestamp"),
        "c_tstz": ("string", "io.debezium.time.ZonedTimestamp"),
        "c_tstz3": ("string", "io.debezium.time.ZonedTimestamp"),
        "c_tstz0": ("string", "io.debezium.time.ZonedTimestamp"),
        "c_interval": ("int64", "io.debezium.time.MicroDuration"),
        "c_mood": ("string", "io.debezium.data.Enum"),
        "c_int4_arr": ("array", None),
        "c_text_arr": ("array", None),
        "c_int_2d": ("array", None),
        "c_numeric_arr": ("array", None),
        "c_tstz_arr": ("array", None),
        "c_mood_arr": ("array", None),
        "c_bytea_arr": ("array", None),
        "c_date_arr": ("array", None),
    }
    assert array_element_oid(1185) == 1184
    assert array_element_oid(MOOD_ARRAY, array_element_oids=USER_ARRAYS) == MOOD
    assert array_element_oid(1184) is None
    assert debezium_semantic_type(MOOD, -1, enum_oids=ENUMS) == ("string", "io.debezium.data.Enum")
    assert debezium_semantic_type(16999, -1) == ("string", None)  # e.g. citext from an extension


def test_recorded_money_column_is_refused_with_table_and_column() -> None:
    with pytest.raises(UnsupportedColumnType) as info:
        make_relation_decoders(relation("unsupported_money"))
    assert (info.value.table, info.value.column, info.value.type_name) == (
        "public.unsupported_money",
        "price",
        "money (oid 790)",
    )
    assert str(info.value).startswith("column public.unsupported_money.price has PostgreSQL type money (oid 790),")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("type_oid", "label"),
    [(791, "money[] (oid 791)"), (1560, "bit (oid 1560)"), (600, "point (oid 600)"), (12345, "oid 12345")],
)
def test_unsupported_builtin_types_are_refused(type_oid: int, label: str) -> None:
    with pytest.raises(UnsupportedColumnType) as info:
        make_decoder(type_oid, -1, table="s.t", column="c")
    assert info.value.type_name == label
    with pytest.raises(UnsupportedColumnType):
        debezium_semantic_type(type_oid, -1)


def test_type_name_from_a_type_message_names_the_refused_type() -> None:
    with pytest.raises(UnsupportedColumnType, match=r"type shop\.geo \(oid 1560\)"):
        make_decoder(1560, -1, type_name="shop.geo")


def test_user_types_domains_and_arrays() -> None:
    domain, domain_array, over_domain = 17001, 17002, 17003
    bases = {domain: 1700, over_domain: domain}
    assert make_decoder(domain, -1, domain_base_oids=bases)("10.50") == "10.50"
    assert make_decoder(over_domain, -1, domain_base_oids=bases)("1.0") == "1.0"
    assert make_decoder(domain_array, -1, array_element_oids={domain_array: domain}, domain_base_oids=bases)(
        "{1.5,NULL}"
    ) == ["1.5", None]
    int_domain = 17004
    assert make_decoder(int_domain, -1, domain_base_oids={int_domain: 23})("42") == 42
    assert debezium_semantic_type(int_domain, -1, domain_base_oids={int_domain: 23}) == ("int32", None)
    assert make_decoder(17005, -1)("anything at all") == "anything at all"


def test_builtin_type_names_cover_scalars_and_arrays() -> None:
    assert BUILTIN_TYPE_NAMES[1184] == "timestamp with time zone"
    assert BUILTIN_TYPE_NAMES[1185] == "timestamp with time zone[]"
    assert 790 not in BUILTIN_TYPE_NAMES
    for type_oid in BUILTIN_TYPE_NAMES:
        make_decoder(type_oid, -1)  # every listed type has a decoder
        debezium_semantic_type(type_oid, -1)


# --- edge cases not in the recording -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typmod", "text", "expected"),
    [
        (-1, "2024-03-01 10:15:30+00", "2024-03-01T10:15:30.000000Z"),
        (-1, "2024-03-01 10:15:30.5+00", "2024-03-01T10:15:30.500000Z"),
        (-1, "2024-03-01 00:30:00+05:30", "2024-02-29T19:00:00.000000Z"),
        (-1, "2024-03-01 00:30:00.000001-09:30", "2024-03-01T10:00:00.000001Z"),
        (0, "2024-03-01 10:15:30+00", "2024-03-01T10:15:30Z"),
        (0, "2024-03-01 10:15:30+01", "2024-03-01T09:15:30Z"),
        (1, "2024-03-01 10:15:30.1+00", "2024-03-01T10:15:30.1Z"),
        (2, "2024-03-01 10:15:30+00", "2024-03-01T10:15:30.00Z"),
        (5, "2024-03-01 10:15:30.12345+02", "2024-03-01T08:15:30.12345Z"),
        (-1, "9999-12-31 23:30:00-01", "+10000-01-01T00:30:00.000000Z"),
        (-1, "0001-01-01 00:30:00+01", "0000-12-31T23:30:00.000000Z"),
        (3, "0044-03-15 12:00:00.5+00 BC", "-0043-03-15T12:00:00.500Z"),
        (-1, "0044-03-15 12:00:00+00:09:21 BC", "-0043-03-15T11:50:39.000000Z"),
        (-1, "12345-06-07 08:09:10.11+00", "+12345-06-07T08:09:10.110000Z"),
        (-1, "infinity", "infinity"),
    ],
)
def test_zoned_timestamp(typmod: int, text: str, expected: str) -> None:
    assert make_decoder(1184, typmod)(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24:00:00+00", "24:00:00Z"),
        ("24:00:00+02", "22:00:00Z"),
        ("00:00:00+00", "00:00:00Z"),
        ("23:30:00-01", "00:30:00Z"),
        ("12:00:00.120000+00", "12:00:00.12Z"),
        ("12:00:00.000001+00:00:30", "11:59:30.000001Z"),
    ],
)
def test_zoned_time(text: str, expected: str) -> None:
    assert make_decoder(1266, -1)(text) == expected


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [
        ("00:00:00", 0),
        ("1 day", 86_400_000_000),
        ("2 years", 2 * 12 * 2_629_800_000_000),
        ("1 mon", 2_629_800_000_000),  # 30.4375 days
        ("-1 years -2 mons +3 days -04:05:06.5", -14 * 2_629_800_000_000 + 3 * 86_400_000_000 - 14_706_500_000),
        ("100:00:00", 360_000_000_000),
        ("-2562047788:00:54.775807", -9_223_372_036_854_775_807),
        ("3 days 00:00:00.1", 259_200_100_000),
        ("178000000 years", 2**63 - 1),  # saturated like Debezium's double-to-long cast
        ("-178000000 years", -(2**63)),
    ],
)
def test_interval(text: str, expected_us: int) -> None:
    assert make_decoder(1186, -1)(text) == expected_us


@pytest.mark.parametrize(
    ("type_oid", "typmod", "text", "expected"),
    [
        (1082, -1, "1970-01-01", 0),
        (1082, -1, "1969-12-31", -1),
        (1082, -1, "10000-01-01", 2_932_897),
        (1083, -1, "00:00:00.000001", 1),
        (1083, 0, "00:00:01", 1000),
        (1114, 6, "1970-01-01 00:00:00.000001", 1),
        (1114, 2, "1969-12-31 23:59:59.99", -10),
        (1114, -1, "10000-01-01 00:00:00", 253_402_300_800_000_000),
        (16, -1, "f", False),
        (700, -1, "-0", -0.0),
        (701, -1, "1.7976931348623157e+308", 1.7976931348623157e308),
        (701, -1, "NaN", "NaN"),
        (17, -1, "\\x", ""),
        (17, -1, "\\xdeadbeef", "3q2+7w=="),
        (3802, -1, '{"a": "é"}', '{"a": "é"}'),
        (869, -1, "192.168.0.1/24", "192.168.0.1/24"),
        (3904, -1, "[1,5)", "[1,5)"),
    ],
)
def test_scalar_values(type_oid: int, typmod: int, text: str, expected: object) -> None:
    assert make_decoder(type_oid, typmod)(text) == expected


@pytest.mark.parametrize(
    ("type_oid", "text"),
    [
        (16, "yes"),
        (17, "\\001"),  # bytea_output=escape
        (1082, "03/01/2024"),  # DateStyle SQL
        (1083, "10:15"),
        (1114, "Fri Mar 01 10:15:30 2024"),
        (1184, "2024-03-01 10:15:30 CET"),
        (1186, "P1Y2M"),  # IntervalStyle iso_8601
        (1186, ""),
        (1266, "10:15:30"),
        (23, "x"),
        (1007, "{1,2"),
        (1007, "1,2"),
        (1007, '{"1}'),
        (1007, "{{1},{2}}x"),
    ],
)
def test_text_in_an_unexpected_format_is_a_value_error(type_oid: int, text: str) -> None:
    with pytest.raises(ValueError):
        make_decoder(type_oid, -1)(text)


def test_timestamp_beyond_64_bit_microseconds_is_refused() -> None:
    latest = "294276-12-31 23:59:59.999999"  # PostgreSQL's maximum
    with pytest.raises(ValueError, match=r"beyond the 64-bit range of io\.debezium\.time\.MicroTimestamp"):
        make_decoder(1114, -1)(latest)
    assert make_decoder(1114, 3)(latest) == 9_224_318_015_999_999  # as milliseconds it fits
    assert make_decoder(1184, -1)(latest + "+00") == "+294276-12-31T23:59:59.999999Z"


def test_arrays_of_temporal_and_binary_elements() -> None:
    assert make_decoder(1185, 3)('{"2024-03-01 10:15:30.5+00","2024-03-01 10:15:30+01"}') == [
        "2024-03-01T10:15:30.500Z",
        "2024-03-01T09:15:30.000Z",
    ]
    assert make_decoder(1187, -1)('{"1 day","-00:00:01",NULL}') == [86_400_000_000, -1_000_000, None]
    assert make_decoder(1001, -1)('{"\\\\xff00"}') == ["/wA="]
    assert make_decoder(1000, -1)("{t,f,NULL}") == [True, False, None]
    assert make_decoder(1009, -1)("{}") == []
    assert make_decoder(1007, -1)("{{},{}}") == [[], []]
    assert make_decoder(1009, -1)('{"a\\\\\\"b"}') == ['a\\"b']


# --- properties -----------------------------------------------------------------------------------------------


def pg_clock(moment: datetime) -> str:
    # Not strftime: glibc does not zero-pad years before 1000.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def pg_fraction(us: int) -> str:
    return f".{us:06d}".rstrip("0") if us else ""


def pg_offset(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or secs:
        text += f":{minutes:02d}"
    if secs:
        text += f":{secs:02d}"
    return text


datetimes = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
offsets = st.integers(min_value=-15 * 3600, max_value=15 * 3600)


@settings(max_examples=500, deadline=None, database=None)
@given(moment=datetimes)
def test_timestamp_micros_match_python(moment: datetime) -> None:
    text = pg_clock(moment) + pg_fraction(moment.microsecond)
    expected = (moment - EPOCH) // timedelta(microseconds=1)
    assert make_decoder(1114, -1)(text) == expected
    assert make_decoder(1114, 3)(text) == expected // 1000
    # The slow path (for BC and 5-digit years) agrees with the fast one.
    assert _timestamp_us_slow(text) == expected


@settings(max_examples=500, deadline=None, database=None)
@given(moment=datetimes, offset=offsets, precision=st.integers(min_value=0, max_value=6))
def test_zoned_timestamp_matches_python(moment: datetime, offset: int, precision: int) -> None:
    # PostgreSQL rounds to the column precision before printing.
    moment = moment.replace(microsecond=moment.microsecond - moment.microsecond % 10 ** (6 - precision))
    local = moment.replace(tzinfo=timezone(timedelta(seconds=offset)))
    text = pg_clock(local) + pg_fraction(local.microsecond) + pg_offset(offset)
    utc = local.astimezone(UTC)
    expected = pg_clock(utc).replace(" ", "T")
    if precision:
        expected += "." + f"{utc.microsecond:06d}"[:precision]
    assert make_decoder(1184, precision)(text) == expected + "Z"
    # The slow path (for BC and 5-digit years) formats the same way.
    assert _zoned_timestamp_from_us(_timestamp_us_slow(text), precision) == expected + "Z"


@settings(max_examples=300, deadline=None, database=None)
@given(day=st.dates())
def test_date_days_match_python(day: date) -> None:
    assert make_decoder(1082, -1)(day.isoformat()) == (day - date(1970, 1, 1)).days


@settings(max_examples=500, deadline=None, database=None)
@given(days=st.integers(min_value=-3_000_000_000, max_value=3_000_000_000))
def test_civil_days_round_trip(days: int) -> None:
    assert _days_from_civil(*_civil_from_days(days)) == days
    year, month, day = _civil_from_days(days)
    if 1 <= year <= 9999:
        assert date(year, month, day) == date(1970, 1, 1) + timedelta(days=days)


@settings(max_examples=500, deadline=None, database=None)
@given(
    years=st.integers(-200, 200),
    months=st.integers(-11, 11),
    days=st.integers(-1000, 1000),
    clock_us=st.integers(-(10**12), 10**12),
)
def test_interval_is_exact_with_30_4375_day_months(years: int, months: int, days: int, clock_us: int) -> None:
    parts = []
    if years:
        parts.append(f"{years} year{'s' if abs(years) != 1 else ''}")
    if months:
        parts.append(f"{months} mon{'s' if abs(months) != 1 else ''}")
    if days:
        parts.append(f"{days} day{'s' if abs(days) != 1 else ''}")
    if clock_us or not parts:
        seconds, fraction = divmod(abs(clock_us), 1_000_000)
        sign = "-" if clock_us < 0 else ("+" if parts else "")
        parts.append(f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{pg_fraction(fraction)}")
    text = " ".join(parts)
    expected = (years * 12 + months) * 2_629_800_000_000 + days * 86_400_000_000 + clock_us
    assert make_decoder(1186, -1)(text) == expected


def pg_array_element(value: str | None) -> str:
    # array_out quotes empty strings, NULL look-alikes, and anything with a special character or space.
    if value is None:
        return "NULL"
    if value == "" or value.upper() == "NULL" or any(c in value for c in '{}," \\\t\n') or value != value.strip():
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def pg_array(value: list[Any]) -> str:
    return "{" + ",".join(pg_array(v) if isinstance(v, list) else pg_array_element(v) for v in value) + "}"


array_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
nested_arrays = st.recursive(
    st.lists(st.one_of(st.none(), array_text), max_size=5),
    lambda children: st.lists(children, min_size=1, max_size=3),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None, database=None)
@given(value=nested_arrays)
def test_array_literal_round_trip(value: list[Any]) -> None:
    assert parse_array(pg_array(value), str) == value


@settings(max_examples=300, deadline=None, database=None)
@given(number=st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 100))
def test_numeric_text_is_kept_exactly(number: Decimal) -> None:
    text = format(number, "f")  # PostgreSQL prints numeric in plain notation with its display scale
    if text.startswith("-") and Decimal(text) == 0:
        text = text[1:]  # numeric has no negative zero
    decoded = make_decoder(1700, -1)(text)
    assert decoded == text
    assert Decimal(decoded) == number


@settings(max_examples=300, deadline=None, database=None)
@given(number=st.floats(allow_nan=True, allow_infinity=True))
def test_floats_and_their_special_values(number: float) -> None:
    if math.isnan(number):
        text = "NaN"
    elif math.isinf(number):
        text = "Infinity" if number > 0 else "-Infinity"
    else:
        text = repr(number)  # PostgreSQL 12+ prints the shortest exact representation too
    decoded = make_decoder(701, -1)(text)
    if isinstance(decoded, str):
        assert decoded == text
        assert not math.isfinite(number)
    else:
        assert decoded == number


def test_booleans_decode_from_pgoutput_and_from_the_snapshots_text_cast() -> None:
    decode = make_decoder(16, 16)  # pgoutput sends 't'/'f'; the snapshot selects column::text, 'true'/'false'
    assert [decode(t) for t in ("t", "f", "true", "false")] == [True, False, True, False]
    with pytest.raises(ValueError, match="not a PostgreSQL boolean: 'yes'"):
        decode("yes")
