"""`regime-engine demo` with the dashboard: served beside the session, gone after it."""

from __future__ import annotations

import io

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from engine.app.cli import main
from engine.app.demo import DemoConfig, DemoSummary, PlainView, run_demo
from engine.app.settings import load_settings
from tests.app.dashboard_helpers import SSE


@pytest.mark.asyncio
async def test_the_demo_serves_the_dashboard_while_it_lingers(
    kafka_bootstrap: str, redis_url: str
) -> None:
    settings = load_settings(
        {"kafka": kafka_bootstrap, "redis": redis_url, "idempotence": False}, {}, None
    )
    seen: dict = {}

    async def linger(summary: DemoSummary) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(summary.dashboard + "api/underlyings") as response:
                seen["underlyings"] = await response.json()
            query = "events?underlying=BTC&bucket=all"
            async with session.get(summary.dashboard + query) as response:
                seen["levels"] = (await SSE(response).until("levels"))["levels"]

    demo = DemoConfig(speed=None, dashboard_port=0)
    summary = await run_demo(settings, demo, PlainView(out=io.StringIO()), linger=linger)
    assert summary.dashboard.startswith("http://127.0.0.1:")
    assert seen["underlyings"] == {"underlyings": ["BTC"]}
    async with Redis.from_url(redis_url) as client:
        assert seen["levels"] == orjson.loads(await client.get("regime:levels:BTC"))
    assert seen["levels"]["asof_ns"] == summary.levels.asof_ns
    # stopped with the demo's other services
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(summary.dashboard)


def test_a_bad_dashboard_port_is_one_line(capsys) -> None:
    assert main(["demo", "--dashboard", "--dashboard-port", "70000", "--max-speed"]) == 2
    assert "--dashboard-port must be in [0, 65535]" in capsys.readouterr().err
