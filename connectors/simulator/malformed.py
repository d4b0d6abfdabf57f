"""Malformed and harmless variants of venue messages, for fuzzing the ingest path.

Each mutation of a Deribit subscription notification is known, by construction, to be
either **invalid** (a value out of its domain, a wrong type, a missing field, a broken
frame, an out-of-order or off-clock time, an instrument that does not agree) — the ingest
must dead-letter it and change nothing — or **harmless** (extra keys, unicode in fields
nobody reads, reordered or duplicated unread keys, an int where a float goes) — the ingest
must produce exactly the records of the original. The verdict comes from how the message
was made, never from the code under test.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from connectors.common.capture import CapturedMessage

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Mutant:
    """A mutated message: ``valid`` says whether the ingest must accept it."""

    message: CapturedMessage
    kind: str  # which mutation made it
    valid: bool


Doc = dict[str, Any]
Mutation = Callable[[Doc, random.Random], Doc | bytes | None]  # None: does not apply


def _data(doc: Doc) -> Any:
    return doc["params"]["data"]


def _channel(doc: Doc) -> str:
    return doc["params"]["channel"]


def _option_ticker(doc: Doc) -> bool:
    channel = _channel(doc)
    return channel.startswith("ticker.") and channel.count("-") == 3


def _numeric_field(doc: Doc, fields: tuple[str, ...]) -> str | None:
    data = _data(doc)
    present = [f for f in fields if isinstance(data, dict) and type(data.get(f)) in (int, float)]
    return present[0] if present else None


# ---------------------------------------------------------------- invalid mutations
# Fields each channel kind requires, with their domain (what an invalid value is).
_REQUIRED_POSITIVE = {
    "ticker": ("underlying_price",),
    "deribit_price_index": ("price",),
    "deribit_volatility_index": ("volatility",),
    "trades": (),
}
_REQUIRED = {
    "ticker": ("open_interest", "underlying_price", "timestamp", "instrument_name"),
    "deribit_price_index": ("price", "timestamp", "index_name"),
    "deribit_volatility_index": ("volatility", "timestamp", "index_name"),
}


def _kind(doc: Doc) -> str:
    return _channel(doc).split(".", 1)[0]


def _set(doc: Doc, key: str, value: Any) -> Doc:
    doc["params"]["data"][key] = value
    return doc


def negative_open_interest(doc: Doc, rng: random.Random) -> Doc | None:
    if not _option_ticker(doc):
        return None
    return _set(doc, "open_interest", -rng.choice((1e-9, 0.5, 21.0, 1e6)))


def non_positive_price(doc: Doc, rng: random.Random) -> Doc | None:
    fields = _REQUIRED_POSITIVE.get(_kind(doc), ())
    if not fields:
        return None
    return _set(doc, rng.choice(fields), rng.choice((0, 0.0, -1.0, -65_000.5, -1e-300)))


def negative_iv(doc: Doc, rng: random.Random) -> Doc | None:
    if not _option_ticker(doc):
        return None
    return _set(doc, "mark_iv", -rng.choice((0.01, 55.0, 1e9)))


def iv_above_cap(doc: Doc, rng: random.Random) -> Doc | None:
    if not _option_ticker(doc):
        return None
    return _set(doc, "mark_iv", rng.choice((1_000.5, 5_000.0, 1e12)))


def huge_number(doc: Doc, rng: random.Random) -> Doc | None:
    field = _numeric_field(doc, ("open_interest", "underlying_price", "price", "volatility"))
    if field is None:
        return None
    return _set(doc, field, rng.choice((1e13, 1e100, 1.7e308)))


def wrong_type(doc: Doc, rng: random.Random) -> Doc | None:
    required = _REQUIRED.get(_kind(doc))
    if not required or (_kind(doc) == "ticker" and not _option_ticker(doc)):
        return None
    field = rng.choice(required)
    value = _data(doc)[field]
    swapped = rng.choice((str(value), [value], {"v": value}, True, None))
    if field.endswith("name"):
        swapped = rng.choice((42, None, ["x"], True))
    return _set(doc, field, swapped)


def missing_field(doc: Doc, rng: random.Random) -> Doc | None:
    required = _REQUIRED.get(_kind(doc))
    if not required or (_kind(doc) == "ticker" and not _option_ticker(doc)):
        return None
    del _data(doc)[rng.choice(required)]
    return doc


def bad_timestamp(doc: Doc, rng: random.Random) -> Doc | None:
    data = _data(doc)
    if not isinstance(data, dict) or type(data.get("timestamp")) is not int:
        return None
    ts = data["timestamp"]
    return _set(
        doc,
        "timestamp",
        rng.choice((ts + 0.5, str(ts), ts + 2 * DAY_MS, ts - 30 * DAY_MS, ts * 1000, -ts, 0)),
    )


def out_of_order(doc: Doc, rng: random.Random) -> Doc | None:
    """The same series, older than the original (inserted after it, so it is stale)."""
    data = _data(doc)
    if not isinstance(data, dict) or type(data.get("timestamp")) is not int:
        return None
    if _kind(doc) == "ticker" and not _option_ticker(doc):
        return None
    return _set(doc, "timestamp", data["timestamp"] - rng.choice((1, 250, 60_000)))


def foreign_instrument(doc: Doc, rng: random.Random) -> Doc | None:
    """A name that disagrees with the channel, or an option no instrument table lists."""
    if not _option_ticker(doc):
        return None
    name = _data(doc)["instrument_name"]
    currency, expiry, strike, right = name.split("-")
    choice = rng.randrange(3)
    if choice == 0:  # the data is for another instrument than the channel's
        return _set(doc, "instrument_name", f"{currency}-{expiry}-{int(strike) + 1}-{right}")
    if choice == 1:  # a listed-looking option nobody listed
        other = f"{currency}-{expiry}-{int(strike) + 7}-{right}"
    else:  # a name that does not parse as a date
        other = f"{currency}-31FEB24-{strike}-{right}"
    doc["params"]["channel"] = _channel(doc).replace(name, other)
    return _set(doc, "instrument_name", other)


def bad_greeks(doc: Doc, rng: random.Random) -> Doc | None:
    if not _option_ticker(doc):
        return None
    greeks = _data(doc).get("greeks")
    if rng.random() < 0.5 or not isinstance(greeks, dict):
        return _set(doc, "greeks", rng.choice((3, "none", [1, 2])))
    greeks["gamma"] = -rng.choice((1e-6, 0.5))
    return doc


def bad_trade(doc: Doc, rng: random.Random) -> Doc | None:
    if _kind(doc) != "trades" or not isinstance(_data(doc), list) or not _data(doc):
        return None
    trade = rng.choice(_data(doc))
    field, value = rng.choice(
        (("amount", 0), ("amount", -1.0), ("direction", "long"), ("price", -0.01), ("iv", -5.0))
    )
    trade[field] = value
    return doc


def wrong_data_shape(doc: Doc, rng: random.Random) -> Doc | None:
    doc["params"]["data"] = rng.choice(([], "x", 1.5, None, [[1]]))
    if _kind(doc) == "trades":
        doc["params"]["data"] = rng.choice(("x", 1.5, None, {"trade_id": 1}, [[1]]))
    return doc


def broken_frame(doc: Doc, rng: random.Random) -> bytes:
    raw = orjson.dumps(doc)
    choice = rng.randrange(4)
    if choice == 0:
        return raw[: rng.randrange(0, len(raw) - 1)]
    if choice == 1:
        return raw.replace(b":", b":NaN,", 1)
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return "\u00ff\u2603 not json".encode() + raw[:10]


def rpc_error(doc: Doc, rng: random.Random) -> Doc:
    return {
        "jsonrpc": "2.0",
        "id": rng.randrange(1, 100),
        "error": {"code": rng.choice((10028, 13009, -32602)), "message": "too_many_requests"},
    }


def unsupported_channel(doc: Doc, rng: random.Random) -> Doc:
    doc["params"]["channel"] = rng.choice(("book.BTC-PERPETUAL.100ms", "quote.x", "ticker"))
    return doc


INVALID: dict[str, Mutation] = {
    "negative_open_interest": negative_open_interest,
    "non_positive_price": non_positive_price,
    "negative_iv": negative_iv,
    "iv_above_cap": iv_above_cap,
    "huge_number": huge_number,
    "wrong_type": wrong_type,
    "missing_field": missing_field,
    "bad_timestamp": bad_timestamp,
    "out_of_order": out_of_order,
    "foreign_instrument": foreign_instrument,
    "bad_greeks": bad_greeks,
    "bad_trade": bad_trade,
    "wrong_data_shape": wrong_data_shape,
    "broken_frame": broken_frame,
    "rpc_error": rpc_error,
    "unsupported_channel": unsupported_channel,
}


# ---------------------------------------------------------------- harmless mutations
def extra_keys(doc: Doc, rng: random.Random) -> Doc | None:
    data = _data(doc)
    target = data if isinstance(data, dict) else doc["params"]
    target["zz_\u00fcnic\u00f6de"] = rng.choice(("\u2603 \U0001f680", 1e308, None, [1, {"a": 2}]))
    return doc


def unicode_unread(doc: Doc, rng: random.Random) -> Doc | None:
    data = _data(doc)
    if not isinstance(data, dict) or "state" not in data:
        return None
    data["state"] = rng.choice(("\u00f6pen", "\U0001f7e2", "op\u0000en"))
    return doc


def int_for_float(doc: Doc, rng: random.Random) -> Doc | None:
    data = _data(doc)
    if not isinstance(data, dict):
        return None
    for field in ("open_interest", "underlying_price", "price", "volatility"):
        value = data.get(field)
        if type(value) is float and value.is_integer() and abs(value) < 2**53:
            data[field] = int(value)
            return doc
    return None


def reordered_with_duplicate(doc: Doc, rng: random.Random) -> bytes | None:
    """Keys in reverse order, with an unread key given twice (JSON decoders keep the last)."""
    data = _data(doc)
    if not isinstance(data, dict):
        return None
    body = orjson.dumps(dict(reversed(list(data.items()))))
    params = orjson.dumps(_channel(doc)).decode()
    return (
        b'{"method":"subscription","params":{"data":{"zz_dup":1,"zz_dup":2,'
        + body[1:]
        + b',"channel":'
        + params.encode()
        + b'},"jsonrpc":"2.0"}'
    )


HARMLESS: dict[str, Mutation] = {
    "extra_keys": extra_keys,
    "unicode_unread": unicode_unread,
    "int_for_float": int_for_float,
    "reordered_with_duplicate": reordered_with_duplicate,
}


def mutate(message: CapturedMessage, kind: str, rng: random.Random) -> Mutant | None:
    """``message`` (a subscription notification) mutated by ``kind``; None if it does not
    apply to this message."""
    doc = orjson.loads(message.raw)
    if doc.get("method") != "subscription":
        return None
    if _kind(doc) == "ticker" and not _option_ticker(doc):
        return None  # perpetual tickers: their own domain, not mutated here
    valid = kind in HARMLESS
    made = (HARMLESS if valid else INVALID)[kind](doc, rng)
    if made is None:
        return None
    raw = made if isinstance(made, bytes) else orjson.dumps(made)
    return Mutant(replace(message, raw=raw), kind, valid)


def mixed_session(
    messages: Iterable[CapturedMessage], rate: float, seed: int
) -> Iterator[CapturedMessage | Mutant]:
    """The session with mutants mixed in: after a notification, with probability ``rate``,
    an invalid copy of it (so rejecting it changes nothing); harmless mutants replace
    their original (so accepting them changes nothing either)."""
    rng = random.Random(seed)
    kinds = sorted(INVALID) + sorted(HARMLESS)
    for message in messages:
        if rng.random() >= rate:
            yield message
            continue
        mutant = mutate(message, rng.choice(kinds), rng)
        if mutant is None:
            yield message
        elif mutant.valid:
            yield mutant
        else:
            yield message
            yield mutant
