"""RegimeSubscriber against a real (embedded) Redis, with DESIGN §2.4 shapes in the keys."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from uuid import uuid4

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from connectors.common.redis_embedded import EmbeddedRedis
from engine.client.subscriber import (
    Delivery,
    RegimeSubscriber,
    SubscriberConfig,
    SubscriberError,
    latest_levels,
)
from schemas.channels import events_stream, levels_key
from schemas.config import ConfigError
from schemas.levels import BucketLevels, Levels, encode_levels
from tests.fakes.regime_events import ASOF_NS, make_event, new_underlying, publish

# Short blocks and backoffs; bounded retries, so a lost server fails a test instead of hanging.
FAST = {
    "block_ms": 100,
    "reconnect_min_s": 0.01,
    "reconnect_max_s": 0.1,
    "max_reconnect_attempts": 100,
}
TIMEOUTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


# -- fixtures and helpers ---------------------------------------------------------------


@pytest_asyncio.fixture
async def writer(redis_server_url: str) -> AsyncIterator[aioredis.Redis]:
    """Writes what the publisher writes; one connection, which CLIENT KILL SKIPME spares."""
    client = aioredis.Redis.from_url(redis_server_url, single_connection_client=True, **TIMEOUTS)
    try:
        yield client
    finally:
        await client.aclose()


def make_levels(underlying: str, spot: float = 43_500.0, asof_ns: int = ASOF_NS) -> Levels:
    bucket = BucketLevels(
        net_gex=-1.25e9,
        zero_gamma=43_200.0,
        zero_gamma_crossings=(41_000.0, 43_200.0),
        call_wall=45_000.0,
        put_wall=40_000.0,
        abs_gamma_strike=44_000.0,
        regime="negative",
        contracts_used=812,
        expiries=("2024-01-26T08:00:00Z",),
    )
    front = BucketLevels(2.5e8, None, (), 44_000.0, 42_000.0, 44_000.0, "positive", 120)
    return Levels(
        underlying=underlying,
        spot=spot,
        asof_ns=asof_ns,
        model="long_calls_short_puts",
        preset=None,
        gamma_source="iv",
        buckets={"all": bucket, "0dte": bucket, "front": front},
    )


async def set_levels(client: aioredis.Redis, levels: Levels) -> None:
    await client.set(levels_key(levels.underlying), encode_levels(levels))


async def take(sub: RegimeSubscriber, n: int, timeout: float = 5.0) -> list[Delivery]:
    out: list[Delivery] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(sub))
    return out


async def assert_nothing_more(sub: RegimeSubscriber, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(wait):
            await anext(sub)


async def wait_blocked_in_xread(client: aioredis.Redis, name: str, timeout: float = 60.0) -> None:
    """Until the subscriber connection named ``name`` is blocked in XREAD (``timeout``: a cap
    for a loaded machine)."""
    async with asyncio.timeout(timeout):
        while True:
            for info in await client.client_list():
                if info.get("name") == name and info.get("cmd") == "xread" and "b" in info["flags"]:
                    return
            await asyncio.sleep(0.005)


async def kill_named(client: aioredis.Redis, name: str) -> int:
    """CLIENT KILL the connections named ``name`` (only the subscriber's: other tests' clients
    on the shared server are spared); how many were killed."""
    ids = [info["id"] for info in await client.client_list() if info.get("name") == name]
    return sum([await client.client_kill_filter(_id=i) for i in ids])


# -- config -----------------------------------------------------------------------------


def test_config_normalises_ids_and_names() -> None:
    cfg = SubscriberConfig(
        "redis://h:1/0", underlyings=["BTC", "ETH"], start_id="0", start_ids={"ETH": "17"}
    )
    assert cfg.underlyings == ("BTC", "ETH")
    assert cfg.start_id == "0-0"
    assert dict(cfg.start_ids) == {"ETH": "17-0"}
    assert cfg.start_for("BTC", initial=True) == "0-0"
    assert cfg.start_for("ETH", initial=True) == "17-0"
    dollar = SubscriberConfig(start_id="$")
    assert dollar.start_for("SPX", initial=True) == "$"
    assert dollar.start_for("SPX", initial=False) == "0-0"  # a stream discovered later
    assert SubscriberConfig.from_mapping({"underlyings": ["ES"], "count": 5}).underlyings == ("ES",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_url": "http://x"}, "redis_url"),
        ({"underlyings": ()}, "underlyings is empty"),
        ({"underlyings": "BTC"}, "tuple of names"),
        ({"underlyings": ("BTC", "BTC")}, "duplicates"),
        ({"underlyings": ("a:b",)}, "bad underlying name"),
        ({"underlyings": ("*",)}, "bad underlying name"),
        ({"start_id": "latest"}, "start_id must be a stream id"),
        ({"start_id": "1-2-3"}, "start_id must be a stream id"),
        ({"start_id": 0}, "start_id must be a string"),
        ({"underlyings": ("BTC",), "start_ids": {"ETH": "0"}}, "not subscribed"),
        ({"start_ids": {"BTC": "x"}}, "start_ids\\['BTC'\\]"),
        ({"block_ms": 0}, "block_ms must be a positive integer"),
        ({"count": 1.5}, "count must be a positive integer"),
        ({"reconnect_min_s": 0}, "reconnect_min_s must be a positive number"),
        ({"reconnect_min_s": 2.0, "reconnect_max_s": 1.0}, "reconnect_max_s must be >="),
        ({"max_reconnect_attempts": -1}, "max_reconnect_attempts"),
    ],
)
def test_config_rejects_bad_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SubscriberConfig(**values)  # type: ignore[arg-type]


def test_config_from_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown subscriber config keys: blockms"):
        SubscriberConfig.from_mapping({"blockms": 10})


def test_backoff_is_capped_and_jittered() -> None:
    sub = RegimeSubscriber(SubscriberConfig(reconnect_min_s=0.1, reconnect_max_s=1.0))
    random.seed(7)
    for failures, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0)]:
        delays = [sub._backoff(failures) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays), (failures, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered


# -- levels -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_levels_read_on_connect(redis_server_url: str, writer: aioredis.Redis) -> None:
    have, missing, broken = new_underlying(), new_underlying(), new_underlying()
    levels = make_levels(have)
    await set_levels(writer, levels)
    await writer.set(levels_key(broken), b'{"underlying": "X"}')
    cfg = SubscriberConfig(redis_server_url, underlyings=(have, missing, broken), **FAST)
    with capture_logs() as logs:
        async with RegimeSubscriber(cfg) as sub:
            assert sub.connected
            assert sub.levels == {have: levels}
            assert sub.levels[have].zero_gamma == 43_200.0
            assert sub.levels[have].buckets["front"].zero_gamma is None
            newer = make_levels(have, spot=44_000.0, asof_ns=ASOF_NS + 1)
            await set_levels(writer, newer)
            assert sub.levels[have].spot == 43_500.0  # what GET returned on connect
            assert await sub.refresh_levels() == {have: newer}
    # Logged on connect and again on the refresh.
    assert [entry["underlying"] for entry in logs if entry["event"] == "malformed_levels"] == [
        broken,
        broken,
    ]
    assert await latest_levels(redis_server_url, have) == newer
    assert await latest_levels(redis_server_url, missing) is None
    with pytest.raises(ValueError, match=f"regime:levels:{broken} is not a levels object"):
        await latest_levels(redis_server_url, broken)


# -- reading the stream -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_from_zero_delivers_everything_in_order(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u = new_underlying()
    events = [make_event(u, n) for n in range(7)]
    ids = [await publish(writer, e) for e in events]
    cfg = SubscriberConfig(redis_server_url, underlyings=(u,), start_id="0", count=3, **FAST)
    async with RegimeSubscriber(cfg) as sub:
        assert sub.last_ids == {u: "0-0"}
        got = await take(sub, 7)
        assert [d.stream_id for d in got] == ids
        assert [d.event for d in got] == events
        assert [d.event.type for d in got] == [e.type for e in events]
        assert {d.underlying for d in got} == {u}
        assert sub.last_ids == {u: ids[-1]}
        assert sub.delivered == 7
        assert sub.malformed == 0
        await assert_nothing_more(sub)
        live = make_event(u, 7)
        live_id = await publish(writer, live)
        assert await take(sub, 1) == [Delivery(live_id, u, live)]


@pytest.mark.asyncio
async def test_start_at_dollar_gets_only_new_events(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u, empty = new_underlying(), new_underlying()
    old_ids = [await publish(writer, make_event(u, n)) for n in range(3)]
    cfg = SubscriberConfig(redis_server_url, underlyings=(u, empty), start_id="$", **FAST)
    async with RegimeSubscriber(cfg) as sub:
        # "$" is pinned at connect, so a reconnect before the first event cannot skip any.
        assert sub.last_ids == {u: old_ids[-1], empty: "0-0"}
        await assert_nothing_more(sub, 0.2)
        new = [make_event(u, 10), make_event(empty, 11), make_event(u, 12)]
        new_ids = [await publish(writer, e) for e in new]
        got = await take(sub, 3)
        # Order holds within a stream; across streams ids of the same millisecond can tie.
        assert [(d.stream_id, d.event) for d in got if d.underlying == u] == [
            (new_ids[0], new[0]),
            (new_ids[2], new[2]),
        ]
        assert [(d.stream_id, d.event) for d in got if d.underlying == empty] == [
            (new_ids[1], new[1])
        ]
        await assert_nothing_more(sub, 0.2)


@pytest.mark.asyncio
async def test_start_from_explicit_id_gets_exactly_those_after_it(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u, other = new_underlying(), new_underlying()
    ids = [await publish(writer, make_event(u, n)) for n in range(6)]
    other_ids = [await publish(writer, make_event(other, n)) for n in range(2)]
    cfg = SubscriberConfig(
        redis_server_url, underlyings=(u, other), start_id="$", start_ids={u: ids[2]}, **FAST
    )
    async with RegimeSubscriber(cfg) as sub:
        assert sub.last_ids == {u: ids[2], other: other_ids[-1]}
        got = await take(sub, 3)
        assert [d.stream_id for d in got] == ids[3:]
        assert [d.event.id for d in got] == [make_event(u, n).id for n in (3, 4, 5)]
        await assert_nothing_more(sub, 0.2)


@pytest.mark.asyncio
async def test_resume_from_persisted_last_ids(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u1, u2 = new_underlying(), new_underlying()
    written = []
    for n in range(8):
        u = u1 if n % 2 == 0 else u2
        written.append((await publish(writer, make_event(u, n)), u))
    cfg = SubscriberConfig(redis_server_url, underlyings=(u1, u2), start_id="0", **FAST)
    async with RegimeSubscriber(cfg) as first:
        got = await take(first, 5)
        saved = first.last_ids
    # Each underlying's entries come in stream order; the two streams are merged by id.
    for u in (u1, u2):
        delivered = [d.stream_id for d in got if d.underlying == u]
        assert delivered == [sid for sid, w in written if w == u][: len(delivered)]
    assert saved == {u: [d.stream_id for d in got if d.underlying == u][-1] for u in (u1, u2)}
    resumed = SubscriberConfig(redis_server_url, underlyings=(u1, u2), start_ids=saved, **FAST)
    async with RegimeSubscriber(resumed) as second:
        rest = await take(second, 3)
        await assert_nothing_more(second, 0.2)
    assert sorted((d.stream_id, d.underlying) for d in got + rest) == sorted(written)
    assert len({(d.stream_id, d.underlying) for d in got + rest}) == 8


@pytest.mark.asyncio
async def test_malformed_entries_are_skipped_and_counted(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u = new_underlying()
    stream = events_stream(u)
    good_first = await publish(writer, make_event(u, 1))
    bad = {"event": b"not json"}
    bad_ids = [
        (await writer.xadd(stream, bad)).decode(),
        (await writer.xadd(stream, {"other": b"{}"})).decode(),
        (await writer.xadd(stream, {"event": b"[1, 2]"})).decode(),
        (
            await writer.xadd(
                stream, {"event": orjson.dumps({**make_event(u, 2).to_dict(), "type": "nope"})}
            )
        ).decode(),
        (
            await writer.xadd(
                stream, {"event": orjson.dumps({**make_event(u, 3).to_dict(), "extra": 1})}
            )
        ).decode(),
    ]
    good_last = await publish(writer, make_event(u, 4))
    cfg = SubscriberConfig(redis_server_url, underlyings=(u,), start_id="0", **FAST)
    with capture_logs() as logs:
        async with RegimeSubscriber(cfg) as sub:
            got = await take(sub, 2)
            assert [d.stream_id for d in got] == [good_first, good_last]
            assert [d.event.detail["n"] for d in got] == [1, 4]
            assert sub.malformed == 5
            assert sub.delivered == 2
            assert sub.last_ids == {u: good_last}
            trailing = (await writer.xadd(stream, bad)).decode()
            await assert_nothing_more(sub, 0.3)
            assert sub.malformed == 6
            assert sub.last_ids == {u: trailing}  # skipped entries are not read again
    skipped = [e for e in logs if e["event"] == "malformed_stream_entry"]
    assert [e["stream_id"] for e in skipped] == [*bad_ids, trailing]
    assert {e["underlying"] for e in skipped} == {u}
    assert {e["log_level"] for e in skipped} == {"warning"}
    assert skipped[1]["error"] == "no 'event' field"
    assert "unknown event type 'nope'" in skipped[3]["error"]


@pytest.mark.asyncio
async def test_discovers_new_underlyings_when_none_are_given(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    old, fresh = new_underlying(), new_underlying()
    await publish(writer, make_event(old, 0))
    cfg = SubscriberConfig(
        redis_server_url, underlyings=None, start_id="$", discover_interval_s=0.05, **FAST
    )
    async with RegimeSubscriber(cfg) as sub:
        assert old in sub.underlyings
        assert fresh not in sub.underlyings
        await assert_nothing_more(sub, 0.2)  # "$": what was there before is not delivered
        levels = make_levels(fresh)
        await set_levels(writer, levels)
        # A stream created after the subscriber started is read from its beginning.
        fresh_ids = [await publish(writer, make_event(fresh, n)) for n in (1, 2)]
        got = await take(sub, 2)
        assert [(d.underlying, d.stream_id) for d in got] == [(fresh, i) for i in fresh_ids]
        assert fresh in sub.underlyings
        assert sub.levels[fresh] == levels
        old_id = await publish(writer, make_event(old, 3))
        assert [(d.underlying, d.stream_id) for d in await take(sub, 1)] == [(old, old_id)]


# -- reconnects -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reconnect_rereads_levels_and_resumes(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u = new_underlying()
    name = f"sub-{u}"
    first = make_levels(u, spot=1.0)
    await set_levels(writer, first)
    ids = [await publish(writer, make_event(u, n)) for n in range(2)]
    cfg = SubscriberConfig(
        redis_server_url, underlyings=(u,), start_id="0", client_name=name, block_ms=2000,
        reconnect_min_s=0.01, reconnect_max_s=0.05, max_reconnect_attempts=100,
    )  # fmt: skip
    async with RegimeSubscriber(cfg) as sub:
        assert sub.levels == {u: first}
        assert [d.stream_id for d in await take(sub, 2)] == ids
        waiting = asyncio.ensure_future(anext(sub))
        try:
            await wait_blocked_in_xread(writer, name)
            second = make_levels(u, spot=2.0)
            await set_levels(writer, second)
            killed = await kill_named(writer, name)
            assert killed == 1
            later = make_event(u, 2)
            later_id = await publish(writer, later)
            delivery = await asyncio.wait_for(waiting, 60.0)  # a cap for a loaded box
        finally:
            waiting.cancel()
        assert delivery == Delivery(later_id, u, later)
        assert sub.reconnects == 1
        assert sub.levels == {u: second}
        assert sub.last_ids == {u: later_id}


@pytest.mark.asyncio
async def test_client_kill_while_writing_no_gap_no_duplicate(
    redis_server_url: str, writer: aioredis.Redis
) -> None:
    u1, u2 = new_underlying(), new_underlying()
    name = f"sub-{u1}"
    total, kill_every = 240, 40
    written: list[tuple[str, str]] = []
    kills: list[int] = []

    async def write() -> None:
        for n in range(total):
            if n and n % kill_every == 0:
                # the subscriber's connection exists (it is not between two): kill it there,
                # then write on while it reconnects
                await wait_blocked_in_xread(writer, name)
                kills.append(await kill_named(writer, name))
            u = u1 if n % 3 else u2
            written.append((await publish(writer, make_event(u, n)), u))
            await asyncio.sleep(0.001)

    cfg = SubscriberConfig(
        redis_server_url, underlyings=(u1, u2), start_id="$", count=7, client_name=name, **FAST
    )
    async with RegimeSubscriber(cfg) as sub:
        got: list[Delivery] = []
        async with asyncio.TaskGroup() as group:
            group.create_task(write())
            async with asyncio.timeout(60):  # a cap for a loaded machine
                while len(got) < total:
                    got.append(await anext(sub))
        await assert_nothing_more(sub, 0.2)
    assert kills == [1] * (total // kill_every - 1)  # each round kills the one connection
    assert sub.reconnects == len(kills)  # one reconnect per killed connection
    by_underlying = {u: [sid for sid, w in written if w == u] for u in (u1, u2)}
    for u in (u1, u2):
        assert [d.stream_id for d in got if d.underlying == u] == by_underlying[u]
    assert sorted(d.stream_id for d in got) == sorted(sid for sid, _ in written)
    assert len({d.stream_id for d in got}) == total
    assert [d.event.detail["n"] for d in sorted(got, key=lambda d: d.event.detail["n"])] == list(
        range(total)
    )
    assert sub.malformed == 0


@pytest.mark.asyncio
async def test_server_kill_and_restart_reconnects_and_delivers_new_events() -> None:
    u = new_underlying()
    async with EmbeddedRedis() as server:
        client = aioredis.Redis.from_url(server.url, **TIMEOUTS)
        try:
            before = [await publish(client, make_event(u, n)) for n in range(3)]
            cfg = SubscriberConfig(server.url, underlyings=(u,), start_id="0", **FAST)
            async with RegimeSubscriber(cfg) as sub:
                assert [d.stream_id for d in await take(sub, 3)] == before
                await server.kill()
                await assert_nothing_more(sub, 0.3)  # retrying against a dead port
                assert not sub.connected
                await server.restart()  # no persistence: the stream starts anew
                await client.connection_pool.disconnect()
                await set_levels(client, make_levels(u, spot=7.0))
                after_events = [make_event(u, n) for n in (3, 4, 5)]
                after = [await publish(client, e) for e in after_events]
                got = await take(sub, 3)
                assert [d.stream_id for d in got] == after
                assert [d.event for d in got] == after_events
                assert sub.reconnects >= 1
                assert sub.connected
                assert sub.last_ids == {u: after[-1]}
                await sub.refresh_levels()
                assert sub.levels[u].spot == 7.0
        finally:
            await client.aclose()


@pytest.mark.asyncio
async def test_server_restart_with_persistence_no_gap_no_duplicate() -> None:
    u = new_underlying()
    extra = ("--appendonly", "yes", "--appendfsync", "always")
    async with EmbeddedRedis(extra_args=extra) as server:
        client = aioredis.Redis.from_url(server.url, **TIMEOUTS)
        try:
            await set_levels(client, make_levels(u, spot=1.0))
            ids = [await publish(client, make_event(u, n)) for n in range(4)]
            cfg = SubscriberConfig(server.url, underlyings=(u,), start_id="0", count=2, **FAST)
            async with RegimeSubscriber(cfg) as sub:
                assert sub.levels[u].spot == 1.0
                assert [d.stream_id for d in await take(sub, 2)] == ids[:2]
                # Written while the subscriber is not reading, then the server dies.
                ids += [await publish(client, make_event(u, n)) for n in (4, 5)]
                await set_levels(client, make_levels(u, spot=2.0))
                await server.kill()
                await server.restart()
                await client.connection_pool.disconnect()
                ids += [await publish(client, make_event(u, n)) for n in (6, 7)]
                got = await take(sub, 6)
                await assert_nothing_more(sub, 0.2)
                assert [d.stream_id for d in got] == ids[2:]
                assert [d.event.detail["n"] for d in got] == [2, 3, 4, 5, 6, 7]
                assert sub.reconnects == 1
                assert sub.levels[u].spot == 2.0
        finally:
            await client.aclose()


# -- lifecycle --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_from_another_task_ends_iteration(redis_server_url: str) -> None:
    u = new_underlying()
    name = f"close-{u}"
    cfg = SubscriberConfig(
        redis_server_url,
        underlyings=(u,),
        block_ms=600_000,  # a 10-minute XREAD block: ending at all shows the close cut it
        max_reconnect_attempts=3,
        client_name=name,
    )
    sub = RegimeSubscriber(cfg)
    await sub.start()
    got: list[Delivery] = []

    async def consume() -> None:
        async for delivery in sub:
            got.append(delivery)

    consumer = asyncio.ensure_future(consume())
    client = aioredis.from_url(redis_server_url)
    try:
        await wait_blocked_in_xread(client, name)
        assert not consumer.done()
        await sub.close()
        await asyncio.wait_for(consumer, 60)  # a cap for a loaded machine, far below 10 min
    finally:
        consumer.cancel()
        await client.aclose()
    assert got == []
    assert not sub.connected
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    await sub.close()  # idempotent


@pytest.mark.asyncio
async def test_gives_up_after_max_reconnect_attempts() -> None:
    server = EmbeddedRedis()
    await server.start()
    url = server.url
    await server.stop()  # nobody listens on that port now
    cfg = SubscriberConfig(
        url, underlyings=("BTC",), max_reconnect_attempts=2, reconnect_min_s=0.01,
        reconnect_max_s=0.02, connect_timeout_s=0.5,
    )  # fmt: skip
    sub = RegimeSubscriber(cfg)
    with pytest.raises(SubscriberError) as info:
        async with sub:
            pass
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"redis {url}: unreachable after 3 attempts: ConnectionError")
    assert not sub.connected
    assert sub.state == "failed"


@pytest.mark.asyncio
async def test_a_cancelled_iterating_task_always_ends(redis_url: str) -> None:
    """A cancel landing anywhere in a blocked read ends the task (redis-py can absorb it)."""
    rng = random.Random(3)
    config = SubscriberConfig(
        redis_url=redis_url, underlyings=(f"U{uuid4().hex[:6]}",), start_id="0", block_ms=20
    )
    for _ in range(40):
        subscriber = RegimeSubscriber(config)
        await subscriber.start()

        async def read(sub: RegimeSubscriber = subscriber) -> None:
            async for _ in sub:
                pass

        task = asyncio.create_task(read())
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=60.0)  # a cap: it ends at once
        assert task in done, "the cancelled task is still running"
        assert task.cancelled()
        await subscriber.close()
