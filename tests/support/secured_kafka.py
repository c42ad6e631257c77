"""A broker of a test's own that also listens for SASL over mutual TLS, as a managed Kafka cluster may: a
certificate authority made for the test (openssl) signs the broker's certificate for 127.0.0.1 and the client's
(its key encrypted), and the broker has SASL/PLAIN users. Its PLAINTEXT listener stays for the broker's own use
(the controller, the readiness probe)."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from replicator.devstack.kafka import KafkaServer
from replicator.devstack.process import any_free_port
from tests.support.servers import PrivateServer

ADMIN_PASSWORD = uuid.uuid4().hex


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what clients and the broker trust
    broker_keystore: Path  # the broker's key and certificate, PEM
    client_certificate: Path  # the replicator's, for mutual TLS
    client_key: Path  # encrypted with the password in client_key_password
    client_key_password: Path


def make_certificates(directory: Path, host_ip: str = "127.0.0.1") -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, request, certificate = directory / "broker.key", directory / "broker.csr", directory / "broker.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "2", "-subj", "/CN=replicator test CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
             "-subj", f"/CN={host_ip}")
    extensions = directory / "broker.ext"
    extensions.write_text(f"subjectAltName=IP:{host_ip}\n")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(certificate), "-days", "2", "-extfile", str(extensions))
    keystore = directory / "broker-keystore.pem"
    keystore.write_text(key.read_text() + certificate.read_text())
    password = directory / "client-key-password"
    password.write_text(uuid.uuid4().hex + "\n")
    client_key, client_request = directory / "client.key", directory / "client.csr"
    client_certificate = directory / "client.pem"
    _openssl("req", "-newkey", "rsa:2048", "-passout", f"file:{password}", "-keyout", str(client_key),
             "-out", str(client_request), "-subj", "/CN=replicator")
    _openssl("x509", "-req", "-in", str(client_request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(client_certificate), "-days", "2")
    return Certificates(ca, keystore, client_certificate, client_key, password)


@dataclass
class SecuredKafkaServer(KafkaServer):
    secured_port: int = 0
    keystore: Path = Path()
    truststore: Path = Path()  # the CA clients' certificates must chain to (mutual TLS, required)
    users: tuple[tuple[str, str], ...] = ()  # (name, password) of the SASL/PLAIN users

    def _server_properties(self, data_dir: Path, broker_port: int, controller_port: int) -> str:  # type: ignore[override]
        plain = super()._server_properties(data_dir, broker_port, controller_port)
        settings = dict(line.split("=", 1) for line in plain.splitlines())
        secured = f"SASL_SSL://127.0.0.1:{self.secured_port}"
        settings["listeners"] += f",{secured}"
        settings["advertised.listeners"] += f",{secured}"
        settings["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
        users = " ".join(f'user_{name}="{password}"' for name, password in (("admin", ADMIN_PASSWORD), *self.users))
        settings.update({
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="admin" password="{ADMIN_PASSWORD}" {users};',
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(self.keystore),
            "listener.name.sasl_ssl.ssl.client.auth": "required",
            "listener.name.sasl_ssl.ssl.truststore.type": "PEM",
            "listener.name.sasl_ssl.ssl.truststore.location": str(self.truststore),
        })
        return "".join(f"{key}={value}\n" for key, value in settings.items())


class SecuredBroker(PrivateServer):
    """`bootstrap`: the SASL over TLS listener, the only one a client of the test is given."""

    def __init__(self, root: Path, users: tuple[tuple[str, str], ...]) -> None:
        self.certificates = make_certificates(root / "certificates")
        secured_port = any_free_port()
        super().__init__(SecuredKafkaServer(port=any_free_port(), controller_port=any_free_port(), port_explicit=True,
                                            name="test-kafka-secured", heap="384m", secured_port=secured_port,
                                            keystore=self.certificates.broker_keystore,
                                            truststore=self.certificates.ca, users=users), root)
        self.bootstrap = f"127.0.0.1:{secured_port}"
