"""The `kafka` section's security and timeout settings, as every Kafka client of the replicator gets them
(`KafkaConfig.client`): what is checked at start-up, what librdkafka is given, and that the secrets never show."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from pydantic import ValidationError

from replicator.config import KafkaConfig
from replicator.errors import ConfigError


def _kafka(**extra: Any) -> KafkaConfig:
    return KafkaConfig.model_validate({"bootstrap_servers": "broker1:9093,broker2:9093", **extra})


SASL = {"mechanism": "SCRAM-SHA-512", "username": "replicator", "password": {"env": "KAFKA_PASSWORD"}}


def test_by_default_clients_speak_plaintext_with_librdkafkas_request_timeout() -> None:
    client = _kafka().client()
    assert client.bootstrap == "broker1:9093,broker2:9093"
    assert client.config() == {"bootstrap.servers": "broker1:9093,broker2:9093", "security.protocol": "plaintext",
                               "socket.timeout.ms": 60_000, "socket.connection.setup.timeout.ms": 60_000}
    # A client's own settings come on top.
    assert client.config({"client.id": "x", "socket.timeout.ms": 1})["socket.timeout.ms"] == 1


def test_the_network_timeout_bounds_requests_and_connecting() -> None:
    settings = _kafka(network_timeout_s=10).client().config()
    assert settings["socket.timeout.ms"] == settings["socket.connection.setup.timeout.ms"] == 10_000
    for bad in (4, 3601):
        with pytest.raises(ValidationError, match="network_timeout_s"):
            _kafka(network_timeout_s=bad)


def test_sasl_over_tls_gives_librdkafka_the_mechanism_the_secret_and_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret-pw")
    (tmp_path / "key-password").write_text("key-pw\n")
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("PEM")
    client = _kafka(security_protocol="sasl_ssl", sasl=SASL, tls={
        "ca_file": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "client.pem"),
        "key_file": str(tmp_path / "client.key"), "key_password": {"file": str(tmp_path / "key-password")},
    }).client()
    settings = client.config()
    assert {key: settings[key] for key in settings if key.startswith(("sasl.", "ssl.", "security."))} == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "replicator",
        "sasl.password": "s3cret-pw", "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.certificate.location": str(tmp_path / "client.pem"), "ssl.key.location": str(tmp_path / "client.key"),
        "ssl.key.password": "key-pw", "ssl.endpoint.identification.algorithm": "https",
    }
    # Neither the client nor the config shows a secret when printed or logged.
    for shown in (repr(client), str(client), repr(_kafka(security_protocol="sasl_ssl", sasl=SASL))):
        assert "s3cret" not in shown and "key-pw" not in shown


def test_tls_may_leave_the_hostname_unchecked_and_the_ca_to_the_system() -> None:
    settings = _kafka(security_protocol="ssl", tls={"verify_hostname": False}).client().config()
    assert settings["ssl.endpoint.identification.algorithm"] == "none"
    assert "ssl.ca.location" not in settings
    assert "ssl.endpoint.identification.algorithm" not in _kafka(security_protocol="ssl").client().config()


@pytest.mark.parametrize(("section", "message"), [
    ({"security_protocol": "sasl_ssl"}, "security_protocol sasl_ssl needs a 'sasl' section"),
    ({"sasl": SASL}, "a 'sasl' section needs security_protocol sasl_ssl or sasl_plaintext, not plaintext"),
    ({"security_protocol": "sasl_plaintext", "sasl": SASL, "tls": {}},
     "a 'tls' section needs security_protocol ssl or sasl_ssl, not sasl_plaintext"),
    ({"security_protocol": "ssl", "tls": {"cert_file": "client.pem"}}, "give both 'cert_file' and 'key_file'"),
    ({"security_protocol": "ssl", "tls": {"key_password": {"env": "X"}}}, "'key_password' without 'key_file'"),
    ({"security_protocol": "sasl_ssl", "sasl": {**SASL, "mechanism": "GSSAPI"}}, "mechanism"),
    ({"security_protocol": "tls"}, "security_protocol"),
])
def test_a_section_that_cannot_work_stops_start_up_saying_why(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _kafka(**section)


def test_a_missing_file_or_secret_is_named_without_its_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"kafka.tls.ca_file: no file {tmp_path / 'ca.pem'}")):
        _kafka(security_protocol="ssl", tls={"ca_file": str(tmp_path / "ca.pem")}).client()
    monkeypatch.delenv("KAFKA_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"kafka\.sasl\.password: environment variable KAFKA_PASSWORD is not set"):
        _kafka(security_protocol="sasl_plaintext", sasl=SASL).client()


def test_librdkafka_takes_every_setting_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # A misspelt property would fail here, when the client is made (no broker is needed for that). TLS files
    # are read when the client is made too: tests/integration/test_kafka_security.py makes them against a broker.
    monkeypatch.setenv("KAFKA_PASSWORD", "pw")
    for kafka in (_kafka(), _kafka(security_protocol="sasl_plaintext", sasl=SASL, network_timeout_s=5)):
        settings = kafka.client().config({"log_level": 0})
        Producer(settings).close()
        Consumer({**settings, "group.id": "g"}).close()
