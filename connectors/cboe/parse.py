"""Pure parsers for CBOE delayed quotes: OCC symbols, the download-CSV table, the JSON.

No I/O here: callers pass text / bytes / decoded JSON and a receive time. The JSON into
columns (the engine's fast path) is :mod:`connectors.cboe.columns`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from connectors.cboe.products import product_for_root
from connectors.cboe.wire import CboeDelayedQuotesDocument
from connectors.common.errors import ParseError
from connectors.common.fields import optional_number, required_number
from engine.core.settlement import instant_ns, new_york_instant_ns
from schemas.chain import ChainSnapshot
from schemas.contracts import OptionContract, OptionRight
from schemas.domain import contract_problem

VENUE = "cboe"
PREMIUM_CURRENCY = "USD"

# ---------------------------------------------------------------------------- OCC symbols

# Read from the right: strike×1000 (8 digits), C/P, YYMMDD, then the root (1-6 characters,
# space-padded to 6 in OCC's 21-character form).
_OCC_RE = re.compile(r"([A-Z0-9]{1,6}) *(\d{2})(\d{2})(\d{2})([CP])(\d{8})", re.ASCII)
_THOUSAND = Decimal(1000)
RIGHTS = {"C": OptionRight.CALL, "P": OptionRight.PUT}


@dataclass(frozen=True, slots=True)
class OccSymbol:
    root: str  # "SPXW"
    expiry: date  # the expiry date printed in the symbol
    right: OptionRight
    strike: Decimal  # exact: "C04700000" → 4700, "C00010500" → 10.5


def parse_occ_symbol(symbol: str) -> OccSymbol:
    """Parse an OCC/OSI symbol: ``SPXW240119C04700000``, or OCC's padded ``SPX   240119C…``."""
    if not isinstance(symbol, str):
        raise ParseError(f"bad OCC symbol {symbol!r}: not a string")
    match = _OCC_RE.fullmatch(symbol.strip())
    if match is None:
        raise ParseError(
            f"bad OCC symbol {symbol!r}: expected ROOT (1-6 chars) + YYMMDD + C/P + 8-digit strike"
        )
    root, yy, mm, dd, right, strike_digits = match.groups()
    try:
        expiry = date(2000 + int(yy), int(mm), int(dd))
    except ValueError:
        raise ParseError(f"bad OCC symbol {symbol!r}: {yy}{mm}{dd} is not a date") from None
    strike = Decimal(int(strike_digits)) / _THOUSAND
    if not strike:
        raise ParseError(f"bad OCC symbol {symbol!r}: zero strike")
    return OccSymbol(root=root, expiry=expiry, right=RIGHTS[right], strike=strike)


@lru_cache(maxsize=4096)
def expiry_ns_of(root: str, expiry: date) -> int:
    """The expiry instant (ns) of ``root``'s options expiring on ``expiry``."""
    return product_for_root(root).expiry_ns(expiry)


# ---------------------------------------------------------------------------- shared


class _Quote(NamedTuple):
    """One side's numbers from a CSV row or a JSON row (venue units already fractions)."""

    bid: float | None
    ask: float | None
    iv: float | None
    open_interest: float
    delta: float | None
    gamma: float | None
    vega: float | None = None
    theta: float | None = None


def _contract(
    instrument: str, occ: OccSymbol, q: _Quote, *, spot: float, ts_event_ns: int, recv_ns: int
) -> OptionContract:
    product = product_for_root(occ.root)
    # A zero offer means "no offer"; a zero bid is a real (empty) bid, so the mid stays defined.
    ask = q.ask if q.ask else None
    bid = q.bid
    mark = (bid + ask) / 2 if bid is not None and ask is not None else None
    return OptionContract(
        venue=VENUE,
        underlying=product.underlying,
        instrument=instrument,
        root=occ.root,
        expiry_ns=expiry_ns_of(occ.root, occ.expiry),
        strike=occ.strike,
        right=occ.right,
        multiplier=product.multiplier,
        open_interest=q.open_interest,
        iv=q.iv if q.iv else None,  # CBOE prints IV 0 when it has none
        underlying_price=spot,
        index_price=spot,
        ts_event_ns=ts_event_ns,
        ts_recv_ns=recv_ns,
        bid=bid,
        ask=ask,
        mark=mark,
        premium_currency=PREMIUM_CURRENCY,
        gamma=q.gamma,
        delta=q.delta,
        vega=q.vega,
        theta=q.theta,
    )


