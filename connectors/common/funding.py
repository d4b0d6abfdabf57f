"""The one funding-rate normalisation every venue shares (Deribit, Binance, Bybit, OKX).

A venue states its rate per funding interval (Binance 8 h, 4 h or 1 h by symbol, Bybit's
``fundingIntervalHour``, OKX ``nextFundingTime − fundingTime``; Deribit's ``funding_8h`` is
stated per 8 h). :func:`funding_rate` turns it into the 8-hour equivalent and an annual
rate, so a 4-hour venue and an 8-hour venue compare directly. Also here: readers for the
string-encoded numbers these venues send (:func:`decimal_struct`), and the coin of a
perpetual's symbol.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from connectors.common.errors import ParseError
from connectors.common.fields import validated
from schemas.domain import MAX_ABS_RATE
from schemas.records import FundingRate

WireT = TypeVar("WireT")
MAX_INTERVAL_HOURS = 24
IntervalHours = Annotated[float, Meta(gt=0, le=MAX_INTERVAL_HOURS)]  # a funding interval

HOURS_8 = 8.0
PERIODS_8H_PER_YEAR = 3 * 365  # annualized = rate_8h × 3 × 365

# Quote suffixes of USD-margined symbols, longest first ("BTCUSDT", "BTCPERP", "BTCUSD").
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "PERP", "USD")
_MULTIPLIER = re.compile(r"^10{3,}(?=[A-Z])")  # "1000PEPE" → "PEPE"


def funding_rate(
    *,
    venue: str,
    instrument: str,
    rate: float,
    interval_hours: float,
    ts_event_ns: int,
    ts_recv_ns: int,
    mark_price: float | None = None,
    index_price: float | None = None,
    next_funding_ns: int | None = None,
    open_interest_usd: float | None = None,
    underlying: str | None = None,
) -> FundingRate:
    """A FundingRate with ``rate_8h = rate × 8 / interval_hours`` and ``annualized = rate_8h
    × 3 × 365``. ``rate`` is the fraction charged per ``interval_hours``; ``underlying``
    defaults to the coin of ``instrument``. ParseError unless the interval is positive."""
    if not (math.isfinite(interval_hours) and interval_hours > 0):
        raise ParseError(
            f"{venue} {instrument}: funding interval must be positive hours, got {interval_hours!r}"
        )
    if not (math.isfinite(rate) and abs(rate) <= MAX_ABS_RATE):
        raise ParseError(
            f"{venue} {instrument}: rate={rate!r} (expected a finite number, |rate| <= "
            f"{MAX_ABS_RATE:g})",
            "out_of_domain",
        )
    rate_8h = rate * HOURS_8 / interval_hours
    return FundingRate(
        venue=venue,
        underlying=underlying or underlying_of(instrument),
        instrument=instrument,
        rate=rate,
        interval_hours=float(interval_hours),
        rate_8h=rate_8h,
        annualized=rate_8h * PERIODS_8H_PER_YEAR,
        mark_price=mark_price,
        index_price=index_price,
        next_funding_ns=next_funding_ns,
        ts_event_ns=ts_event_ns,
        ts_recv_ns=ts_recv_ns,
        open_interest_usd=open_interest_usd,
    )


def with_interval(record: FundingRate, interval_hours: float) -> FundingRate:
    """``record`` stated per another funding interval (one a settlement showed later):
    ``rate_8h`` and ``annualized`` follow, as :func:`funding_rate` makes them."""
    derived = ("interval_hours", "rate_8h", "annualized", "schema")
    given = {f.name: getattr(record, f.name) for f in fields(record) if f.name not in derived}
    return funding_rate(**given, interval_hours=interval_hours)


def underlying_of(symbol: str) -> str:
    """The coin of a perpetual: ``BTC`` for ``BTCUSDT``, ``BTC-USDT-SWAP``, ``BTC-PERPETUAL``,
    ``BTC_USDC-PERPETUAL``, ``BTCUSD_PERP``, ``BTCPERP``; ``PEPE`` for ``1000PEPEUSDT``."""
    if "-" in symbol:  # OKX "BTC-USDT-SWAP", Deribit "BTC-PERPETUAL", "BTC_USDC-PERPETUAL"
        return symbol.split("-", 1)[0].split("_", 1)[0]
    head = symbol.split("_", 1)[0]  # Binance COIN-M "BTCUSD_PERP"
    for quote in _QUOTES:
        if head.endswith(quote) and len(head) > len(quote):
            head = head[: -len(quote)]
            break
    return _MULTIPLIER.sub("", head)


@dataclass(frozen=True, slots=True)
class IntervalFallback:
    """The funding interval to assume where the venue does not state it (hours)."""

    default_hours: float = HOURS_8
    per_symbol: tuple[tuple[str, float], ...] = ()  # (symbol, hours)

    def __post_init__(self) -> None:
        for hours in (self.default_hours, *(h for _, h in self.per_symbol)):
            if not (math.isfinite(hours) and hours > 0):
                raise ValueError(f"funding interval must be positive hours, got {hours!r}")

    def hours(self, symbol: str) -> float:
        for name, hours in self.per_symbol:
            if name == symbol:
                return hours
        return self.default_hours


# ---------------------------------------------------------------------------- wire values

# A decimal as the venues write it ("0.00010000", "-2.5e-4", "1710000000000"); anything else
# ("NaN", "inf", " 1", "0x1", "1_0") is left a string, which the wire type then refuses.
_DECIMAL = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"-?\d+", re.ASCII)
_MAX_DIGITS = 64


def decimal_struct(obj: Any, kind: type[WireT], where: str, name_key: str = "") -> WireT:
    """``obj`` (decoded venue JSON whose numbers are decimal strings) as the wire type
    ``kind`` with its domain checked (``connectors.common.fields.validated``).

    Only the numeric fields of ``kind`` are read as numbers: a decimal string becomes the
    number it writes (a digit string an integer), "" means "not applicable" (as absent), any
    other string stays a string and is refused naming the field and the value.
    """
    if not isinstance(obj, dict):
        raise ParseError(f"{where}: not an object: {str(obj)[:80]}", "wrong_type")
    numeric = _numeric_fields(kind)
    prepared = dict(obj)
    for key in numeric.intersection(obj):
        value = obj[key]
        if type(value) is not str:
            continue
        if not value:
            del prepared[key]
        elif len(value) > _MAX_DIGITS:
            continue  # no venue number is this long: refused as the string it is
        elif _INTEGER.fullmatch(value):
            prepared[key] = int(value)
        elif _DECIMAL.fullmatch(value):
            prepared[key] = float(value)
    return validated(prepared, kind, where, name_key)


@functools.cache
def _numeric_fields(kind: type) -> frozenset[str]:
    """The wire names of the fields of struct ``kind`` that hold numbers."""
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return frozenset(f.encode_name for f in info.fields if _is_number(f.type))


def _is_number(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_is_number(member) for member in t.types)
    return isinstance(t, msgspec.inspect.FloatType | msgspec.inspect.IntType)
