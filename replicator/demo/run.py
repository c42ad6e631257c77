"""`replicator demo`: a PrestaShop shop and an Odoo ERP kept in step by the replicator, live, then checked.

1. bring the local stack up (`DevStack.up`, as `replicator dev up`);
2. fresh demo databases `prestashop` (MariaDB) and `odoo` (PostgreSQL): a previous demo pipeline is stopped, the
   ERP capture's slot and publication, the ERP writer's replication origin and the demo's Kafka topics are
   dropped, then both schemas and their seed data are loaded;
3. the config (`<state dir>/demo/config.yaml`) and its connection settings (`<state dir>/env`, mode 0600);
4. `replicator run` as a subprocess (log: `<state dir>/logs/demo-pipeline.log`, pid:
   `<state dir>/demo/pipeline.pid`), until its initial snapshot reached both sides;
5. both simulators for `duration` seconds, with the live view;
6. the simulators stop; the ERP settles every pending shop order (as a warehouse would by the end of the day)
   until both sides agree, or `quiet_timeout_s` passes;
7. the convergence report; exit code 0 when every flow is clean, 1 otherwise. The pipeline is stopped (it
   drains) unless `keep_running`; the stack stays up.

The demo's names are fixed (databases `prestashop` and `odoo`, topics `shop.*`, `erp.*`): nothing else may use
them on the same stack. Passwords are never printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
import yaml
from rich.console import Console

from replicator.config import PostgresSourceConfig, ReplicatorConfig
from replicator.demo.config import prestashop_odoo_config
from replicator.demo.convergence import ConvergenceReport, convergence_report
from replicator.demo.schemas import load_erp_schema, load_shop_schema
from replicator.devstack import ConnectionSettings, DevStack, mariadb_connect
from replicator.devstack.process import log_tail, spawn_detached, stop_process_group
from replicator.devstack.stack import redact
from replicator.errors import ReplicatorError
from replicator.transport.topics import AUDIT_TOPIC, DLQ_TOPIC

SHOP_DATABASE = "prestashop"
ERP_DATABASE = "odoo"
SHOP_SOURCE = "shop"
ERP_SOURCE = "erp"
SHOP_DSN_ENV = "REPLICATOR_DEMO_SHOP_DSN"
ERP_DSN_ENV = "REPLICATOR_DEMO_ERP_DSN"
CONFIG_ENV = "REPLICATOR_DEMO_CONFIG"
ENV_PREFIX = "REPLICATOR_DEMO_"
TOPIC_PREFIXES = (f"{SHOP_SOURCE}.", f"{ERP_SOURCE}.")  # table, transaction and offsets topics of both captures
SHARED_TOPICS = (AUDIT_TOPIC, DLQ_TOPIC)
STEPS = 7


class DemoError(ReplicatorError):
    """The demo could not run to its report (a server, the pipeline or a simulator failed)."""


@dataclass(frozen=True)
class DemoOptions:
    state_dir: Path
    duration_s: float = 60.0
    seed: int = 7
    shop_rate: float = 8.0
    erp_rate: float = 6.0
    keep_running: bool = False
    snapshot_timeout_s: float = 120.0
    quiet_timeout_s: float = 120.0


@dataclass(frozen=True)
class DemoPaths:
    state_dir: Path

    @property
    def folder(self) -> Path:
        return self.state_dir / "demo"

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def pid_file(self) -> Path:
        return self.folder / "pipeline.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / "demo-pipeline.log"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"


@dataclass(frozen=True)
class DemoDatabases:
    """Where the demo's shop and ERP live. The DSNs hold passwords: never print them whole."""

    shop_admin: dict[str, str | int]
    shop_dsn: str
    erp_dsn: str
    erp_admin_dsn: str
    kafka_bootstrap: str

    @classmethod
    def of(cls, settings: ConnectionSettings) -> DemoDatabases:
        return cls(shop_admin=settings.shop_admin, shop_dsn=_with_database(settings.shop_dsn, SHOP_DATABASE),
                   erp_dsn=_with_database(settings.erp_dsn, ERP_DATABASE), erp_admin_dsn=settings.erp_admin_dsn,
                   kafka_bootstrap=settings.kafka_bootstrap)

    def shop_connect(self) -> pymysql.connections.Connection[Any]:
        return mariadb_connect(self.shop_admin, SHOP_DATABASE)

    def erp_connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.erp_dsn)


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


