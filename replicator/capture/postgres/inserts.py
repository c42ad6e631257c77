"""A relation's pgoutput Insert messages straight to (key, row) dicts: the capture's fast path.

Most of a change stream is inserts, and the general path (pgoutput.parse_message -> Insert -> tuple of
str -> `_full_row`) builds three intermediate objects per row and runs a generic per-column loop.
`compile_insert_decoder` instead writes, once per Relation message, a function for that relation's
exact columns: each column's value is cut out of the payload and converted in place (integers from
the bytes, text types by decoding alone, every other type through its `types` decoder), and the row and
key are built as dict displays. The values are the very same ones the general path gives.

Anything but the plain case (NULL and text values only, as every insert is when the stream is
started without the `binary` option; the column count of the Relation; every byte used) makes the
function return None, and the caller takes the general path, which accepts or reports it exactly as
before: the fast path never raises and never decides anything the general path would decide
differently.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from replicator.capture.postgres.types import Decoder, zoned_timestamp_utc_layout
from replicator.events import Row

InsertDecoder = Callable[[bytes], "tuple[Row, Row] | None"]

# An Insert payload (protocol 1, outside a streamed transaction): 'I', relation OID (4 bytes), 'N',
# column count (2 bytes), then per column a kind byte and, for 't', a 4-byte length and the text.
_FIRST_COLUMN = 8
_NEW_TUPLE = 0x4E  # 'N'
_TEXT = 0x74  # 't'
_NULL = 0x6E  # 'n'

# Unsigned on purpose: a length can then only move the read position forward, so a payload whose
# lengths add up to exactly its size had every value inside it (the general path checks each one).
_unpack_length = struct.Struct(">I").unpack_from


def _converter(index: int, decoder: Decoder) -> str:
    """The expression turning column `index`'s text bytes (`payload[start:pos]`) into its value."""
    if decoder is int:
        return "int(payload[start:pos])"  # int() reads ASCII digits from bytes as from str
    if decoder is str:
        return "payload[start:pos].decode()"  # the identity decoder: the text is the value
    return f"d{index}(payload[start:pos].decode())"


def _text_code(index: int, decoder: Decoder) -> str:
    """The statements setting v{index} from the text bytes `payload[start:pos]`."""
    layout = zoned_timestamp_utc_layout(decoder)
    if layout is None:
        return f"v{index} = {_converter(index, decoder)}"
    # timestamptz: the decoder's common case (types.zoned_timestamp_utc_layout), the very expression it
    # evaluates, without the call; any other text goes to the decoder.
    length, cut = layout
    return f"""text = payload[start:pos].decode()
            if len(text) == {length} and text[4] == "-" and text[-3:] == "+00":
                v{index} = f"{{text[:10]}}T{{text[11:{cut}]}}Z"
            else:
                v{index} = d{index}(text)"""


def _column_code(index: int, decoder: Decoder) -> str:
    return f"""
        kind = payload[pos]
        if kind == {_TEXT}:
            start = pos + 5
            pos = start + unpack_length(payload, pos + 1)[0]
            {_text_code(index, decoder)}
        elif kind == {_NULL}:
            v{index} = None
            pos += 1
        else:
            return None"""


def compile_insert_decoder(
    columns: Sequence[str], decoders: Sequence[Decoder], key_indexes: Sequence[int]
) -> InsertDecoder:
    """The fast path for inserts of one relation: `payload` -> (key, row), or None (general path).

    `columns` and `decoders` are the Relation's, in tuple order; `key_indexes` the key's columns, in
    key order. Column names go into the code as string literals (repr), decoders as default arguments.
    Compiling takes about a millisecond for a few columns, half a second for PostgreSQL's maximum of
    1600; it happens once per Relation message (once per table and session, and after DDL).
    """
    if len(columns) != len(decoders):
        raise ValueError("one decoder per column")
    count = len(columns)
    row = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(columns))
    key = ", ".join(f"{columns[i]!r}: v{i}" for i in key_indexes)
    defaults = "".join(f", d{i}=d{i}" for i in range(count))
    body = "".join(_column_code(i, decoder) for i, decoder in enumerate(decoders))
    # Any exception means a payload or value the general path must see (and report, if it is wrong).
    source = f"""
def decode_insert(payload, unpack_length=unpack_length{defaults}):
    try:
        if payload[5] != {_NEW_TUPLE} or payload[6] != {count >> 8} or payload[7] != {count & 0xFF}:
            return None
        pos = {_FIRST_COLUMN}{body}
    except Exception:
        return None
    if pos != len(payload):
        return None
    return {{{key}}}, {{{row}}}
"""
    namespace: dict[str, Any] = {"unpack_length": _unpack_length}
    namespace.update((f"d{i}", decoder) for i, decoder in enumerate(decoders))
    exec(compile(source, f"<insert decoder: {', '.join(columns)[:200]}>", "exec"), namespace)
    decode_insert: InsertDecoder = namespace["decode_insert"]
    return decode_insert
