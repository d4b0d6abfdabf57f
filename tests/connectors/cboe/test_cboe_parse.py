"""CBOE parsers: OCC symbols, the download-CSV quote table, the delayed-quotes JSON."""

from __future__ import annotations

import csv
import json
import time
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

import pytest

from connectors.cboe.parse import parse_cboe_csv, parse_cboe_json, parse_occ_symbol
from connectors.cboe.products import PRODUCTS, product_for_root
from connectors.common.errors import ParseError
from engine.core.settlement import NEW_YORK, new_york_instant_ns
from schemas.contracts import OptionRight
from tests.paths import DATA, SHARED_FIXTURES, shared_fixture

FIXTURES = SHARED_FIXTURES
RECV = 1_741_963_600_000_000_123
S = 1_000_000_000  # ns per second

# Settlement instants, written out as UTC epoch seconds (independent of zoneinfo).
SPX_2025_03_21_AM = 1_742_563_800 * S  # 2025-03-21T13:30:00Z = 09:30 EDT (after DST began Mar 9)
SPXW_2025_03_21_PM = 1_742_587_200 * S  # 2025-03-21T20:00:00Z = 16:00 EDT
SPXW_2025_03_14_PM = 1_741_982_400 * S  # 2025-03-14T20:00:00Z
SPXW_2025_03_07_PM = 1_741_381_200 * S  # 2025-03-07T21:00:00Z = 16:00 EST (winter)
SMALL_CSV_ASOF = 1_741_962_600 * S  # "March 14, 2025 at 10:30 AM EDT" = 14:30:00Z
SMALL_JSON_ASOF = 1_741_963_503 * S  # "2025-03-14 14:45:03" (UTC)


def small_csv() -> str:
    return (DATA / "cboe_small.csv").read_text()


def small_json() -> dict:
    return json.loads((DATA / "cboe_small.json").read_text())


def by_instrument(snapshot):
    return {c.instrument: c for c in snapshot.contracts}


# ---------------------------------------------------------------------------- OCC symbols


@pytest.mark.parametrize(
    ("symbol", "root", "expiry", "right", "strike"),
    [
        ("SPXW240119C04700000", "SPXW", date(2024, 1, 19), OptionRight.CALL, Decimal(4700)),
        ("SPX291221P08000000", "SPX", date(2029, 12, 21), OptionRight.PUT, Decimal(8000)),
        ("VIX260617C00010500", "VIX", date(2026, 6, 17), OptionRight.CALL, Decimal("10.5")),
        ("SPY250321P00572500", "SPY", date(2025, 3, 21), OptionRight.PUT, Decimal("572.5")),
        ("F250117C00012000", "F", date(2025, 1, 17), OptionRight.CALL, Decimal(12)),  # 1 char
        ("NDXP220207C11000000", "NDXP", date(2022, 2, 7), OptionRight.CALL, Decimal(11000)),
        ("GOOGL250620C00180000", "GOOGL", date(2025, 6, 20), OptionRight.CALL, Decimal(180)),
        ("AAPL1250117P00100000", "AAPL1", date(2025, 1, 17), OptionRight.PUT, Decimal(100)),
        ("SPX   240119C04700000", "SPX", date(2024, 1, 19), OptionRight.CALL, Decimal(4700)),
        ("SPXW  240119P04712500", "SPXW", date(2024, 1, 19), OptionRight.PUT, Decimal("4712.5")),
        ("XSP250314C00558001", "XSP", date(2025, 3, 14), OptionRight.CALL, Decimal("558.001")),
    ],
)
def test_parse_occ_symbol(symbol, root, expiry, right, strike):
    occ = parse_occ_symbol(symbol)
    assert (occ.root, occ.expiry, occ.right, occ.strike) == (root, expiry, right, strike)


def test_occ_strike_is_exact_and_canonical():
    assert str(parse_occ_symbol("VIX260617C00010500").strike) == "10.5"
    assert str(parse_occ_symbol("SPXW240119C04700000").strike) == "4700"
    assert str(parse_occ_symbol("XSP250314C00000500").strike) == "0.5"