# ---------------------------------------------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.paths = DemoPaths(options.state_dir)
        self.stack = DevStack(state_dir=options.state_dir)
        self.pipeline: Any = None  # subprocess.Popen of `replicator run`
        self.targets: list[str] = []  # the demo's appliers, whose audit records the live view counts
        self._secrets: list[str] = []

    def _step(self, number: int, text: str) -> None:
        self.console.print(f"\n[bold cyan]{number}/{STEPS}[/] [bold]{text}[/]", highlight=False, soft_wrap=True)

    def _say(self, text: str) -> None:
        self.console.print(f"   {redact(text, self._secrets)}", highlight=False, soft_wrap=True)

    def run(self) -> int:
        options = self.options
        self._step(1, "Starting the local stack: PostgreSQL (ERP), MariaDB (shop), Kafka")
        started = time.monotonic()
        settings = self.stack.up()
        self._secrets = self.stack.secret_values()
        for line in settings.env_lines():
            self._say(line)
        self._say(f"stack up in {time.monotonic() - started:.1f}s (state in {self.stack.state_dir})")
        dbs = DemoDatabases.of(settings)
        document = prestashop_odoo_config(kafka_bootstrap=dbs.kafka_bootstrap, shop_database=SHOP_DATABASE,
                                          shop_dsn_env=SHOP_DSN_ENV, erp_dsn_env=ERP_DSN_ENV,
                                          shop_source=SHOP_SOURCE, erp_source=ERP_SOURCE)
        config = ReplicatorConfig.model_validate(document)
        self.targets = [target.name for target in config.targets]

        self._step(2, f"Fresh demo databases: '{SHOP_DATABASE}' (MariaDB) and '{ERP_DATABASE}' (PostgreSQL)")
        stopped = self.stack.stop_demo_pipeline()
        if stopped is not None:
            self._say(f"stopped the previous demo pipeline (pid {stopped})")
        for line in reset_postgres(dbs, config):
            self._say(line)
        deleted = reset_kafka(dbs.kafka_bootstrap)
        self._say(f"deleted {len(deleted)} Kafka topics of a previous demo" if deleted else
                  "no Kafka topics of a previous demo")
        create_databases(dbs)
        self._say("loaded the PrestaShop 8 schema and seed (5 customers, 20 products) into "
                  f"'{SHOP_DATABASE}' and the Odoo 17 schema and seed into '{ERP_DATABASE}'")

        self._step(3, "Writing the demo config")
        write_config(self.paths, document, dbs)
        self._say(f"config: {self.paths.config}")
        self._say(f"connection settings (with passwords): {self.paths.env_file} ({SHOP_DSN_ENV}, {ERP_DSN_ENV}, "
                  f"{CONFIG_ENV})")

        self._step(4, "Starting the pipeline (replicator run) and waiting for its initial snapshot")
        self.pipeline = start_pipeline(self.paths, dbs)
        self._say(f"pid {self.pipeline.pid}, log {self.paths.log}")
        completed = False
        try:
            waited = self._wait_for_snapshot(dbs)
            self._say(f"snapshot applied on both sides in {waited:.1f}s")
            report = self._simulate_and_settle(dbs)
            self._step(7, "Convergence report")
            self.console.print(report.render())
            for line in report.lines():
                self.console.print(line, highlight=False, soft_wrap=True)
            self._print_differences(report)
            completed = True
        finally:
            if not (completed and options.keep_running):
                self._stop_pipeline()
        if options.keep_running:
            self.console.print(
                f"\nThe pipeline keeps running (pid {self.pipeline.pid}, log {self.paths.log}). Its settings are in "
                f"{self.paths.env_file}; `replicator dev down` stops it with the stack.", highlight=False)
        else:
            self.console.print("\nThe local stack is still up; `replicator dev down` stops it.", highlight=False)
        return 0 if report.clean else 1

    def _print_differences(self, report: ConvergenceReport, per_flow: int = 25) -> None:
        if report.clean:
            return
        self.console.print("\nDifferences:", highlight=False)
        for flow in report.flows:
            for difference in flow.differences[:per_flow]:
                self.console.print(f"  {flow.name}: {difference}", highlight=False, soft_wrap=True, markup=False)
            if len(flow.differences) > per_flow:
                self.console.print(f"  {flow.name}: … and {len(flow.differences) - per_flow} more", highlight=False)

    # -- steps 4 to 6 ------------------------------------------------------------------------------------------

    def _check_pipeline(self) -> None:
        if self.pipeline is not None and self.pipeline.poll() is not None:
            raise DemoError(f"the pipeline exited with code {self.pipeline.returncode}; last lines of "
                            f"{self.paths.log}:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return redact(log_tail(self.paths.log, 25), self._secrets)

    def _wait_for_snapshot(self, dbs: DemoDatabases) -> float:
        started = time.monotonic()
        deadline = started + self.options.snapshot_timeout_s
        with _connections(dbs) as (shop, erp):
            while not snapshot_applied(shop, erp):
                self._check_pipeline()
                if time.monotonic() > deadline:
                    raise DemoError(f"the initial snapshot did not reach both sides within "
                                    f"{self.options.snapshot_timeout_s:.0f}s; last lines of {self.paths.log}:\n"
                                    f"{self._log_tail()}")
                time.sleep(0.5)
        return time.monotonic() - started

    def _simulate_and_settle(self, dbs: DemoDatabases) -> ConvergenceReport:
        from replicator.demo.live import LiveView
        from replicator.simulate import ErpSimulator, ShopSimulator

        options = self.options
        self._step(5, f"Simulating the shop ({options.shop_rate:g} actions/s) and the ERP ({options.erp_rate:g} "
                      f"actions/s) for {options.duration_s:g}s, seed {options.seed}")
        shop = ShopSimulator(dbs.shop_connect, seed=options.seed, rate=options.shop_rate)
        erp = ErpSimulator(dbs.erp_connect, seed=options.seed, rate=options.erp_rate)
        stop = threading.Event()
        failures: list[str] = []
        try:
            with LiveView(self.console, bootstrap=dbs.kafka_bootstrap, shop_connect=dbs.shop_connect,
                          erp_connect=dbs.erp_connect, simulators={"shop": shop, "erp": erp},
                          duration_s=options.duration_s, targets=self.targets) as view:

                def report_failure(text: str) -> None:
                    failures.append(text)
                    view.note(text)

                threads = [threading.Thread(target=_drive, args=(name, simulator, stop, report_failure),
                                            name=f"demo-{name}-simulator", daemon=True)
                           for name, simulator in (("shop", shop), ("erp", erp))]
                for thread in threads:
                    thread.start()
                try:
                    end = time.monotonic() + options.duration_s
                    while time.monotonic() < end:
                        self._check_pipeline()
                        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join(30)
                view.phase = "settling"
                self._step(6, "Settling: the warehouse handles every pending shop order, as by the end of the day; "
                              "waiting until both sides agree")
                report, waited = self._settle(dbs, erp, view, report_failure)
        finally:
            shop.close()
            erp.close()
        self._say(f"shop actions: {_actions(shop.counts)}")
        self._say(f"ERP actions: {_actions(erp.counts)}")
        for failure in failures:
            self._say(f"[warning] {failure}")
        if report.clean:
            self._say(f"both sides agree {waited:.1f}s after the simulators stopped")
        else:
            self._say(f"still {report.differences} difference(s) {waited:.0f}s after the simulators stopped; "
                      f"pipeline log: {self.paths.log}")
        return report

    def _settle(self, dbs: DemoDatabases, erp: Any, view: Any,
                report_failure: Callable[[str], None]) -> tuple[ConvergenceReport, float]:
        """Settle the ERP and poll the report every second until it is clean or the time is up."""
        started = time.monotonic()
        deadline = started + self.options.quiet_timeout_s
        with _connections(dbs) as (shop_conn, erp_conn):
            while True:
                self._check_pipeline()
                try:
                    erp.settle()
                except (pymysql.err.Error, psycopg.Error, LookupError) as exc:
                    report_failure(f"ERP settle: {type(exc).__name__}: {exc}")
                report = convergence_report(shop_conn, erp_conn)
                if report.clean or time.monotonic() > deadline:
                    return report, time.monotonic() - started
                view.phase = f"waiting for quiet: {report.differences} difference(s) left"
                time.sleep(1.0)

    def _stop_pipeline(self) -> None:
        process = self.pipeline
        if process is None:
            return
        if process.poll() is None:
            self.console.print("\nStopping the pipeline (it drains what it has read)…", highlight=False)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                stop_process_group(process.pid, signal.SIGKILL, 10)
                self._say(f"the pipeline did not stop within 60s and was killed; log: {self.paths.log}")
            else:
                if process.returncode != 0:
                    self._say(f"the pipeline exited with code {process.returncode}; last lines of "
                              f"{self.paths.log}:\n{self._log_tail()}")
        self.paths.pid_file.unlink(missing_ok=True)


def _drive(name: str, simulator: Any, stop: threading.Event, report_failure: Callable[[str], None]) -> None:
    """Run a simulator until `stop`; a failing action is reported and the simulator goes on after a pause."""
    while not stop.is_set():
        try:
            simulator.run(stop)
        except Exception as exc:  # noqa: BLE001 - any failure of a simulated user is shown, the demo goes on
            report_failure(f"{name} simulator: {type(exc).__name__}: {exc}")
            stop.wait(1.0)


def _actions(counts: Any) -> str:
    return ", ".join(f"{action} {n}" for action, n in sorted(dict(counts).items())) or "none"


@contextlib.contextmanager
def _connections(dbs: DemoDatabases) -> Iterator[tuple[pymysql.connections.Connection[Any], psycopg.Connection[Any]]]:
    with contextlib.closing(dbs.shop_connect()) as shop, psycopg.connect(dbs.erp_dsn, autocommit=True) as erp:
        yield shop, erp


# ---------------------------------------------------------------------------------------------------------------
# Databases, topics, config, pipeline
# ---------------------------------------------------------------------------------------------------------------


def reset_postgres(dbs: DemoDatabases, config: ReplicatorConfig) -> list[str]:
    """Drop what the demo's ERP capture and ERP writer left on the PostgreSQL server: the slot (it would keep
    the old database from being dropped), the publication, the database and the writer's replication origin."""
    done: list[str] = []
    slots = [s.slot_name for s in config.sources if isinstance(s, PostgresSourceConfig)]
    publications = [s.publication_name for s in config.sources if isinstance(s, PostgresSourceConfig)]
    origins = [t.origin_name for t in config.targets if t.kind == "postgresql"]
    with psycopg.connect(dbs.erp_admin_dsn, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ERP_DATABASE,)).fetchone()
        for slot, active_pid in admin.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s OR slot_name = ANY(%s)",
            (ERP_DATABASE, slots),
        ).fetchall():
            if active_pid is not None:
                admin.execute("SELECT pg_terminate_backend(%s)", (active_pid,))
            _drop_slot(admin, slot)
            done.append(f"dropped replication slot {slot}")
        if exists:
            with psycopg.connect(dbs.erp_dsn, autocommit=True) as erp:
                for publication in publications:
                    erp.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')
            admin.execute(f'DROP DATABASE IF EXISTS "{ERP_DATABASE}" WITH (FORCE)')
            done.append(f"dropped database {ERP_DATABASE} and its publication")
        for (origin,) in admin.execute(
            "SELECT roname FROM pg_replication_origin WHERE roname = ANY(%s)", (origins,)
        ).fetchall():
            admin.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
            done.append(f"dropped replication origin {origin}")
    return done


