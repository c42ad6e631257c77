"""Customers both ways between a MariaDB shop and a PostgreSQL ERP, through the whole pipeline:
capture -> Kafka -> apply, with identities, per-field conflict resolution and loop prevention."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.devstack import ConnectionSettings
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import capture_thread
from tests.support.kafka_reader import read_topics
from tests.support.pipeline import running_pipeline, wait_for_snapshots, wait_until
from tests.support.processes import start_replicator_run
from tests.support.sides import Sides, drop_origins, make_sides

pytestmark = pytest.mark.e2e

SHOP_DDL = [
    """CREATE TABLE ps_customer (
        id_customer INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, firstname VARCHAR(255) NOT NULL,
        lastname VARCHAR(255) NOT NULL, email VARCHAR(255) NOT NULL, phone VARCHAR(32),
        active TINYINT(1) NOT NULL DEFAULT 1, date_upd DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
]
ERP_DDL = [
    """CREATE TABLE res_partner (
        id serial PRIMARY KEY, name varchar NOT NULL, email varchar, phone varchar, ref varchar,
        x_shop_id int, active boolean NOT NULL DEFAULT true, comment text,
        write_date timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))""",
    "ALTER TABLE res_partner REPLICA IDENTITY FULL",
]


RULES: list[dict[str, Any]] = [
    {
        "name": "customer_to_partner",
        "source": {"system": "shop", "table": "ps_customer", "key": ["id_customer"]},
        "target": {"system": "erp", "table": "res_partner"},
        "identity": "customer",
        "on_delete": {"mode": "soft", "column": "active", "value": False},
        "fields": {
            "name": {"concat": ["firstname", "lastname"]},
            "email": {"from": "email", "normalize": ["trim", "lower"]},
            "phone": "phone",
            "ref": {"from": "id_customer", "prefix": "PS-C"},
            "x_shop_id": "id_customer",
            "active": {"from": "active", "cast": "bool"},
        },
    },
    {
        "name": "partner_to_customer",
        "source": {"system": "erp", "table": "res_partner", "key": ["id"]},
        "target": {"system": "shop", "table": "ps_customer"},
        "mode": "update",
        "key": {"id_customer": "x_shop_id"},
        "filter": [{"column": "x_shop_id", "not_null": True}],
        "on_delete": "ignore",
        "fields": {
            "email": {"from": "email", "max_length": 255},
            "phone": {"from": "phone", "max_length": 32},
            "firstname": {"split": {"from": "name", "part": "first"}},
            "lastname": {"split": {"from": "name", "part": "rest"}},
        },
    },
]


def _describe(sides: Sides) -> str:
    return "\n".join([
        f"shop rows: {sides.shop_sql('SELECT * FROM ps_customer')}",
        f"erp rows: {sides.erp_sql('SELECT * FROM res_partner')}",
        f"shop versions: {sides.shop_sql('SELECT row_key, versions FROM replicator_row_version')}",
        f"erp versions: {sides.erp_sql('SELECT row_key, versions FROM replicator_row_version')}",
        f"shop dead letters: {sides.dead_letters('shop')}",
        f"erp dead letters: {sides.dead_letters('erp')}",
    ])


@pytest.fixture
def sides(devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
          tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str) -> Iterator[Sides]:
    made = make_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch, topic_prefix.split("_")[-1],
                      shop_ddl=SHOP_DDL, erp_ddl=ERP_DDL, rules=RULES, shop_tables=["ps_customer"],
                      erp_tables=["res_partner"])
    yield made
    drop_origins(made)


