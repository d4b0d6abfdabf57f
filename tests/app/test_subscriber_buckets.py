"""The subscriber's bucket filter matches an event published once for several buckets."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from engine.client.subscriber import RegimeSubscriber, SubscriberConfig
from schemas.config import ConfigError
from tests.app.test_subscriber import (
    FAST,
    TIMEOUTS,
    make_event,
    new_underlying,
    publish,
    take,
)


def test_event_buckets_come_from_detail_buckets() -> None:
    event = make_event("BTC", 0)
    assert event.buckets == ("all",)
    shared = replace(event, bucket="0dte", detail={"buckets": ["0dte", "front"]})
    assert shared.buckets == ("0dte", "front")
    assert shared.in_buckets(["front"]) and shared.in_buckets(("0dte",))
    assert not shared.in_buckets(["all"])
    # a detail.buckets that does not name the event's own bucket is not trusted
    odd = replace(event, bucket="all", detail={"buckets": ["front"]})
    assert odd.buckets == ("all",)


@pytest.mark.parametrize("bad", [("weekly",), (), "front"])
def test_config_rejects_bad_buckets(bad: object) -> None:
    with pytest.raises(ConfigError, match="buckets must be"):
        SubscriberConfig(buckets=bad)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_front_filter_gets_the_0dte_event_that_stands_for_front(
    redis_server_url: str,
) -> None:
    writer = aioredis.Redis.from_url(redis_server_url, **TIMEOUTS)
    try:
        await _front_filter(redis_server_url, writer)
    finally:
        await writer.aclose()


async def _front_filter(redis_server_url: str, writer: aioredis.Redis) -> None:
    u = new_underlying()
    only_all = make_event(u, 0)
    shared = replace(make_event(u, 1), bucket="0dte", detail={"buckets": ["0dte", "front"]})
    only_0dte = replace(make_event(u, 2), bucket="0dte")
    for e in (only_all, shared, only_0dte):
        await publish(writer, e)
    cfg = SubscriberConfig(
        redis_server_url, underlyings=(u,), start_id="0", buckets=("front",), **FAST
    )
    async with RegimeSubscriber(cfg) as sub:
        got = await take(sub, 1)
        assert [d.event for d in got] == [shared]
        last = make_event(u, 3)
        last_id = await publish(writer, replace(last, bucket="front"))
        assert [d.stream_id for d in await take(sub, 1)] == [last_id]
        assert sub.delivered == 2
