"""A throwaway single-node Apache Kafka 4 (KRaft, broker and controller in one JVM).

The broker comes from Maven Central: `docker/kafka/pom.xml` names `kafka_2.13` and `mvn` copies it with
its runtime dependencies into a cache folder keyed by the pom's content, so a version bump refetches.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from replicator.devstack.process import (
    LOOPBACK,
    choose_port,
    port_accepts,
    run_checked,
    spawn_detached,
    wait_until_ready,
)
from replicator.devstack.servers import ServerState
from replicator.errors import DevstackError

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "docker" / "kafka" / "pom.xml"

LOG4J2_PROPERTIES = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def libs_dir() -> Path:
    """Where the broker's jars live: $REPLICATOR_KAFKA_LIBS, or a cache folder named after the pom."""
    override = os.environ.get("REPLICATOR_KAFKA_LIBS")
    if override:
        return Path(override)
    if not KAFKA_POM.exists():
        raise DevstackError(f"{KAFKA_POM} is missing; set REPLICATOR_KAFKA_LIBS to a folder of Kafka jars")
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "replicator" / f"kafka-{digest}" / "libs"


def ensure_jars() -> Path:
    """Fetch the broker's jars with Maven unless they are already in the cache; returns their folder."""
    target = libs_dir()
    if (target / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError("Maven (mvn) is needed to fetch Kafka's jars; install Debian's maven")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Fetch into a scratch folder and rename, so an interrupted download is never taken for a complete one.
    scratch = Path(tempfile.mkdtemp(prefix="libs-", dir=target.parent))
    try:
        run_checked(
            [
                mvn, "-q", "-B", "-f", str(KAFKA_POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={scratch}",
            ],
            "fetching Kafka's jars with Maven",
        )
        if not any(scratch.glob("kafka_2.13-*.jar")):
            raise DevstackError(f"Maven ran but no kafka_2.13 jar arrived in {scratch}")
        (scratch / ".complete").touch()
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    return target


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise DevstackError("Java 17+ is needed to run Kafka; install Debian's openjdk-17-jre-headless")
    return java


def _cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding; its own generator
    # avoids ids starting with '-' because they read as command-line options.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class KafkaServer:
    port: int = 59092
    controller_port: int = 59093
    port_explicit: bool = False
    heap: str = "512m"
    name: str = "kafka"
    stop_signal: signal.Signals = signal.SIGTERM

    def start(self, root: Path, previous: ServerState | None) -> ServerState:
        libs = ensure_jars()
        java = _java()
        base = root / "kafka"
        data_dir = Path(previous.data_dir) if previous else base / "kraft-logs"
        log_path = root / "logs" / "kafka.log"
        broker_port = previous.ports["broker"] if previous else self.port
        controller_port = previous.ports["controller"] if previous else self.controller_port
        broker_port = choose_port("kafka broker", broker_port, explicit=self.port_explicit)
        controller_port = choose_port("kafka controller", controller_port, explicit=False, avoid=[broker_port])

        base.mkdir(parents=True, exist_ok=True)
        properties = base / "server.properties"
        properties.write_text(self._server_properties(data_dir, broker_port, controller_port))
        log4j = base / "log4j2.properties"
        log4j.write_text(LOG4J2_PROPERTIES)
        classpath = f"{libs}/*"
        jvm = [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:ActiveProcessorCount=2",
               f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true", "-cp", classpath]

        if not (data_dir / "meta.properties").exists():
            run_checked(
                [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", _cluster_id(),
                 "-c", str(properties)],
                "formatting Kafka's storage",
            )
        proc = spawn_detached([*jvm, "kafka.Kafka", str(properties)], log_path)
        bootstrap = f"{LOOPBACK}:{broker_port}"

        def probe() -> bool:
            if not port_accepts(broker_port):
                return False
            # log_level 0: connection refusals while the broker starts are expected, not worth printing.
            admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000, "log_level": 0})
            try:
                metadata = admin.list_topics(timeout=1)
            except Exception:  # noqa: BLE001 - any failure here only means "not ready yet"
                return False
            return len(metadata.brokers) > 0

        wait_until_ready("kafka", proc.pid, log_path, probe, timeout=90)
        return ServerState(
            name=self.name,
            pid=proc.pid,
            ports={"broker": broker_port, "controller": controller_port},
            data_dir=str(data_dir),
            log_path=str(log_path),
        )

    @staticmethod
    def _server_properties(data_dir: Path, broker_port: int, controller_port: int) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{broker_port},CONTROLLER://{LOOPBACK}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{broker_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            # The replicator creates its topics itself, with the settings its config names.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())
