"""Messages Kafka deleted before the applier applied them (the topics' retention, while the applier was stopped
longer than it): the applier stops naming them rather than skipping them unseen, and goes on from the oldest
message Kafka holds only when its target says `on_lost_messages: skip`; transactions whose END marker was lost
with skipped messages are dropped, not kept waiting."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from replicator.config import load_config
from replicator.devstack import ConnectionSettings
from replicator.errors import FatalError
from replicator.pipeline.apply_runner import build_apply
from replicator.transport.topics import table_topic, transaction_topic
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.capture import capture_thread
from tests.support.pipeline import running_pipeline, wait_until
from tests.support.sides import Sides, drop_origins, make_sales_sides

pytestmark = pytest.mark.e2e


def _sell(sides: Sides, product: int, units: int) -> None:
    sides.shop_sql("UPDATE ps_sales SET sold = sold + %s WHERE id_product = %s", (units, product))


def _erp(sides: Sides) -> dict[Any, Any]:
    return dict(sides.erp_sql("SELECT id, sold FROM product_sales"))


def _sales_published_while_the_applier_is_stopped(sides: Sides) -> None:
    """A first sale applied in the ERP; then, with the applier stopped, two more sales that capture alone
    publishes (products 0 and 1)."""
    with running_pipeline(sides.config) as supervisor:
        _sell(sides, 0, 2)
        wait_until(lambda: _erp(sides) == {0: 2, 1: 0, 2: 0}, "the first sale in the ERP", supervisor=supervisor,
                   describe=lambda: str(_erp(sides)))
    with capture_thread(sides.config, sides.shop_source) as capture:
        _sell(sides, 0, 5)
        _sell(sides, 1, 4)
        wait_until(lambda: capture.stats.transactions >= 2, "the two sales captured")


def _set_on_lost_messages(sides: Sides, value: str) -> None:
    config = yaml.safe_load(sides.config.read_text())
    config["targets"][0]["on_lost_messages"] = value
    sides.config.write_text(yaml.safe_dump(config))


def _delete_all_held(bootstrap: str, topics: list[str]) -> list[tuple[str, int, int]]:
    """What the topics' retention does to messages older than it: every message they hold is deleted."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lost-messages-test"})
    try:
        metadata = consumer.list_topics(timeout=30)
        ends = [(topic, partition, consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1])
                for topic in topics for partition in metadata.topics[topic].partitions]
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures are served by it
    futures = admin.delete_records([TopicPartition(topic, partition, end) for topic, partition, end in ends])
    for future in futures.values():
        future.result(timeout=30)
    return [(topic, partition, end) for topic, partition, end in ends if end > 0]


def test_messages_deleted_before_they_were_applied_stop_the_applier_naming_them_unless_it_is_told_to_skip(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str,
) -> None:
    sides = make_sales_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                             topic_prefix.split("_")[-1], products=3)
    # The applier is stopped; capture goes on publishing sales, which the topics' retention then deletes.
    _sales_published_while_the_applier_is_stopped(sides)
    table = table_topic(sides.shop_source, mariadb_database.name, "ps_sales")
    deleted = _delete_all_held(devstack.kafka_bootstrap, [table, transaction_topic(sides.shop_source)])
    assert deleted, "the topics held the sales"

    runner = build_apply(load_config(sides.config), sides.erp_target)
    with pytest.raises(FatalError) as stopped:
        runner.run()
    message = str(stopped.value)
    assert f"target {sides.erp_target}: " in message and "were deleted (the topic's retention)" in message
    assert any(f"{topic} [{partition}]" in message and f"goes on from offset {end}" in message
               for topic, partition, end in deleted), message
    assert _erp(sides) == {0: 2, 1: 0, 2: 0}  # nothing applied, nothing skipped

    _set_on_lost_messages(sides, "skip")
    lost_ends = {topic: end for topic, _, end in deleted}

    def stored() -> dict[str, int]:
        rows = sides.erp_sql("SELECT topic, next_offset FROM replicator_progress")
        return {topic: offset for topic, offset in rows if topic in lost_ends}

    with running_pipeline(sides.config) as supervisor:
        # Nothing follows the gap: the skip is stored all the same, by a batch of its own.
        wait_until(lambda: stored() == lost_ends, "the position after the gap stored", supervisor=supervisor,
                   describe=lambda: f"stored {stored()}, ends {lost_ends}")
    _set_on_lost_messages(sides, "stop")  # as the error message says to, once the gap is skipped
    with running_pipeline(sides.config) as supervisor:
        _sell(sides, 2, 7)
        # The lost sales of products 0 and 1 are not in the ERP; the sale made after them is, once.
        wait_until(lambda: _erp(sides) == {0: 2, 1: 0, 2: 7}, "the later sale in the ERP", supervisor=supervisor,
                   describe=lambda: str(_erp(sides)))
    assert sides.dead_letters("erp") == []
    drop_origins(sides)


@pytest.mark.parametrize("lost", ["markers", "events"])
def test_transactions_left_incomplete_by_lost_messages_are_dropped_after_a_skip_and_the_later_ones_applied(
    lost: str, devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic_prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Retention runs per topic: the transaction topic (two markers per transaction) can lose the END markers
    of transactions whose events the table topic still holds (`markers`), and the table topic can lose the
    events of transactions whose END markers are still there (`events`). Either way those transactions cannot
    be applied whole: they are dropped, named in a warning, and neither hold back the later transactions
    (which an END waiting for its lost events would, for good) nor pin the table topic's resume offset."""
    caplog.set_level(logging.WARNING, logger="replicator.pipeline.apply_runner")
    sides = make_sales_sides(devstack, pg_database, mariadb_database, tmp_path, monkeypatch,
                             topic_prefix.split("_")[-1], products=3)
    _set_on_lost_messages(sides, "skip")
    _sales_published_while_the_applier_is_stopped(sides)
    table = table_topic(sides.shop_source, mariadb_database.name, "ps_sales")
    assert _delete_all_held(devstack.kafka_bootstrap,
                            [transaction_topic(sides.shop_source) if lost == "markers" else table])
    with running_pipeline(sides.config) as supervisor:
        _sell(sides, 2, 7)
        # The sales left incomplete are not applied; the later one is, once.
        wait_until(lambda: _erp(sides) == {0: 2, 1: 0, 2: 7}, "the later sale in the ERP", supervisor=supervisor,
                   describe=lambda: str(_erp(sides)))
    warning = ("whose END marker was among the lost messages" if lost == "markers"
               else "missing events that were among the lost messages")
    dropped = [r for r in caplog.records if warning in r.getMessage()]
    assert dropped and getattr(dropped[0], "count", 0) == 2, [r.getMessage() for r in caplog.records]
    # The stored resume offset of the table topic is its end: a restart does not read the dropped events again.
    ((stored,),) = sides.erp_sql("SELECT next_offset FROM replicator_progress WHERE topic = %s", (table,))
    consumer = Consumer({"bootstrap.servers": devstack.kafka_bootstrap, "group.id": "lost-messages-test"})
    try:
        assert stored == consumer.get_watermark_offsets(TopicPartition(table, 0), timeout=30)[1]
    finally:
        consumer.close()
    assert sides.dead_letters("erp") == []
    drop_origins(sides)