@pytest.mark.parametrize(
    "symbol",
    [
        "",
        "SPXW",
        "SPXW240119X04700000",  # right is not C/P
        "SPXW241319C04700000",  # month 13
        "SPXW240230C04700000",  # 30 February
        "SPXW240119C0470000",  # 7-digit strike
        "SPXW240119C047000000",  # 9-digit strike
        "TOOLONG240119C04700000",  # 7-char root
        "240119C04700000",  # no root
        "spxw240119c04700000",  # lower case
        "SPX W240119C04700000",  # space inside the root
        "SPXW240119C00000000",  # zero strike
    ],
)
def test_parse_occ_symbol_rejects(symbol):
    with pytest.raises(ParseError) as err:
        parse_occ_symbol(symbol)
    assert repr(symbol) in str(err.value)


def test_parse_occ_symbol_rejects_non_string():
    with pytest.raises(ParseError, match="not a string"):
        parse_occ_symbol(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- products / instants


def test_product_table():
    assert {p.root: p.underlying for p in PRODUCTS.values()} == {
        "SPX": "SPX",
        "SPXW": "SPX",
        "XSP": "XSP",
        "NDX": "NDX",
        "NDXP": "NDX",
        "VIX": "VIX",
        "VIXW": "VIX",
        "SPY": "SPY",
        "QQQ": "QQQ",
    }
    am = {root for root, p in PRODUCTS.items() if p.am_settled}
    assert am == {"SPX", "NDX", "VIX", "VIXW"}
    assert {root for root, p in PRODUCTS.items() if p.physical} == {"SPY", "QQQ"}
    assert all(p.multiplier == 100 for p in PRODUCTS.values())
    with pytest.raises(ParseError, match="unknown CBOE option root 'AAPL'"):
        product_for_root("AAPL")


def test_settlement_instants_dst_and_winter():
    # Summer (EDT, UTC-4) and winter (EST, UTC-5), AM and PM, exactly in ns.
    assert PRODUCTS["SPX"].expiry_ns(date(2025, 3, 21)) == SPX_2025_03_21_AM
    assert PRODUCTS["SPXW"].expiry_ns(date(2025, 3, 21)) == SPXW_2025_03_21_PM
    assert PRODUCTS["SPX"].expiry_ns(date(2024, 1, 19)) == 1_705_674_600 * S  # 14:30:00Z
    assert PRODUCTS["SPXW"].expiry_ns(date(2024, 1, 19)) == 1_705_698_000 * S  # 21:00:00Z
    assert PRODUCTS["SPXW"].expiry_ns(date(2025, 3, 7)) == SPXW_2025_03_07_PM
    # The repeated 01:30 when clocks fall back (2024-11-03): EDT first, EST with fold=1.
    assert new_york_instant_ns(date(2024, 11, 3), 1, 30) == 1_730_611_800 * S
    assert new_york_instant_ns(date(2024, 11, 3), 1, 30, fold=1) == 1_730_615_400 * S


# ---------------------------------------------------------------------------- CSV


def test_small_csv():
    snap = parse_cboe_csv(small_csv(), RECV)
    assert (snap.venue, snap.underlying, snap.spot, snap.asof_ns) == (
        "cboe",
        "SPX",
        5589.41,
        SMALL_CSV_ASOF,
    )
    assert len(snap.contracts) == 14  # 7 rows, a call and a put each
    contracts = by_instrument(snap)

    am = contracts["SPX250321C05600000"]
    assert am.root == "SPX" and am.underlying == "SPX"
    assert am.expiry_ns == SPX_2025_03_21_AM
    assert am.strike == Decimal(5600) and am.right is OptionRight.CALL
    assert (am.bid, am.ask, am.mark) == (52.4, 53.5, pytest.approx(52.95))
    assert (am.iv, am.delta, am.gamma, am.open_interest) == (0.1884, 0.4762, 0.0027, 10512.0)
    assert am.multiplier == 100.0 and am.premium_currency == "USD"
    assert am.underlying_price == am.index_price == 5589.41
    assert (am.ts_event_ns, am.ts_recv_ns) == (SMALL_CSV_ASOF, RECV)
    assert am.vega is None and am.theta is None  # not in the CSV

    pm = contracts["SPXW250321C05600000"]
    assert pm.root == "SPXW" and pm.underlying == "SPX"
    assert pm.expiry_ns == SPXW_2025_03_21_PM
    assert pm.expiry_ns - am.expiry_ns == 6 * 3600 * S + 30 * 60 * S  # 09:30 → 16:00

    put = contracts["SPXW250314P05590000"]
    assert put.right is OptionRight.PUT and put.expiry_ns == SPXW_2025_03_14_PM
    assert (put.bid, put.ask, put.iv, put.delta, put.gamma, put.open_interest) == (
        11.3,
        11.5,
        0.1985,
        -0.5075,
        0.0143,
        2264.0,
    )


def test_small_csv_keeps_expired_rows_and_maps_iv_zero_to_none():
    snap = parse_cboe_csv(small_csv(), RECV)
    contracts = by_instrument(snap)
    expired = contracts["SPXW250307C05600000"]
    assert expired.expiry_ns == SPXW_2025_03_07_PM < snap.asof_ns
    assert expired.iv is None and expired.gamma == 0.0 and expired.open_interest == 812.0
    assert expired.bid == 0.0 and expired.ask == 0.05 and expired.mark == 0.025

    no_iv = contracts["SPXW250314C04500000"]
    assert no_iv.iv is None and no_iv.delta == 1.0
    assert contracts["SPXW250314P04500000"].iv == 0.98


def test_csv_zero_ask_means_no_offer():
    text = small_csv().replace(
        "SPXW250314C05590000,10.5,6.3,10.4,10.6,", "SPXW250314C05590000,10.5,6.3,10.4,0,"
    )
    call = by_instrument(parse_cboe_csv(text, RECV))["SPXW250314C05590000"]
    assert (call.bid, call.ask, call.mark) == (10.4, None, None)


def test_csv_2022_date_line_variant():
    # NDX 2022 export: no comma after the day, a comma after the year, no "at".
    text = small_csv().replace(
        '"Date: March 14, 2025 at 10:30 AM EDT",Bid: 5587.5,Ask: 5591.32,Size: 1*1,Volume: 0',
        '"Date: February 5 2022, 8:26 PM EST",Bid: 0,Ask: 0,Size: 0*0,Volume: 0',
    )
    snap = parse_cboe_csv(text, RECV)
    assert snap.asof_ns == 1_644_110_760 * S  # 2022-02-06T01:26:00Z
    assert all(c.ts_event_ns == snap.asof_ns for c in snap.contracts)
    assert len(snap.contracts) == 14


@pytest.mark.parametrize(
    ("line", "expected_utc_seconds"),
    [
        ("Date: January 7, 2024 at 10:52 AM EST", 1_704_642_720),
        ("Date: February 5 2022, 8:26 PM EST", 1_644_110_760),
        ("Date: November 3, 2024 at 1:30 AM EDT", 1_730_611_800),
        ("Date: November 3, 2024 at 1:30 AM EST", 1_730_615_400),
        ("Date: July 4, 2024 at 12:05 PM EDT", 1_720_109_100),
        ("Date: July 4, 2024 at 12:05 AM EDT", 1_720_065_900),
    ],
)
def test_csv_date_lines(line, expected_utc_seconds):
    lines = small_csv().split("\n")
    lines[2] = f'"{line}",Bid: 0,Ask: 0,Size: 0*0,Volume: 0'
    assert parse_cboe_csv("\n".join(lines), RECV).asof_ns == expected_utc_seconds * S


def test_csv_crlf_and_no_leading_blank_line():
    text = small_csv().lstrip("\n").replace("\n", "\r\n")
    snap = parse_cboe_csv(text, RECV)
    assert len(snap.contracts) == 14 and snap.spot == 5589.41


def _preamble_and_header(text: str) -> str:
    return "\n".join(text.split("\n")[:4]) + "\n"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_preamble_and_header, "no option rows"),
        (lambda t: "\n".join(t.split("\n")[3:]), "missing preamble"),
        (lambda t: "", "missing preamble"),
        (lambda t: "\n\n", "missing preamble"),
        (lambda t: t.replace("Last: 5589.41", "Last: n/a"), "bad underlying price"),
        (lambda t: t.replace("Last: 5589.41", "Last: 0"), "must be a positive number"),
        (
            lambda t: t.replace('"Date: March 14, 2025 at 10:30 AM EDT"', '"Date: soon"'),
            "quote time",
        ),
        (lambda t: t.replace("at 10:30 AM EDT", "at 10:30 AM CET"), "time zone"),
        (lambda t: t.replace("Expiration Date,Calls", "Expiry,Calls"), "column header"),
        (lambda t: t.replace(",5700.00,", ",5750.00,"), "disagrees"),
        (
            lambda t: t.replace(
                "Fri Mar 21 2025,SPX250321C05700000", "Fri Mar 28 2025,SPX250321C05700000"
            ),
            "disagrees",
        ),
        (
            lambda t: t.replace(",SPX250321P05700000,", ",SPX250321C05700000,"),
            "Puts column is not a put",
        ),
        (
            lambda t: t.replace("SPX250321C05700000", "AAPL250321C05700000"),
            "line 11: unknown CBOE option root",
        ),
        (lambda t: t.replace("SPX250321C05700000", "SPX250321C0570000"), "line 11: bad OCC symbol"),
        (lambda t: t.replace(",0.1702,", ",abc,"), "line 11: IV is not a number"),
        (lambda t: t.replace(",8844,", ",8844,extra,"), "line 11: expected 22 columns"),
        (lambda t: t.replace("Fri Mar 21 2025", "2025-03-21"), "bad Expiration Date"),
        (
            lambda t: t.replace("SPX250321C05700000", "NDX250321C05700000").replace(
                "SPX250321P05700000", "NDX250321P05700000"
            ),
            "mixes underlyings NDX, SPX",
        ),
    ],
)
def test_csv_errors(mutate, message):
    with pytest.raises(ParseError) as err:
        parse_cboe_csv(mutate(small_csv()), RECV)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_csv_skips_trailing_blank_lines():
    snap = parse_cboe_csv(small_csv() + "\n\n,,\n", RECV)
    assert len(snap.contracts) == 14


