"""``--source SPEC`` (DESIGN §2.2): what to connect to, parsed and checked up front."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.cboe.client import CBOE_SYMBOLS
from connectors.cme.products import PRODUCTS as CME_PRODUCTS
from connectors.common.sources import Source, SourceError

__all__ = ["Source", "SourceError", "parse_source"]

KNOWN_KINDS = ("deribit", "cboe", "cme", "funding", "replay")
IMPLEMENTED_KINDS = ("deribit", "cboe", "cme", "funding", "replay")
DERIBIT_CURRENCIES = ("BTC", "ETH")
# Perpetual symbols per funding venue (dated futures have no funding).
FUNDING_SYMBOLS = {
    "binance": (re.compile(r"[A-Z0-9]{2,30}"), "a USD-M perpetual such as BTCUSDT"),
    "bybit": (re.compile(r"[A-Z0-9]{2,30}"), "a linear perpetual such as BTCUSDT"),
    "okx": (re.compile(r"[A-Z0-9]+-[A-Z0-9]+-SWAP"), "a perpetual swap such as BTC-USDT-SWAP"),
}


def parse_source(spec: str) -> Source:
    """Parse ``deribit:BTC``, ``funding:binance:BTCUSDT``, ``replay:PATH`` …; SourceError with
    one line when not usable."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SourceError(f"bad source {spec!r}: expected KIND:TARGET, e.g. deribit:BTC")
    if kind not in KNOWN_KINDS:
        raise SourceError(
            f"unknown source kind {kind!r} in {spec!r}; known: {', '.join(KNOWN_KINDS)}"
        )
    if kind not in IMPLEMENTED_KINDS:
        supported = ", ".join(IMPLEMENTED_KINDS)
        raise SourceError(f"source {spec!r} is not supported yet (supported: {supported})")
    if kind == "deribit":
        target = target.upper()
        if target not in DERIBIT_CURRENCIES:
            choices = ", ".join(DERIBIT_CURRENCIES)
            raise SourceError(f"bad source {spec!r}: Deribit currency must be one of {choices}")
    if kind == "cboe":
        target = target.upper()
        if target not in CBOE_SYMBOLS:
            choices = ", ".join(sorted(CBOE_SYMBOLS))
            raise SourceError(f"bad source {spec!r}: CBOE symbol must be one of {choices}")
    if kind == "cme":
        target = target.upper()
        if target not in CME_PRODUCTS:
            choices = ", ".join(sorted(CME_PRODUCTS))
            raise SourceError(f"bad source {spec!r}: CME product must be one of {choices}")
    if kind == "funding":
        target = _funding_target(spec, target)
    if kind == "replay" and not Path(target).is_file():
        raise SourceError(f"bad source {spec!r}: no such capture file {target}")
    return Source(kind, target)


def _funding_target(spec: str, target: str) -> str:
    venue, sep, symbol = target.partition(":")
    venue, symbol = venue.lower(), symbol.upper()
    if venue not in FUNDING_SYMBOLS:
        venues = ", ".join(FUNDING_SYMBOLS)
        raise SourceError(f"bad source {spec!r}: funding venue must be one of {venues}")
    pattern, example = FUNDING_SYMBOLS[venue]
    if not sep or not pattern.fullmatch(symbol):
        raise SourceError(f"bad source {spec!r}: expected funding:{venue}:SYMBOL, {example}")
    return f"{venue}:{symbol}"
