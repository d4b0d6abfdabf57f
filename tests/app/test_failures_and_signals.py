"""Permanent Redis failures end a command at once with one line; transient ones are retried
with a visible state; SIGINT / SIGTERM end every command in every state (retry sleep,
connect, blocking read); the SDK's iteration is cancellable at any await.

Timing is asserted loosely (a few seconds for "within a second") and every wait is on a
condition (a log line, a connection reaching a server, a client blocked in XREAD).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from connectors.common.kafka.embedded import EmbeddedKafka
from connectors.common.kafka.security import KafkaSecurity, connection_failure
from connectors.common.redis_embedded import EmbeddedRedis
from engine.client.subscriber import RegimeSubscriber, SubscriberConfig, SubscriberError
from engine.stream.runtime import EngineConfig, EngineRuntime
from tests.conditions import eventually
from tests.paths import REPO
from tests.secure_helpers import (
    USERS,
    BlackHole,
    SecureRedis,
    blocked_xread_clients,
    free_port,
    make_tls_files,
    running,
    wait_until,
)

EXIT_LOOSE_S = 3.0  # "within a second", loosely, on a loaded 2-core box
WRONG = "Wrong-Pass-7731"


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    yield from running(SecureRedis(make_tls_files(tmp_path_factory.mktemp("tls"))))


def _plain(server: SecureRedis, user: str, password: str, db: int = 0) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.server.port}/{db}"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REGIME_ENGINE_")}


def _cli(
    args: list[str], stderr: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
        env={**_clean_env(), **(env or {}), "PYTHONPATH": str(REPO)},
    )


def _stop_and_time(proc: subprocess.Popen[bytes], sig: signal.Signals) -> float:
    """Send ``sig``, poll for the exit; seconds it took (the process is killed on timeout)."""
    began = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - began


# -- permanent failures: one line, no retry ---------------------------------------------


def test_subscribe_with_a_wrong_password_ends_at_once_with_one_line(
    secure_redis: SecureRedis, tmp_path: Path
) -> None:
    err = tmp_path / "stderr"
    proc = _cli(["subscribe", "--redis", _plain(secure_redis, "bot", WRONG)], err)
    assert proc.wait(timeout=30) == 2
    lines = err.read_text().splitlines()
    port = secure_redis.server.port
    assert lines == [
        f"regime-engine: error: redis redis://bot:***@127.0.0.1:{port}/0: authentication "
        "failed (invalid username-password pair or user is disabled.)"
    ]


@pytest.mark.parametrize(
    ("user", "password", "db", "cause"),
    [
        ("bot", WRONG, 0, "authentication failed (invalid username-password pair"),
        ("engine", None, 99, "unknown database (DB index is out of range)"),
        ("noread", None, 0, "ACL denies it: NOPERM (this user has no permissions to run the"),
    ],
)
@pytest.mark.asyncio
async def test_sdk_permanent_failures_raise_one_line_without_retrying(
    secure_redis: SecureRedis, user: str, password: str | None, db: int, cause: str
) -> None:
    url = _plain(secure_redis, user, password or USERS[user][0], db)
    config = SubscriberConfig(url, underlyings=("BTC",), start_id="0", block_ms=100)
    subscriber = RegimeSubscriber(config)
    with capture_logs() as logs, pytest.raises(SubscriberError) as info:
        async with subscriber:
            async for _ in subscriber:
                pass
    shown = url.replace(f":{password or USERS[user][0]}@", ":***@")
    assert str(info.value).startswith(f"redis {shown}: {cause}")
    assert subscriber.state == "failed"
    assert [e for e in logs if e["event"] == "subscriber_connection_lost"] == []


def test_engine_with_a_wrong_redis_password_ends_with_one_line(
    secure_redis: SecureRedis, kafka_bootstrap: str, tmp_path: Path
) -> None:
    err = tmp_path / "stderr"
    url = _plain(secure_redis, "engine", WRONG)
    prefix = f"t{uuid4().hex[:8]}."
    args = ["engine", "--kafka", kafka_bootstrap, "--redis", url, "--topic-prefix", prefix]
    proc = _cli([*args, "--no-idempotence"], err)
    assert proc.wait(timeout=60) == 2
    text = err.read_text()
    assert text.splitlines()[-1] == (
        f"regime-engine: error: redis redis://engine:***@127.0.0.1:{secure_redis.server.port}"
        "/0: authentication failed (invalid username-password pair or user is disabled.)"
    )
    assert WRONG not in text and "Traceback" not in text


# -- transient failures: retried, visibly; signals end every state ----------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_subscribe_ends_on_a_signal_during_the_retry_sleep(
    sig: signal.Signals, tmp_path: Path
) -> None:
    err = tmp_path / "stderr"
    proc = _cli(["subscribe", "--redis", f"redis://127.0.0.1:{free_port()}/0"], err)
    # The visible state: a warning per failed attempt, the retry delay growing (capped).
    wait_until(lambda: err.read_text().count('"state": "reconnecting"') >= 3, "three retries")
    assert _stop_and_time(proc, sig) < EXIT_LOOSE_S
    assert proc.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_subscribe_ends_on_a_signal_during_a_connect(sig: signal.Signals, tmp_path: Path) -> None:
    hole = BlackHole()
    try:
        proc = _cli(["subscribe", "--redis", f"redis://{hole.address}/0"], tmp_path / "stderr")
        wait_until(hole.has_connection, "the subscriber's connection")
        assert _stop_and_time(proc, sig) < EXIT_LOOSE_S
        assert proc.returncode == 0
    finally:
        hole.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_subscribe_ends_on_a_signal_during_a_blocking_read(
    sig: signal.Signals, secure_redis: SecureRedis, tmp_path: Path
) -> None:
    url = secure_redis.plain_url
    before = asyncio.run(blocked_xread_clients(url))
    proc = _cli(["subscribe", "--redis", url, "--underlying", "BTC"], tmp_path / "stderr")
    wait_until(lambda: asyncio.run(_more_blocked(url, before)), "a blocked XREAD")
    assert _stop_and_time(proc, sig) < EXIT_LOOSE_S
    assert proc.returncode == 0


def test_engine_ends_on_a_signal_while_connecting_to_kafka(tmp_path: Path) -> None:
    hole = BlackHole()
    err = tmp_path / "stderr"
    try:
        proc = _cli(["engine", "--kafka", hole.address, "--redis", "redis://127.0.0.1:1/0"], err)
        wait_until(hole.has_connection, "the engine's Kafka connection")
        assert _stop_and_time(proc, signal.SIGTERM) < EXIT_LOOSE_S
    finally:
        hole.close()
    assert proc.returncode == 0, err.read_text()[-2000:]
    assert '"state": "stopped"' in err.read_text()


def test_engine_ends_on_a_signal_while_connecting_to_redis(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    hole = BlackHole()
    err = tmp_path / "stderr"
    prefix = f"t{uuid4().hex[:8]}."
    try:
        proc = _cli(
            ["engine", "--kafka", kafka_bootstrap, "--redis", f"redis://{hole.address}/0",
             "--topic-prefix", prefix, "--no-idempotence"],
            err,
        )  # fmt: skip
        wait_until(hole.has_connection, "the engine's Redis connection", timeout=60)
        assert _stop_and_time(proc, signal.SIGINT) < EXIT_LOOSE_S
    finally:
        hole.close()
    assert proc.returncode == 0, err.read_text()[-2000:]
    assert '"state": "stopped"' in err.read_text()


# -- the SDK: cancellable at any await ----------------------------------------------------


async def _more_blocked(url: str, before: int) -> bool:
    return await blocked_xread_clients(url) > before


async def _cancel_and_time(task: asyncio.Task[None]) -> float:
    began = time.monotonic()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)
    assert task in done and task.cancelled()
    return time.monotonic() - began


async def _iterate(subscriber: RegimeSubscriber) -> None:
    async with subscriber:
        async for _ in subscriber:
            pass


@pytest.mark.asyncio
async def test_sdk_iteration_cancelled_during_the_backoff_sleep() -> None:
    config = SubscriberConfig(
        f"redis://127.0.0.1:{free_port()}/0", underlyings=("BTC",),
        reconnect_min_s=30.0, reconnect_max_s=60.0,
    )  # fmt: skip
    subscriber = RegimeSubscriber(config)
    task = asyncio.create_task(_iterate(subscriber))
    await eventually(lambda: subscriber.state == "backoff", 30, "no backoff sleep")
    assert await _cancel_and_time(task) < EXIT_LOOSE_S
    assert subscriber.state == "closed"


@pytest.mark.asyncio
async def test_sdk_iteration_cancelled_during_a_connect() -> None:
    hole = BlackHole()
    try:
        config = SubscriberConfig(
            f"redis://{hole.address}/0", underlyings=("BTC",), connect_timeout_s=60.0,
            command_timeout_s=60.0,
        )  # fmt: skip
        subscriber = RegimeSubscriber(config)
        task = asyncio.create_task(_iterate(subscriber))
        await eventually(hole.has_connection, 30, "no connection")
        assert subscriber.state == "connecting"
        assert await _cancel_and_time(task) < EXIT_LOOSE_S
    finally:
        hole.close()


@pytest.mark.asyncio
async def test_sdk_iteration_cancelled_during_a_blocking_read(secure_redis: SecureRedis) -> None:
    url = secure_redis.plain_url
    before = await blocked_xread_clients(url)
    config = SubscriberConfig(url, underlyings=("BTC",), block_ms=60_000)
    subscriber = RegimeSubscriber(config)
    task = asyncio.create_task(_iterate(subscriber))
    await eventually(lambda: _more_blocked(url, before), 30, "no blocked XREAD")
    assert subscriber.state == "connected"
    assert await _cancel_and_time(task) < EXIT_LOOSE_S


@pytest.mark.parametrize("command", ["engine", "ingest"])
def test_kafka_with_an_untrusted_broker_certificate_is_one_line(
    command: str, secure_redis: SecureRedis, tmp_path: Path
) -> None:
    """A TLS endpoint (the Redis TLS port stands in for a broker: the handshake comes first)
    whose certificate the configured CA did not sign."""
    broker = f"localhost:{secure_redis.tls_port}"
    err = tmp_path / "stderr"
    args = {
        "engine": ["engine", "--kafka", broker, "--redis", "redis://127.0.0.1:1/0"],
        "ingest": ["ingest", "--kafka", broker, "--source", "deribit:BTC"],
    }[command]
    env = {
        "REGIME_ENGINE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "REGIME_ENGINE_KAFKA_CA_FILE": str(secure_redis.tls.other_ca),
    }
    proc = _cli(args, err, env)
    assert proc.wait(timeout=60) == 2
    assert err.read_text().splitlines()[-1] == (
        f"regime-engine: error: kafka {broker}: TLS verification failed "
        "(self-signed certificate in certificate chain)"
    )


@pytest.mark.asyncio
async def test_connection_failure_is_none_without_tls_or_when_unreachable() -> None:
    assert await connection_failure("127.0.0.1:1", KafkaSecurity()) is None
    ssl_only = KafkaSecurity(security_protocol="SSL")
    assert await connection_failure(f"127.0.0.1:{free_port()}", ssl_only) is None  # refused


@pytest.mark.asyncio
async def test_engine_stops_at_once_when_its_broker_is_gone() -> None:
    """The broker dies under a running engine; the stop still ends it at once, with its
    report (the consumer's stop, which fails then, no longer cancels the engine)."""
    kafka = EmbeddedKafka()
    await kafka.start()
    redis_server = EmbeddedRedis()
    await redis_server.start()
    try:
        config = EngineConfig(
            bootstrap=kafka.bootstrap, redis_url=redis_server.url, enable_idempotence=False,
            topic_prefix=f"t{uuid4().hex[:8]}.", session_timeout_ms=2_000,
            heartbeat_interval_ms=500,
        )  # fmt: skip
        runtime = EngineRuntime(config)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await eventually(runtime.caught_up.is_set, 60, "the engine did not start")
        await kafka.kill()
        began = time.monotonic()
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=60)
        assert task in done and time.monotonic() - began < EXIT_LOOSE_S
        assert task.result().records == 0
    finally:
        await redis_server.stop()
        await kafka.stop()