# ---------------------------------------------------------------------------- real CSV exports


class RealCsv(NamedTuple):
    relpath: str
    spot: float  # the preamble's "Last:"
    asof_s: int  # the Date line, as UTC epoch seconds
    underlying: str
    roots: set[str]
    lists_expired: bool  # the SPX file still lists Fri 2024-01-05, already expired


REAL_CSVS = [
    RealCsv(
        "cboe-spx-2024-01-07-phammings/spx_quotedata.csv",
        4697.2402,
        1_704_642_720,  # January 7, 2024 at 10:52 AM EST = 15:52Z
        "SPX",
        {"SPX", "SPXW"},
        True,
    ),
    RealCsv(
        "cboe-ndx-2022-02-05-lucacastelli/ndx_quotedata.csv",
        14694.3506,
        1_644_110_760,  # February 5 2022, 8:26 PM EST = 2022-02-06 01:26Z
        "NDX",
        {"NDX", "NDXP"},
        False,
    ),
]


@pytest.mark.parametrize("case", REAL_CSVS, ids=lambda case: case.underlying)
def test_real_csv_exports(case: RealCsv):
    relpath, spot, asof_s, underlying, roots, lists_expired = case
    path = shared_fixture(FIXTURES / relpath)
    text = path.read_text()
    with path.open(newline="") as handle:
        table = list(csv.reader(handle))
    header_at = next(i for i, row in enumerate(table) if row and row[0] == "Expiration Date")
    data_rows = [row for row in table[header_at + 1 :] if len(row) == 22]
    assert len(data_rows) > 9000

    snap = parse_cboe_csv(text, RECV)  # (speed is a benchmark's, not a unit test's)

    assert len(snap.contracts) == 2 * len(data_rows)
    assert snap.spot == spot and snap.underlying == underlying
    assert snap.asof_ns == asof_s * S
    assert {c.root for c in snap.contracts} == roots

    # Row order is preserved: contract 2i is the row's call, 2i+1 its put; each OCC symbol
    # agrees with the row's Expiration Date and Strike columns.
    for i, row in enumerate(data_rows):
        expiry = datetime.strptime(row[0], "%a %b %d %Y").date()
        strike = Decimal(row[11])
        call, put = snap.contracts[2 * i], snap.contracts[2 * i + 1]
        assert (call.instrument, put.instrument) == (row[1], row[12])
        for contract in (call, put):
            occ = parse_occ_symbol(contract.instrument)
            assert occ.expiry == expiry and occ.strike == strike == contract.strike
        assert call.right is OptionRight.CALL and put.right is OptionRight.PUT
        assert call.open_interest == float(row[10]) and put.open_interest == float(row[21])

    # AM roots settle at 09:30 New York, PM roots at 16:00, on the symbol's date.
    for contract in snap.contracts[::97]:
        settle = datetime.fromtimestamp(contract.expiry_ns / S, tz=NEW_YORK)
        assert settle.date() == parse_occ_symbol(contract.instrument).expiry
        expected = (9, 30) if contract.root in {"SPX", "NDX"} else (16, 0)
        assert (settle.hour, settle.minute) == expected
    # Expired series (already past on the file date) are kept, not dropped.
    expired = [
        row
        for row in data_rows
        if datetime.strptime(row[0], "%a %b %d %Y").date() < date(*time.gmtime(asof_s)[:3])
    ]
    assert bool(expired) is lists_expired
    assert sum(c.expiry_ns < snap.asof_ns for c in snap.contracts) == 2 * len(expired)


