"""The embedded default of `demo` and `run`: a local broker and a local Redis, each started
only when the user gave none, stopped in reverse order.

:func:`connectors.common.kafka.apache.embedded_broker` is the one place that turns
``--broker NAME`` into a server; :func:`start_services` resolves the broker and Redis a
command talks to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from connectors.common.kafka.apache import EMBEDDED_BROKERS, embedded_broker
from connectors.common.lifecycle import Services
from connectors.common.redis_embedded import EmbeddedRedis

__all__ = [
    "BROKERS",
    "DEFAULT_BROKER",
    "Embedding",
    "LocalServices",
    "embedded_broker",
    "start_services",
]

BROKERS = EMBEDDED_BROKERS  # --broker (DESIGN §2.6)
DEFAULT_BROKER = "tansu"


#: How status lines name each embedded broker.
BROKER_TITLES = {
    "tansu": "the embedded Kafka-compatible broker (Tansu)",
    "kafka": "the embedded Apache Kafka broker",
}


@dataclass(frozen=True, slots=True)
class Embedding:
    """How to embed what the user did not give: ``--broker``, ``--kafka-port``,
    ``--redis-port`` (None: a free port)."""

    broker: str = DEFAULT_BROKER
    kafka_port: int | None = None
    redis_port: int | None = None

    def __post_init__(self) -> None:
        for name in ("kafka_port", "redis_port"):
            port = getattr(self, name)
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"--{name.replace('_', '-')} must be 1..65535, got {port}")


@dataclass(frozen=True, slots=True)
class LocalServices:
    """The broker and Redis a command uses, and which of them it started itself."""

    bootstrap: str
    redis_url: str
    kafka_embedded: bool
    redis_embedded: bool
    idempotence: bool  # the broker accepts idempotent producers (a given one is assumed to)


@asynccontextmanager
async def start_services(
    kafka: str | None,
    redis: str | None,
    embed: Embedding | None = None,
    status: Callable[[str], None] = lambda _text: None,
) -> AsyncIterator[LocalServices]:
    """Start an embedded broker when ``kafka`` is None and a local Redis when ``redis`` is
    None (on free ports unless ``embed`` gives them); on exit, stop what was started in
    reverse order (Redis, then the broker)."""
    embed = embed or Embedding()
    kafka_embedded, redis_embedded = kafka is None, redis is None
    async with Services() as services:
        idempotence = True
        if kafka is None:
            broker = embedded_broker(embed.broker, embed.kafka_port)
            what = BROKER_TITLES[embed.broker]
            status(f"starting {what}")
            await broker.start()
            services.add(what, broker.stop)
            kafka, idempotence = broker.bootstrap, broker.idempotent
        if redis is None:
            server = EmbeddedRedis(port=embed.redis_port)
            status("starting a local Redis")
            await server.start()
            services.add("a local Redis", server.stop)
            redis = server.url
        yield LocalServices(
            bootstrap=kafka,
            redis_url=redis,
            kafka_embedded=kafka_embedded,
            redis_embedded=redis_embedded,
            idempotence=idempotence,
        )