def test_a_shop_customer_becomes_a_partner_once_and_edits_flow_both_ways_without_echo(sides: Sides) -> None:
    sides.shop_sql("INSERT INTO ps_customer (firstname, lastname, email, phone) "
                   "VALUES ('Ada', 'Lovelace', ' Ada@Example.com ', '100')")
    (customer_id,) = sides.shop_sql("SELECT MAX(id_customer) FROM ps_customer")[0]
    with running_pipeline(sides.config) as supervisor:
        def partner() -> tuple[Any, ...] | None:
            rows = sides.erp_sql("SELECT id, name, email, phone, ref FROM res_partner WHERE x_shop_id = %s",
                                 (customer_id,))
            return rows[0] if rows else None

        wait_until(lambda: partner() is not None, "the customer in the ERP", supervisor=supervisor)
        partner_id, name, email, phone, ref = partner()  # type: ignore[misc]
        assert (name, email, phone, ref) == ("Ada Lovelace", "ada@example.com", "100", f"PS-C{customer_id}")

        # Concurrent edits of different fields: the shop changes the phone, the ERP the email.
        sides.shop_sql("UPDATE ps_customer SET phone = '200' WHERE id_customer = %s", (customer_id,))
        sides.erp_sql("UPDATE res_partner SET email = 'ada@erp.example' WHERE id = %s", (partner_id,))
        wait_until(lambda: sides.shop_sql("SELECT email, phone FROM ps_customer WHERE id_customer = %s",
                                          (customer_id,))[0] == ("ada@erp.example", "200")
                   and sides.erp_sql("SELECT email, phone FROM res_partner WHERE id = %s",
                                     (partner_id,))[0] == ("ada@erp.example", "200"),
                   "both edits on both sides", supervisor=supervisor, describe=lambda: _describe(sides))

        # Both change the email: the later commit wins on both sides.
        sides.shop_sql("UPDATE ps_customer SET email = 'first@shop.example' WHERE id_customer = %s", (customer_id,))
        time.sleep(1.1)  # MariaDB commit times have whole-second resolution
        sides.erp_sql("UPDATE res_partner SET email = 'later@erp.example' WHERE id = %s", (partner_id,))
        wait_until(lambda: sides.shop_sql("SELECT email FROM ps_customer WHERE id_customer = %s",
                                          (customer_id,))[0] == ("later@erp.example",)
                   and sides.erp_sql("SELECT email FROM res_partner WHERE id = %s",
                                     (partner_id,))[0] == ("later@erp.example",),
                   "the later email on both sides", supervisor=supervisor, describe=lambda: _describe(sides))
        time.sleep(3)  # let any echo arrive
        assert sides.erp_sql("SELECT count(*) FROM res_partner")[0][0] == 1
        assert sides.shop_sql("SELECT email FROM ps_customer WHERE id_customer = %s",
                              (customer_id,))[0] == ("later@erp.example",)
        assert sides.erp_sql("SELECT email FROM res_partner WHERE id = %s", (partner_id,))[0] == ("later@erp.example",)
    identity = sides.erp_sql("SELECT entity, source_system, source_key, target_key FROM replicator_identity")
    assert identity == [("customer", "shop", str(customer_id), f"[{partner_id}]")]


def test_concurrent_edits_of_one_field_end_with_the_later_commit_on_both_sides_whatever_else_the_row_saw(
    sides: Sides,
) -> None:
    """Both sides edit the e-mail while the pipeline is stopped, so neither has seen the other's edit: the
    later commit wins on both sides. The shop's e-mail was never written there by the replicator (round 1), and
    in rounds 2 and 3 one side edits the phone after both e-mail edits: each side knows the exact time of its
    own e-mail edit only from its own change stream, as its row was changed again since."""
    sides.shop_sql("INSERT INTO ps_customer (firstname, lastname, email, phone) "
                   "VALUES ('Grace', 'Hopper', 'grace@example.com', '100')")
    (customer,) = sides.shop_sql("SELECT MAX(id_customer) FROM ps_customer")[0]
    with running_pipeline(sides.config) as supervisor:
        wait_until(lambda: sides.erp_sql("SELECT count(*) FROM res_partner WHERE x_shop_id = %s", (customer,))
                   == [(1,)], "the customer in the ERP", supervisor=supervisor)
        # Stopped with a snapshot unfinished, the next start would read the partner again, versioned at that
        # later time: the ERP's e-mail below would then look newer than the shop's later edit.
        wait_for_snapshots(sides.config, supervisor)
    (partner,) = sides.erp_sql("SELECT id FROM res_partner WHERE x_shop_id = %s", (customer,))[0]

    def shop_edit(column: str, value: str) -> None:
        sides.shop_sql(f"UPDATE ps_customer SET {column} = %s WHERE id_customer = %s", (value, customer))
        time.sleep(1.1)  # MariaDB commit times have whole-second resolution

    def erp_edit(column: str, value: str) -> None:
        sides.erp_sql(f"UPDATE res_partner SET {column} = %s WHERE id = %s", (value, partner))
        time.sleep(1.1)

    def both() -> tuple[Any, Any]:
        return (sides.shop_sql("SELECT email, phone FROM ps_customer WHERE id_customer = %s", (customer,))[0],
                sides.erp_sql("SELECT email, phone FROM res_partner WHERE id = %s", (partner,))[0])

    def replicate(expected: tuple[str, str], what: str) -> None:
        with running_pipeline(sides.config) as supervisor:
            wait_until(lambda: both() == (expected, expected), what, supervisor=supervisor,
                       describe=lambda: f"{both()}\n{_describe(sides)}")
            time.sleep(2)  # nothing may move it afterwards
        assert both() == (expected, expected)

    erp_edit("email", "round1@erp.example")
    shop_edit("email", "round1@shop.example")
    replicate(("round1@shop.example", "100"), "round 1: the shop's later e-mail on both sides")

    shop_edit("email", "round2@shop.example")
    erp_edit("email", "round2@erp.example")
    shop_edit("phone", "200")  # the shop row's time is now later than the ERP's e-mail edit
    replicate(("round2@erp.example", "200"), "round 2: the ERP's later e-mail and the shop's phone on both sides")

    erp_edit("email", "round3@erp.example")
    shop_edit("email", "round3@shop.example")
    erp_edit("phone", "300")  # the ERP row's time is now later than the shop's e-mail edit
    replicate(("round3@shop.example", "300"), "round 3: the shop's later e-mail and the ERP's phone on both sides")


