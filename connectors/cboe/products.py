"""CBOE product table, keyed by OCC root: underlying, settlement style and multiplier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from connectors.common.errors import ParseError
from engine.core.settlement import new_york_instant_ns

AM_SETTLEMENT = (9, 30)  # AM-settled: settlement value from the opening prints, 09:30 New York
PM_SETTLEMENT = (16, 0)  # PM-settled: the close, 16:00 New York


@dataclass(frozen=True, slots=True)
class CboeProduct:
    root: str  # OCC root: "SPX", "SPXW"
    underlying: str  # Redis {underlying}: "SPX" for SPX and SPXW together
    am_settled: bool  # True: settles at 09:30 New York on the expiry date; False: 16:00
    multiplier: float = 100.0  # units of underlying per contract
    physical: bool = False  # True: physically settled (ETF options), else cash-settled

    def expiry_ns(self, expiry: date) -> int:
        """Settlement instant of this product's series expiring on ``expiry``."""
        hour, minute = AM_SETTLEMENT if self.am_settled else PM_SETTLEMENT
        return new_york_instant_ns(expiry, hour, minute)


PRODUCTS: MappingProxyType[str, CboeProduct] = MappingProxyType(
    {
        p.root: p
        for p in (
            CboeProduct("SPX", "SPX", am_settled=True),  # monthly, third Friday, AM
            CboeProduct("SPXW", "SPX", am_settled=False),  # weeklies / dailies, PM
            CboeProduct("XSP", "XSP", am_settled=False),  # mini-SPX, 1/10 size, PM
            CboeProduct("NDX", "NDX", am_settled=True),
            CboeProduct("NDXP", "NDX", am_settled=False),
            CboeProduct("VIX", "VIX", am_settled=True),  # settles on the Wednesday SOQ
            CboeProduct("VIXW", "VIX", am_settled=True),
            CboeProduct("SPY", "SPY", am_settled=False, physical=True),
            CboeProduct("QQQ", "QQQ", am_settled=False, physical=True),
        )
    }
)


def product_for_root(root: str) -> CboeProduct:
    """The product of an OCC root; unknown roots raise ParseError."""
    try:
        return PRODUCTS[root]
    except KeyError:
        known = ", ".join(sorted(PRODUCTS))
        raise ParseError(f"unknown CBOE option root {root!r} (known: {known})") from None
