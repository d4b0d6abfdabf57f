"""Binance USDⓈ-M futures wire types (numbers are decimal strings unless noted)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class BinanceMarkPriceUpdate(TypedDict):
    """``<symbol>@markPrice@1s`` event (also each element of ``!markPrice@arr``)."""

    e: Literal["markPriceUpdate"]
    E: int  # event time, ms since the epoch (JSON number)
    s: str  # symbol, "BTCUSDT"
    p: str  # mark price, quote currency (USDT)
    i: NotRequired[str]  # index price, quote currency (absent on COIN-M)
    P: str  # estimated settle price, quote currency
    r: str  # funding rate, fraction per funding interval ("" for delivery contracts)
    T: int  # next funding time, ms since the epoch (JSON number; 0 for delivery contracts)


class BinanceCombinedStream(TypedDict):
    """The ``/stream?streams=…`` envelope."""

    stream: str  # "btcusdt@markPrice@1s", "!markPrice@arr"
    data: BinanceMarkPriceUpdate | list[BinanceMarkPriceUpdate]


class BinancePremiumIndex(TypedDict):
    """``GET /fapi/v1/premiumIndex?symbol=…`` (a list of these without ``symbol``)."""

    symbol: str
    markPrice: str  # quote currency
    indexPrice: str  # quote currency
    estimatedSettlePrice: str  # quote currency
    lastFundingRate: str  # the current interval's rate, fraction per funding interval
    interestRate: str  # fraction per funding interval
    nextFundingTime: int  # ms since the epoch (JSON number)
    time: int  # ms since the epoch (JSON number)


class BinanceFundingInfo(TypedDict):
    """One element of ``GET /fapi/v1/fundingInfo``: only symbols Binance has adjusted."""

    symbol: str
    adjustedFundingRateCap: str  # fraction per funding interval
    adjustedFundingRateFloor: str  # fraction per funding interval
    fundingIntervalHours: int  # hours (JSON number): 8, 4 or 1
    disclaimer: bool


class BinanceMethodResult(TypedDict):
    """Reply to a ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` request."""

    result: list[str] | None  # null for SUBSCRIBE
    id: int


class BinanceErrorDetail(TypedDict):
    code: int
    msg: str


class BinanceMethodError(TypedDict):
    """Error reply to a WebSocket request: ``{"error": {"code", "msg"}, "id"}``."""

    error: BinanceErrorDetail
    id: int | None


class BinanceRestError(TypedDict):
    """REST error body (HTTP 4xx): ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int
    msg: str
