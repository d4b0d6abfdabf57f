"""Deribit parsers: option instrument names and public/get_book_summary_by_currency."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal

import pytest

from connectors.common.errors import ParseError
from connectors.deribit.parse import is_option_name, parse_book_summary, parse_instrument_name
from engine.core.settlement import deribit_expiry_ns
from schemas.contracts import OptionRight
from tests.paths import DATA, PROTOCOL_SAMPLES, shared_fixture

SAMPLES = PROTOCOL_SAMPLES
MS = 1_000_000  # ns per ms
S = 1_000_000_000  # ns per s
RECV = 1_734_343_200_500_000_000

# tests/data/deribit_summary_small.json
SMALL_ASOF = 1_734_343_200_123 * MS  # 2024-12-16T10:00:00.123Z
SMALL_INDEX = 104275.31
EXP_20DEC24 = 1_734_681_600 * S  # 2024-12-20T08:00:00Z
EXP_27DEC24 = 1_735_286_400 * S  # 2024-12-27T08:00:00Z


def small_file() -> dict:
    return json.loads((DATA / "deribit_summary_small.json").read_text())


def sample(name: str) -> dict:
    path = shared_fixture(SAMPLES / name)
    return json.loads(path.read_text())


def by_instrument(snapshot):
    return {c.instrument: c for c in snapshot.contracts}


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "currency", "base", "expiry", "strike", "right"),
    [
        ("BTC-27DEC24-60000-C", "BTC", "BTC", date(2024, 12, 27), "60000", OptionRight.CALL),
        ("BTC-2APR20-7125-P", "BTC", "BTC", date(2020, 4, 2), "7125", OptionRight.PUT),
        ("ETH-24JUN22-1600-P", "ETH", "ETH", date(2022, 6, 24), "1600", OptionRight.PUT),
        (
            "XRP_USDC-30MAY25-0d625-C",
            "XRP_USDC",
            "XRP",
            date(2025, 5, 30),
            "0.625",
            OptionRight.CALL,
        ),
        ("SOL_USDC-7MAR25-142d5-P", "SOL_USDC", "SOL", date(2025, 3, 7), "142.5", OptionRight.PUT),
        ("BTC-13JAN23-16000-P", "BTC", "BTC", date(2023, 1, 13), "16000", OptionRight.PUT),
    ],
)
def test_parse_instrument_name(name, currency, base, expiry, strike, right):
    parsed = parse_instrument_name(name)
    assert (parsed.currency, parsed.base, parsed.expiry, parsed.right) == (
        currency,
        base,
        expiry,
        right,
    )
    assert parsed.strike == Decimal(strike) and str(parsed.strike) == strike
    assert is_option_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "BTC-PERPETUAL",
        "BTC-27DEC24",
        "BTC-32DEC24-60000-C",  # day 32
        "BTC-29FEB23-60000-C",  # not a leap year
        "BTC-27XYZ24-60000-C",  # month
        "BTC-27DEC24-60000-X",
        "BTC-27DEC24-6e4-C",
        "BTC-27DEC24-0-C",
        "btc-27dec24-60000-c",
        "BTC-27DEC24-60000-C-1",
        "",
    ],
)
def test_parse_instrument_name_rejects(name):
    with pytest.raises(ParseError) as err:
        parse_instrument_name(name)
    assert repr(name) in str(err.value)


def test_is_option_name():
    assert not is_option_name("BTC-PERPETUAL")
    assert not is_option_name("BTC-27DEC24")
    assert not is_option_name("BTC-FS-27DEC24_PERP")  # future spread combo
    assert not is_option_name(None)
    assert is_option_name("BTC-27DEC24-60000-P")


def test_deribit_expiry_is_0800_utc():
    assert deribit_expiry_ns(date(2024, 12, 27)) == EXP_27DEC24
    assert deribit_expiry_ns(date(2023, 1, 13)) == 1_673_596_800_000 * MS  # the docs' instrument


# ---------------------------------------------------------------------------- small summary


def _assert_small_snapshot(snap):
    assert (snap.venue, snap.underlying, snap.spot, snap.asof_ns) == (
        "deribit",
        "BTC",
        SMALL_INDEX,
        SMALL_ASOF,
    )
    contracts = by_instrument(snap)
    assert len(contracts) == 8 and "BTC-27DEC24" not in contracts  # the future is skipped
    assert {c.expiry_ns for c in snap.contracts} == {EXP_20DEC24, EXP_27DEC24}

    call = contracts["BTC-27DEC24-100000-C"]
    assert call.strike == Decimal(100000) and str(call.strike) == "100000"
    assert call.right is OptionRight.CALL and call.expiry_ns == EXP_27DEC24
    assert call.iv == pytest.approx(0.5693)
    assert call.open_interest == 5120.4 and call.multiplier == 1.0
    assert (call.bid, call.ask, call.mark) == (0.0625, 0.0665, 0.06465242)
    assert call.premium_currency == "BTC" and call.root == "BTC"
    assert call.underlying_price == 104655.0  # the 27DEC24 forward
    assert call.index_price == SMALL_INDEX
    assert (call.ts_event_ns, call.ts_recv_ns) == (SMALL_ASOF, RECV)
    assert call.gamma is None and call.delta is None

    no_bid = contracts["BTC-20DEC24-100000-C"]
    assert no_bid.bid is None and no_bid.ask == 0.052
    assert no_bid.underlying_price == 104412.5  # the 20DEC24 (synthetic) forward
    assert no_bid.expiry_ns == EXP_20DEC24

    put = contracts["BTC-20DEC24-105000-P"]
    assert put.right is OptionRight.PUT and put.strike == Decimal(105000)
    assert put.iv == pytest.approx(0.5487) and put.open_interest == 377.0


def test_small_summary_with_instruments():
    doc = small_file()
    snap = parse_book_summary(doc["book_summary"], doc["instruments"], recv_ns=RECV)
    _assert_small_snapshot(snap)


def test_small_summary_without_instruments_derives_terms_from_names():
    doc = small_file()
    snap = parse_book_summary(doc["book_summary"], recv_ns=RECV)
    _assert_small_snapshot(snap)
    with_instruments = parse_book_summary(doc["book_summary"], doc["instruments"], recv_ns=RECV)
    assert snap == with_instruments


def test_summary_accepts_result_lists():
    doc = small_file()
    snap = parse_book_summary(
        doc["book_summary"]["result"], doc["instruments"]["result"], recv_ns=RECV
    )
    _assert_small_snapshot(snap)


def test_instruments_supply_contract_size_and_expiry():
    doc = small_file()
    for entry in doc["instruments"]["result"]:
        if entry["instrument_name"] == "BTC-27DEC24-105000-P":
            entry["contract_size"] = 10
            entry["expiration_timestamp"] += 3_600_000  # 09:00 UTC instead of 08:00
    contracts = by_instrument(parse_book_summary(doc["book_summary"], doc["instruments"]))
    changed = contracts["BTC-27DEC24-105000-P"]
    assert changed.multiplier == 10.0
    assert changed.expiry_ns == EXP_27DEC24 + 3600 * S
    assert contracts["BTC-27DEC24-105000-C"].multiplier == 1.0


def test_instrument_missing_from_the_list_falls_back_to_the_name():
    doc = small_file()
    doc["instruments"]["result"] = [
        e for e in doc["instruments"]["result"] if e["instrument_name"] != "BTC-20DEC24-105000-C"
    ]
    contracts = by_instrument(parse_book_summary(doc["book_summary"], doc["instruments"]))
    fallback = contracts["BTC-20DEC24-105000-C"]
    assert (fallback.strike, fallback.expiry_ns, fallback.multiplier) == (
        Decimal(105000),
        EXP_20DEC24,
        1.0,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("contract_size", 0, "contract_size=0 (expected > 0.0)"),
        ("contract_size", -1.5, "contract_size=-1.5 (expected > 0.0)"),
        ("strike", None, "(get_instruments): strike missing"),
        (
            "expiration_timestamp",
            "soon",
            "expiration_timestamp='soon' (expected int | null, got str)",
        ),
    ],
)
def test_bad_instrument_entries(field, value, message):
    doc = small_file()
    doc["instruments"]["result"][0][field] = value
    with pytest.raises(ParseError) as err:
        parse_book_summary(doc["book_summary"], doc["instruments"])
    assert "BTC-20DEC24-100000-C" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("strike", 100500.0), ("option_type", "put"), ("expiration_timestamp", 1_735_891_200_000)],
)
def test_instrument_disagreeing_with_the_name_is_an_error(field, value):
    doc = small_file()
    entry = next(
        e for e in doc["instruments"]["result"] if e["instrument_name"] == "BTC-27DEC24-100000-C"
    )
    entry[field] = value
    with pytest.raises(ParseError, match=r"BTC-27DEC24-100000-C: instrument says"):
        parse_book_summary(doc["book_summary"], doc["instruments"])


def test_decimal_point_strike_from_instruments():
    row = {
        "instrument_name": "XRP_USDC-30MAY25-0d625-C",
        "base_currency": "XRP",
        "quote_currency": "USDC",
        "underlying_price": 2.3312,
        "estimated_delivery_price": 2.3309,
        "mark_price": 1.7061,
        "mark_iv": 91.5,
        "open_interest": 12000.0,
        "creation_timestamp": 1_746_000_000_000,
    }
    instrument = {
        "instrument_name": "XRP_USDC-30MAY25-0d625-C",
        "kind": "option",
        "strike": 0.625,
        "option_type": "call",
        "expiration_timestamp": 1_748_592_000_000,  # 2025-05-30T08:00:00Z
        "contract_size": 1000.0,
    }
    (contract,) = parse_book_summary([row], [instrument]).contracts
    assert contract.strike == Decimal("0.625") and str(contract.strike) == "0.625"
    assert contract.multiplier == 1000.0
    assert contract.underlying == "XRP" and contract.premium_currency == "USDC"
    assert contract.expiry_ns == 1_748_592_000 * S
    assert contract.iv == pytest.approx(0.915)


# ---------------------------------------------------------------------------- protocol samples


def test_btc_capture_without_mark_iv():
    snap = parse_book_summary(
        sample("deribit_get_book_summary_by_currency_option_btc_response_capture.json"),
        recv_ns=RECV,
    )
    assert (snap.underlying, snap.spot, snap.asof_ns) == ("BTC", 29716.47, 1_654_338_604_906 * MS)
    contracts = by_instrument(snap)
    assert set(contracts) == {"BTC-24JUN22-30000-C", "BTC-30DEC22-90000-P"}

    call = contracts["BTC-24JUN22-30000-C"]
    assert call.strike == Decimal(30000) and call.right is OptionRight.CALL
    assert call.expiry_ns == 1_656_057_600 * S  # 2022-06-24T08:00:00Z
    assert call.open_interest == 1124.7
    assert call.iv is None  # the 2022 capture has no mark_iv
    assert (call.bid, call.ask, call.mark) == (0.0525, 0.0535, 0.05317014)
    assert (call.underlying_price, call.index_price) == (29755.49, 29716.47)

    put = contracts["BTC-30DEC22-90000-P"]
    assert put.strike == Decimal(90000) and put.right is OptionRight.PUT
    assert put.expiry_ns == 1_672_387_200 * S  # 2022-12-30T08:00:00Z
    assert (put.open_interest, put.iv, put.bid, put.ask) == (8.1, None, None, None)
    assert put.underlying_price == 30236.72


def test_eth_capture():
    snap = parse_book_summary(
        sample("deribit_get_book_summary_by_currency_option_eth_response_capture.json")
    )
    (put,) = snap.contracts
    assert (snap.underlying, snap.spot, snap.asof_ns) == ("ETH", 1768.89, 1_654_341_866_165 * MS)
    assert put.instrument == "ETH-24JUN22-1600-P" and put.strike == Decimal(1600)
    assert put.expiry_ns == 1_656_057_600 * S
    assert (put.open_interest, put.iv, put.premium_currency) == (15135.0, None, "ETH")
    assert (put.underlying_price, put.index_price) == (1770.45, 1768.89)


def test_perpetual_row_is_skipped():
    perpetual = sample("deribit_get_book_summary_by_currency_perpetual_response_capture.json")
    snap = parse_book_summary(perpetual)
    assert snap.contracts == ()
    assert (snap.underlying, snap.spot, snap.asof_ns) == ("BTC", 29695.49, 1_654_340_303_741 * MS)

    options = sample("deribit_get_book_summary_by_currency_option_btc_response_capture.json")
    mixed = options["result"] + perpetual["result"]
    snap = parse_book_summary(mixed)
    assert [c.instrument for c in snap.contracts] == ["BTC-24JUN22-30000-C", "BTC-30DEC22-90000-P"]
    assert snap.spot == 29716.47  # median of 29716.47, 29716.47, 29695.49
    assert snap.asof_ns == 1_654_340_303_741 * MS  # the latest creation_timestamp


def test_docs_futures_response_has_no_options():
    snap = parse_book_summary(sample("deribit_get_book_summary_by_currency_response_docs.json"))
    assert snap.contracts == () and snap.spot == 3579.73


# ---------------------------------------------------------------------------- spot and errors


def test_spot_falls_back_to_nearest_forward_when_index_expired():
    doc = small_file()
    rows = [r for r in doc["book_summary"]["result"] if is_option_name(r["instrument_name"])]
    for row in rows:
        row["estimated_delivery_price"] = "expired"
    snap = parse_book_summary(rows)
    assert snap.spot == 104412.5  # the 20DEC24 forward, the nearest expiry
    assert all(c.index_price is None for c in snap.contracts)


def _small_rows() -> list[dict]:
    return copy.deepcopy(small_file()["book_summary"]["result"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("open_interest", None, "Deribit BTC-20DEC24-100000-P: open_interest missing"),
        ("open_interest", -21.0, "BTC-20DEC24-100000-P: open_interest=-21.0 (expected >= 0.0)"),
        ("underlying_price", None, "Deribit BTC-20DEC24-100000-P: underlying_price missing"),
        ("underlying_price", -5.0, "BTC-20DEC24-100000-P: underlying_price=-5.0 (expected > 0.0)"),
        (
            "mark_iv",
            "58.2",
            "BTC-20DEC24-100000-P: mark_iv='58.2' (expected float | null, got str)",
        ),
        ("mark_iv", -3.0, "BTC-20DEC24-100000-P: mark_iv=-3.0 (expected >= 0.0)"),
        ("mark_iv", 5000.0, "BTC-20DEC24-100000-P: mark_iv=5000.0 (expected <= 1000.0)"),
        ("estimated_delivery_price", "n/a", "estimated_delivery_price='n/a' (not one of the"),
        ("creation_timestamp", None, "creation_timestamp=None (expected int, got null)"),
        (
            "creation_timestamp",
            1.7e12,
            "creation_timestamp=1700000000000.0 (expected int, got float)",
        ),
        (
            "instrument_name",
            "BTC-31NOV24-100000-P",
            "'BTC-31NOV24-100000-P': 31NOV24 is not a date",
        ),
        ("instrument_name", 42, "instrument_name=42 (expected str, got int)"),
    ],
)
def test_malformed_rows(field, value, message):
    rows = _small_rows()
    rows[1][field] = value
    with pytest.raises(ParseError) as err:
        parse_book_summary(rows)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}}, "10028"),
        ({"jsonrpc": "2.0", "result": "ok"}, "expected a JSON-RPC response"),
        ("BTC", "expected a JSON-RPC response"),
        ([], "no rows"),
        ([["BTC-27DEC24-100000-C"]], "value=['BTC-27DEC24-100000-C'] (expected object, got array)"),
    ],
)
def test_bad_responses(response, message):
    with pytest.raises(ParseError) as err:
        parse_book_summary(response)
    assert message in str(err.value)


def test_mixed_currencies_are_an_error():
    rows = _small_rows()
    eth = sample("deribit_get_book_summary_by_currency_option_eth_response_capture.json")
    with pytest.raises(ParseError, match="mixes currencies BTC, ETH"):
        parse_book_summary(rows + eth["result"])
