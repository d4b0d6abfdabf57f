"""CME product table (connectors/cme/products.py): multipliers, clocks, underlying months."""

from __future__ import annotations

from datetime import date

import pytest

from connectors.cme.products import PRODUCTS, Quoting, UnderlyingRule, product
from connectors.common.errors import ParseError

S = 1_000_000_000


def test_table_covers_the_design_products():
    assert set(PRODUCTS) >= {"ES", "NQ", "ZN", "CL", "GC"}
    assert {code: p.multiplier for code, p in PRODUCTS.items()} == {
        "ES": 50.0,
        "NQ": 20.0,
        "ZN": 1000.0,
        "CL": 1000.0,
        "GC": 100.0,
    }
    assert {code: p.futures_product_id for code, p in PRODUCTS.items()} == {
        "ES": 133,
        "NQ": 146,
        "ZN": 316,
        "CL": 425,
        "GC": 437,
    }
    assert all(p.code == code for code, p in PRODUCTS.items())  # = Redis {underlying}
    zn = PRODUCTS["ZN"]
    assert (zn.futures_quoting, zn.option_quoting) == (
        Quoting.THIRTY_SECONDS,
        Quoting.SIXTY_FOURTHS,
    )
    assert {p.futures_quoting for c, p in PRODUCTS.items() if c != "ZN"} == {Quoting.DECIMAL}


@pytest.mark.parametrize(
    ("code", "trade_date", "epoch_seconds"),
    [
        ("ES", date(2025, 3, 14), 1_741_982_400),  # 15:00 CDT = 20:00Z
        ("ES", date(2025, 1, 10), 1_736_542_800),  # 15:00 CST = 21:00Z
        ("NQ", date(2025, 3, 14), 1_741_982_400),
        ("ZN", date(2025, 2, 14), 1_739_563_200),  # 14:00 CST = 20:00Z
        ("CL", date(2025, 3, 14), 1_741_977_000),  # 14:30 EDT = 18:30Z
        ("GC", date(2025, 3, 14), 1_741_973_400),  # 13:30 EDT = 17:30Z
    ],
)
def test_daily_settlement_instants(code, trade_date, epoch_seconds):
    assert product(code).settlement_ns(trade_date) == epoch_seconds * S


@pytest.mark.parametrize(
    ("code", "family", "day", "epoch_seconds"),
    [
        ("ES", "ES", date(2025, 3, 21), 1_742_563_800),  # 08:30 CDT (09:30 ET open, SOQ)
        ("ES", "EW3", date(2025, 3, 21), 1_742_587_200),  # 15:00 CDT
        ("ES", "E1A", date(2025, 12, 22), 1_766_437_200),  # 15:00 CST = 21:00Z
        ("NQ", "QN1", date(2025, 3, 21), 1_742_587_200),
        ("ZN", "OZN", date(2025, 2, 21), 1_740_168_000),  # 14:00 CST
        ("CL", "LO", date(2025, 3, 17), 1_742_236_200),  # 14:30 EDT
        ("GC", "OG", date(2025, 3, 26), 1_743_010_200),  # 13:30 EDT
    ],
)
def test_option_expiry_instants(code, family, day, epoch_seconds):
    cme = product(code)
    assert cme.family(family).expiry_ns(day) == epoch_seconds * S


@pytest.mark.parametrize(
    ("code", "family", "last_trading_day", "month"),
    [
        # AM quarterly settles its own quarter; the same day's PM options the next one.
        ("ES", "ES", date(2025, 3, 21), date(2025, 3, 1)),
        ("ES", "EW3", date(2025, 3, 21), date(2025, 6, 1)),
        ("ES", "EW1", date(2025, 3, 7), date(2025, 3, 1)),
        ("ES", "EW", date(2025, 3, 31), date(2025, 6, 1)),
        ("ES", "E1C", date(2025, 1, 15), date(2025, 3, 1)),
        ("ES", "E1A", date(2025, 12, 22), date(2026, 3, 1)),  # after the December expiry
        ("NQ", "Q1A", date(2025, 11, 3), date(2025, 12, 1)),
        ("ZN", "OZN", date(2025, 2, 21), date(2025, 3, 1)),  # March quarterly
        ("ZN", "OZN", date(2025, 3, 21), date(2025, 6, 1)),  # April serial → June
        ("ZN", "OZN", date(2025, 11, 21), date(2025, 12, 1)),
        ("ZN", "ZN2", date(2025, 12, 12), date(2026, 3, 1)),
        ("CL", "LO", date(2025, 3, 17), date(2025, 4, 1)),
        ("CL", "LO", date(2025, 12, 16), date(2026, 1, 1)),
        ("GC", "OG", date(2025, 3, 26), date(2025, 4, 1)),
    ],
)
def test_underlying_month_rules(code, family, last_trading_day, month):
    cme = product(code)
    assert cme.underlying_month(cme.family(family), last_trading_day) == month


def test_rules_and_families():
    assert PRODUCTS["ES"].underlying_rule is UnderlyingRule.EQUITY_QUARTERLY
    assert {f.code for f in PRODUCTS["ES"].families.values() if not f.european} == {"ES"}
    assert {"EW", "EW1", "EW4", "E1A", "E5B", "E3C", "E2D"} <= set(PRODUCTS["ES"].families)
    assert PRODUCTS["GC"].family("OG").option_product_id == 192
    with pytest.raises(ParseError, match="unknown CME option code 'OZB' for ZN"):
        PRODUCTS["ZN"].family("OZB")
    with pytest.raises(ParseError, match="known: CL, ES, GC, NQ, ZN"):
        product("6E")
