"""CBOE as one spec: ``cboe:SPX`` sources (delayed quotes), the ``[cboe]`` table."""

from __future__ import annotations

from dataclasses import replace

from connectors.cboe.client import CBOE_SYMBOLS, CboeClient, CboeConfig
from connectors.cboe.normaliser import CboeNormaliser
from connectors.common.ingest import IngestStage
from connectors.common.venue import VenueSpec, choice_target

SYMBOL = choice_target("CBOE symbol", sorted(CBOE_SYMBOLS))


def normaliser(config: CboeConfig | None) -> CboeNormaliser:
    return CboeNormaliser()


def client(config: CboeConfig | None, symbols: tuple[str, ...], stage: IngestStage) -> CboeClient:
    return CboeClient(replace(config or CboeConfig(), symbols=symbols), stage)


SPEC = VenueSpec("cboe", CboeConfig, normaliser, client, SYMBOL, example="cboe:SPX")
