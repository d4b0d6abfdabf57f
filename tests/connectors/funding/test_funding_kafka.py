"""Funding sources → run_ingest → the real (embedded) Kafka broker → md.funding.v1."""

from __future__ import annotations

import asyncio

import pytest

from connectors.common.kafka.producer import ProducerConfig
from connectors.funding.client import FundingClientConfig
from connectors.sources import parse_source
from engine.app.run_ingest import run_ingest
from schemas.records import decode_record
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
from tests.kafka_helpers import consume

MS = 1_000_000
FAST = {"backoff_initial_s": 0.05, "backoff_cap_s": 0.2}
MALFORMED = b'{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","fundingRat'


@pytest.mark.asyncio
async def test_run_ingest_streams_three_venues_into_md_funding(kafka_bootstrap, topics):
    binance = await FakeBinance({"BTCUSDT": "0.00010000"}).start()
    binance.intervals = {"BTCUSDT": 4}
    bybit = await FakeBybit({"BTCUSDT": bybit_ticker("BTCUSDT", "0.00012")}).start()
    okx = await FakeOkx({"ETH-USDT-SWAP": okx_funding("ETH-USDT-SWAP", "-0.00003")}).start()
    configs = {
        "binance": FundingClientConfig(url=binance.url, rest_url=binance.rest_url, **FAST),
        "bybit": FundingClientConfig(url=bybit.url, **FAST),
        "okx": FundingClientConfig(url=okx.url, **FAST),
    }
    sources = [
        parse_source(spec)
        for spec in (
            "funding:binance:BTCUSDT",
            "funding:bybit:BTCUSDT",
            "funding:okx:ETH-USDT-SWAP",
        )
    ]
    stop = asyncio.Event()
    producer = ProducerConfig(bootstrap=kafka_bootstrap, enable_idempotence=False)
    task = asyncio.create_task(
        run_ingest(sources, producer, topics, stop, configs, partitions=3, clock_ns=venue_clock())
    )
    try:
        await eventually(lambda: binance.connections and bybit.subscribed and okx.subscribed)
        await binance.mark_price("BTCUSDT", "0.00030000", event_ms=T0_MS + 1_000)
        await bybit.delta("BTCUSDT", ts_ms=T0_MS + 2_000, fundingRate="0.00025")
        await bybit.push(MALFORMED)
        hourly = okx_funding(
            "ETH-USDT-SWAP", "0.00002", next_ms=NEXT_FUNDING_MS + H_MS, ts_ms=T0_MS + 3_000
        )
        await okx.publish(hourly)
        # seeds/snapshots (3) + one pushed update per venue (3)
        got = await consume(kafka_bootstrap, topics.funding, 6, timeout=20)
    finally:
        stop.set()
        report = await asyncio.wait_for(task, 20)
        for fake in (binance, bybit, okx):
            await fake.stop()
    records = [decode_record(m.value) for m in got]
    assert sorted(m.key for m in got) == [b"BTC", b"BTC", b"BTC", b"BTC", b"ETH", b"ETH"]
    last = {}
    for record in sorted(records, key=lambda r: r.ts_event_ns):
        last[record.venue] = record
    b, y, o = last["binance"], last["bybit"], last["okx"]
    assert (b.instrument, b.underlying, b.rate, b.interval_hours) == ("BTCUSDT", "BTC", 0.0003, 4.0)
    assert (b.rate_8h, b.annualized) == (pytest.approx(0.0006), pytest.approx(0.657))
    assert (b.mark_price, b.next_funding_ns, b.ts_event_ns) == (
        65010.12,
        NEXT_FUNDING_MS * MS,
        (T0_MS + 1_000) * MS,
    )
    assert (y.instrument, y.rate, y.interval_hours, y.rate_8h) == ("BTCUSDT", 0.00025, 8.0, 0.00025)
    assert (y.open_interest_usd, y.ts_event_ns) == (5012345678.91, (T0_MS + 2_000) * MS)
    assert (o.instrument, o.underlying, o.rate, o.interval_hours) == (
        "ETH-USDT-SWAP",
        "ETH",
        0.00002,
        1.0,
    )
    assert (o.rate_8h, o.annualized) == (pytest.approx(0.00016), pytest.approx(0.1752))
    dead = await consume(kafka_bootstrap, topics.deadletter, 1)
    assert [m.value for m in dead] == [MALFORMED]
    headers = dict(dead[0].headers)
    assert headers["venue"] == b"bybit" and headers["reason"].startswith(b"malformed JSON")
    assert report.counts["records"] == 6 and report.counts["dead_letters"] == 1
