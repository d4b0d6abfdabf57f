"""Normalised market-data records other than option contracts (DESIGN §2.3 topics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import orjson

from schemas.chain import ChainDelta
from schemas.codec import encode_slotted, fast_frozen_init, slotted_decoder
from schemas.contracts import OPTION_CONTRACT_SCHEMA, OptionContract
from schemas.ticks import OptionTicks, decode_option_ticks

# InstrumentState.state values after which an instrument no longer trades.
ENDED_STATES = frozenset({"settled", "closed", "deactivated", "terminated"})


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class UnderlyingTick:
    """A spot, index or forward price of an underlying (``md.underlying.v1``)."""

    SCHEMA: ClassVar[str] = "md.underlying/1"
    venue: str
    underlying: str  # "BTC"
    source: str  # venue name of the series: "btc_usd" (Deribit index), "BTC-PERPETUAL"
    kind: str  # "index" | "forward" | "mark"
    price: float  # USD (the underlying's price currency)
    ts_event_ns: int
    ts_recv_ns: int
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class OptionTrade:
    """One option trade with the taker's side (``md.trades.v1``)."""

    SCHEMA: ClassVar[str] = "md.trade/1"
    venue: str
    underlying: str
    instrument: str
    trade_id: str
    direction: str  # taker side: "buy" | "sell" (taker = customer under the flow model)
    amount: float  # contracts (Deribit: coins)
    price: float  # premium per unit of underlying, in premium_currency
    premium_currency: str
    iv: float | None  # fraction
    index_price: float | None  # USD
    ts_event_ns: int
    ts_recv_ns: int
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class FundingRate:
    """A perpetual's funding rate (``md.funding.v1``); made by
    ``connectors.common.funding.funding_rate`` for every venue."""

    SCHEMA: ClassVar[str] = "md.funding/1"
    venue: str  # "deribit" | "binance" | "bybit" | "okx"
    underlying: str  # the coin: "BTC" for BTCUSDT, BTC-USDT-SWAP, BTC-PERPETUAL
    instrument: str  # the venue's symbol: "BTC-PERPETUAL", "BTCUSDT", "BTC-USDT-SWAP"
    rate: float  # fraction charged per funding interval, as the venue states it
    # hours between the venue's funding settlements: Binance 8/4/1 (fundingInfo), Bybit
    # fundingIntervalHour, OKX nextFundingTime − fundingTime; Deribit: continuous, stated per 8 h
    interval_hours: float
    rate_8h: float  # 8-hour equivalent, fraction: rate × 8 / interval_hours
    annualized: float  # rate_8h × 3 × 365, fraction
    mark_price: float | None  # perpetual's mark price, quote currency (USD, USDT); OKX: None
    index_price: float | None  # quote currency; None where the venue does not send it
    next_funding_ns: int | None  # when ``rate`` is next charged, ns since the epoch; Deribit: None
    ts_event_ns: int  # venue time of the data (OKX pushes without ``ts``: the receive time)
    ts_recv_ns: int
    open_interest_usd: float | None = None  # open interest, USD notional (Bybit); else None
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class VolIndexTick:
    """A volatility index value, e.g. Deribit DVOL (``md.volindex.v1``)."""

    SCHEMA: ClassVar[str] = "md.volindex/1"
    venue: str
    underlying: str
    index: str  # "btc_usd"
    value: float  # annualised vol in percent points (DVOL 55.3 = 55.3 %)
    ts_event_ns: int
    ts_recv_ns: int
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class InstrumentState:
    """A listing lifecycle change (``md.options.v1``): the engine adds or drops the contract."""

    SCHEMA: ClassVar[str] = "md.instrument_state/1"
    venue: str
    underlying: str
    instrument: str
    state: str  # "created" | "started" | "settled" | "deactivated" | "closed" | "terminated"
    ts_event_ns: int
    ts_recv_ns: int
    schema: str = field(default=SCHEMA, repr=False)  # the record type tag on the wire

    @property
    def ended(self) -> bool:
        """True once the instrument no longer trades (settled, closed, delisted)."""
        return self.state in ENDED_STATES


RECORD_TYPES: dict[str, type] = {
    OPTION_CONTRACT_SCHEMA: OptionContract,
    UnderlyingTick.SCHEMA: UnderlyingTick,
    OptionTrade.SCHEMA: OptionTrade,
    FundingRate.SCHEMA: FundingRate,
    VolIndexTick.SCHEMA: VolIndexTick,
    InstrumentState.SCHEMA: InstrumentState,
    ChainDelta.SCHEMA: ChainDelta,
    OptionTicks.SCHEMA: OptionTicks,
}

Record = (
    OptionContract
    | UnderlyingTick
    | OptionTrade
    | FundingRate
    | VolIndexTick
    | InstrumentState
    | ChainDelta
    | OptionTicks
)


_DECODERS = {
    schema: OptionContract.from_dict if cls is OptionContract else slotted_decoder(cls)
    for schema, cls in RECORD_TYPES.items()
    if cls is not OptionTicks
}
_DECODERS[OptionTicks.SCHEMA] = decode_option_ticks
_DECODERS[ChainDelta.SCHEMA] = slotted_decoder(ChainDelta, {"columns": ChainDelta.unpack_columns})


def encode_record(record: Record) -> bytes:
    return encode_slotted(record)


def decode_record(raw: bytes | str) -> Record:
    """Decode any market-data record by its ``schema`` tag; ValueError when unknown or bad."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("record is not a JSON object")
    decode = _DECODERS.get(data.get("schema"))  # type: ignore[arg-type]
    if decode is None:
        raise ValueError(f"unknown record schema {data.get('schema')!r}")
    return decode(data)
