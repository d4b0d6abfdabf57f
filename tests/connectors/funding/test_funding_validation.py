"""Domain checks at the funding venues' wire boundary (Binance, Bybit, OKX).

Each venue's real-shaped message, mutated: a bad value is refused with a reason naming the
field and the value, of its class; a harmless change gives the same record as the original.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connectors.common.errors import ParseError
from connectors.funding.binance.parse import PREMIUM_INDEX, BinanceFundingNormaliser
from connectors.funding.bybit.parse import BybitFundingNormaliser
from connectors.funding.okx.parse import OkxFundingNormaliser
from schemas.records import FundingRate
from tests.fakes.funding import (
    T0_MS,
    binance_combined,
    binance_mark_price,
    binance_premium_index,
    bybit_message,
    bybit_ticker,
    okx_funding,
    okx_push,
)

MS = 1_000_000
RECV = T0_MS * MS + 123 * MS  # the receive clock: 123 ms after the venue's time
DROP = object()  # the key is removed
DAY_MS = 86_400_000
WINDOW = "(expected within -300 s .. +604800 s)"


def mutated(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = dict(base)
    if value is DROP:
        del out[key]
    else:
        out[key] = value
    return out


def binance(event: dict[str, Any], recv_ns: int = RECV) -> list[FundingRate]:
    raw = binance_combined(event, "btcusdt@markPrice@1s")
    return [r.record for r in BinanceFundingNormaliser().normalise(orjson.loads(raw), recv_ns)]


def bybit(data: dict[str, Any], ts_ms: Any = T0_MS) -> list[FundingRate]:
    raw = bybit_message("BTCUSDT", "snapshot", data, ts_ms)
    return [r.record for r in BybitFundingNormaliser().normalise(orjson.loads(raw), RECV)]


def okx(entry: dict[str, Any]) -> list[FundingRate]:
    raw = orjson.dumps(
        {"arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}, "data": [entry]}
    )
    return [r.record for r in OkxFundingNormaliser().normalise(orjson.loads(raw), RECV)]


def refused(call: Any, reason: str, kind: str) -> None:
    with pytest.raises(ParseError) as info:
        call()
    assert (info.value.reason, info.value.kind) == (reason, kind)


# ---------------------------------------------------------------------------- Binance

BINANCE = binance_mark_price("BTCUSDT", "0.00010000")
B = "Binance markPriceUpdate BTCUSDT: "


@pytest.mark.parametrize(
    ("key", "value", "reason", "kind"),
    [
        ("r", "-2", "r=-2 (expected >= -1.0)", "out_of_domain"),
        ("r", "1.5", "r=1.5 (expected <= 1.0)", "out_of_domain"),
        ("r", "1e400", "r=inf (expected <= 1.0)", "out_of_domain"),
        ("r", "nan", "r='nan' (expected float | null, got str)", "wrong_type"),
        ("r", "Infinity", "r='Infinity' (expected float | null, got str)", "wrong_type"),
        ("r", "0x1", "r='0x1' (expected float | null, got str)", "wrong_type"),
        ("r", " 0.1", "r=' 0.1' (expected float | null, got str)", "wrong_type"),
        ("r", [], "r=[] (expected float | null, got array)", "wrong_type"),
        ("p", "-1", "p=-1 (expected > 0.0)", "out_of_domain"),
        ("p", "0", "p=0 (expected > 0.0)", "out_of_domain"),
        ("p", "1e10", "p=10000000000.0 (expected <= 1000000000.0)", "out_of_domain"),
        ("p", "abc", "p='abc' (expected float, got str)", "wrong_type"),
        ("p", True, "p=True (expected float, got bool)", "wrong_type"),
        ("p", DROP, "p missing", "missing_field"),
        ("i", "-5", "i=-5 (expected > 0.0)", "out_of_domain"),
        ("E", 1.5, "E=1.5 (expected int, got float)", "wrong_type"),
        ("E", 5, "E=5 (expected >= 946684800000)", "out_of_domain"),
        ("E", DROP, "E missing", "missing_field"),
        ("T", -1, "T=-1 (expected >= 0)", "out_of_domain"),
        ("T", 5, "T=5 (expected >= 946684800000)", "out_of_domain"),
        ("T", "x", "T='x' (expected int, got str)", "wrong_type"),
        ("T", "9" * 5000, f"T={'9' * 5000!r:.37}... (expected int, got str)", "wrong_type"),
    ],
)
def test_binance_out_of_domain_values_are_refused(key, value, reason, kind):
    refused(lambda: binance(mutated(BINANCE, key, value)), B + reason, kind)


def test_binance_symbol_and_clock():
    refused(
        lambda: binance(mutated(BINANCE, "s", 5)),
        "Binance markPriceUpdate: s=5 (expected str, got int)",
        "wrong_type",
    )
    refused(
        lambda: binance(mutated(BINANCE, "s", DROP)),
        "Binance markPriceUpdate: s missing",
        "missing_field",
    )
    old = T0_MS - 8 * DAY_MS
    refused(
        lambda: binance(mutated(BINANCE, "E", old)),
        B + f"E={old * MS} ns is +691200 s from the receive clock {WINDOW}",
        "bad_timestamp",
    )
    ahead = T0_MS + 600_000
    refused(
        lambda: binance(mutated(BINANCE, "E", ahead)),
        B + f"E={ahead * MS} ns is -600 s from the receive clock {WINDOW}",
        "bad_timestamp",
    )
    # no receive clock (a file read offline): the venue time is not checked
    assert binance(mutated(BINANCE, "E", old), recv_ns=0)[0].ts_event_ns == old * MS


def test_binance_premium_index_is_checked_too():
    normaliser = BinanceFundingNormaliser()
    request = {"method": PREMIUM_INDEX, "params": {"symbol": "BTCUSDT"}}
    bad = mutated(binance_premium_index("BTCUSDT", "0.0001"), "markPrice", "-65010")
    refused(
        lambda: normaliser.normalise(bad, RECV, request),
        "Binance premiumIndex BTCUSDT: markPrice=-65010 (expected > 0.0)",
        "out_of_domain",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"extra": "ignored", "P": "not read"},
        {"P": "prix estimé ✓ 価格"},
        {"r": 0.0001},  # a JSON number where a decimal string is usual
    ],
)
def test_binance_harmless_changes_give_the_same_record(change):
    assert binance({**BINANCE, **change}) == binance(BINANCE)


def test_binance_an_older_event_is_refused_and_counted():
    normaliser = BinanceFundingNormaliser()

    def event(event_ms: int) -> list[Any]:
        raw = binance_combined(mutated(BINANCE, "E", event_ms), "btcusdt@markPrice@1s")
        return normaliser.normalise(orjson.loads(raw), RECV)

    assert len(event(T0_MS)) == 1
    assert len(event(T0_MS)) == 1  # equal times are fine
    refused(
        lambda: event(T0_MS - 1),
        f"binance BTCUSDT: timestamp {(T0_MS - 1) * MS} ns is older than the last accepted "
        f"{T0_MS * MS} ns (out of order)",
        "out_of_order",
    )
    assert normaliser.out_of_order == 1
    assert len(event(T0_MS + 1)) == 1


# ---------------------------------------------------------------------------- Bybit

BYBIT = bybit_ticker("BTCUSDT", "0.0001")
Y = "Bybit ticker BTCUSDT: "


@pytest.mark.parametrize(
    ("key", "value", "reason", "kind"),
    [
        ("fundingRate", "-2", "fundingRate=-2 (expected >= -1.0)", "out_of_domain"),
        ("fundingRate", "nan", "fundingRate='nan' (expected float | null, got str)", "wrong_type"),
        ("markPrice", "-1", "markPrice=-1 (expected > 0.0)", "out_of_domain"),
        ("markPrice", DROP, "markPrice missing", "missing_field"),
        ("markPrice", True, "markPrice=True (expected float, got bool)", "wrong_type"),
        ("indexPrice", "0", "indexPrice=0 (expected > 0.0)", "out_of_domain"),
        ("openInterestValue", "-1", "openInterestValue=-1 (expected >= 0.0)", "out_of_domain"),
        ("nextFundingTime", "12", "nextFundingTime=12 (expected >= 946684800000)", "out_of_domain"),
        ("fundingIntervalHour", "0", "fundingIntervalHour=0 (expected > 0.0)", "out_of_domain"),
        (
            "fundingIntervalHour",
            "abc",
            "fundingIntervalHour='abc' (expected float | null, got str)",
            "wrong_type",
        ),
    ],
)
def test_bybit_out_of_domain_values_are_refused(key, value, reason, kind):
    refused(lambda: bybit(mutated(BYBIT, key, value)), Y + reason, kind)


def test_bybit_push_time_and_clock():
    refused(
        lambda: bybit(BYBIT, ts_ms="x"),
        "Bybit tickers.BTCUSDT: ts='x' (expected int, got str)",
        "wrong_type",
    )
    old = T0_MS - 8 * DAY_MS
    refused(
        lambda: bybit(BYBIT, ts_ms=old),
        Y + f"ts={old * MS} ns is +691200 s from the receive clock {WINDOW}",
        "bad_timestamp",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"extra": "ignored", "tickDirection": "Plus✓Tick"},
        {"lastPrice": "garbage", "basis": "-1"},  # fields not read
        {"preOpenPrice": "", "deliveryTime": "日本"},
    ],
)
def test_bybit_harmless_changes_give_the_same_record(change):
    assert bybit({**BYBIT, **change}) == bybit(BYBIT)


def test_bybit_an_older_delta_is_refused_and_leaves_the_ticker():
    normaliser = BybitFundingNormaliser(min_emit_interval_ms=0)

    def push(kind: str, data: dict[str, Any], ts_ms: int) -> list[Any]:
        raw = bybit_message("BTCUSDT", kind, data, ts_ms)
        return normaliser.normalise(orjson.loads(raw), RECV)

    assert len(push("snapshot", BYBIT, T0_MS + 10)) == 1
    delta = {"symbol": "BTCUSDT", "markPrice": "1.5"}
    refused(
        lambda: push("delta", delta, T0_MS),
        f"bybit BTCUSDT: timestamp {T0_MS * MS} ns is older than the last accepted "
        f"{(T0_MS + 10) * MS} ns (out of order)",
        "out_of_order",
    )
    assert normaliser.out_of_order == 1
    (same,) = push("delta", {"symbol": "BTCUSDT", "indexPrice": "65001.55"}, T0_MS + 10)
    assert same.record.mark_price == 65010.10  # the refused delta was not merged
    bad = {"symbol": "BTCUSDT", "markPrice": "-3"}
    refused(
        lambda: push("delta", bad, T0_MS + 11), Y + "markPrice=-3 (expected > 0.0)", "out_of_domain"
    )
    (after,) = push("delta", {"symbol": "BTCUSDT", "fundingRate": "0.0002"}, T0_MS + 12)
    assert (after.record.rate, after.record.mark_price) == (0.0002, 65010.10)


# ---------------------------------------------------------------------------- OKX

OKX = okx_funding("BTC-USDT-SWAP", "0.0001")
X = "OKX funding-rate BTC-USDT-SWAP: "


@pytest.mark.parametrize(
    ("key", "value", "reason", "kind"),
    [
        ("fundingRate", "2", "fundingRate=2 (expected <= 1.0)", "out_of_domain"),
        ("fundingRate", "-1.01", "fundingRate=-1.01 (expected >= -1.0)", "out_of_domain"),
        ("fundingRate", "inf", "fundingRate='inf' (expected float, got str)", "wrong_type"),
        ("fundingRate", "", "fundingRate missing", "missing_field"),
        ("fundingRate", DROP, "fundingRate missing", "missing_field"),
        ("fundingRate", None, "fundingRate=None (expected float, got null)", "wrong_type"),
        ("fundingTime", "abc", "fundingTime='abc' (expected int, got str)", "wrong_type"),
        ("fundingTime", "1.5", "fundingTime=1.5 (expected int, got float)", "wrong_type"),
        ("ts", "-1", "ts=-1 (expected >= 946684800000)", "out_of_domain"),
        (
            "nextFundingTime",
            "x",
            "nextFundingTime='x' (expected int | null, got str)",
            "wrong_type",
        ),
    ],
)
def test_okx_out_of_domain_values_are_refused(key, value, reason, kind):
    refused(lambda: okx(mutated(OKX, key, value)), X + reason, kind)


def test_okx_instrument_and_clock():
    refused(
        lambda: okx(mutated(OKX, "instId", DROP)),
        "OKX funding-rate: instId missing",
        "missing_field",
    )
    old = T0_MS - 8 * DAY_MS
    refused(
        lambda: okx(mutated(OKX, "ts", str(old))),
        X + f"ts={old * MS} ns is +691200 s from the receive clock {WINDOW}",
        "bad_timestamp",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"extra": {"nested": [1, 2]}, "method": "current_period"},
        {"settState": "réglé ✓", "premium": "garbage"},  # fields not read
        {"fundingRate": 0.0001},  # a JSON number where a decimal string is usual
    ],
)
def test_okx_harmless_changes_give_the_same_record(change):
    assert okx({**OKX, **change}) == okx(OKX)


def test_okx_an_older_push_is_refused_and_counted():
    normaliser = OkxFundingNormaliser()

    def push(ts_ms: int) -> list[Any]:
        raw = okx_push(okx_funding("BTC-USDT-SWAP", "0.0001", ts_ms=ts_ms))
        return normaliser.normalise(orjson.loads(raw), RECV)

    assert len(push(T0_MS)) == len(push(T0_MS)) == 1
    refused(
        lambda: push(T0_MS - 30_000),
        f"okx BTC-USDT-SWAP: timestamp {(T0_MS - 30_000) * MS} ns is older than the last "
        f"accepted {T0_MS * MS} ns (out of order)",
        "out_of_order",
    )
    assert normaliser.out_of_order == 1
    other = okx_push(okx_funding("ETH-USDT-SWAP", "0.0001", ts_ms=T0_MS - 30_000))
    assert len(normaliser.normalise(orjson.loads(other), RECV)) == 1  # per symbol
