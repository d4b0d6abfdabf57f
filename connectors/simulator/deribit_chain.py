"""The simulated Deribit option chain at a session start: expiries, strikes, smile, OI."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np

from connectors.simulator.deribit_config import CURRENCIES, CurrencySpec, SessionConfig
from engine.core.pricing import bsm_gamma_into
from engine.core.settlement import deribit_expiry_ns
from schemas.time import MS_PER_YEAR, NS_PER_MS

ZERO_GAMMA_BELOW_SPOT = 0.008  # the initial chain's zero gamma sits this far below spot
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True, slots=True)
class Expiry:
    """One listed option expiry."""

    day: date
    expiry_ms: int  # 08:00 UTC settlement, ms since the epoch
    period: str  # get_instruments settlement_period: "day" | "week" | "month"
    quarterly: bool
    code: str  # "29MAR24"
    underlying_index: str  # "BTC-29MAR24" (a listed future) or "SYN.BTC-9MAR24"
    listed_ms: int  # creation_timestamp of its instruments


def _code(day: date) -> str:
    return f"{day.day}{_MONTHS[day.month - 1]}{day.year % 100:02d}"


def _last_friday(year: int, month: int) -> date:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - 4) % 7)


def _expiries(currency: str, start_ns: int) -> list[Expiry]:
    """Deribit's option expiries as of ``start``: 4 dailies, 3 Fridays, 3 month-ends and
    the next 5 quarterlies (all settling 08:00 UTC)."""
    start = datetime.fromtimestamp(start_ns / 1e9, tz=UTC)
    first = start.date()
    if deribit_expiry_ns(first) <= start_ns:
        first += timedelta(days=1)
    days: set[date] = {first + timedelta(days=k) for k in range(4)}
    friday = first + timedelta(days=(4 - first.weekday()) % 7)
    days.update(friday + timedelta(weeks=k) for k in range(3))
    year, month = first.year, first.month
    months: list[tuple[int, int]] = []
    for k in range(24):
        y, m = year + (month - 1 + k) // 12, (month - 1 + k) % 12 + 1
        if _last_friday(y, m) >= first:
            months.append((y, m))
    days.update(_last_friday(y, m) for y, m in months[:3])
    days.update(_last_friday(y, m) for y, m in [ym for ym in months if ym[1] % 3 == 0][:5])
    out = []
    start_ms = start_ns // NS_PER_MS
    for day in sorted(days):
        last_friday = _last_friday(day.year, day.month)
        if day.weekday() != 4:
            period, span_days = "day", 4
        elif day == last_friday:
            period, span_days = "month", 365 if day.month % 3 == 0 else 92
        else:
            period, span_days = "week", 28
        quarterly = day == last_friday and day.month % 3 == 0
        expiry_ms = deribit_expiry_ns(day) // NS_PER_MS
        listed_ms = min(expiry_ms - span_days * 86_400_000, start_ms - 86_400_000)
        listed_ms -= listed_ms % 86_400_000 - 8 * 3_600_000  # listed at 08:00 UTC
        code = _code(day)
        index = f"{currency}-{code}" if day.weekday() == 4 else f"SYN.{currency}-{code}"
        out.append(Expiry(day, expiry_ms, period, quarterly, code, index, listed_ms))
    return out


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` into integer parts ∝ weights (largest remainders), each ≥ minimum."""
    raw = total * weights / weights.sum()
    parts = np.maximum(np.floor(raw).astype(np.int64), minimum)
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    k = 0
    while parts.sum() < total:
        parts[order[k % len(order)]] += 1
        k += 1
    while parts.sum() > total:
        j = int(np.argmax(parts))
        parts[j] -= 1
    return parts


_NICE_STEPS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000)


def _strikes(forward: float, width: float, count: int, unit: float) -> np.ndarray:
    """``count`` listed strikes: dense near the forward, only round ones in the wings."""
    while True:
        low, high = forward * math.exp(-width), forward * math.exp(width)
        raw = (high - low) / (3 * count)
        step = max([s for s in _NICE_STEPS if s <= raw], default=1)
        candidates = np.arange(math.ceil(low / step), math.floor(high / step) + 1) * step
        candidates = candidates[candidates > 0].astype(np.float64)
        if candidates.shape[0] >= count:
            break
        width *= 1.25
    level = (
        (candidates % (unit / 10) == 0).astype(np.float64)
        + (candidates % (unit / 2) == 0)
        + (candidates % unit == 0)
    )
    priority = np.abs(np.log(candidates / forward)) / width - 0.15 * level
    chosen = np.sort(candidates[np.argsort(priority, kind="stable")[:count]])
    return chosen


def _smile(atm: float, log_moneyness: np.ndarray, tau: float) -> np.ndarray:
    """Implied vol (fraction) with put skew: rich downside wing, flatter upside."""
    x = np.clip(log_moneyness / (atm * math.sqrt(max(tau, 0.5 / 365))), -6.0, 6.0)
    return np.clip(atm * (1.0 - 0.06 * x + 0.02 * x * x), 0.15, 3.0)


def atm_vol(spec: CurrencySpec, tau: float) -> float:
    """The currency's ATM implied vol (fraction) at ``tau`` years."""
    return spec.atm_vol + 0.06 * math.exp(-8.0 * tau)  # short-dated a little richer


