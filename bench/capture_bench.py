"""Capture throughput benchmark: PostgreSQL and MariaDB change logs into Kafka, against a bare-read ceiling.

For each source and workload a backlog is written first (capture's slot or GTID position already
established, `snapshot: never`), then three runs read the same backlog, each in a fresh Python process:

1. the bare ceiling: PostgreSQL, a psycopg2 pgoutput read of a second slot (read_message loop looking
   at each payload, a 20 ms pause whenever it drained the socket, send_feedback at the end; one more
   read without the pause is shown); MariaDB, a mysql-replication BinLogStreamReader (blocking=True,
   freeze_schema=True as capture reads, own stop condition) from the same GTID start, decoding every
   `.rows`;
2. the real `CaptureRunner` (built by `build_capture` from a YAML config), timed from the moment the
   source is open (slot found / GTID loaded) until the runner's stats show every event published and
   the last transaction's position acknowledged, which happens only once Kafka confirmed every message;
3. the ceiling again (a third slot / the same GTID start), so a machine that got busier or quieter
   during the run shows; the better of the two ceilings is the one compared with.

CPU is that of the run's own process (getrusage: Python and librdkafka threads), plus the database
server and the Kafka broker processes read from /proc over the same window.

Run `bench/capture_bench.py --help`; bench/README.md explains the output.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import random
import re
import resource
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULT_NAME = re.compile(r"capture-(\d{8}T\d{6}Z)\.json")

SOURCES = ("postgresql", "mariadb")
WORKLOADS = ("single", "bulk")  # (a) one transaction per row, (b) every row in one transaction
WORKLOAD_TEXT = {"single": "1 row/txn", "bulk": "1 txn"}
TABLE = "order_line"
# Idle wake-up of the capture (server keepalive / heartbeat period): after the backlog, the runner
# notices Kafka's last confirmations at its next wake-up, so this bounds the end-of-run lag.
HEARTBEAT_S = 0.2
# The bare pgoutput reader pauses this long whenever it has read everything the server sent. The
# walsender writes every message to the socket as it is decoded: a reader that waits on the socket
# again at once is woken for almost every message, and the walsender, woken back each time the
# socket drains, spends about three times the CPU per message. Measured on 2 cores with 200k rows
# read again from the same slot (3 reads each, ev/s): no pause 54-60k (one-row transactions) and
# 161-179k (one transaction); 0.5 ms 155-167k / 160-400k; 1 ms 109-175k / 198-207k; 2 ms 66-75k;
# 5 ms 80-88k / 343-372k; 20 ms 151-177k / 409-416k. 20 ms is the fastest and steadiest for both.
PG_CEILING_DRAINED_PAUSE_S = 0.02
# Runs of the PostgreSQL floor (pg_floor_worker) per case, after the ceilings; the fastest is reported.
FLOOR_RUNS = 3

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- measuring ---------------------------------------------------------------------------------------


def own_cpu_seconds() -> float:
    """User + system CPU of this process, all threads (Python and librdkafka's)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main_thread_cpu_seconds() -> float:
    """CPU of this process's main thread alone (where the capture loop and all its Python code run)."""
    return _stat_cpu_ticks(Path(f"/proc/self/task/{os.getpid()}/stat").read_text()) / _CLOCK_TICKS


def _stat_cpu_ticks(stat: str) -> int:
    fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on; the name may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime


def process_tree_cpu(pid: int) -> float:
    """CPU seconds used so far by `pid` and its direct children (PostgreSQL's backends), from /proc."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        if int(entry.name) == pid or int(text[text.rindex(")") + 2 :].split()[1]) == pid:  # field 4: ppid
            ticks += _stat_cpu_ticks(text)
    return ticks / _CLOCK_TICKS


def servers_cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: process_tree_cpu(pid) for name, pid in pids.items()}


class Window:
    """Wall time, own CPU (all threads, and the main thread alone) and servers' CPU between `start` and
    `stop`."""

    def __init__(self, server_pids: dict[str, int]) -> None:
        self.server_pids = server_pids
        self._t0 = self._cpu0 = self._main0 = 0.0
        self._servers0: dict[str, float] = {}

    def start(self) -> None:
        self._servers0 = servers_cpu(self.server_pids)
        self._cpu0 = own_cpu_seconds()
        self._main0 = main_thread_cpu_seconds()
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def stop(self) -> dict[str, Any]:
        wall = self.elapsed()
        cpu = own_cpu_seconds() - self._cpu0
        main = main_thread_cpu_seconds() - self._main0
        servers = servers_cpu(self.server_pids)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "main_thread_cpu_s": main,
            "server_cpu_s": {name: servers[name] - self._servers0[name] for name in servers},
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


# --- workers: each run in its own process -------------------------------------------------------------


def capture_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The real capture in this process: `build_capture` then `CaptureRunner.run` in the main thread,
    watched from a second thread that stops it once the backlog is acknowledged."""
    from replicator.config import load_config
    from replicator.pipeline.capture_runner import build_capture

    runner = build_capture(load_config(Path(spec["config"])), spec["source"])
    events, attr, final = spec["events"], spec["final_attr"], spec["final"]
    window = Window(spec["server_pids"])
    marks: dict[str, Any] = {}
    finished = threading.Event()

    def watch() -> None:
        while not runner.opened.wait(0.05):
            if finished.is_set():
                return
        window.start()
        marks["open_s"] = time.perf_counter() - marks["run_started"]
        deadline = time.monotonic() + spec["timeout_s"]
        while not finished.is_set():
            stats = runner.stats
            if "first_event_s" not in marks and stats.events:
                marks["first_event_s"] = window.elapsed()
            if "produced_s" not in marks and stats.events >= events:
                marks["produced_s"] = window.elapsed()
            if getattr(stats.acknowledged, attr, None) == final:
                marks.update(window.stop())
                break
            if time.monotonic() > deadline:
                marks["error"] = f"timed out after {spec['timeout_s']}s: {stats.events} of {events} events"
                break
            time.sleep(0.005)
        runner.stop()

    watcher = threading.Thread(target=watch, name="bench-watch", daemon=True)
    profiler = cProfile.Profile() if spec.get("profile") else None
    marks["run_started"] = time.perf_counter()
    watcher.start()
    try:
        if profiler is not None:
            profiler.enable()
        stats = runner.run()
    finally:
        if profiler is not None:
            profiler.disable()
        finished.set()
        watcher.join(10)
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    del marks["run_started"]
    return {**marks, "events": stats.events, "transactions": stats.transactions}


def _pg_replication_cursor(spec: dict[str, Any]) -> tuple[Any, Any]:
    """A replication connection to the case's database and its cursor, with capture's session settings."""
    import psycopg2
    import psycopg2.extras

    from replicator.capture.postgres.source import SESSION_OPTIONS

    conn = psycopg2.connect(
        os.environ[spec["dsn_env"]],
        options=SESSION_OPTIONS,
        connection_factory=psycopg2.extras.LogicalReplicationConnection,
    )
    return conn, conn.cursor()


def _pgoutput_payloads(cursor: Any, spec: dict[str, Any], what: str) -> Iterator[bytes]:
    """Every message payload of the spec's slot (pgoutput protocol 1, as capture reads it), pausing
    `spec["pause_s"]` whenever the socket is drained (PG_CEILING_DRAINED_PAUSE_S), until the caller stops."""
    pause_s = spec["pause_s"]
    deadline = time.monotonic() + spec["timeout_s"]
    cursor.start_replication(
        slot_name=spec["slot"],
        decode=False,
        options={"proto_version": "1", "publication_names": spec["publication"]},
    )
    while True:
        msg = cursor.read_message()
        if msg is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pgoutput {what}: not done after {spec['timeout_s']}s")
            if pause_s:
                time.sleep(pause_s)  # let the server fill the socket
            select.select([cursor], [], [], 1.0)
            continue
        yield msg.payload


def pg_ceiling_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Bare pgoutput read of one slot: every message's payload looked at (type byte, length, the xid
    of B and the end LSN of C), no row decoding; a pause whenever the socket is drained
    (PG_CEILING_DRAINED_PAUSE_S); feedback once at the end."""
    conn, cursor = _pg_replication_cursor(spec)
    window = Window(spec["server_pids"])
    final = spec["final"]
    rows = commits = payload_bytes = end_lsn = 0
    in_final = False
    window.start()
    for payload in _pgoutput_payloads(cursor, spec, "ceiling"):
        payload_bytes += len(payload)
        kind = payload[0]
        if kind == 0x49:  # I
            rows += 1
        elif kind == 0x42:  # B: final_lsn(8) commit_ts(8) xid(4)
            in_final = int.from_bytes(payload[17:21], "big") == final
        elif kind == 0x43:  # C: flags(1) commit_lsn(8) end_lsn(8) commit_ts(8)
            commits += 1
            end_lsn = int.from_bytes(payload[10:18], "big")
            if in_final:
                break
    cursor.send_feedback(flush_lsn=end_lsn, reply=True)
    measured = window.stop()
    conn.close()
    return {**measured, "events": rows, "transactions": commits, "payload_bytes": payload_bytes}


def pg_floor_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """A lower bound on any PostgreSQL capture into Kafka, not the product: the least a reader that
    publishes one Kafka message per change can do. The ceiling's read (with its pause), each Insert cut
    into (key, row) by the capture's own compiled decoder and the two written as JSON (the bare row, no
    envelope), then produced; each BEGIN and COMMIT produced as its raw pgoutput bytes. It ends when Kafka
    has confirmed every message. No envelope, no transaction counts, no positions kept, no checkpoint, no
    acknowledgement to the server: a capture meeting the contract (DESIGN 3) does all of this and more
    per change, so it cannot be faster than this run on the same machine."""
    import orjson

    from replicator.capture.postgres import pgoutput as pg
    from replicator.capture.postgres.inserts import compile_insert_decoder
    from replicator.capture.postgres.types import make_relation_decoders
    from replicator.transport.client import KafkaClient
    from replicator.transport.kafka import EventProducer

    producer = EventProducer(KafkaClient(spec["bootstrap"]), client_id="bench-floor", linger_ms=spec["linger_ms"])
    produce, raw_produce = producer.produce, producer.raw_produce
    rows_topic, tx_topic = spec["rows_topic"], spec["tx_topic"]
    dumps = orjson.dumps
    conn, cursor = _pg_replication_cursor(spec)
    window = Window(spec["server_pids"])
    final = spec["final"]
    decoders: dict[bytes, Callable[[bytes], Any]] = {}
    rows = commits = end_lsn = 0
    in_final = False
    window.start()
    for payload in _pgoutput_payloads(cursor, spec, "floor"):
        kind = payload[0]
        if kind == 0x49:  # I
            decoded = decoders[payload[1:5]](payload)
            if decoded is None:
                raise RuntimeError("pgoutput floor: an insert the compiled decoder does not take")
            key, row = decoded
            try:
                raw_produce(rows_topic, dumps(row), dumps(key))
            except BufferError:
                produce(rows_topic, dumps(key), dumps(row))
            rows += 1
            continue
        if kind == 0x42 or kind == 0x43:  # B, C: forwarded as they are
            try:
                raw_produce(tx_topic, payload)
            except BufferError:
                produce(tx_topic, None, payload)
            if kind == 0x42:  # final_lsn(8) commit_ts(8) xid(4)
                in_final = int.from_bytes(payload[17:21], "big") == final
            else:  # flags(1) commit_lsn(8) end_lsn(8) commit_ts(8)
                commits += 1
                end_lsn = int.from_bytes(payload[10:18], "big")
                if in_final:
                    break
        elif kind == 0x52:  # R: the relation's decoder, as capture compiles it
            relation = pg.parse_message(payload, False)
            assert isinstance(relation, pg.Relation)
            names = [column.name for column in relation.columns]
            keys = [i for i, column in enumerate(relation.columns) if column.is_key]
            decoders[payload[1:5]] = compile_insert_decoder(names, make_relation_decoders(relation), keys)
    producer.flush()
    measured = window.stop()
    cursor.send_feedback(flush_lsn=end_lsn, reply=True)
    conn.close()
    return {**measured, "events": rows, "transactions": commits}


def mariadb_ceiling_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Bare mysql-replication read from a GTID state, `.rows` decoded for every rows event of the table,
    stopped after the Xid of the final transaction (blocking=True: see the shared notes on
    blocking=False). Counts the transactions that carried rows of the table. With the reader options
    capture uses that change the reader's work (freeze_schema: each table map parsed once)."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import MariadbGtidEvent, XidEvent
    from pymysqlreplication.row_event import WriteRowsEvent

    address = urlsplit(os.environ[spec["dsn_env"]])
    window = Window(spec["server_pids"])
    final = spec["final"]
    rows = commits = values = 0
    in_final = has_rows = False
    window.start()
    stream = BinLogStreamReader(
        connection_settings={
            "host": address.hostname,
            "port": address.port,
            "user": unquote(address.username or ""),
            "password": unquote(address.password or ""),
            "charset": "utf8mb4",
            "read_timeout": spec["timeout_s"],
        },
        server_id=spec["server_id"],
        is_mariadb=True,
        auto_position=spec["start_gtid"],
        blocking=True,
        resume_stream=True,
        only_events=[MariadbGtidEvent, XidEvent, WriteRowsEvent],
        only_schemas=[spec["database"]],
        only_tables=[TABLE],
        enable_logging=False,
        freeze_schema=True,  # as capture reads (replicator/capture/mariadb/source.py)
    )
    try:
        for event in stream:
            if isinstance(event, WriteRowsEvent):
                for row in event.rows:
                    values += len(row["values"])
                    rows += 1
                has_rows = True
            elif isinstance(event, MariadbGtidEvent):
                in_final = event.gtid == final
                has_rows = False
            elif isinstance(event, XidEvent):
                commits += has_rows  # other databases' transactions end with an Xid too
                if in_final:
                    break
    finally:
        stream.close()
    measured = window.stop()
    return {**measured, "events": rows, "transactions": commits, "values": values}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "capture": capture_worker,
    "pg-ceiling": pg_ceiling_worker,
    "mariadb-ceiling": mariadb_ceiling_worker,
    "pg-floor": pg_floor_worker,
}


def worker_main(role: str, spec_path: Path, workers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None
                ) -> int:
    """A worker process's body: run `role` (from `workers`, default this script's) on its spec file."""
    spec = json.loads(spec_path.read_text())
    result = (workers or WORKERS)[role](spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


def run_worker(role: str, spec: dict[str, Any], workdir: Path, script: Path | None = None) -> dict[str, Any]:
    """Run one worker of `script` (default this one) in a fresh interpreter; its result comes back through a
    JSON file."""
    stem = f"{role}-{uuid.uuid4().hex[:8]}"
    spec_path = workdir / f"{stem}.spec.json"
    result_path = workdir / f"{stem}.result.json"
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}))
    proc = subprocess.run(
        [sys.executable, str((script or Path(__file__)).resolve()), "--worker", role, str(spec_path)],
        timeout=spec["timeout_s"] + 120,
        check=False,
    )
    if proc.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"{role} worker failed (exit {proc.returncode}); see its output above")
    result: dict[str, Any] = json.loads(result_path.read_text())
    if "error" in result:
        raise RuntimeError(f"{role} worker: {result['error']}")
    return result


# --- the stack ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_stack(workdir: Path) -> Iterator[tuple[Any, dict[str, int], str]]:
    """(connection settings, server pids, description): the stack in $REPLICATOR_DEVSTACK_DIR when it
    runs there, else a new one in `workdir`, stopped and deleted afterwards."""
    from replicator.devstack import DevStack

    reuse = os.environ.get("REPLICATOR_DEVSTACK_DIR")
    if reuse and DevStack(state_dir=Path(reuse).resolve()).is_running():
        stack = DevStack(state_dir=Path(reuse).resolve())
        yield stack.settings(), _server_pids(stack.state_dir), f"reused {stack.state_dir}"
        return
    stack = DevStack(state_dir=workdir / "devstack")
    started = time.monotonic()
    print(f"starting a devstack in {stack.state_dir} ...", flush=True)
    try:
        settings = stack.up()
        print(f"devstack up in {time.monotonic() - started:.0f}s", flush=True)
        yield settings, _server_pids(stack.state_dir), f"own, in {stack.state_dir}"
    finally:
        stack.down(purge=True)


# Rows of the discarded case that warms the broker up before the measured ones.
WARM_UP_ROWS = 200_000


def warm_up(ctx: dict[str, Any], meta: dict[str, Any]) -> None:
    """Run one PostgreSQL one-row-transaction case of WARM_UP_ROWS and discard it, so that no measured case
    pays for the broker warming up. A freshly started broker needs several times the CPU per message at first
    (bench/README.md), CPU taken from capture on 2 cores, while the bare ceilings read no Kafka. Producing a
    scratch topic as fast as possible did not do it (large batches; the cases send many small requests)."""
    print(f"warm-up (discarded): postgresql / single, {WARM_UP_ROWS:,} rows", flush=True)
    started = time.monotonic()
    result = run_case("postgresql", "single", WARM_UP_ROWS, {**ctx, "runs": 1}, None)
    meta["warm_up"] = {"case": "postgresql/single", "rows": WARM_UP_ROWS, "s": round(time.monotonic() - started, 1),
                       "kafka_cpu_s_per_1k": result.get("capture", {}).get("kafka_cpu_s_per_1k")}
    print(f"   done in {meta['warm_up']['s']:.0f}s (broker cpu s/1k: {meta['warm_up']['kafka_cpu_s_per_1k']})",
          flush=True)


def _server_pids(state_dir: Path) -> dict[str, int]:
    servers = json.loads((state_dir / "state.json").read_text())["servers"]
    return {name: int(servers[name]["pid"]) for name in ("postgres", "mariadb", "kafka")}


# --- the two sources ----------------------------------------------------------------------------------


class PostgresCase:
    """A database of its own with the order-line table; backlog read from the capture slot and two
    ceiling slots created right after it."""

    kind = "postgresql"
    server = "postgres"
    final_attr = "tx_id"

    def __init__(self, settings: Any, tag: str, workload: str, rows: int, ceilings: int) -> None:
        self.admin_dsn: str = settings.erp_admin_dsn
        self.database = f"bench_{tag}"
        self.dsn = urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{self.database}"))
        self.workload, self.rows = workload, rows
        self.ceiling_slots = [f"bench_ceiling_{tag}_{i}" for i in range(1, ceilings + 1)]
        self.eager_slot = f"bench_ceiling_{tag}_eager"
        self.floor_slots = [f"bench_floor_{tag}_{i}" for i in range(1, FLOOR_RUNS + 1)]
        self.table = f"public.{TABLE}"
        self.final: int | None = None
        self.publication = ""

    def connect(self, dsn: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(dsn or self.dsn, autocommit=True)

    def create(self) -> None:
        with self.connect(self.admin_dsn) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        with self.connect() as conn:
            conn.execute(
                f"""CREATE TABLE {TABLE} (
                    id integer PRIMARY KEY, qty integer NOT NULL, sku varchar(40) NOT NULL,
                    price numeric(10,2) NOT NULL, created_at timestamptz NOT NULL)"""
            )
            # PostgreSQL 11+ procedures may COMMIT: one transaction per row, all server-side.
            conn.execute(
                f"""CREATE PROCEDURE fill_one_per_txn(first integer, n integer) LANGUAGE plpgsql AS $$
                BEGIN
                  FOR i IN first .. first + n - 1 LOOP
                    INSERT INTO {TABLE} VALUES (i, i % 100, 'SKU-' || i, (i % 100000) / 100.0, clock_timestamp());
                    COMMIT;
                  END LOOP;
                END $$"""
            )

    def source_config(self) -> dict[str, Any]:
        return {"kind": "postgresql", "tables": [self.table]}

    def after_establish(self, source_config: Any) -> None:
        self.publication = source_config.publication_name
        with self.connect() as conn:
            for slot in [*self.ceiling_slots, self.eager_slot, *self.floor_slots]:
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))

    def write(self) -> int:
        """The backlog; returns the number of transactions, checked on the rows' xmin."""
        with self.connect() as conn:
            conn.execute("SET synchronous_commit = off")  # the writer's session only
            if self.workload == "single":
                conn.execute("CALL fill_one_per_txn(1, %s)", (self.rows,))
            else:
                conn.execute(
                    f"""INSERT INTO {TABLE}
                        SELECT g, g %% 100, 'SKU-' || g, (g %% 100000) / 100.0, clock_timestamp()
                        FROM generate_series(1, %s) AS g""",
                    (self.rows,),
                )
            count, txns = conn.execute(f"SELECT count(*), count(DISTINCT xmin::text) FROM {TABLE}").fetchone()
            (self.final,) = conn.execute(
                f"SELECT xmin::text::bigint FROM {TABLE} ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if count != self.rows:
            raise RuntimeError(f"{self.table} holds {count} rows, expected {self.rows}")
        return int(txns)

    def ceiling(self, index: int) -> tuple[str, dict[str, Any]]:
        return "pg-ceiling", {
            "slot": self.ceiling_slots[index],
            "publication": self.publication,
            "final": self.final,
            "pause_s": PG_CEILING_DRAINED_PAUSE_S,
        }

    def eager_ceiling(self) -> tuple[str, dict[str, Any]] | None:
        """The same bare read without the pause: how a reader that waits on the socket again at once
        (psycopg2's read_message loop as usually written, pg_recvlogical) fares. Shown, not compared with."""
        return "pg-ceiling", {
            "slot": self.eager_slot,
            "publication": self.publication,
            "final": self.final,
            "pause_s": 0.0,
        }

    def floor(self, index: int) -> tuple[str, dict[str, Any]] | None:
        """The `index`-th run of pg_floor_worker, on a slot of its own."""
        return "pg-floor", {
            "slot": self.floor_slots[index],
            "publication": self.publication,
            "final": self.final,
            "pause_s": PG_CEILING_DRAINED_PAUSE_S,
        }

    def server_version(self) -> str:
        with self.connect(self.admin_dsn) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])

    def cleanup(self) -> None:
        import psycopg

        with self.connect(self.admin_dsn) as conn:
            for (slot,) in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (self.database,)
            ).fetchall():
                conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (slot,),
                )
                with contextlib.suppress(psycopg.errors.ObjectInUse):
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class MariaDbCase:
    """A database of its own with the order-line table; the ceiling reads from the GTID state the
    capture stored when it was established."""

    kind = "mariadb"
    server = "mariadb"
    final_attr = "gtid"

    def __init__(self, settings: Any, tag: str, workload: str, rows: int, ceilings: int) -> None:
        self.admin: dict[str, Any] = settings.shop_admin
        self.bootstrap: str = settings.kafka_bootstrap
        self.database = f"bench_{tag}"
        a = self.admin
        self.dsn = f"mysql://{a['user']}:{a['password']}@{a['host']}:{a['port']}/{self.database}"
        self.workload, self.rows = workload, rows
        self.table = f"{self.database}.{TABLE}"
        self.final: str | None = None
        self.start_gtid = ""

    @contextlib.contextmanager
    def cursor(self, database: str | None = None) -> Iterator[Any]:
        from replicator.devstack import mariadb_connect

        with contextlib.closing(mariadb_connect(self.admin, database)) as conn, conn.cursor() as cur:
            yield cur

    def create(self) -> None:
        with self.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
        with self.cursor(self.database) as cur:
            cur.execute(
                f"""CREATE TABLE {TABLE} (
                    id INT PRIMARY KEY, qty INT NOT NULL, sku VARCHAR(40) NOT NULL,
                    price DECIMAL(10,2) NOT NULL, created_at DATETIME(6) NOT NULL)"""
            )
            cur.execute(
                f"""CREATE PROCEDURE fill_one_per_txn(IN first INT, IN n INT)
                BEGIN
                  DECLARE i INT DEFAULT first;
                  WHILE i < first + n DO
                    START TRANSACTION;
                    INSERT INTO {TABLE} VALUES (i, i % 100, CONCAT('SKU-', i), (i % 100000) / 100, NOW(6));
                    COMMIT;
                    SET i = i + 1;
                  END WHILE;
                END"""
            )

    def source_config(self) -> dict[str, Any]:
        # A server drops an older dump connection registered with the same server id: never share one.
        return {"kind": "mariadb", "tables": [self.table], "server_id": random.randint(100_000, 2**31)}

    def after_establish(self, source_config: Any) -> None:
        import orjson

        from replicator.transport.client import KafkaClient
        from replicator.transport.kafka import read_last_value
        from replicator.transport.topics import offsets_topic

        name = source_config.name
        raw = read_last_value(KafkaClient(self.bootstrap), offsets_topic(name), name.encode())
        if raw is None:
            raise RuntimeError(f"capture {source_config.name} stored no start position")
        self.start_gtid = orjson.loads(raw)["gtid"]

    def write(self) -> int:
        with self.cursor(self.database) as cur:
            cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            before = cur.fetchone()[0]
            if self.workload == "single":
                cur.execute("CALL fill_one_per_txn(1, %s)", (self.rows,))
            else:
                # seq_1_to_N: MariaDB's Sequence engine.
                cur.execute(
                    f"""INSERT INTO {TABLE}
                        SELECT seq, seq % 100, CONCAT('SKU-', seq), (seq % 100000) / 100, NOW(6)
                        FROM seq_1_to_{int(self.rows)}"""
                )
            cur.execute("SELECT @@SESSION.last_gtid, @@GLOBAL.gtid_binlog_pos")
            self.final, after = cur.fetchone()
            cur.execute(f"SELECT count(*) FROM {TABLE}")
            (count,) = cur.fetchone()
        if count != self.rows:
            raise RuntimeError(f"{self.table} holds {count} rows, expected {self.rows}")
        # GTID sequence numbers written meanwhile (exact on a stack no one else writes to).
        return _gtid_seq(after) - _gtid_seq(before)

    def ceiling(self, index: int) -> tuple[str, dict[str, Any]]:
        return "mariadb-ceiling", {
            "start_gtid": self.start_gtid,
            "final": self.final,
            "database": self.database,
            "server_id": random.randint(100_000, 2**31),
        }

    def eager_ceiling(self) -> tuple[str, dict[str, Any]] | None:
        return None  # mysql-replication's reader has no such variant: its ceiling is the bare read

    def floor(self, index: int) -> tuple[str, dict[str, Any]] | None:
        return None  # capture already runs faster than the bare mysql-replication read

    def server_version(self) -> str:
        with self.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return str(cur.fetchone()[0])

    def cleanup(self) -> None:
        with self.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")


