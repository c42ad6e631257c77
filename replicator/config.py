"""The replicator's YAML configuration, validated by pydantic models that forbid unknown keys.

Secrets (passwords, DSNs carrying passwords) never sit in the file: a `Secret` names an environment
variable or a file to read them from, and resolved values are `SecretStr`, masked in every repr.
A bad file stops start-up with every problem listed, each naming the key at fault.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from replicator.errors import ConfigError
from replicator.transport.client import KafkaClient

if TYPE_CHECKING:
    from replicator.mapping.spec import MappingSet

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret(StrictModel):
    """Where a secret comes from: an environment variable or a file (first line, stripped)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, where: str) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text().strip())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secret file {self.file}: {exc.strerror}") from None


# How long a database connection may stay unanswered before it counts as lost (replicator/network.py).
DEFAULT_NETWORK_TIMEOUT_S = 30


class ConnectionConfig(StrictModel):
    """A database connection: either a DSN secret (URL with the password in it) or its parts."""

    dsn: Secret | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    user: str | None = None
    password: Secret | None = None
    database: str | None = None
    network_timeout_s: int = Field(
        default=DEFAULT_NETWORK_TIMEOUT_S, ge=1, le=3600,
        description="A connection whose server host or network path stays silent this long is ended and made"
        " again (TCP keepalives and TCP_USER_TIMEOUT; also the connect timeout). A busy server still answers"
        " at the TCP level, so long statements are not cut short.",
    )

    @model_validator(mode="after")
    def _dsn_or_parts(self) -> ConnectionConfig:
        if self.dsn is None and (self.user is None or self.database is None):
            raise ValueError("give either 'dsn' or at least 'user' and 'database'")
        return self

    def resolve(self, where: str, default_port: int) -> ResolvedConnection:
        if self.dsn is not None:
            url = urlsplit(self.dsn.resolve(f"{where}.dsn").get_secret_value())
            if not url.hostname or not url.username or not url.path.strip("/"):
                raise ConfigError(f"{where}.dsn: expected scheme://user:password@host:port/database")
            return ResolvedConnection(
                host=url.hostname,
                port=url.port or default_port,
                user=unquote(url.username),
                password=SecretStr(unquote(url.password or "")),
                database=url.path.strip("/"),
                network_timeout_s=self.network_timeout_s,
            )
        assert self.user is not None and self.database is not None
        return ResolvedConnection(
            host=self.host,
            port=self.port or default_port,
            user=self.user,
            password=self.password.resolve(f"{where}.password") if self.password else SecretStr(""),
            database=self.database,
            network_timeout_s=self.network_timeout_s,
        )


