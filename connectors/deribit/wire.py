"""Deribit JSON-RPC wire types (API v2), named after the venue, with units.

Sources: Deribit's OpenAPI spec (``public/get_book_summary_by_currency``,
``public/get_instruments``) and live captures under ``shared/fixtures/protocol_samples``.
Inverse options (BTC, ETH) are quoted in the coin; linear ``*_USDC`` options in USDC.

The payloads the parsers read are ``msgspec.Struct``s whose fields carry the value domain
(``schemas.domain``): converting a decoded payload to its type validates it in the same
step, and a violation names the field and the value. Fields the parsers do not read are
left out (msgspec ignores unknown keys); the comments give the venue's units.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

import msgspec

from schemas.domain import (
    Amount,
    EpochMs,
    ExpiryMs,
    Gamma,
    Greek,
    IvPercent,
    Multiplier,
    Name,
    NonNegative,
    OpenInterest,
    Price,
    Rate,
    VolPercent,
)

ResultT = TypeVar("ResultT")


class DeribitRpcError(TypedDict):
    code: int  # e.g. 10028 too_many_requests, 13009 invalid_token
    message: str
    data: NotRequired[Any]


class DeribitRpcResponse(TypedDict, Generic[ResultT]):
    """A JSON-RPC 2.0 response envelope."""

    jsonrpc: Literal["2.0"]
    id: NotRequired[int]  # the request id (absent in some captures)
    result: NotRequired[ResultT]  # present on success
    error: NotRequired[DeribitRpcError]  # present on failure
    usIn: NotRequired[int]  # server receive time, µs since the epoch
    usOut: NotRequired[int]  # server send time, µs since the epoch
    usDiff: NotRequired[int]  # usOut − usIn, µs
    testnet: NotRequired[bool]


# ``estimated_delivery_price``: the index (USD), or the string "expired" after settlement.
DeliveryPrice = Price | Literal["expired"] | None


class _Wire(msgspec.Struct, kw_only=True, gc=False):
    """Base of the validating payload types."""


class DeribitBookSummary(_Wire, kw_only=True):
    """One row of ``public/get_book_summary_by_currency`` (any kind; option fields noted)."""

    instrument_name: Name  # "BTC-27DEC24-60000-C", "BTC-27DEC24", "BTC-PERPETUAL"
    base_currency: str | None = None  # "BTC"
    quote_currency: str | None = None  # options: premium currency ("BTC"; "USDC" linear)
    creation_timestamp: EpochMs  # ms since the epoch: when the summary was computed
    mark_price: NonNegative | None = None  # options: coin per 1 coin; futures: USD
    bid_price: NonNegative | None = None  # best bid, same unit as mark_price; null if none
    ask_price: NonNegative | None = None  # best offer; null if none
    open_interest: OpenInterest | None = None  # options: coins; perpetual/futures: USD
    estimated_delivery_price: DeliveryPrice = None  # index price, USD
    underlying_price: Price | None = None  # options: the per-expiry forward, USD
    mark_iv: IvPercent | None = None  # options: implied vol of the mark, PERCENT


class DeribitInstrument(_Wire, kw_only=True):
    """One entry of ``public/get_instruments`` (same shape as ``public/get_instrument``)."""

    instrument_name: Name  # "BTC-13JAN23-16000-P"
    kind: str | None = None  # "future" | "option" | "spot" | "future_combo" | ...
    quote_currency: str | None = None  # options: premium currency ("BTC"; "USDC" linear)
    expiration_timestamp: ExpiryMs | None = None  # ms: settlement instant (08:00 UTC)
    contract_size: Multiplier | None = None  # underlying units per contract (1 coin)
    strike: Price | None = None  # options: USD
    option_type: Literal["call", "put"] | None = None  # options only


class DeribitGreeks(_Wire, kw_only=True):
    """Greeks of an option ticker, per 1 coin of underlying, rounded to 5 decimals."""

    delta: Greek | None = None  # per 1 USD of the forward (Black-76 on underlying_price)
    gamma: Gamma | None = None  # per 1 USD of the forward, per 1 coin
    vega: Greek | None = None  # USD per 1 vol point
    theta: Greek | None = None  # USD per day


DeribitBookSummaryResponse = DeribitRpcResponse[list[DeribitBookSummary]]
DeribitInstrumentsResponse = DeribitRpcResponse[list[DeribitInstrument]]


# ---------------------------------------------------------------- subscriptions


class DeribitOptionTicker(_Wire, kw_only=True):
    """``ticker.{instrument}.{interval}`` data for an option."""

    instrument_name: Name  # "BTC-23FEB24-45000-C"
    timestamp: EpochMs  # ms since the epoch
    mark_price: NonNegative | None = None  # coin per 1 coin of underlying
    mark_iv: IvPercent | None = None  # PERCENT
    best_bid_price: NonNegative | None = None  # coin; 0 when no bid
    best_ask_price: NonNegative | None = None  # coin; 0 when no offer
    open_interest: OpenInterest  # coins (contract size 1 coin)
    underlying_price: Price  # per-expiry forward, USD
    index_price: Price | None = None  # spot index, USD
    estimated_delivery_price: DeliveryPrice = None  # USD
    greeks: DeribitGreeks | None = None


class DeribitPerpetualTicker(_Wire, kw_only=True):
    """``ticker.{CCY}-PERPETUAL.{interval}`` data."""

    instrument_name: Name  # "BTC-PERPETUAL"
    timestamp: EpochMs  # ms since the epoch
    mark_price: Price | None = None  # USD
    index_price: Price | None = None  # USD
    funding_8h: Rate  # funding over the last 8 h, fraction (the rate stated per 8 h)
    open_interest: NonNegative | None = None  # USD (inverse); coins (linear *_USDC)


class DeribitPriceIndex(_Wire, kw_only=True):
    """``deribit_price_index.{index_name}`` data."""

    index_name: Name  # "btc_usd"
    price: Price  # USD
    timestamp: EpochMs  # ms since the epoch


class DeribitVolatilityIndex(_Wire, kw_only=True):
    """``deribit_volatility_index.{index_name}`` data (DVOL)."""

    index_name: Name  # "btc_usd"
    volatility: VolPercent  # annualised, PERCENT points
    timestamp: EpochMs  # ms since the epoch


class DeribitTrade(_Wire, kw_only=True):
    """One entry of ``trades.{kind}.{currency}.{interval}`` data (a list)."""

    trade_id: Name | int
    timestamp: EpochMs  # ms since the epoch
    instrument_name: Name
    direction: Literal["buy", "sell"]  # the TAKER's side
    amount: Amount  # coins for options
    price: NonNegative  # coin per 1 coin of underlying
    index_price: Price | None = None  # USD
    iv: IvPercent | None = None  # options: trade implied vol, PERCENT


class DeribitInstrumentState(_Wire, kw_only=True):
    """``instrument.state.{kind}.{currency}`` data."""

    instrument_name: Name
    state: Name  # "created" | "started" | "settled" | "closed" | "deactivated" | ...
    timestamp: EpochMs  # ms since the epoch


class DeribitSubscriptionParams(TypedDict, Generic[ResultT]):
    channel: str
    data: ResultT


class DeribitSubscription(TypedDict, Generic[ResultT]):
    """``{"jsonrpc": "2.0", "method": "subscription", "params": {channel, data}}``."""

    jsonrpc: Literal["2.0"]
    method: Literal["subscription"]
    params: DeribitSubscriptionParams[ResultT]


class DeribitHeartbeatParams(TypedDict):
    type: Literal["heartbeat", "test_request"]  # test_request must be answered (public/test)


class DeribitHeartbeat(TypedDict):
    jsonrpc: Literal["2.0"]
    method: Literal["heartbeat"]
    params: DeribitHeartbeatParams