def _gtid_seq(state: str) -> int:
    """Sum of the sequence numbers of a GTID state ('0-1-42,7-3-9' -> 51)."""
    return sum(int(part.rsplit("-", 1)[1]) for part in state.split(",") if part.strip())


# --- one case -----------------------------------------------------------------------------------------


def establish_capture(config_path: Path, source: str, attempts: int = 3) -> None:
    """Run the real capture until its source is open (slot created / start GTID stored, topics
    created), then stop it: the backlog written next is what the measured run reads. A RetriableError
    (e.g. a just-created topic without a leader yet) is retried, as a supervisor would."""
    from replicator.errors import RetriableError

    for attempt in range(1, attempts + 1):
        try:
            _open_and_stop(config_path, source)
            return
        except RetriableError as exc:
            if attempt == attempts:
                raise
            print(f"   capture start-up failed ({exc}); retrying", flush=True)
            time.sleep(1)


def _open_and_stop(config_path: Path, source: str) -> None:
    from replicator.config import load_config
    from replicator.pipeline.capture_runner import build_capture

    runner = build_capture(load_config(config_path), source)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"establish-{source}", daemon=True)
    thread.start()
    while not runner.opened.wait(0.1) and thread.is_alive():
        pass
    runner.stop()
    thread.join(60)
    if failure:
        raise failure[0]
    if thread.is_alive():
        raise RuntimeError(f"capture {source} did not stop within 60s")


