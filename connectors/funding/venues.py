"""The funding venues by name, and building a venue's stage and client from sources."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from connectors.common.capture import CaptureWriter
from connectors.common.ingest import IngestStage, RecordSink
from connectors.common.sources import Source
from connectors.funding.binance.venue import SPEC as BINANCE
from connectors.funding.bybit.venue import SPEC as BYBIT
from connectors.funding.client import FundingClient, FundingClientConfig, VenueSpec
from connectors.funding.frames import FundingNormaliser
from connectors.funding.okx.venue import SPEC as OKX
from schemas.topics import Topics

VENUES: dict[str, VenueSpec] = {spec.name: spec for spec in (BINANCE, BYBIT, OKX)}


def funding_normaliser(venue: str, config: FundingClientConfig | None = None) -> FundingNormaliser:
    """The normaliser of ``venue`` (for replaying a capture through the live parse path)."""
    return VENUES[venue].normaliser(config or FundingClientConfig())


def symbols_by_venue(sources: Iterable[Source]) -> dict[str, tuple[str, ...]]:
    """``funding:VENUE:SYMBOL`` sources grouped by venue, symbols in order, once each."""
    out: dict[str, dict[str, None]] = {}
    for source in sources:
        if source.kind == "funding":
            venue, symbol = source.funding_target
            out.setdefault(venue, {})[symbol] = None
    return {venue: tuple(symbols) for venue, symbols in out.items()}


def funding_clients(
    sources: Iterable[Source],
    sink: RecordSink,
    topics: Topics,
    configs: Mapping[str, FundingClientConfig] | None = None,
    capture: CaptureWriter | None = None,
) -> list[FundingClient]:
    """One client (and ingest stage) per venue named by the funding sources.

    ``configs`` overrides a venue's settings (URLs, timings); its symbols come from the
    sources. ``capture`` records every frame (``regime-engine record``).
    """
    clients = []
    for venue, symbols in symbols_by_venue(sources).items():
        spec = VENUES[venue]
        config = replace((configs or {}).get(venue) or FundingClientConfig(), symbols=symbols)
        stage = IngestStage(venue, spec.normaliser(config), sink, topics, capture)
        clients.append(FundingClient(spec, config, stage))
    return clients