# ---------------------------------------------------------------------------- JSON


def test_small_json():
    snap = parse_cboe_json(small_json(), RECV)
    assert (snap.venue, snap.underlying, snap.spot, snap.asof_ns) == (
        "cboe",
        "SPX",
        5592.85,
        SMALL_JSON_ASOF,
    )
    assert len(snap.contracts) == 8
    contracts = by_instrument(snap)

    call = contracts["SPXW250314C05590000"]
    assert call.expiry_ns == SPXW_2025_03_14_PM and call.strike == Decimal(5590)
    assert (call.bid, call.ask, call.mark) == (11.9, 12.1, pytest.approx(12.0))
    assert (call.iv, call.delta, call.gamma, call.vega, call.theta) == (
        0.1921,
        0.5441,
        0.0151,
        0.5428,
        -23.8392,
    )
    assert call.open_interest == 1287.0 and call.multiplier == 100.0
    assert call.underlying_price == call.index_price == 5592.85
    assert (call.ts_event_ns, call.ts_recv_ns) == (SMALL_JSON_ASOF, RECV)

    monthly = contracts["SPX250321P05600000"]
    assert monthly.root == "SPX" and monthly.expiry_ns == SPX_2025_03_21_AM
    assert monthly.right is OptionRight.PUT and monthly.open_interest == 14233.0
    assert contracts["SPXW250321C05650000"].expiry_ns == SPXW_2025_03_21_PM

    assert contracts["SPXW250314C04500000"].iv is None  # CBOE iv 0 = none


