"""pgoutput decoding on payloads recorded from PostgreSQL 15 (see tests/unit/data/pgoutput/README.md)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.postgres.pgoutput import (
    PG_EPOCH_UNIX_MS,
    UNCHANGED_TOAST,
    Begin,
    ColumnValue,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    OldTupleKind,
    Origin,
    PgOutputDecodeError,
    Relation,
    RelationColumn,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    TypeDefinition,
    Update,
    parse_message,
    pg_timestamp_to_unix_ms,
)

DATA = Path(__file__).parent / "data" / "pgoutput"

# OIDs and xids of the recording.
ALL_TYPES, DOCS, CUSTOMERS_FULL, PARENT, CHILD, KV, BINARY_SAMPLE, MONEY = (
    16537, 16544, 16551, 16558, 16563, 16574, 16588, 16582,
)  # fmt: skip
MOOD, MOOD_ARRAY = 16531, 16530


@dataclass(frozen=True)
class Recorded:
    seq: int
    payload: bytes
    in_stream: bool
    message: Message


@cache
def recorded(name: str) -> tuple[Recorded, ...]:
    """Decode a whole recording, tracking stream segments as a reader must."""
    out = []
    in_stream = False
    for line in (DATA / name).read_text(encoding="ascii").splitlines():
        record = json.loads(line)
        payload = bytes.fromhex(record["hex"])
        message = parse_message(payload, in_stream)
        out.append(Recorded(record["seq"], payload, in_stream, message))
        if isinstance(message, StreamStart):
            in_stream = True
        elif isinstance(message, StreamStop):
            in_stream = False
    return tuple(out)


def messages(name: str) -> list[Message]:
    return [r.message for r in recorded(name)]


def shape(name: str) -> str:
    """Message type letters with runs compressed, e.g. 'B R Ix3 C'."""
    letters = [chr(r.payload[0]) for r in recorded(name)]
    runs: list[list[object]] = []
    for letter in letters:
        if runs and runs[-1][0] == letter:
            runs[-1][1] = int(str(runs[-1][1])) + 1
        else:
            runs.append([letter, 1])
    return " ".join(f"{letter}x{count}" if count != 1 else str(letter) for letter, count in runs)


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_recorded_streams_have_the_expected_message_sequence() -> None:
    common = (
        "B Yx2 R I C B I C B I C B I C B U C B U C B D C B R I C B U C B R I C B U C B D C B R I R I C "
        "B Rx2 T C B R I C B R T C B R I M C M B O I C "
    )
    assert shape("v1.jsonl") == common + "B I C B O Ix600 C B Ix301 C B R Ix2 C B R I C M"
    assert shape("v2_streaming.jsonl") == common + (
        "S O R Ix444 E B I C S Ix156 E c S R Ix432 E A S R Ix440 E A S R I E c B R Ix2 C B R I C M"
    )
    assert shape("v1_binary.jsonl") == "B M C M B R Ix2 C M"


def test_begin_and_commit_carry_lsns_xid_and_commit_time() -> None:
    first = messages("v1.jsonl")[:6]
    assert first[0] == Begin(final_lsn=37344800, commit_ts_pg_us=849226709886040, commit_ts_ms=1795911509886, xid=793)
    assert first[5] == Commit(
        flags=0,
        commit_lsn=37344800,
        end_lsn=37344848,
        commit_ts_pg_us=849226709886040,
        commit_ts_ms=1795911509886,
    )
    # 849226709886040 µs after 2000-01-01T00:00:00Z.
    assert first[0].commit_ts_ms == utc_ms("2026-11-29T00:18:29.886")
    assert utc_ms("2000-01-01T00:00:00") == PG_EPOCH_UNIX_MS


def test_commit_time_before_the_pg_epoch_rounds_down_to_the_millisecond() -> None:
    assert pg_timestamp_to_unix_ms(-1) == PG_EPOCH_UNIX_MS - 1
    assert pg_timestamp_to_unix_ms(-1000) == PG_EPOCH_UNIX_MS - 1
    assert pg_timestamp_to_unix_ms(999) == PG_EPOCH_UNIX_MS


def test_type_messages_precede_the_relation_using_them() -> None:
    got = messages("v1.jsonl")[1:3]
    assert got == [
        TypeDefinition(xid=None, type_oid=MOOD, namespace="public", name="mood"),
        TypeDefinition(xid=None, type_oid=MOOD_ARRAY, namespace="public", name="_mood"),
    ]


def test_relation_lists_columns_with_type_typmod_and_key_flag() -> None:
    relation = messages("v1.jsonl")[3]
    assert isinstance(relation, Relation)
    assert (relation.xid, relation.relation_oid, relation.namespace, relation.name, relation.replica_identity) == (
        None,
        ALL_TYPES,
        "public",
        "all_types",
        "d",
    )
    assert [(c.name, c.type_oid, c.typmod, c.is_key) for c in relation.columns] == [
        ("id", 23, -1, True),
        ("c_bool", 16, -1, False),
        ("c_int2", 21, -1, False),
        ("c_int4", 23, -1, False),
        ("c_int8", 20, -1, False),
        ("c_oid", 26, -1, False),
        ("c_float4", 700, -1, False),
        ("c_float8", 701, -1, False),
        ("c_numeric", 1700, -1, False),
        ("c_numeric_10_2", 1700, (10 << 16 | 2) + 4, False),
        ("c_text", 25, -1, False),
        ("c_varchar", 1043, 20 + 4, False),
        ("c_bpchar", 1042, 5 + 4, False),
        ("c_name", 19, -1, False),
        ("c_char", 18, -1, False),
        ("c_uuid", 2950, -1, False),
        ("c_json", 114, -1, False),
        ("c_jsonb", 3802, -1, False),
        ("c_bytea", 17, -1, False),
        ("c_date", 1082, -1, False),
        ("c_time", 1083, -1, False),
        ("c_time3", 1083, 3, False),
        ("c_timetz", 1266, -1, False),
        ("c_ts", 1114, -1, False),
        ("c_ts0", 1114, 0, False),
        ("c_ts3", 1114, 3, False),
        ("c_tstz", 1184, -1, False),
        ("c_tstz3", 1184, 3, False),
        ("c_tstz0", 1184, 0, False),
        ("c_interval", 1186, -1, False),
        ("c_mood", MOOD, -1, False),
        ("c_int4_arr", 1007, -1, False),
        ("c_text_arr", 1009, -1, False),
        ("c_int_2d", 1007, -1, False),
        ("c_numeric_arr", 1231, -1, False),
        ("c_tstz_arr", 1185, -1, False),
        ("c_mood_arr", MOOD_ARRAY, -1, False),
        ("c_bytea_arr", 1001, -1, False),
        ("c_date_arr", 1182, -1, False),
    ]


def test_insert_carries_every_column_as_postgres_text() -> None:
    insert = messages("v1.jsonl")[4]
    assert insert == Insert(
        xid=None,
        relation_oid=ALL_TYPES,
        new=(
            "1",
            "t",
            "-32768",
            "2147483647",
            "-9223372036854775808",
            "4294967295",
            "3.14",
            "-1e-300",
            "12345678901234567890.000123400",
            "12345678.90",
            'héllo 😀 "quoted" \\ back',
            "varchar",
            "ab   ",
            "a_name",
            "x",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            '{"b": 1, "a": [true, null]}',
            '{"a": [true, null], "b": 1}',
            "\\x00ff10",
            "2024-02-29",
            "23:59:59.999999",
            "12:34:56.789",
            "10:15:30.5+05:30",
            "2024-03-01 10:15:30.123456",
            "2024-03-01 10:15:31",
            "1969-12-31 23:59:59.999",
            "2024-03-01 11:15:30.123456+01",
            "2024-07-01 00:00:00.1+02",
            "1900-01-01 00:09:21+00:09:21",
            "1 year 2 mons 3 days 04:05:06.789",
            "happy",
            "{1,NULL,-3}",
            '{"a b",NULL,"NULL","","q\\"uote","back\\\\slash","{brace}","comma,",x}',
            "{{1,2},{3,4}}",
            "{1.50,NaN,-0.001}",
            '{"2024-03-01 11:15:30+01",NULL}',
            "{sad,happy}",
            '{"\\\\x01","\\\\x",NULL}',
            "[0:1]={2024-01-01,2024-01-02}",
        ),
    )


def test_nulls_are_none() -> None:
    insert = messages("v1.jsonl")[7]
    assert insert == Insert(xid=None, relation_oid=ALL_TYPES, new=("2",) + (None,) * 38)


def test_update_without_key_change_has_no_old_tuple() -> None:
    update = messages("v1.jsonl")[16]
    assert isinstance(update, Update)
    assert (update.old_kind, update.old) == (None, None)
    assert update.new[:2] == ("1", "t")
    assert update.new[10] == "changed"


def test_update_changing_the_key_sends_the_old_key() -> None:
    update = messages("v1.jsonl")[19]
    assert update == Update(
        xid=None,
        relation_oid=ALL_TYPES,
        old_kind="K",
        old=("2",) + (None,) * 38,
        new=("20",) + (None,) * 38,
    )


def test_delete_with_default_identity_sends_the_key_only() -> None:
    assert messages("v1.jsonl")[22] == Delete(xid=None, relation_oid=ALL_TYPES, old_kind="K", old=("3",) + (None,) * 38)


def test_unchanged_toasted_value_is_a_sentinel_not_null() -> None:
    got = messages("v1.jsonl")
    insert, update = got[26], got[29]
    assert isinstance(insert, Insert) and isinstance(update, Update)
    assert insert.new == ("1", "0123456789abcdef" * 400, "0")
    assert update == Update(xid=None, relation_oid=DOCS, old_kind=None, old=None, new=("1", UNCHANGED_TOAST, "1"))
    assert update.new[1] is UNCHANGED_TOAST
    assert UNCHANGED_TOAST is not None
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"


def test_replica_identity_full_sends_the_whole_old_row() -> None:
    got = messages("v1.jsonl")
    relation, update, delete = got[32], got[36], got[39]
    assert isinstance(relation, Relation)
    assert relation.replica_identity == "f"
    assert all(column.is_key for column in relation.columns)  # FULL: every column identifies the row
    notes = "note " * 1000
    assert update == Update(
        xid=None,
        relation_oid=CUSTOMERS_FULL,
        old_kind="O",
        old=("7", "a@example.com", "+33 1 23", notes),
        # The new tuple still omits the untouched TOASTed column; the old tuple has its value.
        new=("7", "a@example.com", "+33 9 87", UNCHANGED_TOAST),
    )
    assert delete == Delete(
        xid=None, relation_oid=CUSTOMERS_FULL, old_kind="O", old=("7", "a@example.com", "+33 9 87", notes)
    )


def test_truncate_flags_and_relations() -> None:
    got = messages("v1.jsonl")
    assert got[50] == Truncate(xid=None, relation_oids=(PARENT, CHILD), cascade=True, restart_identity=False)
    assert got[58] == Truncate(xid=None, relation_oids=(KV,), cascade=False, restart_identity=True)


def test_logical_messages_transactional_and_not() -> None:
    got = messages("v1.jsonl")
    assert got[63] == LogicalMessage(
        xid=None, transactional=True, lsn=37379640, prefix="replicator", content=b'{"trace": "abc"}'
    )
    # Outside any transaction (no B before it) and with a NUL byte in the content.
    assert isinstance(got[64], Commit)
    assert got[65] == LogicalMessage(
        xid=None, transactional=False, lsn=37379760, prefix="replicator", content=b"non\x00tx\x00"
    )


def test_origin_follows_begin_of_a_tagged_transaction() -> None:
    begin, origin, insert, commit = messages("v1.jsonl")[66:70]
    assert begin == Begin(final_lsn=37379896, commit_ts_pg_us=34488306789000, commit_ts_ms=981173106789, xid=810)
    # pg_replication_origin_xact_setup('0/ABCDEF', '2001-02-03 04:05:06.789+00') set both.
    assert begin.commit_ts_ms == utc_ms("2001-02-03T04:05:06.789")
    assert origin == Origin(origin_lsn=0xABCDEF, name="replicator_w1")
    assert insert == Insert(xid=None, relation_oid=KV, new=("2", "origin", "w1"))
    assert isinstance(commit, Commit) and commit.commit_ts_ms == begin.commit_ts_ms


def test_big_transaction_in_protocol_1_arrives_whole_after_the_interleaved_one() -> None:
    got = messages("v1.jsonl")
    assert got[70:73] == [
        Begin(final_lsn=37450704, commit_ts_pg_us=849226709970919, commit_ts_ms=1795911509970, xid=812),
        Insert(xid=None, relation_oid=KV, new=("503", "interleaved", "x")),
        Commit(
            flags=0,
            commit_lsn=37450704,
            end_lsn=37450752,
            commit_ts_pg_us=849226709970919,
            commit_ts_ms=1795911509970,
        ),
    ]
    begin, origin = got[73], got[74]
    assert begin == Begin(final_lsn=37464712, commit_ts_pg_us=68533567000000, commit_ts_ms=1015218367000, xid=811)
    assert begin.commit_ts_ms == utc_ms("2002-03-04T05:06:07")
    assert origin == Origin(origin_lsn=0x1234, name="replicator_w2")
    rows = got[75:675]
    assert all(isinstance(m, Insert) and m.xid is None for m in rows)
    assert rows[0] == Insert(xid=None, relation_oid=KV, new=("3", "big-1", None))
    # id 503 went to the interleaved row, which took the shared sequence in the middle of this transaction.
    assert rows[-1] == Insert(xid=None, relation_oid=KV, new=("603", "big-600", None))
    assert got[675] == Commit(
        flags=0,
        commit_lsn=37464712,
        end_lsn=37464784,
        commit_ts_pg_us=68533567000000,
        commit_ts_ms=1015218367000,
    )


def test_streamed_transaction_with_origin_and_interleaved_commit() -> None:
    got = recorded("v2_streaming.jsonl")
    assert got[70].message == StreamStart(xid=811, first_segment=True)
    # The origin is known at the first segment, its LSN only at commit (so 0 here, 0x1234 in protocol 1).
    assert got[71].message == Origin(origin_lsn=0, name="replicator_w2")
    assert got[72].message == Relation(
        xid=811,
        relation_oid=KV,
        namespace="public",
        name="kv",
        replica_identity="d",
        columns=(
            RelationColumn("id", 23, -1, True),
            RelationColumn("k", 25, -1, False),
            RelationColumn("v", 25, -1, False),
        ),
    )
    first_segment = [r.message for r in got[73:517]]
    assert first_segment[0] == Insert(xid=811, relation_oid=KV, new=("3", "big-1", None))
    assert first_segment[-1] == Insert(xid=811, relation_oid=KV, new=("446", "big-444", None))
    assert all(isinstance(m, Insert) and m.xid == 811 for m in first_segment)
    assert all(r.in_stream for r in got[71:517])
    assert got[517].message == StreamStop()
    # Another session's transaction, committed while 811 was open, arrives between two segments.
    assert [r.message for r in got[518:521]] == [
        Begin(final_lsn=37450704, commit_ts_pg_us=849226709970919, commit_ts_ms=1795911509970, xid=812),
        Insert(xid=None, relation_oid=KV, new=("503", "interleaved", "x")),
        Commit(
            flags=0,
            commit_lsn=37450704,
            end_lsn=37450752,
            commit_ts_pg_us=849226709970919,
            commit_ts_ms=1795911509970,
        ),
    ]
    assert not any(r.in_stream for r in got[518:522])
    assert got[521].message == StreamStart(xid=811, first_segment=False)
    second_segment = [r.message for r in got[522:678]]
    assert second_segment[0] == Insert(xid=811, relation_oid=KV, new=("447", "big-445", None))
    assert second_segment[-1] == Insert(xid=811, relation_oid=KV, new=("603", "big-600", None))
    assert got[678].message == StreamStop()
    assert got[679].message == StreamCommit(
        xid=811,
        flags=0,
        commit_lsn=37464712,
        end_lsn=37464784,
        commit_ts_pg_us=68533567000000,
        commit_ts_ms=1015218367000,
    )


def test_streamed_transaction_rolled_back_ends_with_abort() -> None:
    got = messages("v2_streaming.jsonl")
    assert got[680] == StreamStart(xid=813, first_segment=True)
    assert got[682] == Insert(xid=813, relation_oid=KV, new=("604", "aborted-1", None))
    assert got[1113] == Insert(xid=813, relation_oid=KV, new=("1035", "aborted-432", None))
    assert got[1114:1116] == [StreamStop(), StreamAbort(xid=813, subxid=813)]


def test_streamed_subtransaction_rollback_names_the_subxid() -> None:
    got = messages("v2_streaming.jsonl")
    assert got[1116] == StreamStart(xid=814, first_segment=True)
    segment = [m for m in got[1118:1558] if isinstance(m, Insert)]
    # Changes inside a stream carry the xid of the (sub)transaction that made them, not the top-level one.
    assert {m.xid for m in segment} == {814, 815}
    assert segment[0] == Insert(xid=814, relation_oid=KV, new=("1104", "kept-1", None))
    assert segment[-1] == Insert(xid=815, relation_oid=KV, new=("1543", "undone-140", None))
    assert got[1558:1561] == [StreamStop(), StreamAbort(xid=814, subxid=815), StreamStart(xid=814, first_segment=False)]
    relation = got[1561]
    assert isinstance(relation, Relation) and relation.xid == 816
    assert got[1562] == Insert(xid=816, relation_oid=KV, new=("1904", "after-savepoint", "y"))
    assert got[1563] == StreamStop()
    commit = got[1564]
    assert isinstance(commit, StreamCommit)
    assert (commit.xid, commit.commit_lsn, commit.end_lsn) == (814, 37649448, 37649504)


def test_binary_mode_columns_are_bytes() -> None:
    got = messages("v1_binary.jsonl")
    relation, insert, nulls = got[5], got[6], got[7]
    assert isinstance(relation, Relation) and relation.relation_oid == BINARY_SAMPLE
    assert [(c.name, c.type_oid, c.typmod) for c in relation.columns] == [
        ("id", 23, -1),
        ("k", 25, -1),
        ("n", 1700, (6 << 16 | 2) + 4),
        ("b", 17, -1),
        ("ts", 1184, -1),
    ]
    assert isinstance(insert, Insert)
    ident, text, numeric, raw, timestamp = insert.new
    assert ident == struct.pack(">i", 1)
    assert text == b"bin"
    # numeric_send: ndigits=2, weight=0, sign=+, dscale=2, base-10000 digits 12 and 5000.
    assert numeric == struct.pack(">hhHHhh", 2, 0, 0, 2, 12, 5000)
    assert raw == b"\xde\xad\xbe\xef"
    assert isinstance(timestamp, bytes)
    micros_since_2000 = struct.unpack(">q", timestamp)[0]
    assert pg_timestamp_to_unix_ms(micros_since_2000) == utc_ms("2024-03-01T10:15:30.500")
    assert nulls == Insert(xid=None, relation_oid=BINARY_SAMPLE, new=(struct.pack(">i", 2), None, None, None, None))


def test_money_column_relation_decodes() -> None:
    relation = messages("v1.jsonl")[985]
    assert isinstance(relation, Relation)
    assert (relation.relation_oid, relation.name, [(c.name, c.type_oid) for c in relation.columns]) == (
        MONEY,
        "unsupported_money",
        [("id", 23), ("price", 790)],
    )


# --- malformed input -----------------------------------------------------------------------------------


def one_of_each_type() -> list[Recorded]:
    seen: dict[int, Recorded] = {}
    for name in ("v1.jsonl", "v2_streaming.jsonl", "v1_binary.jsonl"):
        for record in recorded(name):
            key = record.payload[0] * 2 + record.in_stream
            if key not in seen or len(record.payload) < len(seen[key].payload):
                seen[key] = record
    return sorted(seen.values(), key=lambda r: (r.payload[0], r.in_stream))


def test_sample_covers_every_message_type() -> None:
    assert {chr(r.payload[0]) for r in one_of_each_type()} == set("BCORYIUDTMSEcA")


def test_every_truncation_of_a_recorded_message_is_a_decode_error() -> None:
    for record in one_of_each_type():
        for cut in range(len(record.payload)):
            with pytest.raises(PgOutputDecodeError) as info:
                parse_message(record.payload[:cut], record.in_stream)
            assert isinstance(info.value, ValueError)
            if cut:
                assert info.value.message_type == chr(record.payload[0])
                assert 0 < info.value.offset <= cut


def test_trailing_bytes_are_a_decode_error() -> None:
    for record in one_of_each_type():
        with pytest.raises(PgOutputDecodeError, match=r"1 unexpected trailing byte\(s\)"):
            parse_message(record.payload + b"\x00", record.in_stream)


def test_error_names_type_and_offset() -> None:
    with pytest.raises(PgOutputDecodeError) as info:
        parse_message(b"Z\x00", False)
    assert str(info.value) == "pgoutput message 'Z': unknown message type at byte offset 0"
    with pytest.raises(PgOutputDecodeError, match="empty payload"):
        parse_message(b"", False)
    bad_kind = b"I" + struct.pack(">I", KV) + b"N" + struct.pack(">H", 2) + b"n" + b"x"
    with pytest.raises(PgOutputDecodeError) as info:
        parse_message(bad_kind, False)
    assert str(info.value) == "pgoutput message 'I': unknown tuple column kind 'x' at byte offset 9"
    overrun = b"I" + struct.pack(">I", KV) + b"N" + struct.pack(">H", 1) + b"t" + struct.pack(">i", 10) + b"abc"
    with pytest.raises(PgOutputDecodeError, match="column value of 10 bytes overruns at byte offset 8"):
        parse_message(overrun, False)
    bad_utf8 = b"I" + struct.pack(">I", KV) + b"N" + struct.pack(">H", 1) + b"t" + struct.pack(">i", 1) + b"\xff"
    with pytest.raises(PgOutputDecodeError, match="invalid UTF-8"):
        parse_message(bad_utf8, False)


def test_stream_data_message_read_outside_a_stream_is_an_error() -> None:
    streamed = recorded("v2_streaming.jsonl")[73]
    assert streamed.in_stream and isinstance(streamed.message, Insert)
    # Read without the leading xid, the relation OID is misplaced and the 'N' marker is not found.
    with pytest.raises(PgOutputDecodeError, match="expected new tuple 'N'"):
        parse_message(streamed.payload, False)


# --- encode/parse round trips -----------------------------------------------------------------------------


def encode_tuple(values: tuple[ColumnValue, ...]) -> bytes:
    out = bytearray(struct.pack(">H", len(values)))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(value, str):
            data = value.encode()
            out += b"t" + struct.pack(">i", len(data)) + data
        else:
            assert isinstance(value, bytes)
            out += b"b" + struct.pack(">i", len(value)) + value
    return bytes(out)


column_values = st.one_of(
    st.none(), st.just(UNCHANGED_TOAST), st.text(max_size=40), st.binary(max_size=40)
)  # fmt: skip
tuples = st.lists(column_values, max_size=12).map(tuple)
xids = st.one_of(st.none(), st.integers(min_value=0, max_value=2**32 - 1))
oids = st.integers(min_value=0, max_value=2**32 - 1)


def xid_prefix(xid: int | None) -> bytes:
    return b"" if xid is None else struct.pack(">I", xid)


@settings(max_examples=300, deadline=None, database=None)
@given(xid=xids, relation_oid=oids, new=tuples)
def test_insert_round_trip(xid: int | None, relation_oid: int, new: tuple[ColumnValue, ...]) -> None:
    payload = b"I" + xid_prefix(xid) + struct.pack(">I", relation_oid) + b"N" + encode_tuple(new)
    assert parse_message(payload, xid is not None) == Insert(xid, relation_oid, new)


@settings(max_examples=300, deadline=None, database=None)
@given(
    xid=xids,
    relation_oid=oids,
    old_kind=st.sampled_from([None, "K", "O"]),
    old=tuples,
    new=tuples,
)
def test_update_and_delete_round_trip(
    xid: int | None,
    relation_oid: int,
    old_kind: OldTupleKind | None,
    old: tuple[ColumnValue, ...],
    new: tuple[ColumnValue, ...],
) -> None:
    head = xid_prefix(xid) + struct.pack(">I", relation_oid)
    old_part = b"" if old_kind is None else old_kind.encode() + encode_tuple(old)
    update = parse_message(b"U" + head + old_part + b"N" + encode_tuple(new), xid is not None)
    assert update == Update(xid, relation_oid, old_kind, None if old_kind is None else old, new)
    if old_kind is not None:
        delete = parse_message(b"D" + head + old_part, xid is not None)
        assert delete == Delete(xid, relation_oid, old_kind, old)


names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


@settings(max_examples=200, deadline=None, database=None)
@given(
    xid=xids,
    relation_oid=oids,
    namespace=names,
    name=names,
    replica_identity=st.sampled_from("dnfi"),
    columns=st.lists(
        st.builds(
            RelationColumn,
            name=names,
            type_oid=oids,
            typmod=st.integers(min_value=-(2**31), max_value=2**31 - 1),
            is_key=st.booleans(),
        ),
        max_size=8,
    ),
)
def test_relation_round_trip(
    xid: int | None,
    relation_oid: int,
    namespace: str,
    name: str,
    replica_identity: str,
    columns: list[RelationColumn],
) -> None:
    payload = bytearray(b"R" + xid_prefix(xid) + struct.pack(">I", relation_oid))
    payload += namespace.encode() + b"\x00" + name.encode() + b"\x00" + replica_identity.encode()
    payload += struct.pack(">H", len(columns))
    for column in columns:
        payload += bytes([int(column.is_key)]) + column.name.encode() + b"\x00"
        payload += struct.pack(">Ii", column.type_oid, column.typmod)
    assert parse_message(bytes(payload), xid is not None) == Relation(
        xid, relation_oid, namespace, name, replica_identity, tuple(columns)
    )


@settings(max_examples=200, deadline=None, database=None)
@given(
    xid=xids,
    relation_oids=st.lists(oids, max_size=6),
    options=st.integers(min_value=0, max_value=3),
    prefix=names,
    content=st.binary(max_size=64),
    transactional=st.booleans(),
    lsn=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_truncate_and_message_round_trip(
    xid: int | None,
    relation_oids: list[int],
    options: int,
    prefix: str,
    content: bytes,
    transactional: bool,
    lsn: int,
) -> None:
    truncate = (
        b"T" + xid_prefix(xid) + struct.pack(f">IB{len(relation_oids)}I", len(relation_oids), options, *relation_oids)
    )
    assert parse_message(truncate, xid is not None) == Truncate(
        xid, tuple(relation_oids), cascade=bool(options & 1), restart_identity=bool(options & 2)
    )
    message = (
        b"M"
        + xid_prefix(xid)
        + struct.pack(">BQ", int(transactional), lsn)
        + prefix.encode()
        + b"\x00"
        + struct.pack(">I", len(content))
        + content
    )
    assert parse_message(message, xid is not None) == LogicalMessage(xid, transactional, lsn, prefix, content)


@settings(max_examples=200, deadline=None, database=None)
@given(
    lsn=st.integers(min_value=0, max_value=2**64 - 1),
    end_lsn=st.integers(min_value=0, max_value=2**64 - 1),
    ts=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    xid=st.integers(min_value=0, max_value=2**32 - 1),
    flags=st.integers(min_value=0, max_value=255),
)
def test_transaction_boundaries_round_trip(lsn: int, end_lsn: int, ts: int, xid: int, flags: int) -> None:
    ms = ts // 1000 + PG_EPOCH_UNIX_MS
    assert parse_message(b"B" + struct.pack(">QqI", lsn, ts, xid), False) == Begin(lsn, ts, ms, xid)
    assert parse_message(b"C" + struct.pack(">BQQq", flags, lsn, end_lsn, ts), False) == Commit(
        flags, lsn, end_lsn, ts, ms
    )
    assert parse_message(b"c" + struct.pack(">IBQQq", xid, flags, lsn, end_lsn, ts), False) == StreamCommit(
        xid, flags, lsn, end_lsn, ts, ms
    )
    assert parse_message(b"S" + struct.pack(">IB", xid, 1), True) == StreamStart(xid, True)
    assert parse_message(b"A" + struct.pack(">II", xid, xid), False) == StreamAbort(xid, xid)
