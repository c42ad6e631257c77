"""Kafka topic names (DESIGN.md 3.2). Pure: no I/O.

Names are checked against what Kafka accepts (ASCII letters, digits, '.', '_', '-'; at most 249
characters; not '.' or '..') and refused with a ValueError that names the offending part, instead of
being rewritten: a silently renamed topic would split one table's changes from what consumers
subscribe to.
"""

from __future__ import annotations

import re
from typing import Final

DLQ_TOPIC: Final = "replicator.dlq"
AUDIT_TOPIC: Final = "replicator.audit"

MAX_TOPIC_LENGTH: Final = 249
_LEGAL_PART = re.compile(r"[a-zA-Z0-9._-]+")


def _checked_part(what: str, part: str) -> str:
    if not part:
        raise ValueError(f"{what} is empty; a topic name needs it")
    if _LEGAL_PART.fullmatch(part) is None:
        bad = sorted({ch for ch in part if _LEGAL_PART.fullmatch(ch) is None})
        raise ValueError(
            f"{what} {part!r} has characters Kafka does not allow in topic names: "
            f"{''.join(bad)!r} (allowed: ASCII letters, digits, '.', '_', '-')"
        )
    return part


def _checked_topic(topic: str) -> str:
    if topic in (".", ".."):
        raise ValueError(f"topic name {topic!r} is reserved by Kafka")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic name {topic!r} is {len(topic)} characters long; Kafka allows {MAX_TOPIC_LENGTH}")
    return topic


def validate_topic(topic: str) -> str:
    """Return `topic` unchanged if Kafka accepts it as a topic name, else raise ValueError."""
    return _checked_topic(_checked_part("topic name", topic))


def table_topic(source_name: str, namespace: str, table: str) -> str:
    """`<source name>.<schema or database>.<table>`: one topic per captured table."""
    return _checked_topic(
        f"{_checked_part('source name', source_name)}."
        f"{_checked_part('schema/database', namespace)}."
        f"{_checked_part('table', table)}"
    )


def transaction_topic(source_name: str) -> str:
    """`<source name>.transaction`: BEGIN/END markers of each source transaction."""
    return _checked_topic(f"{_checked_part('source name', source_name)}.transaction")


def offsets_topic(source_name: str) -> str:
    """`<source name>.offsets` (compacted): a source's stored position, e.g. the MariaDB GTID."""
    return _checked_topic(f"{_checked_part('source name', source_name)}.offsets")
