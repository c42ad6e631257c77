"""The demo's live terminal view: what the replicator is doing, per flow and per system, while the simulators
drive both applications.

Sources, each read in a background thread:
- the audit topic `replicator.audit`, consumed from its end: every apply decision names its mapping rule (hence
  its flow: the file of mappings/prestashop-odoo that holds the rule), the source commit time of the change
  (`incoming_version.ts_ms`) and the outcome of every field. Events/s counts audit records over the last 5 s;
  the end-to-end latency is the audit record's Kafka timestamp minus the source commit time (MariaDB commit
  times have whole seconds, so shop -> ERP latencies read up to a second high); conflicts count the field
  decisions where two writers disagreed (`Decision.conflict`: an incoming value refused while the target holds
  another one, or an applied value that replaced a local edit; the audit record has no `local_edit` flag, so the
  latter is read from the decision's reason);
- both databases, polled every second: row counts of the main tables and the dead letters of both appliers
  (`replicator_dead_letter`, attributed to flows through the source tables of the keys they hold);
- the simulators' action counters.

On a terminal the view is a rich `Live` display refreshed twice a second; otherwise (a pipe, a CI log) it prints
a one-line summary every 5 seconds.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import psycopg
import pymysql
import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from replicator.demo.config import MAPPINGS_DIR
from replicator.transport.audit import field_decisions
from replicator.transport.topics import AUDIT_TOPIC

FLOW_ORDER = ("customers", "orders", "status", "invoices", "stock")
RATE_WINDOW_S = 5.0
LATENCY_WINDOW_S = 30.0
SUMMARY_EVERY_S = 5.0
# Outcomes where the incoming value did not become the field's value (replicator.conflict.resolver._REFUSALS).
REFUSALS = frozenset({"lost", "kept_local", "owner_refused", "owner_reasserted", "monotonic_kept"})
# (label, shop table, ERP table): the main tables whose row counts are shown side by side.
TABLE_PAIRS = (
    ("customers", "ps_customer", "res_partner"),
    ("orders", "ps_orders", "sale_order"),
    ("order lines", "ps_order_detail", "sale_order_line"),
    ("invoices", "ps_order_invoice", "account_move"),
    ("payments", "ps_order_payment", "account_payment"),
)


class CountingSimulator(Protocol):
    @property
    def counts(self) -> collections.Counter[str]: ...


# ---------------------------------------------------------------------------------------------------------------
# Flows: the rules of each mapping file
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowCatalog:
    """Which flow (mapping file) each rule and each source table belongs to."""

    flows: tuple[str, ...]
    rule_flow: Mapping[str, str]
    table_flows: Mapping[str, tuple[str, ...]]  # source table -> flows reading it

    @classmethod
    def load(cls, folder: Path = MAPPINGS_DIR) -> FlowCatalog:
        rule_flow: dict[str, str] = {}
        table_flows: dict[str, list[str]] = collections.defaultdict(list)
        found: list[str] = []
        for path in sorted(folder.glob("*.yaml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            rules = document.get("rules") or []
            if not rules:
                continue
            flow = path.stem
            found.append(flow)
            for rule in rules:
                rule_flow[str(rule["name"])] = flow
                table = str(rule["source"]["table"])
                if flow not in table_flows[table]:
                    table_flows[table].append(flow)
        ordered = [f for f in FLOW_ORDER if f in found] + [f for f in found if f not in FLOW_ORDER]
        return cls(tuple(ordered), rule_flow, {t: tuple(f) for t, f in table_flows.items()})

    def flows_of_key(self, key: str) -> tuple[str, ...]:
        """The flows of a dead letter's key, '<source>.<namespace>.<table>:<json key>'."""
        topic = key.split(":", 1)[0]
        return self.table_flows.get(topic.rsplit(".", 1)[-1], ())


# ---------------------------------------------------------------------------------------------------------------
# Audit topic
# ---------------------------------------------------------------------------------------------------------------


def is_conflict(decision: Mapping[str, Any]) -> bool:
    """Whether an audited field decision is one where two writers disagreed (see the module doc)."""
    outcome = decision.get("outcome")
    if outcome in REFUSALS:
        # Refusing a value equal to the one held, or where the target holds nothing yet (an owned field of a new
        # row), is no disagreement.
        holds = decision.get("current") is not None or decision.get("current_version") is not None
        return holds and decision.get("incoming") != decision.get("current")
    return outcome == "applied" and bool(decision.get("written")) and "local edit" in str(decision.get("reason"))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class FlowStats:
    arrivals: collections.deque[float] = field(default_factory=collections.deque)  # monotonic seconds
    latencies: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)  # (at, ms)
    events: int = 0
    conflicts: int = 0


