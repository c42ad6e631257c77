"""Record what mysql-replication yields for every MariaDB column type, for the offline type tests.

Starts a throwaway MariaDB (10.11) server in a temporary folder, creates one table per type family,
writes rows covering ordinary values, extremes, NULLs, zero dates and empty sets, then reads them back
from the binlog with pymysqlreplication (blocking=True with our own stop condition: non-blocking reads
lose events on 10.11, see notes/change-log-readers.md) and stores:

- the column metadata of each table map (pymysqlreplication `Column.data` plus nullability),
- each row's raw Python values as type-tagged JSON (no pickle), with `none_sources`,
- what the server itself computes for the same rows (`expected_sql`): epoch days/µs, decimal text,
  the hex of BIT values, SET text, ... so the decoder can be checked against the server, not only
  against literals written by hand.

The server runs with `--default-time-zone=+02:00` so the recording shows that TIMESTAMP values come
out of the binlog as UTC whatever the server's zone.

Run from the repository root:
    .venv/bin/python tests/unit/data/mariadb/record.py [--out tests/unit/data/mariadb/rows.json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import decimal
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

PORT = 53999
DATABASE = "typesdb"
SERVER_TIME_ZONE = "+02:00"

# One table per family keeps each table map small and the fixture readable.
TABLES: dict[str, str] = {
    "ints": """
        id INT PRIMARY KEY,
        ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
        mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
        bi BIGINT, biu BIGINT UNSIGNED, b BOOL
    """,
    "numbers": """
        id INT PRIMARY KEY,
        d20_6 DECIMAL(20,6), d10_0 DECIMAL(10,0), d65_30 DECIMAL(65,30), d5_2u DECIMAL(5,2) UNSIGNED,
        f FLOAT, d DOUBLE
    """,
    "strings": """
        id INT PRIMARY KEY,
        c CHAR(10), vc VARCHAR(100), tt TINYTEXT, t TEXT, mt MEDIUMTEXT, lt LONGTEXT,
        vc_latin1 VARCHAR(20) CHARACTER SET latin1, c_latin1 CHAR(5) CHARACTER SET latin1,
        vc_long VARCHAR(300)
    """,
    "binaries": """
        id INT PRIMARY KEY,
        bin4 BINARY(4), vb VARBINARY(20), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB
    """,
    "temporals": """
        id INT PRIMARY KEY,
        d DATE, dt0 DATETIME, dt1 DATETIME(1), dt3 DATETIME(3), dt4 DATETIME(4), dt6 DATETIME(6),
        ts0 TIMESTAMP NULL DEFAULT NULL, ts3 TIMESTAMP(3) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
        tm0 TIME, tm3 TIME(3), tm6 TIME(6), yr YEAR
    """,
    "zero_dates": """
        id INT PRIMARY KEY,
        d DATE NULL, dt0 DATETIME NULL, dt6 DATETIME(6) NULL, ts0 TIMESTAMP NULL DEFAULT NULL,
        nn_d DATE NOT NULL, nn_dt3 DATETIME(3) NOT NULL, nn_dt6 DATETIME(6) NOT NULL,
        nn_ts0 TIMESTAMP NOT NULL DEFAULT '2001-01-01 00:00:00',
        nn_ts6 TIMESTAMP(6) NOT NULL DEFAULT '2001-01-01 00:00:00'
    """,
    "enums": """
        id INT PRIMARY KEY,
        en ENUM('small','medium','large'), st SET('a','b','c','d'),
        nn_st SET('x','y') NOT NULL DEFAULT '', en_utf8 ENUM('café','naïve','😀'), st_big SET(
            'm01','m02','m03','m04','m05','m06','m07','m08','m09','m10','m11','m12','m13','m14','m15','m16',
            'm17','m18','m19','m20','m21','m22','m23','m24','m25','m26','m27','m28','m29','m30','m31','m32',
            'm33','m34','m35','m36','m37','m38','m39','m40','m41','m42','m43','m44','m45','m46','m47','m48',
            'm49','m50','m51','m52','m53','m54','m55','m56','m57','m58','m59','m60','m61','m62','m63','m64')
    """,
    "jsons": """
        id INT PRIMARY KEY,
        js JSON
    """,
    "bits": """
        id INT PRIMARY KEY,
        b1 BIT(1), b5 BIT(5), b8 BIT(8), b12 BIT(12), b16 BIT(16), b64 BIT(64)
    """,
}

EMOJI_TEXT = "héllo 😀🎉"

# The statements whose rows we record. sql_mode is relaxed only where zero dates and the invalid
# ENUM value need it; everything else runs under the server's default (strict) mode.
INSERTS: list[tuple[str, str]] = [
    (
        "",
        "INSERT INTO ints VALUES "
        "(1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, TRUE),"
        "(2, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,"
        " -9223372036854775808, 18446744073709551615, FALSE),"
        "(3, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 9223372036854775808, 5),"
        "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    ),
    (
        "",
        "INSERT INTO numbers VALUES "
        "(1, 12345678901234.123456, 42, 1.5, 999.99, 1.1, 3.141592653589793),"
        "(2, -0.05, -9999999999, -12345678901234567890123456789012345.123456789012345678901234567890,"
        " 0.00, -3.4028234e38, 2.2250738585072014e-308),"
        "(3, 0, 0, 0.000000000000000000000000000001, 0.01, 16777217, -1e308),"
        "(4, NULL, NULL, NULL, NULL, NULL, NULL),"
        "(5, -1.5, 1, -0.000000000000000000000000000001, 0, 0.1, 0.1)",
    ),
    (
        "",
        "INSERT INTO strings VALUES "
        f"(1, 'abc', 'plain', 'tiny', '{EMOJI_TEXT}', 'medium', 'long', 'café', 'naïf', REPEAT('x', 300)),"
        "(2, 'pad  ', '  lead and trail  ', '', 'line1\\nline2\\ttab', 'quote \\' \" back\\\\slash', "
        "'日本語テキスト', 'ÆØÅ¿', '', ''),"
        "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
        "(4, 'gone', 'deleted below', NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    ),
    (
        "",
        "INSERT INTO binaries VALUES "
        "(1, X'0102', X'00FF10', X'DEADBEEF', X'', X'00', X'CAFEBABE'),"
        "(2, X'01020304', X'', X'00000000', X'FFFFFFFFFF', X'7F', X'80'),"
        "(3, NULL, NULL, NULL, NULL, NULL, NULL),"
        "(4, X'', X'00', X'', X'00', X'', X'')",
    ),
    (
        "",
        "INSERT INTO temporals VALUES "
        "(1, '2024-03-10', '2024-03-10 12:34:56', '2024-03-10 12:34:56.7', '2024-03-10 12:34:56.789',"
        " '2024-03-10 12:34:56.7891', '2024-03-10 12:34:56.789123',"
        " '2024-03-10 12:00:00', '2024-03-10 12:00:00.123', '2024-03-10 12:00:00.123456',"
        " '12:34:56', '12:34:56.789', '12:34:56.789123', 2024),"
        "(2, '1000-01-01', '1000-01-01 00:00:00', '1969-12-31 23:59:59.9', '1969-12-31 23:59:59.999',"
        " '1969-12-31 23:59:59.9999', '1969-12-31 23:59:59.999999',"
        " '1970-01-01 02:00:01', '1970-01-01 02:00:01.001', '1970-01-01 02:00:01.000001',"
        " '-838:59:59', '-00:00:01.5', '-12:30:45.123456', 1901),"
        "(3, '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.9', '9999-12-31 23:59:59.999',"
        " '9999-12-31 23:59:59.9999', '9999-12-31 23:59:59.999999',"
        " '2038-01-19 05:14:07', '2038-01-19 05:14:07.999', '2038-01-19 05:14:07.999999',"
        " '838:59:59', '00:00:00.001', '00:00:00.000001', 2155),"
        "(4, '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00.0', '1970-01-01 00:00:00.000',"
        " '1970-01-01 00:00:00.0000', '1970-01-01 00:00:00.000000',"
        " '2024-07-01 02:00:00', '2024-07-01 02:00:00.100', '2024-07-01 02:00:00.100000',"
        " '00:00:00', '-00:00:00.001', '-00:00:00.000001', 0),"
        "(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
        # Years below 100 show Debezium's two-digit-year adjuster (enable.time.adjuster=true).
        "(6, '0050-05-05', '0069-12-31 23:59:59', '0070-01-01 00:00:00.5', '0099-02-28 12:00:00.001',"
        " '0001-01-01 00:00:00.0001', '0072-02-29 00:00:00.000001',"
        " NULL, NULL, NULL, '00:00:00', '00:00:00', '00:00:00', 1999)",
    ),
    (
        "NO_ENGINE_SUBSTITUTION",
        "INSERT INTO zero_dates VALUES "
        "(1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00',"
        " '0000-00-00', '0000-00-00 00:00:00.000', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00',"
        " '0000-00-00 00:00:00.000000'),"
        "(2, '2024-00-10', '2024-00-10 10:00:00', '2024-01-00 00:00:00.5', NULL,"
        " '0000-01-01', '2024-00-10 10:00:00.250', '0000-01-01 00:00:00.000001', '2001-01-01 00:00:00',"
        " '2001-01-01 00:00:00'),"
        "(3, NULL, NULL, NULL, NULL, '2024-02-29', '2024-02-29 23:59:59.999', '2024-02-29 23:59:59.999999',"
        " '2024-02-29 10:00:00', '2024-02-29 10:00:00.5')",
    ),
    (
        "NO_ENGINE_SUBSTITUTION",
        "INSERT INTO enums VALUES "
        "(1, 'medium', 'c,a', 'y,x', 'naïve', 'm64,m01,m33'),"
        "(2, 'large', '', '', '😀', ''),"
        "(3, 'not-a-member', 'd,b,c,a', 'x', 'café', 'm32'),"
        "(4, NULL, NULL, '', NULL, NULL)",
    ),
    (
        "",
        "INSERT INTO jsons VALUES "
        '(1, \'{"a": 1, "b": [true, null, "x"], "nested": {"k": "v"}}\'),'
        "(2, '[1, 2.5, \"три\", {\"emoji\": \"😀\"}]'),"
        "(3, '\"just a string\"'),"
        "(4, '12345678901234567890'),"
        "(5, '{}'),"
        "(6, NULL)",
    ),
    (
        "",
        "INSERT INTO bits VALUES "
        "(1, b'1', b'10101', b'10000001', b'101000000001', b'0000000100000010', b'1'),"
        "(2, b'0', b'00000', b'00000000', b'000000000000', b'1111111111111111',"
        " b'1000000000000000000000000000000000000000000000000000000000000000'),"
        "(3, NULL, NULL, NULL, NULL, NULL, NULL)",
    ),
]

# Row changes that are not inserts, so the fixture also shows update/delete row shapes.
OTHER_CHANGES = [
    "UPDATE numbers SET d20_6 = d20_6 + 1, f = 2.5 WHERE id = 1",
    "DELETE FROM strings WHERE id = 4",
]

# SQL that makes the server compute, per column, the value Debezium's encoding must equal.
# `{c}` is the column. Session time zone is UTC when these run.
EXPECTED_SQL: dict[str, dict[str, str]] = {
    "ints": {c: "{c}" for c in ["ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "b"]},
    "numbers": {
        **{c: "CAST({c} AS CHAR)" for c in ["d20_6", "d10_0", "d65_30", "d5_2u"]},
        "f": "CAST({c} AS CHAR)",
        "d": "CAST({c} AS CHAR)",
    },
    "strings": {c: "HEX(CONVERT({c} USING utf8mb4))" for c in
                ["c", "vc", "tt", "t", "mt", "lt", "vc_latin1", "c_latin1", "vc_long"]},
    "binaries": {c: "HEX({c})" for c in ["bin4", "vb", "tb", "bl", "mb", "lb"]},
    "temporals": {
        "d": "DATEDIFF({c}, '1970-01-01')",
        **{c: "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {c})"
           for c in ["dt0", "dt1", "dt3", "dt4", "dt6"]},
        **{c: "DATE_FORMAT({c}, '%Y-%m-%dT%H:%i:%s.%f')" for c in ["ts0", "ts3", "ts6"]},
        **{c: "CAST(TIME_TO_SEC({c}) * 1000000 AS DECIMAL(30,0))" for c in ["tm0", "tm3", "tm6"]},
        "yr": "{c} + 0",
    },
    "zero_dates": {c: "CAST({c} AS CHAR)" for c in
                   ["d", "dt0", "dt6", "ts0", "nn_d", "nn_dt3", "nn_dt6", "nn_ts0", "nn_ts6"]},
    "enums": {c: "CAST({c} AS CHAR)" for c in ["en", "st", "nn_st", "en_utf8", "st_big"]},
    "jsons": {"js": "{c}"},
    "bits": {c: "HEX({c})" for c in ["b1", "b5", "b8", "b12", "b16", "b64"]},
}


def tag(value: Any) -> dict[str, Any]:
    """A JSON-safe, type-tagged form of one raw value, reversible by the tests' loader."""
    if value is None:
        return {"type": "none"}
    if isinstance(value, bool):
        return {"type": "bool", "value": value}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float):
        return {"type": "float", "value": value.hex()}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, str):
        return {"type": "str", "value": value}
    if isinstance(value, bytes):
        return {"type": "bytes", "value": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"type": "timedelta", "days": value.days, "seconds": value.seconds,
                "microseconds": value.microseconds}
    if isinstance(value, set):
        return {"type": "set", "value": sorted(value)}
    if isinstance(value, dict | list):
        return {"type": "json", "value": value}
    raise TypeError(f"no tag for {type(value).__name__}: {value!r}")


