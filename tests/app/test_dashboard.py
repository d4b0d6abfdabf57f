"""`regime-engine dashboard` over HTTP: the page, and what its event stream carries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import aiohttp
import orjson
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from connectors.common.redis_embedded import EmbeddedRedis
from engine.app.cli import main
from engine.app.dashboard import DashboardConfig, serve
from schemas.config import ConfigError
from tests.app.dashboard_helpers import SSE, event_doc, handmade, moved, publish


async def _start(config: DashboardConfig) -> tuple[str, asyncio.Event, asyncio.Task]:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, stop, ready.set_result))
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when="FIRST_COMPLETED")
    assert ready in done, task.exception() if task.done() else "the dashboard did not start"
    return ready.result(), stop, task


@pytest_asyncio.fixture
async def dashboard(redis_url: str) -> AsyncIterator[str]:
    url, stop, task = await _start(DashboardConfig(redis_url=redis_url, port=0))
    try:
        yield url
    finally:
        stop.set()
        await task


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith("data:"):
                self.fetched.append(attrs[name])


@pytest.mark.asyncio
async def test_the_page_is_one_self_contained_file(dashboard: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(dashboard) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    tags = _Tags()
    tags.feed(page)
    assert tags.fetched == []  # works offline: nothing fetched but its own /events and /api
    assert {"underlying", "bucket", "status", "stale", "levels", "profile", "strikes", "tape"} <= (
        tags.ids
    )
    assert "/*" + "ECHARTS*/" not in page and "echarts" in page
    assert 'const SETTINGS = {"buckets":["all","0dte","front"],"stale_after_s":30.0}' in page


@pytest.mark.asyncio
async def test_the_stream_sends_the_tape_the_levels_with_charts_and_new_events(
    dashboard: str, redis: Redis
) -> None:
    levels, profile = handmade()
    await publish(redis, [event_doc(1), event_doc(2, bucket="all")], levels, profile)
    async with aiohttp.ClientSession() as session:
        async with session.get(dashboard + "api/underlyings") as response:
            assert await response.json() == {"underlyings": ["SPX"]}
        query = "events?underlying=SPX&bucket=all"
        async with session.get(dashboard + query) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            stream = SSE(response)
            ids = [i.decode() for i, _ in await redis.xrange("regime:stream:SPX")]
            assert await stream.next() == (
                "tape",
                [_with_id(event_doc(1), ids[0]), _with_id(event_doc(2, bucket="all"), ids[1])],
            )
            name, message = await stream.next()
            assert name == "levels"
            assert message["levels"] == orjson.loads(await redis.get("regime:levels:SPX"))
            assert message["bucket"] == "all"
            profile_chart, strikes_chart = message["charts"]
            assert profile_chart["kind"] == "profile" and strikes_chart["kind"] == "strikes"
            assert profile_chart["zero_gamma"] == levels.zero_gamma
            assert (profile_chart["call_wall"], profile_chart["put_wall"]) == (4200.0, 3800.0)
            assert strikes_chart["strikes"] == [3800.0, 4000.0, 4200.0]
            status = await stream.until("status")
            assert (status["state"], status["underlying"], status["stale"]) == (
                "live",
                "SPX",
                False,
            )
            # A new event, then new levels: each arrives once.
            await publish(redis, [event_doc(3, type="call_wall_break")])
            (new,) = await stream.until("events")
            assert (new["id"], new["type"], new["detail"]) == (
                "test/SPX/3",
                "call_wall_break",
                {"n": 3, "band_bps": 10},
            )
            await publish(redis, [], moved(levels, 3990.0), profile)
            message = await stream.until("levels")
            assert message["levels"]["spot"] == 3990.0
            assert message["charts"] == []  # the profile beside it is of another instant


def _with_id(event: dict, stream_id: str) -> dict:
    return {"stream_id": stream_id, **event}


@pytest.mark.asyncio
async def test_a_burst_of_levels_reaches_the_page_as_its_latest_only(
    dashboard: str, redis: Redis
) -> None:
    levels, profile = handmade()
    await publish(redis, [], levels, profile)
    async with (
        aiohttp.ClientSession() as session,
        session.get(dashboard + "events?underlying=SPX&bucket=front") as response,
    ):
        stream = SSE(response)
        assert (await stream.until("levels"))["levels"]["spot"] == 4000.0
        await stream.until("status")
        # 50 versions in one transaction: the page is sent only the last.
        async with redis.pipeline(transaction=True) as pipe:
            for j in range(50):
                pipe.set("regime:levels:SPX", orjson.dumps(moved(levels, 3950.0 + j).to_dict()))
            await pipe.execute()
        assert (await stream.until("levels"))["levels"]["spot"] == 3999.0
        await publish(redis, [event_doc(9)])
        await stream.until("events")  # the next cycle: no other levels message came first


@pytest.mark.asyncio
async def test_unreadable_levels_are_reported_not_fatal(dashboard: str, redis: Redis) -> None:
    await redis.set("regime:levels:SPX", b"not json")
    async with (
        aiohttp.ClientSession() as session,
        session.get(dashboard + "events?underlying=SPX&bucket=all") as response,
    ):
        stream = SSE(response)
        status = await stream.until("status")
        assert status["error"].startswith("regime:levels:SPX unreadable: JSONDecodeError")
        levels, profile = handmade()
        await publish(redis, [], levels, profile)
        assert (await stream.until("levels"))["levels"]["spot"] == 4000.0


@pytest.mark.asyncio
async def test_bad_queries_are_refused(dashboard: str) -> None:
    async with aiohttp.ClientSession() as session:
        for query in ("events", "events?underlying=SPX&bucket=weekly"):
            async with session.get(dashboard + query) as response:
                assert response.status == 400
        async with session.get(dashboard + "nope") as response:
            assert response.status == 404


@pytest.mark.asyncio
async def test_a_redis_restart_shows_reconnecting_then_resumes() -> None:
    server = EmbeddedRedis(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    await server.start()
    url, stop, task = await _start(DashboardConfig(redis_url=server.url, port=0))
    client = Redis.from_url(server.url)
    try:
        levels, profile = handmade()
        await publish(client, [event_doc(1)], levels, profile)
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "events?underlying=SPX&bucket=all") as response,
        ):
            stream = SSE(response)
            await stream.until("levels")
            await server.kill()
            status = await stream.until_status("reconnecting")
            assert status["stale"] is True
            assert status["error"]
            await server.restart()
            (again,) = await stream.until("tape")  # kept by the append-only file
            assert again["id"] == "test/SPX/1"
            assert (await stream.until("levels"))["levels"]["spot"] == 4000.0
            await stream.until_status("live")
            await client.aclose()  # its connection died with the server
            client = Redis.from_url(server.url)
            await publish(client, [event_doc(2)], moved(levels, 4010.0), profile)
            assert (await stream.until("levels"))["levels"]["spot"] == 4010.0
    finally:
        await client.aclose()
        stop.set()
        await task
        await server.stop()


def test_cli_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.delenv("REGIME_ENGINE_REDIS", raising=False)
    for argv, expected in (
        (["dashboard"], "dashboard needs --redis URL"),
        (["dashboard", "--redis", "redis://127.0.0.1:1/0", "--port", "70000"], "port must be"),
        (["dashboard", "--redis", "redis://x/0", "--stale-after", "0"], "stale_after_s must"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err


def test_config_rejects_nonsense():
    with pytest.raises(ConfigError, match="max_rate_hz"):
        DashboardConfig(redis_url="redis://x/0", max_rate_hz=0)
    with pytest.raises(ConfigError, match="tape_size"):
        DashboardConfig(redis_url="redis://x/0", tape_size=0)


@pytest.mark.asyncio
async def test_levels_that_stop_changing_are_reported_stale(redis_url: str, redis: Redis) -> None:
    config = DashboardConfig(redis_url=redis_url, port=0, stale_after_s=0.3, status_every_s=0.05)
    url, stop, task = await _start(config)
    try:
        levels, profile = handmade()
        await publish(redis, [], levels, profile)
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "events?underlying=SPX&bucket=all") as response,
        ):
            stream = SSE(response)
            await stream.until("levels")
            async with asyncio.timeout(60):
                while not (status := await stream.until("status"))["stale"]:
                    assert status["age_s"] <= 0.3 + 1e-9
            assert status["state"] == "live" and status["age_s"] > 0.3
            await publish(redis, [], moved(levels, 3999.0), profile)  # fresh again
            await stream.until("levels")
            assert (await stream.until("status"))["stale"] is False
    finally:
        stop.set()
        await task


@pytest.mark.asyncio
async def test_connections_beyond_the_limit_get_503(redis_url: str) -> None:
    url, stop, task = await _start(DashboardConfig(redis_url=redis_url, port=0, max_clients=1))
    try:
        query = url + "events?underlying=SPX&bucket=all"
        async with aiohttp.ClientSession() as session, session.get(query) as first:
            await SSE(first).until("status")  # the first page is connected
            async with session.get(query) as second:
                assert second.status == 503
    finally:
        stop.set()
        await task
