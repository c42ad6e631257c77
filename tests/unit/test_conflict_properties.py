"""Property tests: the outcome of conflict resolution does not depend on delivery order or duplication.

A simulated target row (values + versions table) receives a generated set of TargetOps from two systems
of different priorities, with commit-time ties, in random orders with duplicates. Every policy is on the
row: last_writer_wins, owner, monotonic, and two delta counters (an int and a decimal string). Upstream
de-duplication by position is simulated for deltas (a re-delivered event is applied once); for the
other policies the duplicates are fed again and must change nothing.

Two-replica simulations then run one target per system, each making its own local edits and receiving
the other's events (in any order, with duplicates): concurrent edits of different fields both survive,
and for the same field both replicas converge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.conflict import FieldState, Outcome, Resolution, resolve
from replicator.mapping.ops import NO_PREVIOUS, FieldChange, OpKind, Policy, TargetOp, Version

SHOP, ERP = "shop", "erp"
PRIORITY = {ERP: 1, SHOP: 2}
OTHER = {SHOP: ERP, ERP: SHOP}
OWNER = ERP  # the owned column's owner

LWW, OWNED, STATE, QTY, AMOUNT = "lww", "owned", "state", "qty", "amount"
COLUMNS = (LWW, OWNED, STATE, QTY, AMOUNT)
DELTAS = (QTY, AMOUNT)


def rank_of(value: Any) -> int | None:
    """Monotonic values are (rank, tag) pairs, so the applier's ranking is the first item."""
    return None if value is None else int(value[0])


def change(column: str, value: Any) -> FieldChange:
    if column in (LWW, "phone", "email"):
        return FieldChange(value, Policy.LAST_WRITER_WINS)
    if column == OWNED:
        return FieldChange(value, Policy.OWNER, owner=OWNER)
    if column == STATE:
        return FieldChange(value, Policy.MONOTONIC, rank=rank_of(value))
    assert column in DELTAS, column
    return FieldChange(value, Policy.DELTA)


@dataclass
class SimRow:
    """A target row: its values, its versions table, and what it knows of local edits."""

    exists: bool
    values: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, tuple[Version, Any]] = field(default_factory=dict)
    local: dict[str, Version] = field(default_factory=dict)  # per-field local edit times
    row_local: Version | None = None  # the row's last local edit time (what a database can tell)
    row_level: bool = False  # pass the row time (True) or the field time (False) as local_version

    def state(self, column: str) -> FieldState:
        stored = self.versions.get(column)
        return FieldState(
            current=self.values.get(column),
            version=None if stored is None else stored[0],
            written=None if stored is None else stored[1],
            local_version=self.row_local if self.row_level else self.local.get(column),
            rank=rank_of(self.values.get(column)) if column == STATE else None,
        )

    def apply(self, op: TargetOp) -> Resolution:
        resolution = resolve(op, {c: self.state(c) for c in op.fields}, self.exists)
        self.exists = True  # an upsert creates the row even when every field is refused
        self.values.update(resolution.writes)
        self.versions.update(resolution.versions)
        return resolution

    def edit(self, column: str, value: Any, version: Version) -> None:
        """A local user's edit (not through the replicator). The database tells its time, not its
        position: the applier builds local versions without one."""
        self.values[column] = value
        self.local[column] = self.row_local = Version(version.ts_ms, version.system, version.priority, "")

    def snapshot(self) -> tuple[bool, dict[str, Any], dict[str, tuple[Version, Any]]]:
        return self.exists, dict(self.values), dict(self.versions)


def make_op(fields: dict[str, Any], version: Version, previous: dict[str, Any] | None = None) -> TargetOp:
    """`previous`: per last_writer_wins column, the source's value before the change (its before image)."""
    changes = {c: change(c, value) for c, value in fields.items()}
    for column, value in (previous or {}).items():
        changes[column] = FieldChange(changes[column].value, Policy.LAST_WRITER_WINS, previous=value)
    return TargetOp(OpKind.UPSERT, "public.t", {"id": 1}, changes, version=version, mapping="sim")


# --- one target, many orders --------------------------------------------------------------------------