def _snapshot(
    contracts: list[OptionContract], spot: float, asof_ns: int, what: str
) -> ChainSnapshot:
    if not contracts:
        raise ParseError(f"no option rows in the {what}")
    underlyings = sorted({c.underlying for c in contracts})
    if len(underlyings) > 1:
        raise ParseError(f"{what} mixes underlyings {', '.join(underlyings)}")
    return ChainSnapshot(
        venue=VENUE,
        underlying=underlyings[0],
        spot=spot,
        asof_ns=asof_ns,
        contracts=tuple(contracts),
    )


def positive_spot(value: float, what: str) -> float:
    """``value`` if it is a finite positive underlying price; ParseError naming ``what``."""
    if not (math.isfinite(value) and value > 0):
        raise ParseError(f"{what} underlying price must be a positive number, got {value!r}")
    return value


# ---------------------------------------------------------------------------- CSV

_SIDE_HEADER = ("Last Sale", "Net", "Bid", "Ask", "Volume", "IV", "Delta", "Gamma", "Open Interest")
CSV_HEADER = ("Expiration Date", "Calls", *_SIDE_HEADER, "Strike", "Puts", *_SIDE_HEADER)
_EXPIRY_COL, _STRIKE_COL = 0, 11
# (symbol, bid, ask, iv, delta, gamma, open interest) column indices of each side
_CALL_COLS = (1, 4, 5, 7, 8, 9, 10)
_PUT_COLS = (12, 15, 16, 18, 19, 20, 21)

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
# "Date: January 7, 2024 at 10:52 AM EST" (2024) and "Date: February 5 2022, 8:26 PM EST" (2022)
_DATE_LINE_RE = re.compile(
    r"Date:\s*([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4}),?\s+(?:at\s+)?(\d{1,2}):(\d{2})\s*([AP]M)"
    r"(?:\s+([A-Z]{2,4}))?\s*$",
    re.ASCII | re.IGNORECASE,
)
_LAST_RE = re.compile(r"Last:\s*(\S+)", re.IGNORECASE)


def _parse_date_line(field: str) -> int:
    match = _DATE_LINE_RE.match(field.strip())
    if match is None:
        raise ParseError(f"CBOE CSV: cannot read the quote time from {field!r}")
    month_name, day, year, hour, minute, ampm, zone = match.groups()
    month = _MONTHS.get(month_name.lower())
    if month is None:
        raise ParseError(f"CBOE CSV: unknown month {month_name!r} in {field!r}")
    zone = (zone or "ET").upper()
    if zone not in {"EST", "EDT", "ET"}:
        raise ParseError(f"CBOE CSV: unexpected time zone {zone!r} in {field!r}")
    hour_24 = int(hour) % 12 + (12 if ampm.upper() == "PM" else 0)
    try:
        # New York wall time; EST picks the standard-time side of the repeated autumn hour.
        return new_york_instant_ns(
            date(int(year), month, int(day)), hour_24, int(minute), fold=int(zone == "EST")
        )
    except ValueError as exc:
        raise ParseError(f"CBOE CSV: bad quote time {field!r}: {exc}") from None


@lru_cache(maxsize=1024)
def _parse_expiration_column(text: str) -> date:
    # "Fri Jan 05 2024"
    parts = text.split()
    month = _MONTHS.get(parts[1].lower()) if len(parts) == 4 else None
    try:
        if month is None:
            raise ValueError
        return date(int(parts[3]), month, int(parts[2]))
    except ValueError:
        raise ParseError(
            f"bad Expiration Date {text!r} (expected like 'Fri Jan 05 2024')"
        ) from None


