"""A venue client that is one polling transport feeding an ingest stage.

The CBOE and CME clients are each an :class:`~connectors.common.http_poller.HttpPoller` (or a
:class:`~connectors.common.file_watch.FileWatch` of saved copies) handing bodies to an
:class:`~connectors.common.ingest.IngestStage`; :class:`PolledClient` is what they share.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Generic, NamedTuple, TypeVar

from connectors.common.file_watch import FileWatch
from connectors.common.http_poller import HttpPoller
from connectors.common.ingest import IngestStage

__all__ = ["PolledClient", "Timing"]

ConfigT = TypeVar("ConfigT")


class Timing(NamedTuple):
    """What a transport waits and times with (tests pass fakes)."""

    sleep: Callable[[float], Awaitable[object]]
    clock: Callable[[], float]
    rng: random.Random | None


class PolledClient(Generic[ConfigT]):
    """Runs one transport (``source``, built by :meth:`_source`) until :meth:`stop`.

    ``sleep``, ``clock`` and ``rng`` go to the poller / file watch (tests run the schedule
    without waiting).
    """

    def __init__(
        self,
        config: ConfigT,
        stage: IngestStage,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stage = stage
        self.source = self._source(Timing(sleep, clock, rng))

    def _source(self, timing: Timing) -> HttpPoller | FileWatch:
        """The transport for ``self.config``, delivering to ``self.stage``."""
        raise NotImplementedError

    @property
    def counts(self) -> Counter[str]:
        """The transport's outcomes (requests, delivered, not_modified, … / scans, …)."""
        return self.source.counts

    async def run(self) -> None:
        """Poll (or watch) until :meth:`stop`."""
        await self.source.run()

    async def stop(self) -> None:
        """Stop the transport and wait for it."""
        await self.source.stop()
