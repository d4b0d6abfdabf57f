"""Levels from a capture file (``regime-engine levels FILE --format capture``).

The capture goes through the live parse path (ingest stage + venue normaliser) and straight
into the books, in batches.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.common.ingest import CountsDeadLetters, replay_capture
from connectors.venues import StagePerVenue
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.core.levels import compute_levels
from schemas.levels import Levels
from schemas.records import Record
from schemas.topics import Topics


class FeederSink(CountsDeadLetters):
    """A record sink that feeds a :class:`BookFeeder` in batches (replay straight into books)."""

    def __init__(self, feeder: BookFeeder, batch: int = 1024) -> None:
        self.feeder = feeder
        self.batch = batch
        self._pending: list[Record] = []

    async def send_record(self, topic: str, record: Record) -> None:
        self._pending.append(record)
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.feeder.apply(self._pending)
            self._pending = []


def levels_from_capture(path: str | Path, config: LevelsConfig) -> list[Levels]:
    """Levels of every underlying in a capture file, as of its last message's venue time.

    The capture goes through the live parse path (ingest stage + venue normaliser) and
    straight into the books, in batches; ValueError (one line) when it cannot be used.
    """
    return asyncio.run(levels_from_capture_async(path, config))


async def levels_from_capture_async(path: str | Path, config: LevelsConfig) -> list[Levels]:
    """:func:`levels_from_capture` inside a running event loop."""
    return [compute_levels(book) for book in await books_from_capture_async(path, config)]


async def books_from_capture_async(path: str | Path, config: LevelsConfig) -> list[GammaBook]:
    """The book of every underlying in a capture file (by name), as of its last message's
    venue time; ValueError (one line) when the capture cannot be used."""
    feeder = BookFeeder(config)
    sink = FeederSink(feeder)
    try:
        await replay_capture(path, StagePerVenue(sink, Topics()))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    sink.flush()
    if not feeder.books:
        raise ValueError(f"{path}: no option contracts in the capture")
    asof = max(feeder.last_event_ns.values())
    return [feeder.book_at(underlying, asof) for underlying in sorted(feeder.books)]
