"""The ingest half of the pipeline: sources → parse → Kafka (``regime-engine ingest``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from connectors.cboe.client import CboeClient, CboeConfig
from connectors.cboe.normaliser import CboeNormaliser
from connectors.cme.client import CmeClient, CmeConfig
from connectors.cme.normaliser import CmeNormaliser
from connectors.common.capture import CaptureWriter
from connectors.common.ingest import IngestStage, RecordSink, replay_capture
from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.lifecycle import Services, cancel_and_wait
from connectors.common.logs import get_logger
from connectors.deribit.client import DeribitClient, DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.funding.client import FundingClientConfig
from connectors.funding.venues import funding_clients
from connectors.sources import Source
from connectors.venues import StagePerVenue
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
    funding: Mapping[str, FundingClientConfig] | None = None,
    cboe: CboeConfig | None = None,
    cme: CmeConfig | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> IngestReport:
    """Stream every source into Kafka until ``stop`` is set or every finite source has ended.

    Live sources (Deribit, CBOE, funding) run until stopped; replays end by themselves (each
    captured message goes to its venue's normaliser; paced at
    ``replay_speed`` × recorded time when given). ``funding`` overrides a funding venue's
    settings by venue name (URLs, timings). ``clock_ns`` is the live clients' receive
    clock. Shutdown is orderly,
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
        lives = live_clients(
            sources,
            producer,
            topics,
            deribit=deribit,
            cboe=cboe,
            cme=cme,
            funding=funding,
            clock_ns=clock_ns,
        )
        for live in lives:
            stages.append(live.stage)
            tasks.append(asyncio.create_task(live.client.run(), name=live.name))
            services.add(live.name, live.client.stop)
        replays: list[StagePerVenue] = []
        for source in (s for s in sources if s.kind == "replay"):
            per_venue = StagePerVenue(producer, topics, source="replay")
            replays.append(per_venue)
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
        for stage in [*stages, *(s for r in replays for s in r.stages.values())]:
            report.counts.update(stage.counts)
        for live in lives:  # venue error replies (funding venues) are counted by their clients
            venue_errors = getattr(live.client, "counts", {}).get("venue_errors", 0)
            if venue_errors:
                report.counts["venue_errors"] += venue_errors
        stats = producer.stats
        report.records_sent = stats.records
        report.batches_sent = stats.batches
    log.info("ingest finished", **dict(report.counts), records_sent=report.records_sent)
    return report


class LiveClient(NamedTuple):
    name: str
    stage: IngestStage
    client: Any  # has ``run()`` and ``stop()``


def live_clients(
    sources: Sequence[Source],
    sink: RecordSink,
    topics: Topics,
    *,
    capture: CaptureWriter | None = None,
    deribit: DeribitConfig | None = None,
    cboe: CboeConfig | None = None,
    funding: Mapping[str, FundingClientConfig] | None = None,
    cme: CmeConfig | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> list[LiveClient]:
    """The client (and ingest stage) of every live source: one per venue (ingest, record)."""
    out: list[LiveClient] = []
    currencies = tuple(dict.fromkeys(s.target for s in sources if s.kind == "deribit"))
    if currencies:
        config = DeribitConfig(**{**_fields(deribit or DeribitConfig()), "currencies": currencies})
        stage = IngestStage(
            "deribit", DeribitNormaliser(), sink, topics, capture, clock_ns=clock_ns
        )
        out.append(LiveClient("deribit", stage, DeribitClient(config, stage)))
    symbols = tuple(dict.fromkeys(s.target for s in sources if s.kind == "cboe"))
    if symbols:
        stage = IngestStage("cboe", CboeNormaliser(), sink, topics, capture)
        client = CboeClient(replace(cboe or CboeConfig(), symbols=symbols), stage)
        out.append(LiveClient("cboe", stage, client))
    products = tuple(dict.fromkeys(s.target for s in sources if s.kind == "cme"))
    if products:
        if len(products) > 1 or cme is None:
            raise ValueError(
                f"cme:{products[0]} needs a CME config (option series URLs or a directory of "
                "settlement files), one product per run"
            )
        stage = IngestStage("cme", CmeNormaliser(), sink, topics, capture)
        client = CmeClient(replace(cme, product=products[0]), stage)
        out.append(LiveClient("cme", stage, client))
    for client in funding_clients(sources, sink, topics, funding, capture):
        out.append(LiveClient(f"funding-{client.spec.name}", client.stage, client))
    return out


def _fields(config: DeribitConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__slots__}