class AuditStats:
    """Per-flow counters fed by the audit tail; read by the view. Thread-safe."""

    def __init__(self, flows: Iterable[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._flows = {flow: FlowStats() for flow in flows}
        self.echoes = 0
        self.unknown = 0

    def record(self, flow: str, latency_ms: float | None, conflicts: int) -> None:
        now = self._clock()
        with self._lock:
            stats = self._flows.setdefault(flow, FlowStats())
            stats.events += 1
            stats.conflicts += conflicts
            stats.arrivals.append(now)
            if latency_ms is not None:
                stats.latencies.append((now, latency_ms))
            self._trim(stats, now)

    def _trim(self, stats: FlowStats, now: float) -> None:
        while stats.arrivals and stats.arrivals[0] < now - RATE_WINDOW_S:
            stats.arrivals.popleft()
        while stats.latencies and stats.latencies[0][0] < now - LATENCY_WINDOW_S:
            stats.latencies.popleft()

    def snapshot(self) -> dict[str, tuple[float, float | None, float | None, int, int]]:
        """flow -> (events/s over the last 5 s, latency p50, p95 in ms over the last 30 s, conflicts, events)."""
        now = self._clock()
        result: dict[str, tuple[float, float | None, float | None, int, int]] = {}
        with self._lock:
            for flow, stats in self._flows.items():
                self._trim(stats, now)
                latencies = [ms for _, ms in stats.latencies]
                p50 = percentile(latencies, 0.5) if latencies else None
                p95 = percentile(latencies, 0.95) if latencies else None
                result[flow] = (len(stats.arrivals) / RATE_WINDOW_S, p50, p95, stats.conflicts, stats.events)
        return result

    def overall_latency(self) -> tuple[float | None, float | None]:
        """Latency p50 and p95 in ms over every flow, last 30 s."""
        now = self._clock()
        with self._lock:
            latencies = []
            for stats in self._flows.values():
                self._trim(stats, now)
                latencies += [ms for _, ms in stats.latencies]
        if not latencies:
            return None, None
        return percentile(latencies, 0.5), percentile(latencies, 0.95)


def parse_audit_record(value: bytes, kafka_timestamp_ms: int | None, catalog: FlowCatalog,
                       targets: frozenset[str] | None = None) -> tuple[str | None, float | None, int]:
    """(flow or None, end-to-end latency in ms or None, conflicts) of one audit record; flow None for a record
    that is not an apply decision, or (with `targets`) that another pipeline's applier wrote (the topic is
    shared by every pipeline on the cluster)."""
    record = orjson.loads(value)
    if not isinstance(record, dict) or record.get("decision") != "applied":
        return None, None, 0
    if targets is not None and record.get("target") not in targets:
        return None, None, 0
    flow = catalog.rule_flow.get(str(record.get("mapping")))
    fields = field_decisions(record)
    commits = [int(f["incoming_version"]["ts_ms"]) for f in fields
               if isinstance(f.get("incoming_version"), dict) and f["incoming_version"].get("ts_ms") is not None]
    latency = float(kafka_timestamp_ms - max(commits)) if commits and kafka_timestamp_ms else None
    return flow, latency, sum(1 for f in fields if is_conflict(f))


class AuditTail(threading.Thread):
    """Consumes `replicator.audit` from its end (from when the view starts) into an AuditStats."""

    def __init__(self, bootstrap: str, catalog: FlowCatalog, stats: AuditStats,
                 targets: frozenset[str] | None = None) -> None:
        super().__init__(name="demo-audit-tail", daemon=True)
        self.bootstrap = bootstrap
        self.catalog = catalog
        self.targets = targets
        self.stats = stats
        self.error: str | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        from confluent_kafka import (
            OFFSET_END,
            TIMESTAMP_NOT_AVAILABLE,
            Consumer,
            KafkaError,
            KafkaException,
            TopicPartition,
        )

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"replicator-demo-view-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "enable.partition.eof": False,
        })
        try:
            assigned = False
            while not self._stop_event.is_set():
                if not assigned:
                    metadata = consumer.list_topics(AUDIT_TOPIC, timeout=5)
                    topic = metadata.topics.get(AUDIT_TOPIC)
                    if topic is None or topic.error is not None or not topic.partitions:
                        self._stop_event.wait(1.0)
                        continue
                    consumer.assign([TopicPartition(AUDIT_TOPIC, p, OFFSET_END) for p in topic.partitions])
                    assigned = True
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                failure = msg.error()
                if failure is not None:
                    if failure.code() != KafkaError._PARTITION_EOF:
                        self.error = str(failure)
                    continue
                kind, stamp = msg.timestamp()
                try:
                    flow, latency, conflicts = parse_audit_record(
                        msg.value() or b"null", None if kind == TIMESTAMP_NOT_AVAILABLE else stamp, self.catalog,
                        self.targets)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.stats.unknown += 1
                    continue
                if flow is not None:
                    self.stats.record(flow, latency, conflicts)
        except (KafkaException, RuntimeError) as exc:  # the view must not take the demo down
            self.error = f"audit tail stopped: {type(exc).__name__}: {exc}"
        finally:
            consumer.close()


