"""Wire types of the CBOE delayed-quotes JSON (``cdn.cboe.com/api/global/delayed_quotes``).

``GET https://cdn.cboe.com/api/global/delayed_quotes/options/_SPX.json`` (indices carry a
leading underscore; ETFs do not: ``.../options/SPY.json``) returns one document holding the
underlying's quote and every listed option of that underlying, delayed ~15 minutes.

Clocks (none of the strings carries an offset):

* ``timestamp`` (top level, ``"YYYY-MM-DD HH:MM:SS"``) is **UTC**. Evidence: a stored
  ``_VIX.json`` stamped ``"2026-05-20 23:02:44"`` whose option rows traded until 12:19
  New York time that day (19:02 EDT is a plausible post-close publication, 23:02 EDT is
  not), and two independent public clients that checked it against the clock ("15:03:29
  stamped at 15:04 UTC"; "feed sends naive UTC").
* ``last_trade_time`` (``"YYYY-MM-DDTHH:MM:SS"``, on the underlying and on each option)
  is **America/New_York wall time**: the stored VIX rows show opening trades at
  09:30:02 / 09:30:36 / 09:30:37, i.e. the New York open. May be null.

The snapshot's event time is taken from ``timestamp``.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class CboeDelayedOptionRow(TypedDict):
    """One element of ``data.options[]``: one listed option series."""

    option: str  # OCC/OSI symbol without padding: "SPXW240119C04700000", "VIX260617C00010500"
    bid: float  # best bid, USD per 1 unit of underlying (×100 per contract); 0 = no bid
    bid_size: float  # contracts at the bid (0 in the delayed feed for most index series)
    ask: float  # best offer, USD per 1 unit of underlying; 0 = no offer
    ask_size: float  # contracts at the offer
    iv: float  # implied volatility as a FRACTION (1.3271 = 132.71 %); 0 = not computed
    open_interest: float  # contracts, as of the previous OCC close
    volume: float  # contracts traded today
    delta: float  # per 1 unit of underlying
    gamma: float  # per 1 unit of underlying price (rounded to 4 decimals by CBOE)
    vega: float  # USD per 1 vol point, per 1 unit of underlying
    theta: float  # USD per calendar day, per 1 unit of underlying
    rho: float  # USD per 1 rate point, per 1 unit of underlying
    theo: float  # CBOE theoretical value, USD per 1 unit of underlying
    change: float  # last_trade_price − prev_day_close, USD
    open: float  # session open, USD (0 if no trade today)
    high: float  # session high, USD
    low: float  # session low, USD
    tick: str  # "up" | "down" | "no_change": direction of the last trade
    last_trade_price: float  # USD per 1 unit of underlying
    last_trade_time: str | None  # "YYYY-MM-DDTHH:MM:SS", America/New_York wall time
    percent_change: float  # percent (−2.63789 = −2.64 %)
    prev_day_close: float  # USD per 1 unit of underlying


class CboeDelayedQuotesData(TypedDict):
    """``data``: the underlying's quote plus the option rows."""

    symbol: str  # underlying as CBOE names it: "_SPX", "SPY"
    options: list[CboeDelayedOptionRow]
    current_price: float  # underlying last/spot, USD
    close: NotRequired[float]  # underlying close of the session, USD
    prev_day_close: NotRequired[float]  # USD
    price_change: NotRequired[float]  # USD
    price_change_percent: NotRequired[float]  # percent
    bid: NotRequired[float]  # underlying bid, USD
    ask: NotRequired[float]  # underlying offer, USD
    bid_size: NotRequired[float]
    ask_size: NotRequired[float]
    open: NotRequired[float]  # USD
    high: NotRequired[float]  # USD
    low: NotRequired[float]  # USD
    volume: NotRequired[float]  # shares (0 for indices)
    iv30: NotRequired[float]  # 30-day implied vol index, PERCENT (18.4 = 18.4 %)
    iv30_change: NotRequired[float]  # vol points
    iv30_change_percent: NotRequired[float]  # percent
    security_type: NotRequired[str]  # "index" | "stock" | ...
    exchange_id: NotRequired[int]
    seqno: NotRequired[int]
    tick: NotRequired[str]  # "up" | "down" | "no_change"
    last_trade_time: NotRequired[str | None]  # "YYYY-MM-DDTHH:MM:SS", America/New_York


class CboeDelayedQuotesDocument(TypedDict):
    """The whole ``.../delayed_quotes/options/<symbol>.json`` document."""

    timestamp: str  # "YYYY-MM-DD HH:MM:SS", UTC: when CBOE generated the document
    data: CboeDelayedQuotesData
    symbol: NotRequired[str]  # the requested symbol, e.g. "_SPX"
