"""CBOE delayed quotes: the "download CSV" quote table and the delayed-quotes JSON."""

from connectors.cboe.parse import OccSymbol, parse_cboe_csv, parse_cboe_json, parse_occ_symbol
from connectors.cboe.products import PRODUCTS, CboeProduct, product_for_root

__all__ = [
    "PRODUCTS",
    "CboeProduct",
    "OccSymbol",
    "parse_cboe_csv",
    "parse_cboe_json",
    "parse_occ_symbol",
    "product_for_root",
]
