"""Pure parsers for CME settlement JSON: price strings, rows, and whole option chains.

No I/O: callers pass the response bodies (bytes, str or decoded JSON) and a receive time.

Supported shape (field by field, with how it was confirmed, in :mod:`connectors.cme.wire`):
``{"settlements": [row, …], "tradeDate": "MM/DD/YYYY" | "YYYY-MM-DD", "empty": bool, …}``;
futures rows keyed by ``month`` ("DEC 25", "JLY 26"), option rows by ``strike`` and ``type``
("Call"/"Put"), both with string ``open high low last change settle volume openInterest``;
a closing totals row (month / strike ``"Total"``) is skipped. Value strings: thousands
commas, ``"-"``/``""`` for none, ``UNCH`` (change 0), ``A``/``B`` suffixes (ask / bid),
``CAB`` (cabinet), and Treasury fractions (futures 32nds ``110'165``, options 64ths
``1'05``). Anything else raises ParseError naming the document, row and field.

A CME chain snapshot is built from one trade date's documents of one product:

* the futures settlements (``…/FUT``): the price each option series is quoted against
  (``underlying_price``: the settle of the futures month it exercises into) and the spot
  (``index_price``: the settle of the front month, the nearest month with a settle);
* one options settlements document (``…/OOF``) per expiry, with the facts the document
  does not carry itself (:class:`CmeOptionSeries`: the option family's Globex code, the last
  trading day, optionally the futures month it exercises into).

Implied volatility is solved from each settlement premium with Black-76 on the futures
settle (:mod:`engine.core.pricing`; rate from :class:`CmeChainConfig`, 0 by default).
CME settles out-of-the-money options from its volatility skew and in-the-money ones by
put-call parity with a cost of carry ("In-the-money options settlement = (Out-of-the-money
settlement + Intrinsic Value) – Cost of Carry + Early Risk", CME daily option settlement
procedures), so by default (``iv_from="otm"``) both rights of a strike take the volatility
of the out-of-the-money one; an in-the-money premium settled below intrinsic would
otherwise have none. Rows are never dropped for want of a volatility: a row without a
settle, settled at cabinet (below one tick: the premium, hence the volatility, is unknown),
or whose premium no volatility explains keeps ``iv=None`` — its open interest is real, and
the engine skips contracts without volatility when it sums gamma. ``gamma`` is left None:
the engine re-prices gamma from the volatility.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import orjson

from connectors.cme.products import CmeOptionFamily, CmeProduct, Quoting, product
from connectors.cme.values import (
    CmePrice,
    PriceFlag,
    as_text,
    located,
    parse_change,
    parse_count,
    parse_month,
    parse_price,
    parse_strike,
    parse_trade_date,
)
from connectors.common.errors import ParseError
from engine.core.pricing import implied_vol
from schemas.chain import ChainSnapshot
from schemas.config import Config, ConfigError
from schemas.contracts import OptionContract, OptionRight
from schemas.time import NS_PER_YEAR  # DESIGN §2.1: time to expiry / 365 days

VENUE = "cme"
PREMIUM_CURRENCY = "USD"
IV_SOURCES = ("otm", "own")

# ---------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class CmeChainConfig(Config):
    """How a CME chain's implied volatilities are solved."""

    SECTION: ClassVar[str] = "cme"

    rate: float = 0.0  # continuously compounded discount rate for Black-76, per year
    iv_from: str = "otm"  # "otm": each strike's out-of-the-money premium; "own": each row's

    def __post_init__(self) -> None:
        if not (isinstance(self.rate, int | float) and math.isfinite(self.rate)):
            raise ConfigError(f"rate must be a finite number, got {self.rate!r}")
        if not -0.5 < self.rate < 1.0:
            raise ConfigError(f"rate is a fraction per year (0.05 = 5 %), got {self.rate}")
        if self.iv_from not in IV_SOURCES:
            raise ConfigError(
                f"iv_from must be one of {', '.join(IV_SOURCES)}; got {self.iv_from!r}"
            )


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class SettlementValues:
    """The numbers of one settlements row, read."""

    open: CmePrice | None
    high: CmePrice | None
    low: CmePrice | None
    last: CmePrice | None
    change: float | None  # settle − previous settle (0.0 for UNCH)
    settle: CmePrice | None
    volume: float | None  # estimated volume, contracts
    prior_open_interest: float | None  # the PREVIOUS trade date's open interest, contracts


@dataclass(frozen=True, slots=True)
class FuturesSettlement:
    month: date  # first day of the contract month
    values: SettlementValues