def test_json_accepts_bytes_str_and_dict():
    raw = (DATA / "cboe_small.json").read_bytes()
    from_bytes = parse_cboe_json(raw, RECV)
    assert from_bytes == parse_cboe_json(raw.decode(), RECV) == parse_cboe_json(small_json(), RECV)


def test_json_timestamp_with_offset_is_respected():
    doc = small_json()
    doc["timestamp"] = "2025-03-14T10:45:03-04:00"
    assert parse_cboe_json(doc, RECV).asof_ns == SMALL_JSON_ASOF


def vix_sample_rows() -> list[bytes]:
    """The three captured CBOE option rows, verbatim (skips when ../shared is absent)."""
    rows = []
    for name in ("call", "put", "call_halfstrike"):
        path = shared_fixture(
            FIXTURES / "protocol_samples" / f"cboe_delayed_option_row_vix_{name}_capture.json"
        )
        rows.append(path.read_bytes().strip())
    return rows


def test_json_protocol_sample_rows():
    rows = [json.loads(raw) for raw in vix_sample_rows()]
    # The captured document's top level was not stored; wrap the rows in the real shape.
    doc = {"timestamp": "2026-05-20 23:02:44", "data": {"symbol": "_VIX", "current_price": 17.2}}
    doc["data"]["options"] = rows
    snap = parse_cboe_json(doc, RECV)
    assert snap.underlying == "VIX" and snap.spot == 17.2
    assert snap.asof_ns == 1_779_318_164 * S  # 2026-05-20T23:02:44Z
    call, put, half = snap.contracts
    vix_settle = 1_781_703_000 * S  # 2026-06-17 09:30 EDT = 13:30Z (AM-settled)
    assert call.instrument == "VIX260617C00010000" and call.strike == Decimal(10)
    assert half.strike == Decimal("10.5") and half.right is OptionRight.CALL
    assert {c.expiry_ns for c in snap.contracts} == {vix_settle}
    assert (call.iv, call.open_interest, call.bid, call.ask) == (1.3271, 3856.0, 9.85, 10.15)
    assert call.mark == pytest.approx(10.0)
    assert (put.right, put.iv, put.open_interest, put.bid, put.ask) == (
        OptionRight.PUT,
        1.0421,
        17.0,
        0.0,
        0.02,
    )
    assert put.mark == pytest.approx(0.01)
    assert (half.open_interest, half.gamma, half.delta) == (15.0, 0.0002, 0.9967)