def topic_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Messages in each (single-partition) topic: its high watermark."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        return {t: int(consumer.get_watermark_offsets(TopicPartition(t, 0), timeout=30)[1]) for t in topics}
    finally:
        consumer.close()


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    for future in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(topics).values():
        with contextlib.suppress(Exception):
            future.result(timeout=30)


def run_case(
    kind: str, workload: str, rows: int, ctx: dict[str, Any], profile_path: Path | None
) -> dict[str, Any]:
    from replicator.config import load_config
    from replicator.transport.client import KafkaClient
    from replicator.transport.kafka import TopicSpec, ensure_topics
    from replicator.transport.topics import offsets_topic, table_topic, transaction_topic

    settings, workdir, runs = ctx["settings"], ctx["workdir"], ctx["runs"]
    tag = f"{kind[:2]}_{workload}_{uuid.uuid4().hex[:6]}"
    # `runs` capture runs between `runs` + 1 ceiling runs: ceiling, capture, ceiling, ..., ceiling.
    case = (PostgresCase if kind == "postgresql" else MariaDbCase)(settings, tag, workload, rows, runs + 1)
    # One capture source per capture run, each with its own slot or stored GTID at the same point and its
    # own topics, so that every run reads the whole backlog.
    names = [f"bench-{tag.replace('_', '-')}-{n}" for n in range(1, runs + 1)]
    env_var = f"BENCH_DSN_{tag.upper()}"
    os.environ[env_var] = case.dsn  # read by the config (here and in the workers), never written to disk
    expected_txns = rows if workload == "single" else 1
    server_pids = {"db": ctx["server_pids"][case.server], "kafka": ctx["server_pids"]["kafka"]}
    timeout_s = ctx["timeout_s"]
    topics = {
        name: [table_topic(name, *case.table.split(".")), transaction_topic(name), offsets_topic(name)]
        for name in names
    }
    result: dict[str, Any] = {
        "source": kind,
        "workload": workload,
        "rows": rows,
        "loadavg_before": os.getloadavg()[0],
    }
    print(f"\n== {kind} / {workload} ({WORKLOAD_TEXT[workload]}), {rows:,} rows", flush=True)
    case.create()
    try:
        sources = [
            {
                "name": name,
                "connection": {"dsn": {"env": env_var}},
                "snapshot": "never",
                "heartbeat_interval_s": HEARTBEAT_S,
                **case.source_config(),
            }
            for name in names
        ]
        config_path = workdir / f"{names[0]}.yaml"
        config_path.write_text(
            yaml.safe_dump(
                {"kafka": {"bootstrap_servers": settings.kafka_bootstrap, **ctx["kafka"]}, "sources": sources}
            )
        )
        for name in names:
            establish_capture(config_path, name)
        case.after_establish(load_config(config_path).source(names[0]))

        started = time.perf_counter()
        txns = case.write()
        result["write_s"] = time.perf_counter() - started
        if txns != expected_txns:
            raise RuntimeError(f"the workload made {txns} transactions, expected {expected_txns}")
        print(f"   backlog written: {rows:,} rows in {txns:,} transactions, {result['write_s']:.1f}s", flush=True)

        common = {"server_pids": server_pids, "timeout_s": timeout_s, "dsn_env": env_var}

        def ceiling(index: int, eager: bool = False) -> dict[str, Any]:
            chosen = case.eager_ceiling() if eager else case.ceiling(index)
            assert chosen is not None  # eager only where the case has such a read
            role, spec = chosen
            run = run_worker(role, {**common, **spec}, workdir)
            what = "ceiling, no pause" if eager else f"ceiling {index + 1}"
            _check_counts(what, run, rows, expected_txns)
            print(f"   {what}: {rows / run['wall_s']:>9,.0f} ev/s in {run['wall_s']:.2f}s", flush=True)
            return run

        def capture(index: int) -> dict[str, Any]:
            name = names[index]
            run = run_worker(
                "capture",
                {
                    **common,
                    "config": str(config_path),
                    "source": name,
                    "events": rows,
                    "final_attr": case.final_attr,
                    "final": case.final,
                    "profile": str(profile_path) if profile_path and index == 0 else None,
                },
                workdir,
            )
            _check_counts(f"capture {index + 1}", run, rows, expected_txns)
            in_kafka = topic_counts(settings.kafka_bootstrap, topics[name][:2])
            if in_kafka != {topics[name][0]: rows, topics[name][1]: 2 * expected_txns}:
                raise RuntimeError(
                    f"Kafka holds {in_kafka}, expected {rows} change events and {2 * expected_txns} markers"
                )
            print(f"   capture {index + 1}: {rows / run['wall_s']:>9,.0f} ev/s in {run['wall_s']:.2f}s", flush=True)
            return run

        ceilings = [ceiling(0)]
        captures = []
        for index in range(runs):
            captures.append(capture(index))
            ceilings.append(ceiling(index + 1))
        eager = ceiling(0, eager=True) if case.eager_ceiling() is not None else None
        floors = []
        for index in range(FLOOR_RUNS if case.floor(0) is not None else 0):
            role, spec = case.floor(index)  # type: ignore[misc]
            floor_topics = [f"{names[0]}-floor-{index}-rows", f"{names[0]}-floor-{index}-tx"]
            topics[f"floor-{index}"] = floor_topics
            ensure_topics(KafkaClient(settings.kafka_bootstrap), [TopicSpec(t, 1, 1) for t in floor_topics])
            run = run_worker(role, {**common, **spec, "bootstrap": settings.kafka_bootstrap,
                                    "linger_ms": load_config(config_path).kafka.linger_ms,
                                    "rows_topic": floor_topics[0], "tx_topic": floor_topics[1]}, workdir)
            _check_counts(f"floor {index + 1}", run, rows, expected_txns)
            in_kafka = topic_counts(settings.kafka_bootstrap, floor_topics)
            if in_kafka != {floor_topics[0]: rows, floor_topics[1]: 2 * expected_txns}:
                raise RuntimeError(f"the floor left {in_kafka} in Kafka, expected {rows} rows and "
                                   f"{2 * expected_txns} markers")
            print(f"   floor {index + 1}: {rows / run['wall_s']:>9,.0f} ev/s in {run['wall_s']:.2f}s", flush=True)
            floors.append(run)

        # Each side's fastest run: noise on a shared machine (the broker, the database server and the
        # reader on the same cores) slows a run of either, it does not speed one up.
        best = max(ceilings, key=lambda run: rows / run["wall_s"])
        best_capture = max(captures, key=lambda run: rows / run["wall_s"])
        result.update(
            transactions=expected_txns,
            kafka_messages=rows + 2 * expected_txns,
            capture=_figures(best_capture, rows),
            capture_runs=[_figures(run, rows) for run in captures],
            ceiling=_figures(best, rows),
            ceiling_runs=[_figures(run, rows) for run in ceilings],
            ratio=(rows / best_capture["wall_s"]) / (rows / best["wall_s"]),
            ceiling_pause_s=PG_CEILING_DRAINED_PAUSE_S if eager is not None else None,
            eager_ceiling=None if eager is None else _figures(eager, rows),
            floor=None if not floors else _figures(max(floors, key=lambda run: rows / run["wall_s"]), rows),
            floor_runs=[_figures(run, rows) for run in floors],
            server_version=case.server_version(),
            loadavg_after=os.getloadavg()[0],
        )
        return result
    finally:
        with contextlib.suppress(Exception):
            case.cleanup()
        with contextlib.suppress(Exception):
            delete_topics(settings.kafka_bootstrap, [t for case_topics in topics.values() for t in case_topics])
        os.environ.pop(env_var, None)