class Chain:
    """The option instruments (arrays indexed by instrument) at the session start."""

    def __init__(self, config: SessionConfig, rng: np.random.Generator) -> None:
        spec = CURRENCIES[config.currency]
        spot = config.initial_spot
        start_ms = config.start_ns // NS_PER_MS
        self.expiries = _expiries(config.currency, config.start_ns)
        taus = np.array([(e.expiry_ms - start_ms) / MS_PER_YEAR for e in self.expiries])
        period_weight = {"day": 1.0, "week": 1.2, "month": 1.5}
        weights = np.array(
            [period_weight[e.period] + 0.4 * e.quarterly for e in self.expiries], dtype=float
        )
        pairs = _allocate(config.n_instruments // 2, weights, 4)
        unit = spec.round_unit
        if config.spot0 is not None:  # keep the round strikes as far from spot in relative terms
            scaled = unit * spot / spec.spot0
            unit = float(min(_NICE_STEPS, key=lambda step: abs(math.log(step / scaled))))
            unit = max(unit, 10.0)
        strikes, expiry_idx, ivs, call_oi, put_oi = [], [], [], [], []
        oi_weight = []
        for e, (expiry, tau, count) in enumerate(zip(self.expiries, taus, pairs, strict=True)):
            forward = spot * math.exp(spec.basis_rate * tau)
            atm = atm_vol(spec, tau)
            width = float(np.clip(4.0 * atm * math.sqrt(max(tau, 2 / 365)), 0.08, 0.85))
            k = _strikes(forward, width, int(count), unit)
            m = np.log(k / forward)
            iv = _smile(atm, m, tau)
            sd = atm * math.sqrt(max(tau, 1 / 365))
            x = m / sd
            # Round strikes attract OI: ×2 for 1,000s, ×3.5 for 5,000s, ×4 for 10,000s (BTC).
            level = (k % (unit / 10) == 0) + (k % (unit / 2) == 0) * 1.5 + (k % unit == 0) * 0.5
            noise = rng.lognormal(0.0, 0.35, (2, k.shape[0]))
            # Customers: calls above spot, puts below (dealers long calls, short puts).
            # In-the-money options hold less OI (closed or exercised over time).
            calls = (np.exp(-0.5 * ((x - 0.5) / 0.8) ** 2) + 0.06) * (1 + level) * noise[0]
            calls *= np.exp(1.5 * np.minimum(x, 0.0))
            puts = (np.exp(-0.5 * ((x + 0.5) / 0.8) ** 2) + 0.06) * (1 + level) * noise[1]
            puts *= np.exp(-1.5 * np.maximum(x, 0.0))
            strikes.append(k)
            expiry_idx.append(np.full(k.shape[0], e))
            ivs.append(iv)
            call_oi.append(calls / (calls.sum() + puts.sum()))
            put_oi.append(puts / (calls.sum() + puts.sum()))
            oi_weight.append(
                {"day": 0.006, "week": 0.04, "month": 0.09}[expiry.period]
                + 0.14 * expiry.quarterly * math.exp(-tau)
            )
        share = np.array(oi_weight) / sum(oi_weight)
        call_oi = [c * s * spec.total_oi for c, s in zip(call_oi, share, strict=True)]
        put_oi = [p * s * spec.total_oi for p, s in zip(put_oi, share, strict=True)]
        # Calls then puts per strike, expiries in order: the get_instruments order.
        k_all = np.concatenate(strikes)
        n_pairs = k_all.shape[0]
        self.strike = np.repeat(k_all, 2)
        self.is_call = np.tile(np.array([True, False]), n_pairs)
        self.expiry_idx = np.repeat(np.concatenate(expiry_idx), 2)
        self.base_iv = np.repeat(np.concatenate(ivs), 2)  # sticky-strike IV at start, fraction
        oi = np.empty(2 * n_pairs)
        oi[0::2] = np.concatenate(call_oi)
        oi[1::2] = np.concatenate(put_oi)
        self.expiry_ms = np.array([self.expiries[e].expiry_ms for e in self.expiry_idx])
        self.tau0 = (self.expiry_ms - start_ms) / MS_PER_YEAR
        # Put the zero-gamma level a little below spot: scale puts so that the dealers'
        # GEX (long calls, short puts) balances there.
        target = spot * (1.0 - ZERO_GAMMA_BELOW_SPOT)
        gex = self._gex_terms(target, spec.basis_rate) * oi
        calls_gex, puts_gex = gex[self.is_call].sum(), gex[~self.is_call].sum()
        scale = float(np.clip(calls_gex / puts_gex, 0.2, 5.0)) if puts_gex > 0 else 1.0
        oi[~self.is_call] *= scale
        step = spec.oi_step
        self.oi = np.maximum(np.round(oi / step) * step, 0.0)
        self.oi = np.round(self.oi, 1)
        self.n = self.strike.shape[0]
        self.names = [
            f"{config.currency}-{self.expiries[e].code}-{int(k)}-{'C' if c else 'P'}"
            for e, k, c in zip(
                self.expiry_idx.tolist(), self.strike.tolist(), self.is_call.tolist(), strict=True
            )
        ]
        self.decimal_strike = [Decimal(int(k)) for k in self.strike.tolist()]

    def _gex_terms(self, spot: float, basis_rate: float) -> np.ndarray:
        """Γ(F) F² × 0.01 per coin of each instrument at a hypothetical spot (start time)."""
        tau = self.tau0
        forward = spot * np.exp(basis_rate * tau)
        gamma = np.empty_like(self.strike)
        bsm_gamma_into(forward, self.strike, tau, self.base_iv, 0.0, 0.0, gamma)
        return gamma * forward**2 * 0.01
