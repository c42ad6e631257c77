"""The configuration model's checks across targets and sources (each field's own are pydantic's)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from replicator.config import ReplicatorConfig


def _config(targets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": "127.0.0.1:9092"}, "mappings": "mappings.yaml", "targets": targets}


def _target(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "postgresql", "system": "erp", "apply_from": ["shop"],
            "connection": {"dsn": {"env": "ERP_DSN"}}, **extra}


def test_two_targets_may_not_share_a_writer_tag() -> None:
    # One writer session per tag: the second target's applier would wait for the first forever.
    with pytest.raises(ValidationError, match="writer tags must be unique; shared: replicator_erp"):
        ReplicatorConfig.model_validate(_config([_target("a", writer_tag="replicator_erp"),
                                                 _target("b", writer_tag="replicator_erp")]))
    # The default tags follow the names, which are unique.
    config = ReplicatorConfig.model_validate(_config([_target("a"), _target("b")]))
    assert [t.origin_name for t in config.targets] == ["replicator_a", "replicator_b"]


def test_on_lost_messages_is_stop_unless_set_to_skip() -> None:
    config = ReplicatorConfig.model_validate(_config([_target("a"), _target("b", on_lost_messages="skip")]))
    assert [t.on_lost_messages for t in config.targets] == ["stop", "skip"]
    with pytest.raises(ValidationError, match="on_lost_messages"):
        ReplicatorConfig.model_validate(_config([_target("a", on_lost_messages="earliest")]))


def _source(**extra: Any) -> dict[str, Any]:
    return {"name": "shop", "kind": "mariadb", "connection": {"dsn": {"env": "SHOP_DSN"}},
            "tables": ["shop.ps_orders"], "server_id": 4242, **extra}


def test_a_source_session_outlasts_two_heartbeats_and_sessions_default_to_a_minute() -> None:
    # A healthy capture speaks once per heartbeat interval: a shorter limit would end its own session.
    with pytest.raises(ValidationError, match=r"session_timeout_s \(15\) must be at least twice heartbeat_interval_s"
                                              r" \(10\)"):
        ReplicatorConfig.model_validate({**_config([]), "sources": [_source(session_timeout_s=15)]})
    config = ReplicatorConfig.model_validate({**_config([_target("a")]),
                                              "sources": [_source(), _source(name="fast", heartbeat_interval_s=1,
                                                                             session_timeout_s=2)]})
    assert [s.session_timeout_s for s in config.sources] == [60, 2]
    assert config.targets[0].writer_session_timeout_s == 60
    with pytest.raises(ValidationError, match="writer_session_timeout_s"):
        ReplicatorConfig.model_validate(_config([_target("a", writer_session_timeout_s=0)]))


def test_every_connection_has_a_network_timeout_of_half_a_minute_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERP_DSN", "postgresql://writer:secret@erp.example:5433/erp")
    monkeypatch.setenv("SHOP_DSN", "mysql://reader:secret@shop.example/shop")
    config = ReplicatorConfig.model_validate({
        **_config([_target("a", connection={"dsn": {"env": "ERP_DSN"}, "network_timeout_s": 5})]),
        "sources": [_source()],
    })
    assert config.targets[0].connection.resolve("targets[a]", 5432).network_timeout_s == 5
    assert config.sources[0].connection.resolve("sources[shop]", 3306).network_timeout_s == 30
    # The parts form carries it too.
    parts = {"user": "w", "database": "erp", "network_timeout_s": 7}
    config = ReplicatorConfig.model_validate(_config([_target("a", connection=parts)]))
    assert config.targets[0].connection.resolve("targets[a]", 5432).network_timeout_s == 7
    for bad in (0, 3601):
        with pytest.raises(ValidationError, match="network_timeout_s"):
            ReplicatorConfig.model_validate(_config([_target("a", connection={**parts, "network_timeout_s": bad})]))


def test_metrics_are_served_only_when_configured_and_on_a_port_given() -> None:
    assert ReplicatorConfig.model_validate(_config([])).metrics is None
    config = ReplicatorConfig.model_validate({**_config([]), "metrics": {"port": 9464}})
    assert config.metrics is not None and (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9464)
    for bad in ({}, {"port": 0}, {"port": 9464, "path": "/m"}):
        with pytest.raises(ValidationError, match="metrics"):
            ReplicatorConfig.model_validate({**_config([]), "metrics": bad})
