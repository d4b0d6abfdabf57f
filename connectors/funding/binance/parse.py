"""Pure parsers for Binance USD-M funding: mark-price events, premium index, funding info.

Binance does not put the funding interval in the stream. It is 8 h unless
``GET /fapi/v1/fundingInfo`` lists the symbol with another ``fundingIntervalHours``
(4 h, 1 h); the normaliser keeps that table and applies it to every event. Binance changes
a symbol's interval at a settlement, so the next funding time ``T`` then moves on by the new
interval: seen in a continuous stream, that jump updates the table at once (the periodic
fundingInfo refresh would see it minutes later).
"""

from __future__ import annotations

from typing import Any

from connectors.common.errors import ParseError
from connectors.common.fields import event_time
from connectors.common.funding import (
    MAX_INTERVAL_HOURS,
    IntervalFallback,
    decimal_struct,
    funding_rate,
    with_interval,
)
from connectors.funding.binance.wire import (
    BinanceFundingInfo,
    BinanceMarkPriceUpdate,
    BinancePremiumIndex,
)
from connectors.funding.frames import ACK, ERROR, Control, FundingNormaliser
from schemas.domain import MIN_EPOCH_MS
from schemas.records import FundingRate
from schemas.time import NS_PER_HOUR, NS_PER_MS

VENUE = "binance"
FUNDING_INFO = "GET /fapi/v1/fundingInfo"
PREMIUM_INDEX = "GET /fapi/v1/premiumIndex"
# A jump of T is read as the new interval only when the stream was seen this shortly
# before it: after a gap T may have moved on by several intervals.
SETTLEMENT_GAP_NS = 120 * 1_000_000_000


def _perpetual(rate: float | None, next_ms: int, key: str, symbol: str, where: str) -> float:
    """The rate of a perpetual: a delivery contract has none and next funding time 0."""
    if rate is None or next_ms == 0:
        raise ParseError(f"{where}: no funding rate ({symbol} is not a perpetual)", "unsupported")
    if next_ms < MIN_EPOCH_MS:
        raise ParseError(f"{where}: {key}={next_ms} (expected >= {MIN_EPOCH_MS})", "out_of_domain")
    return rate


def parse_mark_price_update(data: Any, interval_hours: float, recv_ns: int) -> FundingRate:
    """A ``markPriceUpdate`` event → FundingRate; ``interval_hours`` is the symbol's."""
    if not isinstance(data, dict) or data.get("e") != "markPriceUpdate":
        raise ParseError(f"Binance: not a markPriceUpdate event: {str(data)[:80]}")
    event = decimal_struct(data, BinanceMarkPriceUpdate, "Binance markPriceUpdate", "s")
    symbol = event.s
    where = f"Binance markPriceUpdate {symbol}"
    return funding_rate(
        venue=VENUE,
        instrument=symbol,
        rate=_perpetual(event.r, event.T, "T", symbol, where),
        interval_hours=interval_hours,
        mark_price=event.p,
        index_price=event.i,
        next_funding_ns=event.T * NS_PER_MS,
        ts_event_ns=event_time(event.E * NS_PER_MS, recv_ns, where, "E"),
        ts_recv_ns=recv_ns,
    )


def parse_premium_index(entry: Any, interval_hours: float, recv_ns: int) -> FundingRate:
    """One ``GET /fapi/v1/premiumIndex`` object → FundingRate (the seed at start)."""
    index = decimal_struct(entry, BinancePremiumIndex, "Binance premiumIndex", "symbol")
    symbol = index.symbol
    where = f"Binance premiumIndex {symbol}"
    next_ms = index.nextFundingTime
    return funding_rate(
        venue=VENUE,
        instrument=symbol,
        rate=_perpetual(index.lastFundingRate, next_ms, "nextFundingTime", symbol, where),
        interval_hours=interval_hours,
        mark_price=index.markPrice,
        index_price=index.indexPrice,
        next_funding_ns=next_ms * NS_PER_MS,
        ts_event_ns=event_time(index.time * NS_PER_MS, recv_ns, where, "time"),
        ts_recv_ns=recv_ns,
    )


def parse_funding_info(doc: Any) -> dict[str, float]:
    """``GET /fapi/v1/fundingInfo`` → {symbol: fundingIntervalHours} (adjusted symbols only)."""
    if not isinstance(doc, list):
        raise ParseError(f"Binance fundingInfo: expected a list, got {str(doc)[:80]}")
    out: dict[str, float] = {}
    for entry in doc:
        info = decimal_struct(entry, BinanceFundingInfo, "Binance fundingInfo", "symbol")
        out[info.symbol] = info.fundingIntervalHours
    return out


