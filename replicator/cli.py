"""The `replicator` command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from replicator import __version__
from replicator.errors import ReplicatorError

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

console = Console()
err_console = Console(stderr=True)

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


@app.command("capture")
def capture(
    config: Annotated[Path, typer.Option("--config", "-c", help="Replicator YAML config file")],
    source: Annotated[str, typer.Option("--source", "-s", help="Name of the source to capture")],
    log_level: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Capture one source's row changes into Kafka until stopped (SIGTERM/SIGINT flush and acknowledge)."""
    import signal

    from replicator import logs
    from replicator.config import load_config
    from replicator.pipeline.capture_runner import build_capture

    logs.configure(log_level)
    try:
        runner = build_capture(load_config(config), source)
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        signal.signal(signal.SIGINT, lambda *_: runner.stop())
        stats = runner.run()
    except ReplicatorError as exc:
        raise _fail(exc) from None
    console.print(f"capture {source} stopped: {stats.transactions} transactions, {stats.events} events, "
                  f"{stats.skipped_own_transactions} own transactions not published", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
