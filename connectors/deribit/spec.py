"""Deribit as one spec: ``deribit:BTC`` / ``deribit:ETH`` sources, the ``[deribit]`` table."""

from __future__ import annotations

from dataclasses import replace

from connectors.common.ingest import IngestStage
from connectors.common.venue import VenueSpec, choice_target
from connectors.deribit.client import DeribitClient, DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser

CURRENCY = choice_target("Deribit currency", ("BTC", "ETH"))


def normaliser(config: DeribitConfig | None) -> DeribitNormaliser:
    return DeribitNormaliser()


def client(
    config: DeribitConfig | None, currencies: tuple[str, ...], stage: IngestStage
) -> DeribitClient:
    return DeribitClient(replace(config or DeribitConfig(), currencies=currencies), stage)


SPEC = VenueSpec(
    "deribit", DeribitConfig, normaliser, client, CURRENCY, example="deribit:BTC", url_flag=True
)