def control_frame(doc: Any) -> Control | None:
    """Replies to WebSocket requests (``{"result": null, "id": 1}``) and errors."""
    if not isinstance(doc, dict) or "stream" in doc or "e" in doc:
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        return Control(ERROR, f"Binance error {error.get('code')}: {error.get('msg')}")
    if "result" in doc and "id" in doc:
        return Control(ACK, f"Binance reply to request {doc['id']}: {doc['result']}")
    if "code" in doc and "msg" in doc:  # the older error shape
        return Control(ERROR, f"Binance error {doc['code']}: {doc['msg']}")
    return None


class BinanceFundingNormaliser(FundingNormaliser):
    """Mark-price events and REST responses → FundingRate, with the funding-interval table."""

    venue = VENUE
    control = staticmethod(control_frame)

    def __init__(self, fallback: IntervalFallback | None = None) -> None:
        super().__init__(fallback)
        self.intervals: dict[str, float] = {}  # fundingInfo, and settlements seen since
        # symbol → (next funding time, venue time of the last record before it)
        self._next_funding: dict[str, tuple[int, int | None]] = {}

    def interval_hours(self, symbol: str) -> float:
        """The venue's stated interval, else the configured fallback (8 h by default)."""
        hours = self.intervals.get(symbol)
        return hours if hours is not None else self.fallback.hours(symbol)

    def records(self, doc: Any, recv_ns: int, request: dict[str, Any] | None) -> list[FundingRate]:
        if request is not None:
            return self._response(doc, recv_ns, request.get("method"))
        if isinstance(doc, dict) and "stream" in doc:
            data = doc.get("data")
        elif isinstance(doc, dict) and "e" in doc:
            data = doc  # a raw (non-combined) stream
        else:
            raise ParseError(f"unrecognised Binance message: {str(doc)[:80]}")
        events = data if isinstance(data, list) else [data]
        hours = self._hours_of
        parsed = [parse_mark_price_update(e, hours(e, "s"), recv_ns) for e in events]
        return [self._follow(record) for record in self.in_order(parsed)]

    def _response(self, doc: Any, recv_ns: int, method: Any) -> list[FundingRate]:
        if method == FUNDING_INFO:
            self.intervals = parse_funding_info(doc)  # replaces: unlisted symbols are 8 h again
            return []
        if method == PREMIUM_INDEX:
            entries = doc if isinstance(doc, list) else [doc]
            hours = self._hours_of
            parsed = [parse_premium_index(e, hours(e, "symbol"), recv_ns) for e in entries]
            return [self._follow(record) for record in self.in_order(parsed)]
        raise ParseError(f"Binance: response to an unknown request {method!r}")

    def _hours_of(self, entry: Any, symbol_key: str) -> float:
        """The interval of the entry's symbol (a malformed entry fails in its parser)."""
        symbol = entry.get(symbol_key) if isinstance(entry, dict) else None
        return (
            self.interval_hours(symbol) if isinstance(symbol, str) else self.fallback.default_hours
        )

    def _follow(self, record: FundingRate) -> FundingRate:
        """The record, with the interval a settlement just showed (see the module doc)."""
        hours = self._settlement_interval(record)
        if hours is None or hours == record.interval_hours:
            return record
        self.intervals[record.instrument] = hours
        return with_interval(record, hours)

    def _settlement_interval(self, record: FundingRate) -> float | None:
        """Hours by which ``T`` moved on, when this record is the first after a settlement."""
        symbol, now, next_ns = record.instrument, record.ts_event_ns, record.next_funding_ns
        assert next_ns is not None  # the parsers require T
        known = self._next_funding.get(symbol)
        before_next = now if now < next_ns else None
        if known is None or next_ns < known[0]:
            self._next_funding[symbol] = (next_ns, before_next)
            return None
        known_next, last_before = known
        if next_ns == known_next:
            if before_next is not None:
                self._next_funding[symbol] = (known_next, before_next)
            return None
        self._next_funding[symbol] = (next_ns, before_next)
        if last_before is None or now - last_before > SETTLEMENT_GAP_NS:
            return None
        hours = (next_ns - known_next) / NS_PER_HOUR
        return hours if hours.is_integer() and 1 <= hours <= MAX_INTERVAL_HOURS else None
