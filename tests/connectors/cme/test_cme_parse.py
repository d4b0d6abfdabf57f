"""CME settlement JSON → option-chain snapshots (connectors/cme/parse.py).

The documents are hand-written in the shape of CME's settlements JSON (connectors/cme/
wire.py): every value a string, commas, "-", "UNCH", "A"/"B" suffixes, "CAB", Treasury
32nds and 64ths. Premiums were set from known volatilities and rounded to each product's
tick, so the solved volatilities land near those and match scipy's to 1e-9.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from datetime import date
from decimal import Decimal

import orjson
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from connectors.cme.parse import (
    CmeChainConfig,
    CmeOptionSeries,
    parse_cme_futures,
    parse_cme_settlements,
)
from connectors.cme.products import Quoting
from connectors.cme.values import (
    CmePrice,
    PriceFlag,
    parse_change,
    parse_count,
    parse_month,
    parse_price,
    parse_strike,
    parse_trade_date,
)
from connectors.common.errors import ParseError
from schemas.contracts import OptionRight

S = 1_000_000_000
RECV = 1_742_000_000_123_456_789
YEAR_NS = 365 * 86_400 * S
# Instants written out as UTC epoch seconds (independent of zoneinfo).
ES_ASOF = 1_741_982_400 * S  # 2025-03-14 15:00 CDT = 20:00Z: equity settlement time
EW3_EXPIRY = 1_742_587_200 * S  # 2025-03-21 15:00 CDT
ES_Q_EXPIRY = 1_742_563_800 * S  # 2025-03-21 08:30 CDT = 09:30 EDT (SOQ)
ZN_ASOF = 1_739_563_200 * S  # 2025-02-14 14:00 CST = 20:00Z
OZN_EXPIRY = 1_740_168_000 * S  # 2025-02-21 14:00 CST
CL_ASOF = 1_741_977_000 * S  # 2025-03-14 14:30 EDT = 18:30Z
LO_EXPIRY = 1_742_236_200 * S  # 2025-03-17 14:30 EDT
GC_ASOF = 1_741_973_400 * S  # 2025-03-14 13:30 EDT = 17:30Z
OG_EXPIRY = 1_743_010_200 * S  # 2025-03-26 13:30 EDT


def row(month=None, *, strike=None, kind=None, settle, oi, volume="0", change="UNCH", **prices):
    """One settlements row; open/high/low/last default to "-" as CME prints them."""
    out = {} if strike is None else {"strike": strike, "type": kind}
    if month is not None:
        out["month"] = month
    out |= {
        "open": prices.get("open", "-"),
        "high": prices.get("high", "-"),
        "low": prices.get("low", "-"),
        "last": prices.get("last", "-"),
        "change": change,
        "settle": settle,
        "volume": volume,
        "openInterest": oi,
    }
    return out


def document(trade_date, rows):
    return {"settlements": rows, "tradeDate": trade_date, "empty": False}


ES_FUTURES = document(
    "03/14/2025",
    [
        row("MAR 25", settle="5,638.50", oi="2,012,345", volume="1,512,331", change="+117.75",
            open="5,530.00", high="5,645.25", low="5,526.50", last="5,638.75"),
        row("JUN 25", settle="5,693.25", oi="189,001", volume="410,122", change="+118.00",
            open="5,585.00", high="5,701.50B", low="5,580.25", last="5,693.00A"),
        row("SEP 25", settle="5,748.00", oi="1,234", change="UNCH"),
        row("DEC 25", settle="-", oi="-", change="-"),
        {"month": "Total", "open": "", "high": "", "low": "", "last": "", "change": "",
         "settle": "", "volume": "1,922,453", "openInterest": "2,202,580"},
    ],
)  # fmt: skip


def ew3_rows():
    """EW3 (Friday week 3) expiring 2025-03-21 on the June future (5,693.25).

    Out-of-the-money premiums from vols 27 % (5400) … 15.5 % (5900); in-the-money ones by
    parity, some with a 0.25 carry deduction as CME applies; 5300 call settled below
    intrinsic; 5000 put at cabinet; 6500 call without a settle; 6500 put at intrinsic.
    """
    c, p = "Call", "Put"
    return [
        row(strike="5,000", kind=c, settle="693.25", oi="15"),
        row(strike="5,000", kind=p, settle="CAB", oi="3,410"),
        row(strike="5,300", kind=c, settle="393.00", oi="40"),
        row(strike="5,300", kind=p, settle="3.45", oi="8,800", volume="1,201", change="-1.10",
            high="4.10B", low="3.40A", last="3.45"),
        row(strike="5,400", kind=c, settle="300.25", oi="102"),
        row(strike="5,400", kind=p, settle="7.25", oi="12,345", change="-2.75"),
        row(strike="5,500", kind=c, settle="207.50", oi="530"),
        row(strike="5,500", kind=p, settle="14.50", oi="22,017", volume="3,030"),
        row(strike="5,600", kind=c, settle="122.50", oi="1,850"),
        row(strike="5,600", kind=p, settle="29.25", oi="31,900"),
        row(strike="5,700", kind=c, settle="53.25", oi="25,250", volume="9,861", change="+20.50",
            open="34.00", high="55.75", low="31.25A", last="52.50B"),
        row(strike="5,700", kind=p, settle="60.00", oi="18,101"),
        row(strike="5,800", kind=c, settle="14.25", oi="40,500"),
        row(strike="5,800", kind=p, settle="121.00", oi="905"),
        row(strike="5,900", kind=c, settle="2.50", oi="19,770"),
        row(strike="5,900", kind=p, settle="209.25", oi="77"),
        row(strike="6,000", kind=c, settle="0.40", oi="9,999"),
        row(strike="6,000", kind=p, settle="307.25", oi="0"),
        row(strike="6,500", kind=c, settle="-", oi="-"),
        row(strike="6,500", kind=p, settle="806.75", oi="-"),
        {"strike": "Total", "type": "", "open": "", "high": "", "low": "", "last": "",
         "change": "", "settle": "-", "volume": "14,092", "openInterest": "213,452"},
    ]  # fmt: skip


def es_quarterly_rows():
    """ES quarterly (AM) expiring 2025-03-21 08:30 CT on the March future (5,638.50)."""
    return [
        row(strike="5500", kind="Call", settle="164.00", oi="60,321"),
        row(strike="5500", kind="Put", settle="25.50", oi="101,202"),
        row(strike="5600", kind="Call", settle="82.00", oi="44,000"),
        row(strike="5600", kind="Put", settle="43.50", oi="70,070"),
        row(strike="5700", kind="Call", settle="27.00", oi="88,123"),
        row(strike="5700", kind="Put", settle="88.50", oi="12,000"),
    ]


def es_series():
    return [
        CmeOptionSeries(document("03/14/2025", ew3_rows()), "EW3", date(2025, 3, 21)),
        CmeOptionSeries(document("03/14/2025", es_quarterly_rows()), "ES", date(2025, 3, 21)),
    ]


def reference_vol(price, forward, strike, tau, is_call):
    def black(sigma):
        sd = sigma * math.sqrt(tau)
        d1 = math.log(forward / strike) / sd + sd / 2
        d2 = d1 - sd
        if is_call:
            return forward * norm.cdf(d1) - strike * norm.cdf(d2)
        return strike * norm.cdf(-d2) - forward * norm.cdf(-d1)

    return brentq(lambda s: black(s) - price, 1e-4, 5.0, xtol=1e-14, rtol=1e-15)


def by_instrument(snapshot):
    return {c.instrument: c for c in snapshot.contracts}


# ---------------------------------------------------------------------------- ES


def test_es_chain_terms_counts_and_clock():
    snapshot = parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV)
    assert (snapshot.venue, snapshot.underlying) == ("cme", "ES")
    assert snapshot.spot == 5638.50  # front month with a settle: MAR 25
    assert snapshot.asof_ns == ES_ASOF
    assert len(snapshot.contracts) == 20 + 6  # totals row left out
    contracts = by_instrument(snapshot)
    put = contracts["EW3-20250321-5400-P"]
    assert put.root == "EW3"
    assert put.strike == Decimal(5400) and str(put.strike) == "5400"
    assert put.right is OptionRight.PUT
    assert put.expiry_ns == EW3_EXPIRY
    assert put.multiplier == 50.0
    assert put.open_interest == 12_345.0  # the previous day's, commas removed
    assert put.mark == 7.25
    assert put.underlying_price == 5693.25  # EW3 on the 3rd Friday exercises into June
    assert put.index_price == 5638.50
    assert (put.ts_event_ns, put.ts_recv_ns) == (ES_ASOF, RECV)
    assert put.gamma is None and put.bid is None and put.ask is None
    quarterly = contracts["ES-20250321-5600-C"]
    assert quarterly.expiry_ns == ES_Q_EXPIRY
    assert quarterly.underlying_price == 5638.50  # the AM quarterly settles the March future
    assert quarterly.open_interest == 44_000.0
    assert {c.expiry_ns for c in snapshot.contracts} == {EW3_EXPIRY, ES_Q_EXPIRY}


def test_es_volatilities_match_scipy_and_the_generating_skew():
    snapshot = parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV)
    contracts = by_instrument(snapshot)
    tau = (EW3_EXPIRY - ES_ASOF) / YEAR_NS
    generating = {5400: 0.27, 5500: 0.24, 5600: 0.21, 5700: 0.18, 5800: 0.16, 5900: 0.155}
    for strike, vol in generating.items():
        otm_right = "C" if strike >= 5693.25 else "P"
        otm = contracts[f"EW3-20250321-{strike}-{otm_right}"]
        expected = reference_vol(otm.mark, 5693.25, strike, tau, otm_right == "C")
        assert otm.iv == pytest.approx(expected, rel=1e-9)
        assert otm.iv == pytest.approx(vol, abs=0.004)  # tick rounding moves it a little
        itm = contracts[f"EW3-20250321-{strike}-{'P' if otm_right == 'C' else 'C'}"]
        assert itm.iv == otm.iv  # iv_from="otm": the strike's out-of-the-money volatility
    q_tau = (ES_Q_EXPIRY - ES_ASOF) / YEAR_NS
    assert contracts["ES-20250321-5500-P"].iv == pytest.approx(
        reference_vol(25.50, 5638.50, 5500, q_tau, False), rel=1e-9
    )
    assert contracts["ES-20250321-5500-C"].iv == contracts["ES-20250321-5500-P"].iv


def test_rows_without_a_volatility_are_kept_with_none():
    contracts = by_instrument(parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV))
    cab = contracts["EW3-20250321-5000-P"]
    assert cab.iv is None and cab.mark == 0.05  # cabinet: ES's CAB is 0.05 index points
    assert cab.open_interest == 3_410.0
    at_intrinsic = contracts["EW3-20250321-5000-C"]  # no time value, OTM twin at cabinet
    assert at_intrinsic.iv is None and at_intrinsic.mark == 693.25
    unsettled = contracts["EW3-20250321-6500-C"]
    assert unsettled.iv is None and unsettled.mark is None and unsettled.open_interest == 0.0
    assert contracts["EW3-20250321-6500-P"].iv is None
    # Settled below intrinsic (393.25): no volatility of its own, the put's by default.
    below = contracts["EW3-20250321-5300-C"]
    assert below.iv == contracts["EW3-20250321-5300-P"].iv
    assert below.iv == pytest.approx(
        reference_vol(3.45, 5693.25, 5300, (EW3_EXPIRY - ES_ASOF) / YEAR_NS, False), rel=1e-9
    )


def test_own_premium_volatilities():
    config = CmeChainConfig(iv_from="own")
    contracts = by_instrument(parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV, config))
    tau = (EW3_EXPIRY - ES_ASOF) / YEAR_NS
    assert contracts["EW3-20250321-5300-C"].iv is None  # below intrinsic
    carried = contracts["EW3-20250321-5500-C"]  # 207.50 = 193.25 + 14.50 − 0.25 carry
    assert carried.iv == pytest.approx(reference_vol(207.50, 5693.25, 5500, tau, True), rel=1e-9)
    assert carried.iv < contracts["EW3-20250321-5500-P"].iv
    # Exact parity: both rights of 5600 give the same volatility on their own.
    assert contracts["EW3-20250321-5600-C"].iv == pytest.approx(
        contracts["EW3-20250321-5600-P"].iv, rel=1e-9
    )


def test_discount_rate_is_configurable():
    base = by_instrument(parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV))
    rated = by_instrument(
        parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV, CmeChainConfig(rate=0.045))
    )
    put = "EW3-20250321-5500-P"
    assert rated[put].iv > base[put].iv  # discounting: the same premium needs more volatility
    assert rated[put].iv == pytest.approx(base[put].iv, rel=2e-3)


@pytest.mark.parametrize("encode", [orjson.dumps, json.dumps, lambda d: d])
def test_accepts_bytes_text_and_decoded_json(encode):
    series = [CmeOptionSeries(encode(document("03/14/2025", ew3_rows())), "EW3", date(2025, 3, 21))]
    snapshot = parse_cme_settlements(series, encode(ES_FUTURES), "ES", RECV)
    assert len(snapshot.contracts) == 20


def test_explicit_underlying_month_overrides_the_rule():
    series = [
        CmeOptionSeries(
            document("03/14/2025", es_quarterly_rows()), "ES", date(2025, 3, 21), "SEP 25"
        )
    ]
    snapshot = parse_cme_settlements(series, ES_FUTURES, "ES", RECV)
    assert {c.underlying_price for c in snapshot.contracts} == {5748.00}


def test_futures_curve_reads_every_column():
    curve = parse_cme_futures(orjson.dumps(ES_FUTURES), "ES")
    assert curve.trade_date == date(2025, 3, 14)
    assert dict(curve.settles) == {
        date(2025, 3, 1): 5638.50,
        date(2025, 6, 1): 5693.25,
        date(2025, 9, 1): 5748.00,
    }
    assert (curve.front_month, curve.front_settle) == (date(2025, 3, 1), 5638.50)
    assert len(curve.months) == 4  # DEC 25 listed without a settle; Total left out
    june = curve.months[1].values
    assert june.high == CmePrice(5701.50, PriceFlag.BID)
    assert june.last == CmePrice(5693.00, PriceFlag.ASK)
    assert (june.change, june.volume, june.prior_open_interest) == (118.0, 410_122.0, 189_001.0)
    assert curve.months[2].values.change == 0.0  # UNCH
    dec = curve.months[3].values
    assert (dec.settle, dec.change, dec.prior_open_interest, dec.open) == (None, None, None, None)


# ---------------------------------------------------------------------------- ZN, CL, GC

ZN_FUTURES = document(
    "02/14/2025",
    [
        row("MAR 25", settle="110'165", oi="4,310,554", volume="1,705,220", change="+0'055",
            open="109'305", high="110'200B", low="109'290", last="110'160"),
        row("JUN 25", settle="109'302", oi="95,004", change="+0'06"),
        row("SEP 25", settle="-", oi="12", change="-"),
        {"month": "Total", "open": "", "high": "", "low": "", "last": "", "change": "",
         "settle": "", "volume": "1,705,220", "openInterest": "4,405,570"},
    ],
)  # fmt: skip

OZN_ROWS = [
    row(strike="107.0", kind="Put", settle="CAB", oi="1,500"),
    row(strike="109.5", kind="Call", settle="1'08", oi="600"),
    row(strike="109.5", kind="Put", settle="0'07", oi="31,220", high="0'09", low="0'06A"),
    row(strike="110.5", kind="Call", settle="0'26", oi="18,000"),
    row(strike="110.5", kind="Put", settle="0'25", oi="20,400", change="-0'04"),
    row(strike="111.0", kind="Call", settle="0'13", oi="45,678", change="+0'03"),
    row(strike="111.0", kind="Put", settle="0'44", oi="2,000"),
    row(strike="112.0", kind="Call", settle="0'03", oi="60,001"),
    row(strike="112.0", kind="Put", settle="1'34", oi="150"),
]


def test_zn_thirty_seconds_sixty_fourths_and_next_quarterly():
    series = [CmeOptionSeries(document("02/14/2025", OZN_ROWS), "OZN", date(2025, 2, 21))]
    snapshot = parse_cme_settlements(series, ZN_FUTURES, "ZN", RECV)
    assert snapshot.spot == 110.515625  # 110'165 = 110 + 16.5/32
    assert snapshot.asof_ns == ZN_ASOF
    contracts = by_instrument(snapshot)
    assert len(contracts) == 9
    put = contracts["OZN-20250221-109.5-P"]
    assert put.mark == 7 / 64  # 0'07
    assert put.underlying_price == 110.515625  # Feb expiry → March quarterly
    assert put.expiry_ns == OZN_EXPIRY
    assert put.multiplier == 1000.0 and put.strike == Decimal("109.5")
    tau = (OZN_EXPIRY - ZN_ASOF) / YEAR_NS
    assert put.iv == pytest.approx(reference_vol(7 / 64, 110.515625, 109.5, tau, False), rel=1e-9)
    assert put.iv == pytest.approx(0.075, abs=0.002)
    call = contracts["OZN-20250221-112-C"]
    assert call.mark == 3 / 64 and call.iv == pytest.approx(0.07, abs=0.003)
    assert contracts["OZN-20250221-112-P"].mark == 1 + 34 / 64  # 1'34
    cab = contracts["OZN-20250221-107-P"]
    assert cab.mark is None and cab.iv is None  # ZN's cabinet is a $1–$15 range
    assert cab.open_interest == 1_500.0


def test_zn_futures_fractions():
    curve = parse_cme_futures(ZN_FUTURES, "ZN")
    march = curve.months[0].values
    assert march.change == 5.5 / 32
    assert march.high == CmePrice(110 + 20 / 32, PriceFlag.BID)
    assert curve.settles[date(2025, 6, 1)] == 109 + 30.25 / 32  # 109'302


CL_FUTURES = document(
    "03/14/2025",
    [
        row("APR 25", settle="67.18", oi="310,250", volume="250,111", change="+0.63"),
        row("MAY 25", settle="66.91", oi="260,002", change="+0.60"),
        row("JUN 25", settle="66.63", oi="190,900", change="+0.57"),
    ],
)
LO_ROWS = [
    row(strike="66.50", kind="Call", settle="1.25", oi="5,100"),
    row(strike="66.50", kind="Put", settle="0.57", oi="9,900"),
    row(strike="67.00", kind="Call", settle="0.92", oi="12,000"),
    row(strike="67.00", kind="Put", settle="0.74", oi="8,000"),
    row(strike="68.00", kind="Call", settle="0.46", oi="20,500"),
    row(strike="68.00", kind="Put", settle="1.28", oi="3,300"),
]


def test_cl_new_york_clock_and_option_month_future():
    series = [CmeOptionSeries(document("03/14/2025", LO_ROWS), "LO", date(2025, 3, 17))]
    snapshot = parse_cme_settlements(series, CL_FUTURES, "CL", RECV)
    assert snapshot.asof_ns == CL_ASOF
    contracts = by_instrument(snapshot)
    assert set(contracts) == {f"LO-20250317-{k}-{r}" for k in ("66.5", "67", "68") for r in "CP"}
    put = contracts["LO-20250317-66.5-P"]
    assert put.expiry_ns == LO_EXPIRY and put.multiplier == 1000.0
    assert put.underlying_price == 67.18  # the April future
    tau = (LO_EXPIRY - CL_ASOF) / YEAR_NS
    assert put.iv == pytest.approx(reference_vol(0.57, 67.18, 66.5, tau, False), rel=1e-9)
    assert put.iv == pytest.approx(0.36, abs=0.005)


GC_FUTURES = document(
    "03/14/2025",
    [
        row("APR 25", settle="3,001.10", oi="401,000", change="+12.40"),
        row("JUN 25", settle="3,027.40", oi="88,000", change="+12.20"),
    ],
)
OG_ROWS = [
    row(strike="2,950", kind="Call", settle="71.40", oi="4,000"),
    row(strike="2,950", kind="Put", settle="20.30", oi="15,000"),
    row(strike="3,000", kind="Call", settle="37.40", oi="22,000"),
    row(strike="3,000", kind="Put", settle="36.30", oi="21,000"),
    row(strike="3,050", kind="Call", settle="16.80", oi="30,000"),
    row(strike="3,050", kind="Put", settle="65.70", oi="1,000"),
]


def test_gc_multiplier_clock_and_volatility():
    series = [CmeOptionSeries(document("03/14/2025", OG_ROWS), "OG", date(2025, 3, 26))]
    snapshot = parse_cme_settlements(series, GC_FUTURES, "GC", RECV)
    assert (snapshot.asof_ns, snapshot.spot) == (GC_ASOF, 3001.10)
    call = by_instrument(snapshot)["OG-20250326-3050-C"]
    assert (call.expiry_ns, call.multiplier, call.underlying_price) == (OG_EXPIRY, 100.0, 3001.10)
    assert call.iv == pytest.approx(0.165, abs=0.002)


# ---------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("text", "quoting", "expected"),
    [
        ("5,012.25", Quoting.DECIMAL, CmePrice(5012.25)),
        ("1,234,567.5", Quoting.DECIMAL, CmePrice(1_234_567.5)),
        (".25", Quoting.DECIMAL, CmePrice(0.25)),
        ("-.25", Quoting.DECIMAL, CmePrice(-0.25)),
        ("+117.75", Quoting.DECIMAL, CmePrice(117.75)),
        (" 72 ", Quoting.DECIMAL, CmePrice(72.0)),
        ("2.15B", Quoting.DECIMAL, CmePrice(2.15, PriceFlag.BID)),
        ("7.00A", Quoting.DECIMAL, CmePrice(7.0, PriceFlag.ASK)),
        ("110'165", Quoting.THIRTY_SECONDS, CmePrice(110 + 16.5 / 32)),
        ("110'16", Quoting.THIRTY_SECONDS, CmePrice(110.5)),
        ("110'162", Quoting.THIRTY_SECONDS, CmePrice(110 + 16.25 / 32)),
        ("110'167", Quoting.THIRTY_SECONDS, CmePrice(110 + 16.75 / 32)),
        ("110'310A", Quoting.THIRTY_SECONDS, CmePrice(110 + 31 / 32, PriceFlag.ASK)),
        ("-0'055", Quoting.THIRTY_SECONDS, CmePrice(-5.5 / 32)),
        ("110.5", Quoting.THIRTY_SECONDS, CmePrice(110.5)),
        ("0'37", Quoting.SIXTY_FOURTHS, CmePrice(37 / 64)),
        ("1'05", Quoting.SIXTY_FOURTHS, CmePrice(69 / 64)),
        ("0'10.5", Quoting.SIXTY_FOURTHS, CmePrice(10.5 / 64)),
    ],
)
def test_price_strings(text, quoting, expected):
    assert parse_price(text, quoting) == expected


def test_cabinet_and_none():
    assert parse_price("CAB", Quoting.DECIMAL, cabinet=0.05) == CmePrice(0.05, PriceFlag.CABINET)
    cab = parse_price("CAB", Quoting.SIXTY_FOURTHS)
    assert cab.flag is PriceFlag.CABINET and math.isnan(cab.value)
    assert parse_price("-", Quoting.DECIMAL) is None
    assert parse_price("", Quoting.DECIMAL) is None


NOT_A_PRICE = "is not a price"
IN_32NDS = "expected WHOLE'NN[2|5|7] in 32nds"


@pytest.mark.parametrize(
    ("text", "quoting", "why"),
    [
        ("5,0.00", Quoting.DECIMAL, NOT_A_PRICE),
        ("12.5.5", Quoting.DECIMAL, NOT_A_PRICE),
        ("1,2345", Quoting.DECIMAL, NOT_A_PRICE),
        ("A", Quoting.DECIMAL, NOT_A_PRICE),
        ("+", Quoting.DECIMAL, NOT_A_PRICE),
        ("5012.25C", Quoting.DECIMAL, NOT_A_PRICE),
        ("NaN", Quoting.DECIMAL, NOT_A_PRICE),
        # fractional in a decimal-quoted product
        ("110'16", Quoting.DECIMAL, ": fractional price in a decimal-quoted product"),
        ("110'32", Quoting.THIRTY_SECONDS, ": 32 is not below 32"),
        ("110'163", Quoting.THIRTY_SECONDS, ": " + IN_32NDS),  # third digit must be 0/2/5/7
        ("110'1", Quoting.THIRTY_SECONDS, ": " + IN_32NDS),
        ("1'64", Quoting.SIXTY_FOURTHS, ": 64 is not below 64"),
        ("0'63.5'", Quoting.SIXTY_FOURTHS, ": expected WHOLE'NN[2|5|7] in 64ths"),
    ],
)
def test_unreadable_prices_raise(text, quoting, why):
    with pytest.raises(ParseError) as err:
        parse_price(text, quoting)
    assert str(err.value).startswith(f"price {text!r}{' ' if why == NOT_A_PRICE else ''}{why}")


def test_price_must_be_a_string():
    with pytest.raises(ParseError, match="not a string"):
        parse_price(5012.25, Quoting.DECIMAL)


def test_change_count_strike_month_and_trade_date():
    assert parse_change("UNCH", Quoting.DECIMAL) == 0.0
    assert parse_change("-3.50", Quoting.DECIMAL) == -3.5
    assert parse_change("+0'055", Quoting.THIRTY_SECONDS) == 5.5 / 32
    assert parse_change("-", Quoting.DECIMAL) is None
    with pytest.raises(ParseError, match="a change carries no bid/ask/cabinet flag"):
        parse_change("1.25B", Quoting.DECIMAL)
    assert parse_count("1,234,567") == 1_234_567.0
    assert parse_count("0") == 0.0
    assert parse_count("-") is None
    for bad in ("1,23", "12.5", "-5", "many"):
        with pytest.raises(ParseError, match=f"^count {re.escape(repr(bad))} is not a count"):
            parse_count(bad)
    assert parse_strike("5,000") == Decimal(5000) and str(parse_strike("5,000")) == "5000"
    assert str(parse_strike("72.50")) == "72.5"
    assert str(parse_strike("110.0")) == "110"
    for bad in ("0", "-5", "5,00", "x", ""):
        with pytest.raises(ParseError, match=f"^strike {re.escape(repr(bad))} is not "):
            parse_strike(bad)
    assert parse_month("DEC 25") == date(2025, 12, 1)
    assert parse_month("JLY 26") == date(2026, 7, 1)  # CME's July
    assert parse_month("Jul 2026") == date(2026, 7, 1)
    for bad in ("Total", "DEK 25", "DEC", "12/25"):
        with pytest.raises(ParseError, match=f"^month {re.escape(repr(bad))} is not a contract"):
            parse_month(bad)
    assert parse_trade_date("03/14/2025") == date(2025, 3, 14)
    assert parse_trade_date("2025-03-14") == date(2025, 3, 14)
    for bad in ("14/03/2025", "2025/03/14", "03/14/25", "02/30/2025"):
        with pytest.raises(ParseError, match=f"^tradeDate {re.escape(repr(bad))} is not a date"):
            parse_trade_date(bad)


# ---------------------------------------------------------------------------- errors


def _with_row(rows, index, **changes):
    rows = copy.deepcopy(rows)
    rows[index] |= changes
    return rows


@pytest.mark.parametrize(
    ("options", "futures", "match"),
    [
        ([], ES_FUTURES, "no option series"),
        (es_series(), b"<html>Access denied</html>", "not valid JSON"),
        (es_series(), b"[]", "expected a settlements object"),
        (es_series(), {"settlements": [], "tradeDate": "03/14/2025", "empty": True}, "empty"),
        (es_series(), {"settlements": {}, "tradeDate": "03/14/2025"}, "not a list"),
        (es_series(), {"settlements": ES_FUTURES["settlements"]}, "missing 'tradeDate'"),
        (
            es_series(),
            document("03/14/2025", ES_FUTURES["settlements"] + [ES_FUTURES["settlements"][0]]),
            "listed twice",
        ),
        (
            es_series(),
            document("03/14/2025", [row("JUN 25", settle="5,693.25A", oi="1")]),
            "no usable settle",
        ),
        (
            [CmeOptionSeries(document("03/13/2025", ew3_rows()), "EW3", date(2025, 3, 21))],
            ES_FUTURES,
            "differs from the futures",
        ),
        (
            [CmeOptionSeries(document("03/14/2025", ew3_rows()), "EW9", date(2025, 3, 21))],
            ES_FUTURES,
            "unknown CME option code 'EW9'",
        ),
        (
            [CmeOptionSeries(document("03/14/2025", ew3_rows()), "EW", date(2025, 9, 30))],
            ES_FUTURES,
            "no settle for Dec 2025",
        ),
        (
            [
                CmeOptionSeries(document("03/14/2025", ew3_rows()), "EW3", date(2025, 3, 21)),
                CmeOptionSeries(document("03/14/2025", ew3_rows()), "EW3", date(2025, 3, 21)),
            ],
            ES_FUTURES,
            "given twice",
        ),
        (
            [
                CmeOptionSeries(
                    document("03/14/2025", _with_row(ew3_rows(), 3, type="Straddle")),
                    "EW3",
                    date(2025, 3, 21),
                )
            ],
            ES_FUTURES,
            "neither Call nor Put",
        ),
        (
            [
                CmeOptionSeries(
                    document("03/14/2025", _with_row(ew3_rows(), 3, strike="5,000")),
                    "EW3",
                    date(2025, 3, 21),
                )
            ],
            ES_FUTURES,
            "listed twice",
        ),
        (
            [
                CmeOptionSeries(
                    document("03/14/2025", _with_row(ew3_rows(), 5, settle="7'08")),
                    "EW3",
                    date(2025, 3, 21),
                )
            ],
            ES_FUTURES,
            r"settlements\[5\] settle",
        ),
        (
            [
                CmeOptionSeries(
                    document("03/14/2025", _with_row(ew3_rows(), 5, openInterest="12,34")),
                    "EW3",
                    date(2025, 3, 21),
                )
            ],
            ES_FUTURES,
            "openInterest",
        ),
        (
            [
                CmeOptionSeries(
                    document(
                        "03/14/2025", [row(strike="569,325", kind="Call", settle="1", oi="1")]
                    ),
                    "EW3",
                    date(2025, 3, 21),
                )
            ],
            ES_FUTURES,
            "not in the same units",
        ),
        (
            [CmeOptionSeries(document("03/14/2025", [ew3_rows()[-1]]), "EW3", date(2025, 3, 21))],
            ES_FUTURES,
            "no option rows",
        ),
        (
            [CmeOptionSeries(document("03/14/2025", [5]), "EW3", date(2025, 3, 21))],
            ES_FUTURES,
            "not an object",
        ),
    ],
)
def test_bad_documents_raise_parse_error(options, futures, match):
    with pytest.raises(ParseError, match=match):
        parse_cme_settlements(options, futures, "ES", RECV)


def test_a_month_listed_twice_raises_even_without_settles():
    rows = [*ES_FUTURES["settlements"][:4], ES_FUTURES["settlements"][3]]
    with pytest.raises(ParseError, match="month Dec 2025 listed twice"):
        parse_cme_futures(document("03/14/2025", rows), "ES")


def test_missing_settle_key_raises():
    rows = copy.deepcopy(ew3_rows())
    del rows[2]["settle"]
    series = [CmeOptionSeries(document("03/14/2025", rows), "EW3", date(2025, 3, 21))]
    with pytest.raises(ParseError, match="missing 'settle'"):
        parse_cme_settlements(series, ES_FUTURES, "ES", RECV)


def test_unknown_product_raises():
    with pytest.raises(ParseError, match="unknown CME product 'YM'"):
        parse_cme_settlements(es_series(), ES_FUTURES, "YM", RECV)


def test_config_rejects_unknown_keys_and_bad_values():
    assert CmeChainConfig.from_mapping({"rate": 0.04}).rate == 0.04
    with pytest.raises(ValueError, match="unknown cme config keys: r"):
        CmeChainConfig.from_mapping({"r": 0.04})
    with pytest.raises(ValueError, match="iv_from"):
        CmeChainConfig(iv_from="mid")
    with pytest.raises(ValueError, match="fraction per year"):
        CmeChainConfig(rate=4.5)
    with pytest.raises(ValueError, match="finite"):
        CmeChainConfig(rate=math.nan)


# ---------------------------------------------------------------------------- bad rows


def test_bad_rows_are_left_out_and_listed_when_asked():
    rows = copy.deepcopy(ew3_rows())
    rows[2]["settle"] = "-393.00"  # 5,300 call settling below zero
    rows[5]["openInterest"] = "lots"  # 5,400 put
    rows[7] = copy.deepcopy(rows[6])  # 5,500 call again, in the 5,500 put's place
    series = [
        CmeOptionSeries(document("03/14/2025", rows), "EW3", date(2025, 3, 21)),
        es_series()[1],
    ]
    rejected: list[str] = []
    snapshot = parse_cme_settlements(series, ES_FUTURES, "ES", RECV, rejected=rejected)
    what = "CME ES EW3 2025-03-21 option settlements"
    assert rejected == [
        f"{what} settlements[2] strike 5300 C: settle=-393.0 (expected >= 0)",
        f"{what} settlements[5] openInterest 'lots' is not a count of contracts",
        f"{what}: strike 5500 C listed twice",
    ]
    names = {c.instrument for c in snapshot.contracts}
    gone = {"EW3-20250321-5300-C", "EW3-20250321-5400-P", "EW3-20250321-5500-P"}
    assert not names & gone
    # Every other contract is the one of the clean chain; the in-the-money calls whose
    # out-of-the-money put is gone take their own premium's volatility instead ("otm").
    clean = by_instrument(parse_cme_settlements(es_series(), ES_FUTURES, "ES", RECV))
    got = by_instrument(snapshot)
    own_vol = {"EW3-20250321-5400-C", "EW3-20250321-5500-C"}
    assert {n: c for n, c in clean.items() if n not in gone | own_vol} == {
        n: c for n, c in got.items() if n not in own_vol
    }
    for name in own_vol:
        assert got[name].iv != clean[name].iv
        assert dataclasses.replace(got[name], iv=clean[name].iv) == clean[name]
    # Without the list, the first bad row rejects the chain.
    with pytest.raises(ParseError, match=r"settle=-393.0 \(expected >= 0\)"):
        parse_cme_settlements(series, ES_FUTURES, "ES", RECV)