# ---------------------------------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SystemCounts:
    tables: dict[str, int | None] = field(default_factory=dict)
    dead_letters: int = 0  # open ones (dead, held, retry)
    dead_by_flow: collections.Counter[str] = field(default_factory=collections.Counter)
    error: str | None = None


class CountsPoller(threading.Thread):
    """Polls row counts and dead letters of both databases every second."""

    def __init__(self, shop_connect: Callable[[], Any], erp_connect: Callable[[], Any], catalog: FlowCatalog,
                 interval_s: float = 1.0) -> None:
        super().__init__(name="demo-counts", daemon=True)
        self._connect = {"shop": shop_connect, "erp": erp_connect}
        self.catalog = catalog
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._counts = {"shop": SystemCounts(), "erp": SystemCounts()}
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def counts(self) -> dict[str, SystemCounts]:
        with self._lock:
            return dict(self._counts)

    def run(self) -> None:
        connections: dict[str, Any] = {}
        try:
            while not self._stop_event.is_set():
                for system in ("shop", "erp"):
                    try:
                        if system not in connections:
                            connections[system] = self._open(system)
                        counts = self._poll(system, connections[system])
                    except (pymysql.err.Error, psycopg.Error, OSError) as exc:  # show it, reconnect next time
                        counts = SystemCounts(error=f"{type(exc).__name__}: {exc}")
                        conn = connections.pop(system, None)
                        if conn is not None:
                            with contextlib.suppress(pymysql.err.Error, psycopg.Error, OSError):
                                conn.close()
                    with self._lock:
                        self._counts[system] = counts
                self._stop_event.wait(self.interval_s)
        finally:
            for conn in connections.values():
                with contextlib.suppress(pymysql.err.Error, psycopg.Error, OSError):
                    conn.close()

    def _open(self, system: str) -> Any:
        conn = self._connect[system]()
        if system == "shop":
            conn.autocommit(True)
        else:
            conn.autocommit = True
        return conn

    def _query(self, system: str, conn: Any, sql: str) -> list[tuple[Any, ...]]:
        if system == "shop":
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        return list(conn.execute(sql).fetchall())

    def _poll(self, system: str, conn: Any) -> SystemCounts:
        tables = [pair[1] if system == "shop" else pair[2] for pair in TABLE_PAIRS]
        sql = " UNION ALL ".join(f"SELECT '{table}', COUNT(*) FROM {table}" for table in tables)
        counts = SystemCounts(tables={str(name): int(n) for name, n in self._query(system, conn, sql)})
        keys = "`keys`" if system == "shop" else '"keys"'
        try:
            letters = self._query(system, conn, f"SELECT {keys} FROM replicator_dead_letter "
                                                "WHERE status IN ('dead', 'held', 'retry')")
        except (pymysql.err.ProgrammingError, psycopg.errors.UndefinedTable):  # no applier has run here yet
            letters = []
        counts.dead_letters = len(letters)
        for (raw,) in letters:
            parsed = raw if isinstance(raw, list) else orjson.loads(raw or "[]")
            flows = {flow for key in parsed for flow in self.catalog.flows_of_key(str(key))}
            counts.dead_by_flow.update(flows)
        return counts


# ---------------------------------------------------------------------------------------------------------------
# The view
# ---------------------------------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


