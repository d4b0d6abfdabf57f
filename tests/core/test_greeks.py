"""Scalar greeks against scipy closed forms and finite differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm

from engine.core import pricing

SPOTS = (40.0, 95.0, 100.0, 105.0, 250.0)
TAUS = (1e-7, 1.0 / (365 * 24), 1.0 / 365, 0.25, 2.0, 10.0)
VOLS = (0.02, 0.3, 1.5, 6.0)
RATES = ((0.0, 0.0), (0.05, 0.05), (0.05, 0.01), (0.03, -0.02))  # (rate, carry)
CASES = list(itertools.product(SPOTS, TAUS, VOLS, RATES))


def _d1_d2(x, strike, tau, sigma, carry):
    sd = sigma * math.sqrt(tau)
    d1 = (math.log(x / strike) + (carry + 0.5 * sigma**2) * tau) / sd
    return d1, d1 - sd


TINY = 1e-300  # below this a double reference has underflowed (or lost its relative precision)


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=TINY)


def _check(actual: float, expected: float, log_bound: float) -> None:
    """``actual`` matches ``expected``; where ``expected`` underflowed, the log-space bound
    ``log_bound`` on the true magnitude (no underflow there) shows it is below TINY too."""
    if abs(expected) > TINY:
        assert _close(actual, expected)
    else:
        assert log_bound < math.log(TINY), (
            "the reference underflowed but the true value is not tiny"
        )
        assert abs(actual) <= TINY


def _log_sum(*logs: float) -> float:
    """log(sum(exp(l))) without underflow."""
    top = max(logs)
    return top if top == -math.inf else top + math.log(sum(math.exp(v - top) for v in logs))


def _log_abs(value: float) -> float:
    return math.log(abs(value)) if value else -math.inf


def _expected_gamma(x, tau, sigma, rate, carry):
    d1, _ = _d1_d2(x, 100.0, tau, sigma, carry)
    expected = math.exp((carry - rate) * tau) * norm.pdf(d1) / (x * sigma * math.sqrt(tau))
    log_bound = (carry - rate) * tau + norm.logpdf(d1) - math.log(x * sigma * math.sqrt(tau))
    return expected, log_bound


def _expected_vanna(x, tau, sigma, rate, carry):
    d1, d2 = _d1_d2(x, 100.0, tau, sigma, carry)
    expected = -math.exp((carry - rate) * tau) * norm.pdf(d1) * d2 / sigma
    log_bound = (carry - rate) * tau + norm.logpdf(d1) + _log_abs(d2) - math.log(sigma)
    return expected, log_bound


def _expected_charm(x, tau, sigma, rate, carry, is_call):
    d1, d2 = _d1_d2(x, 100.0, tau, sigma, carry)
    sd = sigma * math.sqrt(tau)
    common = norm.pdf(d1) * (carry / sd - d2 / (2 * tau))
    growth = math.exp((carry - rate) * tau)
    if is_call:
        expected = -growth * (common + (carry - rate) * norm.cdf(d1))
    else:
        expected = -growth * (common - (carry - rate) * norm.cdf(-d1))
    # |charm| <= growth × (|pdf term| + |carry - rate| × cdf), each term in log space
    log_cdf = norm.logcdf(d1) if is_call else norm.logcdf(-d1)
    log_bound = (carry - rate) * tau + _log_sum(
        norm.logpdf(d1) + _log_abs(carry / sd - d2 / (2 * tau)),
        _log_abs(carry - rate) + log_cdf,
    )
    return expected, log_bound


def test_the_grid_is_mostly_meaningful():
    """The underflowed cases (checked by their log-space bound only) are counted, so a change
    of grid cannot make most of it compare 0 with 0."""
    gammas = [_expected_gamma(x, t, v, *r)[0] for x, t, v, r in CASES]
    vannas = [_expected_vanna(x, t, v, *r)[0] for x, t, v, r in CASES]
    charms = [_expected_charm(x, t, v, *r, c)[0] for x, t, v, r in CASES for c in (True, False)]
    assert len(CASES) == 480
    assert sum(abs(g) > TINY for g in gammas) == 360
    assert sum(abs(g) > TINY for g in vannas) == 360
    assert sum(abs(g) > TINY for g in charms) == 780


@pytest.mark.parametrize(("x", "tau", "sigma", "rates"), CASES)
def test_gamma_matches_scipy(x, tau, sigma, rates):
    rate, carry = rates
    expected, log_bound = _expected_gamma(x, tau, sigma, rate, carry)
    _check(pricing.bsm_gamma(x, 100.0, tau, sigma, rate, carry), expected, log_bound)


@pytest.mark.parametrize(("x", "tau", "sigma", "rates"), CASES)
def test_vanna_matches_scipy(x, tau, sigma, rates):
    rate, carry = rates
    expected, log_bound = _expected_vanna(x, tau, sigma, rate, carry)
    _check(pricing.bsm_vanna(x, 100.0, tau, sigma, rate, carry), expected, log_bound)


@pytest.mark.parametrize(("x", "tau", "sigma", "rates"), CASES)
@pytest.mark.parametrize("is_call", [True, False])
def test_charm_matches_scipy(x, tau, sigma, rates, is_call):
    rate, carry = rates
    expected, log_bound = _expected_charm(x, tau, sigma, rate, carry, is_call)
    _check(pricing.bsm_charm(x, 100.0, tau, sigma, rate, carry, is_call), expected, log_bound)


def _delta(x, strike, tau, sigma, rate, carry, is_call):
    d1, _ = _d1_d2(x, strike, tau, sigma, carry)
    growth = math.exp((carry - rate) * tau)
    return growth * (norm.cdf(d1) if is_call else norm.cdf(d1) - 1.0)


@pytest.mark.parametrize(
    ("x", "tau", "sigma"), [(95.0, 0.25, 0.3), (120.0, 1.0, 0.8), (60.0, 3.0, 0.5)]
)
@pytest.mark.parametrize("is_call", [True, False])
def test_greeks_are_derivatives_of_delta(x, tau, sigma, is_call):
    """Sign and unit conventions: gamma = ∂Δ/∂x, vanna = ∂Δ/∂σ, charm = −∂Δ/∂τ."""
    rate, carry = 0.04, 0.01
    h = 1e-4

    def delta(**kw):
        args = {"x": x, "strike": 100.0, "tau": tau, "sigma": sigma}
        args.update(kw)
        return _delta(args["x"], args["strike"], args["tau"], args["sigma"], rate, carry, is_call)

    gamma_fd = (delta(x=x + h) - delta(x=x - h)) / (2 * h)
    vanna_fd = (delta(sigma=sigma + h) - delta(sigma=sigma - h)) / (2 * h)
    charm_fd = -(delta(tau=tau + h) - delta(tau=tau - h)) / (2 * h)
    assert pricing.bsm_gamma(x, 100.0, tau, sigma, rate, carry) == pytest.approx(gamma_fd, rel=1e-6)
    assert pricing.bsm_vanna(x, 100.0, tau, sigma, rate, carry) == pytest.approx(vanna_fd, rel=1e-6)
    assert pricing.bsm_charm(x, 100.0, tau, sigma, rate, carry, is_call) == pytest.approx(
        charm_fd, rel=1e-5
    )


@pytest.mark.parametrize(
    ("x", "strike", "tau", "sigma"),
    [
        (100.0, 100.0, 0.0, 0.3),
        (100.0, 100.0, -0.1, 0.3),
        (100.0, 100.0, 0.5, 0.0),
        (0.0, 100.0, 0.5, 0.3),
    ],
)
def test_undefined_inputs_give_nan(x, strike, tau, sigma):
    assert math.isnan(pricing.bsm_gamma(x, strike, tau, sigma, 0.0, 0.0))
    assert math.isnan(pricing.bsm_vanna(x, strike, tau, sigma, 0.0, 0.0))
    assert math.isnan(pricing.bsm_charm(x, strike, tau, sigma, 0.0, 0.0, True))


def test_gamma_into_matches_scalar():
    rng = np.random.default_rng(3)
    n = 200
    x = rng.uniform(50, 150, n)
    strike = rng.uniform(50, 150, n)
    tau = rng.uniform(1e-4, 3, n)
    sigma = rng.uniform(0.05, 2, n)
    out = np.empty(n)
    pricing.bsm_gamma_into(x, strike, tau, sigma, 0.0, 0.0, out)
    expected = norm.pdf(np.log(x / strike) / (sigma * np.sqrt(tau)) + 0.5 * sigma * np.sqrt(tau))
    expected /= x * sigma * np.sqrt(tau)
    np.testing.assert_allclose(out, expected, rtol=1e-10)
