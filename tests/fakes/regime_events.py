"""Regime events as the publisher writes them (DESIGN §2.4), for subscriber-side tests."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import redis.asyncio as aioredis

from schemas.channels import STREAM_FIELD, events_stream
from schemas.events import RegimeEvent, encode_event

ASOF_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
EVENT_TYPES = ("flip_cross", "call_wall_break", "regime_change", "level_shift", "feed_stale")


def new_underlying() -> str:
    """A name no other test uses (tests share one Redis server)."""
    return f"T{uuid4().hex[:12].upper()}"


def make_event(
    underlying: str,
    n: int,
    type_: str | None = None,
    bucket: str = "all",
    detail: dict[str, Any] | None = None,
) -> RegimeEvent:
    """Event number ``n``: its id, times and spot follow from ``n``; ``detail`` adds to
    ``{"n": n}``."""
    type_ = type_ or EVENT_TYPES[n % len(EVENT_TYPES)]
    return RegimeEvent(
        id=f"deribit.raw.v1/0/{1000 + n}/{type_}/{bucket}",
        type=type_,
        underlying=underlying,
        bucket=bucket,
        direction="up" if n % 2 else "down",
        ts_event=ASOF_NS + n * 1_000_000,
        ts_emit=ASOF_NS + n * 1_000_000 + 500,
        spot=43_500.0 + n,
        level=43_200.0,
        regime="negative",
        levels={"zero_gamma": 43_200.0, "spot": 43_500.0 + n, "asof_ns": ASOF_NS},
        model="long_calls_short_puts",
        detail={"n": n, **(detail or {})},
    )


async def publish(client: aioredis.Redis, event: RegimeEvent) -> str:
    """XADD regime:stream:{U} with field ``event`` (DESIGN §2.4); returns the stream id."""
    stream_id = await client.xadd(
        events_stream(event.underlying), {STREAM_FIELD: encode_event(event)}
    )
    return stream_id.decode()
