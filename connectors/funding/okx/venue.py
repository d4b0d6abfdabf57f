"""OKX v5 public: endpoint, subscribe and keepalive frames."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from connectors.funding.client import FundingClientConfig, FundingFeed
from connectors.funding.okx.parse import (
    CHANNEL,
    KEEPALIVE_REPLY,
    OkxFundingNormaliser,
    control_frame,
)


def subscribe_frames(symbols: Sequence[str]) -> list[str]:
    args = [{"channel": CHANNEL, "instId": s} for s in symbols]
    return [orjson.dumps({"op": "subscribe", "args": args}).decode()]


def normaliser(config: FundingClientConfig) -> OkxFundingNormaliser:
    return OkxFundingNormaliser(config.fallback())


FEED = FundingFeed(
    name="okx",
    url="wss://ws.okx.com:8443/ws/v5/public",
    normaliser=normaliser,
    control=control_frame,
    subscribe_frames=subscribe_frames,
    keepalive_frame="ping",
    keepalive_reply=KEEPALIVE_REPLY,
    keepalive_s=25.0,  # OKX drops a connection after 30 s without a frame either way
    stale_after_s=180.0,  # OKX pushes funding-rate every 30–90 s
)
