"""Bybit v5 public linear: endpoint, subscribe and keepalive frames."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from connectors.funding.bybit.parse import TOPIC_PREFIX, BybitFundingNormaliser, control_frame
from connectors.funding.client import FundingClientConfig, FundingFeed

TOPICS_PER_REQUEST = 10  # Bybit's limit of args per subscribe request


def subscribe_frames(symbols: Sequence[str]) -> list[str]:
    topics = [TOPIC_PREFIX + s for s in symbols]
    return [
        orjson.dumps(
            {
                "req_id": f"tickers-{start // TOPICS_PER_REQUEST}",
                "op": "subscribe",
                "args": topics[start : start + TOPICS_PER_REQUEST],
            }
        ).decode()
        for start in range(0, len(topics), TOPICS_PER_REQUEST)
    ]


def normaliser(config: FundingClientConfig) -> BybitFundingNormaliser:
    return BybitFundingNormaliser(config.fallback(), config.min_emit_interval_ms)


FEED = FundingFeed(
    name="bybit",
    url="wss://stream.bybit.com/v5/public/linear",
    normaliser=normaliser,
    control=control_frame,
    subscribe_frames=subscribe_frames,
    keepalive_frame='{"op":"ping"}',
    keepalive_s=20.0,  # Bybit: ping every 20 s
    stale_after_s=30.0,
)
