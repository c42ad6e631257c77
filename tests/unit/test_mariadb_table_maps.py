"""The MariaDB source's per-table-map decoders: one per table shape and per way the library reads it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymysqlreplication.column import Column

from replicator.capture.mariadb.rows import WRITE_ROWS_V1, decode_rows_event
from replicator.capture.mariadb.source import MariaDbCaptureSource
from replicator.config import MariaDbSourceConfig


def _column(**attrs: Any) -> Column:
    defaults = {"unsigned": False, "is_primary": False, "charset_id": None, "character_set_name": None,
                "collation_name": None, "enum_values": None, "set_values": None, "visibility": False}
    return Column(**{**defaults, **attrs})


def _table_map(table_id: int, text_length_size: int) -> Any:
    columns = [
        _column(type=3, name="id", is_primary=True),
        _column(type=252, name="body", character_set_name="utf8", length_size=text_length_size),
    ]
    return SimpleNamespace(schema="shop", table="notes", table_id=table_id, null_bitmask=b"\x02", columns=columns)


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> MariaDbCaptureSource:
    monkeypatch.setenv("TEST_MARIA_DSN", "mysql://u:p@127.0.0.1:3306/shop")
    config = MariaDbSourceConfig(
        kind="mariadb", name="shop", connection={"dsn": {"env": "TEST_MARIA_DSN"}}, tables=["shop.notes"]
    )
    return MariaDbCaptureSource(config, offsets=None)  # type: ignore[arg-type]  # no offsets needed here


def test_a_column_read_differently_gets_its_own_compiled_decoder(source: MariaDbCaptureSource) -> None:
    """TEXT and MEDIUMTEXT give equal ColumnSpecs but different length prefixes (ALTER TABLE ... MODIFY):
    the decoder compiled for one must not read the other's rows."""
    source._on_table_map(_table_map(70, 2))  # TEXT
    source._on_table_map(_table_map(71, 3))  # MEDIUMTEXT, after an ALTER: a new table id
    text, medium = source._maps[70], source._maps[71]
    assert text.decoder.columns == medium.decoder.columns
    assert text.image is not None and medium.image is not None and text.image is not medium.image
    image = b"\x00" + (1).to_bytes(4, "little") + (5).to_bytes(3, "little") + b"hello"
    body = (71).to_bytes(6, "little") + b"\x01\x00" + b"\x02\x03" + image
    packet = b"\x00" + bytes(19) + body + bytes(4)
    assert decode_rows_event(medium.image, packet, WRITE_ROWS_V1, 8, 2, len(packet) - 4) == [
        ({"id": 1}, {"id": 1, "body": "hello"}, None, None)
    ]
    # The same shape read the same way again shares the decoders.
    source._on_table_map(_table_map(72, 3))
    assert source._maps[72].image is medium.image