@st.composite
def event_sets(draw: st.DrawFn) -> list[TargetOp]:
    """Distinct events from both systems: commit times from a small range (many ties), positions
    increasing per system, a random subset of the columns each, unique values."""
    count = draw(st.integers(1, 8))
    sequence = {SHOP: 0, ERP: 0}
    ops: list[TargetOp] = []
    for number in range(count):
        system = draw(st.sampled_from([SHOP, ERP]))
        sequence[system] += 1
        version = Version(draw(st.integers(1, 4)), system, PRIORITY[system], f"{sequence[system]:08d}")
        columns = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, unique=True))
        fields: dict[str, Any] = {}
        for column in columns:
            if column in (LWW, OWNED):
                fields[column] = f"{system}-{number}"
            elif column == STATE:
                fields[column] = (draw(st.integers(0, 3)), f"{system}-{number}")
            elif column == QTY:
                fields[column] = draw(st.integers(-5, 5))
            else:
                fields[column] = f"{Decimal(draw(st.integers(-999, 999))) / 100:.2f}"
        ops.append(make_op(fields, version))
    return ops


INITIAL_KINDS = ["missing", "pre_existing", "replicated"]


def initial_row(kind: str) -> SimRow:
    """missing; present with values the replicator never wrote; present with replicated values (ts 0)."""
    if kind == "missing":
        return SimRow(exists=False)
    values = {LWW: "init", OWNED: "init", STATE: (1, "init"), QTY: 10, AMOUNT: "1.50"}
    row = SimRow(exists=True, values=values)
    if kind == "replicated":
        seed = Version(0, ERP, PRIORITY[ERP], "00000000")
        row.versions = {c: (seed, values[c]) for c in (LWW, OWNED, STATE)}
    return row


@st.composite
def deliveries(draw: st.DrawFn, ops: list[TargetOp]) -> list[int]:
    """A delivery order: every event at least once, some again, all shuffled."""
    repeats = draw(st.lists(st.integers(0, len(ops) - 1), max_size=len(ops) * 2))
    return draw(st.permutations(list(range(len(ops))) + repeats))


def deliver(row: SimRow, ops: list[TargetOp], order: list[int]) -> None:
    """Feed `ops` in `order`. A repeat has its deltas removed (upstream de-duplication by position) and
    must change nothing else."""
    seen: set[int] = set()
    for index in order:
        op = ops[index]
        if index in seen:
            repeat = TargetOp(
                op.kind,
                op.table,
                op.key,
                {c: f for c, f in op.fields.items() if f.policy is not Policy.DELTA},
                version=op.version,
                mapping=op.mapping,
            )
            before = row.snapshot()
            resolution = row.apply(repeat)
            assert resolution.writes == {} and resolution.versions == {}, resolution.decisions
            assert not resolution.changed
            assert row.snapshot() == before
            assert all(d.outcome is not Outcome.APPLIED for d in resolution.decisions)
        else:
            seen.add(index)
            row.apply(op)


def key(version: Version) -> tuple[int, int, str]:
    return version.sort_key()


def expected_state(kind: str, ops: list[TargetOp]) -> dict[str, Any]:
    """What the row must hold, computed directly from the event set (not through the resolver)."""
    start = initial_row(kind)
    expected: dict[str, Any] = {}
    with_version = [(op, op.version) for op in ops if op.version is not None]
    for column in (LWW, OWNED):
        writes = [
            (key(version), op.fields[column].value)
            for op, version in with_version
            if column in op.fields and (column == LWW or version.system == OWNER)
        ]
        expected[column] = max(writes)[1] if writes else start.values.get(column)
    # Monotonic: the highest (rank, version); the initial value competes with its rank only (its version,
    # the seed at ts 0 or none, is older than every event).
    states = [
        ((op.fields[STATE].value[0], 1, key(version)), op.fields[STATE].value)
        for op, version in with_version
        if STATE in op.fields
    ]
    initial = start.values.get(STATE)
    if initial is not None:
        states.append(((initial[0], 0, (0, 0, "")), initial))
    expected[STATE] = max(states)[1] if states else None
    amounts = [op.fields[QTY].value for op in ops if QTY in op.fields]
    expected[QTY] = start.values.get(QTY, 0) + sum(amounts) if (amounts or start.exists) else None
    cents = [Decimal(op.fields[AMOUNT].value) for op in ops if AMOUNT in op.fields]
    total = Decimal(start.values.get(AMOUNT, "0.00")) + sum(cents, Decimal("0.00"))
    expected[AMOUNT] = f"{total:.2f}" if (cents or start.exists) else None
    return expected


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(INITIAL_KINDS), ops=event_sets(), data=st.data())
def test_final_state_is_the_same_for_every_order_and_duplication(
    kind: str, ops: list[TargetOp], data: st.DataObject
) -> None:
    finals = []
    for _ in range(3):
        row = initial_row(kind)
        deliver(row, ops, data.draw(deliveries(ops)))
        finals.append(row.snapshot())
    assert finals[0] == finals[1] == finals[2]
    exists, values, _ = finals[0]
    assert exists
    assert {c: values.get(c) for c in COLUMNS} == expected_state(kind, ops)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(INITIAL_KINDS), ops=event_sets(), data=st.data())
