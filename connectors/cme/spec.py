"""CME as one spec: ``cme:ES`` sources (settlements), the required ``[cme]`` table."""

from __future__ import annotations

from dataclasses import replace

from connectors.cme.client import CmeClient, CmeConfig
from connectors.cme.normaliser import CmeNormaliser
from connectors.cme.products import PRODUCTS
from connectors.common.ingest import IngestStage
from connectors.common.venue import VenueSpec, choice_target
from schemas.config import ConfigError

PRODUCT = choice_target("CME product", sorted(PRODUCTS))
TABLE = "the settlement URLs or a directory of saved files"  # what a [cme] table must hold


def normaliser(config: CmeConfig | None) -> CmeNormaliser:
    return CmeNormaliser()


def client(config: CmeConfig | None, products: tuple[str, ...], stage: IngestStage) -> CmeClient:
    """The client of one product; ConfigError without a config or for several products."""
    if len(products) > 1 or config is None:
        raise ConfigError(
            f"cme:{products[0]} needs a CME config (option series URLs or a directory of "
            "settlement files), one product per run"
        )
    return CmeClient(replace(config, product=products[0]), stage)


SPEC = VenueSpec("cme", CmeConfig, normaliser, client, PRODUCT, "cme:ES", needs_table=TABLE)
