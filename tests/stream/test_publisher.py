"""RedisPublisher against a real Redis: the Lua write, per-partition watermarks, trimming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from engine.stream.publisher import PendingWrite, RedisPublisher

# The keys DESIGN §2.4 names, spelled out here rather than taken from schemas.channels.
STREAM, CHANNEL, LEVELS = "regime:stream:BTC", "regime:events:BTC", "regime:levels:BTC"
WATERMARKS = "regime:engine:g1:written"


@pytest_asyncio.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


def event(offset: int, payload: bytes, source: str = "ticks/0") -> PendingWrite:
    return PendingWrite(source=source, offset=offset, underlying="BTC", payload=payload)


async def stream_payloads(client: Redis, key: str = STREAM) -> list[bytes]:
    return [fields[b"event"] for _, fields in await client.xrange(key)]


@pytest.mark.asyncio
async def test_a_batch_adds_publishes_sets_levels_and_advances_the_watermark(
    client: Redis,
) -> None:
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    assert (await pubsub.get_message(timeout=10.0))["type"] == "subscribe"
    publisher = RedisPublisher(client, "g1")

    written = await publisher.write(
        [event(5, b'{"e":1}'), event(6, b'{"e":2}')], [event(6, b'{"l":6}')], {"ticks/0": 6}
    )

    assert written == 2
    assert await stream_payloads(client) == [b'{"e":1}', b'{"e":2}']
    assert await client.get(LEVELS) == b'{"l":6}'
    assert await client.hgetall(WATERMARKS) == {b"ticks/0": b"6"}
    assert await publisher.watermarks() == {"ticks/0": 6}
    messages: list[bytes] = []
    async with asyncio.timeout(30):
        while len(messages) < 2:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                messages.append(message["data"])
    assert messages == [b'{"e":1}', b'{"e":2}']
    await pubsub.aclose()
    assert (publisher.events_written, publisher.events_skipped, publisher.levels_written) == (
        2,
        0,
        1,
    )


@pytest.mark.asyncio
async def test_writes_at_or_below_the_watermark_are_skipped(client: Redis) -> None:
    publisher = RedisPublisher(client, "g1")
    await publisher.write([event(5, b"a"), event(6, b"b")], [event(6, b"L6")], {"ticks/0": 6})

    # A replay after a restart: offsets 5 and 6 again (old levels too), then a new one at 7.
    written = await publisher.write(
        [event(5, b"a"), event(6, b"b"), event(7, b"c")], [event(6, b"old")], {"ticks/0": 7}
    )
    assert written == 1
    assert await stream_payloads(client) == [b"a", b"b", b"c"]
    assert await client.get(LEVELS) == b"L6"
    assert await publisher.watermarks() == {"ticks/0": 7}
    assert (publisher.events_written, publisher.events_skipped) == (3, 2)

    # A lower mark never moves the watermark back; levels beyond it are written.
    assert await publisher.write([], [event(8, b"L8")], {"ticks/0": 3}) == 0
    assert await publisher.watermarks() == {"ticks/0": 7}
    assert await client.get(LEVELS) == b"L8"


@pytest.mark.asyncio
async def test_watermarks_are_per_partition_and_per_group(client: Redis) -> None:
    g1 = RedisPublisher(client, "g1")
    await g1.write([event(9, b"p0")], [], {"ticks/0": 9})
    # Another partition at a lower offset is not behind partition 0's watermark.
    assert await g1.write([event(2, b"p1", source="ticks/1")], [], {"ticks/1": 2}) == 1
    assert await g1.watermarks() == {"ticks/0": 9, "ticks/1": 2}
    # Another consumer group has watermarks of its own.
    g2 = RedisPublisher(client, "g2")
    assert await g2.write([event(9, b"g2")], [], {"ticks/0": 9}) == 1
    assert await client.hgetall("regime:engine:g2:written") == {b"ticks/0": b"9"}
    assert await stream_payloads(client) == [b"p0", b"p1", b"g2"]


@pytest.mark.asyncio
async def test_the_stream_is_trimmed_to_about_maxlen(client: Redis) -> None:
    publisher = RedisPublisher(client, "g1", stream_maxlen=10)
    payloads = [str(i).encode() for i in range(1_000)]
    for start in range(0, 1_000, 50):
        batch = [event(i, payloads[i]) for i in range(start, start + 50)]
        assert await publisher.write(batch, [], {"ticks/0": start + 49}) == 50
    kept = await stream_payloads(client)
    # MAXLEN ~ trims whole macro nodes only, keeping at least maxlen entries. Nodes hold
    # 100 entries here (these tiny entries stay far below the node's byte limit): once the
    # node of entries 900-999 holds 11 entries (>= maxlen), the node before it goes, so the
    # newest whole node is what remains. An exact MAXLEN would keep 10.
    assert await client.config_get("stream-node-max-entries") == {"stream-node-max-entries": "100"}
    assert kept == payloads[900:]


@pytest.mark.asyncio
async def test_an_empty_batch_writes_nothing(client: Redis) -> None:
    publisher = RedisPublisher(client, "g1")
    assert await publisher.write([], [], {}) == 0
    assert await client.keys("*") == []


def test_maxlen_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stream_maxlen must be positive"):
        RedisPublisher(Redis(), "g1", stream_maxlen=0)


@pytest.mark.asyncio
async def test_the_profile_is_set_with_its_levels_and_skipped_with_them(client: Redis) -> None:
    publisher = RedisPublisher(client, "g1")
    with_profile = PendingWrite("ticks/0", 6, "BTC", b'{"l":6}', profile=b'{"p":6}')
    await publisher.write([], [with_profile, event(6, b'{"l":6}', source="ticks/1")], {})
    assert await client.get(LEVELS) == b'{"l":6}'
    assert await client.get("regime:profile:BTC") == b'{"p":6}'
    # levels without a profile leave the last profile in place
    await publisher.write([], [event(7, b'{"l":7}')], {"ticks/0": 7})
    assert await client.get(LEVELS) == b'{"l":7}'
    assert await client.get("regime:profile:BTC") == b'{"p":6}'
    # a replayed input sets neither
    old = PendingWrite("ticks/0", 7, "BTC", b'{"l":"old"}', profile=b'{"p":"old"}')
    await publisher.write([], [old], {})
    assert (await client.get(LEVELS), await client.get("regime:profile:BTC")) == (
        b'{"l":7}',
        b'{"p":6}',
    )
