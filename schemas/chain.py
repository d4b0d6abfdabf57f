"""Option-chain snapshots: a whole chain as parsed, and its framing on ``md.options.v1``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from schemas.codec import fast_frozen_init
from schemas.contracts import OptionContract

# Columns of ChainDelta.columns: one list per OptionContract field, row i = one contract.
# ``index_price`` is the delta's ``spot``; venue, underlying, times and premium currency are
# the delta's own.
CHAIN_COLUMNS = (
    "instrument",  # venue instrument id
    "root",  # product root: "SPX", "SPXW", "ES"
    "expiry_ns",  # settlement instant, ns since the epoch (UTC)
    "strike",  # exact strike as a decimal string: "4700", "10.5"
    "right",  # "C" | "P"
    "multiplier",  # units of underlying per contract
    "open_interest",  # contracts
    "iv",  # fraction, null when none
    "underlying_price",  # the price this contract is quoted against (CME: its future)
    "bid",
    "ask",
    "mark",
    "gamma",  # venue gamma per 1 unit of underlying price, null when none
    "delta",
)


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    venue: str  # "cboe", "deribit", "cme"
    underlying: str  # Redis {underlying}: "SPX", "NDX", "BTC"
    spot: float  # spot / index price at asof, in the underlying's price currency
    asof_ns: int  # venue time of the snapshot, ns since the epoch (UTC)
    contracts: tuple[OptionContract, ...]


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ChainDelta:
    """One part of a polled chain snapshot, as changes against the previous snapshot.

    A connector that polls whole chains (CBOE, CME) sends each snapshot as ``parts``
    records, in order, on the underlying's partition of ``md.options.v1``. Each part upserts
    the contracts in ``columns`` (added or changed since the previous snapshot) and drops
    the instruments in ``removed``. The snapshot is complete after part ``parts - 1``:
    the engine evaluates there. A ``full`` snapshot lists every live contract (the first
    one a connector sends, and periodic keyframes): at its completion the engine also drops
    every contract of this venue and underlying that none of its parts listed, so a
    restarted connector never leaves vanished contracts behind. Parts are sized to stay
    under the broker's message size limit.
    """

    SCHEMA: ClassVar[str] = "md.chain_delta/1"
    venue: str
    underlying: str
    snapshot_ns: int  # venue time of the snapshot; with venue and underlying, its identity
    part: int  # 0 … parts-1
    parts: int
    full: bool  # every live contract is listed in the parts of this snapshot
    spot: float  # spot / index at the snapshot (every contract's index_price)
    premium_currency: str  # "USD"
    removed: list[str]  # instruments gone since the previous snapshot
    columns: dict[str, list[Any]]  # upserted contracts, one list per CHAIN_COLUMNS name
    ts_event_ns: int  # = snapshot_ns
    ts_recv_ns: int
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire

    @property
    def size(self) -> int:
        """Number of contracts this part upserts."""
        return len(self.columns.get("instrument", ()))

    @property
    def last(self) -> bool:
        return self.part == self.parts - 1
