"""How fast a bare pgoutput reader gets through a backlog, by how long it pauses when it drained the socket.

The measurement behind capture_bench.py's PG_CEILING_DRAINED_PAUSE_S. One database with the benchmark's
order-line table, one slot, a backlog of N rows (one transaction per row, or all in one); then the slot
is read again and again, never acknowledged, so every read gets the whole backlog: for each pause in
random order, `--repeats` times. A read is the capture benchmark's bare ceiling loop (psycopg2
`read_message`, nothing decoded); when `read_message` returns None it sleeps the pause, then waits on
the socket.

    .venv/bin/python bench/pg_read_pause.py                      # one-row transactions, 200,000 rows
    .venv/bin/python bench/pg_read_pause.py --workload bulk --pauses 0,0.001,0.02

Reuses the stack in $REPLICATOR_DEVSTACK_DIR when one runs there (else starts its own); prints ev/s,
the reader's CPU and how many times it found the socket drained, per read. Nothing is saved.
"""

from __future__ import annotations

import argparse
import random
import select
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from capture_bench import TABLE, bench_stack


def write_backlog(dsn: str, workload: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""CREATE TABLE {TABLE} (id integer PRIMARY KEY, qty integer NOT NULL, sku varchar(40) NOT NULL,
                price numeric(10,2) NOT NULL, created_at timestamptz NOT NULL)"""
        )
        conn.execute(f"CREATE PUBLICATION pause_pub FOR TABLE {TABLE}")
        conn.execute("SELECT pg_create_logical_replication_slot('pause_slot', 'pgoutput')")
        conn.execute("SET synchronous_commit = off")
        if workload == "single":
            conn.execute(
                f"""CREATE PROCEDURE fill(n integer) LANGUAGE plpgsql AS $$ BEGIN
                  FOR i IN 1 .. n LOOP
                    INSERT INTO {TABLE} VALUES (i, i % 100, 'SKU-' || i, (i % 100000) / 100.0, clock_timestamp());
                    COMMIT;
                  END LOOP; END $$"""
            )
            conn.execute("CALL fill(%s)", (rows,))
        else:
            conn.execute(
                f"""INSERT INTO {TABLE} SELECT g, g %% 100, 'SKU-' || g, (g %% 100000) / 100.0, clock_timestamp()
                    FROM generate_series(1, %s) AS g""",
                (rows,),
            )


def read_once(dsn: str, rows: int, pause_s: float) -> tuple[float, float, int]:
    """(wall s, reader CPU s, drained-socket count) of one read of the whole backlog."""
    import psycopg2
    import psycopg2.errors
    import psycopg2.extras

    deadline = time.monotonic() + 30
    while True:  # the previous read's walsender may still hold the slot for a moment
        conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        cursor = conn.cursor()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            cursor.start_replication(slot_name="pause_slot", decode=False,
                                     options={"proto_version": "1", "publication_names": "pause_pub"})
            break
        except psycopg2.errors.ObjectInUse:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    seen = drained = 0
    while seen < rows:
        msg = cursor.read_message()
        if msg is None:
            drained += 1
            if pause_s:
                time.sleep(pause_s)
            select.select([cursor], [], [], 1.0)
            continue
        if msg.payload[0] == 0x49:  # I
            seen += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    conn.close()  # never acknowledged: the next read gets the same backlog
    return wall, cpu, drained


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("single", "bulk"), default="single",
                        help="one transaction per row (default) or every row in one")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pauses", default="0,0.0005,0.001,0.002,0.005,0.01,0.02",
                        help="comma-separated pauses in seconds (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    pauses = [float(p) for p in args.pauses.split(",") if p]
    import psycopg

    with tempfile.TemporaryDirectory(prefix="pg-read-pause-") as tmp, bench_stack(Path(tmp)) as stack:
        settings: Any = stack[0]
        database = f"bench_pause_{uuid.uuid4().hex[:8]}"
        dsn = urlunsplit(urlsplit(settings.erp_admin_dsn)._replace(path=f"/{database}"))
        with psycopg.connect(settings.erp_admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            write_backlog(dsn, args.workload, args.rows)
            reads: dict[float, list[tuple[float, float, int]]] = {p: [] for p in pauses}
            for _ in range(args.repeats):
                for pause in random.sample(pauses, len(pauses)):
                    reads[pause].append(read_once(dsn, args.rows, pause))
            print(f"{args.rows:,} rows, {args.workload}, {args.repeats} reads per pause (ev/s, reader cpu s, drained)")
            for pause in pauses:
                cells = "   ".join(f"{args.rows / w:>9,.0f} {c:5.2f} {d:>7,}" for w, c, d in reads[pause])
                print(f"pause {pause * 1000:5.1f} ms: {cells}")
        finally:
            with psycopg.connect(settings.erp_admin_dsn, autocommit=True) as admin:
                deadline = time.monotonic() + 30
                while True:  # the last read's walsender lets go of the slot a moment after it closed
                    admin.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                  "WHERE database = %s AND active_pid IS NULL", (database,))
                    left = admin.execute("SELECT count(*) FROM pg_replication_slots WHERE database = %s",
                                         (database,)).fetchone()
                    if not left or not left[0] or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
