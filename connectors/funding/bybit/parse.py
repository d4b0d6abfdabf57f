"""Pure parsers for Bybit v5 linear tickers: delta merging and FundingRate records.

``tickers.{symbol}`` sends a full ``snapshot`` on subscribe and then ``delta`` pushes that
carry only the fields that changed, so a record is made from the merged ticker, never from
a delta alone. ``fundingIntervalHour`` is the symbol's own interval (8, 4, 2 or 1 h).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.common.errors import ParseError
from connectors.common.fields import event_time
from connectors.common.funding import IntervalFallback, decimal_struct, funding_rate
from connectors.funding.bybit.wire import BybitLinearTicker, BybitTickerMessage
from connectors.funding.frames import ACK, ERROR, PONG, Control, FundingNormaliser
from schemas.records import FundingRate
from schemas.time import NS_PER_MS

VENUE = "bybit"
TOPIC_PREFIX = "tickers."
# A change in any of these is published at once; other deltas (mark price, open interest)
# at most every min_emit_interval_ms of venue time.
FUNDING_FIELDS = ("fundingRate", "nextFundingTime", "fundingIntervalHour")


def merge_ticker(previous: Mapping[str, Any] | None, kind: Any, data: Any) -> dict[str, Any]:
    """The ticker after one push: a snapshot replaces it, a delta overwrites its fields."""
    if not isinstance(data, dict):
        raise ParseError(f"Bybit ticker: data is not an object: {str(data)[:80]}")
    if kind == "snapshot":
        return dict(data)
    if kind == "delta":
        if previous is None:
            raise ParseError(f"Bybit ticker {data.get('symbol')}: delta before any snapshot")
        return {**previous, **data}
    raise ParseError(f"Bybit ticker: type must be snapshot or delta, got {kind!r}")


def parse_ticker(
    ticker: Mapping[str, Any], ts_event_ns: int, recv_ns: int, fallback_hours: float
) -> FundingRate:
    """A merged linear ticker → FundingRate (interval: ``fundingIntervalHour`` when given)."""
    data = decimal_struct(ticker, BybitLinearTicker, "Bybit ticker", "symbol")
    where = f"Bybit ticker {data.symbol}"
    if data.fundingRate is None:
        raise ParseError(f"{where}: no fundingRate (not a perpetual)", "unsupported")
    hours = data.fundingIntervalHour
    next_ms = data.nextFundingTime
    return funding_rate(
        venue=VENUE,
        instrument=data.symbol,
        rate=data.fundingRate,
        interval_hours=hours if hours is not None else fallback_hours,
        mark_price=data.markPrice,
        index_price=data.indexPrice,
        next_funding_ns=next_ms * NS_PER_MS if next_ms is not None else None,
        ts_event_ns=event_time(ts_event_ns, recv_ns, where, "ts"),
        ts_recv_ns=recv_ns,
        # linear contracts settle in USDT/USDC: the value is USD notional
        open_interest_usd=data.openInterestValue,
    )


def control_frame(doc: Any) -> Control | None:
    """Subscribe acks, pongs (linear and option shapes) and ``success: false`` replies."""
    if not isinstance(doc, dict) or "topic" in doc:
        return None
    op = doc.get("op")
    if "success" in doc:
        message = doc.get("ret_msg")
        if doc["success"] is not True:
            return Control(ERROR, f"Bybit {op} failed: {message} (req_id {doc.get('req_id')})")
        if op == "ping" or message == "pong":
            return Control(PONG, f"Bybit pong {doc.get('conn_id')}")
        return Control(ACK, f"Bybit {op}: {message} (req_id {doc.get('req_id')})")
    if op == "pong":
        return Control(PONG, f"Bybit pong {doc.get('args')}")
    return None


class BybitFundingNormaliser(FundingNormaliser):
    """Keeps each symbol's merged ticker; emits a record per snapshot, per funding change,
    and otherwise at most every ``min_emit_interval_ms`` of venue time (0: every push)."""

    venue = VENUE
    control = staticmethod(control_frame)

    def __init__(
        self, fallback: IntervalFallback | None = None, min_emit_interval_ms: int = 1000
    ) -> None:
        super().__init__(fallback)
        self.min_emit_interval_ns = min_emit_interval_ms * 1_000_000
        self.tickers: dict[str, dict[str, Any]] = {}
        self._emitted_ns: dict[str, int] = {}

    def records(self, doc: Any, recv_ns: int, request: dict[str, Any] | None) -> list[FundingRate]:
        topic = doc.get("topic") if isinstance(doc, dict) else None
        if request is not None or not isinstance(topic, str):
            raise ParseError(f"unrecognised Bybit message: {str(doc)[:80]}")
        if not topic.startswith(TOPIC_PREFIX):
            raise ParseError(f"unsupported Bybit topic {topic}")
        symbol = topic[len(TOPIC_PREFIX) :]
        data, kind = doc.get("data"), doc.get("type")
        if isinstance(data, dict) and data.get("symbol", symbol) != symbol:
            raise ParseError(f"Bybit {topic}: data is for {data.get('symbol')}")
        ts_ns = decimal_struct(doc, BybitTickerMessage, f"Bybit {topic}").ts * NS_PER_MS
        previous = self.tickers.get(symbol)
        merged = merge_ticker(previous, kind, data)
        merged.setdefault("symbol", symbol)
        record = parse_ticker(merged, ts_ns, recv_ns, self.fallback.hours(symbol))
        self.in_order([record])
        self.tickers[symbol] = merged  # only a ticker that parses replaces the last one
        if not self._due(symbol, kind, previous, merged, ts_ns):
            return []
        self._emitted_ns[symbol] = ts_ns
        return [record]

    def _due(
        self,
        symbol: str,
        kind: Any,
        previous: Mapping[str, Any] | None,
        merged: Mapping[str, Any],
        ts_ns: int,
    ) -> bool:
        if kind == "snapshot" or previous is None:
            return True
        if any(previous.get(f) != merged.get(f) for f in FUNDING_FIELDS):
            return True
        last = self._emitted_ns.get(symbol)
        return last is None or ts_ns - last >= self.min_emit_interval_ns
