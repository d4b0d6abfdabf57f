"""Black-76 prices and the vectorised implied-volatility solver (engine/core/pricing.py).

References are slow and obvious: scipy's normal CDF for prices, scipy's brentq for the
volatility, one option at a time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from engine.core.pricing import black76_price, black76_quote, implied_vol

ROUND_TRIP = 1e-8  # relative volatility error allowed after price → solve


def reference_price(forward, strike, tau, sigma, is_call, rate=0.0):
    sd = sigma * math.sqrt(tau)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    discount = math.exp(-rate * tau)
    if is_call:
        return discount * (forward * norm.cdf(d1) - strike * norm.cdf(d2))
    return discount * (strike * norm.cdf(-d2) - forward * norm.cdf(-d1))


def reference_vol(price, forward, strike, tau, is_call, rate=0.0):
    return brentq(
        lambda s: reference_price(forward, strike, tau, s, is_call, rate) - price,
        1e-6,
        20.0,
        xtol=1e-15,
        rtol=4 * np.finfo(float).eps,
        maxiter=500,
    )


# Standardised log-moneyness z = ln(K/F) / (σ√T): the grid covers ±8 standard deviations
# at every expiry and volatility, so no generated price underflows.
forwards = st.floats(min_value=0.5, max_value=50_000.0)
taus = st.floats(min_value=-5.0, max_value=1.3).map(lambda e: 10.0**e)  # ~5 min … 20 years
vols = st.floats(min_value=0.01, max_value=4.0)
moneyness = st.floats(min_value=-8.0, max_value=8.0)


@settings(max_examples=400, deadline=None)
@given(forward=forwards, tau=taus, sigma=vols, z=moneyness)
def test_round_trip_out_of_the_money(forward, tau, sigma, z):
    total = sigma * math.sqrt(tau)
    assume(total < 12.0)  # beyond it the premium is within 1e-9 of its upper bound
    strike = forward * math.exp(z * total)
    is_call = strike >= forward
    price = float(black76_price(forward, strike, tau, sigma, is_call))
    solved = float(implied_vol(price, forward, strike, tau, is_call))
    assert abs(solved / sigma - 1.0) < ROUND_TRIP


@settings(max_examples=400, deadline=None)
@given(forward=forwards, tau=taus, sigma=vols, z=st.floats(min_value=-3.0, max_value=3.0))
def test_round_trip_in_the_money_and_parity(forward, tau, sigma, z):
    """In the money the time value (the out-of-the-money premium) carries the volatility;
    it must stand well above the rounding of the whole premium to pin σ to 1e-8."""
    total = sigma * math.sqrt(tau)
    assume(total < 5.0)
    strike = forward * math.exp(z * total)
    call, put = black76_price(forward, strike, tau, sigma, np.array([True, False]))
    assume(np.spacing(max(call, put)) < 1e-13 * min(call, put))
    solved = implied_vol(np.array([call, put]), forward, strike, tau, np.array([True, False]))
    assert np.all(np.abs(solved / sigma - 1.0) < ROUND_TRIP)


@settings(max_examples=200, deadline=None)
@given(
    forward=forwards,
    tau=taus,
    sigma=vols,
    z=moneyness,
    rate=st.floats(min_value=-0.01, max_value=0.15),
)
def test_round_trip_with_a_discount_rate(forward, tau, sigma, z, rate):
    total = sigma * math.sqrt(tau)
    assume(total < 12.0)
    strike = forward * math.exp(z * total)
    is_call = strike >= forward
    price = float(black76_price(forward, strike, tau, sigma, is_call, rate))
    assert abs(float(implied_vol(price, forward, strike, tau, is_call, rate)) / sigma - 1) < 1e-8


def test_matches_scipy_on_random_options():
    rng = np.random.default_rng(20250314)
    n = 300
    forward = rng.uniform(10.0, 6000.0, n)
    strike = forward * np.exp(rng.uniform(-0.6, 0.6, n))
    tau = 10.0 ** rng.uniform(-3.0, 0.7, n)
    sigma = rng.uniform(0.05, 1.2, n)
    is_call = rng.random(n) < 0.5
    rate = rng.uniform(0.0, 0.06, n)
    expected_price = np.array(
        [
            reference_price(*args)
            for args in zip(forward, strike, tau, sigma, is_call, rate, strict=True)
        ]
    )
    price = black76_price(forward, strike, tau, sigma, is_call, rate)
    assert np.all(np.abs(price - expected_price) <= 1e-12 * forward + 1e-10 * expected_price)

    # Quoted premiums, rounded to a cent like a settlement: the solver must agree with a
    # bracketing root finder on the reference price, whatever volatility that implies.
    quoted = np.round(expected_price, 2)
    undiscounted_intrinsic = np.where(is_call, forward - strike, strike - forward)
    solvable = quoted * np.exp(rate * tau) > np.maximum(undiscounted_intrinsic, 0) + 0.02
    solved = implied_vol(quoted, forward, strike, tau, is_call, rate)
    checked = 0
    for i in np.flatnonzero(solvable):
        expected = reference_vol(quoted[i], forward[i], strike[i], tau[i], is_call[i], rate[i])
        assert solved[i] == pytest.approx(expected, rel=1e-9), i
        checked += 1
    assert checked > 200
    assert np.isnan(
        solved[~solvable & (quoted * np.exp(rate * tau) <= undiscounted_intrinsic)]
    ).all()


# ---------------------------------------------------------------------------- edges


@pytest.mark.parametrize("is_call", [True, False])
def test_no_arbitrage_bounds_give_nan(is_call):
    forward, strike, tau, rate = 100.0, 90.0, 0.5, 0.03
    discount = math.exp(-rate * tau)
    intrinsic = discount * max(forward - strike, 0.0) if is_call else 0.0
    upper = discount * (forward if is_call else strike)
    prices = np.array([-1.0, 0.0, intrinsic, intrinsic * 0.999, upper, upper * 1.01, math.nan])
    if not is_call:
        prices[2:4] = [0.0, -0.5]  # an out-of-the-money put has no intrinsic value
    solved = implied_vol(prices, forward, strike, tau, is_call, rate)
    assert np.isnan(solved).all()
    # just inside the bounds there is a volatility, small and large
    inside = np.array([intrinsic + 1e-6 * discount, upper * (1 - 1e-6)])
    assert np.isfinite(implied_vol(inside, forward, strike, tau, is_call, rate)).all()


def test_invalid_inputs_give_nan():
    price = np.full(7, 5.0)
    forward = np.array([0.0, -100.0, 100.0, 100.0, 100.0, math.inf, 100.0])
    strike = np.array([100.0, 100.0, 0.0, 100.0, 100.0, 100.0, 100.0])
    tau = np.array([0.5, 0.5, 0.5, 0.0, -0.1, 0.5, math.nan])
    assert np.isnan(implied_vol(price, forward, strike, tau, True)).all()
    assert np.isnan(black76_price(forward, strike, tau, 0.2, True)).all()
    assert np.isnan(black76_price(100.0, 100.0, 0.5, np.array([0.0, -0.2, math.nan]), True)).all()


@pytest.mark.parametrize(
    ("tau", "sigma"),
    [(1e-8, 0.2), (1e-7, 2.0), (1.0 / (365 * 24 * 60), 0.15), (30.0, 0.9), (5.0, 4.0)],
)
def test_tiny_and_long_expiries_at_the_money(tau, sigma):
    forward = 5693.25
    for is_call in (True, False):
        price = float(black76_price(forward, forward, tau, sigma, is_call))
        assert float(implied_vol(price, forward, forward, tau, is_call)) == pytest.approx(
            sigma, rel=1e-10
        )


@pytest.mark.parametrize("z", [-35.0, -20.0, 20.0, 30.0])
def test_far_wings(z):
    """Premiums down to ~1e-260 of the forward still pin the volatility."""
    forward, tau, sigma = 100.0, 0.25, 0.3
    strike = forward * math.exp(z * sigma * math.sqrt(tau))
    is_call = strike >= forward
    price = float(black76_price(forward, strike, tau, sigma, is_call))
    assert 0.0 < price < 1e-80
    assert float(implied_vol(price, forward, strike, tau, is_call)) == pytest.approx(
        sigma, rel=1e-10
    )


def test_deep_in_the_money_without_time_value_is_nan():
    """When the time value is lost in the premium's rounding no volatility is claimed."""
    forward, strike, tau, sigma = 5000.0, 3000.0, 0.01, 0.2  # 40+ standard deviations
    price = float(black76_price(forward, strike, tau, sigma, True))
    assert price == forward - strike
    assert math.isnan(float(implied_vol(price, forward, strike, tau, True)))


