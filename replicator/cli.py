"""The `replicator` command line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from replicator import __version__
from replicator.errors import ConfigError, ReplicatorError

app = typer.Typer(
    name="replicator",
    help="Change-data-capture replicator between a shop database (MariaDB) and an ERP (PostgreSQL) via Kafka.",
    no_args_is_help=True,
    add_completion=False,
)
dev_app = typer.Typer(
    help="Throwaway local PostgreSQL, MariaDB and Kafka servers for the demo, tests and benchmarks.",
    no_args_is_help=True,
)
app.add_typer(dev_app, name="dev")
dlq_app = typer.Typer(help="Dead letters of an applier: list, retry, discard.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Replicator YAML config file")]
TargetOption = Annotated[str, typer.Option("--target", "-t", help="Name of the target (applier)")]
SourceOption = Annotated[str, typer.Option("--source", "-s", help="Name of the source (capture)")]
LogLevelOption = Annotated[str, typer.Option(help="Log level")]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Folder holding the servers' data, logs and the env file [default: $REPLICATOR_DEVSTACK_DIR or .devstack]",
    ),
]


def _fail(exc: ReplicatorError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    return typer.Exit(code=1)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()


@dev_app.command("up")
def dev_up(
    state_dir: StateDirOption = None,
    pg_port: Annotated[
        int | None, typer.Option(help="PostgreSQL port; fails if taken [default: 55432 or free]")
    ] = None,
    mariadb_port: Annotated[
        int | None, typer.Option(help="MariaDB port; fails if taken [default: 53306 or free]")
    ] = None,
    kafka_port: Annotated[
        int | None, typer.Option(help="Kafka broker port; fails if taken [default: 59092 or free]")
    ] = None,
) -> None:
    """Start PostgreSQL, MariaDB and Kafka (those not already running) and write the env file."""
    from replicator.devstack import DevStack, default_state_dir

    stack = DevStack(state_dir=(state_dir or default_state_dir()).resolve(), pg_port=pg_port,
                     mariadb_port=mariadb_port, kafka_port=kafka_port)
    started = time.monotonic()
    try:
        settings = stack.up()
    except ReplicatorError as exc:
        raise _fail(exc) from None
    elapsed = time.monotonic() - started
    secrets = stack.secret_values()
    from replicator.devstack.stack import redact

    for line in settings.env_lines():
        console.print(redact(line, secrets), highlight=False)
    console.print(f"stack up in {elapsed:.1f}s; connection settings (with passwords) in {stack.env_file}")


@dev_app.command("status")
def dev_status(state_dir: StateDirOption = None) -> None:
    """Show whether each server runs and answers; exit code 1 if any does not."""
    from replicator.devstack import DevStack, default_state_dir

    stack = DevStack(state_dir=(state_dir or default_state_dir()).resolve())
    table = Table("server", "state")
    healthy = True
    for name, (ok, description) in stack.status().items():
        healthy &= ok
        table.add_row(name, f"[green]{description}[/]" if ok else f"[red]{description}[/]")
    console.print(table)
    if not healthy:
        raise typer.Exit(code=1)


@dev_app.command("down")
def dev_down(
    state_dir: StateDirOption = None,
    purge: Annotated[bool, typer.Option(help="Also delete the servers' data and the state folder.")] = False,
) -> None:
    """Stop every server of the stack and wait until no process of theirs is left."""
    from replicator.devstack import DevStack, default_state_dir

    stack = DevStack(state_dir=(state_dir or default_state_dir()).resolve())
    stack.down(purge=purge)
    console.print("stack stopped" + (" and its data deleted" if purge else ""))


@dev_app.command("fetch-kafka")
def dev_fetch_kafka() -> None:
    """Fetch Apache Kafka's jars from Maven Central into the cache (once) and print their folder."""
    from replicator.devstack.kafka import ensure_jars

    try:
        console.print(str(ensure_jars()), highlight=False)
    except ReplicatorError as exc:
        raise _fail(exc) from None


R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class _Runner(Protocol[R_co]):
    def run(self) -> R_co: ...

    def stop(self) -> None: ...


def _run_until_signalled(build: Callable[[], _Runner[R]], log_level: str) -> R:
    """Build one runner and run it until it ends; SIGTERM and SIGINT ask it to stop at a clean point."""
    import signal

    from replicator import logs

    logs.configure(log_level)
    try:
        runner = build()
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        signal.signal(signal.SIGINT, lambda *_: runner.stop())
        return runner.run()
    except ReplicatorError as exc:
        raise _fail(exc) from None


@app.command("capture")
def capture(
    config: ConfigOption,
    source: Annotated[str, typer.Option("--source", "-s", help="Name of the source to capture")],
    log_level: LogLevelOption = "INFO",
) -> None:
    """Capture one source's row changes into Kafka until stopped (SIGTERM/SIGINT flush and acknowledge)."""
    from replicator.config import load_config
    from replicator.pipeline.capture_runner import build_capture

    stats = _run_until_signalled(lambda: build_capture(load_config(config), source), log_level)
    console.print(f"capture {source} stopped: {stats.transactions} transactions, {stats.events} events, "
                  f"{stats.skipped_own_transactions} own transactions not published", highlight=False)