def test_versions_table_holds_the_winning_version(kind: str, ops: list[TargetOp], data: st.DataObject) -> None:
    row = initial_row(kind)
    deliver(row, ops, data.draw(deliveries(ops)))
    for column in (LWW, OWNED, STATE):
        stored = row.versions.get(column)
        if stored is not None:
            assert stored[1] == row.values[column]  # no local edits here: the table matches the row
    assert QTY not in row.versions and AMOUNT not in row.versions


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(INITIAL_KINDS), ops=event_sets(), data=st.data(), known_time=st.booleans())
def test_owner_events_restore_the_owner_value_over_local_edits(
    kind: str, ops: list[TargetOp], data: st.DataObject, known_time: bool
) -> None:
    # The target is the shop, which does not own the column; its users edit it anyway, at any time.
    row = initial_row(kind)
    row.row_level = True
    newest: tuple[tuple[int, int, str], Any] | None = None
    for number, index in enumerate(data.draw(deliveries(ops))):
        if data.draw(st.booleans()):
            row.edit(OWNED, f"local-{number}", Version(data.draw(st.integers(0, 5)), SHOP, PRIORITY[SHOP], ""))
            if not known_time:
                row.row_local = None
        op = ops[index]
        if OWNED not in op.fields:
            continue
        owned = make_op({OWNED: op.fields[OWNED].value}, op.version) if op.version else op
        row.apply(owned)
        if op.version is not None and op.version.system == OWNER:
            candidate = (op.version.sort_key(), op.fields[OWNED].value)
            newest = candidate if newest is None or candidate > newest else newest
            assert row.values[OWNED] == newest[1]


# --- two replicas -------------------------------------------------------------------------------------


@dataclass
class Message:
    op: TargetOp
    delivered: bool = False


