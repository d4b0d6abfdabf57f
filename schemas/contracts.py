"""The normalised option-contract record: one contract's state as a venue last reported it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from schemas.codec import encode_slotted, fast_frozen_init, record_to_dict, slotted_decoder

OPTION_CONTRACT_SCHEMA = "md.option/1"


class OptionRight(StrEnum):
    CALL = "C"
    PUT = "P"


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class OptionContract:
    """One option contract, normalised.

    Units: prices are per 1 unit of underlying in ``premium_currency``; greeks are per
    1 unit of underlying (gamma per 1 unit of underlying price), so that the dollar GEX
    of a position is ``contracts × multiplier × gamma × S² × 0.01``.
    """

    SCHEMA: ClassVar[str] = OPTION_CONTRACT_SCHEMA
    venue: str  # "deribit", "cboe", "cme"
    underlying: str  # Redis {underlying}: "BTC", "SPX" (SPX and SPXW together), "ES"
    instrument: str  # venue instrument id: "BTC-27DEC24-60000-C", "SPXW240119C04700000"
    root: str  # product root: "BTC", "SPX" (AM-settled), "SPXW" (PM-settled)
    expiry_ns: int  # settlement instant, ns since the epoch, UTC
    strike: Decimal  # exact strike in the underlying's price currency
    right: OptionRight
    multiplier: float  # units of underlying per contract: SPX 100, ES 50, Deribit 1
    open_interest: float  # contracts (Deribit: coins, contract size 1 coin)
    iv: float | None  # implied vol as a fraction (0.65 = 65 %), None if the venue has none
    underlying_price: float  # price the venue quotes this expiry against (Deribit: forward)
    index_price: float | None  # spot/index at that moment; forward basis = underlying_price / index
    ts_event_ns: int  # venue event time, ns since the epoch
    ts_recv_ns: int  # local receive time, ns since the epoch
    bid: float | None = None  # premium per unit of underlying, in premium_currency
    ask: float | None = None
    mark: float | None = None
    premium_currency: str = "USD"  # Deribit inverse options: "BTC" / "ETH"
    gamma: float | None = None  # venue-published gamma per 1 unit of underlying price
    delta: float | None = None
    vega: float | None = None
    theta: float | None = None
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire

    @property
    def is_call(self) -> bool:
        return self.right is OptionRight.CALL

    @property
    def spot(self) -> float:
        """The spot/index price, falling back to the quoted underlying price."""
        return self.index_price if self.index_price is not None else self.underlying_price

    def to_dict(self) -> dict[str, Any]:
        return record_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptionContract:
        """From the JSON object of :meth:`to_dict`; ValueError for unknown or missing keys."""
        return _from_dict(data)


def _strike(value: Any) -> Decimal:
    try:
        return Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        raise ValueError(f"bad strike {value!r}") from None


_from_dict = slotted_decoder(OptionContract, {"strike": _strike, "right": OptionRight})


def encode_contract(contract: OptionContract) -> bytes:
    return encode_slotted(contract)


def decode_contract(raw: bytes | str) -> OptionContract:
    return OptionContract.from_dict(orjson.loads(raw))
