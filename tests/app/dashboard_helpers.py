"""What the dashboard tests share: levels, profiles and events written as an engine writes
them (through RedisPublisher), and a Server-Sent Events reader."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from itertools import count
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from engine.app.chain_books import load_books
from engine.core.config import LevelsConfig
from engine.core.profile import compute_profile
from engine.stream.publisher import PendingWrite, RedisPublisher
from schemas.levels import Levels, encode_levels
from schemas.profile import encode_profile
from tests.app.test_cli_levels import HANDMADE

_offsets = count(1)


def handmade() -> tuple[Levels, bytes]:
    """Levels of the hand-made SPX chain and its encoded profile."""
    (loaded,) = load_books(HANDMADE, "cboe-csv", LevelsConfig())
    return loaded.levels, encode_profile(compute_profile(loaded.book))


def event_doc(n: int, underlying: str = "SPX", **kw: Any) -> dict[str, Any]:
    doc = {
        "schema": "regime.event/1",
        "id": f"test/{underlying}/{n}",
        "type": "flip_cross",
        "underlying": underlying,
        "bucket": "front",
        "direction": "down",
        "ts_event": 1_703_253_600_000_000_000 + n,
        "ts_emit": 1_703_253_600_000_000_000 + n,
        "spot": 3900.0 + n,
        "level": 3901.76,
        "regime": "negative",
        "levels": {},
        "model": "long_calls_short_puts",
        "detail": {"n": n, "band_bps": 10},
    }
    doc.update(kw)
    return doc


async def publish(
    redis: Redis,
    events: list[dict[str, Any]] = (),
    levels: Levels | None = None,
    profile: bytes | None = None,
) -> None:
    """One batch as the engine writes it (one Lua script), at a fresh input offset."""
    publisher = RedisPublisher(redis, "dashboard-test")
    offset = next(_offsets)
    writes = [PendingWrite("in/0", offset, e["underlying"], orjson.dumps(e)) for e in events]
    entries = []
    if levels is not None:
        payload = encode_levels(levels)
        entries.append(PendingWrite("in/0", offset, levels.underlying, payload, profile))
    await publisher.write(writes, entries, {"in/0": offset})


def moved(levels: Levels, spot: float) -> Levels:
    """The same levels at another spot (a visible change)."""
    return replace(levels, spot=spot, asof_ns=levels.asof_ns + 1)


class SSE:
    """Reads ``(event name, data)`` messages from an open event-stream response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> tuple[str, Any]:
        name, data = None, None
        while True:
            line = (await self.response.content.readline()).decode()
            if not line:
                raise EOFError("the event stream ended")
            line = line.rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
            elif line == "" and name is not None:
                return name, data

    async def until(self, wanted: str, timeout: float = 60.0) -> Any:
        """Data of the next message named ``wanted`` (others in between skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                name, data = await self.next()
                if name == wanted:
                    return data

    async def until_status(self, state: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next status message in ``state``."""
        async with asyncio.timeout(timeout):
            while (status := await self.until("status"))["state"] != state:
                pass
        return status
