"""Bybit v5 public WebSocket wire types (numbers are decimal strings unless noted)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

import msgspec

from connectors.common.funding import IntervalHours
from schemas.domain import EpochMs, Name, NonNegative, Price, Rate


class _Wire(msgspec.Struct, kw_only=True, gc=False):
    """Base of the validating payload types (numbers arrive as decimal strings: read with
    ``connectors.common.funding.decimal_struct``)."""


class BybitLinearTicker(_Wire, kw_only=True):
    """A merged ``tickers.{symbol}`` ticker, category linear (a delta carries only the
    fields that changed). Fields not read: tickDirection, price24hPcnt, lastPrice,
    prevPrice24h, high/lowPrice24h, prevPrice1h, openInterest (coins), turnover24h,
    volume24h, fundingCap, bid1/ask1 price and size, deliveryTime, basis*, preOpen*, …"""

    symbol: Name  # "BTCUSDT"
    markPrice: Price  # quote currency
    indexPrice: Price | None = None  # quote currency
    openInterestValue: NonNegative | None = None  # quote currency (USD for USDT/USDC)
    fundingIntervalHour: IntervalHours | None = None  # hours, "8" (absent before 2025)
    nextFundingTime: EpochMs | None = None  # ms since the epoch; "" for dated futures
    fundingRate: Rate | None = None  # fraction per funding interval; "" for dated futures


class BybitTickerMessage(_Wire, kw_only=True):
    """A ``tickers.{symbol}`` push (``type`` "snapshot" | "delta", ``data`` a
    :class:`BybitLinearTicker`, ``cs`` cross sequence: read by the normaliser)."""

    topic: str  # "tickers.BTCUSDT"
    ts: EpochMs  # the time the data was generated, ms since the epoch (JSON number)


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
