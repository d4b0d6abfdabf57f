"""The ingest half of the pipeline: sources → parse → Kafka (``regime-engine ingest``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connectors.deribit.client import DeribitClient, DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.funding.client import FundingConfig
from connectors.funding.venues import funding_clients
from connectors.ingest import IngestStage, replay_capture
from connectors.kafka.embedded import ensure_topics
from connectors.kafka.producer import ProducerConfig, RecordProducer
from connectors.lifecycle import Services, cancel_and_wait
from connectors.sources import Source
from engine.logs import get_logger
from schemas.topics import Topics

log = get_logger("ingest")


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)  # messages, records, dead_letters
    records_sent: int = 0
    batches_sent: int = 0


async def run_ingest(
    sources: Sequence[Source],
    producer_config: ProducerConfig,
    topics: Topics,
    stop: asyncio.Event | None = None,
    deribit: DeribitConfig | None = None,
    partitions: int = 3,
    replay_speed: float | None = None,
    funding: Mapping[str, FundingConfig] | None = None,
) -> IngestReport:
    """Stream every source into Kafka until ``stop`` is set or every finite source has ended.

    Live sources (Deribit, funding) run until stopped; replays end by themselves (paced at
    ``replay_speed`` × recorded time when given). ``funding`` overrides a funding venue's
    settings by venue name (URLs, timings). Shutdown is orderly,
    in reverse order: the clients stop, then the producer flushes and awaits its acks.
    """
    stop = stop or asyncio.Event()
    await ensure_topics(producer_config.bootstrap, topics.all(), partitions=partitions)
    report = IngestReport()
    async with Services() as services:
        producer = RecordProducer(producer_config, topics)
        await producer.start()
        services.add("producer", producer.stop)
        stages: list[IngestStage] = []
        tasks: list[asyncio.Task[None]] = []
        currencies = tuple(dict.fromkeys(s.target for s in sources if s.kind == "deribit"))
        if currencies:
            config = deribit or DeribitConfig()
            stage = IngestStage("deribit", DeribitNormaliser(), producer, topics)
            client = DeribitClient(
                DeribitConfig(**{**_fields(config), "currencies": currencies}), stage
            )
            stages.append(stage)
            tasks.append(asyncio.create_task(client.run(), name="deribit"))
            services.add("deribit", client.stop)
        clients = funding_clients(sources, producer, topics, funding)
        for client in clients:
            stages.append(client.stage)
            tasks.append(asyncio.create_task(client.run(), name=f"funding-{client.spec.name}"))
            services.add(f"funding-{client.spec.name}", client.stop)
        for source in (s for s in sources if s.kind == "replay"):
            stage = IngestStage("deribit", DeribitNormaliser(), producer, topics, source="replay")
            stages.append(stage)
            tasks.append(
                asyncio.create_task(
                    replay_capture(source.target, stage, replay_speed), name=source.spec
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
        for stage in stages:
            report.counts.update(stage.counts)
        for client in clients:
            if client.counts["venue_errors"]:
                report.counts["venue_errors"] += client.counts["venue_errors"]
        stats = producer.stats
        report.records_sent = stats.records
        report.batches_sent = stats.batches
    log.info("ingest finished", **dict(report.counts), records_sent=report.records_sent)
    return report


def _fields(config: DeribitConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__slots__}