def test_near_the_upper_bound():
    forward, strike, tau, sigma = 100.0, 130.0, 4.0, 3.0  # σ√T = 6
    price = float(black76_price(forward, strike, tau, sigma, True))
    assert forward - price < 0.05 * forward
    assert float(implied_vol(price, forward, strike, tau, True)) == pytest.approx(sigma, rel=1e-9)


def test_price_rises_with_volatility_and_obeys_parity():
    forward, strike, tau = 67.18, 68.0, 0.1
    sigmas = np.linspace(0.01, 3.0, 300)
    calls = black76_price(forward, strike, tau, sigmas, True)
    puts = black76_price(forward, strike, tau, sigmas, False)
    assert np.all(np.diff(calls) > 0) and np.all(np.diff(puts) > 0)
    np.testing.assert_allclose(calls - puts, forward - strike, rtol=0, atol=1e-12)


def test_broadcasting_and_shapes():
    prices = black76_price(5693.25, np.array([[5600.0], [5800.0]]), 0.02, [0.2, 0.3], True)
    assert prices.shape == (2, 2)
    solved = implied_vol(prices, 5693.25, np.array([[5600.0], [5800.0]]), 0.02, True)
    np.testing.assert_allclose(solved, [[0.2, 0.3], [0.2, 0.3]], rtol=1e-10)
    assert implied_vol([], 100.0, 100.0, 0.1, True).shape == (0,)


