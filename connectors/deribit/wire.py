"""Deribit JSON-RPC wire types (API v2), named after the venue, with units.

Sources: Deribit's OpenAPI spec (``public/get_book_summary_by_currency``,
``public/get_instruments``) and live captures under ``shared/fixtures/protocol_samples``.
Inverse options (BTC, ETH) are quoted in the coin; linear ``*_USDC`` options in USDC.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

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


class DeribitBookSummary(TypedDict):
    """One row of ``public/get_book_summary_by_currency`` (any kind; option fields noted)."""

    instrument_name: str  # "BTC-27DEC24-60000-C", "BTC-27DEC24", "BTC-PERPETUAL"
    base_currency: str  # "BTC"
    quote_currency: (
        str  # options: the premium currency ("BTC", or "USDC" for linear); futures "USD"
    )
    creation_timestamp: int  # ms since the epoch: when the summary was computed
    mark_price: float  # options: coin per 1 coin of underlying; futures: USD
    bid_price: float | None  # best bid, same unit as mark_price; null if none
    ask_price: float | None  # best offer, same unit as mark_price; null if none
    mid_price: float | None  # (bid + ask) / 2; null unless both sides exist
    last: float | None  # last trade price, same unit as mark_price
    high: float | None  # 24 h high
    low: float | None  # 24 h low
    price_change: float | None  # 24 h change, PERCENT
    volume: float  # 24 h volume: coins for options (contract size 1 coin)
    open_interest: float  # options: coins (contract = 1 coin); perpetual/inverse futures: USD
    estimated_delivery_price: float | str  # index price, USD; the string "expired" after expiry
    underlying_price: NotRequired[float]  # options: the per-expiry forward the IV is quoted on, USD
    underlying_index: NotRequired[str]  # options: "BTC-27DEC24" (a future) or "SYN.BTC-27DEC24"
    mark_iv: NotRequired[float]  # options: implied vol of the mark, PERCENT (65.3 = 65.3 %)
    interest_rate: NotRequired[float]  # options: rate used for greeks (fraction, usually 0)
    volume_usd: NotRequired[float]  # 24 h volume, USD
    volume_notional: NotRequired[float]  # futures: 24 h volume, quote currency
    current_funding: NotRequired[float]  # perpetual only: current funding rate (fraction)
    funding_8h: NotRequired[float]  # perpetual only: 8 h funding rate (fraction)


class DeribitTickSizeStep(TypedDict):
    above_price: float  # applies to prices above this (premium currency)
    tick_size: float


class DeribitInstrument(TypedDict):
    """One entry of ``public/get_instruments`` (same shape as ``public/get_instrument``)."""

    instrument_name: str  # "BTC-13JAN23-16000-P"
    instrument_id: int
    kind: Literal["future", "option", "spot", "future_combo", "option_combo"]
    base_currency: str  # "BTC"
    quote_currency: str  # options: premium currency ("BTC"; "USDC" for linear)
    counter_currency: str  # "USD"
    settlement_currency: str  # "BTC", "USDC"
    price_index: str  # "btc_usd"
    is_active: bool
    creation_timestamp: int  # ms since the epoch: listing time
    expiration_timestamp: int  # ms since the epoch: settlement instant (08:00 UTC)
    settlement_period: str  # "day" | "week" | "month" | "perpetual"
    contract_size: float  # underlying units per contract: 1 coin for BTC/ETH options
    min_trade_amount: float  # contracts
    tick_size: float  # premium currency
    tick_size_steps: NotRequired[list[DeribitTickSizeStep]]
    maker_commission: float  # fraction
    taker_commission: float  # fraction
    strike: NotRequired[float]  # options: USD
    option_type: NotRequired[Literal["call", "put"]]  # options only
    instrument_type: NotRequired[str]  # futures: "reversed" (inverse) | "linear"
    max_leverage: NotRequired[int]  # futures only
    max_liquidation_commission: NotRequired[float]  # futures only
    block_trade_commission: NotRequired[float]
    block_trade_min_trade_amount: NotRequired[float]
    block_trade_tick_size: NotRequired[float]


DeribitBookSummaryResponse = DeribitRpcResponse[list[DeribitBookSummary]]
DeribitInstrumentsResponse = DeribitRpcResponse[list[DeribitInstrument]]


# ---------------------------------------------------------------- subscriptions


class DeribitGreeks(TypedDict):
    """Greeks of an option ticker, per 1 coin of underlying, rounded to 5 decimals."""

    delta: float  # per 1 USD of the forward (Black-76 on underlying_price)
    gamma: float  # per 1 USD of the forward, per 1 coin (USD-space Black-Scholes gamma)
    vega: float  # USD per 1 vol point
    theta: float  # USD per day
    rho: float


class DeribitTickerStats(TypedDict):
    volume: float  # 24 h, coins
    price_change: float | None  # 24 h, PERCENT
    low: float | None
    high: float | None
    volume_usd: NotRequired[float]


class DeribitOptionTicker(TypedDict):
    """``ticker.{instrument}.{interval}`` data for an option."""

    instrument_name: str  # "BTC-23FEB24-45000-C"
    timestamp: int  # ms since the epoch
    state: str  # "open" | "closed"
    mark_price: float  # coin per 1 coin of underlying
    mark_iv: float  # PERCENT
    bid_iv: float  # PERCENT (0 when no bid)
    ask_iv: float  # PERCENT
    best_bid_price: float  # coin; 0 when no bid
    best_bid_amount: float  # coins
    best_ask_price: float  # coin; 0 when no offer
    best_ask_amount: float  # coins
    underlying_price: float  # per-expiry forward, USD
    underlying_index: str  # "BTC-23FEB24" or "SYN.BTC-23FEB24"
    index_price: float  # spot index, USD
    estimated_delivery_price: float | str  # USD; the string "expired" after settlement
    open_interest: float  # coins (contract size 1 coin)
    interest_rate: float  # fraction, 0 on Deribit
    greeks: DeribitGreeks
    stats: DeribitTickerStats
    settlement_price: NotRequired[float]  # coin, previous settlement
    last_price: float | None  # coin
    min_price: float  # coin
    max_price: float  # coin


class DeribitPerpetualTicker(TypedDict):
    """``ticker.{CCY}-PERPETUAL.{interval}`` data."""

    instrument_name: str  # "BTC-PERPETUAL"
    timestamp: int  # ms since the epoch
    state: str
    mark_price: float  # USD
    index_price: float  # USD
    estimated_delivery_price: float  # USD
    funding_8h: float  # funding over the last 8 h, fraction (the rate stated per 8 h)
    current_funding: float  # instantaneous funding rate, fraction
    open_interest: float  # USD (inverse perpetual: contracts of 10 USD, reported in USD)
    best_bid_price: float  # USD
    best_ask_price: float  # USD
    last_price: float | None  # USD
    settlement_price: NotRequired[float]
    interest_value: NotRequired[float]
    stats: DeribitTickerStats


class DeribitPriceIndex(TypedDict):
    """``deribit_price_index.{index_name}`` data."""

    index_name: str  # "btc_usd"
    price: float  # USD
    timestamp: int  # ms since the epoch


class DeribitVolatilityIndex(TypedDict):
    """``deribit_volatility_index.{index_name}`` data (DVOL)."""

    index_name: str  # "btc_usd"
    volatility: float  # annualised, PERCENT points
    timestamp: int  # ms since the epoch


class DeribitTrade(TypedDict):
    """One entry of ``trades.{kind}.{currency}.{interval}`` data (a list)."""

    trade_id: str
    trade_seq: int
    timestamp: int  # ms since the epoch
    instrument_name: str
    direction: Literal["buy", "sell"]  # the TAKER's side
    amount: float  # coins for options
    price: float  # coin per 1 coin of underlying
    mark_price: float  # coin
    index_price: float  # USD
    iv: NotRequired[float]  # options: trade implied vol, PERCENT
    tick_direction: int  # 0 plus tick, 1 zero-plus, 2 minus, 3 zero-minus
    contracts: NotRequired[float]
    block_trade_id: NotRequired[str]
    liquidation: NotRequired[str]


class DeribitInstrumentState(TypedDict):
    """``instrument.state.{kind}.{currency}`` data."""

    instrument_name: str
    state: str  # "created" | "started" | "settled" | "closed" | "deactivated" | "terminated"
    timestamp: int  # ms since the epoch


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
