"""The value domain of market data: one statement of what a valid venue value is.

Two places enforce it, so a bad value never reaches the book:

- the wire boundary: each venue's wire types (``msgspec.Struct``) annotate their fields with
  the constrained types below and decode-and-validate in one step (:func:`convert`);
- the engine: the book checks every record it applies with :func:`record_problem` /
  :func:`column_problem` (a record from another producer or an older version) and refuses
  it whole, leaving its state unchanged.

A violation is reported as ``field=value (expected …)``, so a dead letter names the field
and the value. Missing values the venues document (JSON ``null``, Deribit's ``"expired"``)
are handled by the parsers before these checks; NaN in a column means "none" only where
the column says so (``iv``, ``index_price``, ``gamma``, ``underlying_price``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np
from msgspec import Meta

from schemas.time import NS_PER_S

# ------------------------------------------------------------------ stated limits
MAX_PRICE = 1e9  # USD (or coin) per unit of underlying: far above any listed underlying
MAX_OPEN_INTEREST = 1e12  # contracts
MAX_IV = 10.0  # implied vol cap as a fraction (1,000 %); above it a quote is not a vol
MAX_IV_PERCENT = MAX_IV * 100
MAX_MULTIPLIER = 1e6  # units of underlying per contract
MAX_GAMMA = 1e6  # per 1 unit of underlying price
MAX_ABS_RATE = 1.0  # funding rate per interval (100 %): beyond any venue's clamp
MAX_AMOUNT = 1e12  # trade size, contracts
# Event time against the receive clock: how far behind (a slow snapshot, a settlement
# price published late) and ahead (venue clock skew) a venue timestamp may be.
MAX_EVENT_AGE_NS = 7 * 86_400 * NS_PER_S
MAX_EVENT_LEAD_NS = 300 * NS_PER_S
MIN_EPOCH_MS = 946_684_800_000  # 2000-01-01: an earlier venue timestamp is not one
MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01

# ------------------------------------------------------------------ constrained wire types
Price = Annotated[float, Meta(gt=0, le=MAX_PRICE)]
OpenInterest = Annotated[float, Meta(ge=0, le=MAX_OPEN_INTEREST)]
IvPercent = Annotated[float, Meta(ge=0, le=MAX_IV_PERCENT)]  # 0 = none (Deribit bid/ask IV)
VolPercent = Annotated[float, Meta(gt=0, le=MAX_IV_PERCENT)]  # a vol index (DVOL)
Multiplier = Annotated[float, Meta(gt=0, le=MAX_MULTIPLIER)]
Gamma = Annotated[float, Meta(ge=0, le=MAX_GAMMA)]
Greek = Annotated[float, Meta(ge=-MAX_PRICE, le=MAX_PRICE)]  # any finite value
Rate = Annotated[float, Meta(ge=-MAX_ABS_RATE, le=MAX_ABS_RATE)]
Amount = Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]
NonNegative = Annotated[float, Meta(ge=0, le=MAX_PRICE * MAX_OPEN_INTEREST)]  # volumes, USD OI
EpochMs = Annotated[int, Meta(ge=MIN_EPOCH_MS, le=MAX_EPOCH_MS)]
# an expiry: perpetuals state 3000-01-01 (Deribit's get_instruments)
ExpiryMs = Annotated[int, Meta(ge=MIN_EPOCH_MS, le=32_503_708_800_000)]
EpochS = Annotated[int, Meta(ge=MIN_EPOCH_MS // 1000, le=MAX_EPOCH_MS // 1000)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]

StructT = TypeVar("StructT")


class DomainError(ValueError):
    """A value outside its domain; ``reason`` reads ``field=value (expected …)``."""

    def __init__(self, reason: str, kind: str = "out_of_domain") -> None:
        self.reason = " ".join(reason.splitlines())
        self.kind = kind  # a small fixed class set: out_of_domain, wrong_type, missing_field
        super().__init__(self.reason)


_AT = re.compile(r" - at `\$(.*)`$")
_EXPECTED = re.compile(r"^Expected `([^`]+)`(?:, got `([^`]+)`)?(.*?)(?: - at `|$)")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def convert(obj: Any, kind: type[StructT]) -> StructT:
    """``obj`` (decoded JSON) as wire type ``kind``, validated; DomainError naming the
    field and the value otherwise."""
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise DomainError(*describe(exc, obj)) from None


def describe(exc: msgspec.ValidationError, obj: Any) -> tuple[str, str]:
    """(``field=value (expected …)``, reason class) for a msgspec validation error."""
    message = str(exc)
    at = _AT.search(message)
    path = at.group(1) if at else ""
    missing = _MISSING.search(message)
    if missing:
        where = f"{path.lstrip('.')}." if path else ""
        return f"{where}{missing.group(1)} missing", "missing_field"
    field = path.lstrip(".") or "value"
    value = _lookup(obj, path)
    if message.startswith("Invalid enum value"):
        return f"{field}={_show(value)} (not one of the values the venue documents)", (
            "out_of_domain"
        )
    expected = _EXPECTED.match(message)
    if expected is None:
        return f"{field}={_show(value)} ({message})", "wrong_type"
    type_name, got, constraint = expected.groups()
    if got is not None:
        return f"{field}={_show(value)} (expected {type_name}, got {got})", "wrong_type"
    return f"{field}={_show(value)} (expected {constraint.strip()})", "out_of_domain"


def _lookup(obj: Any, path: str) -> Any:
    for name, index in _STEP.findall(path):
        try:
            obj = obj[int(index)] if index else obj[name]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------ checks on records
def check_event_time(ts_event_ns: int, recv_ns: int, field: str = "timestamp") -> None:
    """DomainError unless the venue time is within the stated window of the receive clock.

    ``recv_ns`` <= 0 means no receive clock (a file read offline): not checked.
    """
    if recv_ns <= 0:
        return
    if ts_event_ns < recv_ns - MAX_EVENT_AGE_NS or ts_event_ns > recv_ns + MAX_EVENT_LEAD_NS:
        lag_s = (recv_ns - ts_event_ns) / NS_PER_S
        raise DomainError(
            f"{field}={ts_event_ns} ns is {lag_s:+.0f} s from the receive clock "
            f"(expected within -{MAX_EVENT_LEAD_NS // NS_PER_S} s .. "
            f"+{MAX_EVENT_AGE_NS // NS_PER_S} s)",
            "bad_timestamp",
        )


# The domain of each numeric field of an option contract as the book takes it:
# (low, high, low inclusive). A contract may leave iv, index_price and gamma as None; a
# column (chain delta, ticker pack) says "none" with NaN, in those and in underlying_price
# (a chain delta's null forward: quoted against spot).
_FIELD_DOMAIN = {
    "open_interest": (0.0, MAX_OPEN_INTEREST, True),
    "iv": (0.0, MAX_IV, True),  # 0 = no vol: contributes nothing, as None
    "underlying_price": (0.0, MAX_PRICE, False),
    "index_price": (0.0, MAX_PRICE, False),
    "multiplier": (0.0, MAX_MULTIPLIER, False),
    "gamma": (0.0, MAX_GAMMA, True),
}
_CONTRACT_NONE_OK = frozenset({"iv", "index_price", "gamma"})
_COLUMN_NAN_OK = _CONTRACT_NONE_OK | {"underlying_price"}


def _value_problem(
    name: str, value: Any, low: float, high: float, low_inclusive: bool, none_ok: bool
) -> str | None:
    if value is None:
        return None if none_ok else f"{name}=None (expected a number)"
    if type(value) is bool or not isinstance(value, int | float):
        return f"{name}={_show(value)} (expected a number)"
    if not math.isfinite(value):
        return f"{name}={value} (expected a finite number)"
    if value < low or (value == low and not low_inclusive):
        return f"{name}={value} (expected {'>=' if low_inclusive else '>'} {low:g})"
    if value > high:
        return f"{name}={value} (expected <= {high:g})"
    return None


def contract_problem(contract: Any) -> str | None:
    """Why an option contract's values cannot enter the book, or None when they can."""
    try:  # the usual case, every value in its domain, in one expression (NaN fails it)
        iv, index, gamma = contract.iv, contract.index_price, contract.gamma
        if (
            0.0 <= contract.open_interest <= MAX_OPEN_INTEREST
            and (iv is None or 0.0 <= iv <= MAX_IV)
            and 0.0 < contract.underlying_price <= MAX_PRICE
            and (index is None or 0.0 < index <= MAX_PRICE)
            and 0.0 < contract.multiplier <= MAX_MULTIPLIER
            and (gamma is None or 0.0 <= gamma <= MAX_GAMMA)
            and 0 < contract.strike <= _MAX_STRIKE
            and bool
            not in (
                type(contract.open_interest),
                type(iv),
                type(contract.underlying_price),
                type(index),
                type(contract.multiplier),
                type(gamma),
            )
        ):
            return None
    except (TypeError, ArithmeticError):  # a string, a NaN strike: found below
        pass
    for name, (low, high, inclusive) in _FIELD_DOMAIN.items():
        value = getattr(contract, name)
        problem = _value_problem(name, value, low, high, inclusive, name in _CONTRACT_NONE_OK)
        if problem is not None:
            return f"{contract.instrument}: {problem}"
    strike = contract.strike
    if not strike.is_finite() or strike <= 0 or strike > MAX_PRICE:
        return f"{contract.instrument}: strike={strike} (expected > 0)"
    return None


