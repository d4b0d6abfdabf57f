"""The Deribit client against a local fake server: seed, subscribe, survive, follow listings."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import pytest_asyncio

from connectors.common.ingest import IngestStage, MemorySink
from connectors.deribit.client import DeribitClient, DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser
from schemas.contracts import OptionContract, OptionRight
from schemas.records import InstrumentState, UnderlyingTick
from schemas.topics import Topics
from tests.conditions import eventually
from tests.fakes.deribit import (
    T0_MS,
    FakeDeribit,
    instrument,
    option_ticker,
    summary_row,
    venue_clock,
)

EXPIRY_MS = 1_710_489_600_000  # 2024-03-15T08:00:00Z
STRIKES = (60000, 65000, 70000)
NAMES = [f"BTC-15MAR24-{k}-{r}" for k in STRIKES for r in "CP"]
TOPICS = Topics()


@pytest_asyncio.fixture
async def fake():
    instruments = [
        instrument(name, float(name.split("-")[2]), name[-1], EXPIRY_MS, i)
        for i, name in enumerate(NAMES)
    ]
    summary = [
        summary_row(name, 65_400.0, 65_000.0, 100.0 + i, 55.0) for i, name in enumerate(NAMES)
    ]
    server = await FakeDeribit(instruments, summary).start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def running(fake):
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, TOPICS, clock_ns=venue_clock())
    config = DeribitConfig(
        url=fake.url,
        subscribe_chunk=4,
        subscribe_per_s=200.0,
        stale_after_s=1.0,
        backoff_initial_s=0.05,
        backoff_cap_s=0.2,
        rpc_timeout_s=2.0,
    )
    client = DeribitClient(config, stage)
    task = asyncio.create_task(client.run())
    await eventually(lambda: client.sessions_seeded >= 1)
    yield client, sink
    await client.stop()
    await asyncio.wait_for(task, 5)


def expected_channels() -> set[str]:
    return {f"ticker.{n}.100ms" for n in NAMES} | {
        "deribit_price_index.btc_usd",
        "deribit_volatility_index.btc_usd",
        "ticker.BTC-PERPETUAL.100ms",
        "trades.option.BTC.100ms",
        "instrument.state.option.BTC",
    }


@pytest.mark.asyncio
async def test_connect_seeds_then_subscribes_in_chunks(fake, running):
    client, sink = running
    methods = fake.methods()
    assert methods[:3] == [
        "public/set_heartbeat",
        "public/get_instruments",
        "public/get_book_summary_by_currency",
    ]
    subscribes = [r for r in fake.requests if r["method"] == "public/subscribe"]
    assert len(subscribes) == 3  # 11 channels in chunks of 4
    assert all(len(r["params"]["channels"]) <= 4 for r in subscribes)
    assert fake.subscribed == expected_channels() == client.subscriptions
    assert fake.requests[0]["params"] == {"interval": 30}
    assert fake.requests[1]["params"] == {"currency": "BTC", "kind": "option", "expired": False}
    seeded = sink.on(TOPICS.options)
    assert sorted(c.instrument for c in seeded) == sorted(NAMES)
    first = next(c for c in seeded if c.instrument == NAMES[0])
    assert (first.open_interest, first.iv, first.underlying_price, first.index_price) == (
        100.0,
        0.55,
        65_400.0,
        65_000.0,
    )
    spot = sink.on(TOPICS.underlying)
    assert [(t.kind, t.price) for t in spot] == [("index", 65_000.0)]


@pytest.mark.asyncio
async def test_ticker_is_normalised_with_the_values_sent(fake, running):
    _, sink = running
    data = option_ticker(NAMES[2], T0_MS + 5_000, 65_432.1, 65_010.5, 61.25, 321.4, 0.00004)
    await fake.notify(f"ticker.{NAMES[2]}.100ms", data)
    await eventually(
        lambda: any(c.ts_event_ns == (T0_MS + 5_000) * 1_000_000 for c in sink.on(TOPICS.options))
    )
    record = sink.on(TOPICS.options)[-1]
    assert record == OptionContract(
        venue="deribit",
        underlying="BTC",
        instrument=NAMES[2],
        root="BTC",
        expiry_ns=EXPIRY_MS * 1_000_000,
        strike=Decimal(65000),
        right=OptionRight.CALL,
        multiplier=1.0,
        open_interest=321.4,
        iv=0.6125,
        underlying_price=65_432.1,
        index_price=65_010.5,
        ts_event_ns=(T0_MS + 5_000) * 1_000_000,
        ts_recv_ns=record.ts_recv_ns,
        bid=0.029,
        ask=0.031,
        mark=0.03,
        premium_currency="BTC",
        gamma=0.00004,
        delta=0.51,
        vega=20.5,
        theta=-40.1,
    )
    assert record.ts_recv_ns > 0


@pytest.mark.asyncio
async def test_test_request_is_answered(fake, running):
    await fake.test_request()
    await eventually(lambda: "public/test" in fake.methods())


@pytest.mark.asyncio
async def test_dropped_connection_reconnects_reseeds_and_resubscribes(fake, running):
    client, sink = running
    await fake.drop()
    await eventually(lambda: client.sessions_seeded >= 2)
    assert fake.connections == 2
    assert fake.methods().count("public/get_book_summary_by_currency") == 2
    assert fake.subscribed == expected_channels()
    assert len(sink.on(TOPICS.options)) == 2 * len(NAMES)  # re-seeded from a fresh summary


@pytest.mark.asyncio
async def test_silent_feed_trips_the_watchdog(fake, running):
    client, _ = running
    fake.silent = True
    await eventually(lambda: fake.connections >= 2, timeout=10)
    fake.silent = False
    await eventually(lambda: client.sessions_seeded >= 2)


@pytest.mark.asyncio
async def test_too_many_requests_backs_off_and_recovers(fake, running):
    client, _ = running
    fake.reject_next_subscribe = True
    await fake.drop()
    await eventually(lambda: client.rate_limited == 1)
    await eventually(lambda: client.sessions_seeded >= 2)
    assert fake.subscribed == expected_channels()


@pytest.mark.asyncio
async def test_malformed_frames_are_dead_lettered_and_streaming_continues(fake, running):
    _, sink = running
    await fake.push(b'{"jsonrpc":"2.0","method":"subscription","params":{"chan')
    await fake.notify(f"ticker.{NAMES[0]}.100ms", {"instrument_name": NAMES[0], "timestamp": T0_MS})
    good = option_ticker(NAMES[1], T0_MS + 9_000, 65_100.0, 65_000.0, 50.0, 10.0, 0.00005)
    await fake.notify(f"ticker.{NAMES[1]}.100ms", good)
    await eventually(
        lambda: any(c.ts_event_ns == (T0_MS + 9_000) * 1_000_000 for c in sink.on(TOPICS.options))
    )
    assert len(sink.dead_letters) == 2
    (raw1, reason1, venue, source, _), (raw2, reason2, *_) = sink.dead_letters
    assert raw1 == b'{"jsonrpc":"2.0","method":"subscription","params":{"chan'
    assert reason1.startswith("malformed JSON")
    assert (venue, source) == ("deribit", "live")
    assert raw2 == fake.sent[-2]
    assert "Deribit ticker BTC-15MAR24-60000-C: open_interest missing" in reason2


@pytest.mark.asyncio
async def test_new_listing_is_subscribed_and_expired_one_dropped(fake, running):
    client, sink = running
    new = "BTC-15MAR24-75000-C"
    await fake.list_instrument(instrument(new, 75000.0, "C", EXPIRY_MS, 99), T0_MS + 1_000)
    await eventually(lambda: f"ticker.{new}.100ms" in fake.subscribed)
    assert "public/get_instrument" in fake.methods()
    await fake.notify(
        f"ticker.{new}.100ms",
        option_ticker(new, T0_MS + 2_000, 65_000.0, 64_900.0, 70.0, 5.0, 0.00002),
    )
    await eventually(lambda: any(c.instrument == new for c in sink.on(TOPICS.options)))
    await fake.expire(NAMES[0], T0_MS + 3_000)
    await eventually(lambda: f"ticker.{NAMES[0]}.100ms" not in fake.subscribed)
    assert f"ticker.{NAMES[0]}.100ms" not in client.subscriptions
    states = [r for r in sink.on(TOPICS.options) if isinstance(r, InstrumentState)]
    assert [(s.instrument, s.state) for s in states] == [(new, "created"), (NAMES[0], "settled")]
    # After a reconnect the expired one stays out and the new one stays in.
    await fake.drop()
    await eventually(lambda: client.sessions_seeded >= 2)
    assert f"ticker.{new}.100ms" in fake.subscribed
    assert f"ticker.{NAMES[0]}.100ms" not in fake.subscribed


@pytest.mark.asyncio
async def test_index_dvol_funding_and_trades(fake, running):
    _, sink = running
    await fake.notify(
        "deribit_price_index.btc_usd",
        {"timestamp": T0_MS + 1, "price": 65_001.5, "index_name": "btc_usd"},
    )
    await fake.notify(
        "deribit_volatility_index.btc_usd",
        {"timestamp": T0_MS + 2, "volatility": 55.3, "index_name": "btc_usd"},
    )
    await fake.notify(
        "ticker.BTC-PERPETUAL.100ms",
        {
            "timestamp": T0_MS + 3,
            "state": "open",
            "mark_price": 65_010.0,
            "index_price": 65_001.5,
            "estimated_delivery_price": 65_001.5,
            "funding_8h": 0.0006,
            "current_funding": 0.0001,
            "open_interest": 5.0e8,
            "best_bid_price": 65_009.5,
            "best_ask_price": 65_010.0,
            "last_price": 65_010.0,
            "instrument_name": "BTC-PERPETUAL",
            "stats": {"volume": 1.0, "price_change": 0.1, "low": 1.0, "high": 2.0},
        },
    )
    await fake.notify(
        "trades.option.BTC.100ms",
        [
            {
                "trade_seq": 1,
                "trade_id": "T-1",
                "timestamp": T0_MS + 4,
                "tick_direction": 0,
                "price": 0.031,
                "mark_price": 0.03,
                "iv": 57.5,
                "instrument_name": NAMES[1],
                "index_price": 65_001.0,
                "direction": "sell",
                "amount": 2.5,
            }
        ],
    )
    await eventually(lambda: len(sink.on(TOPICS.trades)) == 1)
    index = [t for t in sink.on(TOPICS.underlying) if t.source == "btc_usd"]
    assert index == [
        UnderlyingTick(
            "deribit",
            "BTC",
            "btc_usd",
            "index",
            65_001.5,
            (T0_MS + 1) * 1_000_000,
            index[0].ts_recv_ns,
        )
    ]
    (dvol,) = sink.on(TOPICS.volindex)
    assert (dvol.underlying, dvol.value, dvol.index) == ("BTC", 55.3, "btc_usd")
    (funding,) = sink.on(TOPICS.funding)
    assert (funding.rate_8h, funding.interval_hours, funding.annualized) == (
        0.0006,
        8.0,
        pytest.approx(0.657),
    )
    (trade,) = sink.on(TOPICS.trades)
    assert (
        trade.instrument,
        trade.direction,
        trade.amount,
        trade.iv,
        trade.trade_id,
        trade.premium_currency,
    ) == (NAMES[1], "sell", 2.5, 0.575, "T-1", "BTC")
