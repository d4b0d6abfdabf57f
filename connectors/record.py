"""``regime-engine record``: capture a live venue session to a capture file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from connectors.capture import CaptureWriter
from connectors.deribit.client import DeribitClient, DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.ingest import IngestStage
from connectors.lifecycle import cancel_and_wait
from schemas.records import Record
from schemas.topics import Topics


class DiscardSink:
    """Recording only: parsed records and dead letters are counted, not kept."""

    def __init__(self) -> None:
        self.records = 0
        self.dead_letters = 0

    async def send_record(self, topic: str, record: Record) -> None:
        self.records += 1

    async def send_dead_letter(
        self, raw: bytes, reason: str, venue: str, source: str, recv_ns: int
    ) -> None:
        self.dead_letters += 1


async def record_deribit(config: DeribitConfig, out: str | Path, duration_s: float | None) -> int:
    """Record until ``duration_s`` elapses or SIGINT/SIGTERM; returns the messages written."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with CaptureWriter(out) as writer:
        stage = IngestStage("deribit", DeribitNormaliser(), DiscardSink(), Topics(), writer)
        client = DeribitClient(config, stage)
        task = asyncio.create_task(client.run(), name="deribit-record")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
        finally:
            await client.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            await cancel_and_wait(task)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        return writer.count