@contextlib.contextmanager
def throwaway_server(work: Path) -> Iterator[dict[str, Any]]:
    """Start our own mariadbd on PORT in `work`; stop it (and only it) on exit."""
    datadir = work / "data"
    socket = work / "mariadb.sock"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    log = (work / "mariadbd.log").open("wb")
    server = subprocess.Popen(
        ["/usr/sbin/mariadbd", "--no-defaults", "--user=root", f"--datadir={datadir}",
         f"--socket={socket}", f"--port={PORT}", "--bind-address=127.0.0.1",
         f"--log-bin={work / 'binlog'}", "--binlog-format=ROW", "--binlog-row-image=FULL",
         "--binlog-row-metadata=FULL", "--server-id=1", f"--default-time-zone={SERVER_TIME_ZONE}",
         "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
         f"--pid-file={work / 'mariadbd.pid'}"],
        stdout=log, stderr=log,
    )
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": PORT, "user": "root", "passwd": ""}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                pymysql.connect(**settings).close()
                break
            except pymysql.err.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not start; see {work / 'mariadbd.log'}") from None
                time.sleep(0.2)
        yield settings
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def connect(settings: dict[str, Any], database: str | None = None) -> pymysql.Connection[Any]:
    return pymysql.connect(host=settings["host"], port=settings["port"], user=settings["user"],
                           password=settings["passwd"], database=database, charset="utf8mb4",
                           autocommit=True)