@dataclass
class Replicas:
    """One target per system. A local edit changes that replica and sends an op to the other one.

    Clocks are synchronised: a local edit is stamped no earlier than the simulated time, and later than
    every event its replica has received (an edit made after seeing a value happens after it). Concurrent
    edits on the two sides may carry the same time: priorities break those ties.
    """

    rows: dict[str, SimRow]
    now: int = 1
    received_ts: dict[str, int] = field(default_factory=lambda: {SHOP: 0, ERP: 0})
    sequence: dict[str, int] = field(default_factory=lambda: {SHOP: 0, ERP: 0})
    outbox: dict[str, list[Message]] = field(default_factory=lambda: {SHOP: [], ERP: []})
    counter: int = 0
    send_previous: bool = False  # last_writer_wins edits carry the value they replaced (a before image)
    in_source_order: bool = False  # each side's changes arrive in their order (repeats at any time)

    def stamp(self, system: str, advance: int) -> Version:
        self.now = max(self.now + advance, self.received_ts[system] + 1)
        self.sequence[system] += 1
        return Version(self.now, system, PRIORITY[system], f"{self.sequence[system]:08d}")

    def edit(self, system: str, column: str, advance: int, step: int) -> None:
        version = self.stamp(system, advance)
        row = self.rows[system]
        self.counter += 1
        if column in DELTAS:
            amount: Any = step if column == QTY else f"{Decimal(step) / 4:.2f}"
            row.edit(column, _add(row.values[column], amount), version)
            sent = amount
        elif column == STATE:
            # Users move an order forward (or keep its rank); the replicator never moves it back.
            rank = rank_of(row.values[column]) or 0
            sent = (rank + max(step, 0) % 3, f"{system}-{self.counter}")
            row.edit(column, sent, version)
        else:
            replaced = row.values[column]
            sent = f"{system}-{self.counter}"  # every edit sets a new value
            row.edit(column, sent, version)
            if self.send_previous:
                self.send(system, make_op({column: sent}, version, {column: replaced}))
                return
        self.send(system, make_op({column: sent}, version))

    def send(self, system: str, op: TargetOp) -> None:
        self.outbox[system].append(Message(op))

    def deliver(self, system: str, index: int, *, repeat: bool = True) -> None:
        """Deliver message `index` of `system`'s outbox to the other replica; a repeat is skipped for
        deltas (upstream de-duplication) and fed again for the other policies."""
        messages = self.outbox[system]
        if not messages:
            return
        message = messages[index % len(messages)]
        if self.in_source_order:
            # As the applier delivers: each source's changes in its commit order (the next one not delivered
            # yet), or a repeat of one already delivered (a replay after a crash).
            delivered = [m for m in messages if m.delivered]
            waiting = [m for m in messages if not m.delivered]
            if waiting and (index % 2 == 0 or not delivered or not repeat):
                message = waiting[0]
            else:
                message = delivered[index // 2 % len(delivered)]
        target = OTHER[system]
        op, version = message.op, message.op.version
        assert version is not None
        if message.delivered:
            op = make_op({c: f.value for c, f in op.fields.items() if f.policy is not Policy.DELTA}, version,
                         {c: f.previous for c, f in op.fields.items() if f.previous is not NO_PREVIOUS})
        message.delivered = True
        self.received_ts[target] = max(self.received_ts[target], version.ts_ms)
        resolution = self.rows[target].apply(op)
        for decision in resolution.decisions:
            if decision.outcome is Outcome.OWNER_REFUSED and decision.reassert is not None:
                # The owner sends its value back as a fresh write of its own (a new version), which
                # overwrites the non-owner's edit over there.
                version = self.stamp(target, 0)
                self.rows[target].edit(decision.column, decision.reassert.value, version)
                self.send(target, make_op({decision.column: decision.reassert.value}, version))

    def drain(self, order: list[int]) -> None:
        """Deliver everything still pending, in the given (random) order, until nothing is left."""
        while True:
            pending = [(s, i) for s in (SHOP, ERP) for i, m in enumerate(self.outbox[s]) if not m.delivered]
            if not pending:
                return
            system, index = pending[order[len(pending) % len(order)] % len(pending)] if order else pending[0]
            self.deliver(system, index, repeat=False)


def _add(current: Any, amount: Any) -> Any:
    if isinstance(current, int):
        return current + int(amount)
    return f"{Decimal(current) + Decimal(amount):.2f}"


def seeded_replicas(*, row_level: bool, origin_has_versions: bool) -> Replicas:
    """Both replicas hold the row. The ERP created it (seed at ts 0); the shop received it, so the shop
    has versions; the ERP has them too only if `origin_has_versions`."""
    values = {LWW: "init", OWNED: "init", STATE: (0, "init"), QTY: 10, AMOUNT: "1.50", "phone": "p0", "email": "e0"}
    seed = Version(0, ERP, PRIORITY[ERP], "00000000")
    rows = {}
    for system in (SHOP, ERP):
        row = SimRow(exists=True, values=dict(values), row_level=row_level)
        if system == SHOP or origin_has_versions:
            row.versions = {c: (seed, values[c]) for c in values if c not in DELTAS}
        else:
            row.local = {c: seed for c in values}  # the ERP's own values, typed at ts 0
        rows[system] = row
    return Replicas(rows)


def linked_replicas(*, row_level: bool) -> Replicas:
    """A row that existed on both sides before replication, linked by a natural key: the ERP recorded the
    shop's values with the shop's version when it linked them (and holds them since); the shop recorded
    nothing, its values are its own, typed at ts 0. Edits carry the value they replaced, and each side's
    changes arrive in their order, as the applier guarantees: whether a change's previous value is the
    target's tells a conflict from agreement only then (a later change overtaking an earlier one would look
    like a conflict)."""
    values = {LWW: "init", "phone": "p0", "email": "e0"}
    seed = Version(0, SHOP, PRIORITY[SHOP], "00000000")
    shop = SimRow(exists=True, values=dict(values), row_level=row_level, local=dict.fromkeys(values, seed),
                  row_local=seed)
    erp = SimRow(exists=True, values=dict(values), row_level=row_level,
                 versions={c: (seed, value) for c, value in values.items()})
    return Replicas({SHOP: shop, ERP: erp}, send_previous=True, in_source_order=True)


action = st.one_of(
    st.tuples(st.just("edit"), st.sampled_from([SHOP, ERP]), st.integers(0, 1), st.integers(-3, 3)),
    st.tuples(st.just("deliver"), st.sampled_from([SHOP, ERP]), st.integers(0, 50), st.just(0)),
)


def run(
    replicas: Replicas, columns: dict[str, list[str]], actions: list[tuple[str, str, int, int]], drain_order: list[int]
) -> None:
    for kind, system, number, step in actions:
        if kind == "edit":
            editable = columns[system]
            replicas.edit(system, editable[abs(step) % len(editable)], number, step)
        else:
            replicas.deliver(system, number)
    replicas.drain(drain_order)


def newest_value(ops: list[TargetOp], column: str, default: Any) -> Any:
    """The value of `column` in the op with the greatest version, or `default` without ops."""
    newest = max(ops, key=lambda op: op.version.sort_key() if op.version else (0, 0, ""), default=None)
    return newest.fields[column].value if newest else default


STARTS = {
    "erp created, both sides versioned": lambda: seeded_replicas(row_level=True, origin_has_versions=True),
    "erp created, only the shop versioned": lambda: seeded_replicas(row_level=True, origin_has_versions=False),
    "linked by a natural key, only the erp versioned": lambda: linked_replicas(row_level=True),
}


@settings(max_examples=400, deadline=None)
@given(
    actions=st.lists(action, max_size=30),
    drain_order=st.lists(st.integers(0, 100), max_size=10),
    start=st.sampled_from(sorted(STARTS)),
)
def test_concurrent_edits_of_different_fields_both_survive(
    actions: list[tuple[str, str, int, int]], drain_order: list[int], start: str
) -> None:
    # Only the row's time is known locally, as in a real database; the shop edits the phone, the ERP
    # the email.
    replicas = STARTS[start]()
    run(replicas, {SHOP: ["phone"], ERP: ["email"]}, actions, drain_order)
    shop, erp = replicas.rows[SHOP].values, replicas.rows[ERP].values
    last_phone = [m.op.fields["phone"].value for m in replicas.outbox[SHOP]]
    last_email = [m.op.fields["email"].value for m in replicas.outbox[ERP]]
    assert shop["phone"] == erp["phone"] == (last_phone[-1] if last_phone else "p0")
    assert shop["email"] == erp["email"] == (last_email[-1] if last_email else "e0")


@settings(max_examples=400, deadline=None)
@given(
    actions=st.lists(action, max_size=40),
    drain_order=st.lists(st.integers(0, 100), max_size=10),
)
def test_both_replicas_converge_on_the_same_field(
    actions: list[tuple[str, str, int, int]], drain_order: list[int]
) -> None:
    # Both sides edit every column. Local edit times are known per field (see the policies' doc for
    # what an unknown or row-level time costs).
    replicas = seeded_replicas(row_level=False, origin_has_versions=True)
    run(replicas, {SHOP: list(COLUMNS), ERP: list(COLUMNS)}, actions, drain_order)
    shop, erp = replicas.rows[SHOP].values, replicas.rows[ERP].values
    for column in COLUMNS:
        assert shop[column] == erp[column], column
    # Deltas: every edit of both sides counted exactly once on both sides.
    sent = [m.op.fields for s in (SHOP, ERP) for m in replicas.outbox[s]]
    assert shop[QTY] == 10 + sum(f[QTY].value for f in sent if QTY in f)
    assert Decimal(shop[AMOUNT]) == Decimal("1.50") + sum(Decimal(f[AMOUNT].value) for f in sent if AMOUNT in f)
    # The owned column holds the owner's newest value: the non-owner's edits did not stick.
    owner_writes = [m.op for m in replicas.outbox[OWNER] if OWNED in m.op.fields]
    assert shop[OWNED] == newest_value(owner_writes, OWNED, "init")


@settings(max_examples=200, deadline=None)
@given(
    actions=st.lists(action, max_size=30),
    drain_order=st.lists(st.integers(0, 100), max_size=10),
)
def test_monotonic_replicas_end_on_the_highest_rank(
    actions: list[tuple[str, str, int, int]], drain_order: list[int]
) -> None:
    replicas = seeded_replicas(row_level=False, origin_has_versions=True)
    run(replicas, {SHOP: [STATE], ERP: [STATE]}, actions, drain_order)
    shop, erp = replicas.rows[SHOP].values[STATE], replicas.rows[ERP].values[STATE]
    assert shop == erp
    ranks = [m.op.fields[STATE].value[0] for s in (SHOP, ERP) for m in replicas.outbox[s]]
    assert shop[0] == max(ranks, default=0)
