"""OKX swap funding as one spec: ``funding:okx:BTC-USDT-SWAP``, ``[funding.okx]``."""

from connectors.funding.okx.venue import FEED
from connectors.funding.spec import funding_spec

SPEC = funding_spec(FEED, r"[A-Z0-9]+-[A-Z0-9]+-SWAP", "a perpetual swap such as BTC-USDT-SWAP")
