"""What feeds the live view of `demo` and `run`: a subscriber (the SDK bots use) for the
events and a poll of the latest levels, both from Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, Self

from redis.asyncio import Redis

from connectors.common.lifecycle import cancel_and_wait
from engine.client.subscriber import Delivery, RegimeSubscriber, SubscriberConfig
from schemas.channels import levels_key
from schemas.events import RegimeEvent
from schemas.levels import Levels, decode_levels

__all__ = ["LiveFeed", "LiveView"]


class LiveView(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def status(self, text: str) -> None: ...
    def on_levels(self, levels: Levels) -> None: ...
    def on_event(self, delivery: Delivery) -> None: ...


class LiveFeed:
    """Feeds a view from Redis while open: each new event (from ``$``) and each change of
    an underlying's levels key. ``underlyings`` None follows every underlying that shows up.

    ``async with LiveFeed(url, view) as feed: ...``; :attr:`events` holds what arrived.
    """

    def __init__(
        self,
        redis_url: str,
        view: LiveView,
        underlyings: tuple[str, ...] | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.view = view
        self.poll_s = poll_s
        self.events: list[RegimeEvent] = []
        self.levels: dict[str, Levels] = {}
        self._underlyings = underlyings
        self._redis = Redis.from_url(redis_url)
        self._subscriber = RegimeSubscriber(
            SubscriberConfig(
                redis_url=redis_url, underlyings=underlyings, start_id="$", block_ms=200
            )
        )
        self._raw: dict[str, bytes] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def __aenter__(self) -> Self:
        try:
            await self._subscriber.start()
        except BaseException:
            await self.close()
            raise
        self._tasks = [
            asyncio.create_task(self._watch_events(), name="live-events"),
            asyncio.create_task(self._watch_levels(), name="live-levels"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop following (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._subscriber.close()  # ends the events iteration (StopAsyncIteration)
        for task in self._tasks:
            await cancel_and_wait(task)
        await self._redis.aclose()

    async def wait_for_events(self, count: int, timeout_s: float) -> None:
        """Until ``count`` events arrived or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def refresh_levels(self) -> None:
        """Read every followed underlying's levels now; the view sees the changed ones."""
        names = self._underlyings or self._subscriber.underlyings
        if not names:
            return
        raws = await self._redis.mget([levels_key(name) for name in names])
        for name, raw in zip(names, raws, strict=True):
            if raw is not None and raw != self._raw.get(name):
                self._raw[name] = raw
                self.levels[name] = decode_levels(raw)
                self.view.on_levels(self.levels[name])

    async def _watch_events(self) -> None:
        async for delivery in self._subscriber:
            self.events.append(delivery.event)
            self.view.on_event(delivery)

    async def _watch_levels(self) -> None:
        while True:
            await self.refresh_levels()
            await asyncio.sleep(self.poll_s)
