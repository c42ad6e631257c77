"""The runner's side of changes that wait for a row a snapshot still brings (`ApplyRunner._batch_units` and
`_defer`): whatever units wait, for however many batches, each source's streamed transactions reach the target
once each and in commit order, and every snapshot read once. The applier's side of the contract (a deferred
streamed transaction defers its source's later ones in the batch, untried; `Applier.apply_batch`) is played
by `apply_like_the_applier`; the real one is exercised on real servers in tests/e2e/test_apply_guarantees.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from replicator.apply.applier import UnitOutcome
from replicator.apply.reassembly import SourcePosition, Unit
from replicator.config import TargetConfig
from replicator.mapping.engine import MappingEngine
from replicator.pipeline import apply_runner
from replicator.pipeline.apply_runner import ApplyRunner, SourceTopics
from replicator.transport.client import KafkaClient
from tests.unit.memory_target import MemoryTarget, recording_publisher
from tests.unit.test_apply_pipeline import mapping

SOURCES = ("shop", "erp")


@dataclass(frozen=True)
class Planned:
    source: str
    read: bool  # a snapshot read, else a streamed transaction
    arrives: int  # the batch from which the unit is pending (consumed)
    ready: int  # the batch from which the row it refers to is in the target


def runner(monkeypatch: pytest.MonkeyPatch, batch_max_events: int) -> ApplyRunner:
    monkeypatch.setattr(apply_runner, "AuditPublisher", lambda *args, **kwargs: recording_publisher()[0])
    config = TargetConfig.model_validate({"name": "erp-writer", "kind": "postgresql", "system": "erp",
                                          "apply_from": ["shop"], "connection": {"dsn": {"env": "UNUSED"}},
                                          "batch_max_events": batch_max_events})
    engine = MappingEngine(mapping(), target="erp")
    return ApplyRunner(config, MemoryTarget(), engine.ops_for,
                       [SourceTopics(name, name, ["shopdb.order_line"]) for name in SOURCES],
                       KafkaClient("unused:9092"), target_priority=1)


def apply_like_the_applier(units: list[tuple[str, Unit]], plan: dict[int, Planned], batch: int
                           ) -> list[UnitOutcome]:
    """What `Applier._apply_all` decides when every unit may wait: a unit whose row is not there yet is deferred,
    and so is every later streamed transaction of a source one of whose transactions was deferred."""
    outcomes = []
    waiting: set[str] = set()
    for name, unit in units:
        outcome = UnitOutcome(unit)
        stream = unit.transaction_id is not None
        if (stream and name in waiting) or plan[id(unit)].ready > batch:
            outcome.deferred = True
            if stream:
                waiting.add(name)
        outcomes.append(outcome)
    return outcomes


units_strategy = st.lists(
    st.tuples(st.sampled_from(SOURCES), st.booleans(), st.integers(0, 6), st.integers(0, 12)), max_size=40)


@settings(max_examples=500, deadline=None)
@given(planned=units_strategy, batch_max_events=st.integers(1, 5))
# A head applied late, two transactions behind it released one per batch, and a newer one arriving meanwhile:
# it must queue behind them.
@example(planned=[("shop", False, 0, 5), ("shop", False, 0, 0), ("shop", False, 0, 0), ("shop", False, 6, 0)],
         batch_max_events=1)
def test_streams_reach_the_target_in_commit_order_once_each_whatever_waits(
    planned: list[tuple[str, bool, int, int]], batch_max_events: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        subject = runner(patch, batch_max_events)
    plan: dict[int, Planned] = {}
    arriving: dict[int, list[tuple[str, Unit]]] = {}
    sequence = dict.fromkeys(SOURCES, 0)
    commit_order: dict[str, list[str]] = {name: [] for name in SOURCES}
    reads: list[Unit] = []
    arrived_so_far = dict.fromkeys(SOURCES, -1)
    for source, read, arrives, ready in planned:
        if read:
            unit = Unit(None, None, [])
            reads.append(unit)
        else:
            # A source's transactions are consumed in commit order: one never arrives before an earlier one.
            arrives = arrived_so_far[source] = max(arrives, arrived_so_far[source])
            sequence[source] += 1
            unit = Unit(f"{source}-{sequence[source]}", SourcePosition(0, sequence[source]), [])
            commit_order[source].append(unit.transaction_id or "")
        plan[id(unit)] = Planned(source, read, arrives, ready)
        arriving.setdefault(arrives, []).append((source, unit))

    applied: dict[str, list[str]] = {name: [] for name in SOURCES}
    applied_reads: list[Unit] = []
    batch = 0
    while batch < 100 and (batch <= max(arriving, default=0) or subject._retry_due()):
        units, ops, retried = subject._batch_units(arriving.get(batch, []), None, float(batch))
        assert len(ops) == len(units) and retried <= len(units)
        outcomes = apply_like_the_applier(units, plan, batch)
        for (name, unit), outcome in zip(units, outcomes, strict=True):
            if not outcome.deferred:
                if unit.transaction_id is None:
                    applied_reads.append(unit)
                else:
                    applied[name].append(unit.transaction_id)
        subject._defer([name for name, _ in units], outcomes)
        batch += 1

    assert not subject._retry_due(), "units still wait after every row came"
    assert applied == commit_order
    assert sorted(map(id, applied_reads)) == sorted(map(id, reads))


def test_a_waiting_head_goes_last_in_its_batch_after_the_reads_and_its_sources_later_transactions_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subject = runner(monkeypatch, batch_max_events=10)
    head = Unit("shop-1", SourcePosition(0, 1), [])
    later = Unit("shop-2", SourcePosition(0, 2), [])
    other = Unit("erp-1", SourcePosition(0, 1), [])
    read = Unit(None, None, [])
    subject._defer(["shop", "shop"], [UnitOutcome(head, deferred=True), UnitOutcome(later, deferred=True)])
    assert [u for _, u in subject._deferred] == [head] and list(subject._waiting["shop"]) == [later]

    newer = Unit("shop-3", SourcePosition(0, 3), [])
    units, _, retried = subject._batch_units([("shop", newer), ("erp", other), ("shop", read)], None, 0.0)
    # The read that may bring the head's row comes before it; the shop's later transactions wait in order.
    assert [u for _, u in units] == [other, read, head] and retried == 1
    assert list(subject._waiting["shop"]) == [later, newer]

    subject._defer([name for name, _ in units], [UnitOutcome(u) for _, u in units])  # the head is applied
    units, _, retried = subject._batch_units([], None, 1.0)
    assert [u for _, u in units] == [later, newer] and retried == 0
