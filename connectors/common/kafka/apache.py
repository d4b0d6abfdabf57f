"""A local Apache Kafka broker (KRaft, one node in combined mode) from Maven Central's jars.

The jars are not shipped with the package: ``make kafka-jars`` (``mvn
dependency:copy-dependencies`` on ``deploy/kafka-jars/pom.xml``) copies them into
:func:`default_jars_dir`. :class:`EmbeddedApacheKafka` has the interface of the Tansu
:class:`~connectors.common.kafka.embedded.EmbeddedKafka` (``bootstrap``, ``start`` /
``stop``, ``kill`` / ``restart``), but keeps its data on disk: a :meth:`restart` after a
:meth:`kill` (SIGKILL) comes back on the same ports with the topics, offsets and producer
state the broker had. Unlike Tansu it has InitProducerId (idempotent producers) and log
compaction.

Startup: the data directory is formatted once (``kafka.tools.StorageTool format
--standalone``, a fresh cluster id), then ``kafka.Kafka server.properties`` runs; it is
ready when it serves metadata with a broker in it. It stops on SIGTERM (a clean shutdown).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from connectors.common.embedded_server import _free_port
from connectors.common.kafka.embedded import EmbeddedKafka, EmbeddedKafkaError

__all__ = [
    "EMBEDDED_BROKERS",
    "KAFKA_VERSION",
    "EmbeddedApacheKafka",
    "apache_kafka_missing",
    "default_jars_dir",
    "embedded_broker",
]

#: The embedded brokers by name (``--broker``): Tansu (the default, from pip alone) and
#: Apache Kafka (needs Java and ``make kafka-jars``).
EMBEDDED_BROKERS = ("tansu", "kafka")

#: The Apache Kafka release the tests run on (``deploy/kafka-jars/pom.xml`` pins the same).
KAFKA_VERSION = "4.1.2"

#: Broker settings for one small local node: internal topics with one replica, no initial
#: rebalance delay, few threads and a small cleaner buffer (a 2-core machine).
_BASE_PROPERTIES: Mapping[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # A restart after SIGKILL waits for the old incarnation's broker session to expire
    # (9 s by default) before the broker is unfenced.
    "broker.session.timeout.ms": "2000",
    # Local clients (tests, the demo, a standby engine) use short consumer sessions; the
    # broker's default floor is 6 s.
    "group.min.session.timeout.ms": "500",
    "broker.heartbeat.interval.ms": "500",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
    "auto.create.topics.enable": "false",
}

#: log4j2 in the properties format (the shipped YAML config needs jackson-dataformat-yaml):
#: warnings, plus the line that says the server started.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""

_JVM_OPTIONS = (
    "-Xms128m",
    "-XX:+UseSerialGC",  # one node, small heap: no GC threads competing for 2 cores
    "-XX:TieredStopAtLevel=1",  # C1 only: far less JIT work at startup
    "-Djava.awt.headless=true",
)


def default_jars_dir(version: str = KAFKA_VERSION) -> Path:
    """Where ``make kafka-jars`` puts the broker's jars: ``~/.cache/regime-engine/kafka-V``."""
    return Path.home() / ".cache" / "regime-engine" / f"kafka-{version}"


def _find_java(java: str | os.PathLike[str] | None) -> str | None:
    if java is not None:
        path = os.fspath(java)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which("java")


