"""The lifecycle every connector shares: capped jittered backoff, stale-feed watchdog, owned
services stopped in reverse order."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with a cap and full jitter: delay ∈ [0, min(cap, initial·factorⁿ)].

    A floor (``minimum_s``) keeps reconnects from hammering a venue even after jitter.
    """

    initial_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    minimum_s: float = 0.05
    rng: random.Random | None = None
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s or self.factor < 1 or self.minimum_s < 0:
            raise ValueError("backoff needs 0 < initial_s <= cap_s, factor >= 1, minimum_s >= 0")

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.initial_s * self.factor**self.attempt)
        self.attempt = min(self.attempt + 1, 64)
        draw = (self.rng or random).random()
        return max(self.minimum_s, ceiling * draw)

    def penalise(self, attempts: int) -> None:
        """Skip ahead (e.g. after a rate-limit reply) so the next delays are longer."""
        self.attempt = min(self.attempt + attempts, 64)

    def reset(self) -> None:
        self.attempt = 0


class StaleFeed(Exception):
    """No message arrived within the watchdog's limit."""


class Watchdog:
    """Tracks when a feed (and each key of it) last delivered, on the monotonic clock."""

    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self.last = clock()
        self._per_key: dict[str, float] = {}

    def touch(self, key: str | None = None) -> None:
        now = self._clock()
        self.last = now
        if key is not None:
            self._per_key[key] = now

    def forget(self, key: str) -> None:
        self._per_key.pop(key, None)

    def age(self) -> float:
        return self._clock() - self.last

    def is_stale(self) -> bool:
        return self.age() > self.stale_after_s

    def stale_keys(self, max_age_s: float) -> list[str]:
        """Keys that have delivered before but not within ``max_age_s``."""
        cutoff = self._clock() - max_age_s
        return sorted(key for key, seen in self._per_key.items() if seen < cutoff)

    async def watch(self, poll_s: float = 0.5) -> None:
        """Return normally never; raise StaleFeed once the feed goes quiet for too long."""
        while True:
            await asyncio.sleep(min(poll_s, self.stale_after_s / 4))
            if self.is_stale():
                raise StaleFeed(f"no message for {self.age():.1f} s")


class Services:
    """Owns started components; stops them in reverse start order, each stop bounded."""

    def __init__(self, stop_timeout_s: float = 10.0) -> None:
        self._stops: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        self.stop_timeout_s = stop_timeout_s

    def add(self, name: str, stop: Callable[[], Awaitable[object]]) -> None:
        self._stops.append((name, stop))

    async def close(self) -> list[tuple[str, BaseException]]:
        """Stop everything, last started first; returns the failures (never raises)."""
        failures: list[tuple[str, BaseException]] = []
        while self._stops:
            name, stop = self._stops.pop()
            try:
                async with asyncio.timeout(self.stop_timeout_s):  # 3.11's wait_for can
                    await stop()  # swallow a cancellation landing as stop() completes
            except Exception as exc:
                failures.append((name, exc))
            except asyncio.CancelledError as exc:
                # A client's stop may leak its own tasks' cancellation (aiokafka's consumer
                # does, stopped while its broker is gone); only ours ends the close.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                failures.append((name, exc))
        return failures

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def describe_disconnect(exc: BaseException | None) -> str:
    """One line on why a venue connection ended (stale feed, closed socket, other error)."""
    if isinstance(exc, StaleFeed):
        return f"stale feed: {exc}"
    if isinstance(exc, ConnectionClosed):
        return f"connection closed: {exc}"
    return f"{type(exc).__name__}: {exc}"


RECONNECT_CAUSES = ("connect_failed", "seed_failed", "stale", "closed", "rate_limited", "error")


def reconnect_cause(reason: str) -> str:
    """The small fixed class (``RECONNECT_CAUSES``) of a client's one-line reconnect reason
    (:func:`describe_disconnect`, ``connect failed: …``); a metric label."""
    for prefix, cause in (
        ("connect failed", "connect_failed"),
        ("seed failed", "seed_failed"),
        ("stale feed", "stale"),
        ("connection closed", "closed"),
        ("rate limited", "rate_limited"),
    ):
        if reason.startswith(prefix):
            return cause
    return "error"


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel an owned task and wait for it to finish (its CancelledError is absorbed)."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # our own cancellation, not the task's: it must go on