@dataclass(frozen=True, slots=True)
class OptionSettlement:
    strike: Decimal
    right: OptionRight
    values: SettlementValues


def _field(row: Mapping[str, Any], key: str) -> Any:
    try:
        return row[key]
    except KeyError:
        raise ParseError(f"missing {key!r}") from None


def _values(row: Mapping[str, Any], quoting: Quoting, cabinet: float | None) -> SettlementValues:
    def price(key: str) -> CmePrice | None:
        return None if key not in row else parse_price(row[key], quoting, what=key, cabinet=cabinet)

    change = row.get("change")
    volume = row.get("volume")
    return SettlementValues(
        open=price("open"),
        high=price("high"),
        low=price("low"),
        last=price("last"),
        change=None if change is None else parse_change(change, quoting),
        settle=parse_price(_field(row, "settle"), quoting, what="settle", cabinet=cabinet),
        volume=None if volume is None else parse_count(volume, what="volume"),
        prior_open_interest=parse_count(_field(row, "openInterest"), what="openInterest"),
    )


def _is_total(label: Any) -> bool:
    return type(label) is str and label.strip().lower() == "total"


def _futures_row(row: Any, cme: CmeProduct) -> FuturesSettlement | None:
    if not isinstance(row, Mapping):
        raise ParseError("is not an object")
    label = _field(row, "month")
    if _is_total(label):
        return None
    return FuturesSettlement(parse_month(label), _values(row, cme.futures_quoting, None))


def parse_futures_row(row: Any, cme: CmeProduct, index: int = 0) -> FuturesSettlement | None:
    """One futures ``settlements[]`` row; None for the closing ``"Total"`` row."""
    return located(f"CME {cme.code} futures settlements[{index}]", _futures_row, row, cme)


_RIGHTS = {"call": OptionRight.CALL, "put": OptionRight.PUT}
_CALL = OptionRight.CALL
_PLAIN = PriceFlag.PLAIN
_RIGHT_LETTER = {OptionRight.CALL: "C", OptionRight.PUT: "P"}


def _option_row(row: Any, cme: CmeProduct) -> OptionSettlement | None:
    if not isinstance(row, Mapping):
        raise ParseError("is not an object")
    strike_text = _field(row, "strike")
    if _is_total(strike_text):
        return None
    right = _RIGHTS.get(as_text(_field(row, "type"), "type").strip().lower())
    if right is None:
        raise ParseError(f"type {row['type']!r} is neither Call nor Put")
    strike = parse_strike(strike_text)
    return OptionSettlement(strike, right, _values(row, cme.option_quoting, cme.cabinet))


def parse_option_row(
    row: Any, cme: CmeProduct, what: str = "CME options settlements", index: int = 0
) -> OptionSettlement | None:
    """One options ``settlements[]`` row; None for the totals row (strike ``"Total"``)."""
    try:
        return _option_row(row, cme)
    except ParseError as exc:  # located only when it fails: this runs for every row
        raise ParseError(f"{what} settlements[{index}] {exc.reason}") from None


# ---------------------------------------------------------------------------- documents


def json_object(doc: Any, what: str, kind: str = "an object") -> Mapping[str, Any]:
    """``doc`` (JSON text, or already decoded) as a mapping; ParseError naming ``what``."""
    if isinstance(doc, bytes | bytearray | memoryview | str):
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"{what}: not valid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ParseError(f"{what}: expected {kind}, got {type(doc).__name__}")
    return doc


def _decode(doc: Any, what: str) -> tuple[date, list[Any]]:
    """(trade date, rows) of a settlements document; ParseError for anything else."""
    doc = json_object(doc, what, "a settlements object")
    trade_date = located(
        f"{what}:", parse_trade_date, located(f"{what}:", _field, doc, "tradeDate")
    )
    rows = doc.get("settlements")
    if doc.get("empty") is True or rows == []:
        raise ParseError(f"{what}: CME has no settlements for trade date {trade_date} (empty)")
    if not isinstance(rows, list):
        raise ParseError(f"{what}: 'settlements' is missing or not a list")
    return trade_date, rows


@dataclass(frozen=True, slots=True)
class FuturesCurve:
    """A futures settlements document, read: one trade date's settle per contract month."""

    product: str
    trade_date: date
    months: tuple[FuturesSettlement, ...]  # as listed, totals row left out
    settles: MappingProxyType[date, float]  # month → settle, months with a settle only

    @property
    def front_month(self) -> date:
        return min(self.settles)

    @property
    def front_settle(self) -> float:
        return self.settles[self.front_month]