@app.command("snapshot")
def snapshot(
    config: ConfigOption,
    source: SourceOption,
    tables: Annotated[str, typer.Option(help="Comma-separated tables to read again, as in the config (db.table)")],
) -> None:
    """Ask a source's capture to read some tables again as snapshot (`r`) events, interleaved with its stream."""
    from replicator.config import load_config
    from replicator.pipeline.capture_runner import request_snapshot

    names = [t.strip() for t in tables.split(",") if t.strip()]
    try:
        request_id = request_snapshot(load_config(config), source, names)
    except ReplicatorError as exc:
        raise _fail(exc) from None
    console.print(f"re-snapshot of {', '.join(names)} requested from source {source} (request {request_id}); "
                  "a running capture reads them within seconds, else the next start does", highlight=False)


@app.command("apply")
def apply(
    config: ConfigOption,
    target: TargetOption,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Apply the mapped changes of other systems into one target until stopped (SIGTERM/SIGINT drain)."""
    from replicator.config import load_config
    from replicator.pipeline.apply_runner import build_apply

    stats = _run_until_signalled(lambda: build_apply(load_config(config), target), log_level)
    console.print(f"apply {target} stopped: {stats.units} transactions, {stats.events} events, "
                  f"{stats.dead_letters} dead letters", highlight=False)


@app.command("run")
def run(
    config: ConfigOption,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Run every capture and applier of a config in one supervised process until SIGTERM/SIGINT."""
    import functools
    import signal

    from replicator import logs
    from replicator.config import load_config
    from replicator.pipeline.apply_runner import build_apply
    from replicator.pipeline.capture_runner import build_capture
    from replicator.pipeline.supervisor import Supervisor

    logs.configure(log_level)
    try:
        loaded = load_config(config)
    except ReplicatorError as exc:
        raise _fail(exc) from None
    supervisor = Supervisor()
    for source in loaded.sources:
        supervisor.add(f"capture:{source.name}", functools.partial(build_capture, loaded, source.name))
    for target_config in loaded.targets:
        supervisor.add(f"apply:{target_config.name}", functools.partial(build_apply, loaded, target_config.name))
    server = None
    if loaded.metrics is not None:
        from replicator.pipeline.metrics import MetricsServer

        where = f"{loaded.metrics.host}:{loaded.metrics.port}"
        try:
            server = MetricsServer(supervisor, loaded.metrics.host, loaded.metrics.port).start()
        except OSError as exc:
            raise _fail(ConfigError(f"metrics: cannot listen on {where}: {exc.strerror}")) from None
        logging.getLogger("replicator.cli").info("serving /metrics and /health", extra={"listen": where})
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
    supervisor.start()
    problems = supervisor.wait()
    if server is not None:
        server.close()
    if problems:
        for problem in problems:
            err_console.print(f"[bold red]error:[/] {problem}", highlight=False)
        raise typer.Exit(code=1)


@app.command("demo")
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of simulated business", min=1)] = 60,
    seed: Annotated[int, typer.Option(help="Random seed of both simulators")] = 7,
    shop_rate: Annotated[float, typer.Option(help="Shop actions per second (orders, sign-ups, ...)", min=0.1)] = 8,
    erp_rate: Annotated[float, typer.Option(help="ERP actions per second (reservations, deliveries, ...)",
                                            min=0.1)] = 6,
    keep_running: Annotated[bool, typer.Option(
        "--keep-running", help="Leave the pipeline running afterwards (`replicator dev down` stops it)")] = False,
    state_dir: StateDirOption = None,
) -> None:
    """A PrestaShop shop and an Odoo ERP replicated live on the local stack, then a convergence report.

    Starts the stack, loads fresh demo databases (prestashop, odoo) and runs the pipeline.

    Both business simulators then run with a live view; afterwards the ERP settles and every flow is checked.
    Exit code 1 if the two sides still differ.
    """
    from replicator.demo.run import DemoOptions, run_demo
    from replicator.devstack import default_state_dir

    options = DemoOptions(state_dir=(state_dir or default_state_dir()).resolve(), duration_s=duration, seed=seed,
                          shop_rate=shop_rate, erp_rate=erp_rate, keep_running=keep_running)
    try:
        code = run_demo(options, console)
    except ReplicatorError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(code=130) from None
    raise typer.Exit(code=code)


@app.command("validate")
def validate(
    config: ConfigOption,
    offline: Annotated[bool, typer.Option(help="Check the files only, without connecting to the databases")] = False,
) -> None:
    """Check the config and every mapping against the live schemas of both databases; list all problems."""
    from replicator.config import load_config

    try:
        loaded = load_config(config)
        if loaded.mappings is None:
            raise ReplicatorError(f"{config}: no 'mappings' to validate")
        mapping_set = loaded.mapping_set()
        problems = [] if offline else _validate_live(loaded, mapping_set)
    except ReplicatorError as exc:
        raise _fail(exc) from None
    if problems:
        for problem in problems:
            err_console.print(f"[red]-[/] {problem}", highlight=False)
        err_console.print(f"{len(problems)} problem(s)")
        raise typer.Exit(code=1)
    console.print(f"{len(mapping_set.rules)} rules valid" + (" (offline)" if offline else " against both databases"))


