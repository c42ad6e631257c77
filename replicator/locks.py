"""Names of the MariaDB named locks (GET_LOCK) that keep one applier per target and one capture per source.

A named lock belongs to the session that took it and goes when that session ends, a crash included, so the
server itself says whether the other holder is still there. Names are server-wide and at most 64 characters.
"""

from __future__ import annotations

import hashlib

_MAX_NAME = 64


def mariadb_lock_name(role: str, name: str) -> str:
    """'replicator <role> <name>', or with `name` replaced by its digest when that would be too long."""
    full = f"replicator {role} {name}"
    if len(full) <= _MAX_NAME:
        return full
    return f"replicator {role} " + hashlib.sha256(name.encode()).hexdigest()[:40]