def parse_cme_futures(doc: bytes | str | Mapping[str, Any], product_code: str) -> FuturesCurve:
    """Parse a futures settlements document (``…/Settlements/Futures/Settlements/{id}/FUT``)."""
    cme = product(product_code)
    what = f"CME {cme.code} futures settlements"
    trade_date, rows = _decode(doc, what)
    months = [m for i, row in enumerate(rows) if (m := parse_futures_row(row, cme, i)) is not None]
    settles: dict[date, float] = {}
    listed: set[date] = set()
    for m in months:
        if m.month in listed:
            raise ParseError(f"{what}: month {m.month:%b %Y} listed twice")
        listed.add(m.month)
        settle = m.values.settle
        if settle is None:
            continue
        if settle.flag is not PriceFlag.PLAIN or not settle.value > 0:
            raise ParseError(f"{what}: month {m.month:%b %Y} has no usable settle {settle}")
        settles[m.month] = settle.value
    if not settles:
        raise ParseError(f"{what}: no contract month has a settlement price")
    return FuturesCurve(cme.code, trade_date, tuple(months), MappingProxyType(settles))


@dataclass(frozen=True, slots=True)
class CmeOptionSeries:
    """One options settlements document (one expiry) and what the document does not say."""

    document: bytes | str | Mapping[str, Any]  # the ``…/OOF`` response body
    option_code: str  # Globex code of the option family: "ES", "EW3", "E1C", "LO", "OZN"
    last_trading_day: date  # from TradeDateAndExpirations' lastTradeDate (or the calendar)
    # Futures month the series exercises into ("MAR 25" or its first day); None: the
    # product's rule (products.UnderlyingRule).
    underlying_month: date | str | None = None


@dataclass(slots=True)
class _Rows:
    """The option rows of a chain, column-wise, before the volatility solve."""

    series: list[int]
    settled: list[OptionSettlement]
    price: list[float]
    forward: list[float]
    strike: list[float]
    tau: list[float]
    is_call: list[bool]


def _series_month(cme: CmeProduct, series: CmeOptionSeries, family: CmeOptionFamily) -> date:
    month = series.underlying_month
    if month is None:
        return cme.underlying_month(family, series.last_trading_day)
    if isinstance(month, str):
        return parse_month(month, what=f"{series.option_code} underlying_month")
    return month.replace(day=1)


def _check_strikes(strikes: list[float], forward: float, what: str) -> None:
    ratio = float(np.median(strikes)) / forward
    if not 0.1 <= ratio <= 10.0:
        raise ParseError(
            f"{what}: median strike {np.median(strikes):g} against future {forward:g}; "
            "strikes and futures prices are not in the same units"
        )