def _check_counts(what: str, run: dict[str, Any], rows: int, txns: int) -> None:
    if run["events"] != rows or run["transactions"] != txns:
        raise RuntimeError(
            f"{what} read {run['events']} events in {run['transactions']} transactions, expected {rows} in {txns}"
        )


def _figures(run: dict[str, Any], rows: int) -> dict[str, Any]:
    per_1k = 1000 / rows
    wall = run["wall_s"]
    figures = {
        "events_per_s": rows / wall,
        "wall_s": wall,
        "cpu_s": run["cpu_s"],
        "cpu_s_per_1k": run["cpu_s"] * per_1k,
        "main_thread_busy": run["main_thread_cpu_s"] / wall,
        "db_cpu_s_per_1k": run["server_cpu_s"]["db"] * per_1k,
        "kafka_cpu_s_per_1k": run["server_cpu_s"]["kafka"] * per_1k,
        "max_rss_mb": run["max_rss_mb"],
    }
    if "produced_s" in run:  # capture: when the first and last events went to the producer, the wait after
        for mark in ("open_s", "first_event_s", "produced_s"):
            figures[mark] = run[mark]
        figures["tail_s"] = wall - run["produced_s"]
    return figures


# --- reporting ----------------------------------------------------------------------------------------


_OLD_DEFAULT_LINGER_MS = 5