def write_rows(settings: dict[str, Any]) -> str:
    """Create the tables, write the rows; return the GTID of the last transaction."""
    with contextlib.closing(connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE {DATABASE}")
        for table, columns in TABLES.items():
            cur.execute(f"CREATE TABLE {table} ({columns}) ENGINE=InnoDB")
        default_mode = conn.cursor()
        default_mode.execute("SELECT @@SESSION.sql_mode")
        (strict_mode,) = default_mode.fetchone() or ("",)
        for sql_mode, statement in INSERTS:
            cur.execute("SET SESSION sql_mode = %s", (sql_mode or strict_mode,))
            cur.execute(statement)
        cur.execute("SET SESSION sql_mode = %s", (strict_mode,))
        for statement in OTHER_CHANGES:
            cur.execute(statement)
        cur.execute("SELECT @@gtid_binlog_pos")
        row = cur.fetchone()
        assert row is not None
        return str(row[0])


def server_expectations(settings: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per table, per primary key, the server-computed expectation of each column (after all changes)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    with contextlib.closing(connect(settings, DATABASE)) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        for table, columns in EXPECTED_SQL.items():
            names = list(columns)
            select = ", ".join(columns[c].format(c=c) for c in names)
            cur.execute(f"SELECT id, {select} FROM {table} ORDER BY id")
            result[table] = {
                str(row[0]): {name: (str(value) if isinstance(value, decimal.Decimal) else value)
                              for name, value in zip(names, row[1:], strict=True)}
                for row in cur.fetchall()
            }
        cur.execute("SELECT VERSION()")
        version_row = cur.fetchone()
        result["_server"] = {"version": {"value": version_row[0] if version_row else None}}
    return result


def read_binlog(settings: dict[str, Any], last_gtid: str) -> dict[str, Any]:
    """Read every row change of DATABASE from the binlog start until the XID of `last_gtid`."""
    stream = BinLogStreamReader(
        connection_settings=settings, server_id=4242, is_mariadb=True, blocking=True,
        resume_stream=False,
        only_events=[MariadbGtidEvent, XidEvent, TableMapEvent, WriteRowsEvent, UpdateRowsEvent,
                     DeleteRowsEvent],
        only_schemas=[DATABASE],
    )
    tables: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    current_gtid = ""
    try:
        for event in stream:
            if isinstance(event, MariadbGtidEvent):
                current_gtid = event.gtid
            elif isinstance(event, TableMapEvent):
                nullable = [
                    bool(event.null_bitmask[i // 8] & (1 << (i % 8))) for i in range(event.column_count)
                ]
                tables[event.table] = {
                    "columns": [
                        {**column.data, "nullable": nullable[index]}
                        for index, column in enumerate(event.columns)
                    ],
                    "primary_key": [c.name for c in event.columns if c.is_primary],
                }
            elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                kind = {WriteRowsEvent: "insert", UpdateRowsEvent: "update", DeleteRowsEvent: "delete"}[
                    type(event)
                ]
                rows = []
                for row in event.rows:
                    rows.append({
                        key: ({name: tag(value) for name, value in part.items()}
                              if key.endswith("values") else part)
                        for key, part in row.items()
                    })
                events.append({
                    "kind": kind, "table": event.table, "gtid": current_gtid,
                    "log_file": stream.log_file, "log_pos": event.packet.log_pos,
                    "timestamp": event.timestamp, "server_id": event.packet.server_id,
                    "rows": rows,
                })
            elif isinstance(event, XidEvent) and current_gtid == last_gtid:
                break
    finally:
        stream.close()
    return {"tables": tables, "events": events}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("rows.json"))
    parser.add_argument("--keep", action="store_true", help="keep the server's temporary folder")
    args = parser.parse_args()
    if shutil.which("mariadb-install-db") is None:
        print("mariadb-install-db not found", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="record-mariadb-"))
    try:
        with throwaway_server(work) as settings:
            last_gtid = write_rows(settings)
            recorded = read_binlog(settings, last_gtid)
            expected = server_expectations(settings)
        fixture = {
            "about": "Raw pymysqlreplication values per MariaDB column type; see record.py.",
            "server": {"version": expected.pop("_server")["version"]["value"],
                       "default_time_zone": SERVER_TIME_ZONE},
            "pymysqlreplication": _package_version("mysql-replication"),
            **recorded,
            "expected_sql": expected,
        }
        args.out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out} ({len(recorded['events'])} row events)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
