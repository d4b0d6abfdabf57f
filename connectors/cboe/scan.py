"""A byte scanner for CBOE delayed-quotes JSON: the option columns without any row objects.

It reads what the chain columns need (each row's ``option``, ``open_interest``, ``iv``,
``gamma``; the document's ``timestamp`` and ``data.current_price``) straight from the body
and skips, while validating, everything else. It accepts only what it reads exactly as the
typed decoder in ``parse.py`` does, and answers "fall back" for anything else: a string
with an escape or a non-ASCII byte, a number that one correctly rounded float operation
cannot give (Clinger's fast path: at most 2^53 in the digits, a power of ten within ±22),
a key it reads appearing twice, a missing required field, invalid JSON. The caller then
runs the typed decoder, which gives the value or the error.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange

FALLBACK = -1

_QUOTE, _BACKSLASH, _COMMA, _COLON, _MINUS, _PLUS, _DOT = 34, 92, 44, 58, 45, 43, 46
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = 123, 125, 91, 93
_ZERO, _NINE = 48, 57
_MAX_DEPTH = 64  # nesting of containers
_MAX_EXACT_MANTISSA = 2**53
_MANTISSA_GUARD = 10**17  # more digits than this cannot be exact on the fast path anyway
_POW10 = np.array([10.0**k for k in range(23)])  # each exact in float64

_NAME_TIMESTAMP = np.frombuffer(b"timestamp", dtype=np.uint8)
_NAME_DATA = np.frombuffer(b"data", dtype=np.uint8)
_NAME_CURRENT_PRICE = np.frombuffer(b"current_price", dtype=np.uint8)
_NAME_OPTIONS = np.frombuffer(b"options", dtype=np.uint8)
_NAME_OPTION = np.frombuffer(b"option", dtype=np.uint8)
_NAME_OPEN_INTEREST = np.frombuffer(b"open_interest", dtype=np.uint8)
_NAME_IV = np.frombuffer(b"iv", dtype=np.uint8)
_NAME_GAMMA = np.frombuffer(b"gamma", dtype=np.uint8)
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_NULL = np.frombuffer(b"null", dtype=np.uint8)

# Bytes a string may hold as they are: printable ASCII but the quote and the backslash.
_PLAIN = np.array([32 <= b <= 126 and b not in (34, 92) for b in range(256)], dtype=np.bool_)

# A row is at least {"option":"","open_interest":0}: a bound on the rows of a body.
_MIN_ROW_BYTES = 31


# Roles of containers and keys: which JSON values the scanner reads (the rest it skips).
_OTHER, _ROOT, _DATA, _OPTIONS, _ROW = 0, 1, 2, 3, 4
_KEY_OTHER, _KEY_TIMESTAMP, _KEY_DATA, _KEY_PRICE, _KEY_OPTIONS = 0, 1, 2, 3, 4
_KEY_OPTION, _KEY_OPEN_INTEREST, _KEY_IV, _KEY_GAMMA = 5, 6, 7, 8
_EXPECT_VALUE, _EXPECT_KEY, _AFTER_VALUE = 0, 1, 2


@njit(cache=True, inline="always")
def _matches(buf: np.ndarray, start: int, end: int, word: np.ndarray) -> bool:
    if end - start != len(word):
        return False
    for k in range(len(word)):  # noqa: SIM110 (numba: no generator in all())
        if buf[start + k] != word[k]:
            return False
    return True


@njit(cache=True, inline="always")
def _key_code(buf: np.ndarray, start: int, end: int, role: int) -> int:
    """Which field the member name at buf[start:end] is, in a container of ``role``."""
    if role == _ROW:
        if _matches(buf, start, end, _NAME_OPTION):
            return _KEY_OPTION
        if _matches(buf, start, end, _NAME_OPEN_INTEREST):
            return _KEY_OPEN_INTEREST
        if _matches(buf, start, end, _NAME_IV):
            return _KEY_IV
        if _matches(buf, start, end, _NAME_GAMMA):
            return _KEY_GAMMA
    elif role == _DATA:
        if _matches(buf, start, end, _NAME_CURRENT_PRICE):
            return _KEY_PRICE
        if _matches(buf, start, end, _NAME_OPTIONS):
            return _KEY_OPTIONS
    elif role == _ROOT:
        if _matches(buf, start, end, _NAME_TIMESTAMP):
            return _KEY_TIMESTAMP
        if _matches(buf, start, end, _NAME_DATA):
            return _KEY_DATA
    return _KEY_OTHER


@njit(cache=True)
def _number(buf: np.ndarray, pos: int, parse: bool) -> tuple[int, float]:
    """(end, value) of the JSON number at ``pos``; end -1 when it is not one, or when
    ``parse`` is set and its value is not exact on the fast path."""
    n = len(buf)
    negative = False
    if pos < n and buf[pos] == _MINUS:
        negative = True
        pos += 1
    if pos >= n or buf[pos] < _ZERO or buf[pos] > _NINE:
        return -1, 0.0
    mantissa = 0
    exponent = 0
    exact = True
    if buf[pos] == _ZERO:
        pos += 1
    else:
        while pos < n and _ZERO <= buf[pos] <= _NINE:
            if mantissa < _MANTISSA_GUARD:
                mantissa = mantissa * 10 + (buf[pos] - _ZERO)
            else:
                exact = False
            pos += 1
    integer = True  # "-0" is the integer 0, read as +0.0 (as the typed decoder does)
    if pos < n and buf[pos] == _DOT:
        integer = False
        pos += 1
        if pos >= n or buf[pos] < _ZERO or buf[pos] > _NINE:
            return -1, 0.0
        while pos < n and _ZERO <= buf[pos] <= _NINE:
            if mantissa < _MANTISSA_GUARD:
                mantissa = mantissa * 10 + (buf[pos] - _ZERO)
                exponent -= 1
            else:
                exact = False
            pos += 1
    if pos < n and (buf[pos] == 101 or buf[pos] == 69):  # e E
        integer = False
        pos += 1
        sign = 1
        if pos < n and (buf[pos] == _PLUS or buf[pos] == _MINUS):
            sign = -1 if buf[pos] == _MINUS else 1
            pos += 1
        if pos >= n or buf[pos] < _ZERO or buf[pos] > _NINE:
            return -1, 0.0
        written = 0
        while pos < n and _ZERO <= buf[pos] <= _NINE:
            if written < 10_000:
                written = written * 10 + (buf[pos] - _ZERO)
            pos += 1
        exponent += sign * written
    if not parse:
        return pos, 0.0
    if not exact or mantissa > _MAX_EXACT_MANTISSA or exponent > 22 or exponent < -22:
        return -1, 0.0
    value = float(mantissa)
    if exponent < 0:
        value /= _POW10[-exponent]
    else:
        value *= _POW10[exponent]
    return pos, -value if negative and not (integer and mantissa == 0) else value


@njit(cache=True, inline="always")
def _literal_end(buf: np.ndarray, pos: int) -> int:
    """End of ``true``, ``false`` or ``null`` at ``pos``; -1 if none is there."""
    c = buf[pos]
    word = _TRUE if c == 116 else _FALSE if c == 102 else _NULL
    end = pos + len(word)
    if end > len(buf) or not _matches(buf, pos, end, word):
        return -1
    return end


@njit(cache=True, inline="always")
def _ws(buf: np.ndarray, pos: int) -> int:
    n = len(buf)
    while (
        pos < n
        and buf[pos] <= 32
        and (buf[pos] == 32 or buf[pos] == 10 or buf[pos] == 13 or buf[pos] == 9)
    ):
        pos += 1
    return pos


@njit(cache=True, inline="always")
def _string_end(buf: np.ndarray, pos: int) -> int:
    """The closing quote of the string opening at ``pos``; -1 at an escape, a control or
    non-ASCII byte, or the end of the body."""
    n = len(buf)
    pos += 1
    while pos < n and _PLAIN[buf[pos]]:
        pos += 1
    if pos < n and buf[pos] == _QUOTE:
        return pos
    return -1


@njit(cache=True)
def _scan_piece(
    buf,
    pos,
    stop,
    depth,
    row,
    row_end,
    symbol_start,
    symbol_end,
    open_interest,
    iv,
    gamma,
    kinds,
    roles,
    keys,
    seen,
):
    """Read ``buf[pos:stop]`` from inside ``depth`` open containers; rows go to [row, row_end).

    ``kinds``/``roles``/``keys``/``seen`` describe the open containers, one entry per depth:
    the opening bracket, what the container is, its current member name, the names read in
    it. One loop turn reads one member or element: its name, its value, then the comma or
    the close. Returns (ok, rows read, timestamp start, timestamp end, current price, end
    position, end depth, end state); containers that were open at the start are checked
    for their required members by the caller, which sees every piece.
    """
    fail = (False, 0, -1, -1, np.nan, pos, depth, _EXPECT_VALUE)
    n = len(buf)
    floor = depth
    first_row = row
    stamp_start = -1
    stamp_end = -1
    price = np.nan
    state = _EXPECT_VALUE
    pos = _ws(buf, pos)
    while pos < stop:
        c = buf[pos]
        if state == _EXPECT_KEY:
            if c != _QUOTE:
                return fail
            end = _string_end(buf, pos)
            if end < 0:
                return fail
            key = _KEY_OTHER
            role = roles[depth - 1]
            # Most names are none of the eight: rule them out by length and first letter.
            if (
                role != _OTHER
                and (end - pos - 1) in (2, 4, 5, 6, 7, 9, 13)
                and buf[pos + 1] in (111, 105, 103, 99, 116, 100)  # o i g c t d
            ):
                key = _key_code(buf, pos + 1, end, role)
                if key != _KEY_OTHER:
                    if seen[depth - 1] & (1 << key):
                        return fail  # a field read twice
                    seen[depth - 1] |= 1 << key
            keys[depth - 1] = key
            pos = _ws(buf, end + 1)
            if pos >= n or buf[pos] != _COLON:
                return fail
            pos = _ws(buf, pos + 1)
            if pos >= n:
                return fail
            c = buf[pos]
            state = _EXPECT_VALUE
        if state == _EXPECT_VALUE:
            if depth == 0:
                if c != _LBRACE or floor != 0 or pos != _ws(buf, 0):
                    return fail  # the body is one object
                role, key = _OTHER, _KEY_OTHER
            else:
                role, key = roles[depth - 1], keys[depth - 1]
            if c in (_LBRACE, _LBRACKET):
                child = _OTHER
                if depth == 0:
                    child = _ROOT
                elif key == _KEY_DATA:
                    child = _DATA
                elif key == _KEY_OPTIONS:
                    child = _OPTIONS
                elif role == _OPTIONS:
                    child = _ROW
                    if row == row_end:
                        return fail
                    iv[row] = np.nan
                    gamma[row] = np.nan
                if child != _OTHER and (c == _LBRACE) == (child == _OPTIONS):
                    return fail  # data and rows are objects, options an array
                if key != _KEY_OTHER and child == _OTHER:
                    return fail  # a container where a number or a string is read
                if depth == len(kinds):
                    return fail
                kinds[depth] = c
                roles[depth] = child
                keys[depth] = _KEY_OTHER
                seen[depth] = 0
                depth += 1
                pos = _ws(buf, pos + 1)
                state = _EXPECT_KEY if c == _LBRACE else _EXPECT_VALUE
                if pos < n and buf[pos] == (_RBRACE if c == _LBRACE else _RBRACKET):
                    if child in (_ROW, _ROOT, _DATA):
                        return fail  # required members missing
                    depth -= 1
                    pos = _ws(buf, pos + 1)
                    state = _AFTER_VALUE
                continue
            if role == _OPTIONS or key in (_KEY_DATA, _KEY_OPTIONS):
                return fail  # a scalar where the reader needs a container
            if c == _QUOTE:
                end = _string_end(buf, pos)
                if end < 0:
                    return fail
                if key == _KEY_OPTION:
                    symbol_start[row] = pos + 1
                    symbol_end[row] = end
                elif key == _KEY_TIMESTAMP:
                    stamp_start, stamp_end = pos + 1, end
                elif key != _KEY_OTHER:
                    return fail
                pos = end + 1
            elif (c == _MINUS or _ZERO <= c <= _NINE) and key == _KEY_OTHER:
                # A skipped number: -?(0|[1-9]digits)(.digits)? inline; anything else (an
                # exponent, or not a number at all) is checked in full. end -1: not inline.
                end = pos + 1 if c == _MINUS else pos
                if end < n and buf[end] == _ZERO:
                    end += 1
                elif end < n and _ZERO < buf[end] <= _NINE:
                    while end < n and _ZERO <= buf[end] <= _NINE:
                        end += 1
                else:
                    end = -1
                if 0 <= end < n and buf[end] == _DOT:
                    end += 1
                    fraction = end
                    while end < n and _ZERO <= buf[end] <= _NINE:
                        end += 1
                    if end == fraction:
                        end = -1
                if 0 <= end < n and buf[end] != 101 and buf[end] != 69:  # e E
                    pos = end
                else:
                    pos, _ = _number(buf, pos, False)
            elif c == _MINUS or _ZERO <= c <= _NINE:
                if key in (_KEY_OPTION, _KEY_TIMESTAMP):
                    return fail
                pos, value = _number(buf, pos, True)
                if key == _KEY_OPEN_INTEREST:
                    open_interest[row] = value
                elif key == _KEY_IV:
                    iv[row] = value
                elif key == _KEY_GAMMA:
                    gamma[row] = value
                else:
                    price = value
            elif c in (116, 102, 110):  # t f n
                if key != _KEY_OTHER and not (c == 110 and (key in (_KEY_IV, _KEY_GAMMA))):
                    return fail  # only iv and gamma may be null
                pos = _literal_end(buf, pos)
            else:
                return fail
            if pos < 0:
                return fail
            pos = _ws(buf, pos)
            state = _AFTER_VALUE
            if pos >= n:
                break
            c = buf[pos]
        if depth == 0:
            return fail  # something after the document
        kind = kinds[depth - 1]
        if c == _COMMA:
            pos = _ws(buf, pos + 1)
            state = _EXPECT_KEY if kind == _LBRACE else _EXPECT_VALUE
        elif (c == _RBRACE and kind == _LBRACE) or (c == _RBRACKET and kind == _LBRACKET):
            role = roles[depth - 1]
            need = 0
            if role == _ROW:
                need = (1 << _KEY_OPTION) | (1 << _KEY_OPEN_INTEREST)
                row += 1
            elif role == _DATA:
                need = (1 << _KEY_PRICE) | (1 << _KEY_OPTIONS)
            elif role == _ROOT:
                need = (1 << _KEY_TIMESTAMP) | (1 << _KEY_DATA)
            if depth > floor and seen[depth - 1] & need != need:
                return fail  # a required field missing
            depth -= 1
            pos = _ws(buf, pos + 1)
        else:
            return fail
    return True, row - first_row, stamp_start, stamp_end, price, pos, depth, state


@njit(cache=True)
def _row_start_after(buf: np.ndarray, pos: int) -> int:
    """Where the next ``}, {`` (an object ending, the next beginning) puts its ``{``; -1."""
    n = len(buf)
    while pos < n:
        if buf[pos] == _RBRACE:
            at = _ws(buf, pos + 1)
            if at < n and buf[at] == _COMMA:
                at = _ws(buf, at + 1)
                if at < n and buf[at] == _LBRACE:
                    return at
        pos += 1
    return -1


@njit(cache=True, parallel=True)
def _scan_pieces(buf, starts, stops, floors, bases, limits, symbols, values, scratch, out, prices):
    for p in prange(len(starts)):
        result = _scan_piece(
            buf,
            starts[p],
            stops[p],
            floors[p],
            bases[p],
            bases[p] + limits[p],
            symbols[0],
            symbols[1],
            values[0],
            values[1],
            values[2],
            scratch[p, 0],
            scratch[p, 1],
            scratch[p, 2],
            scratch[p, 3],
        )
        ok, rows, stamp_start, stamp_end, price, pos, depth, state = result
        out[p, 0] = 1 if ok else 0
        out[p, 1] = rows
        out[p, 2] = stamp_start
        out[p, 3] = stamp_end
        out[p, 4] = pos
        out[p, 5] = depth
        out[p, 6] = state
        prices[p] = price


@njit(cache=True)
def _gather_symbols(buf, symbol_start, symbol_end, out, offsets):
    """Copy the rows' symbols end to end into ``out``; ``offsets[i]`` is where row i starts."""
    at = 0
    for i in range(len(symbol_start)):
        offsets[i] = at
        for k in range(symbol_start[i], symbol_end[i]):
            out[at] = buf[k]
            at += 1
    offsets[len(symbol_start)] = at


class ScannedDocument(NamedTuple):
    """The option columns of one CBOE delayed-quotes JSON body, as the scanner read them."""

    timestamp: str
    current_price: float
    symbols: np.ndarray  # uint8: every row's OCC symbol, ASCII, end to end
    symbol_offsets: np.ndarray  # int64, rows + 1: row i is symbols[offsets[i]:offsets[i+1]]
    open_interest: np.ndarray  # float64, contracts
    iv: np.ndarray  # float64, fraction; NaN when null or absent
    gamma: np.ndarray  # float64; NaN when null or absent


# Inside the options array: the containers a piece after the first starts in.
_ROW_DEPTH = 3
_ROW_KINDS = (_LBRACE, _LBRACE, _LBRACKET)
_ROW_ROLES = (_ROOT, _DATA, _OPTIONS)
_ROW_KEYS = (_KEY_DATA, _KEY_OPTIONS, _KEY_OTHER)
_REQUIRED = ((1 << _KEY_TIMESTAMP) | (1 << _KEY_DATA), (1 << _KEY_PRICE) | (1 << _KEY_OPTIONS))
_MIN_PIECE_BYTES = 1 << 20  # smaller bodies are read by one thread


def scan_cboe_json(
    body: bytes | bytearray | memoryview, pieces: int | None = None
) -> ScannedDocument | None:
    """The body's option columns, or None when the typed decoder must read it instead.

    A large body is cut into ``pieces`` (default: one per numba thread, at least 1 MiB
    each) at guessed row boundaries and read on parallel threads; each piece must end
    exactly where the next began, inside the options array, or the body is read again by
    one thread.
    """
    buf = np.frombuffer(body, dtype=np.uint8)
    if pieces is None:
        pieces = max(1, min(get_num_threads(), len(buf) // _MIN_PIECE_BYTES))
    starts = _piece_starts(buf, pieces)
    scanned = _scan(buf, starts) if len(starts) > 1 else None
    return scanned if scanned is not None else _scan(buf, [0])


def _piece_starts(buf: np.ndarray, pieces: int) -> list[int]:
    """Where each piece starts: 0, then a guessed row start past each k/pieces of the body."""
    starts = [0]
    for k in range(1, pieces):
        start = _row_start_after(buf, max(len(buf) * k // pieces, starts[-1] + 1))
        if start < 0:
            break
        starts.append(start)
    return starts


def _scan(buf: np.ndarray, starts: list[int]) -> ScannedDocument | None:
    pieces = len(starts)
    stops = [*starts[1:], len(buf)]
    limits = np.array(
        [(stop - start) // _MIN_ROW_BYTES + 1 for start, stop in zip(starts, stops, strict=True)]
    )
    bases = np.concatenate(([0], np.cumsum(limits)[:-1]))
    symbols = np.empty((2, int(limits.sum())), dtype=np.int64)
    values = np.empty((3, int(limits.sum())), dtype=np.float64)
    scratch = np.zeros((pieces, 4, _MAX_DEPTH), dtype=np.int64)
    floors = np.zeros(pieces, dtype=np.int64)
    for p in range(1, pieces):
        floors[p] = _ROW_DEPTH
        scratch[p, :, :_ROW_DEPTH] = (_ROW_KINDS, _ROW_ROLES, _ROW_KEYS, (0, 0, 0))
    out = np.zeros((pieces, 7), dtype=np.int64)
    prices = np.full(pieces, np.nan)
    _scan_pieces(
        buf,
        np.array(starts),
        np.array(stops),
        floors,
        bases,
        limits,
        symbols,
        values,
        scratch,
        out,
        prices,
    )
    if not out[:, 0].all():
        return None
    last = pieces - 1
    if out[last, 4] < len(buf) or out[last, 5] != 0 or out[last, 6] != _AFTER_VALUE:
        return None
    for p in range(last):
        ended_in_rows = (
            out[p, 4] == stops[p]
            and out[p, 5] == _ROW_DEPTH
            and out[p, 6] == _EXPECT_VALUE
            and tuple(scratch[p, 1, :_ROW_DEPTH]) == _ROW_ROLES
            and tuple(scratch[p, 2, :2]) == _ROW_KEYS[:2]
        )
        if not ended_in_rows or (p > 0 and scratch[p, 3, :2].any()):
            return None
    if pieces > 1:
        # The root and data objects were read by the first piece and closed by the last.
        for depth, required in enumerate(_REQUIRED):
            before, after = scratch[0, 3, depth], scratch[last, 3, depth]
            if before & after or (before | after) & required != required:
                return None
    stamp = out[out[:, 2] >= 0]
    price = prices[~np.isnan(prices)]
    if len(stamp) != 1 or len(price) != 1:
        return None
    rows = np.concatenate([np.arange(b, b + r) for b, r in zip(bases, out[:, 1], strict=True)])
    symbol_start, symbol_end = symbols[0, rows], symbols[1, rows]
    offsets = np.empty(len(rows) + 1, dtype=np.int64)
    text = np.empty(int((symbol_end - symbol_start).sum()), dtype=np.uint8)
    _gather_symbols(buf, symbol_start, symbol_end, text, offsets)
    return ScannedDocument(
        timestamp=bytes(buf[stamp[0, 2] : stamp[0, 3]]).decode("ascii"),
        current_price=float(price[0]),
        symbols=text,
        symbol_offsets=offsets,
        open_interest=values[0, rows],
        iv=values[1, rows],
        gamma=values[2, rows],
    )
