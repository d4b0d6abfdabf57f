"""Binance USD-M funding as one spec: ``funding:binance:BTCUSDT``, ``[funding.binance]``."""

from connectors.funding.binance.venue import FEED
from connectors.funding.spec import funding_spec

SPEC = funding_spec(FEED, r"[A-Z0-9]{2,30}", "a USD-M perpetual such as BTCUSDT")
