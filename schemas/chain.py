"""A complete option-chain snapshot of one underlying, from a chain file or a polled venue."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.contracts import OptionContract


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    venue: str  # "cboe", "deribit", "cme"
    underlying: str  # Redis {underlying}: "SPX", "NDX", "BTC"
    spot: float  # spot / index price at asof, in the underlying's price currency
    asof_ns: int  # venue time of the snapshot, ns since the epoch (UTC)
    contracts: tuple[OptionContract, ...]
