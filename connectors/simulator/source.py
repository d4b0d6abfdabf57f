"""The simulator as a live source: a seeded Deribit session per currency, through the stage.

The messages are exactly what :func:`generate_session` yields (Deribit wire format,
JSON-RPC responses included), so they take the Deribit parse path; they are fed at
``speed`` × simulated time and the source ends when every session has been sent.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

from connectors.common.ingest import IngestStage, replay_messages
from connectors.common.lifecycle import cancel_and_wait
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session
from schemas.config import Config, ConfigError


@dataclass(frozen=True, slots=True)
class SimulatorConfig(Config):
    """``[simulator]``: the pace and ``[simulator.session]`` (the currency is the source's)."""

    SECTION: ClassVar[str] = "simulator"

    speed: float = 1.0  # × simulated time; 0: as fast as possible
    session: SessionConfig = field(default_factory=SessionConfig)

    def __post_init__(self) -> None:
        speed = self.speed
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise ConfigError(f"simulator speed must be a number, got {speed!r}")
        if not (math.isfinite(speed) and speed >= 0):
            raise ConfigError(f"simulator speed must be >= 0, got {speed!r}")


class SimulatedSource:
    """Streams one simulated session per currency into ``stage`` until sent or stopped."""

    def __init__(
        self, config: SimulatorConfig, currencies: tuple[str, ...], stage: IngestStage
    ) -> None:
        self.config = config
        self.stage = stage
        self.sessions = tuple(replace(config.session, currency=c) for c in currencies)
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Send every session (concurrently, each in its own time order)."""
        sends = asyncio.create_task(self._send_all(), name="simulator-sessions")
        stopper = asyncio.create_task(self._stopping.wait(), name="simulator-stop")
        try:
            await asyncio.wait({sends, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if sends.done():
                sends.result()
        finally:
            await cancel_and_wait(stopper)
            await cancel_and_wait(sends)

    async def _send_all(self) -> None:
        speed = self.config.speed or None
        await asyncio.gather(
            *(replay_messages(generate_session(s), self.stage, speed) for s in self.sessions)
        )

    async def stop(self) -> None:
        self._stopping.set()
