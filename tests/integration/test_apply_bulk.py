"""The applier's bulk writes on real servers: many rows per statement must write exactly what one statement
per row writes, and a batch of many small source transactions must end as the same rows, versions and
decisions, with a refused transaction still dead-lettered alone."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from pydantic import SecretStr

from replicator.apply.applier import Applier, UnitOutcome, version_json
from replicator.apply.dialect.base import Progress, TargetDialect
from replicator.apply.dialect.mariadb import MariaDbDialect
from replicator.apply.dialect.postgres import PostgresDialect
from replicator.apply.reassembly import Event, SourcePosition, Unit
from replicator.apply.rows import row_key_text
from replicator.config import ResolvedConnection
from replicator.conflict.policies import Outcome
from replicator.errors import RetriableError, lost_connection_errors
from replicator.mapping.engine import MappingEngine
from replicator.mapping.ops import Version
from replicator.mapping.spec import MappingSet
from tests.conftest import MariaDatabase, PgDatabase

pytestmark = pytest.mark.integration

COLUMNS = ("id", "qty", "sku", "price", "created_at")
DDL = {
    "postgresql": "CREATE TABLE {name} (id int PRIMARY KEY, qty int NOT NULL CHECK (qty > 0), sku varchar(40) "
                  "NOT NULL, price numeric(10, 2), created_at timestamp)",
    "mariadb": "CREATE TABLE {name} (id INT PRIMARY KEY, qty INT NOT NULL CHECK (qty > 0), sku VARCHAR(40) NOT NULL, "
               "price DECIMAL(10, 2), created_at DATETIME(6))",
}
PAIR_DDL = "CREATE TABLE {name} (a int NOT NULL, b varchar(10) NOT NULL, v int, PRIMARY KEY (a, b))"


@dataclass
class Target:
    kind: str
    dialect: TargetDialect
    namespace: str  # the schema (PostgreSQL) or database (MariaDB) the tables live in

    def table(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        return self.dialect.execute(f"SELECT * FROM {self.table(name)} ORDER BY 1, 2")


@pytest.fixture(params=["postgresql", "mariadb"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A connected dialect (untagged: these tests capture nothing) on a fresh database of either kind."""
    dialect: TargetDialect
    if request.param == "postgresql":
        database: PgDatabase = request.getfixturevalue("pg_database")
        parts = urlsplit(database.dsn)
        connection = ResolvedConnection(host=parts.hostname or "", port=parts.port or 5432,
                                        user=parts.username or "", password=SecretStr(parts.password or ""),
                                        database=database.name)
        dialect, namespace = PostgresDialect(connection, "unused"), "public"
    else:
        maria: MariaDatabase = request.getfixturevalue("mariadb_database")
        connection = ResolvedConnection(host=str(maria.admin["host"]), port=int(maria.admin["port"]),
                                        user=str(maria.admin["user"]), password=SecretStr(str(maria.admin["password"])),
                                        database=maria.name)
        dialect, namespace = MariaDbDialect(connection, "unused"), maria.name
    dialect.connect(tag_writes=False)
    try:
        dialect.ensure_replicator_tables()
        yield Target(request.param, dialect, namespace)
    finally:
        dialect.close()


def sample_rows(count: int, start: int = 1) -> list[tuple[Any, ...]]:
    return [
        (i, i % 7 + 1, f"SKU-{i:05d}" + ("é" if i % 5 == 0 else ""),
         None if i % 11 == 0 else Decimal(i) / 100 + Decimal("0.5"),
         datetime(2026, 11, 29, 3, i % 60, i % 60, i * 7 % 1_000_000))
        for i in range(start, start + count)
    ]


# --- the dialects' bulk statements ------------------------------------------------------------------


