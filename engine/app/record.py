"""``regime-engine record``: capture a live venue session to a capture file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from connectors.common.capture import CaptureWriter
from connectors.common.ingest import CountsDeadLetters
from connectors.common.lifecycle import cancel_and_wait
from connectors.sources import Source
from connectors.venues import live_clients
from schemas.config import Config
from schemas.records import Record
from schemas.topics import Topics


class DiscardSink(CountsDeadLetters):
    """Recording only: parsed records and dead letters are counted, not kept."""

    def __init__(self) -> None:
        self.records = 0

    async def send_record(self, topic: str, record: Record) -> None:
        self.records += 1


async def record_sources(
    sources: Sequence[Source],
    out: str | Path,
    duration_s: float | None,
    venues: Mapping[str, Config] | None = None,
) -> int:
    """Record live sources until ``duration_s`` elapses or SIGINT/SIGTERM; returns the
    messages written. The clients are the ingest's own, with a capture writer on the stage;
    ``venues`` holds a venue's config by venue name."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with CaptureWriter(out) as writer:
        lives = live_clients(sources, DiscardSink(), Topics(), venues, capture=writer)
        tasks = [asyncio.create_task(live.client.run(), name=live.name) for live in lives]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
        finally:
            for live in reversed(lives):
                await live.client.stop()
            for task in tasks:
                with contextlib.suppress(TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), 5.0)
                await cancel_and_wait(task)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        return writer.count
