"""CME settlement documents, one at a time → ``ChainDelta`` records on md.options.v1.

A CME chain snapshot is one trade date's futures settlements plus one options settlements
document per expiry, but the poller (or file watch) delivers bodies one by one. The
normaliser assembles them per product:

* every message says what it is in its ``request`` (captured with the body, so a replay
  takes this same path): ``{"product": "ES", "document": "futures" | "options",
  "option_code", "last_trading_day" (ISO), "underlying_month" (optional), "expected"
  (every configured series, ``"CODE:YYYY-MM-DD"``), "rate", "iv_from"}`` — see
  :func:`series_request` / :func:`futures_request`;
* it keeps the latest futures document and the latest document of each series;
* a body for a trade date older than the latest seen is ignored (``counts
  ["older_trade_date"]``), as is a series whose last trading day is before it
  (``"expired_series"``);
* the chain is built when the set of the latest trade date is complete: the futures
  document and every expected series that has not expired are at that date (until then
  ``"waiting"``). Each later body of that date (a corrected or final run) rebuilds it; the
  differ sends only what changed. Waiting for the whole set means a day rollover never
  publishes a half chain (which would remove the series not yet polled).

A body that does not parse raises ParseError (the stage dead-letters it) and is not kept;
so does a complete set that does not build, whose triggering document is then dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from connectors.cme.parse import (
    CmeChainConfig,
    CmeOptionSeries,
    json_object,
    parse_cme_futures,
    parse_cme_settlements,
    parse_option_row,
)
from connectors.cme.products import product
from connectors.cme.values import parse_trade_date
from connectors.common.errors import ParseError
from connectors.common.ingest import OPTIONS, RejectedRows, Routed
from connectors.common.snapshots import SnapshotDiffer, SnapshotFramingConfig
from schemas.chain import ChainColumns

FUTURES_DOCUMENT = "futures"
OPTIONS_DOCUMENT = "options"


def series_key(option_code: str, last_trading_day: date) -> str:
    """How a series is named in ``expected``: ``"EW3:2025-03-21"``."""
    return f"{option_code}:{last_trading_day.isoformat()}"


def futures_request(
    product_code: str, expected: Iterable[str], chain: CmeChainConfig | None = None
) -> dict[str, Any]:
    """The ``request`` that goes with a futures settlements body."""
    return _request(product_code, FUTURES_DOCUMENT, expected, chain)


def series_request(
    product_code: str,
    option_code: str,
    last_trading_day: date,
    expected: Iterable[str],
    chain: CmeChainConfig | None = None,
    underlying_month: str | None = None,
) -> dict[str, Any]:
    """The ``request`` that goes with one series' options settlements body."""
    out = _request(product_code, OPTIONS_DOCUMENT, expected, chain)
    out["option_code"] = option_code
    out["last_trading_day"] = last_trading_day.isoformat()
    if underlying_month is not None:
        out["underlying_month"] = underlying_month
    return out


def _request(
    product_code: str, document: str, expected: Iterable[str], chain: CmeChainConfig | None
) -> dict[str, Any]:
    chain = chain or CmeChainConfig()
    return {
        "product": product_code,
        "document": document,
        "expected": sorted(expected),
        "rate": chain.rate,
        "iv_from": chain.iv_from,
    }


@dataclass(slots=True)
class _Series:
    option_code: str
    last_trading_day: date
    underlying_month: str | None
    trade_date: date
    document: Mapping[str, Any]


@dataclass(slots=True)
class _Product:
    futures: tuple[date, Mapping[str, Any]] | None = None
    series: dict[str, _Series] = field(default_factory=dict)
    latest: date | None = None  # the newest trade date seen in any accepted body