_MAX_STRIKE = Decimal(int(MAX_PRICE))


def price_problem(name: str, value: Any) -> str | None:
    """Why a spot/index/forward price is not one, or None."""
    return _value_problem(name, value, 0.0, MAX_PRICE, False, False)


def _good_rows(name: str, values: np.ndarray, nan_ok: bool) -> np.ndarray:
    low, high, inclusive = _FIELD_DOMAIN[name]
    good = (values >= low if inclusive else values > low) & (values <= high)
    if nan_ok:
        good |= np.isnan(values)
    return good


def _row_reason(name: str, values: np.ndarray, row: int, instruments: Any) -> str:
    who = f"{instruments[row]}: " if instruments is not None else f"row {row}: "
    low, high, inclusive = _FIELD_DOMAIN[name]
    return who + str(_value_problem(name, float(values[row]), low, high, inclusive, False))


def column_problem(
    name: str, values: np.ndarray, instruments: Any = None, nan_ok: bool | None = None
) -> str | None:
    """Why a float64 column cannot enter the book (first bad row), or None. ``nan_ok``
    overrides whether NaN ("none") is allowed in this column."""
    good = _good_rows(name, values, name in _COLUMN_NAN_OK if nan_ok is None else nan_ok)
    if good.all():
        return None
    return _row_reason(name, values, int(np.argmin(good)), instruments)


def row_problems(columns: dict[str, np.ndarray], instruments: Any) -> dict[int, str]:
    """Every row of a column set with a value outside its domain → the first reason
    (``instrument: field=value (expected …)``); empty when all rows are good."""
    out: dict[int, str] = {}
    for name, values in columns.items():
        bad = np.flatnonzero(~_good_rows(name, values, name in _COLUMN_NAN_OK))
        for row in bad.tolist():
            if row not in out:
                out[row] = _row_reason(name, values, row, instruments)
    return dict(sorted(out.items()))