def test_many_rows_per_insert_write_what_one_row_per_insert_writes(target: Target,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("bulk", "single"):
        target.dialect.execute(DDL[target.kind].format(name=target.table(name)))
    if target.kind == "postgresql":
        monkeypatch.setattr(PostgresDialect, "INSERT_ROWS", 7)  # several full statements and a shorter last one
    monkeypatch.setattr(MariaDbDialect, "INSERT_CHARS", 400)  # MariaDB: several statements too
    rows = sample_rows(45)
    # Text a literal must escape, decimals with exponents, a whole-second time: written as PyMySQL writes them.
    rows[1] = (rows[1][0], 2, "it's 100% \\ \"q\" 😀", Decimal("1E+1"), datetime(2026, 1, 2, 3, 4, 5))
    rows[2] = (rows[2][0], 3, "\n\r\x1a\t", Decimal("0.0001E+2"), datetime(1000, 1, 2, 3, 4, 5, 6))
    target.dialect.begin()
    target.dialect.insert_many(target.table("bulk"), COLUMNS, rows)
    for row in rows:
        target.dialect.insert_many(target.table("single"), COLUMNS, [row])
    target.dialect.commit()
    assert target.rows("bulk") == target.rows("single")
    assert len(target.rows("bulk")) == 45


def test_a_refused_row_fails_the_whole_multi_row_insert_as_a_data_error(target: Target) -> None:
    from replicator.apply.applier import _data_error_types

    target.dialect.execute(DDL[target.kind].format(name=target.table("bulk")))
    rows = sample_rows(5)
    rows[3] = (*rows[3][:2], "x" * 41, *rows[3][3:])  # longer than the column
    target.dialect.begin()
    with pytest.raises(_data_error_types()):
        target.dialect.insert_many(target.table("bulk"), COLUMNS, rows)
    target.dialect.rollback()
    assert target.rows("bulk") == []


def test_updates_and_deletes_of_many_rows(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """MariaDB sends several UPDATE / DELETE statements per round trip: each runs as it would alone, in order,
    and the first refused one stops the rest with its error."""
    from replicator.apply.applier import _data_error_types

    monkeypatch.setattr(MariaDbDialect, "STATEMENTS_PER_TRIP", 3)
    dialect, table = target.dialect, target.table("bulk")
    dialect.execute(DDL[target.kind].format(name=table))
    dialect.insert_many(table, COLUMNS, sample_rows(10))
    dialect.begin()
    dialect.update_many(table, ("id",), ("sku", "qty"), [
        ("100% ';\" DROP", 9, 1), ("first", 8, 2), ("second", 7, 2), ("x", 6, 3), ("y", 5, 4), ("z", 4, 5),
        ("one", 1, 6),
    ])
    dialect.delete_many(table, ("id",), [(7,), (8,), (99,), (9,)])
    dialect.commit()
    rows = {r[0]: (r[1], r[2]) for r in dialect.execute(f"SELECT id, qty, sku FROM {table}")}
    assert rows == {1: (9, "100% ';\" DROP"), 2: (7, "second"), 3: (6, "x"), 4: (5, "y"), 5: (4, "z"),
                    6: (1, "one"), 10: (10 % 7 + 1, "SKU-00010é")}
    dialect.begin()
    with pytest.raises(_data_error_types()):
        dialect.update_many(table, ("id",), ("sku",), [("a", 1), ("b", 2), ("c", 3), ("x" * 41, 4), ("e", 5)])
    dialect.rollback()
    assert dialect.execute(f"SELECT sku FROM {table} WHERE id = 2") == [("second",)]


def test_row_versions_of_a_whole_batch_in_one_statement(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MariaDbDialect, "VERSION_ROWS", 2)  # MariaDB: several statements, one key in two of them
    dialect = target.dialect
    dialect.begin()
    dialect.store_row_versions("t.a", [("[1]", {"x": {"ts": 1}}), ("[2]", {"x": {"ts": 2}})])
    dialect.commit()
    dialect.begin()
    dialect.store_row_versions("t.a", [
        ("[2]", {"x": {"ts": 20, "val": "2.50"}}),  # replaces the stored one
        ("[3]", {"y": {"ts": 3, "val": None}}),
        ("[4]", {"z": {"ts": 4, "val": "é \" \\ \u2028"}}),
        ('["50%", "it\'s"]', {"p": {"ts": 5, "val": "100% 😀"}}),  # characters a statement must escape
        ("[3]", {"y": {"ts": 30, "val": "later"}}),  # twice in one batch: the last one stays
    ])
    dialect.store_row_versions("t.b", [("[1]", {"x": {"ts": 9}}), ("[2]", {"x": {"ts": 10}})])
    dialect.commit()
    assert dialect.row_versions("t.a", ["[1]", "[2]", "[3]", "[4]", "[5]", '["50%", "it\'s"]']) == {
        "[1]": {"x": {"ts": 1}},
        "[2]": {"x": {"ts": 20, "val": "2.50"}},
        "[3]": {"y": {"ts": 30, "val": "later"}},
        "[4]": {"z": {"ts": 4, "val": "é \" \\ \u2028"}},
        '["50%", "it\'s"]': {"p": {"ts": 5, "val": "100% 😀"}},
    }
    assert dialect.row_versions("t.b", ["[1]", "[2]"]) == {"[1]": {"x": {"ts": 9}}, "[2]": {"x": {"ts": 10}}}


def test_rows_read_by_long_key_lists_single_and_composite(target: Target) -> None:
    dialect = target.dialect
    dialect.execute(DDL[target.kind].format(name=target.table("bulk")))
    dialect.execute(PAIR_DDL.format(name=target.table("pair")))
    rows = sample_rows(1200)
    dialect.insert_many(target.table("bulk"), COLUMNS, rows)
    dialect.insert_many(target.table("pair"), ("a", "b", "v"), [(i, f"k{i % 3}", i) for i in range(1, 700)])
    wanted = [(i,) for i in range(0, 1300, 2)]
    found = dialect.fetch_rows(target.table("bulk"), ("id",), wanted, ("sku", "qty"))
    assert sorted(found) == [(i,) for i in range(2, 1201, 2)]
    assert found[(10,)]["sku"] == "SKU-00010é" and found[(10,)]["qty"] == 4
    pairs = dialect.fetch_rows(target.table("pair"), ("a", "b"), [(i, f"k{i % 3}") for i in range(600)]
                               + [(5, "k0")], ("v",))
    assert sorted(pairs) == [(i, f"k{i % 3}") for i in range(1, 600)]
    assert pairs[(42, "k0")]["v"] == 42
    assert dialect.natural_lookup(target.table("bulk"), ("sku",), "id",
                                  [(f"SKU-{i:05d}",) for i in (1, 2, 3, 9999)]) == {
        ("SKU-00001",): 1, ("SKU-00002",): 2, ("SKU-00003",): 3}


# --- the applier: a batch of many single-row source transactions -----------------------------------


SOURCE_OF = {"postgresql": "shop", "mariadb": "erp"}
TARGET_OF = {"postgresql": "erp", "mariadb": "shop"}


def engine_for(target: Target) -> MappingEngine:
    source = SOURCE_OF[target.kind]
    created_at: dict[str, Any] = {"from": "created_at", "cast": "datetime"}
    if source == "shop":
        created_at["unit"] = "us"
    mapping = {
        "systems": {
            "shop": {"kind": "mariadb", "priority": 2, "source_name": "shop",
                     "namespace": target.namespace if target.kind == "mariadb" else "shopdb"},
            "erp": {"kind": "postgresql", "priority": 1, "source_name": "erp", "namespace": "public"},
        },
        "rules": [{
            "name": "order_line",
            "source": {"system": source, "table": "order_line", "key": ["id"]},
            "target": {"system": TARGET_OF[target.kind], "table": "order_line"},
            "key": {"id": "id"},
            "on_delete": "hard",
            "fields": {"qty": "qty", "sku": "sku", "price": {"from": "price", "cast": "decimal", "scale": 2},
                       "created_at": created_at},
        }],
    }
    return MappingEngine(MappingSet.model_validate(mapping), target=TARGET_OF[target.kind])


def unit_for(target: Target, number: int, op: str, row: dict[str, Any], before: dict[str, Any] | None = None,
             ts_ms: int = 1_780_000_000_000) -> Unit:
    """One single-row source transaction as the capture of the other side publishes it."""
    if SOURCE_OF[target.kind] == "shop":
        tx = f"0-1-{number}"
        source = {"version": "test", "connector": "mariadb", "name": "shop", "ts_ms": ts_ms + number,
                  "snapshot": "false", "db": "shopdb", "table": "order_line", "server_id": 1, "gtid": tx, "row": 0}
        position = SourcePosition(0, number)
    else:
        tx = f"{number}:{1000 + number}"
        source = {"version": "test", "connector": "postgresql", "name": "erp", "ts_ms": ts_ms + number,
                  "snapshot": "false", "db": "erp", "schema": "public", "table": "order_line", "txId": number,
                  "lsn": 1000 + number}
        position = SourcePosition(0, 1000 + number)
    envelope = {"before": before, "after": row, "source": source, "op": op, "ts_ms": ts_ms + number,
                "transaction": {"id": tx, "total_order": 1, "data_collection_order": 1}}
    return Unit(tx, position, [Event("orders", 0, number, {"id": row["id"]}, envelope)])


def source_row(i: int, qty: int | None = None, sku: str | None = None) -> dict[str, Any]:
    created = 1_780_000_000_000_000 + i * 1_000_007  # epoch µs (MariaDB DATETIME(6))
    return {"id": i, "qty": i % 7 + 1 if qty is None else qty, "sku": sku or f"SKU-{i:05d}",
            "price": f"{i}.{i % 100:02d}", "created_at": created}


def event_row(target: Target, i: int, qty: int | None = None, sku: str | None = None) -> dict[str, Any]:
    """The source row as its capture sends it: MariaDB DATETIME(6) as epoch µs, PostgreSQL timestamptz as text."""
    row = source_row(i, qty, sku)
    if SOURCE_OF[target.kind] == "erp":
        row["created_at"] = datetime.fromtimestamp(row["created_at"] / 1e6, UTC).isoformat()
    return row


def order_line_applier(target: Target, consumer: str) -> Applier:
    """The order-line table created in the target, and an applier of the order-line rule into it."""
    target.dialect.execute(DDL[target.kind].format(name=target.table("order_line")))
    applier = Applier(target.dialect, engine_for(target).ops_for, consumer=consumer,
                      target_system=TARGET_OF[target.kind])
    applier.prepare()
    return applier


def apply(applier: Applier, units: list[Unit]) -> list[UnitOutcome]:
    return applier.apply_batch(units, ["src"] * len(units), lambda outcomes: Progress()).outcomes


def test_a_batch_of_single_row_transactions(target: Target) -> None:
    applier = order_line_applier(target, "bulk-test")

    first = [unit_for(target, i, "c", event_row(target, i)) for i in range(1, 301)]
    outcomes = apply(applier, first)
    assert all(o.dead_letter is None and len(o.decisions) == 4 for o in outcomes)
    decision = outcomes[7].decisions[0][1]
    assert decision.outcome is Outcome.APPLIED and decision.write and not decision.row_exists
    assert decision.reason.endswith("is newer than the target's unknown time")
    rows = target.rows("order_line")
    assert len(rows) == 300
    assert rows[41][:4] == (42, 42 % 7 + 1, "SKU-00042", Decimal("42.42"))
    version = outcomes[41].decisions[0][0].version
    assert isinstance(version, Version)
    stored = target.dialect.row_versions(target.table("order_line"), [row_key_text((42,))])
    assert stored[row_key_text((42,))]["sku"] == version_json(version, "SKU-00042")
    assert stored[row_key_text((42,))]["price"]["val"] == "42.42"

    # Updates of existing rows, new rows, a repeat of an applied change and a refused row in one batch: the
    # refused transaction alone is dead-lettered, the others apply, and its key is held from then on.
    second = [
        unit_for(target, 301, "u", event_row(target, 5, qty=50), before=event_row(target, 5)),
        unit_for(target, 302, "c", event_row(target, 400)),
        unit_for(target, 303, "c", event_row(target, 401, sku="x" * 41)),  # longer than the column
        unit_for(target, 304, "c", event_row(target, 402)),
        unit_for(target, 305, "u", event_row(target, 6, qty=60), before=event_row(target, 6)),
        first[9],  # an older version of row 10 than the one the target holds: changes nothing
    ]
    outcomes = apply(applier, second)
    assert [o.dead_letter is not None for o in outcomes] == [False, False, True, False, False, False]
    assert [[d.outcome for _, d in o.decisions] for o in outcomes[:2]] == [[Outcome.APPLIED], [Outcome.APPLIED] * 4]
    assert {d.outcome for _, d in outcomes[5].decisions} == {Outcome.UNCHANGED}
    quantities = dict(target.dialect.execute(f"SELECT id, qty FROM {target.table('order_line')} "
                                             "WHERE id IN (5, 6, 400, 401, 402)"))
    assert quantities == {5: 50, 6: 60, 400: 400 % 7 + 1, 402: 402 % 7 + 1}
    held = apply(applier, [unit_for(target, 306, "u", event_row(target, 401, qty=3), before=event_row(target, 401))])
    assert held[0].held_behind is not None
    with contextlib.suppress(Exception):
        target.dialect.execute("DELETE FROM replicator_dead_letter")


def test_units_that_waited_before_are_tried_one_by_one_after_the_batch_is_applied_together(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner puts units that waited for a row in an earlier batch at the end (`isolated_from`): if one fails
    again, only it is tried in a savepoint, after the others were applied in bulk; the batch does not fall back to
    applying every unit one by one."""
    applier = order_line_applier(target, "isolated-test")
    savepoints: list[str] = []
    real_savepoint = target.dialect.savepoint

    def counted(name: str) -> None:
        savepoints.append(name)
        real_savepoint(name)

    monkeypatch.setattr(target.dialect, "savepoint", counted)
    units = [unit_for(target, i, "c", event_row(target, i)) for i in range(1, 201)]
    refused = unit_for(target, 201, "c", event_row(target, 201, sku="x" * 41))  # longer than the column
    retried = unit_for(target, 202, "c", event_row(target, 202))
    outcomes = applier.apply_batch([*units, refused, retried], ["src"] * 202, lambda outcomes: Progress(),
                                   isolated_from=200).outcomes
    assert savepoints == ["u200", "u201"]
    assert [o.dead_letter is not None for o in outcomes] == [False] * 200 + [True, False]
    assert len(target.rows("order_line")) == 201

    # Without it, the refused unit makes the whole batch fall back to one savepoint per unit.
    savepoints.clear()
    more = [unit_for(target, i, "c", event_row(target, i)) for i in range(300, 310)]
    refused_again = unit_for(target, 310, "c", event_row(target, 310, sku="y" * 41))
    applier.apply_batch([*more, refused_again], ["src"] * 11, lambda outcomes: Progress())
    assert len(savepoints) == 11
    with contextlib.suppress(Exception):
        target.dialect.execute("DELETE FROM replicator_dead_letter")


# --- new rows of identified entities ----------------------------------------------------------------------

IDENTIFIED_DDL = {
    "postgresql": [
        "CREATE TABLE {ns}.prod (id serial PRIMARY KEY, code varchar(20) NOT NULL UNIQUE)",
        "CREATE TABLE {ns}.so (id serial PRIMARY KEY, name varchar(20) NOT NULL, origin varchar(20))",
        "CREATE TABLE {ns}.sol (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES {ns}.so (id), "
        "name varchar(20) NOT NULL, product_id int NOT NULL REFERENCES {ns}.prod (id))",
    ],
    "mariadb": [
        "CREATE TABLE {ns}.prod (id INT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(20) NOT NULL UNIQUE)",
        "CREATE TABLE {ns}.so (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL, origin VARCHAR(20))",
        "CREATE TABLE {ns}.sol (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT NOT NULL REFERENCES {ns}.so (id), "
        "name VARCHAR(20) NOT NULL, product_id INT NOT NULL REFERENCES {ns}.prod (id))",
    ],
}


def identified_applier(target: Target) -> Applier:
    """Products, orders and order lines, each an identified entity whose target key the target generates; a
    line refers to its order through the identity map and to its product by code (a natural look-up)."""
    for ddl in IDENTIFIED_DDL[target.kind]:
        target.dialect.execute(ddl.format(ns=target.namespace))
    source, system = SOURCE_OF[target.kind], TARGET_OF[target.kind]

    def rule(name: str, table: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "source": {"system": source, "table": name, "key": ["id"]},
                "target": {"system": system, "table": table}, "identity": name, "on_delete": "ignore",
                "fields": fields}

    mapping = MappingSet.model_validate({
        "systems": {
            "shop": {"kind": "mariadb", "priority": 2, "source_name": "shop", "namespace": "shopdb"},
            "erp": {"kind": "postgresql", "priority": 1, "source_name": "erp", "namespace": "public"},
            system: {"kind": "postgresql" if system == "erp" else "mariadb", "priority": 1 if system == "erp" else 2,
                     "source_name": system, "namespace": target.namespace},
        },
        "rules": [
            rule("product", "prod", {"code": "code"}),
            rule("order", "so", {"name": "ref", "origin": {"from": "id", "prefix": "S#"}}),
            rule("line", "sol", {"name": "name", "order_id": {"lookup": {"identity": "order", "from": "order_id"}},
                                 "product_id": {"lookup": {"table": "prod", "match": {"code": "product_code"}}}}),
        ],
    })
    applier = Applier(target.dialect, MappingEngine(mapping, target=system).ops_for, consumer="identified",
                      target_system=system)
    applier.prepare()
    return applier


def source_transaction(target: Target, number: int, changes: list[tuple[str, str, dict[str, Any]]]) -> Unit:
    """One source transaction of the other side with these (table, op, row after) changes."""
    if SOURCE_OF[target.kind] == "shop":
        tx, position = f"0-1-{number}", SourcePosition(0, number)
        block = {"connector": "mariadb", "name": "shop", "db": "shopdb", "gtid": tx, "server_id": 1}
    else:
        tx, position = f"{number}:{1000 + number}", SourcePosition(0, 1000 + number)
        block = {"connector": "postgresql", "name": "erp", "db": "erp", "schema": "public", "txId": number,
                 "lsn": 1000 + number}
    events = []
    for order, (table, op, row) in enumerate(changes, start=1):
        source = {"version": "test", "ts_ms": 1_780_000_000_000 + number, "snapshot": "false", "table": table,
                  "row": 0, **block}
        envelope = {"before": None, "after": row, "source": source, "op": op, "ts_ms": 0,
                    "transaction": {"id": tx, "total_order": order, "data_collection_order": order}}
        events.append(Event(table, 0, number * 100 + order, {"id": row["id"]}, envelope))
    return Unit(tx, position, events)


def test_new_identified_rows_of_a_batch_are_written_together_and_found_by_the_later_ops_of_the_batch(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL draws the new rows' keys from their sequences ahead (`reserve_keys`) and writes the rows and
    their identities with the batch's other writes; MariaDB inserts them one by one to learn their keys. Either
    way, an order line finds its order created earlier in the same transaction or batch (identity) and its
    product (by code), and the identity map names the rows created."""
    applier = identified_applier(target)
    returning: list[str] = []
    real_insert_returning = target.dialect.insert_returning

    def counted(table: str, row: dict[str, Any], columns: Any) -> dict[str, Any]:
        returning.append(table)
        return real_insert_returning(table, row, columns)

    monkeypatch.setattr(target.dialect, "insert_returning", counted)
    savepoints: list[str] = []
    real_savepoint = target.dialect.savepoint
    monkeypatch.setattr(target.dialect, "savepoint", lambda name: (savepoints.append(name), real_savepoint(name)))
    units = [
        source_transaction(target, 1, [("product", "c", {"id": 7, "code": "P-7"}),
                                       ("order", "c", {"id": 1, "ref": "first"}),
                                       ("line", "c", {"id": 10, "order_id": 1, "name": "a", "product_code": "P-7"}),
                                       ("line", "c", {"id": 11, "order_id": 1, "name": "b", "product_code": "P-7"})]),
        source_transaction(target, 2, [("order", "c", {"id": 2, "ref": "second"})]),
        source_transaction(target, 3, [("line", "c", {"id": 12, "order_id": 2, "name": "c", "product_code": "P-7"})]),
        source_transaction(target, 4, [("order", "u", {"id": 1, "ref": "first again"})]),
    ]
    outcomes = applier.apply_batch(units, ["src"] * len(units), lambda outcomes: Progress()).outcomes
    assert [o.dead_letter for o in outcomes] == [None] * 4
    assert savepoints == [], "the batch was applied one unit at a time: some look-up failed at first"
    ns = target.namespace
    lines = target.dialect.execute(
        f"SELECT l.name, o.name, o.origin, p.code FROM {ns}.sol l JOIN {ns}.so o ON o.id = l.order_id "
        f"JOIN {ns}.prod p ON p.id = l.product_id ORDER BY l.name")
    assert [tuple(row) for row in lines] == [("a", "first again", "S#1", "P-7"), ("b", "first again", "S#1", "P-7"),
                                             ("c", "second", "S#2", "P-7")]
    identities = {(entity, source_key): target_key for entity, source_key, target_key in target.dialect.execute(
        "SELECT entity, source_key, target_key FROM replicator_identity")}
    ids = {(table, name): row_key_text((int(key),)) for table, name, key in target.dialect.execute(
        f"SELECT 'so', name, id FROM {ns}.so UNION ALL SELECT 'sol', name, id FROM {ns}.sol "
        f"UNION ALL SELECT 'prod', code, id FROM {ns}.prod")}
    assert len(identities) == 6
    assert identities[("order", "1")] == ids[("so", "first again")]
    assert identities[("order", "2")] == ids[("so", "second")]
    assert identities[("line", "12")] == ids[("sol", "c")]
    assert identities[("product", "7")] == ids[("prod", "P-7")]
    assert [table.rsplit(".", 1)[-1] for table in returning] == (
        [] if target.kind == "postgresql" else ["prod", "so", "sol", "sol", "so", "sol"])

    # A later batch finds them in the identity map.
    more = [source_transaction(target, 5, [("line", "c", {"id": 13, "order_id": 2, "name": "d",
                                                          "product_code": "P-7"})])]
    assert applier.apply_batch(more, ["src"], lambda outcomes: Progress()).outcomes[0].dead_letter is None
    assert target.dialect.execute(f"SELECT count(*) FROM {ns}.sol WHERE order_id = "
                                  f"(SELECT id FROM {ns}.so WHERE name = 'second')")[0][0] == 2


def test_keys_are_drawn_ahead_only_from_a_sequence_the_target_lets_them_be_given_for(target: Target) -> None:
    if target.kind != "postgresql":
        assert target.dialect.reserve_keys("whatever", ("id",), 3) is None  # AUTO_INCREMENT: one by one
        return
    dialect = target.dialect
    dialect.execute("CREATE TABLE drawn (id serial PRIMARY KEY)")
    dialect.execute("CREATE TABLE drawn_by_default (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)")
    dialect.execute("CREATE TABLE never_given (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)")
    dialect.execute("CREATE TABLE given (id int PRIMARY KEY)")
    dialect.execute("CREATE TABLE pair (a serial, b int, PRIMARY KEY (a, b))")
    first = dialect.reserve_keys("public.drawn", ("id",), 3)
    assert first is not None and len(set(first)) == 3
    dialect.execute("INSERT INTO drawn DEFAULT VALUES")  # another session's insert gets none of them
    assert dialect.execute("SELECT id FROM drawn")[0] not in first
    assert dialect.reserve_keys("public.drawn_by_default", ("id",), 2) is not None
    assert dialect.reserve_keys("public.never_given", ("id",), 2) is None
    assert dialect.reserve_keys("public.given", ("id",), 2) is None
    assert dialect.reserve_keys("public.pair", ("a", "b"), 2) is None


def test_a_batch_whose_audit_records_kafka_does_not_confirm_leaves_nothing_behind(target: Target) -> None:
    # The runner publishes a batch's audit records in `before_commit` and raises when Kafka does not confirm
    # them: nothing of the batch may stay (rows, versions, progress), so that it is applied, and published,
    # again after the restart.
    applier = order_line_applier(target, "audit-test")
    units = [unit_for(target, i, "c", event_row(target, i)) for i in range(1, 11)]
    seen: list[int] = []

    def unconfirmed(outcomes: list[UnitOutcome]) -> None:
        seen.append(len(outcomes))
        raise RetriableError("3 audit records still unconfirmed by Kafka after 30s")

    def progress(outcomes: list[UnitOutcome]) -> Progress:
        return Progress(offsets={("orders", 0): 11})

    with pytest.raises(RetriableError, match="unconfirmed"):
        applier.apply_batch(units, ["src"] * len(units), progress, before_commit=unconfirmed)
    assert seen == [10]  # called once, with every outcome, after the writes
    assert target.rows("order_line") == []
    assert target.dialect.row_versions(target.table("order_line"), [row_key_text((1,))]) == {}
    assert target.dialect.load_progress("audit-test").offsets == {}
    # Applied again, confirmed this time: everything is there.
    applier.apply_batch(units, ["src"] * len(units), progress, before_commit=lambda outcomes: None)
    assert len(target.rows("order_line")) == 10
    assert target.dialect.load_progress("audit-test").offsets == {("orders", 0): 11}


# --- one writer session per writer tag -------------------------------------------------------------------


def _drop_origin(target: Target, tag: str) -> None:
    """Drop a writer session's replication origin once the sessions that used it are gone: a closed or ended
    session's backend releases it as it exits, a moment after its client saw the connection close."""
    if target.kind != "postgresql":
        return
    deadline = time.monotonic() + 10
    while True:
        try:
            target.dialect.execute("SELECT pg_replication_origin_drop(%s)", (tag,))
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_second_writer_session_with_the_same_tag_waits_until_the_first_is_gone(target: Target) -> None:
    tag = f"replicator_lock_{uuid.uuid4().hex[:8]}"
    kind = type(target.dialect)
    first, second = kind(target.dialect.connection, tag), kind(target.dialect.connection, tag)
    first.connect()
    try:
        with pytest.raises(RetriableError, match=f"another session writes as {tag} .* waits until it is gone"):
            second.connect()
        first.close()
        second.connect()  # the first one's lock went with its session
        second.close()
    finally:
        first.close()
        _drop_origin(target, tag)


def test_the_server_ends_a_silent_writer_session_and_frees_its_lock_for_the_next(target: Target) -> None:
    """A writer whose applier fell silent (a lost host, a frozen process) does not keep the writer lock: its server
    ends the session after `session_timeout_s`, open transaction included (rolled back), and a second writer
    session takes the lock. Administration sessions keep the server's own limits."""
    tag = f"replicator_silent_{uuid.uuid4().hex[:8]}"
    kind = type(target.dialect)
    table = target.table("silent")
    target.dialect.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    first, second = kind(target.dialect.connection, tag, session_timeout_s=1), kind(target.dialect.connection, tag)
    first.connect()
    try:
        first.keep_alive()
        first.begin()
        first.execute(f"INSERT INTO {table} (id) VALUES (1)")
        time.sleep(2.5)  # silent, in a transaction
        with pytest.raises(lost_connection_errors()):
            first.commit()
        second.connect()  # the first one's lock went with its session
        assert target.dialect.execute(f"SELECT id FROM {table}") == []
        setting = ("SELECT current_setting('idle_session_timeout')" if target.kind == "postgresql"
                   else "SELECT @@session.wait_timeout")
        assert str(target.dialect.execute(setting)[0][0]) in ("0", "28800")  # the untagged session: the default
        second.close()
    finally:
        first.close()
        _drop_origin(target, tag)
