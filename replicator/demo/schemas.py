"""Load the demo schemas and seed data (`schemas/prestashop.sql`, `schemas/odoo.sql`) into empty databases.

The SQL files live in `schemas/` at the repository root (they are not package data). The shop file is MariaDB
SQL executed one statement at a time over PyMySQL; the ERP file is PostgreSQL SQL executed in one transaction
over psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pymysql

SHOP_SCHEMA_FILE = "prestashop.sql"
ERP_SCHEMA_FILE = "odoo.sql"
SHOP_REPLICATOR_FILE = "prestashop-replicator.sql"  # the mirror tables of the stock flow


def schemas_dir() -> Path:
    """The repository's `schemas/` folder."""
    return Path(__file__).resolve().parents[2] / "schemas"


def schema_path(file_name: str) -> Path:
    """The path of one SQL file in `schemas/`; FileNotFoundError naming the path if it is missing."""
    path = schemas_dir() / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"demo schema file not found: {path} (the SQL files are read from the repository's schemas/ folder, "
            "they are not installed with the package)"
        )
    return path


def split_sql_statements(sql: str) -> list[str]:
    """Split MariaDB SQL text on `;` outside quotes and comments.

    Understands '...' and "..." strings (with backslash escapes and doubled quotes), `...` identifiers,
    `-- ` and `#` line comments and `/* */` block comments. Comments are dropped; empty statements are skipped.
    """
    statements: list[str] = []
    current: list[str] = []
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"', "`"):
            end = _end_of_quoted(sql, i)
            current.append(sql[i:end])
            i = end
        elif ch == "#" or (sql.startswith("--", i) and (i + 2 >= n or sql[i + 2].isspace())):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            if close < 0:
                raise ValueError(f"unterminated /* comment starting at offset {i}")
            current.append(" ")
            i = close + 2
        elif ch == ";":
            _flush(current, statements)
            i += 1
        else:
            current.append(ch)
            i += 1
    _flush(current, statements)
    return statements


def _end_of_quoted(sql: str, start: int) -> int:
    """The offset just past the quoted string or identifier that starts at `start`."""
    quote = sql[start]
    i = start + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "\\" and quote != "`":
            i += 2
        elif ch == quote:
            if i + 1 < n and sql[i + 1] == quote:  # doubled quote: an escaped quote character
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise ValueError(f"unterminated {quote} quote starting at offset {start}")


def _flush(current: list[str], statements: list[str]) -> None:
    statement = "".join(current).strip()
    current.clear()
    if statement:
        statements.append(statement)


def load_shop_schema(connection: pymysql.connections.Connection[Any], *, replicator_tables: bool = False) -> int:
    """Create the PrestaShop tables and seed data in the connection's current database, and with
    `replicator_tables` the tables the prestashop-odoo mappings keep there (stock mirrors).

    The database must be empty (utf8mb4). Returns the number of statements executed.
    """
    statements = split_sql_statements(schema_path(SHOP_SCHEMA_FILE).read_text(encoding="utf-8"))
    if replicator_tables:
        statements += split_sql_statements(schema_path(SHOP_REPLICATOR_FILE).read_text(encoding="utf-8"))
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.commit()
    return len(statements)


def load_erp_schema(connection: psycopg.Connection[Any]) -> None:
    """Create the Odoo tables and seed data in the connection's database, in one transaction.

    The database must be empty. Works with and without autocommit.
    """
    sql = schema_path(ERP_SCHEMA_FILE).read_text(encoding="utf-8")
    with connection.transaction():
        # No parameters: psycopg sends the text as is, several statements in one simple query.
        connection.execute(sql.encode("utf-8"))
