"""Option pricing, in numba: BSM greeks, Black-76 prices and greeks, the implied-vol solver.

The one place the engine, the connectors and the simulator price options. Scalar kernels
(``bsm_gamma``, ``bsm_vanna``, ``bsm_charm``, ``black76_quote``) are called from other kernels
or per option; ``bsm_gamma_into``, ``black76_price`` and ``implied_vol`` run one compiled loop
over whole arrays. The slow references the tests compare them against are in
``tests/reference.py``, ``tests/core/test_greeks.py`` and ``tests/core/test_black76.py``.

Black-76 chains and the implied-volatility solver (:func:`black76_price`, :func:`implied_vol`):

European options on a futures price ``F`` (Black 1976), discounted at a continuously
compounded rate ``r`` over the time to expiry ``T`` in years::

    call = e^{-rT} (F N(d1) - K N(d2)),   put = e^{-rT} (K N(-d2) - F N(-d1)),
    d1,2 = ln(F/K) / s ± s/2,             s = σ √T.

Everything is computed on the *normalised out-of-the-money* price, which depends only on
``x = -|ln(F/K)|`` and ``s``::

    b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2),   0 < b < b_max = e^{x/2},

because an in-the-money option is its intrinsic value plus the out-of-the-money price of
the same strike (put-call parity), and subtracting the intrinsic value up front keeps deep
in-the-money prices from cancelling inside the solver. ``b`` is increasing in ``s``, convex
below ``s_c = √(2|x|)`` and concave above it. The solver (one numba loop over the chain) runs
a Newton iteration safeguarded by a bracket that every evaluation tightens and a bisection
whenever Newton leaves the bracket or stops halving it, on the objective that is closest to
linear in each region (as in Jäckel, "Let's be rational", 2015):

* below ``b(s_c)``: ``ln b(s) − ln β`` (the lower wing, where ``b`` falls like
  ``exp(−x²/2s²)``), bracket ``(0, s_c]``;
* above it: ``b(s) − β`` near the inflection point, and ``ln(b_max − β) − ln(b_max − b(s))``
  close to the upper bound, where ``b_max − b`` falls like ``exp(−s²/8)``.

``N`` is evaluated through ``erfc`` in the tails and ``erf`` between ``d2`` and ``d1`` when the
interval straddles 0, so a price is accurate to a few ulps relative wherever it is
representable. Prices outside the no-arbitrage bounds (at or below the intrinsic value, at
or above the discounted forward for a call / strike for a put), non-positive or non-finite
inputs and expired options give NaN: no volatility explains them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------- scalar greeks


@njit(cache=True)
def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@njit(cache=True)
def _d1(x: float, strike: float, tau: float, sigma: float, carry: float) -> float:
    return (math.log(x / strike) + (carry + 0.5 * sigma * sigma) * tau) / (sigma * math.sqrt(tau))


@njit(cache=True)
def _valid(x: float, strike: float, tau: float, sigma: float) -> bool:
    return x > 0.0 and strike > 0.0 and tau > 0.0 and sigma > 0.0


@njit(cache=True)
def bsm_gamma(
    x: float, strike: float, tau: float, sigma: float, rate: float, carry: float
) -> float:
    """Gamma per 1 unit of ``x`` (generalised Black-Scholes-Merton; NaN when undefined).

    Black-76 on a forward: ``carry = 0``; Black-Scholes on spot with dividend yield q:
    ``carry = rate - q``.
    """
    if not _valid(x, strike, tau, sigma):
        return math.nan
    d1 = _d1(x, strike, tau, sigma, carry)
    return (
        math.exp((carry - rate) * tau)
        * INV_SQRT_2PI
        * math.exp(-0.5 * d1 * d1)
        / (x * sigma * math.sqrt(tau))
    )


@njit(cache=True)
def bsm_vanna(
    x: float, strike: float, tau: float, sigma: float, rate: float, carry: float
) -> float:
    """Vanna ∂Δ/∂σ (per 1.00 of vol, not per vol point); the same for calls and puts."""
    if not _valid(x, strike, tau, sigma):
        return math.nan
    d1 = _d1(x, strike, tau, sigma, carry)
    d2 = d1 - sigma * math.sqrt(tau)
    return -math.exp((carry - rate) * tau) * INV_SQRT_2PI * math.exp(-0.5 * d1 * d1) * d2 / sigma


@njit(cache=True)
def bsm_charm(
    x: float, strike: float, tau: float, sigma: float, rate: float, carry: float, is_call: bool
) -> float:
    """Charm: the change of delta per year of calendar time passing (−∂Δ/∂τ)."""
    if not _valid(x, strike, tau, sigma):
        return math.nan
    sd = sigma * math.sqrt(tau)
    d1 = _d1(x, strike, tau, sigma, carry)
    d2 = d1 - sd
    pdf = INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    common = pdf * (carry / sd - d2 / (2.0 * tau))
    growth = math.exp((carry - rate) * tau)
    if is_call:
        return -growth * (common + (carry - rate) * norm_cdf(d1))
    return -growth * (common - (carry - rate) * norm_cdf(-d1))


@njit(cache=True)
def bsm_gamma_into(x, strike, tau, sigma, rate, carry, out):
    """Vectorised :func:`bsm_gamma` over equal-length arrays (``rate``/``carry`` scalars)."""
    for i in range(out.shape[0]):
        out[i] = bsm_gamma(x[i], strike[i], tau[i], sigma[i], rate, carry)


# ---------------------------------------------------------------- Black-76 quote (one option)


class Black76Quote(NamedTuple):
    """Black-76 price and greeks of one option on a forward, r = 0 (price currency units)."""

    price: float
    delta: float
    gamma: float  # per 1 unit of the forward
    vega: float  # per 1 vol point
    theta: float  # per day (365 a year)
    rho: float  # per 1 % of rate


@njit(cache=True)
def black76_quote(
    forward: float, strike: float, tau: float, sigma: float, is_call: bool
) -> Black76Quote:
    """Price and greeks of one option from the textbook Black-76 formulas (r = 0).

    Inputs must be positive and finite (no checks: the caller prices listed options).
    """
    sd = sigma * math.sqrt(tau)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    pdf = INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    if is_call:
        price = forward * norm_cdf(d1) - strike * norm_cdf(d2)
        delta = norm_cdf(d1)
        rho = strike * tau * norm_cdf(d2) * 0.01
    else:
        price = strike * norm_cdf(-d2) - forward * norm_cdf(-d1)
        delta = norm_cdf(d1) - 1.0
        rho = -strike * tau * norm_cdf(-d2) * 0.01
    gamma = bsm_gamma(forward, strike, tau, sigma, 0.0, 0.0)
    vega = forward * pdf * math.sqrt(tau) * 0.01
    theta = -forward * pdf * sigma / (2.0 * math.sqrt(tau)) / 365.0
    return Black76Quote(max(price, 0.0), delta, gamma, vega, theta, rho)


# ---------------------------------------------------------------- Black-76 chains and implied vols


_SQRT_2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_EPS = 2.220446049250313e-16
MAX_TOTAL_VOL = 80.0  # σ√T beyond this is not a price anyone quotes; b_max − b(80) ≈ 1e-306
MAX_ITERATIONS = 100


@njit(cache=True)
def _otm_price(x: float, s: float) -> float:
    """Normalised out-of-the-money price b(x, s) for x = -|ln(F/K)| ≤ 0 and s = σ√T > 0."""
    d1 = x / s + 0.5 * s
    d2 = x / s - 0.5 * s  # < 0 always
    if d1 > -1.0:
        # N(d1) − N(d2) through erf: no cancellation when the interval straddles 0, and a
        # well-conditioned difference of small numbers just below it. The rest of b is
        # (e^{x/2} − e^{−x/2}) N(d2) = 2 sinh(x/2) N(d2) ≤ 0.
        spread = 0.5 * (math.erf(d1 / _SQRT_2) - math.erf(d2 / _SQRT_2))
        return math.exp(0.5 * x) * spread + 2.0 * math.sinh(0.5 * x) * norm_cdf(d2)
    # Both in the lower tail: erfc keeps full relative accuracy there.
    return math.exp(0.5 * x) * norm_cdf(d1) - math.exp(-0.5 * x) * norm_cdf(d2)


@njit(cache=True)
def _otm_complement(x: float, s: float) -> float:
    """b_max − b(x, s) = e^{x/2} N(−d1) + e^{−x/2} N(d2), both terms positive."""
    d1 = x / s + 0.5 * s
    d2 = x / s - 0.5 * s
    return math.exp(0.5 * x) * norm_cdf(-d1) + math.exp(-0.5 * x) * norm_cdf(d2)


@njit(cache=True)
def _otm_vega(x: float, s: float) -> float:
    """∂b/∂s = φ(x/s) e^{−s²/8} (the same for calls and puts)."""
    return INV_SQRT_2PI * math.exp(-0.5 * (x / s) ** 2 - 0.125 * s * s)


@njit(cache=True)
def _price_one(forward: float, strike: float, tau: float, sigma: float, is_call: bool, rate: float):
    if not (forward > 0.0 and strike > 0.0 and tau > 0.0 and sigma > 0.0):
        return math.nan
    if not (math.isfinite(forward) and math.isfinite(strike) and math.isfinite(sigma)):
        return math.nan
    if not (math.isfinite(tau) and math.isfinite(rate)):
        return math.nan
    log_moneyness = math.log(forward / strike)
    s = sigma * math.sqrt(tau)
    otm = math.sqrt(forward * strike) * _otm_price(-abs(log_moneyness), s)
    intrinsic = max(forward - strike, 0.0) if is_call else max(strike - forward, 0.0)
    return math.exp(-rate * tau) * (intrinsic + otm)


@njit(cache=True)
def _bisect(lo: float, hi: float) -> float:
    if lo > 0.0 and hi > 4.0 * lo:
        return math.sqrt(lo * hi)  # spans orders of magnitude: halve the logarithm
    return 0.5 * (lo + hi)


@njit(cache=True)
def _objective(x: float, s: float, beta: float, b_max: float, mode: int):
    """(f, f') with f increasing in s and zero at the root; mode 0 lower, 1 middle, 2 top."""
    vega = _otm_vega(x, s)
    if mode == 0:
        b = _otm_price(x, s)
        if b <= 0.0:
            return -math.inf, 0.0
        return math.log(b) - math.log(beta), vega / b
    if mode == 1:
        return _otm_price(x, s) - beta, vega
    gap = _otm_complement(x, s)
    if gap <= 0.0:
        return math.inf, 0.0
    return math.log(b_max - beta) - math.log(gap), vega / gap


@njit(cache=True)
def _solve_otm(x: float, beta: float) -> float:
    """s = σ√T with b(x, s) = beta; NaN unless 0 < beta < b_max."""
    b_max = math.exp(0.5 * x)
    if not (beta > 0.0 and beta < b_max):
        return math.nan
    s_c = math.sqrt(-2.0 * x)
    b_c = _otm_price(x, s_c) if s_c > 0.0 else 0.0
    if beta <= b_c:
        mode = 0
        lo, hi = 0.0, s_c
        # Leading order of the lower wing: ln b ≈ −x²/(2s²).
        s = -x / math.sqrt(-2.0 * math.log(beta))
    else:
        lo, hi = s_c, math.inf
        mode = 1 if beta - b_c < 0.5 * (b_max - b_c) else 2
        s = max(s_c, math.sqrt(2.0 * math.pi) * beta)  # ATM: b ≈ s / √(2π)
        probe = max(2.0 * s, 1.0)
        while True:  # find a finite upper end of the bracket
            if _otm_price(x, probe) > beta:
                hi = probe
                break
            lo = probe
            if probe >= MAX_TOTAL_VOL:
                return math.nan  # indistinguishable from the upper bound
            probe = min(2.0 * probe, MAX_TOTAL_VOL)
    if not (lo < s < hi):
        s = _bisect(lo, hi)
    step_before_last = math.inf
    last_step = math.inf
    for _ in range(MAX_ITERATIONS):
        f, slope = _objective(x, s, beta, b_max, mode)
        if f == 0.0:
            return s
        if f < 0.0:
            lo = s
        else:
            hi = s
        newton = s - f / slope if slope > 0.0 and math.isfinite(f) else math.nan
        if math.isfinite(newton) and lo < newton < hi and abs(newton - s) <= 0.5 * step_before_last:
            s_next = newton
        else:
            s_next = _bisect(lo, hi)
        step_before_last = last_step
        last_step = abs(s_next - s)
        if last_step <= 4.0 * _EPS * s_next or hi - lo <= 4.0 * _EPS * hi:
            return s_next
        s = s_next
    return s


@njit(cache=True)
def _implied_vol_one(
    price: float, forward: float, strike: float, tau: float, is_call: bool, rate: float
) -> float:
    if not (forward > 0.0 and strike > 0.0 and tau > 0.0 and price > 0.0):
        return math.nan
    if not (math.isfinite(forward) and math.isfinite(strike) and math.isfinite(price)):
        return math.nan
    if not (math.isfinite(tau) and math.isfinite(rate)):
        return math.nan
    discount = math.exp(-rate * tau)
    intrinsic = max(forward - strike, 0.0) if is_call else max(strike - forward, 0.0)
    upper = forward if is_call else strike
    if not (discount * intrinsic < price < discount * upper):
        return math.nan
    time_value = price / discount - intrinsic  # = the out-of-the-money price of this strike
    if not time_value > 0.0:
        return math.nan
    x = -abs(math.log(forward / strike))
    s = _solve_otm(x, time_value / math.sqrt(forward * strike))
    return s / math.sqrt(tau)


@njit(cache=True)
def _implied_vol_loop(price, forward, strike, tau, is_call, rate, out) -> None:
    for i in range(out.size):
        out[i] = _implied_vol_one(price[i], forward[i], strike[i], tau[i], is_call[i], rate[i])


@njit(cache=True)
def _price_loop(forward, strike, tau, sigma, is_call, rate, out) -> None:
    for i in range(out.size):
        out[i] = _price_one(forward[i], strike[i], tau[i], sigma[i], is_call[i], rate[i])


def _columns(*columns: tuple[object, type]) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Broadcast the arguments (numpy rules) into fresh contiguous 1-d arrays."""
    arrays = [np.asarray(values, dtype=dtype) for values, dtype in columns]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return shape, [np.array(np.broadcast_to(a, shape), order="C").reshape(-1) for a in arrays]


def implied_vol(price, forward, strike, tau, is_call, rate=0.0) -> np.ndarray:
    """Black-76 implied volatility (fraction per year) of each option; NaN where none exists.

    Arguments broadcast against each other (numpy rules): ``price`` per unit of underlying,
    ``forward`` the futures price, ``tau`` years to expiry, ``is_call`` booleans, ``rate``
    the continuously compounded discount rate. One compiled loop serves the whole chain.
    """
    shape, args = _columns(
        (price, np.float64),
        (forward, np.float64),
        (strike, np.float64),
        (tau, np.float64),
        (is_call, np.bool_),
        (rate, np.float64),
    )
    out = np.empty(shape, dtype=np.float64)
    _implied_vol_loop(*args, out.reshape(-1))
    return out


def black76_price(forward, strike, tau, sigma, is_call, rate=0.0) -> np.ndarray:
    """Black-76 price per unit of underlying of each option (NaN for invalid inputs).

    Arguments broadcast like :func:`implied_vol`; computed from the same normalised
    out-of-the-money price the solver inverts.
    """
    shape, args = _columns(
        (forward, np.float64),
        (strike, np.float64),
        (tau, np.float64),
        (sigma, np.float64),
        (is_call, np.bool_),
        (rate, np.float64),
    )
    out = np.empty(shape, dtype=np.float64)
    _price_loop(*args, out.reshape(-1))
    return out


def warm_up() -> None:
    """Compile (or load from the cache) every pricing kernel once, outside any hot path."""
    implied_vol(np.array([1.0]), 100.0, 100.0, 0.1, True)
    black76_price(100.0, 100.0, 0.1, np.array([0.2]), True)
    black76_quote(100.0, 100.0, 0.1, 0.5, True)
    bsm_gamma_into(np.ones(4), np.ones(4), np.ones(4), np.ones(4), 0.0, 0.0, np.zeros(4))
    bsm_vanna(100.0, 100.0, 0.1, 0.5, 0.0, 0.0)
    bsm_charm(100.0, 100.0, 0.1, 0.5, 0.0, 0.0, True)
