"""Slow, obvious reference implementations that the numba kernels are tested against.

Plain Python and ``math`` (scipy's normal CDF for the exposures), one contract and one grid
point at a time, straight from the definitions of DESIGN §2.1 and §2.6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm


@dataclass
class RefContract:
    strike: float
    tau: float  # years
    iv: float  # fraction
    basis: float  # forward / spot
    position: float  # dealer contracts, signed
    multiplier: float
    is_call: bool
    buckets: int = 1


def black76_gamma(forward: float, strike: float, tau: float, sigma: float) -> float:
    """Γ per 1 unit of forward, r = 0: φ(d1) / (F σ √T)."""
    d1 = (math.log(forward / strike) + 0.5 * sigma * sigma * tau) / (sigma * math.sqrt(tau))
    pdf = math.exp(-0.5 * d1 * d1) / math.sqrt(2.0 * math.pi)
    return pdf / (forward * sigma * math.sqrt(tau))


def contract_gex(c: RefContract, spot: float) -> float:
    """position × multiplier × Γ(F) × F² × 0.01 with F = spot × basis."""
    if c.tau <= 0 or not (c.iv > 0):
        return 0.0
    forward = spot * c.basis
    return (
        c.position
        * c.multiplier
        * black76_gamma(forward, c.strike, c.tau, c.iv)
        * forward**2
        * 0.01
    )


def profile(contracts: list[RefContract], spots: list[float], bucket_bit: int = 1) -> list[float]:
    return [sum(contract_gex(c, s) for c in contracts if c.buckets & bucket_bit) for s in spots]


def strike_gex(contracts: list[RefContract], spot: float) -> dict[float, tuple[float, float]]:
    """strike → (net dealer call GEX, net dealer put GEX) at spot."""
    out: dict[float, list[float]] = {}
    for c in contracts:
        sides = out.setdefault(c.strike, [0.0, 0.0])
        sides[0 if c.is_call else 1] += contract_gex(c, spot)
    return {k: (v[0], v[1]) for k, v in out.items()}


def walls(by_strike: dict[float, tuple[float, float]]) -> tuple[float, float, float]:
    """(call wall, put wall, abs gamma strike): largest |call|, |put|, |call|+|put|."""
    call_wall = max(by_strike, key=lambda k: abs(by_strike[k][0]))
    put_wall = max(by_strike, key=lambda k: abs(by_strike[k][1]))
    abs_strike = max(by_strike, key=lambda k: abs(by_strike[k][0]) + abs(by_strike[k][1]))
    return call_wall, put_wall, abs_strike


def sign_changes(values: list[float], spots: list[float]) -> list[float]:
    """Linear interpolation at every sign change between consecutive grid points."""
    roots = []
    for g in range(len(values) - 1):
        a, b = values[g], values[g + 1]
        if (a < 0 < b) or (a > 0 > b):
            roots.append(spots[g] + (spots[g + 1] - spots[g]) * a / (a - b))
    return roots


def side_walls(
    by_strike: dict[float, tuple[float, float]], spot: float, lo: float, hi: float
) -> tuple[float | None, float | None]:
    """(call wall, put wall) by the side rule: the largest |call| among strikes in [spot, hi],
    the largest |put| among strikes in [lo, spot]; None when no such strike has a nonzero
    value. Ties go to the first strike in ``by_strike``'s order."""
    call_wall = put_wall = None
    best_call = best_put = 0.0
    for strike, (call, put) in by_strike.items():
        if spot <= strike <= hi and abs(call) > best_call:
            call_wall, best_call = strike, abs(call)
        if lo <= strike <= spot and abs(put) > best_put:
            put_wall, best_put = strike, abs(put)
    return call_wall, put_wall


def strike_open_interest(
    rows: list[tuple[float, bool, float]],
) -> dict[float, tuple[float, float]]:
    """strike → (call OI, put OI) from (strike, is_call, open interest) rows; OI ≤ 0 ignored."""
    out: dict[float, list[float]] = {}
    for strike, is_call, oi in rows:
        sides = out.setdefault(strike, [0.0, 0.0])
        if oi > 0:
            sides[0 if is_call else 1] += oi
    return {k: (v[0], v[1]) for k, v in out.items()}


def _delta(c: RefContract, spot: float, tau: float, iv: float) -> float:
    """Δ per 1 unit of spot of one contract (Black-76 on F = spot × basis, r = 0), from
    scipy's normal CDF."""
    forward = spot * c.basis
    d1 = (math.log(forward / c.strike) + 0.5 * iv * iv * tau) / (iv * math.sqrt(tau))
    n = float(norm.cdf(d1))
    return c.basis * (n if c.is_call else n - 1.0)


def exposures(c: RefContract, spot: float) -> tuple[float, float, float]:
    """(DEX, VEX, CHEX) of one contract (DESIGN §2.6); vanna and charm by central finite
    differences of Δ in σ and in τ, independently of the kernels' closed forms."""
    if c.tau <= 0 or not (c.iv > 0):
        return 0.0, 0.0, 0.0
    w = c.position * c.multiplier * spot
    dex = w * _delta(c, spot, c.tau, c.iv)
    hs = 1e-5 * c.iv
    vanna = (_delta(c, spot, c.tau, c.iv + hs) - _delta(c, spot, c.tau, c.iv - hs)) / (2 * hs)
    ht = 1e-5 * c.tau
    charm = (_delta(c, spot, c.tau - ht, c.iv) - _delta(c, spot, c.tau + ht, c.iv)) / (2 * ht)
    return dex, w * vanna * 0.01, w * charm / 365.0


def root_nearest(contracts: list[RefContract], spot: float) -> float:
    """The dealer GEX profile's root nearest ``spot`` (a scan of ±5 %, then bisection)."""

    def gex(s: float) -> float:
        return sum(contract_gex(c, s) for c in contracts)

    grid = [spot * (0.95 + 0.1 * i / 100) for i in range(101)]
    values = [gex(s) for s in grid]
    brackets = [(i, i + 1) for i in range(100) if values[i] * values[i + 1] < 0]
    assert brackets, "the reference profile has no root within 5 % of spot"
    i, j = min(brackets, key=lambda b: abs((grid[b[0]] + grid[b[1]]) / 2 - spot))
    (lo, at_lo), hi = (grid[i], values[i]), grid[j]
    for _ in range(40):
        mid = (lo + hi) / 2
        at_mid = gex(mid)
        if (at_lo < 0) == (at_mid < 0):
            lo, at_lo = mid, at_mid
        else:
            hi = mid
    return (lo + hi) / 2