def default_linger_ms() -> int:
    """The capture config's own `kafka.linger_ms` default (what a run without --linger-ms uses)."""
    from replicator.config import KafkaConfig

    return int(KafkaConfig.model_fields["linger_ms"].default)


def shown_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it (bench/results/...), else as it is."""
    return str(path.relative_to(REPO_DIR)) if path.is_relative_to(REPO_DIR) else str(path)


def previous_results(
    rows: int, exclude: Path, linger_ms: int | None = None
) -> tuple[list[Path], dict[tuple[str, str], Any]]:
    """For each (source, workload), its result in the most recent earlier file of the same size (and
    the same --linger-ms); and the files those came from."""
    found: dict[tuple[str, str], Any] = {}
    used: list[Path] = []
    results_dir = exclude.parent  # the folder the new results go to
    if not results_dir.exists():
        return used, found
    for path in sorted((p for p in results_dir.iterdir() if RESULT_NAME.fullmatch(p.name)), reverse=True):
        if path == exclude:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        stored_linger = data.get("meta", {}).get("linger_ms")
        if stored_linger is None:
            # Files before 2026-11-29T06:30Z recorded null for the config's default, then 5 ms.
            stored_linger = _OLD_DEFAULT_LINGER_MS
        if data.get("meta", {}).get("rows") != rows or stored_linger != linger_ms:
            continue
        for result in data.get("results", []):
            key = (result["source"], result["workload"])
            if "capture" in result and key not in found:
                found[key] = result
                if path not in used:
                    used.append(path)
    return used, found


def _delta(now: float, before: float | None) -> str:
    if not before:
        return "-"
    return f"{(now - before) / before * 100:+.1f}%"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain-text table: the first two columns left-aligned, figures right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def report(results: list[dict[str, Any]], previous: dict[tuple[str, str], Any]) -> str:
    done = [r for r in results if "capture" in r]
    out = []
    if done:
        capture_rows, detail_rows, ceiling_rows, floor_rows = [], [], [], []
        for r in done:
            cap, ceil = r["capture"], r["ceiling"]
            prev = previous.get((r["source"], r["workload"]))
            case = [r["source"], WORKLOAD_TEXT[r["workload"]]]
            capture_rows.append(
                [
                    *case,
                    f"{r['rows']:,}",
                    f"{cap['events_per_s']:,.0f}",
                    f"{ceil['events_per_s']:,.0f}",
                    f"{r['ratio'] * 100:.1f}%",
                    f"{cap['wall_s']:.2f}",
                    f"{cap['cpu_s_per_1k']:.3f}",
                    f"{cap['main_thread_busy'] * 100:.0f}%",
                    f"{cap['db_cpu_s_per_1k']:.3f}",
                    f"{cap['kafka_cpu_s_per_1k']:.3f}",
                    _delta(cap["events_per_s"], prev and prev["capture"]["events_per_s"]),
                    _delta(cap["cpu_s_per_1k"], prev and prev["capture"]["cpu_s_per_1k"]),
                ]
            )
            detail_rows.append(
                [
                    *case,
                    " / ".join(f"{run['events_per_s']:,.0f}" for run in r.get("capture_runs", [cap])),
                    f"{r['transactions']:,}",
                    f"{r['kafka_messages']:,}",
                    f"{cap['open_s']:.2f}",
                    f"{cap['first_event_s']:.2f}",
                    f"{cap['produced_s']:.2f}",
                    f"{cap['tail_s']:.2f}",
                    f"{cap['max_rss_mb']:.0f}",
                    f"{r['write_s']:.1f}",
                    f"{r['loadavg_before']:.2f}",
                ]
            )
            runs = r["ceiling_runs"]
            ceiling_rows.append(
                [
                    *case,
                    " / ".join(f"{run['events_per_s']:,.0f}" for run in runs),
                    " / ".join(f"{run['wall_s']:.2f}" for run in runs),
                    f"{ceil['cpu_s_per_1k']:.3f}",
                    f"{ceil['main_thread_busy'] * 100:.0f}%",
                    f"{ceil['db_cpu_s_per_1k']:.3f}",
                    _delta(ceil["events_per_s"], prev and prev["ceiling"]["events_per_s"]),
                    "",
                ]
            )
            eager = r.get("eager_ceiling")
            if eager:
                ceiling_rows.append(
                    [
                        "",
                        "  no pause",
                        f"{eager['events_per_s']:,.0f}",
                        f"{eager['wall_s']:.2f}",
                        f"{eager['cpu_s_per_1k']:.3f}",
                        f"{eager['main_thread_busy'] * 100:.0f}%",
                        f"{eager['db_cpu_s_per_1k']:.3f}",
                        "",
                        f"{cap['events_per_s'] / eager['events_per_s'] * 100:.1f}%",
                    ]
                )
            floor = r.get("floor")
            if floor:
                floor_rows.append(
                    [
                        *case,
                        " / ".join(f"{run['events_per_s']:,.0f}" for run in r["floor_runs"]),
                        f"{floor['events_per_s'] / ceil['events_per_s'] * 100:.1f}%",
                        f"{floor['cpu_s_per_1k']:.3f}",
                        f"{floor['main_thread_busy'] * 100:.0f}%",
                        f"{floor['db_cpu_s_per_1k']:.3f}",
                        f"{floor['kafka_cpu_s_per_1k']:.3f}",
                        f"{cap['events_per_s'] / floor['events_per_s'] * 100:.1f}%",
                    ]
                )
        out += [
            "capture into Kafka (source open -> every event confirmed by Kafka and its position acknowledged):",
            _table(
                ["source", "workload", "events", "capture ev/s", "ceiling ev/s", "capture/ceil", "wall s",
                 "cpu s/1k ev", "main thread", "db cpu s/1k", "kafka cpu s/1k", "Δ ev/s", "Δ cpu/1k"],
                capture_rows,
            ),
            "",
            "capture details (every run's ev/s; of the fastest, seconds from source open; tail = last event"
            " produced -> last position acknowledged):",
            _table(
                ["source", "workload", "runs ev/s", "txns", "kafka msgs", "open s", "first ev s", "produced s",
                 "tail s", "rss MB", "write s", "load"],
                detail_rows,
            ),
            "",
            "bare ceilings (before, between and after the capture runs; the fastest is compared with the fastest"
            " capture run; PostgreSQL's pause 20 ms when the socket is drained, and one more read without that"
            " pause is shown, with the fastest capture run's share of it):",
            _table(
                ["source", "workload", "ev/s", "wall s", "cpu s/1k ev", "main thread", "db cpu s/1k",
                 "Δ ev/s (faster)", "capture/this"],
                ceiling_rows,
            ),
        ]
        if floor_rows:
            out += [
                "",
                "floor (not the product: the ceiling's read, each insert decoded by capture's compiled decoder, key and"
                " bare row as JSON, one message per change and the raw BEGIN/COMMIT bytes, until Kafka confirmed all;"
                " no envelope, no checkpoint), compared with the fastest ceiling:",
                _table(
                    ["source", "workload", "runs ev/s", "floor/ceil", "cpu s/1k ev", "main thread", "db cpu s/1k",
                     "kafka cpu s/1k", "capture/floor"],
                    floor_rows,
                ),
            ]
    for r in results:
        if "error" in r:
            out.append(f"FAILED {r['source']} / {r['workload']}: {r['error']}")
    return "\n".join(out)


def profile_summary(path: Path, events: int, top: int) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(str(path), stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    total = stats.total_tt  # type: ignore[attr-defined]
    return (
        f"profile {path.name}: {total:.2f}s profiled, {total / events * 1e6:.1f} µs/event under cProfile\n"
        + stream.getvalue()
    )


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import confluent_kafka

    packages = ("psycopg2-binary", "psycopg", "mysql-replication", "PyMySQL", "orjson", "confluent-kafka")
    found = {name: version(name) for name in packages}
    found["librdkafka"] = confluent_kafka.libversion()[0]
    return found


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()
    return None


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Capture throughput into Kafka vs a bare change-log read, for PostgreSQL and MariaDB.",
        epilog="Reuses the stack in $REPLICATOR_DEVSTACK_DIR when one runs there; else starts its own.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=200_000, help="rows per workload (default 200000)")
    size.add_argument("--quick", action="store_true", help="20000 rows per workload")
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=0.0,
        help="exit 1 if capture/ceiling falls below this for any case, e.g. 0.1 (default 0: report only)",
    )
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated subset of: %(default)s")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per run (default 900)")
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=None,
        help="the capture config's kafka.linger_ms (default: the config's own default)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run capture under cProfile (slower), print where the time goes; results are not saved",
    )
    parser.add_argument("--no-warm-up", action="store_true",
                        help=f"skip the discarded {WARM_UP_ROWS:,}-row case that warms the broker up first")
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed per profile (default 25)")
    parser.add_argument("--runs", type=int, default=2,
                        help="capture runs per case, each between two ceiling runs (default 2)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where result files (and profiles) are written and earlier ones looked for"
                        " (default: bench/results)")
    parser.add_argument("--worker", nargs=2, metavar=("ROLE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 20_000
    args.sources = [s for s in args.sources.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    bad = [s for s in args.sources if s not in SOURCES] + [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown source/workload: {', '.join(bad)}")
    if args.rows < 1:
        parser.error("--rows must be positive")
    if args.runs < 1:
        parser.error("--runs must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker[0], Path(args.worker[1]))

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    meta: dict[str, Any] = {
        "timestamp": stamp,
        "rows": args.rows,
        "git_commit": git_commit(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions(),
        "loadavg_start": os.getloadavg(),
        "heartbeat_interval_s": HEARTBEAT_S,
        # The linger the capture ran with: --linger-ms, else the config's default.
        "linger_ms": default_linger_ms() if args.linger_ms is None else args.linger_ms,
        "capture_runs": args.runs,
    }
    profiles: list[tuple[Path, int]] = []
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as tmp, bench_stack(Path(tmp)) as stack:
        settings, server_pids, stack_text = stack
        meta["stack"] = stack_text
        kafka = {} if args.linger_ms is None else {"linger_ms": args.linger_ms}
        ctx = {
            "settings": settings, "server_pids": server_pids, "workdir": Path(tmp), "timeout_s": args.timeout,
            "kafka": kafka, "runs": args.runs,
        }
        if not args.no_warm_up:
            warm_up(ctx, meta)
        for kind in args.sources:
            for workload in args.workloads:
                profile_path = None
                if args.profile:
                    args.results_dir.mkdir(parents=True, exist_ok=True)
                    profile_path = args.results_dir / f"profile-{stamp}-{kind}-{workload}.pstats"
                try:
                    results.append(run_case(kind, workload, args.rows, ctx, profile_path))
                    if profile_path is not None:
                        profiles.append((profile_path, args.rows))
                except Exception as exc:  # noqa: BLE001 - reported, and the other cases still run
                    results.append({"source": kind, "workload": workload, "rows": args.rows, "error": str(exc)})
                    print(f"   FAILED: {exc}", flush=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["total_s"] = time.monotonic() - started

    print()
    print(f"capture benchmark {stamp}: {args.rows:,} rows per workload, {meta['cpus']} CPUs, "
          f"load {meta['loadavg_start'][0]:.2f} -> {meta['loadavg_end'][0]:.2f}, stack {meta['stack']}, "
          f"{meta['total_s']:.0f}s in all, linger.ms {meta['linger_ms']}")
    if args.profile:
        print("(profiled run: capture figures include cProfile's overhead and are not saved)")
        print(report(results, {}))
        for path, events in profiles:
            print()
            print(profile_summary(path, events, args.profile_top))
    else:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out_path = args.results_dir / f"capture-{stamp}.json"
        prev_paths, previous = previous_results(args.rows, exclude=out_path, linger_ms=meta["linger_ms"])
        compared = ", ".join(shown_path(p) for p in prev_paths)
        print(f"compared with: {compared or 'nothing (no earlier run of this size)'}")
        print(report(results, previous))
        out_path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"\nresults: {shown_path(out_path)}")

    failed = any("error" in r for r in results)
    below = [r for r in results if "ratio" in r and r["ratio"] < args.min_ratio]
    for r in below:
        print(f"BELOW --min-ratio {args.min_ratio}: {r['source']} / {r['workload']} at {r['ratio']:.3f}")
    if failed:
        return 2
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
