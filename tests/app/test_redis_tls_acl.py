"""Redis over TLS (``rediss://``, a CA made in the test, client certificates) with ACL users,
against a real redis-server: the SDK reads as the read-only user, who cannot write; bad
trust fails with one line naming the service. (The whole pipeline over TLS as the engine's
user: ``test_secrets_redacted.py``.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from redis.exceptions import NoPermissionError

from connectors.common.redis_conn import RedisSecurity, redis_client
from engine.app.alert import AlertConfig, run_alerts
from engine.app.cli import main
from engine.app.dashboard import DashboardConfig
from engine.app.dashboard import serve as serve_dashboard
from engine.client.subscriber import RegimeSubscriber, SubscriberConfig, SubscriberError
from schemas.channels import STREAM_FIELD, events_stream, levels_key
from schemas.events import encode_event
from schemas.levels import encode_levels
from tests.app.test_subscriber import make_event, make_levels, new_underlying
from tests.conditions import eventually
from tests.secure_helpers import (
    USERS,
    SecureRedis,
    TlsFiles,
    make_tls_files,
    running,
)

BOT_PW = USERS["bot"][0]
ENGINE_PW = USERS["engine"][0]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure(tls: TlsFiles) -> Iterator[SecureRedis]:
    """TLS without client certificates."""
    yield from running(SecureRedis(tls))


@pytest.fixture(scope="module")
def mutual(tls: TlsFiles) -> Iterator[SecureRedis]:
    """TLS where every client must present a certificate signed by the CA."""
    yield from running(SecureRedis(tls, tls_auth_clients=True))


async def _write_events(server: SecureRedis, underlying: str, n: int) -> list[str]:
    """``n`` events and the levels of ``underlying``, written as the engine user over TLS."""
    client = redis_client(server.tls_url("engine"), RedisSecurity(ca_file=str(server.tls.ca)))
    ids = []
    try:
        await client.set(levels_key(underlying), encode_levels(make_levels(underlying)))
        for i in range(n):
            event = make_event(underlying, i)
            await client.xadd(events_stream(underlying), {STREAM_FIELD: encode_event(event)})
            ids.append(event.id)
    finally:
        await client.aclose()
    return ids


async def _read(config: SubscriberConfig, n: int) -> tuple[list[str], set[str]]:
    out: list[str] = []
    async with RegimeSubscriber(config) as subscriber:
        levels = set(subscriber.levels)
        async for delivery in subscriber:
            out.append(delivery.event.id)
            if len(out) == n:
                break
    return out, levels


@pytest.mark.asyncio
async def test_sdk_reads_over_tls_as_the_read_only_user_from_the_url(secure: SecureRedis) -> None:
    u = new_underlying()
    ids = await _write_events(secure, u, 3)
    config = SubscriberConfig(
        secure.tls_url("bot"),
        underlyings=(u,),
        start_id="0",
        security=RedisSecurity(ca_file=str(secure.tls.ca)),
    )
    assert await _read(config, 3) == (ids, {u})


@pytest.mark.asyncio
async def test_sdk_user_and_password_file_from_settings(
    secure: SecureRedis, tmp_path: Path
) -> None:
    u = new_underlying()
    ids = await _write_events(secure, u, 2)
    secret = tmp_path / "redis-password"
    secret.write_text(BOT_PW + "\n")
    security = RedisSecurity(username="bot", password_file=str(secret), ca_file=str(secure.tls.ca))
    config = SubscriberConfig(secure.tls_url(), underlyings=(u,), start_id="0", security=security)
    assert await _read(config, 2) == (ids, {u})
    # None discovered: the bot's ACL lets it SCAN its keys too.
    discovering = SubscriberConfig(secure.tls_url(), start_id="0", security=security)
    async with RegimeSubscriber(discovering) as subscriber:
        assert u in subscriber.underlyings


@pytest.mark.asyncio
async def test_the_read_only_user_cannot_write(secure: SecureRedis) -> None:
    u = new_underlying()
    client = redis_client(secure.tls_url("bot"), RedisSecurity(ca_file=str(secure.tls.ca)))
    try:
        with pytest.raises(NoPermissionError):
            await client.xadd(events_stream(u), {STREAM_FIELD: b"{}"})
        with pytest.raises(NoPermissionError):
            await client.set(levels_key(u), b"{}")
        with pytest.raises(NoPermissionError):
            await client.publish(f"regime:events:{u}", b"{}")
    finally:
        await client.aclose()
    engine = redis_client(secure.tls_url("engine"), RedisSecurity(ca_file=str(secure.tls.ca)))
    try:
        assert await engine.exists(events_stream(u), levels_key(u)) == 0
    finally:
        await engine.aclose()


@pytest.mark.asyncio
async def test_an_untrusted_server_certificate_fails_at_once(secure: SecureRedis) -> None:
    config = SubscriberConfig(
        secure.tls_url("bot"),
        underlyings=("BTC",),
        security=RedisSecurity(ca_file=str(secure.tls.other_ca)),
    )
    subscriber = RegimeSubscriber(config)
    with pytest.raises(SubscriberError) as info:
        await subscriber.start()
    assert str(info.value) == (
        f"redis rediss://bot:***@localhost:{secure.tls_port}/0: TLS verification failed "
        "(self-signed certificate in certificate chain)"
    )
    assert subscriber.state == "failed"


@pytest.mark.asyncio
async def test_client_certificate_when_the_server_demands_one(mutual: SecureRedis) -> None:
    u = new_underlying()
    tls = mutual.tls
    with_cert = RedisSecurity(
        ca_file=str(tls.ca), cert_file=str(tls.client_cert), key_file=str(tls.client_key)
    )
    client = redis_client(mutual.tls_url("engine"), with_cert)
    try:
        await client.set(levels_key(u), encode_levels(make_levels(u)))
    finally:
        await client.aclose()
    config = SubscriberConfig(mutual.tls_url("bot"), underlyings=(u,), security=with_cert)
    async with RegimeSubscriber(config) as subscriber:
        assert set(subscriber.levels) == {u}
    without = SubscriberConfig(
        mutual.tls_url("bot"), underlyings=(u,), security=RedisSecurity(ca_file=str(tls.ca))
    )
    with pytest.raises(SubscriberError) as info:
        await RegimeSubscriber(without).start()
    assert str(info.value).startswith(
        f"redis rediss://bot:***@localhost:{mutual.tls_port}/0: TLS handshake failed"
    )


def test_tls_settings_need_a_rediss_url() -> None:
    with pytest.raises(ValueError, match="need a rediss:// URL, got redis://bot:\\*\\*\\*@h/0"):
        SubscriberConfig("redis://bot:pw@h/0", security=RedisSecurity(ca_file="ca.pem"))


def test_subscribe_over_tls_with_flags_and_the_password_in_the_environment(
    secure: SecureRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    u = new_underlying()
    ids = asyncio.run(_write_events(secure, u, 2))
    monkeypatch.setenv("REGIME_ENGINE_REDIS_PASSWORD", BOT_PW)
    args = ["subscribe", "--redis", secure.tls_url(), "--redis-user", "bot"]
    args += ["--redis-ca-file", str(secure.tls.ca), "--underlying", u, "--from", "0"]
    assert main([*args, "--count", "2", "--json"]) == 0
    out = capsys.readouterr()
    assert [orjson.loads(line)["id"] for line in out.out.splitlines()] == ids
    assert BOT_PW not in out.out + out.err


@pytest.mark.asyncio
async def test_dashboard_reads_over_tls_as_the_read_only_user(secure: SecureRedis) -> None:
    u = new_underlying()
    await _write_events(secure, u, 1)
    config = DashboardConfig(
        redis_url=secure.tls_url("bot"), port=0, security=RedisSecurity(ca_file=str(secure.tls.ca))
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_dashboard(config, stop, ready.set_result))
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        url = f"{ready.result()}api/underlyings"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert u in (await response.json())["underlyings"]
    finally:
        stop.set()
        await task


@pytest.mark.asyncio
async def test_alert_delivers_over_tls_as_the_engine_user(secure: SecureRedis) -> None:
    """The alerter's subscriber and its resume-point writes use the same security."""
    u = new_underlying()
    ids = await _write_events(secure, u, 2)
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json())["id"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    config = AlertConfig(
        secure.tls_url("engine"), f"http://127.0.0.1:{port}/hook", underlyings=(u,),
        start="0", group=u, security=RedisSecurity(ca_file=str(secure.tls.ca)),
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(run_alerts(config, stop))
    try:
        await eventually(lambda: len(received) == 2 or task.done(), 30, "no deliveries")
        assert received == ids
    finally:
        stop.set()
        await task
        await runner.cleanup()
