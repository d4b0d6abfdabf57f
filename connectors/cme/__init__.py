"""CME Group settlements: futures and options settlement JSON into option-chain snapshots."""

from connectors.cme.parse import (
    CmeChainConfig,
    CmeOptionSeries,
    FuturesCurve,
    parse_cme_futures,
    parse_cme_settlements,
)
from connectors.cme.products import PRODUCTS, CmeOptionFamily, CmeProduct, product
from engine.core.pricing import black76_price, implied_vol

__all__ = [
    "PRODUCTS",
    "CmeChainConfig",
    "CmeOptionFamily",
    "CmeOptionSeries",
    "CmeProduct",
    "FuturesCurve",
    "black76_price",
    "implied_vol",
    "parse_cme_futures",
    "parse_cme_settlements",
    "product",
]