def test_sustained_edits_on_both_sides_never_echo_and_genuine_erp_edits_of_the_same_rows_flow_back(
    sides: Sides, devstack: ConnectionSettings,
) -> None:
    customers = 10
    started_ms = int(time.time() * 1000)
    for n in range(customers):
        sides.shop_sql("INSERT INTO ps_customer (firstname, lastname, email, phone) VALUES (%s, 'Doe', %s, '0')",
                       (f"C{n}", f"c{n}@shop.example"))
    with running_pipeline(sides.config) as supervisor:
        wait_until(lambda: sides.erp_sql("SELECT count(*) FROM res_partner")[0][0] == customers,
                   "every customer in the ERP", supervisor=supervisor, describe=lambda: _describe(sides))
        ids = [r[0] for r in sides.shop_sql("SELECT id_customer FROM ps_customer ORDER BY id_customer")]
        partners = dict(sides.erp_sql("SELECT x_shop_id, id FROM res_partner"))
        shop_apply = next(w for w in supervisor.workers if w.name.startswith("apply:shop"))
        erp_capture = next(w for w in supervisor.workers if w.name.startswith("capture:erp"))
        before_units = shop_apply.current.stats.units  # type: ignore[union-attr]
        erp_edits = 0
        for round_ in range(1, 31):
            for customer in ids:  # 300 shop transactions, replicated to the ERP
                sides.shop_sql("UPDATE ps_customer SET phone = %s WHERE id_customer = %s",
                               (f"{round_}-{customer}", customer))
            if round_ % 10 == 0:  # genuine ERP edits of the same rows, 3 rounds x 2 rows
                for customer in ids[:2]:
                    sides.erp_sql("UPDATE res_partner SET email = %s WHERE id = %s",
                                  (f"r{round_}@erp.example", partners[customer]))
                    erp_edits += 1
        expected_phones = {c: f"30-{c}" for c in ids}
        wait_until(lambda: dict(sides.erp_sql("SELECT x_shop_id, phone FROM res_partner")) == expected_phones
                   and {r[0] for r in sides.shop_sql("SELECT email FROM ps_customer WHERE id_customer IN (%s, %s)",
                                                     tuple(ids[:2]))} == {"r30@erp.example"},
                   "the last phones in the ERP and the ERP emails in the shop", supervisor=supervisor,
                   describe=lambda: _describe(sides))
        time.sleep(3)  # any echo would arrive now
        applied_in_shop = shop_apply.current.stats.units - before_units  # type: ignore[union-attr]
        skipped_by_erp_capture = erp_capture.current.stats.skipped_own_transactions  # type: ignore[union-attr]
    # Only the genuine ERP edits reached the shop: none of the ERP writes the replicator made came back.
    assert applied_in_shop == erp_edits
    assert skipped_by_erp_capture >= 1
    # Each transaction the ERP capture did not publish has its echo_suppressed audit record, with its tag.
    audit = read_topics(devstack.kafka_bootstrap, ["replicator.audit"], quiet_s=2, since_ms=started_ms)
    echoes = [r.value for r in audit
              if r.value and r.value.get("decision") == "echo_suppressed" and r.value["source"] == sides.erp_source]
    assert len({e["transaction"] for e in echoes}) >= skipped_by_erp_capture
    assert {e["origin"].startswith("replicator") for e in echoes} == {True}
    assert dict(sides.shop_sql("SELECT id_customer, phone FROM ps_customer")) == expected_phones


