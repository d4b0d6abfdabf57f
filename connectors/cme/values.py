"""CME settlement-page values: prices, changes, counts, strikes, months and trade dates.

Value strings: thousands commas, ``"-"``/``""`` for none, ``UNCH`` (change 0), ``A``/``B``
suffixes (ask / bid), ``CAB`` (cabinet), and Treasury fractions (futures 32nds ``110'165``,
options 64ths ``1'05``). Anything else raises ParseError naming the field; the row and
document parsers (:mod:`connectors.cme.parse`) prefix where it was.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from typing import Any

from connectors.cme.products import Quoting
from connectors.common.errors import ParseError


class PriceFlag(StrEnum):
    """What a settlement-page price is, from its suffix."""

    PLAIN = ""  # a trade or a settlement
    BID = "B"  # "B" suffix: a bid (high above the highest trade, or a bid last)
    ASK = "A"  # "A" suffix: an ask (low below the lowest trade, or an ask last)
    CABINET = "CAB"  # cabinet: settled below one tick


@dataclass(frozen=True, slots=True)
class CmePrice:
    value: float  # per unit of underlying; the product's cabinet price (NaN if unknown) for CAB
    flag: PriceFlag = PriceFlag.PLAIN


_NONE = frozenset(("", "-"))
_DECIMAL_RE = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?", re.ASCII)
# whole ' units-of-1/32-or-1/64 [quarter digit 0/2/5/7 | .fraction]: "110'165", "0'10.5"
_FRACTION_RE = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)?'(\d{2})(?:([0257])|\.(\d+))?", re.ASCII)
_QUARTER = {"0": 0.0, "2": 0.25, "5": 0.5, "7": 0.75}  # "110'162" = 110 + 16.25/32
_COUNT_RE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+", re.ASCII)


def as_text(value: Any, what: str) -> str:
    """``value`` if it is a str; ParseError naming ``what`` otherwise."""
    if type(value) is not str:
        raise ParseError(f"{what} is not a string: {value!r}")
    return value


def located(what: str, parse: Any, *args: Any) -> Any:
    """``parse(*args)``, its ParseError prefixed with ``what`` (the cached parsers below
    raise without it, so their cache key stays the text alone)."""
    try:
        return parse(*args)
    except ParseError as exc:
        raise ParseError(f"{what} {exc.reason}") from None


def _unsigned(text: str, quoting: Quoting, original: str) -> float:
    if "'" in text:
        if quoting is Quoting.DECIMAL:
            raise ParseError(f"{original!r}: fractional price in a decimal-quoted product")
        match = _FRACTION_RE.fullmatch(text)
        if match is None:
            raise ParseError(
                f"{original!r}: expected WHOLE'NN[2|5|7] in {quoting.value} "
                "(e.g. 110'165 = 110 16.5/32)"
            )
        whole, units, quarter, fraction = match.groups()
        ticks = int(units) + (_QUARTER[quarter] if quarter else 0.0)
        if fraction:
            ticks += float("0." + fraction)
        if ticks >= quoting.denominator:
            raise ParseError(f"{original!r}: {units} is not below {quoting.denominator}")
        return int((whole or "0").replace(",", "")) + ticks / quoting.denominator
    match = _DECIMAL_RE.fullmatch(text)
    if match is None or not (match.group(1) or match.group(2)):
        raise ParseError(f"{original!r} is not a price")
    return float(text.replace(",", ""))


@lru_cache(maxsize=65_536)
def _price(value: str, quoting: Quoting, cabinet: float | None) -> CmePrice | None:
    text = value.strip()
    if text in _NONE:
        return None
    if text.upper() == "CAB":
        return CmePrice(math.nan if cabinet is None else cabinet, PriceFlag.CABINET)
    flag = PriceFlag.PLAIN
    if text[-1] in "AB":
        flag = PriceFlag(text[-1])
        text = text[:-1]
    sign = 1.0
    if text and text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    return CmePrice(sign * _unsigned(text, quoting, value), flag)


def parse_price(
    value: Any, quoting: Quoting, *, what: str = "price", cabinet: float | None = None
) -> CmePrice | None:
    """A settlement-page price: ``"5,012.25"``, ``"110'165"``, ``"2.15B"``, ``"CAB"``.

    None for ``"-"`` or ``""`` (no price). The ``A``/``B`` suffixes set the flag; ``CAB``
    gives the product's cabinet price (NaN when it has none). Fractional prices (32nds,
    64ths) are accepted only for products quoted that way; plain decimals are accepted for
    every product. ParseError for anything else, naming ``what``.
    """
    return located(what, _price, as_text(value, what), quoting, cabinet)


@lru_cache(maxsize=4096)
def _change(value: str, quoting: Quoting) -> float | None:
    if value.strip().upper() == "UNCH":
        return 0.0
    price = _price(value, quoting, None)
    if price is None:
        return None
    if price.flag is not PriceFlag.PLAIN:
        raise ParseError(f"{value!r}: a change carries no bid/ask/cabinet flag")
    return price.value


def parse_change(value: Any, quoting: Quoting, *, what: str = "change") -> float | None:
    """The Change column: signed price difference, ``"UNCH"`` = 0.0, ``"-"`` = None."""
    return located(what, _change, as_text(value, what), quoting)


@lru_cache(maxsize=65_536)
def _count(value: str) -> float | None:
    text = value.strip()
    if text in _NONE:
        return None
    if _COUNT_RE.fullmatch(text) is None:
        raise ParseError(f"{value!r} is not a count of contracts")
    return float(text.replace(",", ""))


def parse_count(value: Any, *, what: str = "count") -> float | None:
    """A contract count with thousands separators (``"1,234"``); None for ``"-"``/``""``."""
    return located(what, _count, as_text(value, what))


@lru_cache(maxsize=65_536)
def _strike(value: str) -> Decimal:
    text = value.strip()
    if not text or _DECIMAL_RE.fullmatch(text) is None:
        raise ParseError(f"{value!r} is not a number")
    try:
        strike = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise ParseError(f"{value!r} is not a number") from None
    if not strike > 0:
        raise ParseError(f"{value!r} is not positive")
    # One spelling per strike ("72.50" and "72.5" are one instrument); no exponent form.
    return (
        strike.quantize(Decimal(1)) if strike == strike.to_integral_value() else strike.normalize()
    )


def parse_strike(value: Any, *, what: str = "strike") -> Decimal:
    """An exact, positive strike: ``"5,000"`` → 5000, ``"72.50"`` → 72.5."""
    return located(what, _strike, as_text(value, what))


_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("JAN",),
            ("FEB",),
            ("MAR",),
            ("APR",),
            ("MAY",),
            ("JUN",),
            ("JUL", "JLY"),  # CME prints July as "JLY"
            ("AUG",),
            ("SEP",),
            ("OCT",),
            ("NOV",),
            ("DEC",),
        ),
        start=1,
    )
    for name in names
}
_MONTH_RE = re.compile(r"([A-Za-z]{3})[ -]?(\d{2}|\d{4})", re.ASCII)


def parse_month(value: Any, *, what: str = "month") -> date:
    """A contract month label (``"DEC 25"``, ``"JLY 26"``, ``"Dec 2025"``) → its first day."""
    text = as_text(value, what).strip()
    match = _MONTH_RE.fullmatch(text)
    month = _MONTHS.get(match.group(1).upper()) if match else None
    if match is None or month is None:
        raise ParseError(f"{what} {value!r} is not a contract month like 'DEC 25'")
    year = int(match.group(2))
    return date(year + 2000 if year < 100 else year, month, 1)


def parse_trade_date(value: Any) -> date:
    """The document's ``tradeDate``: ``"MM/DD/YYYY"`` (or ``"YYYY-MM-DD"``)."""
    text = as_text(value, "tradeDate").strip()
    try:
        if re.fullmatch(r"\d{2}/\d{2}/\d{4}", text):
            return date(int(text[6:]), int(text[:2]), int(text[3:5]))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ParseError(f"tradeDate {value!r} is not a date (expected MM/DD/YYYY)")