def _without(doc: dict, *path: str) -> dict:
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: {**d, "data": {**d["data"], "options": []}}, "no option rows"),
        (lambda d: _without(d, "data"), "'data' object"),
        (lambda d: _without(d, "data", "options"), "data.options"),
        (lambda d: _without(d, "timestamp"), "timestamp"),
        (lambda d: {**d, "timestamp": "yesterday"}, "bad timestamp"),
        (lambda d: _without(d, "data", "current_price"), "missing current_price"),
        (lambda d: {**d, "data": {**d["data"], "current_price": "5592.85"}}, "not a finite number"),
        (lambda d: {**d, "data": {**d["data"], "current_price": -1.0}}, "must be a positive"),
        (lambda d: [d], "'data' object"),
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: b"", "not valid JSON"),
    ],
)
def test_json_document_errors(make, message):
    with pytest.raises(ParseError) as err:
        parse_cboe_json(make(small_json()), RECV)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("open_interest", None, "SPXW250314P05590000: missing open_interest"),
        ("iv", "0.19", "SPXW250314P05590000: iv is not a finite number"),
        ("gamma", True, "gamma is not a finite number"),
        ("bid", float("nan"), "bid is not a finite number"),
        ("option", "SPXW250314Q05590000", "bad OCC symbol"),
        ("option", "RUT250314P05590000", "unknown CBOE option root 'RUT'"),
    ],
)
def test_json_row_errors(field, value, message):
    doc = small_json()
    doc["data"]["options"][1][field] = value
    with pytest.raises(ParseError) as err:
        parse_cboe_json(doc, RECV)
    assert message in str(err.value)


def test_json_row_not_an_object():
    doc = small_json()
    doc["data"]["options"][2] = "SPXW250314C05600000"
    with pytest.raises(ParseError, match=r"data.options\[2\] is not an object"):
        parse_cboe_json(doc, RECV)