class CmeNormaliser:
    """Assemble each product's settlement documents and frame each complete chain."""

    def __init__(self, framing: SnapshotFramingConfig | None = None) -> None:
        self.differ = SnapshotDiffer(framing or SnapshotFramingConfig())
        self.counts: Counter[str] = Counter()
        self._products: dict[str, _Product] = {}

    def normalise(
        self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None
    ) -> list[Routed]:
        if not isinstance(request, Mapping):
            raise ParseError("CME body without its request (product, document, series)")
        code = _string(request, "product")
        product(code)  # ParseError for an unknown product
        chain = _chain_config(request)
        decoded = json_object(doc, f"CME {code} settlements")
        state = self._products.setdefault(code, _Product())
        kind = _string(request, "document")
        if kind == FUTURES_DOCUMENT:
            trade_date = parse_cme_futures(decoded, code).trade_date
            key, previous = None, state.futures
            if self._older(state, trade_date):
                return []
            state.futures = (trade_date, decoded)
        elif kind == OPTIONS_DOCUMENT:
            series = _series(request, decoded, code)
            trade_date = series.trade_date
            if self._older(state, trade_date):
                return []
            if series.last_trading_day < trade_date:
                self.counts["expired_series"] += 1
                return []
            key = series_key(series.option_code, series.last_trading_day)
            previous = state.series.get(key)
            state.series[key] = series
        else:
            raise ParseError(f"CME request document {kind!r} is neither futures nor options")
        state.latest = max(trade_date, state.latest or trade_date)
        complete = self._complete_set(state, _expected(request))
        if complete is None:
            self.counts["waiting"] += 1
            return []
        rejected: list[str] = []
        try:
            snapshot = parse_cme_settlements(
                complete,
                state.futures[1],  # type: ignore[index]
                code,
                recv_ns,
                chain,
                rejected,
            )
            columns = ChainColumns.from_snapshot(snapshot)
        except (ParseError, ValueError) as exc:
            self._restore(state, key, previous)
            reason = exc.reason if isinstance(exc, ParseError) else str(exc)
            raise ParseError(f"CME {code} chain of {trade_date}: {reason}") from None
        self.counts["snapshots"] += 1
        out: list[Routed | RejectedRows] = [
            Routed(OPTIONS, part) for part in self.differ.frame(columns, recv_ns)
        ]
        if rejected:
            out.append(RejectedRows(tuple(rejected), len(snapshot.contracts)))
        return out

    def _older(self, state: _Product, trade_date: date) -> bool:
        if state.latest is not None and trade_date < state.latest:
            self.counts["older_trade_date"] += 1
            return True
        return False

    @staticmethod
    def _complete_set(
        state: _Product, expected: list[tuple[str, date]]
    ) -> list[CmeOptionSeries] | None:
        """The series of the latest trade date when the set is complete, else None."""
        latest = state.latest
        if state.futures is None or state.futures[0] != latest:
            return None
        out = []
        for code, last_trading_day in expected:
            if last_trading_day < latest:  # type: ignore[operator]
                continue  # expired: it has no settlements for this date
            series = state.series.get(series_key(code, last_trading_day))
            if series is None or series.trade_date != latest:
                return None
            out.append(
                CmeOptionSeries(series.document, code, last_trading_day, series.underlying_month)
            )
        return out or None

    @staticmethod
    def _restore(state: _Product, key: str | None, previous: Any) -> None:
        if key is None:
            state.futures = previous
        elif previous is None:
            state.series.pop(key, None)
        else:
            state.series[key] = previous


# ---------------------------------------------------------------------------- reading


def _string(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ParseError(f"CME request has no {key!r}: {request!r}")
    return value


def _iso_date(value: Any, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ParseError(f"CME request {what} {value!r} is not a YYYY-MM-DD date") from None


def _chain_config(request: Mapping[str, Any]) -> CmeChainConfig:
    try:
        return CmeChainConfig(rate=request.get("rate", 0.0), iv_from=request.get("iv_from", "otm"))
    except ValueError as exc:
        raise ParseError(f"CME request chain settings: {exc}") from None


def _expected(request: Mapping[str, Any]) -> list[tuple[str, date]]:
    names = request.get("expected")
    if not isinstance(names, list) or not names:
        raise ParseError("CME request has no 'expected' series list")
    out = []
    for name in names:
        code, sep, day = str(name).partition(":")
        if not sep or not code:
            raise ParseError(f"CME expected series {name!r} is not CODE:YYYY-MM-DD")
        out.append((code, _iso_date(day, "expected series")))
    return out


def _series(request: Mapping[str, Any], doc: Mapping[str, Any], code: str) -> _Series:
    """Check one options document row by row (so a bad one is never kept)."""
    cme = product(code)
    option_code = _string(request, "option_code")
    family = cme.family(option_code)
    last_trading_day = _iso_date(request.get("last_trading_day"), "last_trading_day")
    month = request.get("underlying_month")
    if month is not None and not isinstance(month, str):
        raise ParseError(f"CME request underlying_month {month!r} is not a month like 'JUN 25'")
    what = f"CME {code} {family.code} {last_trading_day} option settlements"
    if "tradeDate" not in doc:
        raise ParseError(f"{what}: missing 'tradeDate'")
    trade_date = parse_trade_date(doc["tradeDate"])
    rows = doc.get("settlements")
    if doc.get("empty") is True or rows == []:
        raise ParseError(f"{what}: CME has no settlements for trade date {trade_date} (empty)")
    if not isinstance(rows, list):
        raise ParseError(f"{what}: 'settlements' is missing or not a list")
    for i, row in enumerate(rows):
        parse_option_row(row, cme, what, i)
    return _Series(option_code, last_trading_day, month, trade_date, doc)
