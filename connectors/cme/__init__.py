"""CME Group settlements: futures and options settlement JSON into option-chain snapshots."""

from connectors.cme.black76 import black76_price, implied_vol
from connectors.cme.parse import (
    CmeChainConfig,
    CmeOptionSeries,
    FuturesCurve,
    parse_cme_futures,
    parse_cme_settlements,
)
from connectors.cme.products import PRODUCTS, CmeOptionFamily, CmeProduct, product

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
