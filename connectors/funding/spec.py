"""The spec of a funding venue: ``funding:VENUE:SYMBOL`` sources, ``[funding.VENUE]`` tables."""

from __future__ import annotations

import re
from dataclasses import replace

from connectors.common.ingest import IngestStage
from connectors.common.sources import SourceError
from connectors.common.venue import VenueSpec
from connectors.funding.client import FundingClient, FundingClientConfig, FundingFeed
from connectors.funding.frames import FundingNormaliser


def funding_spec(feed: FundingFeed, symbol: str, example: str) -> VenueSpec:
    """The spec of the venue ``feed`` streams; ``symbol`` is the pattern of its perpetuals
    (dated futures have no funding), ``example`` says what one is."""
    prefix = f"funding:{feed.name}"
    pattern = re.compile(symbol)

    def normaliser(config: FundingClientConfig | None) -> FundingNormaliser:
        return feed.normaliser(config or FundingClientConfig())

    def client(
        config: FundingClientConfig | None, symbols: tuple[str, ...], stage: IngestStage
    ) -> FundingClient:
        return FundingClient(feed, replace(config or FundingClientConfig(), symbols=symbols), stage)

    def target(text: str) -> str:
        if not pattern.fullmatch(text.upper()):
            raise SourceError(f"expected {prefix}:SYMBOL, {example}")
        return text.upper()

    return VenueSpec(
        venue=feed.name,
        prefix=prefix,
        table=f"funding.{feed.name}",
        config=FundingClientConfig,
        normaliser=normaliser,
        client=client,
        target=target,
        example=f"{prefix}:{example.rsplit(' ', 1)[-1]}",
    )