class LiveView:
    """The live display of the demo. Start it with `with LiveView(...) as view:`; set `view.phase` to say what
    the demo is doing, `view.note()` to show a message."""

    def __init__(
        self,
        console: Console,
        *,
        bootstrap: str,
        shop_connect: Callable[[], Any],
        erp_connect: Callable[[], Any],
        simulators: Mapping[str, CountingSimulator],
        duration_s: float,
        targets: Iterable[str] | None = None,
        catalog: FlowCatalog | None = None,
    ) -> None:
        """`targets`: the appliers whose audit records count (default: every one on the cluster)."""
        self.console = console
        self.catalog = catalog or FlowCatalog.load()
        self.stats = AuditStats(self.catalog.flows)
        self.audit = AuditTail(bootstrap, self.catalog, self.stats, None if targets is None else frozenset(targets))
        self.poller = CountsPoller(shop_connect, erp_connect, self.catalog)
        self.simulators = simulators
        self.duration_s = duration_s
        self.phase = "simulating"
        self.notes: collections.deque[str] = collections.deque(maxlen=3)
        self.started = time.monotonic()
        self._live: Live | None = None
        self._stop_summary = threading.Event()
        self._summary_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        self.audit.start()
        self.poller.start()
        if self.console.is_terminal:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2,
                              transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        else:
            self._summary_thread = threading.Thread(target=self._summaries, name="demo-summary", daemon=True)
            self._summary_thread.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        if self._summary_thread is not None:
            self._stop_summary.set()
            self._summary_thread.join(5)
            self._summary_thread = None
            self.console.print(self.summary_line(), highlight=False, soft_wrap=True)
        self.audit.stop()
        self.poller.stop()
        self.audit.join(10)
        self.poller.join(10)

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self._live is None:
            self.console.print(text, highlight=False, soft_wrap=True)

    def _summaries(self) -> None:
        while not self._stop_summary.wait(SUMMARY_EVERY_S):
            self.console.print(self.summary_line(), highlight=False, soft_wrap=True)

    # -- what is shown -----------------------------------------------------------------------------------------

    def _elapsed(self) -> tuple[float, float]:
        elapsed = time.monotonic() - self.started
        return elapsed, max(0.0, self.duration_s - elapsed)

    def _simulator_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for name, simulator in self.simulators.items():
            try:
                counts[name] = dict(simulator.counts)
            except RuntimeError:  # changed size while copied: show it next time
                counts[name] = {}
        return counts

    def render(self) -> RenderableType:
        elapsed, remaining = self._elapsed()
        header = Text.assemble(("replicator demo", "bold"), "  ", (self.phase, "cyan"),
                               f"   elapsed {_clock(elapsed)}   remaining {_clock(remaining)}")
        audit = self.stats.snapshot()
        systems = self.poller.counts()
        flows = Table(title="flows (from replicator.audit)", title_justify="left", expand=False)
        for column in ("flow", "events/s", "latency p50", "latency p95", "conflicts", "dead letters"):
            flows.add_column(column, justify="left" if column == "flow" else "right")
        for flow in self.catalog.flows:
            rate, p50, p95, conflicts, _ = audit.get(flow, (0.0, None, None, 0, 0))
            dead = systems["shop"].dead_by_flow[flow] + systems["erp"].dead_by_flow[flow]
            flows.add_row(flow, f"{rate:.1f}", _ms(p50), _ms(p95), str(conflicts),
                          Text(str(dead), style="bold red" if dead else ""))
        tables = Table(title="rows (polled every second)", title_justify="left", expand=False)
        tables.add_column("")
        tables.add_column("shop (MariaDB)")
        tables.add_column("rows", justify="right")
        tables.add_column("ERP (PostgreSQL)")
        tables.add_column("rows", justify="right")
        for label, shop_table, erp_table in TABLE_PAIRS:
            tables.add_row(label, shop_table, _count(systems["shop"].tables.get(shop_table)), erp_table,
                           _count(systems["erp"].tables.get(erp_table)))
        tables.add_row("dead letters (open)", "replicator_dead_letter", str(systems["shop"].dead_letters),
                       "replicator_dead_letter", str(systems["erp"].dead_letters))
        parts: list[RenderableType] = [header, flows, tables]
        for name, counts in self._simulator_counts().items():
            actions = ", ".join(f"{action} {n}" for action, n in sorted(counts.items())) or "nothing yet"
            parts.append(Text.assemble((f"{name} simulator: ", "bold"), actions))
        problems = [f"{system} database: {c.error}" for system, c in systems.items() if c.error]
        if self.audit.error:
            problems.append(f"audit topic: {self.audit.error}")
        parts += [Text(p, style="yellow") for p in problems] + [Text(n, style="yellow") for n in self.notes]
        return Group(*parts)

    def summary_line(self) -> str:
        """One line for logs: time, events/s and latency over all flows, conflicts, dead letters, row counts."""
        elapsed, remaining = self._elapsed()
        audit = self.stats.snapshot()
        systems = self.poller.counts()
        rate = sum(entry[0] for entry in audit.values())
        per_flow = ", ".join(f"{flow} {audit[flow][0]:.1f}" for flow in self.catalog.flows if flow in audit)
        p50, p95 = self.stats.overall_latency()
        conflicts = sum(entry[3] for entry in audit.values())
        dead = systems["shop"].dead_letters + systems["erp"].dead_letters
        shop_orders = _count(systems["shop"].tables.get("ps_orders"))
        erp_orders = _count(systems["erp"].tables.get("sale_order"))
        actions = " ".join(f"{name} {sum(c.values())}" for name, c in self._simulator_counts().items())
        return (f"[{_clock(elapsed)} +{_clock(remaining)} {self.phase}] {rate:.1f} events/s ({per_flow}); "
                f"latency p50 {_ms(p50)} p95 {_ms(p95)}; "
                f"conflicts {conflicts}; dead letters {dead}; orders shop {shop_orders} / ERP {erp_orders}; "
                f"actions {actions}")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
