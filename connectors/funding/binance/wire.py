"""Binance USDⓈ-M futures wire types (numbers are decimal strings unless noted).

The payloads the parsers read are ``msgspec.Struct``s whose fields carry the value domain
(``schemas.domain``); fields the parsers do not read are left out.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

import msgspec
from msgspec import Meta

from connectors.common.funding import IntervalHours
from schemas.domain import MAX_EPOCH_MS, EpochMs, Name, Price, Rate

# ms since the epoch, or 0 (a delivery contract: no next funding)
NextFundingMs = Annotated[int, Meta(ge=0, le=MAX_EPOCH_MS)]


class _Wire(msgspec.Struct, kw_only=True, gc=False):
    """Base of the validating payload types (numbers arrive as decimal strings: read with
    ``connectors.common.funding.decimal_struct``)."""


class BinanceMarkPriceUpdate(_Wire, kw_only=True):
    """``<symbol>@markPrice@1s`` event (also each element of ``!markPrice@arr``)."""

    e: str  # "markPriceUpdate"
    E: EpochMs  # event time, ms since the epoch (JSON number)
    s: Name  # symbol, "BTCUSDT"
    p: Price  # mark price, quote currency (USDT)
    i: Price | None = None  # index price, quote currency (absent on COIN-M)
    r: Rate | None = None  # funding rate, fraction per funding interval ("" for delivery)
    T: NextFundingMs  # next funding time, ms (JSON number; 0 for delivery contracts)
    # P: estimated settle price (not read)


class BinanceCombinedStream(TypedDict):
    """The ``/stream?streams=…`` envelope."""

    stream: str  # "btcusdt@markPrice@1s", "!markPrice@arr"
    data: BinanceMarkPriceUpdate | list[BinanceMarkPriceUpdate]


class BinancePremiumIndex(_Wire, kw_only=True):
    """``GET /fapi/v1/premiumIndex?symbol=…`` (a list of these without ``symbol``)."""

    symbol: Name
    markPrice: Price  # quote currency
    indexPrice: Price | None = None  # quote currency
    lastFundingRate: Rate | None = None  # the current interval's rate, fraction per interval
    nextFundingTime: NextFundingMs  # ms since the epoch (JSON number)
    time: EpochMs  # ms since the epoch (JSON number)
    # estimatedSettlePrice, interestRate: not read


class BinanceFundingInfo(_Wire, kw_only=True):
    """One element of ``GET /fapi/v1/fundingInfo``: only symbols Binance has adjusted."""

    symbol: Name
    fundingIntervalHours: IntervalHours  # hours (JSON number): 8, 4 or 1
    # adjustedFundingRateCap / Floor (fraction per interval), disclaimer: not read


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