def test_rate_changes_the_answer():
    price = float(black76_price(100.0, 100.0, 1.0, 0.25, True, rate=0.05))
    assert float(implied_vol(price, 100.0, 100.0, 1.0, True, 0.05)) == pytest.approx(0.25)
    assert float(implied_vol(price, 100.0, 100.0, 1.0, True, 0.0)) < 0.25


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize("strike", [60_000.0, 67_000.0, 72_500.0])
@pytest.mark.parametrize(("tau", "sigma"), [(1 / 365, 0.6), (0.25, 0.45), (2.0, 0.8)])
def test_one_option_quote_matches_the_textbook_greeks(is_call, strike, tau, sigma):
    forward = 67_640.0
    quote = black76_quote(forward, strike, tau, sigma, is_call)
    sd = sigma * math.sqrt(tau)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    sign = 1.0 if is_call else -1.0
    assert quote.price == pytest.approx(reference_price(forward, strike, tau, sigma, is_call))
    assert quote.delta == pytest.approx(norm.cdf(d1) - (0.0 if is_call else 1.0), rel=1e-12)
    assert quote.gamma == pytest.approx(norm.pdf(d1) / (forward * sd), rel=1e-12)
    assert quote.vega == pytest.approx(forward * norm.pdf(d1) * math.sqrt(tau) / 100, rel=1e-12)
    theta = -forward * norm.pdf(d1) * sigma / (2 * math.sqrt(tau)) / 365
    assert quote.theta == pytest.approx(theta, rel=1e-12)
    rho = sign * strike * tau * norm.cdf(sign * d2) / 100
    assert quote.rho == pytest.approx(rho, rel=1e-12)
