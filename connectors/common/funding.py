"""The one funding-rate normalisation every venue shares (Deribit, Binance, Bybit, OKX).

A venue states its rate per funding interval (Binance 8 h, 4 h or 1 h by symbol, Bybit's
``fundingIntervalHour``, OKX ``nextFundingTime − fundingTime``; Deribit's ``funding_8h`` is
stated per 8 h). :func:`funding_rate` turns it into the 8-hour equivalent and an annual
rate, so a 4-hour venue and an 8-hour venue compare directly. Also here: readers for the
string-encoded numbers these venues send, and the coin of a perpetual's symbol.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from connectors.common.errors import ParseError
from schemas.records import FundingRate
from schemas.time import NS_PER_MS

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
    if not math.isfinite(rate):
        raise ParseError(f"{venue} {instrument}: funding rate is not finite: {rate!r}")
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


# ---------------------------------------------------------------------------- field readers


def optional_decimal(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """``obj[key]`` as a float from a decimal string ("0.00038167") or a JSON number.

    None when absent, null or "" (venues send "" for "not applicable"); ParseError when
    it is not a finite number.
    """
    value = obj.get(key)
    if isinstance(value, str):
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            raise ParseError(f"{where}: {key} is not a number: {value!r:.40}") from None
    elif value is None:
        return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ParseError(f"{where}: {key} is not a number: {value!r:.40}")
    if not math.isfinite(number):
        raise ParseError(f"{where}: {key} is not a finite number: {value!r:.40}")
    return number


def required_decimal(obj: Mapping[str, Any], key: str, where: str) -> float:
    """Like :func:`optional_decimal`, but ParseError when absent, null or ""."""
    number = optional_decimal(obj, key, where)
    if number is None:
        raise ParseError(f"{where}: missing {key}")
    return number


def optional_ms_ns(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    """A venue time in ms since the epoch (integer or digit string) as integer ns."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value) * NS_PER_MS
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value * NS_PER_MS
    raise ParseError(f"{where}: {key} is not a time in ms: {value!r:.40}")


def required_ms_ns(obj: Mapping[str, Any], key: str, where: str) -> int:
    ns = optional_ms_ns(obj, key, where)
    if ns is None:
        raise ParseError(f"{where}: missing {key}")
    return ns


def required_text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ParseError(f"{where}: missing {key}")
    return value