def test_replicator_run_supervises_everything_and_drains_on_sigterm(sides: Sides, tmp_path: Path) -> None:
    import signal

    sides.shop_sql("INSERT INTO ps_customer (firstname, lastname, email) VALUES ('Grace', 'Hopper', 'g@h.example')")
    log = tmp_path / "run.log"
    proc = start_replicator_run(sides.config, log)
    try:
        wait_until(lambda: sides.erp_sql("SELECT name FROM res_partner") == [("Grace Hopper",)],
                   "the customer in the ERP", describe=lambda: log.read_text()[-3000:])
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]


@pytest.mark.parametrize("shop_capture", ["with the rest", "started last"])
def test_a_shop_edit_of_a_field_the_erp_owns_is_undone_in_the_shop_with_the_erps_value(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str, shop_capture: str,
) -> None:
    """The phone is the ERP's, both ways: the ERP refuses the shop's edit of it, and the shop's applier, which
    sees that local edit in the shop's own topic, writes the ERP's phone back (DESIGN 4.4: the owner's value is
    re-asserted), with an owner_reasserted audit record. The shop's other edits flow as before.

    Started last, the shop's capture creates the shop's topics after the shop's applier started without them:
    the applier reads them once they appear (in CI a `replicator run` once started them in that order)."""
    rules = copy.deepcopy(RULES)
    rules[0]["fields"]["phone"] = {"from": "phone", "owner": "erp"}
    rules[1]["fields"]["phone"] = {"from": "phone", "max_length": 32, "owner": "erp"}
    sides = make_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                       topic_prefix.split("_")[-1] + "o", shop_ddl=SHOP_DDL, erp_ddl=ERP_DDL, rules=rules,
                       shop_tables=["ps_customer"], erp_tables=["res_partner"])
    started_ms = int(time.time() * 1000)
    try:
        sides.shop_sql("INSERT INTO ps_customer (firstname, lastname, email, phone) "
                       "VALUES ('Alan', 'Turing', 'alan@example.com', '100')")
        (customer,) = sides.shop_sql("SELECT MAX(id_customer) FROM ps_customer")[0]

        def phones() -> tuple[Any, Any]:
            return (sides.shop_sql("SELECT phone FROM ps_customer WHERE id_customer = %s", (customer,))[0][0],
                    sides.erp_sql("SELECT phone FROM res_partner WHERE x_shop_id = %s", (customer,))[0][0])

        late = shop_capture == "started last"
        with contextlib.ExitStack() as stack:
            supervisor = stack.enter_context(running_pipeline(sides.config,
                                                              without=[sides.shop_source] if late else []))
            if late:
                time.sleep(3)  # the shop's applier has started, without the shop's topics
                stack.enter_context(capture_thread(sides.config, sides.shop_source))
            wait_until(lambda: sides.erp_sql("SELECT count(*) FROM res_partner")[0][0] == 1, "the partner",
                       supervisor=supervisor)
            assert phones() == ("100", None)  # the shop does not own the phone: the new partner has none
            sides.erp_sql("UPDATE res_partner SET phone = '555' WHERE x_shop_id = %s", (customer,))
            wait_until(lambda: phones() == ("555", "555"), "the ERP's phone in the shop", supervisor=supervisor,
                       describe=lambda: f"{phones()}\n{_describe(sides)}")
            sides.shop_sql("UPDATE ps_customer SET phone = '999', email = 'alan@shop.example' "
                           "WHERE id_customer = %s", (customer,))
            wait_until(lambda: sides.erp_sql("SELECT email FROM res_partner")[0][0] == "alan@shop.example",
                       "the shop's e-mail in the ERP", supervisor=supervisor, describe=lambda: _describe(sides))
            wait_until(lambda: phones() == ("555", "555"), "the ERP's phone back in the shop",
                       supervisor=supervisor, describe=lambda: f"{phones()}\n{_describe(sides)}")
            time.sleep(2)
            assert phones() == ("555", "555")
        audit = read_topics(devstack.kafka_bootstrap, ["replicator.audit"], quiet_s=2, since_ms=started_ms)
        reasserted = [field for r in audit if r.value and r.value.get("target") == sides.shop_target
                      for field in r.value.get("fields", []) if field["outcome"] == "owner_reasserted"]
        assert [(f["column"], f["current"], f["result"]) for f in reasserted] == [("phone", "999", "555")]
    finally:
        drop_origins(sides)