def parse_cme_settlements(
    options: Iterable[CmeOptionSeries],
    futures_doc: bytes | str | Mapping[str, Any],
    product_code: str,
    recv_ns: int,
    config: CmeChainConfig | None = None,
    rejected: list[str] | None = None,
) -> ChainSnapshot:
    """One trade date's option chain of a CME product from its settlements documents.

    ``options``: one :class:`CmeOptionSeries` per expiry; ``futures_doc``: the product's
    futures settlements of the same trade date. The snapshot's spot is the front month's
    settle and its time the trade date's settlement instant (``CmeProduct.settlement_ns``).
    ParseError for a malformed document, documents of different trade dates, an option
    code the product table does not know, a series whose futures month has no settle, or a
    bad row: one that does not parse, repeats a strike and right, or settles below zero.
    With ``rejected`` (a list), a bad row is left out and its reason appended there
    instead (a bad row is not a bad document).
    """
    config = config or CmeChainConfig()
    cme = product(product_code)
    curve = parse_cme_futures(futures_doc, cme.code)
    asof_ns = cme.settlement_ns(curve.trade_date)
    spot = curve.front_settle
    rows = _Rows([], [], [], [], [], [], [])
    families: list[tuple[CmeOptionSeries, CmeOptionFamily, int, float]] = []
    seen_series: set[tuple[str, date]] = set()
    for series_index, series in enumerate(options):
        family = cme.family(series.option_code)
        what = f"CME {cme.code} {family.code} {series.last_trading_day} option settlements"
        if (family.code, series.last_trading_day) in seen_series:
            raise ParseError(f"{what}: the same series is given twice")
        seen_series.add((family.code, series.last_trading_day))
        trade_date, raw_rows = _decode(series.document, what)
        if trade_date != curve.trade_date:
            raise ParseError(
                f"{what}: trade date {trade_date} differs from the futures' {curve.trade_date}"
            )
        month = _series_month(cme, series, family)
        forward = curve.settles.get(month)
        if forward is None:
            raise ParseError(
                f"{what}: the futures document has no settle for {month:%b %Y}, the month "
                "this series exercises into"
            )
        expiry_ns = family.expiry_ns(series.last_trading_day)
        tau = (expiry_ns - asof_ns) / NS_PER_YEAR
        families.append((series, family, expiry_ns, forward))
        keys: set[tuple[Decimal, OptionRight]] = set()
        first = len(rows.strike)
        for i, raw in enumerate(raw_rows):
            try:
                settled = _checked_option_row(raw, cme, what, i, keys)
            except ParseError as exc:
                if rejected is None:
                    raise
                rejected.append(exc.reason)
                continue
            if settled is None:
                continue
            settle = settled.values.settle
            priced = settle is not None and settle.flag is _PLAIN
            rows.series.append(series_index)
            rows.settled.append(settled)
            rows.price.append(settle.value if priced else math.nan)  # type: ignore[union-attr]
            rows.forward.append(forward)
            rows.strike.append(float(settled.strike))
            rows.tau.append(tau)
            rows.is_call.append(settled.right is _CALL)
        if len(rows.strike) == first:
            raise ParseError(f"{what}: no option rows")
        _check_strikes(rows.strike[first:], forward, what)
    if not rows.strike:
        raise ParseError(f"CME {cme.code}: no option series given")
    ivs = _volatilities(rows, config).tolist()
    prefixes = [
        f"{family.code}-{series.last_trading_day:%Y%m%d}-" for series, family, *_ in families
    ]
    contracts = []
    for i, settled in enumerate(rows.settled):
        series_index = rows.series[i]
        _, family, expiry_ns, forward = families[series_index]
        settle = settled.values.settle
        mark = None if settle is None or math.isnan(settle.value) else settle.value
        iv = ivs[i]
        contracts.append(
            OptionContract(
                venue=VENUE,
                underlying=cme.code,
                instrument=f"{prefixes[series_index]}{settled.strike}-{_RIGHT_LETTER[settled.right]}",
                root=family.code,
                expiry_ns=expiry_ns,
                strike=settled.strike,
                right=settled.right,
                multiplier=cme.multiplier,
                open_interest=settled.values.prior_open_interest or 0.0,
                iv=iv if math.isfinite(iv) else None,
                underlying_price=forward,
                index_price=spot,
                ts_event_ns=asof_ns,
                ts_recv_ns=recv_ns,
                mark=mark,
                premium_currency=PREMIUM_CURRENCY,
            )
        )
    return ChainSnapshot(
        venue=VENUE, underlying=cme.code, spot=spot, asof_ns=asof_ns, contracts=tuple(contracts)
    )


def _checked_option_row(
    raw: Any, cme: CmeProduct, what: str, index: int, keys: set[tuple[Decimal, OptionRight]]
) -> OptionSettlement | None:
    """One option row, parsed and checked: a new strike and right, a settle not below 0."""
    settled = parse_option_row(raw, cme, what, index)
    if settled is None:
        return None
    if (settled.strike, settled.right) in keys:
        raise ParseError(f"{what}: strike {settled.strike} {settled.right} listed twice")
    keys.add((settled.strike, settled.right))
    settle = settled.values.settle
    if settle is not None and settle.value < 0:
        raise ParseError(
            f"{what} settlements[{index}] strike {settled.strike} {settled.right.value}: "
            f"settle={settle.value} (expected >= 0)",
            "out_of_domain",
        )
    return settled


def _volatilities(rows: _Rows, config: CmeChainConfig) -> np.ndarray:
    """Black-76 volatility per row (NaN: none), the OTM side's per strike for "otm"."""
    forward = np.asarray(rows.forward)
    strike = np.asarray(rows.strike)
    own = implied_vol(
        np.asarray(rows.price),
        forward,
        strike,
        np.asarray(rows.tau),
        np.asarray(rows.is_call),
        config.rate,
    )
    if config.iv_from == "own":
        return own
    # The out-of-the-money right of each strike: the call at or above the future.
    strike_of = rows.strike
    series_of = rows.series
    otm = np.flatnonzero((np.asarray(rows.is_call) == (strike >= forward)) & np.isfinite(own))
    otm_iv = {(series_of[i], strike_of[i]): own[i] for i in otm.tolist()}
    return np.array(
        [
            otm_iv.get(key, v)
            for key, v in zip(zip(series_of, strike_of, strict=True), own.tolist(), strict=True)
        ]
    )
