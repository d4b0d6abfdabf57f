"""Option-chain snapshots: a whole chain as parsed, and its framing on ``md.options.v1``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np

from schemas.codec import fast_frozen_init, unpack_array
from schemas.contracts import OptionContract, OptionRight

# Columns of ChainDelta.columns: one list per OptionContract field, row i = one contract.
# ``index_price`` is the delta's ``spot``; venue, underlying, times and premium currency are
# the delta's own. Only what dealer gamma depends on travels: a change of bid/ask alone is
# not a change.
TERM_COLUMNS = (
    "instrument",  # venue instrument id
    "root",  # product root: "SPX", "SPXW", "ES"
    "expiry_ns",  # settlement instant, ns since the epoch (UTC)
    "strike",  # exact strike as a decimal string: "4700", "10.5"
    "right",  # "C" | "P"
    "multiplier",  # units of underlying per contract
)
VALUE_COLUMNS = (
    "open_interest",  # contracts
    "iv",  # fraction, null when none
    "underlying_price",  # the price this contract is quoted against (CME: its future); null: spot
    "gamma",  # venue gamma per 1 unit of underlying price, null when none
)
CHAIN_COLUMNS = TERM_COLUMNS + VALUE_COLUMNS


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    venue: str  # "cboe", "deribit", "cme"
    underlying: str  # Redis {underlying}: "SPX", "NDX", "BTC"
    spot: float  # spot / index price at asof, in the underlying's price currency
    asof_ns: int  # venue time of the snapshot, ns since the epoch (UTC)
    contracts: tuple[OptionContract, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ChainColumns:
    """A complete chain snapshot held column-wise (row i = one contract): the fast path.

    Polled venues parse into this form without building a Python object per contract; the
    snapshot differ compares it with the previous one as arrays.
    """

    venue: str
    underlying: str
    spot: float  # spot / index at asof
    asof_ns: int
    premium_currency: str
    instrument: list[str]
    root: list[str]
    expiry_ns: np.ndarray  # int64
    strike: list[str]  # exact decimal strings
    right: list[str]  # "C" | "P"
    multiplier: np.ndarray  # float64
    open_interest: np.ndarray  # float64
    iv: np.ndarray  # float64, NaN = none
    underlying_price: np.ndarray  # float64; NaN: quoted against spot (CBOE), so a spot move
    # alone does not change every row
    gamma: np.ndarray  # float64, NaN = none

    def __len__(self) -> int:
        return len(self.instrument)

    @classmethod
    def from_snapshot(cls, snapshot: ChainSnapshot) -> ChainColumns:
        contracts = snapshot.contracts
        currencies = {c.premium_currency for c in contracts} or {"USD"}
        if len(currencies) > 1:
            raise ValueError(f"snapshot mixes premium currencies {sorted(currencies)}")

        def floats(values: Any) -> np.ndarray:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            venue=snapshot.venue,
            underlying=snapshot.underlying,
            spot=snapshot.spot,
            asof_ns=snapshot.asof_ns,
            premium_currency=currencies.pop(),
            instrument=[c.instrument for c in contracts],
            root=[c.root for c in contracts],
            expiry_ns=np.array([c.expiry_ns for c in contracts], dtype=np.int64),
            strike=[str(c.strike) for c in contracts],
            right=[c.right.value for c in contracts],
            multiplier=floats(c.multiplier for c in contracts),
            open_interest=floats(c.open_interest for c in contracts),
            iv=floats(c.iv for c in contracts),
            underlying_price=floats(
                None if c.underlying_price == c.index_price else c.underlying_price
                for c in contracts
            ),
            gamma=floats(c.gamma for c in contracts),
        )

    def contracts(self, recv_ns: int) -> tuple[OptionContract, ...]:
        """Materialise the rows as OptionContracts (the slow path: one-shot levels, tests)."""
        return tuple(
            OptionContract(
                venue=self.venue,
                underlying=self.underlying,
                instrument=self.instrument[i],
                root=self.root[i],
                expiry_ns=int(self.expiry_ns[i]),
                strike=Decimal(self.strike[i]),
                right=OptionRight(self.right[i]),
                multiplier=float(self.multiplier[i]),
                open_interest=float(self.open_interest[i]),
                iv=_optional(self.iv[i]),
                underlying_price=_optional(self.underlying_price[i]) or self.spot,
                index_price=self.spot,
                ts_event_ns=self.asof_ns,
                ts_recv_ns=recv_ns,
                premium_currency=self.premium_currency,
                gamma=_optional(self.gamma[i]),
            )
            for i in range(len(self.instrument))
        )


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ChainDelta:
    """One part of a polled chain snapshot, as changes against the previous snapshot.

    A connector that polls whole chains (CBOE, CME) sends each snapshot as ``parts``
    records, in order, on the underlying's partition of ``md.options.v1``. Each part upserts
    the contracts in ``columns`` (added or changed since the previous snapshot) and drops
    the instruments in ``removed``. Contracts new to the connector carry every column;
    known contracts carry only ``instrument`` and the value columns (an engine that has
    never seen one of those skips it until the next full snapshot). The snapshot is
    complete after part ``parts - 1``: the engine evaluates there. A ``full`` snapshot
    lists every live contract, with every column (the first one a connector sends, and
    periodic keyframes): at its completion the engine also drops every contract of this
    venue and underlying that none of its parts listed, so a restarted connector never
    leaves vanished contracts behind. Parts are sized to stay under the broker's message
    size limit.
    """

    SCHEMA: ClassVar[str] = "md.chain_delta/1"
    venue: str
    underlying: str
    snapshot_ns: int  # venue time of the snapshot; with venue and underlying, its identity
    part: int  # 0 … parts-1
    parts: int
    full: bool  # every live contract is listed in the parts of this snapshot
    upserts: int  # contracts upserted by all parts of this snapshot together
    spot: float  # spot / index at the snapshot (every contract's index_price)
    premium_currency: str  # "USD"
    removed: list[str]  # instruments gone since the previous snapshot
    # upserted contracts, one column per CHAIN_COLUMNS name: string columns as JSON lists,
    # numeric ones as numpy arrays in memory and packed on the wire (schemas.codec.pack_array)
    columns: dict[str, Any]
    ts_event_ns: int  # = snapshot_ns
    ts_recv_ns: int
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire

    @staticmethod
    def unpack_columns(columns: Any) -> dict[str, Any]:
        """Decoder of ``columns``: packed numeric columns back to arrays."""
        if not isinstance(columns, dict):
            raise ValueError("chain delta columns must be an object")
        return {name: unpack_array(value, name) for name, value in columns.items()}

    @property
    def size(self) -> int:
        """Number of contracts this part upserts."""
        return len(self.columns.get("instrument", ()))

    @property
    def last(self) -> bool:
        return self.part == self.parts - 1
