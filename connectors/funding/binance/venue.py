"""Binance USD-M: endpoints and frames (the streams are named in the URL: no subscribe)."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.funding.binance.parse import BinanceFundingNormaliser, control_frame
from connectors.funding.client import FundingClientConfig, FundingFeed, RestRequest

STREAM = "{symbol}@markPrice@1s"  # mark price, index, funding rate, next funding time


def stream_url(base: str, symbols: Sequence[str]) -> str:
    """``wss://fstream.binance.com/stream?streams=btcusdt@markPrice@1s/…`` (combined)."""
    streams = "/".join(STREAM.format(symbol=s.lower()) for s in symbols)
    return f"{base}?streams={streams}"


def seed_requests(symbols: Sequence[str]) -> list[RestRequest]:
    """Funding intervals first, then each symbol's current premium index."""
    return [
        RestRequest("/fapi/v1/fundingInfo"),
        *(RestRequest("/fapi/v1/premiumIndex", (("symbol", s),)) for s in symbols),
    ]


def refresh_requests(symbols: Sequence[str]) -> list[RestRequest]:
    return [RestRequest("/fapi/v1/fundingInfo")]  # Binance changes a symbol's interval live


def normaliser(config: FundingClientConfig) -> BinanceFundingNormaliser:
    return BinanceFundingNormaliser(config.fallback())


FEED = FundingFeed(
    name="binance",
    url="wss://fstream.binance.com/stream",
    normaliser=normaliser,
    control=control_frame,
    stream_url=stream_url,
    stale_after_s=30.0,  # an event every second; Binance pings, websockets answers
    rest_url="https://fapi.binance.com",
    seed_requests=seed_requests,
    refresh_requests=refresh_requests,
)
