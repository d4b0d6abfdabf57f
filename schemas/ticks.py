"""Packed option ticks: consecutive ticker updates of one underlying in one record.

A busy venue sends tens of thousands of option tickers a second. As one Kafka record and
one 24-field object each, decoding them alone costs more than the engine's budget; packed,
a record carries up to a few hundred ticks whose numeric columns decode straight into
arrays. Terms (strike, expiry, right, multiplier) do not travel here: an instrument's first
appearance goes out as a full :class:`~schemas.contracts.OptionContract`, and an engine that
has no slot for an instrument skips (and counts) its ticks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from schemas.codec import fast_frozen_init, slotted_decoder, unpack_array
from schemas.contracts import OptionContract

# Numeric columns of a pack and their wire dtype (schemas.codec.pack_array codes).
FLOAT_COLUMNS = ("iv", "open_interest", "underlying_price", "index_price", "gamma")
TIME_COLUMNS = ("event_ns", "recv_ns")


@fast_frozen_init
@dataclass(frozen=True, slots=True, eq=False)
class OptionTicks:
    """Ticker updates of one underlying's options, column-wise (``md.options.v1``).

    Row ``i`` is one tick: the state of ``instrument[i]`` as the venue reported it at
    ``event_ns[i]``, received at ``recv_ns[i]``. Rows are in receive order and an
    instrument may appear more than once (applied in order). The record's own times are the
    latest of its ticks, so the event-time merge never applies a tick before its time.
    """

    SCHEMA: ClassVar[str] = "md.option_ticks/1"
    venue: str
    underlying: str  # Redis {underlying}: "BTC"
    instrument: list[str]  # venue instrument ids
    iv: np.ndarray  # float64, implied vol as a fraction, NaN = none
    open_interest: np.ndarray  # float64, contracts (Deribit: coins)
    underlying_price: np.ndarray  # float64, the price the venue quotes the expiry against
    index_price: np.ndarray  # float64, spot/index at that moment, NaN = none
    gamma: np.ndarray  # float64, venue gamma per 1 unit of underlying price, NaN = none
    event_ns: np.ndarray  # int64, venue event time of each tick, ns since the epoch
    recv_ns: np.ndarray  # int64, local receive time of each tick
    ts_event_ns: int  # max(event_ns)
    ts_recv_ns: int  # max(recv_ns)
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire

    def __len__(self) -> int:
        return len(self.instrument)

    @classmethod
    def from_contracts(cls, contracts: Sequence[OptionContract]) -> OptionTicks:
        """Pack ticker updates (one venue and underlying, at least one)."""
        if not contracts:
            raise ValueError("a pack holds at least one tick")
        first = contracts[0]
        for c in contracts:
            if c.underlying != first.underlying or c.venue != first.venue:
                raise ValueError("a pack holds one venue's ticks of one underlying")
        nan = math.nan

        def floats(values: Any) -> np.ndarray:
            return np.fromiter(values, np.float64, len(contracts))

        event_ns = np.fromiter((c.ts_event_ns for c in contracts), np.int64, len(contracts))
        recv_ns = np.fromiter((c.ts_recv_ns for c in contracts), np.int64, len(contracts))
        return cls(
            venue=first.venue,
            underlying=first.underlying,
            instrument=[c.instrument for c in contracts],
            iv=floats(nan if c.iv is None else c.iv for c in contracts),
            open_interest=floats(c.open_interest for c in contracts),
            underlying_price=floats(c.underlying_price for c in contracts),
            index_price=floats(nan if c.index_price is None else c.index_price for c in contracts),
            gamma=floats(nan if c.gamma is None else c.gamma for c in contracts),
            event_ns=event_ns,
            recv_ns=recv_ns,
            ts_event_ns=int(event_ns.max()),
            ts_recv_ns=int(recv_ns.max()),
        )


def _instruments(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError("option ticks: instrument must be a list of strings")
    return value


def _column(name: str, code: str) -> Any:
    def convert(value: Any) -> np.ndarray:
        if not (isinstance(value, dict) and set(value) == {code}):
            raise ValueError(f"option ticks: column {name} must be packed as {{'{code}': …}}")
        return unpack_array(value, name)

    return convert


_decode = slotted_decoder(
    OptionTicks,
    {
        "instrument": _instruments,
        **{name: _column(name, "f8") for name in FLOAT_COLUMNS},
        **{name: _column(name, "i8") for name in TIME_COLUMNS},
    },
)


def decode_option_ticks(data: dict[str, Any]) -> OptionTicks:
    """From the decoded JSON object; ValueError for missing, unknown or uneven columns."""
    ticks = _decode(data)
    n = len(ticks.instrument)
    if n == 0:
        raise ValueError("option ticks: empty pack")
    uneven = [name for name in FLOAT_COLUMNS + TIME_COLUMNS if len(getattr(ticks, name)) != n]
    if uneven:
        raise ValueError(f"option ticks: columns {uneven} do not have {n} rows")
    return ticks
