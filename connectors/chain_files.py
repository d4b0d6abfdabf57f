"""Load a whole option chain from a file (``regime-engine levels FILE --format FMT``).

Formats:

* ``cboe-csv``: CBOE's "download CSV" quote table (``spx_quotedata.csv``).
* ``cboe-json``: a CBOE delayed-quotes JSON document
  (``cdn.cboe.com/api/global/delayed_quotes/options/_SPX.json``).
* ``deribit-summary``: either a bare ``public/get_book_summary_by_currency`` response (or
  its ``result`` list), or one JSON object holding the response and the instruments::

      {"book_summary": {"jsonrpc": "2.0", "result": [...]},
       "instruments":  {"jsonrpc": "2.0", "result": [...]}}

  (``get_book_summary_by_currency`` / ``get_instruments`` are accepted as key names too).
  The instruments part is optional; it supplies exact strikes, expiry instants and
  contract sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from connectors.cboe.parse import parse_cboe_csv, parse_cboe_json
from connectors.common.errors import ParseError
from connectors.deribit.parse import parse_book_summary
from schemas.chain import ChainSnapshot

CHAIN_FORMATS = ("cboe-csv", "cboe-json", "deribit-summary")

_SUMMARY_KEYS = ("book_summary", "get_book_summary_by_currency")
_INSTRUMENTS_KEYS = ("instruments", "get_instruments")


class ChainFileError(Exception):
    """A chain file that cannot be loaded; the message is one human-readable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))


def _first_key(doc: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((doc[key] for key in keys if key in doc), None)


def _parse_deribit_file(doc: Any, recv_ns: int) -> ChainSnapshot:
    if isinstance(doc, dict) and any(key in doc for key in _SUMMARY_KEYS):
        summary = _first_key(doc, _SUMMARY_KEYS)
        return parse_book_summary(summary, _first_key(doc, _INSTRUMENTS_KEYS), recv_ns)
    return parse_book_summary(doc, None, recv_ns)


def _decode_json(raw: bytes) -> Any:
    return orjson.loads(raw)


_PARSERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any, int], ChainSnapshot]]] = {
    "cboe-csv": (lambda raw: raw.decode("utf-8-sig"), parse_cboe_csv),
    "cboe-json": (_decode_json, parse_cboe_json),
    "deribit-summary": (_decode_json, _parse_deribit_file),
}


def load_chain_file(path: str | Path, fmt: str, recv_ns: int | None = None) -> ChainSnapshot:
    """Read and parse a chain file of format ``fmt`` (one of CHAIN_FORMATS).

    ``recv_ns`` stamps every contract's ``ts_recv_ns`` (default: now). Any failure raises
    ChainFileError with a one-line message naming the file.
    """
    if fmt not in _PARSERS:
        raise ChainFileError(
            f"unknown chain format {fmt!r}; expected one of: {', '.join(CHAIN_FORMATS)}"
        )
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ChainFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ChainFileError(f"{path}: is a directory, not a chain file") from None
    except OSError as exc:
        raise ChainFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    decode, parse = _PARSERS[fmt]
    try:
        content = decode(raw)
    except UnicodeDecodeError as exc:
        raise ChainFileError(
            f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise ChainFileError(f"{path.name}: not valid JSON ({exc})") from None
    try:
        snapshot = parse(content, time.time_ns() if recv_ns is None else recv_ns)
    except ParseError as exc:
        raise ChainFileError(f"{path.name}: {exc}") from None
    if not snapshot.contracts:
        raise ChainFileError(f"{path.name}: the chain has no option contracts ({fmt})")
    return snapshot
