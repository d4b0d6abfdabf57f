"""Bybit v5 public WebSocket wire types (numbers are decimal strings unless noted)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class BybitLinearTicker(TypedDict, total=False):
    """``tickers.{symbol}`` data, category linear. A delta carries only changed fields."""

    symbol: str  # "BTCUSDT"
    tickDirection: str  # "PlusTick" | "ZeroPlusTick" | "MinusTick" | "ZeroMinusTick"
    price24hPcnt: str  # fraction
    lastPrice: str  # quote currency (USDT)
    prevPrice24h: str
    highPrice24h: str
    lowPrice24h: str
    prevPrice1h: str
    markPrice: str  # quote currency
    indexPrice: str  # quote currency
    openInterest: str  # contracts (coins)
    openInterestValue: str  # open interest, quote currency (USD notional for USDT/USDC)
    turnover24h: str  # quote currency
    volume24h: str  # coins
    fundingIntervalHour: str  # hours between fundings, "8" (absent before 2025)
    fundingCap: str  # fraction per funding interval
    nextFundingTime: str  # ms since the epoch; "" for dated futures
    fundingRate: str  # fraction per funding interval; "" for dated futures
    bid1Price: str
    bid1Size: str
    ask1Price: str
    ask1Size: str
    deliveryTime: str  # dated futures only, ISO 8601
    basisRate: str
    deliveryFeeRate: str
    predictedDeliveryPrice: str
    basis: str
    basisRateYear: str
    preOpenPrice: str
    preQty: str
    curPreListingPhase: str


class BybitTickerMessage(TypedDict):
    """A ``tickers.{symbol}`` push."""

    topic: str  # "tickers.BTCUSDT"
    type: Literal["snapshot", "delta"]
    data: BybitLinearTicker
    cs: int  # cross sequence (JSON number)
    ts: int  # the time the data was generated, ms since the epoch (JSON number)


class BybitOpResponse(TypedDict):
    """Reply to an ``op`` request: subscribe ack (``ret_msg`` "subscribe"), linear pong
    (``ret_msg`` "pong", ``op`` "ping"), or a failure (``success`` false)."""

    success: bool
    ret_msg: str
    conn_id: str
    req_id: NotRequired[str]
    op: str  # "subscribe" | "unsubscribe" | "ping"


class BybitOptionPong(TypedDict):
    """The pong of the option (and spot) streams: ``{"op": "pong", "args": ["<ms>"]}``."""

    op: Literal["pong"]
    args: list[str]  # server time, ms since the epoch
