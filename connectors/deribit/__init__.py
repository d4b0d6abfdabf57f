"""Deribit: JSON-RPC wire types and pure parsers (book summary, instrument names)."""

from connectors.deribit.parse import (
    DeribitOptionName,
    is_option_name,
    parse_book_summary,
    parse_instrument_name,
)

__all__ = ["DeribitOptionName", "is_option_name", "parse_book_summary", "parse_instrument_name"]
