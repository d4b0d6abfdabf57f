"""Deterministic synthetic option chains (SPX-like), as normalised snapshots or CBOE documents.

Used by `regime-engine demo`, the tests and the benchmarks. The chain has a 0DTE SPXW
expiry, dailies, weeklies, AM-settled monthlies and LEAPS; a skewed smile; open interest
concentrated on round strikes, puts below spot and calls above, so that the dealer gamma
profile has a zero-gamma level below spot and distinct walls.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np

from connectors.cboe.products import product_for_root
from engine.core.pricing import bsm_gamma_into
from engine.core.settlement import NEW_YORK, instant_ns
from schemas.chain import ChainSnapshot
from schemas.contracts import OptionContract, OptionRight
from schemas.time import NS_PER_S, NS_PER_YEAR

DEFAULT_ASOF = datetime(2025, 3, 14, 14, 30, tzinfo=UTC)  # a Friday, 10:30 New York


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _expiries(asof: date, count: int) -> list[tuple[str, date]]:
    """(root, date) pairs: SPXW every business day for 6 weeks, then SPX AM monthlies."""
    out: list[tuple[str, date]] = []
    day = asof
    while len(out) < min(count, 30):
        if day.weekday() < 5:
            out.append(("SPXW", day))
        day += timedelta(days=1)
    year, month = asof.year, asof.month
    while len(out) < count:
        month += 1
        if month > 12:
            year, month = year + 1, 1
        friday = _third_friday(year, month)
        if friday > out[-1][1]:
            out.append(("SPX", friday))
    return out


def spx_like_chain(
    n_contracts: int = 2_000,
    seed: int = 7,
    spot: float = 5_047.3,
    asof: datetime = DEFAULT_ASOF,
    n_expiries: int | None = None,
) -> ChainSnapshot:
    """A seeded SPX/SPXW chain of about ``n_contracts`` contracts (calls and puts per strike)."""
    rng = np.random.default_rng(seed)
    asof_ns = instant_ns(asof)
    if n_expiries is None:
        n_expiries = max(4, min(48, n_contracts // 200))
    strikes_per_expiry = max(2, n_contracts // (2 * n_expiries))
    contracts: list[OptionContract] = []
    for root, day in _expiries(asof.astimezone(NEW_YORK).date(), n_expiries):
        expiry_ns = product_for_root(root).expiry_ns(day)
        tau = max((expiry_ns - asof_ns) / NS_PER_YEAR, 1e-6)
        atm_vol = 0.13 + 0.05 * math.exp(-tau * 6.0)
        half_width = min(0.6, max(0.04, 4.0 * atm_vol * math.sqrt(tau)))
        step = max(5.0, round(2 * half_width * spot / strikes_per_expiry / 5.0) * 5.0)
        first = round(spot * (1 - half_width) / step) * step
        strikes = first + step * np.arange(strikes_per_expiry)
        moneyness = np.log(strikes / spot) / math.sqrt(max(tau, 1 / 365))
        iv = np.clip(atm_vol * (1 - 0.9 * moneyness + 1.6 * moneyness**2), 0.06, 2.0)
        roundness = 1.0 + 3.0 * (strikes % 100 == 0) + 1.5 * (strikes % 50 == 0)
        noise = rng.lognormal(0.0, 0.5, strikes.shape[0])
        # Customers hold calls above spot (overwriters' short calls bought back by dealers
        # aside) and puts below it: OI bumps at about +2 % and -4 % of spot.
        call_bump = np.exp(-0.5 * (np.log(strikes / (spot * 1.02)) / (0.5 * half_width)) ** 2)
        put_bump = np.exp(-0.5 * (np.log(strikes / (spot * 0.95)) / (0.5 * half_width)) ** 2)
        scale = 900.0 * (0.4 if root == "SPXW" else 1.0)
        call_oi = np.round(scale * roundness * noise * (0.02 + call_bump))
        put_oi = np.round(scale * roundness * noise * (0.02 + put_bump))
        gamma = np.empty(strikes.shape[0])
        bsm_gamma_into(
            np.full(strikes.shape[0], spot),
            strikes,
            np.full(strikes.shape[0], tau),
            iv,
            0.0,
            0.0,
            gamma,
        )
        yymmdd = day.strftime("%y%m%d")
        for j, strike in enumerate(strikes):
            strike_dec = Decimal(int(strike)) if strike == int(strike) else Decimal(str(strike))
            for right, oi in ((OptionRight.CALL, call_oi[j]), (OptionRight.PUT, put_oi[j])):
                contracts.append(
                    OptionContract(
                        venue="cboe",
                        underlying="SPX",
                        instrument=f"{root}{yymmdd}{right.value}{round(strike * 1000):08d}",
                        root=root,
                        expiry_ns=expiry_ns,
                        strike=strike_dec,
                        right=right,
                        multiplier=100.0,
                        open_interest=float(oi),
                        iv=round(float(iv[j]), 4),
                        underlying_price=spot,
                        index_price=spot,
                        ts_event_ns=asof_ns,
                        ts_recv_ns=asof_ns,
                        gamma=round(float(gamma[j]), 4),
                    )
                )
    return ChainSnapshot(
        venue="cboe", underlying="SPX", spot=spot, asof_ns=asof_ns, contracts=tuple(contracts)
    )


def to_cboe_delayed_quotes(snapshot: ChainSnapshot) -> dict:
    """Render a snapshot as a CBOE delayed-quotes JSON document (``data.options[]`` rows)."""
    asof = datetime.fromtimestamp(snapshot.asof_ns / NS_PER_S, tz=UTC)
    stamp = asof.strftime("%Y-%m-%d %H:%M:%S")  # the CDN's top-level timestamp is naive UTC
    rows = [
        {
            "option": c.instrument,
            "bid": 0.0,
            "bid_size": 0.0,
            "ask": 0.0,
            "ask_size": 0.0,
            "iv": c.iv if c.iv is not None else 0.0,
            "open_interest": c.open_interest,
            "volume": 0.0,
            "delta": 0.0,
            "gamma": c.gamma if c.gamma is not None else 0.0,
            "vega": 0.0,
            "theta": 0.0,
            "rho": 0.0,
            "theo": 0.0,
            "change": 0.0,
            "open": 0.0,
            "high": 0.0,
            "low": 0.0,
            "tick": "no_change",
            "last_trade_price": 0.0,
            "last_trade_time": None,
            "percent_change": 0.0,
            "prev_day_close": 0.0,
        }
        for c in snapshot.contracts
    ]
    return {
        "timestamp": stamp,
        "data": {
            "symbol": f"_{snapshot.underlying}",
            "current_price": snapshot.spot,
            "last_trade_time": asof.astimezone(NEW_YORK).strftime("%Y-%m-%dT%H:%M:%S"),
            "options": rows,
        },
    }