def _validate_live(loaded: object, mapping_set: object) -> list[str]:
    from sqlalchemy import URL, create_engine

    from replicator.config import ReplicatorConfig, ResolvedConnection
    from replicator.mapping.spec import MappingSet
    from replicator.mapping.validate import validate_against_databases

    assert isinstance(loaded, ReplicatorConfig) and isinstance(mapping_set, MappingSet)
    connections: dict[str, tuple[str, ResolvedConnection]] = {}
    for name, system in mapping_set.systems.items():
        for target in loaded.targets:
            if target.system == name:
                port = 5432 if target.kind == "postgresql" else 3306
                connections[name] = (target.kind, target.connection.resolve(f"targets.{target.name}.connection", port))
        for source in loaded.sources:
            if name not in connections and source.name == system.source_name:
                port = 5432 if source.kind == "postgresql" else 3306
                connections[name] = (source.kind, source.connection.resolve(f"sources.{source.name}.connection", port))
    engines = {}
    for name, (kind, info) in connections.items():
        url = URL.create("postgresql+psycopg" if kind == "postgresql" else "mysql+pymysql",
                         username=info.user, password=info.password.get_secret_value(), host=info.host,
                         port=info.port, database=info.database)
        engines[name] = create_engine(url)
    try:
        return validate_against_databases(mapping_set, engines)
    finally:
        for engine in engines.values():
            engine.dispose()


def _target_dialect(config: Path, target: str) -> tuple[object, str]:
    from replicator.config import load_config
    from replicator.pipeline.apply_runner import target_dialect

    loaded = load_config(config)
    dialect = target_dialect(loaded.target(target))
    dialect.connect(tag_writes=False)
    dialect.ensure_replicator_tables()
    return dialect, loaded.target(target).name


@dlq_app.command("list")
def dlq_list(
    config: ConfigOption,
    target: TargetOption,
    all_: Annotated[bool, typer.Option("--all", help="Also show applied and discarded letters")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts")] = False,
) -> None:
    """List the dead letters of a target: id, status, source transaction, error, keys."""
    from replicator.apply.dialect.base import TargetDialect

    try:
        dialect, consumer = _target_dialect(config, target)
    except ReplicatorError as exc:
        raise _fail(exc) from None
    assert isinstance(dialect, TargetDialect)
    try:
        where = "" if all_ else " AND status IN ('dead', 'held', 'retry')"
        rows = dialect.execute(
            "SELECT id, status, source, transaction_id, error, " + dialect.quote("keys") + ", created_at "
            f"FROM replicator_dead_letter WHERE consumer = %s{where} ORDER BY id", (consumer,))
    finally:
        dialect.close()
    names = ("id", "status", "source", "transaction", "error", "keys", "created")
    if as_json:
        import orjson

        for row in rows:
            print(orjson.dumps(dict(zip(names, row, strict=True)), default=str).decode())
        return
    table = Table(*names)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


def _set_letter_status(config: Path, target: str, letter_id: int, status: str) -> None:
    from replicator.apply.dialect.base import TargetDialect

    try:
        dialect, consumer = _target_dialect(config, target)
    except ReplicatorError as exc:
        raise _fail(exc) from None
    assert isinstance(dialect, TargetDialect)
    try:
        rows = dialect.execute("SELECT status FROM replicator_dead_letter WHERE id = %s AND consumer = %s",
                               (letter_id, consumer))
        if not rows:
            raise _fail(ReplicatorError(f"no dead letter {letter_id} for target {target}"))
        if rows[0][0] not in ("dead", "held", "retry"):
            raise _fail(ReplicatorError(f"dead letter {letter_id} is already {rows[0][0]}"))
        dialect.execute(
            "UPDATE replicator_dead_letter SET status = %s, resolved_at = "
            "CASE WHEN %s = 'discarded' THEN CURRENT_TIMESTAMP ELSE NULL END WHERE id = %s",
            (status, status, letter_id),
        )
    finally:
        dialect.close()
    console.print(f"dead letter {letter_id}: {status}; the running applier picks it up within a second")


@dlq_app.command("retry")
def dlq_retry(config: ConfigOption, target: TargetOption,
              letter_id: Annotated[int, typer.Argument(help="Dead letter id")]) -> None:
    """Mark a dead letter for retry: the applier re-applies it, then the changes held behind it."""
    _set_letter_status(config, target, letter_id, "retry")


@dlq_app.command("discard")
def dlq_discard(config: ConfigOption, target: TargetOption,
                letter_id: Annotated[int, typer.Argument(help="Dead letter id")]) -> None:
    """Discard a dead letter for good: the changes held behind it are then applied."""
    _set_letter_status(config, target, letter_id, "discarded")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