def _drop_slot(admin: psycopg.Connection[Any], slot: str, timeout_s: float = 30.0) -> None:
    """Drop a slot, waiting for the walsender just terminated to let go of it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise DemoError(f"replication slot {slot} is still in use after {timeout_s:.0f}s: is another "
                                "pipeline running on the demo database?") from None
            time.sleep(0.2)
        except psycopg.errors.UndefinedObject:
            return


def reset_kafka(bootstrap: str, timeout_s: float = 60.0) -> list[str]:
    """Delete the demo's topics (both captures' table, transaction and offsets topics, the audit and dead-letter
    topics) and wait until the broker no longer lists them."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def listed() -> list[str]:
        topics = admin.list_topics(timeout=30).topics
        return sorted(t for t in topics if t.startswith(TOPIC_PREFIXES) or t in SHARED_TOPICS)

    doomed = listed()
    if not doomed:
        return []
    for topic, future in admin.delete_topics(doomed, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise DemoError(f"Kafka refused to delete topic {topic}: {exc}") from None
    deadline = time.monotonic() + timeout_s
    while (left := listed()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        raise DemoError(f"Kafka still lists {', '.join(left)} {timeout_s:.0f}s after deleting them")
    return doomed


def create_databases(dbs: DemoDatabases) -> None:
    with contextlib.closing(mariadb_connect(dbs.shop_admin)) as maria, maria.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{SHOP_DATABASE}`")
        cursor.execute(f"CREATE DATABASE `{SHOP_DATABASE}` CHARACTER SET utf8mb4")
    with psycopg.connect(dbs.erp_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{ERP_DATABASE}"')
    with contextlib.closing(dbs.shop_connect()) as shop:
        load_shop_schema(shop, replicator_tables=True)
    with psycopg.connect(dbs.erp_dsn) as erp:
        load_erp_schema(erp)


def write_config(paths: DemoPaths, document: dict[str, Any], dbs: DemoDatabases) -> None:
    """The config file, and the demo's lines of the env file (earlier demo lines replaced; mode 0600)."""
    paths.folder.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(
        "# Written by `replicator demo`: the shop (MariaDB database 'prestashop') and the ERP (PostgreSQL database\n"
        f"# 'odoo') with the shipped mappings. Connection strings: ${SHOP_DSN_ENV} and ${ERP_DSN_ENV}, in\n"
        f"# {paths.env_file}.\n" + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    lines: list[str] = []
    if paths.env_file.exists():
        lines = [line for line in paths.env_file.read_text().splitlines() if not line.startswith(ENV_PREFIX)]
    lines += [f"{SHOP_DSN_ENV}={dbs.shop_dsn}", f"{ERP_DSN_ENV}={dbs.erp_dsn}", f"{CONFIG_ENV}={paths.config}"]
    fd = os.open(paths.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")


def start_pipeline(paths: DemoPaths, dbs: DemoDatabases) -> Any:
    """`python -m replicator run --config <config>` in its own session, logging to the demo log."""
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    paths.log.write_text(f"--- replicator demo: pipeline started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
    env = {**os.environ, SHOP_DSN_ENV: dbs.shop_dsn, ERP_DSN_ENV: dbs.erp_dsn}
    process = spawn_detached([sys.executable, "-m", "replicator", "run", "--config", str(paths.config)], paths.log,
                             env=env)
    paths.pid_file.write_text(f"{process.pid}\n")
    return process


def snapshot_applied(shop: pymysql.connections.Connection[Any], erp: psycopg.Connection[Any]) -> bool:
    """The initial snapshot reached both sides, every row a new shop order or sign-up refers to included: every
    shop customer (not a guest, not deleted) and every address of one has its ERP partner, every shop country
    and currency the ERP knows is linked, and the shop mirrors as many ERP quants as the ERP has.

    The demo and the tests start their simulators only after this, so that what they measure (the time to
    converge, the figures of a run) is the simulated traffic's: a shop change that refers to a row whose
    snapshot read the ERP's applier has not applied yet would wait for it (see docs/operations.md)."""
    with shop.cursor() as cursor:
        cursor.execute("SELECT id_customer FROM ps_customer WHERE is_guest = 0 AND deleted = 0")
        wanted = {f"PS-C{row[0]}" for row in cursor.fetchall()}
        cursor.execute("SELECT a.id_address FROM ps_address a JOIN ps_customer c ON c.id_customer = a.id_customer "
                       "WHERE a.deleted = 0 AND c.is_guest = 0 AND c.deleted = 0")
        wanted |= {f"PS-A{row[0]}" for row in cursor.fetchall()}
        cursor.execute("SELECT UPPER(TRIM(iso_code)) FROM ps_country")
        countries = {str(row[0]) for row in cursor.fetchall()}
        cursor.execute("SELECT UPPER(TRIM(iso_code)) FROM ps_currency")
        currencies = {str(row[0]) for row in cursor.fetchall()}
        cursor.execute("SELECT COUNT(*) FROM replicator_mirror_quant")
        row = cursor.fetchone()
        mirrored = int(row[0]) if row else 0
    refs = {str(row[0]) for row in erp.execute(
        "SELECT ref FROM res_partner WHERE ref LIKE 'PS-C%' OR ref LIKE 'PS-A%'").fetchall()}
    quants = erp.execute("SELECT COUNT(*) FROM stock_quant").fetchone()
    if not wanted <= refs or quants is None or mirrored != int(quants[0]):
        return False
    # The ERP's applier created its tables before it wrote the partners above.
    linkable = {
        "country": len(countries & {str(r[0]) for r in erp.execute("SELECT code FROM res_country").fetchall()}),
        "currency": len(currencies & {str(r[0]) for r in erp.execute("SELECT name FROM res_currency").fetchall()}),
    }
    linked = dict(erp.execute("SELECT entity, COUNT(*) FROM replicator_identity WHERE entity IN "
                              "('country', 'currency') GROUP BY entity").fetchall())
    return all(int(linked.get(entity, 0)) >= count for entity, count in linkable.items())


def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the whole demo; returns the exit code (0: converged). Raises ReplicatorError when it cannot run."""
    return Demo(options, console).run()