def apache_kafka_missing(
    jars_dir: str | os.PathLike[str] | None = None, java: str | os.PathLike[str] | None = None
) -> str | None:
    """Why the Apache Kafka broker cannot run here (one line), or None when it can."""
    jars = Path(jars_dir) if jars_dir is not None else default_jars_dir()
    if _find_java(java) is None:
        return "Java (17+) not found: install a JDK (java on PATH)"
    if not (jars / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        return f"Apache Kafka {KAFKA_VERSION} jars not in {jars}: run `make kafka-jars` (Maven)"
    return None


def _random_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints: 16 random bytes, URL-safe base64, no padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class EmbeddedApacheKafka(EmbeddedKafka):
    """An Apache Kafka broker (KRaft, combined mode) on free ``127.0.0.1`` ports.

    ``binary`` is the ``java`` executable (None: the one on PATH); ``jars_dir`` the folder of
    the broker's jars (None: :func:`default_jars_dir`); ``properties`` override or add broker
    settings (e.g. ``log.segment.bytes`` for a compaction test); ``heap_mb`` the JVM heap.
    The controller listens on a second free port, kept across :meth:`restart`.
    """

    label = "embedded Apache Kafka"
    temp_prefix = "apache-kafka-"
    stop_signal = signal.SIGTERM  # a controlled shutdown
    default_startup_timeout = 90.0  # a JVM on a busy 2-core machine
    idempotent = True

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        jars_dir: str | os.PathLike[str] | None = None,
        properties: Mapping[str, str] | None = None,
        heap_mb: int = 384,
        startup_timeout: float | None = None,
        stop_timeout: float = 30.0,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            binary=binary,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            log_path=log_path,
            extra_args=extra_args,
        )
        if heap_mb < 128:
            raise ValueError(f"heap_mb must be at least 128, got {heap_mb}")
        self._jars = Path(jars_dir) if jars_dir is not None else default_jars_dir()
        self._properties = dict(properties or {})
        self._heap_mb = heap_mb
        self._formatted_for: int | None = None  # the broker port the data dir was made for
        self._controller_port: int | None = None

    @property
    def controller_port(self) -> int | None:
        return self._controller_port

    @property
    def data_dir(self) -> Path | None:
        """The broker's log directory (kept across :meth:`kill` / :meth:`restart`)."""
        return self._dir / "data" if self._dir is not None else None

    def _name(self) -> str:
        return "Apache Kafka"

    def _resolve_binary(self, binary: str | os.PathLike[str] | None) -> str:
        why_not = apache_kafka_missing(self._jars, binary)
        if why_not is not None:
            raise EmbeddedKafkaError(f"Apache Kafka cannot run: {why_not}")
        java = _find_java(binary)
        assert java is not None
        return java

    def _java(self, main_class: str, *args: str, heap_mb: int) -> list[str]:
        assert self._binary is not None and self._dir is not None
        return [
            self._binary,
            f"-Xmx{heap_mb}m",
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self._dir / 'logs'}",
            "-cp",
            str(self._jars / "*"),
            main_class,
            *args,
        ]

    def _command(self, port: int) -> list[str]:
        """The broker's command line; formats a fresh data dir for a new ``port`` first."""
        assert self._dir is not None
        config = self._dir / "server.properties"
        if self._formatted_for != port:
            self._format(port, config)
        return [
            *self._java("kafka.Kafka", str(config), heap_mb=self._heap_mb),
            *self._extra_args,
        ]

    def _format(self, port: int, config: Path) -> None:
        """Write the configs and format an empty data dir (blocking: one short JVM run)."""
        assert self._dir is not None
        data = self._dir / "data"
        shutil.rmtree(data, ignore_errors=True)
        controller = _free_port(self._host)
        while controller == port:
            controller = _free_port(self._host)
        self._controller_port = controller
        plain = f"PLAINTEXT://{self._host}:{port}"
        ctl = f"CONTROLLER://{self._host}:{controller}"
        props = {
            **_BASE_PROPERTIES,
            "controller.quorum.bootstrap.servers": f"{self._host}:{controller}",
            "listeners": f"{plain},{ctl}",
            "advertised.listeners": f"{plain},{ctl}",
            "log.dirs": str(data),
            **self._properties,
        }
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self._dir / "log4j2.properties").write_text(_LOG4J2)
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(config),
            "--standalone",
            heap_mb=128,
        )
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=120, cwd=self._dir, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedKafkaError(f"Apache Kafka storage format failed: {exc}") from None
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise EmbeddedKafkaError(f"Apache Kafka storage format failed: {tail}")
        self._formatted_for = port

    async def _probe(self) -> str | None:
        """Metadata with a broker (as for Tansu), and every topic served: no topic error and
        every partition led (after a restart on old data, partitions come online a moment
        after the broker answers)."""
        why_not = await super()._probe()
        if why_not is not None:
            return why_not
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"{self._host}:{self._port}", request_timeout_ms=2000
        )
        try:
            await admin.start()
            for topic in await admin.describe_topics():
                if topic["error_code"]:
                    return f"topic {topic['topic']}: error {topic['error_code']}"
                for part in topic["partitions"]:
                    if part["error_code"] or part["leader"] < 0:
                        return f"topic {topic['topic']} partition {part['partition']}: no leader"
            return None
        except KafkaError as exc:
            return f"metadata: {exc!r}"
        finally:
            await admin.close()

    async def stop(self) -> None:
        await super().stop()
        self._formatted_for = None
        self._controller_port = None


def embedded_broker(name: str, port: int | None = None) -> EmbeddedKafka:
    """A new (not started) embedded broker by its :data:`EMBEDDED_BROKERS` name, on ``port``
    (None: a free one); its ``idempotent`` says whether it grants InitProducerId. The one
    place ``--broker`` is turned into a server."""
    if name == "tansu":
        return EmbeddedKafka(port=port)
    if name == "kafka":
        return EmbeddedApacheKafka(port=port)
    raise ValueError(f"unknown broker {name!r} (one of {', '.join(EMBEDDED_BROKERS)})")
