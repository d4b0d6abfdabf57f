"""Every venue, one line each: adding a venue is its folder (with ``spec.py``) and a line here."""

from __future__ import annotations

from connectors.cboe.spec import SPEC as CBOE
from connectors.cme.spec import SPEC as CME
from connectors.common.venue import VenueSpec
from connectors.deribit.spec import SPEC as DERIBIT
from connectors.funding.binance.spec import SPEC as BINANCE
from connectors.funding.bybit.spec import SPEC as BYBIT
from connectors.funding.okx.spec import SPEC as OKX
from connectors.simulator.spec import SPEC as SIMULATOR

SPECS: tuple[VenueSpec, ...] = (DERIBIT, CBOE, CME, BINANCE, BYBIT, OKX, SIMULATOR)
