"""The ingest half of the pipeline: sources → parse → Kafka (``regime-engine ingest``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from connectors.common.ingest import IngestStage, replay_capture
from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.lifecycle import Services, cancel_and_wait
from connectors.common.logs import get_logger
from connectors.sources import REPLAY, Source
from connectors.venues import LiveClient, StagePerVenue, live_clients
from schemas.config import Config
from schemas.topics import Topics

log = get_logger("ingest")


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)  # messages, records, dead_letters
    records_sent: int = 0
    batches_sent: int = 0


@dataclass
class IngestView:
    """What a running ingest is made of (metrics and readiness read it, never change it)."""

    live: list[LiveClient] = field(default_factory=list)  # one per live venue
    replays: list[StagePerVenue] = field(default_factory=list)  # one per replay source

    def stages(self) -> list[IngestStage]:
        """Every venue stage: the live ones, then the replays' (created on first use)."""
        return [*(live.stage for live in self.live),
                *(s for r in self.replays for s in r.stages.values())]  # fmt: skip


async def run_ingest(
    sources: Sequence[Source],
    producer_config: ProducerConfig,
    topics: Topics,
    stop: asyncio.Event | None = None,
    venues: Mapping[str, Config] | None = None,
    partitions: int = 3,
    replay_speed: float | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
    view: IngestView | None = None,
) -> IngestReport:
    """Stream every source into Kafka until ``stop`` is set or every finite source has ended.

    Live sources run until stopped; replays end by themselves (each captured message goes
    to its venue's normaliser; paced at ``replay_speed`` × recorded time when given).
    ``venues`` holds a venue's config by venue name (URLs, timings; its config-file
    table). ``clock_ns`` is the live clients' receive clock. Shutdown is orderly,
    in reverse order: the clients stop, then the producer flushes and awaits its acks.
    ``view`` (metrics) is filled with the clients and stages as they are made.
    """
    view = view if view is not None else IngestView()
    stop = stop or asyncio.Event()
    await ensure_topics(
        producer_config.bootstrap,
        topics.all(),
        partitions=partitions,
        security=producer_config.security,
    )
    report = IngestReport()
    async with Services() as services:
        producer = RecordProducer(producer_config, topics)
        await producer.start()
        services.add("producer", producer.stop)
        tasks: list[asyncio.Task[None]] = []
        lives = live_clients(sources, producer, topics, venues, clock_ns=clock_ns)
        view.live.extend(lives)
        for live in lives:
            tasks.append(asyncio.create_task(live.client.run(), name=live.name))
            services.add(live.name, live.client.stop)
        for source in (s for s in sources if s.kind == REPLAY):
            per_venue = StagePerVenue(producer, topics, source="replay")
            view.replays.append(per_venue)
            tasks.append(
                asyncio.create_task(
                    replay_capture(source.target, per_venue, replay_speed), name=source.spec
                )
            )
        stopper = asyncio.create_task(stop.wait(), name="ingest-stop")
        try:
            pending: set[asyncio.Task[None]] = set(tasks)
            while pending:
                done, rest = await asyncio.wait(
                    {*pending, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done - {stopper}:
                    task.result()  # a failed source ends the ingest with its error
                if stopper in done:
                    break
                pending = rest - {stopper}
        finally:
            await cancel_and_wait(stopper)
            for task in tasks:
                await cancel_and_wait(task)
            await producer.flush()
        for stage in view.stages():
            report.counts.update(stage.counts)
        for live in lives:  # venue error replies are counted by their clients
            venue_errors = getattr(live.client, "counts", {}).get("venue_errors", 0)
            if venue_errors:
                report.counts["venue_errors"] += venue_errors
        stats = producer.stats
        report.records_sent = stats.records
        report.batches_sent = stats.batches
    log.info("ingest finished", **dict(report.counts), records_sent=report.records_sent)
    return report
