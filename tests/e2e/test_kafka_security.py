"""The pipeline against a Kafka cluster that wants SASL over mutual TLS: every Kafka client of the replicator
(topic creation, capture's producer and offsets reader, the applier's consumer and audit producer)
authenticates, shows its certificate (its key encrypted) and checks the broker's with the config's `kafka`
settings, and both directions replicate. A client the cluster refuses (a wrong password, no client
certificate), or a broker it cannot trust (no CA given), stops start-up with the reason, without the password.

The broker is this test's own (tests/support/secured_kafka.py): a CA made for the test signs its certificate,
and it knows the replicator's user."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from replicator.config import load_config
from replicator.devstack import ConnectionSettings
from replicator.errors import FatalError
from replicator.pipeline.apply_runner import build_apply
from replicator.pipeline.capture_runner import build_capture
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.pipeline import running_pipeline, wait_for_snapshots, wait_until
from tests.support.sales_and_prices import PRODUCTS, converged, state_of, write_for
from tests.support.secured_kafka import SecuredBroker
from tests.support.sides import drop_origins, make_sales_and_prices_sides

pytestmark = pytest.mark.e2e

PASSWORD = f"pw-{uuid.uuid4().hex}"


def _secure(config: Path, kafka: dict[str, Any], name: str) -> Path:
    whole = yaml.safe_load(config.read_text())
    whole["kafka"].update(kafka)
    secured = config.with_name(name)
    secured.write_text(yaml.safe_dump(whole))
    return secured


def test_the_pipeline_replicates_both_ways_through_a_cluster_that_wants_sasl_over_tls(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str, capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = SecuredBroker(tmp_path / "broker", users=(("replicator", PASSWORD),))
    try:
        sides = make_sales_and_prices_sides(dataclasses.replace(devstack, kafka_bootstrap=broker.bootstrap),
                                            pg_database, mariadb_database, tmp_path, monkeypatch,
                                            topic_prefix.split("_")[-1], PRODUCTS)
        monkeypatch.setenv("KAFKA_PASSWORD", PASSWORD)
        monkeypatch.setenv("KAFKA_WRONG_PASSWORD", "not-" + PASSWORD)
        sasl = {"mechanism": "PLAIN", "username": "replicator", "password": {"env": "KAFKA_PASSWORD"}}
        certificates = broker.certificates
        tls = {"ca_file": str(certificates.ca), "cert_file": str(certificates.client_certificate),
               "key_file": str(certificates.client_key),
               "key_password": {"file": str(certificates.client_key_password)}}
        config = _secure(sides.config, {"security_protocol": "sasl_ssl", "sasl": sasl, "tls": tls}, "secured.yaml")

        # Refused: start-up stops with the cluster's reason, and no password in it.
        wrong = load_config(_secure(config, {"sasl": {**sasl, "password": {"env": "KAFKA_WRONG_PASSWORD"}}},
                                    "wrong-password.yaml"))
        with pytest.raises(FatalError, match=r"refused this client: .*Invalid username or password") as refused:
            build_capture(wrong, wrong.sources[0].name)
        untrusted = load_config(_secure(config, {"tls": {**tls, "ca_file": None}}, "no-ca.yaml"))
        with pytest.raises(FatalError, match=r"refused this client: .*certificate verify failed") as unverified:
            build_apply(untrusted, untrusted.targets[0].name)
        anonymous = load_config(_secure(config, {"tls": {"ca_file": tls["ca_file"]}}, "no-client-certificate.yaml"))
        with pytest.raises(FatalError, match=r"refused this client: .*certificate") as unknown:
            build_capture(anonymous, anonymous.sources[1].name)
        for error in (refused.value, unverified.value, unknown.value):
            assert PASSWORD not in str(error)

        with running_pipeline(config) as pipeline:
            wait_for_snapshots(config, pipeline)
            write_for(sides, 2, seed=7)
            wait_until(lambda: converged(sides), "both directions applied through the secured cluster", timeout=90,
                       supervisor=pipeline, describe=lambda: state_of(sides))
            assert [(w.name, w.last_error) for w in pipeline.workers if w.restarts] == []
        assert sides.dead_letters("erp") == [] and sides.dead_letters("shop") == []
        # Neither the replicator's log nor librdkafka's shows the password.
        output = capfd.readouterr()
        assert PASSWORD not in output.out + output.err + caplog.text
        drop_origins(sides)
    finally:
        broker.close()