class ResolvedConnection(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    user: str
    password: SecretStr
    database: str
    network_timeout_s: int = DEFAULT_NETWORK_TIMEOUT_S

    def describe(self) -> str:
        """For logs and errors: everything but the password."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def _check_table_name(value: str) -> str:
    parts = value.split(".")
    if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"{value!r} is not a qualified table name like schema.table (letters, digits, _ and $)")
    return value


TableName = Annotated[str, Field(description="schema.table (PostgreSQL) or database.table (MariaDB)")]


class SourceBase(StrictModel):
    name: str = Field(description="Logical source name: topic prefix and `source.name` of every event")
    connection: ConnectionConfig
    tables: list[TableName] = Field(min_length=1)
    snapshot: Literal["initial", "never"] = "initial"
    snapshot_chunk_rows: int = Field(default=5000, ge=1)
    publish_own_writes: bool = Field(
        default=False, description="Publish transactions carrying the replicator's loop tag (audit only)"
    )
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    session_timeout_s: int = Field(
        default=60, ge=1,
        description="How long the source database keeps the log stream of a capture that fell silent (its host "
        "lost, its process frozen) before ending it, so that a standby capture of the source takes over: "
        "PostgreSQL's wal_sender_timeout for the replication connection, MariaDB's wait_timeout for the session "
        "holding the capture's lock. At least twice heartbeat_interval_s",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError("use letters, digits, '_' and '-' (it becomes part of Kafka topic names)")
        return value

    @model_validator(mode="after")
    def _session_outlasts_heartbeats(self) -> SourceBase:
        # A healthy capture speaks to its server at least every heartbeat interval (standby status, lock check).
        if self.session_timeout_s < 2 * self.heartbeat_interval_s:
            raise ValueError(f"session_timeout_s ({self.session_timeout_s}) must be at least twice "
                             f"heartbeat_interval_s ({self.heartbeat_interval_s:g})")
        return self

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str]) -> list[str]:
        for table in value:
            _check_table_name(table)
        if len(set(value)) != len(value):
            raise ValueError("a table is listed twice")
        return value


class PostgresSourceConfig(SourceBase):
    kind: Literal["postgresql"]
    slot: str = Field(default="", description="Replication slot name [default: replicator_<name>]")
    publication: str = Field(default="", description="Publication name [default: replicator_<name>]")
    origin_prefix: str = Field(default="replicator", description="Replication origins of the replicator's writers")

    @field_validator("slot", "publication")
    @classmethod
    def _ident(cls, value: str) -> str:
        if value and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
            raise ValueError("use lower-case letters, digits and '_' (PostgreSQL slot and publication names)")
        return value

    @property
    def slot_name(self) -> str:
        return self.slot or f"replicator_{self.name.replace('-', '_').lower()}"

    @property
    def publication_name(self) -> str:
        return self.publication or f"replicator_{self.name.replace('-', '_').lower()}"


class MariaDbSourceConfig(SourceBase):
    kind: Literal["mariadb"]
    server_id: int = Field(
        default=4242,
        ge=1,
        le=2**32 - 1,
        description="Server id the binlog reader registers with; unique among replicas",
    )


SourceConfig = Annotated[PostgresSourceConfig | MariaDbSourceConfig, Field(discriminator="kind")]


class TopicSettings(StrictModel):
    partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    retention_ms: int = Field(default=-1, description="-1 keeps events forever (replayable for audit)")
    tombstones: bool = Field(default=True, description="Send a null-value message after each delete")


class KafkaSaslConfig(StrictModel):
    """SASL authentication (security_protocol sasl_ssl or sasl_plaintext)."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    username: str
    password: Secret


class KafkaTlsConfig(StrictModel):
    """TLS (security_protocol ssl or sasl_ssl). Files are PEM, paths relative to the working directory."""

    ca_file: Path | None = Field(default=None, description="CA certificates the brokers' certificates must chain to "
                                 "[default: the system's]")
    cert_file: Path | None = Field(default=None, description="This client's certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="Its private key (mutual TLS)")
    key_password: Secret | None = None
    verify_hostname: bool = Field(default=True, description="Check that a broker's certificate names the host "
                                  "connected to")

    @model_validator(mode="after")
    def _pair(self) -> KafkaTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both 'cert_file' and 'key_file', or neither")
        if self.key_password is not None and self.key_file is None:
            raise ValueError("'key_password' without 'key_file'")
        return self


# librdkafka's own request timeout (socket.timeout.ms).
DEFAULT_KAFKA_NETWORK_TIMEOUT_S = 60


class KafkaConfig(StrictModel):
    bootstrap_servers: str | None = None
    bootstrap_servers_env: str | None = Field(default=None, description="Environment variable holding them")
    # How long the producer waits to fill a batch. 10 ms: half the produce requests of 5 ms when a
    # source writes a few thousand transactions a second (the broker's CPU per event halves too, on the
    # machine capture shares with it), for at most 10 ms more latency per event (docs/configuration.md).
    linger_ms: int = Field(default=10, ge=0)
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = "lz4"
    topics: TopicSettings = TopicSettings()
    security_protocol: Literal["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"] = "plaintext"
    sasl: KafkaSaslConfig | None = None
    tls: KafkaTlsConfig | None = None
    network_timeout_s: int = Field(
        default=DEFAULT_KAFKA_NETWORK_TIMEOUT_S, ge=5, le=3600,
        description="A request a broker leaves unanswered this long fails and its connection is made again "
        "(a broker host that vanished, a network path that broke); connecting is bounded by it too",
    )

    @model_validator(mode="after")
    def _one(self) -> KafkaConfig:
        problems = []
        if (self.bootstrap_servers is None) == (self.bootstrap_servers_env is None):
            problems.append("give exactly one of 'bootstrap_servers' or 'bootstrap_servers_env'")
        uses_sasl = self.security_protocol.startswith("sasl_")
        if uses_sasl and self.sasl is None:
            problems.append(f"security_protocol {self.security_protocol} needs a 'sasl' section")
        if not uses_sasl and self.sasl is not None:
            problems.append(f"a 'sasl' section needs security_protocol sasl_ssl or sasl_plaintext, "
                            f"not {self.security_protocol}")
        if self.tls is not None and not self.security_protocol.endswith("ssl"):
            problems.append(f"a 'tls' section needs security_protocol ssl or sasl_ssl, not {self.security_protocol}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def client(self) -> KafkaClient:
        """How the replicator's Kafka clients reach the cluster: the bootstrap servers, and the security and
        timeout settings each client gets. Secrets are read here; a file that is not there stops start-up."""
        timeout_ms = self.network_timeout_s * 1000
        settings: dict[str, Any] = {
            "socket.timeout.ms": timeout_ms,
            "socket.connection.setup.timeout.ms": timeout_ms,
            "security.protocol": self.security_protocol,
        }
        if self.sasl is not None:
            settings["sasl.mechanism"] = self.sasl.mechanism
            settings["sasl.username"] = self.sasl.username
            settings["sasl.password"] = self.sasl.password.resolve("kafka.sasl.password").get_secret_value()
        if self.tls is not None:
            tls = self.tls
            for name, path, setting in (("ca_file", tls.ca_file, "ssl.ca.location"),
                                        ("cert_file", tls.cert_file, "ssl.certificate.location"),
                                        ("key_file", tls.key_file, "ssl.key.location")):
                if path is not None:
                    if not path.is_file():
                        raise ConfigError(f"kafka.tls.{name}: no file {path}")
                    settings[setting] = str(path)
            if tls.key_password is not None:
                settings["ssl.key.password"] = tls.key_password.resolve("kafka.tls.key_password").get_secret_value()
            settings["ssl.endpoint.identification.algorithm"] = "https" if tls.verify_hostname else "none"
        return KafkaClient(self.bootstrap(), settings)

    def bootstrap(self) -> str:
        if self.bootstrap_servers is not None:
            return self.bootstrap_servers
        assert self.bootstrap_servers_env is not None
        value = os.environ.get(self.bootstrap_servers_env)
        if not value:
            raise ConfigError(
                f"kafka.bootstrap_servers_env: environment variable {self.bootstrap_servers_env} is not set"
            )
        return value


class TargetConfig(StrictModel):
    """A database the replicator writes into, with the systems whose changes it applies there."""

    name: str = Field(description="Names the applier: its consumer name, progress rows and writer tag")
    kind: Literal["postgresql", "mariadb"]
    system: str = Field(description="The system this database is in the mappings (e.g. erp)")
    connection: ConnectionConfig
    apply_from: list[str] = Field(min_length=1, description="Systems (mapping names) whose changes are applied")
    writer_tag: str = Field(
        default="",
        description="PostgreSQL: the replication origin of the writer session [default: replicator_<name>]; "
        "it must start with the capturing source's origin_prefix",
    )
    batch_max_events: int = Field(default=5000, ge=1)
    batch_max_ms: int = Field(default=20, ge=0)
    reference_wait_s: float = Field(
        default=60.0, ge=0,
        description="How long a change that refers to a row the target does not hold yet may wait for it while "
        "that row may still come (a snapshot being applied) before it is dead-lettered",
    )
    writer_session_timeout_s: int = Field(
        default=60, ge=1,
        description="How long the target database keeps a writer session that fell silent (its applier's host lost, "
        "or its process frozen) before it ends the session, rolls back its open transaction and frees its writer "
        "lock for another applier. A running applier speaks to its session at least every second",
    )
    on_lost_messages: Literal["stop", "skip"] = Field(
        default="stop",
        description="When Kafka no longer holds messages this applier has not applied (deleted by the topics' "
        "retention, or a topic deleted and created again): stop naming them (default), or skip to the oldest "
        "message Kafka holds and go on (after requesting a new snapshot of their tables)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError("use letters, digits, '_' and '-'")
        return value

    @property
    def origin_name(self) -> str:
        return self.writer_tag or f"replicator_{self.name.replace('-', '_')}"


class SystemOverride(StrictModel):
    """Where a mapping system lives in this deployment, when it differs from the mapping files: the shop's
    database is rarely called `prestashop`."""

    namespace: str | None = Field(default=None, description="database (MariaDB) or schema (PostgreSQL)")
    source_name: str | None = Field(default=None, description="the capture's source name (topic prefix)")


class MetricsConfig(StrictModel):
    """Where `replicator run` serves /metrics (Prometheus) and /health (docs/operations.md, Monitoring)."""

    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0: every interface)")
    port: int = Field(ge=1, le=65535)


class ReplicatorConfig(StrictModel):
    kafka: KafkaConfig
    metrics: MetricsConfig | None = None
    sources: list[SourceConfig] = Field(default_factory=list)
    targets: list[TargetConfig] = Field(default_factory=list)
    mappings: Path | None = Field(default=None, description="Mapping file or folder (relative to the config file)")
    systems: dict[str, SystemOverride] = Field(
        default_factory=dict, description="per mapping system: namespace and source name of this deployment"
    )

    def mapping_set(self) -> MappingSet:
        """The mappings with this deployment's system overrides applied."""
        from replicator.mapping.loader import load_mappings

        if self.mappings is None:
            raise ConfigError("no 'mappings' in the config")
        mapping_set = load_mappings(self.mappings)
        for name, override in self.systems.items():
            if name not in mapping_set.systems:
                known = ", ".join(sorted(mapping_set.systems)) or "none"
                raise ConfigError(f"systems.{name}: the mappings have no system {name!r} (systems: {known})")
            updates = {k: v for k, v in override.model_dump().items() if v is not None}
            mapping_set = mapping_set.with_system(name, **updates)
        return mapping_set

    @model_validator(mode="after")
    def _unique_names(self) -> ReplicatorConfig:
        target_names = [t.name for t in self.targets]
        if len(set(target_names)) != len(target_names):
            raise ValueError("target names must be unique")
        if self.targets and self.mappings is None:
            raise ValueError("targets need 'mappings': the mapping file or folder")
        tags = [t.origin_name for t in self.targets]
        shared = sorted({tag for tag in tags if tags.count(tag) > 1})
        if shared:
            # One writer session per tag: the second target's applier would wait for the first forever.
            raise ValueError(f"targets' writer tags must be unique; shared: {', '.join(shared)}")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none"
        raise ConfigError(f"no target named {name!r} in the config (targets: {known})")

    def source(self, name: str) -> PostgresSourceConfig | MariaDbSourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config (sources: {known})")


def _format_errors(path: Path, exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{path}: {location}: {error['msg']}")
    return problems


def load_config(path: Path) -> ReplicatorConfig:
    """Read and validate a config file; raise ConfigError listing every problem."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = ReplicatorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    if config.mappings is not None and not config.mappings.is_absolute():
        config = config.model_copy(update={"mappings": (path.parent / config.mappings).resolve()})
    return config
