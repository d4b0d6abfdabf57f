"""deploy/redis (redis.conf and users.acl) on a real redis-server: TLS only, no default user,
the engine's user runs the whole pipeline (the demo), the bots' user only reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from connectors.common.redis_conn import RedisSecurity, redis_client
from connectors.common.redis_embedded import EmbeddedRedis
from engine.app.cli import main
from engine.client.subscriber import RegimeSubscriber, SubscriberConfig
from schemas.channels import STREAM_FIELD, events_stream, levels_key
from tests.paths import REPO
from tests.secure_helpers import TlsFiles, make_tls_files, running
from tests.sessions import EVENTS_BY_TYPE

DEPLOY = REPO / "deploy" / "redis"
# The placeholder passwords whose hashes deploy/redis/users.acl holds (replace them).
ENGINE_PW, BOT_PW = "engine-CHANGE-ME", "bot-CHANGE-ME"


class DeployRedis(EmbeddedRedis):
    """redis-server on deploy/redis/redis.conf, its paths replaced by the test's: the TLS
    port is the server's port (there is no plain one), probed as the engine's user."""

    def __init__(self, tls: TlsFiles) -> None:
        self.tls = tls
        super().__init__(
            extra_args=(
                "--port", "0",
                "--tls-cert-file", str(tls.server_cert),
                "--tls-key-file", str(tls.server_key),
                "--tls-ca-cert-file", str(tls.ca),
                "--aclfile", str(DEPLOY / "users.acl"),
            )
        )  # fmt: skip

    def _command(self, port: int) -> list[str]:
        command = super()._command(port)
        # the file first, the test's values last; the port the base picked is the TLS one
        command[1:3] = ["--tls-port", str(port)]
        return [command[0], str(DEPLOY / "redis.conf"), *command[1:]]

    def url_for(self, user: str | None, password: str | None, db: int = 0) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rediss://{auth}localhost:{self.port}/{db}"

    def _probe_client(self) -> aioredis.Redis:
        return redis_client(
            self.url_for("engine", ENGINE_PW),
            RedisSecurity(ca_file=str(self.tls.ca)),
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
        )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployRedis]:
    yield from running(DeployRedis(make_tls_files(tmp_path_factory.mktemp("tls"))))


def _client(server: DeployRedis, user: str | None, password: str | None) -> aioredis.Redis:
    return redis_client(server.url_for(user, password), RedisSecurity(ca_file=str(server.tls.ca)))


@pytest.mark.asyncio
async def test_no_default_user_and_no_plaintext(deployed: DeployRedis) -> None:
    anonymous = _client(deployed, None, None)
    try:
        with pytest.raises(AuthenticationError):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    plain = aioredis.Redis.from_url(f"redis://engine:{ENGINE_PW}@localhost:{deployed.port}/0")
    try:
        with pytest.raises(RedisError):
            await plain.ping()  # the port speaks TLS only
    finally:
        await plain.aclose()


def test_the_pipeline_runs_as_the_engine_user_and_bots_only_read(
    deployed: DeployRedis,
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "redis-engine-password"
    secret.write_text(ENGINE_PW + "\n")
    for name, value in (
        ("USERNAME", "engine"),
        ("PASSWORD_FILE", str(secret)),
        ("CA_FILE", str(deployed.tls.ca)),
    ):
        monkeypatch.setenv(f"REGIME_ENGINE_REDIS_{name}", value)
    args = ["demo", "--max-speed", "--json", "--kafka", kafka_bootstrap, "--no-idempotence"]
    assert main([*args, "--redis", deployed.url_for(None, None)]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["events_received"] == sum(EVENTS_BY_TYPE.values())  # the demo session's
    asyncio.run(_bot_reads_and_cannot_write(deployed, summary["events_received"]))


async def _bot_reads_and_cannot_write(server: DeployRedis, events: int) -> None:
    config = SubscriberConfig(
        server.url_for("bot", BOT_PW),
        start_id="0",
        security=RedisSecurity(ca_file=str(server.tls.ca)),
    )
    seen = 0
    async with RegimeSubscriber(config) as subscriber:
        assert set(subscriber.levels) == {"BTC"}
        async for _ in subscriber:
            seen += 1
            if seen == events:
                break
    bot = _client(server, "bot", BOT_PW)
    try:
        for write in (
            bot.xadd(events_stream("BTC"), {STREAM_FIELD: b"{}"}),
            bot.set(levels_key("BTC"), b"{}"),
            bot.publish("regime:events:BTC", b"{}"),
            bot.hgetall("regime:engine:regime-engine:written"),
            bot.get("other:key"),
        ):
            with pytest.raises(NoPermissionError):
                await write
    finally:
        await bot.aclose()
