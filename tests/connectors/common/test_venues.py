"""One venue table: a capture mixing venues replays each message through its own parser."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.common.capture import CapturedMessage, CaptureWriter
from connectors.common.ingest import MemorySink, replay_capture
from connectors.venues import NORMALISERS, StagePerVenue, normaliser_for
from schemas.chain import ChainDelta
from schemas.records import FundingRate
from schemas.topics import Topics
from tests.paths import DATA

BINANCE_MARK_PRICE = {
    "stream": "btcusdt@markPrice@1s",
    "data": {
        "e": "markPriceUpdate",
        "E": 1_741_963_500_000,
        "s": "BTCUSDT",
        "p": "83512.10000000",
        "P": "83498.22000000",
        "i": "83530.41000000",
        "r": "0.00012500",
        "T": 1_741_968_000_000,
    },
}


def test_every_live_venue_has_a_normaliser():
    assert set(NORMALISERS) == {"deribit", "cboe", "cme", "binance", "bybit", "okx", "simulator"}
    with pytest.raises(ValueError, match="venue 'kraken' cannot be read"):
        normaliser_for("kraken")


@pytest.mark.asyncio
async def test_a_capture_mixing_venues_replays_through_each_parser(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    cboe_body = (DATA / "cboe_small.json").read_bytes()
    with CaptureWriter(path) as writer:
        # received 50 ms after Binance sent it (the receive clock the event time is checked on)
        recv_ns = (BINANCE_MARK_PRICE["data"]["E"] + 50) * 1_000_000
        writer.write(CapturedMessage(recv_ns, "binance", orjson.dumps(BINANCE_MARK_PRICE)))
        writer.write(CapturedMessage(2, "cboe", cboe_body, url="https://cdn.cboe.com/x.json"))
        writer.write(CapturedMessage(3, "binance", b"{not json"))
    sink = MemorySink()
    stages = StagePerVenue(sink, Topics())
    await replay_capture(path, stages)
    (funding,) = sink.on("md.funding.v1")
    assert isinstance(funding, FundingRate)
    assert (funding.venue, funding.underlying, funding.rate) == ("binance", "BTC", 0.000125)
    assert funding.rate_8h == pytest.approx(0.000125)  # Binance's default 8 h interval
    (delta,) = sink.on("md.options.v1")
    assert isinstance(delta, ChainDelta) and delta.full and delta.size == 8
    assert next(reason for _, reason, *_ in sink.dead_letters).startswith("malformed JSON")
    assert stages.stages["binance"].counts["dead_letters"] == 1
