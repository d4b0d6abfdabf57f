"""CBOE delayed-quotes JSON into :class:`schemas.chain.ChainColumns`, no object per contract.

The fast path of :func:`connectors.cboe.parse.parse_cboe_json`: large bodies go to the byte
scanner (:mod:`connectors.cboe.scan`), smaller ones to a typed decoder of only the fields
the columns need; OCC symbols are parsed once per listing and cached.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from itertools import pairwise
from typing import Any

import msgspec
import numpy as np
import orjson

from connectors.cboe.parse import (
    PREMIUM_CURRENCY,
    RIGHTS,
    VENUE,
    expiry_ns_of,
    parse_cboe_json,
    parse_document_timestamp,
    parse_occ_symbol,
    positive_spot,
)
from connectors.cboe.products import product_for_root
from connectors.cboe.scan import scan_cboe_json
from connectors.cboe.wire import CboeDelayedQuotesDocument
from connectors.common.errors import ParseError
from schemas.chain import ChainColumns
from schemas.domain import describe, row_problems


class _Row(msgspec.Struct, gc=False):
    """The fields of ``CboeDelayedOptionRow`` (wire.py) that the columns need."""

    option: str
    open_interest: float
    iv: float | None = None
    gamma: float | None = None


class _Data(msgspec.Struct, gc=False):
    current_price: float
    options: list[_Row]


class _Document(msgspec.Struct, gc=False):
    timestamp: str
    data: _Data


_DOCUMENT = msgspec.json.Decoder(_Document)
# Smaller bodies go to the typed decoder: as fast there, and no JIT to load.
SCAN_MIN_BYTES = 1 << 20
_TERMS_LIMIT = 500_000  # symbols remembered (SPX lists ~30,000; new ones appear daily)
_terms_cache: dict[str, tuple[str, str, int, str, str, float]] = {}


def _terms(symbol: str) -> tuple[str, str, int, str, str, float]:
    """(underlying, root, expiry_ns, strike, right, multiplier) of an OCC symbol, cached.

    Unpadded symbols of the usual shape are cut by position (a first snapshot of 30,000
    symbols); anything else goes through :func:`parse_occ_symbol`.
    """
    terms = _terms_cache.get(symbol)
    if terms is None:
        digits, right, ymd, root = symbol[-8:], symbol[-9:-8], symbol[-15:-9], symbol[:-15]
        if (
            right in RIGHTS
            and digits.isdigit()
            and digits.isascii()
            and ymd.isdigit()
            and ymd.isascii()
            and root.isalnum()
            and root.isascii()
            and 1 <= len(root) <= 6
            and int(digits)
        ):
            expiry_ns = _expiry_of(root, ymd)
            whole, fraction = int(digits[:5]), digits[5:].rstrip("0")
            strike = f"{whole}.{fraction}" if fraction else str(whole)
        else:
            occ = parse_occ_symbol(symbol)
            root, right = occ.root, occ.right.value
            expiry_ns, strike = expiry_ns_of(occ.root, occ.expiry), str(occ.strike)
        product = product_for_root(root)
        terms = (product.underlying, root, expiry_ns, strike, right, product.multiplier)
        if len(_terms_cache) >= _TERMS_LIMIT:
            _terms_cache.clear()
        _terms_cache[symbol] = terms
    return terms


_TermColumns = tuple[str, list[str], np.ndarray, list[str], list[str], np.ndarray]
_last_term_columns: list[tuple[list[str], _TermColumns]] = []


def _term_columns(instruments: list[str]) -> _TermColumns:
    """(underlying, root, expiry_ns, strike, right, multiplier) columns of a listing.

    Successive documents of one underlying usually list the same symbols in the same order,
    so the columns of the last few listings are reused as they are (read-only).
    """
    for listing, columns in _last_term_columns:
        if listing is instruments or listing == instruments:
            return columns
    try:
        terms = [_terms(symbol) for symbol in instruments]
    except ParseError as exc:
        raise ParseError(f"CBOE JSON: {exc}") from None
    underlyings = {t[0] for t in terms}
    if len(underlyings) > 1:
        raise ParseError(f"CBOE JSON document mixes underlyings {', '.join(sorted(underlyings))}")
    n = len(terms)
    columns = (
        underlyings.pop(),
        [t[1] for t in terms],
        np.fromiter((t[2] for t in terms), dtype=np.int64, count=n),
        [t[3] for t in terms],
        [t[4] for t in terms],
        np.fromiter((t[5] for t in terms), dtype=np.float64, count=n),
    )
    for array in (columns[2], columns[5]):
        array.flags.writeable = False
    _last_term_columns.insert(0, (instruments, columns))
    del _last_term_columns[4:]  # a few underlyings polled in turn
    return columns


_last_listings: list[tuple[np.ndarray, np.ndarray, list[str]]] = []


def _listing(symbols: np.ndarray, offsets: np.ndarray) -> list[str]:
    """The scanned symbols as a list of str: the same list object for a repeated listing
    (read-only), so an unchanged chain costs no string per contract."""
    for known_symbols, known_offsets, instruments in _last_listings:
        if np.array_equal(known_offsets, offsets) and np.array_equal(known_symbols, symbols):
            return instruments
    text = symbols.tobytes().decode("ascii")
    bounds = offsets.tolist()
    instruments = [text[a:b] for a, b in pairwise(bounds)]
    _last_listings.insert(0, (symbols, offsets, instruments))
    del _last_listings[4:]  # a few underlyings polled in turn
    return instruments


@lru_cache(maxsize=4096)
def _expiry_of(root: str, yymmdd: str) -> int:
    try:
        expiry = date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        raise ParseError(f"bad OCC symbol date {yymmdd} for {root}") from None
    return expiry_ns_of(root, expiry)


def parse_cboe_json_columns(
    doc: bytes | str | CboeDelayedQuotesDocument | dict[str, Any],
    recv_ns: int,
    rejected: list[str] | None = None,
) -> ChainColumns:
    """:func:`parse_cboe_json` into columns, without a Python object per contract.

    A body of ``SCAN_MIN_BYTES`` or more is read by the byte scanner (``scan.py``, on
    parallel threads); smaller ones, and what the scanner does not take, by a typed decoder
    of only the fields the columns need. OCC symbols are parsed once per listing. Every
    row's values are checked (``schemas.domain``). With ``rejected`` (a list), a bad row is
    left out and its reason appended there (a bad row is not a bad document); without it
    the first bad row rejects the document. A document bad as a whole (no data, a bad
    timestamp or spot) always raises ParseError.
    """
    scanned = None
    if isinstance(doc, bytes | bytearray | memoryview) and len(doc) >= SCAN_MIN_BYTES:
        scanned = scan_cboe_json(doc)
    problems: dict[int, str] = {}
    if scanned is not None:
        timestamp, current_price = scanned.timestamp, scanned.current_price
        instruments = _listing(scanned.symbols, scanned.symbol_offsets)
        open_interest, iv, gamma = scanned.open_interest, scanned.iv, scanned.gamma
    else:
        try:
            if isinstance(doc, bytes | bytearray | memoryview | str):
                decoded = _DOCUMENT.decode(doc)
            else:
                decoded = msgspec.convert(doc, _Document)
        except (msgspec.ValidationError, msgspec.DecodeError):
            decoded, problems = _rows_one_by_one(doc, recv_ns)
        rows = decoded.data.options
        timestamp, current_price = decoded.timestamp, decoded.data.current_price
        instruments = [row.option for row in rows]
        open_interest = np.array([row.open_interest for row in rows], dtype=np.float64)
        iv = np.array([row.iv for row in rows], dtype=np.float64)  # None → NaN
        gamma = np.array([row.gamma for row in rows], dtype=np.float64)
    if not instruments and not problems:
        raise ParseError("no option rows in the CBOE JSON document")
    asof_ns = parse_document_timestamp(timestamp)
    spot = positive_spot(current_price, "CBOE JSON")
    iv = np.where(iv == 0.0, np.nan, iv)  # CBOE prints IV 0 when it has none
    values = {"open_interest": open_interest, "iv": iv, "gamma": gamma}
    bad = {**problems, **_symbol_problems(instruments, problems)}
    bad.update(
        (row, reason) for row, reason in row_problems(values, instruments).items() if row not in bad
    )
    if bad:
        if rejected is None:
            raise ParseError(f"CBOE JSON: {next(iter(sorted(bad.items())))[1]}")
        rejected.extend(reason for _, reason in sorted(bad.items()))
        keep = np.ones(len(instruments), dtype=bool)
        keep[list(bad)] = False
        instruments = [name for name, kept in zip(instruments, keep, strict=True) if kept]
        open_interest, iv, gamma = open_interest[keep], iv[keep], gamma[keep]
        if not instruments:
            raise ParseError(f"CBOE JSON: every row rejected: {rejected[0]}")
    underlying, root, expiry_ns, strike, right, multiplier = _term_columns(instruments)
    return ChainColumns(
        venue=VENUE,
        underlying=underlying,
        spot=spot,
        asof_ns=asof_ns,
        premium_currency=PREMIUM_CURRENCY,
        instrument=instruments,
        root=root,
        expiry_ns=expiry_ns,
        strike=strike,
        right=right,
        multiplier=multiplier,
        open_interest=open_interest,
        iv=iv,
        underlying_price=np.full(len(instruments), np.nan),  # quoted against spot
        gamma=gamma,
    )


_PLACEHOLDER = _Row(option="", open_interest=0.0)


def _rows_one_by_one(doc: Any, recv_ns: int) -> tuple[_Document, dict[int, str]]:
    """The document with each row converted alone: rows that do not convert become
    placeholders, reported by row index. A document bad as a whole goes to
    :func:`parse_cboe_json`, whose errors name the problem."""
    if isinstance(doc, bytes | bytearray | memoryview | str):
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError:
            parse_cboe_json(doc, recv_ns)  # raises with the document's reason
    data = doc.get("data") if isinstance(doc, dict) else None
    options = data.get("options") if isinstance(data, dict) else None
    if not isinstance(options, list):
        parse_cboe_json(doc, recv_ns)  # raises with the document's reason
        raise ParseError("CBOE JSON: data.options is missing or not a list")
    try:
        head = msgspec.convert({**doc, "data": {**data, "options": []}}, _Document)
    except msgspec.ValidationError:
        parse_cboe_json(doc, recv_ns)
        raise ParseError("CBOE JSON: the document's timestamp or current_price is bad") from None
    rows: list[_Row] = []
    problems: dict[int, str] = {}
    for index, row in enumerate(options):
        try:
            rows.append(msgspec.convert(row, _Row))
        except msgspec.ValidationError as exc:
            symbol = row.get("option") if isinstance(row, dict) else None
            who = symbol if isinstance(symbol, str) else f"data.options[{index}]"
            problems[index] = f"{who}: {describe(exc, row)[0]}"
            rows.append(_PLACEHOLDER)
    head.data.options = rows
    return head, problems


def _symbol_problems(instruments: list[str], known: dict[int, str]) -> dict[int, str]:
    """Rows whose OCC symbol does not parse (or whose underlying differs from the rest)."""
    problems: dict[int, str] = {}
    underlying_of: dict[int, str] = {}
    for index, symbol in enumerate(instruments):
        if index in known:
            continue
        try:
            underlying_of[index] = _terms(symbol)[0]
        except ParseError as exc:
            problems[index] = exc.reason
    if len(set(underlying_of.values())) > 1:
        first = underlying_of[min(underlying_of)]
        for index, underlying in underlying_of.items():
            if underlying != first:
                problems[index] = f"{instruments[index]}: underlying {underlying} is not {first}"
    return problems
