"""The compiled insert decoder (capture/postgres/inserts.py) against the general path it short-cuts:
pgoutput.parse_message, then each column's decoder. Same values, same key, or None (never an error)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.postgres.inserts import compile_insert_decoder
from replicator.capture.postgres.pgoutput import Insert, Relation, StreamStart, StreamStop, parse_message
from replicator.capture.postgres.types import Decoder, make_decoder, make_relation_decoders
from replicator.events import Row

DATA = Path(__file__).parent / "data" / "pgoutput"


def _recorded(name: str) -> list[Any]:
    out = []
    in_stream = False
    for line in (DATA / name).read_text(encoding="ascii").splitlines():
        payload = bytes.fromhex(json.loads(line)["hex"])
        message = parse_message(payload, in_stream)
        in_stream = isinstance(message, StreamStart) or (in_stream and not isinstance(message, StreamStop))
        out.append((payload, in_stream, message))
    return out


def _general(columns: list[str], decoders: list[Decoder], keys: list[int], payload: bytes) -> tuple[Row, Row]:
    insert = parse_message(payload, False)
    assert isinstance(insert, Insert)
    row = {n: None if v is None else d(v) for n, d, v in zip(columns, decoders, insert.new, strict=True)}
    return {columns[i]: row[columns[i]] for i in keys}, row


def test_recorded_inserts_decode_as_the_general_path_does() -> None:
    recorded = _recorded("v1.jsonl")
    names = {m.type_oid: m.name for _, _, m in recorded if type(m).__name__ == "TypeDefinition"}
    mood = next(oid for oid, name in names.items() if name == "mood")
    mood_array = next(oid for oid, name in names.items() if name == "_mood")
    relations: dict[int, tuple[list[str], list[Decoder], list[int]]] = {}
    compiled = {}
    checked = 0
    for payload, in_stream, message in recorded:
        if isinstance(message, Relation) and message.name != "unsupported_money":
            decoders = list(
                make_relation_decoders(message, enum_oids=frozenset({mood}), array_element_oids={mood_array: mood})
            )
            columns = [c.name for c in message.columns]
            keys = [i for i, c in enumerate(message.columns) if c.is_key]
            relations[message.relation_oid] = (columns, decoders, keys)
            compiled[message.relation_oid] = compile_insert_decoder(columns, decoders, keys)
        elif isinstance(message, Insert) and not in_stream and message.relation_oid in compiled:
            assert compiled[message.relation_oid](payload) == _general(*relations[message.relation_oid], payload)
            checked += 1
    assert checked >= 5


COLUMNS = ["id", "qty", "sku", "price", "created_at"]
DECODERS = [make_decoder(23, -1), make_decoder(20, -1), make_decoder(1043, 44), make_decoder(1700, 655366),
            make_decoder(1184, -1)]


def _payload(values: list[str | None], *, count: int | None = None, marker: bytes = b"N", oid: int = 16384) -> bytes:
    """A pgoutput Insert message of relation `oid` with these text values (None: a null)."""
    out = b"I" + struct.pack(">I", oid) + marker + struct.pack(">H", len(values) if count is None else count)
    for value in values:
        if value is None:
            out += b"n"
        else:
            data = value.encode()
            out += b"t" + struct.pack(">i", len(data)) + data
    return out


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_row = st.tuples(
    st.integers(-(2**31), 2**31 - 1).map(str),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1).map(str)),
    st.one_of(st.none(), _text),
    st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)),
    st.one_of(
        st.none(),
        st.datetimes().map(lambda d: d.isoformat(sep=" ") + "+00"),
        st.sampled_from(["infinity", "-infinity", "2024-02-29 23:59:59.5-08", "0044-03-15 12:00:00+00 BC"]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_row)
def test_generated_rows_decode_as_the_general_path_does(values: tuple[str | None, ...]) -> None:
    decode = compile_insert_decoder(COLUMNS, DECODERS, [0])
    payload = _payload(list(values))
    assert decode(payload) == _general(COLUMNS, DECODERS, [0], payload)


def test_a_composite_key_comes_in_key_order() -> None:
    decode = compile_insert_decoder(COLUMNS, DECODERS, [2, 0])
    decoded = decode(_payload(["7", "1", "a", "1.00", None]))
    assert decoded is not None
    assert list(decoded[0].items()) == [("sku", "a"), ("id", 7)]


@pytest.mark.parametrize(
    "payload",
    [
        _payload(["1", "2", "a", "1.00", None])[:-1],  # truncated
        _payload(["1", "2", "a", "1.00", None]) + b"n",  # trailing byte
        _payload(["1", "2", "a", "1.00"], count=4),  # another column count
        _payload(["1", "2", "a", "1.00", None], count=261),
        _payload(["1", "2", "a", "1.00", None], marker=b"K"),
        _payload(["1", "2", "a", "1.00", None]).replace(b"n", b"u"),  # unchanged TOAST: not in an insert
        _payload(["x", "2", "a", "1.00", None]),  # not an integer: the general path reports it
        _payload(["1", "2", "a", "1.00", "not a time"]),
        _payload(["1", "2", "ab", "1.00", None]).replace(b"ab", b"a\xff"),  # not UTF-8
        _payload(["1", "2", "a", "1.00", None])[:8],
        b"I",
    ],
)
def test_anything_unusual_is_left_to_the_general_path(payload: bytes) -> None:
    assert compile_insert_decoder(COLUMNS, DECODERS, [0])(payload) is None


def test_column_names_are_literals_not_code() -> None:
    names = ["a'b", 'c"d', "e\\f", "g\nh"]
    decoders = [make_decoder(25, -1)] * 4
    assert compile_insert_decoder(names, decoders, [3])(_payload(["1", "2", "3", "4"])) == (
        {"g\nh": "4"},
        {"a'b": "1", 'c"d': "2", "e\\f": "3", "g\nh": "4"},
    )