@lru_cache(maxsize=65536)
def _parse_strike_column(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise ParseError(f"bad Strike {text!r}") from None


def _read_preamble(rows: Any) -> tuple[float, int]:
    """Consume the preamble and the column header; return (spot, asof_ns)."""

    def next_nonblank(expecting: str) -> list[str]:
        for row in rows:
            if any(field.strip() for field in row):
                return row
        raise ParseError(f"CBOE CSV: missing preamble: file ended before the {expecting}")

    quote_row = next_nonblank("'NAME,Last: PRICE,...' line")
    last = next((m for f in quote_row if (m := _LAST_RE.match(f.strip()))), None)
    if last is None:
        raise ParseError(
            "CBOE CSV: missing preamble: expected a line like 'S&P 500 INDEX,Last: 4697.24,...' "
            f"first, got {','.join(quote_row)[:80]!r}"
        )
    try:
        price = float(last.group(1))
    except ValueError:
        raise ParseError(f"CBOE CSV: bad underlying price {last.group(0)!r}") from None
    spot = positive_spot(price, "CBOE CSV Last:")

    date_row = next_nonblank("'Date: ...' line")
    if not date_row[0].strip().startswith("Date:"):
        raise ParseError(
            "CBOE CSV: missing preamble: expected a 'Date: <month> <day>, <year> ...' line after "
            f"the Last: line, got {','.join(date_row)[:80]!r}"
        )
    asof_ns = _parse_date_line(date_row[0])

    header = next_nonblank("column header")
    if tuple(field.strip() for field in header) != CSV_HEADER:
        raise ParseError(
            f"CBOE CSV: unexpected column header {','.join(header)[:120]!r} "
            f"(expected the 22 columns starting 'Expiration Date,Calls,Last Sale,...')"
        )
    return spot, asof_ns


def _side_quote(row: list[str], cols: tuple[int, ...]) -> _Quote:
    _, bid, ask, iv, delta, gamma, oi = cols
    try:
        return _Quote(
            bid=float(row[bid]),
            ask=float(row[ask]),
            iv=float(row[iv]),
            open_interest=float(row[oi]),
            delta=float(row[delta]),
            gamma=float(row[gamma]),
        )
    except ValueError:
        bad = next(i for i in cols[1:] if not _is_float(row[i]))
        raise ParseError(f"{CSV_HEADER[bad]} is not a number: {row[bad]!r}") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_row_contracts(
    row: list[str], *, spot: float, asof_ns: int, recv_ns: int
) -> tuple[OptionContract, OptionContract]:
    """The call and the put of one CSV row, their symbols checked against the row."""
    expiry = _parse_expiration_column(row[_EXPIRY_COL])
    strike = _parse_strike_column(row[_STRIKE_COL])
    out = []
    for cols, right in ((_CALL_COLS, OptionRight.CALL), (_PUT_COLS, OptionRight.PUT)):
        symbol = row[cols[0]].strip()
        occ = parse_occ_symbol(symbol)
        if occ.expiry != expiry or occ.strike != strike:
            raise ParseError(
                f"{symbol} (expiry {occ.expiry}, strike {occ.strike}) disagrees with "
                f"Expiration Date {row[_EXPIRY_COL]!r} / Strike {row[_STRIKE_COL]!r}"
            )
        if occ.right is not right:
            raise ParseError(
                f"{symbol} in the {CSV_HEADER[cols[0]]} column is not a {right.name.lower()}"
            )
        quote = _side_quote(row, cols)
        contract = _contract(symbol, occ, quote, spot=spot, ts_event_ns=asof_ns, recv_ns=recv_ns)
        problem = contract_problem(contract)
        if problem is not None:
            raise ParseError(problem, "out_of_domain")
        out.append(contract)
    return out[0], out[1]


def parse_cboe_csv(text: str, recv_ns: int, rejected: list[str] | None = None) -> ChainSnapshot:
    """Parse CBOE's "download CSV" quote table (calls and puts side by side per strike).

    Every row yields a call and a put; expired rows are kept (the engine drops them by
    time). Spot is the preamble's ``Last:``; asof is its ``Date:`` (New York wall time).
    Every value is checked (``schemas.domain``). With ``rejected`` (a list), a bad row is
    left out and its reason appended there; without it the first bad row raises.
    """
    rows = csv.reader(io.StringIO(text))
    spot, asof_ns = _read_preamble(rows)
    contracts: list[OptionContract] = []
    for row in rows:
        if len(row) != len(CSV_HEADER):
            if not any(field.strip() for field in row):
                continue
            raise ParseError(f"CBOE CSV line {rows.line_num}: expected 22 columns, got {len(row)}")
        try:
            contracts.extend(_csv_row_contracts(row, spot=spot, asof_ns=asof_ns, recv_ns=recv_ns))
        except ParseError as exc:
            located = ParseError(f"CBOE CSV line {rows.line_num}: {exc}", exc.kind)
            if rejected is None:
                raise located from None
            rejected.append(located.reason)
    if not contracts and rejected:
        raise ParseError(f"CBOE CSV: every row rejected: {rejected[0]}")
    return _snapshot(contracts, spot, asof_ns, "CBOE CSV")


# ---------------------------------------------------------------------------- JSON


def parse_document_timestamp(value: Any) -> int:
    """The document's top-level ``timestamp`` (naive UTC) in ns since the epoch."""
    if not isinstance(value, str):
        raise ParseError(f"CBOE JSON: missing or bad top-level timestamp {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ParseError(
            f"CBOE JSON: bad timestamp {value!r} (expected 'YYYY-MM-DD HH:MM:SS')"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the CDN's timestamp is naive UTC (see wire.py)
    return instant_ns(moment)


def parse_cboe_json(
    doc: bytes | str | CboeDelayedQuotesDocument | dict[str, Any], recv_ns: int
) -> ChainSnapshot:
    """Parse a CBOE delayed-quotes JSON document (``data.options[]``).

    Spot is ``data.current_price``; asof is the document ``timestamp`` (UTC).
    """
    if isinstance(doc, bytes | bytearray | memoryview | str):
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"CBOE JSON: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise ParseError(
            "CBOE JSON: expected an object with a 'data' object (delayed-quotes document)"
        )
    data = doc["data"]
    asof_ns = parse_document_timestamp(doc.get("timestamp"))
    spot = positive_spot(required_number(data, "current_price", "CBOE JSON data"), "CBOE JSON")
    options = data.get("options")
    if not isinstance(options, list):
        raise ParseError("CBOE JSON: data.options is missing or not a list")
    contracts: list[OptionContract] = []
    for index, row in enumerate(options):
        if not isinstance(row, dict):
            raise ParseError(f"CBOE JSON: data.options[{index}] is not an object")
        symbol = row.get("option")
        occ = parse_occ_symbol(symbol)  # type: ignore[arg-type]
        where = f"CBOE JSON {symbol}"
        quote = _Quote(
            bid=optional_number(row, "bid", where),
            ask=optional_number(row, "ask", where),
            iv=optional_number(row, "iv", where),
            open_interest=required_number(row, "open_interest", where),
            delta=optional_number(row, "delta", where),
            gamma=optional_number(row, "gamma", where),
            vega=optional_number(row, "vega", where),
            theta=optional_number(row, "theta", where),
        )
        contracts.append(
            _contract(symbol, occ, quote, spot=spot, ts_event_ns=asof_ns, recv_ns=recv_ns)
        )
    return _snapshot(contracts, spot, asof_ns, "CBOE JSON document")
