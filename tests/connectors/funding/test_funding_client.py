"""The shared funding client against local fake Binance, Bybit and OKX servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from connectors.common.capture import CaptureWriter, read_capture
from connectors.common.ingest import IngestStage, MemorySink, replay_messages
from connectors.funding.client import FundingClient, FundingClientConfig
from connectors.sources import parse_source
from connectors.venues import live_clients, locate, normaliser_for
from engine.app.record import record_sources
from schemas.config import ConfigError
from schemas.topics import Topics
from tests.conditions import eventually
from tests.fakes.funding import (
    H_MS,
    NEXT_FUNDING_MS,
    T0_MS,
    FakeBinance,
    FakeBybit,
    FakeOkx,
    bybit_ticker,
    okx_funding,
    venue_clock,
)

TOPICS = Topics()
FAST = {"backoff_initial_s": 0.05, "backoff_cap_s": 0.2, "open_timeout_s": 2.0}


@asynccontextmanager
async def running(
    spec: str, config: FundingClientConfig, capture: CaptureWriter | None = None
) -> AsyncIterator[tuple[FundingClient, MemorySink]]:
    """A client for ``spec`` (``funding:VENUE:SYMBOL``, comma-separated) until the block ends."""
    sink = MemorySink()
    sources = [parse_source(s) for s in spec.split(",")]
    venue = locate(sources[0])[0].venue
    ((_, _, client),) = live_clients(
        sources, sink, TOPICS, {venue: config}, capture, clock_ns=venue_clock()
    )
    task = asyncio.create_task(client.run())
    try:
        yield client, sink
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


def funding(sink: MemorySink) -> list:
    return sink.on(TOPICS.funding)


# ---------------------------------------------------------------------------- Binance


@pytest.mark.asyncio
async def test_binance_seeds_over_rest_then_streams_with_the_venue_interval():
    fake = await FakeBinance({"BTCUSDT": "0.00010000", "ETHUSDT": "0.00005000"}).start()
    fake.intervals = {"ETHUSDT": 4}
    config = FundingClientConfig(url=fake.url, rest_url=fake.rest_url, refresh_s=0.2, **FAST)
    try:
        async with running("funding:binance:BTCUSDT,funding:binance:ethusdt", config) as (
            client,
            sink,
        ):
            await eventually(lambda: fake.connections == 1 and len(funding(sink)) == 2)
            # the seed: intervals, then each symbol's premium index, before the socket opens
            assert fake.rest_requests[:3] == [
                ("/fapi/v1/fundingInfo", {}),
                ("/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}),
                ("/fapi/v1/premiumIndex", {"symbol": "ETHUSDT"}),
            ]
            assert fake.paths == ["/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s"]
            seeded = {r.instrument: r for r in funding(sink)}
            assert (seeded["ETHUSDT"].interval_hours, seeded["ETHUSDT"].rate_8h) == (4.0, 0.0001)
            assert seeded["BTCUSDT"].interval_hours == 8.0
            await fake.mark_price("ETHUSDT", "0.00020000", event_ms=T0_MS + 1000)
            await eventually(lambda: len(funding(sink)) == 3)
            streamed = funding(sink)[-1]
            assert (streamed.rate, streamed.interval_hours) == (0.0002, 4.0)
            assert streamed.rate_8h == pytest.approx(0.0004)
            assert streamed.ts_event_ns == (T0_MS + 1000) * 1_000_000
            # Binance moves BTCUSDT to 1 h funding: the next fundingInfo refresh picks it up
            fake.intervals["BTCUSDT"] = 1
            refreshes = sum(p == "/fapi/v1/fundingInfo" for p, _ in fake.rest_requests)
            await eventually(
                lambda: sum(p == "/fapi/v1/fundingInfo" for p, _ in fake.rest_requests) > refreshes
            )
            # the refresh is applied once its answer is read: push until a record shows it
            # (every push makes one record; those before it still say 8 h)
            for n in range(1, 1001):
                await fake.mark_price("BTCUSDT", "0.00010000", event_ms=T0_MS + 2000 + n)
                await eventually(lambda n=n: len(funding(sink)) == 3 + n)
                if funding(sink)[-1].interval_hours != 8.0:
                    break
            hourly = funding(sink)[-1]
            assert (hourly.interval_hours, hourly.rate_8h) == (1.0, pytest.approx(0.0008))
            assert client.stage.counts["dead_letters"] == 0
    finally:
        await fake.stop()


@pytest.mark.asyncio
async def test_binance_reconnects_after_a_drop_reseeds_and_keeps_streaming():
    fake = await FakeBinance({"BTCUSDT": "0.00010000"}, tick_every_s=0.02).start()
    config = FundingClientConfig(url=fake.url, rest_url=fake.rest_url, **FAST)
    try:
        async with running("funding:binance:BTCUSDT", config) as (client, sink):
            await eventually(lambda: len(funding(sink)) >= 3)
            await fake.drop()
            await eventually(lambda: fake.connections == 2)
            before = len(funding(sink))
            await eventually(lambda: len(funding(sink)) >= before + 3)
            assert fake.paths == ["/stream?streams=btcusdt@markPrice@1s"] * 2
            premium = [q for p, q in fake.rest_requests if p == "/fapi/v1/premiumIndex"]
            assert premium == [{"symbol": "BTCUSDT"}] * 2  # seeded again on reconnect
            assert client.connections == 2 and client.stage.counts["dead_letters"] == 0
    finally:
        await fake.stop()


@pytest.mark.asyncio
async def test_binance_rest_failure_backs_off_and_retries_the_seed():
    fake = await FakeBinance({"BTCUSDT": "0.0001"}).start()
    fake.rest_status = 429
    config = FundingClientConfig(url=fake.url, rest_url=fake.rest_url, **FAST)
    try:
        async with running("funding:binance:BTCUSDT", config) as (client, sink):
            await eventually(lambda: client.counts["rest_errors"] >= 2)
            assert fake.connections == 0  # no stream without the funding intervals
            assert client.backoff.attempt >= 3 + 2  # 429 penalises the backoff
            fake.rest_status = None
            await eventually(lambda: fake.connections == 1 and len(funding(sink)) == 1)
    finally:
        await fake.stop()


# ---------------------------------------------------------------------------- Bybit


@pytest.mark.asyncio
async def test_bybit_subscribes_merges_deltas_and_keeps_alive(capsys):
    fake = await FakeBybit(
        {"BTCUSDT": bybit_ticker("BTCUSDT", "0.0001"), "ETHUSDT": bybit_ticker("ETHUSDT", "0.0002")}
    ).start()
    config = FundingClientConfig(url=fake.url, keepalive_s=0.1, min_emit_interval_ms=0, **FAST)
    try:
        async with running("funding:bybit:BTCUSDT,funding:bybit:ETHUSDT", config) as (
            client,
            sink,
        ):
            await eventually(lambda: len(funding(sink)) == 2)
            assert orjson.loads(fake.frames(1)[0]) == {
                "req_id": "tickers-0",
                "op": "subscribe",
                "args": ["tickers.BTCUSDT", "tickers.ETHUSDT"],
            }
            await fake.delta("BTCUSDT", fundingRate="0.00015")
            await fake.delta("BTCUSDT", markPrice="65111.50")
            await fake.delta("BTCUSDT", fundingIntervalHour="4")
            await eventually(lambda: len(funding(sink)) == 5)
            btc = [r for r in funding(sink) if r.instrument == "BTCUSDT"]
            assert [(r.rate, r.mark_price, r.interval_hours) for r in btc] == [
                (0.0001, 65010.1, 8.0),
                (0.00015, 65010.1, 8.0),
                (0.00015, 65111.5, 8.0),
                (0.00015, 65111.5, 4.0),
            ]
            assert btc[-1].rate_8h == pytest.approx(0.0003)
            assert {r.open_interest_usd for r in btc} == {5012345678.91}
            await eventually(lambda: client.counts["pongs"] >= 2)
            assert '{"op":"ping"}' in fake.frames(1)
            assert client.counts["acks"] == 1 and client.counts["venue_errors"] == 0
            assert client.stage.counts["dead_letters"] == 0  # acks and pongs are not dead letters
    finally:
        await fake.stop()


@pytest.mark.asyncio
async def test_bybit_subscribe_error_is_logged_and_counted_not_dead_lettered(capsys):
    fake = await FakeBybit({"BTCUSDT": bybit_ticker("BTCUSDT", "0.0001")}).start()
    config = FundingClientConfig(url=fake.url, **FAST)
    try:
        async with running("funding:bybit:BTCUSDT,funding:bybit:NOPEUSDT", config) as (
            client,
            sink,
        ):
            await eventually(lambda: client.counts["venue_errors"] == 1 and len(funding(sink)) == 1)
            assert client.stage.counts["dead_letters"] == 0
        err = capsys.readouterr().err
        assert "funding venue error" in err and "Invalid symbol" in err
    finally:
        await fake.stop()


@pytest.mark.asyncio
async def test_bybit_reconnects_after_a_drop_resubscribes_and_keeps_producing():
    fake = await FakeBybit({"BTCUSDT": bybit_ticker("BTCUSDT", "0.0001")}).start()
    config = FundingClientConfig(url=fake.url, min_emit_interval_ms=0, **FAST)
    try:
        async with running("funding:bybit:BTCUSDT", config) as (client, sink):
            await eventually(lambda: len(funding(sink)) == 1)
            await fake.drop()
            await eventually(lambda: fake.connections == 2 and len(funding(sink)) == 2)
            assert [orjson.loads(f)["args"] for f in fake.frames(2)] == [["tickers.BTCUSDT"]]
            assert client.connections == 2
            # the new snapshot holds the change made while disconnected
            fake.tickers["BTCUSDT"]["fundingRate"] = "0.0003"
            await fake.drop()
            await eventually(lambda: fake.connections == 3 and len(funding(sink)) == 3)
            await fake.delta("BTCUSDT", markPrice="64000.00")
            await eventually(lambda: len(funding(sink)) == 4)
            assert [(r.rate, r.mark_price) for r in funding(sink)[2:]] == [
                (0.0003, 65010.1),
                (0.0003, 64000.0),
            ]
    finally:
        await fake.stop()


# ---------------------------------------------------------------------------- OKX


@pytest.mark.asyncio
async def test_okx_malformed_frame_goes_to_dead_letter_and_the_stream_continues():
    fake = await FakeOkx({"BTC-USDT-SWAP": okx_funding("BTC-USDT-SWAP", "0.0001")}).start()
    config = FundingClientConfig(url=fake.url, keepalive_s=0.1, **FAST)
    try:
        async with running("funding:okx:btc-usdt-swap", config) as (client, sink):
            await eventually(lambda: len(funding(sink)) == 1)
            assert orjson.loads(fake.frames(1)[0]) == {
                "op": "subscribe",
                "args": [{"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}],
            }
            malformed = b'{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"f'
            await fake.push(malformed)
            bad_rate = okx_funding("BTC-USDT-SWAP", "n/a")
            await fake.publish(bad_rate)
            four = okx_funding("BTC-USDT-SWAP", "0.0002", next_ms=NEXT_FUNDING_MS + 4 * H_MS)
            await fake.publish(four)
            await eventually(lambda: len(funding(sink)) == 2)
            assert [(raw, reason[:14]) for raw, reason, *_ in sink.dead_letters] == [
                (malformed, "malformed JSON"),
                (
                    orjson.dumps(
                        {
                            "arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
                            "data": [bad_rate],
                        }
                    ),
                    "OKX funding-ra",
                ),
            ]
            last = funding(sink)[-1]
            assert (last.rate, last.interval_hours, last.rate_8h) == (0.0002, 4.0, 0.0004)
            await eventually(lambda: client.counts["pongs"] >= 2)
            assert "ping" in fake.frames(1)
            # "pong" is not JSON: it is counted, never staged (nor dead-lettered)
            assert client.stage.counts == {"messages": 5, "records": 2, "dead_letters": 2}
            assert client.counts["acks"] == 1
    finally:
        await fake.stop()


@pytest.mark.asyncio
async def test_okx_stale_feed_triggers_a_reconnect():
    fake = await FakeOkx(
        {"BTC-USDT-SWAP": okx_funding("BTC-USDT-SWAP", "0.0001")}, tick_every_s=0.05
    ).start()
    config = FundingClientConfig(url=fake.url, stale_after_s=1.0, keepalive_s=0.1, **FAST)
    try:
        async with running("funding:okx:BTC-USDT-SWAP", config) as (client, sink):
            await eventually(lambda: len(funding(sink)) >= 3)
            # pushes spanning twice stale_after_s of the fake's pace: a live feed is kept
            await eventually(lambda: len(funding(sink)) >= 3 + 40, timeout=60)
            assert fake.connections == 1
            fake.silence_current()  # pushes and pongs stop; the socket stays open
            await eventually(lambda: fake.connections == 2, timeout=30)
            before = len(funding(sink))
            await eventually(lambda: len(funding(sink)) > before + 2)
            assert client.connections == 2
            assert fake.frames(2)[0].startswith('{"op":"subscribe"')
    finally:
        await fake.stop()


# ---------------------------------------------------------------------------- capture


@pytest.mark.asyncio
async def test_a_capture_replays_to_the_same_records(tmp_path):
    fake = await FakeBinance({"BTCUSDT": "0.00010000"}, tick_every_s=0.02).start()
    fake.intervals = {"BTCUSDT": 4}
    config = FundingClientConfig(url=fake.url, rest_url=fake.rest_url, **FAST)
    path = tmp_path / "funding.jsonl"
    try:
        with CaptureWriter(path) as writer:
            async with running("funding:binance:BTCUSDT", config, writer) as (_, live):
                await eventually(lambda: len(funding(live)) >= 5)
                await fake.push(b'{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate"')
                await eventually(lambda: len(live.dead_letters) == 1)
    finally:
        await fake.stop()
    lines = list(read_capture(path))
    assert [m.request["method"] for m in lines if m.request] == [
        "GET /fapi/v1/fundingInfo",
        "GET /fapi/v1/premiumIndex",
    ]
    assert lines[1].url.endswith("/fapi/v1/premiumIndex?symbol=BTCUSDT")
    assert {m.venue for m in lines} == {"binance"}
    replayed = MemorySink()
    stage = IngestStage("binance", normaliser_for("binance"), replayed, TOPICS, source="replay")
    await replay_messages(lines, stage)
    assert funding(replayed) == funding(live)
    assert {r.interval_hours for r in funding(replayed)} == {4.0}
    assert [d[0] for d in replayed.dead_letters] == [d[0] for d in live.dead_letters]


@pytest.mark.asyncio
async def test_record_captures_a_funding_session(tmp_path):
    """``regime-engine record --source funding:…``: the same client, with a capture writer."""
    fake = await FakeOkx(
        # record_sources receives on the wall clock: the pushes are stamped with it
        {
            "BTC-USDT-SWAP": okx_funding(
                "BTC-USDT-SWAP", "0.0001", ts_ms=time.time_ns() // 1_000_000
            )
        },
        tick_every_s=0.02,
    ).start()
    path = tmp_path / "okx.jsonl"
    try:
        count = await record_sources(
            [parse_source("funding:okx:BTC-USDT-SWAP")],
            path,
            0.5,
            {"okx": FundingClientConfig(url=fake.url, **FAST)},
        )
    finally:
        await fake.stop()
    lines = list(read_capture(path))
    assert count == len(lines) >= 5 and {m.venue for m in lines} == {"okx"}
    assert orjson.loads(lines[0].raw)["event"] == "subscribe"
    replayed = MemorySink()
    stage = IngestStage("okx", normaliser_for("okx"), replayed, TOPICS, source="replay")
    await replay_messages(lines, stage)
    assert len(funding(replayed)) == count - 1 and not replayed.dead_letters
    assert {(r.instrument, r.rate, r.interval_hours) for r in funding(replayed)} == {
        ("BTC-USDT-SWAP", 0.0001, 8.0)
    }


def test_config_rejects_unknown_keys_and_bad_values():
    config = FundingClientConfig.from_mapping(
        {"url": "ws://x", "interval_hours": {"BTCUSDT": 4}, "symbols": ["BTCUSDT"]}
    )
    assert config.interval_hours == (("BTCUSDT", 4.0),) and config.symbols == ("BTCUSDT",)
    assert config.fallback().hours("BTCUSDT") == 4.0 and config.fallback().hours("X") == 8.0
    with pytest.raises(ConfigError, match="unknown funding config keys: colour"):
        FundingClientConfig.from_mapping({"colour": "red"})
    with pytest.raises(ConfigError, match="positive"):
        FundingClientConfig(stale_after_s=0)
    with pytest.raises(ValueError, match="positive hours"):
        FundingClientConfig(default_interval_hours=-8)
