"""Bybit linear funding as one spec: ``funding:bybit:BTCUSDT``, ``[funding.bybit]``."""

from connectors.funding.bybit.venue import FEED
from connectors.funding.spec import funding_spec

SPEC = funding_spec(FEED, r"[A-Z0-9]{2,30}", "a linear perpetual such as BTCUSDT")
