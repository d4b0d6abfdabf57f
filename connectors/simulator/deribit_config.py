"""What a simulated Deribit session holds: :class:`SessionConfig` and the currencies' specs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import ClassVar

import numpy as np

from engine.core.settlement import instant_ns
from schemas.config import Config, ConfigError

SCENARIOS = ("flip_and_wall", "call_wall", "none")
# Saturday 2024-03-09 07:30 UTC: the 9MAR24 daily settles 30 minutes in.
DEFAULT_START_NS = instant_ns(datetime(2024, 3, 9, 7, 30, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class CurrencySpec:
    """One currency's market: index level, open interest, vols, strikes (simulator inputs)."""

    spot0: float  # default index level, USD
    total_oi: float  # options open interest of the whole chain, coins
    oi_step: float  # OI and trade-amount granularity, coins
    min_trade_amount: float  # coins
    atm_vol: float  # long-dated ATM implied vol, fraction
    basis_rate: float  # forward contango, per year (F = index × exp(rate × T))
    round_unit: float  # the "very round" strike spacing, USD (BTC 10,000)
    perp_oi_usd: float  # perpetual open interest, USD (inverse contracts of 10 USD)


CURRENCIES = {
    "BTC": CurrencySpec(67_640.0, 320_000.0, 0.1, 0.1, 0.62, 0.10, 10_000.0, 1.1e9),
    "ETH": CurrencySpec(3_938.0, 2_600_000.0, 1.0, 1.0, 0.66, 0.09, 500.0, 6.5e8),
}


@dataclass(frozen=True, slots=True)
class SessionConfig(Config):
    """What to simulate. Every field is checked; a bad value raises ConfigError."""

    SECTION: ClassVar[str] = "simulator.session"

    currency: str = "BTC"  # "BTC" | "ETH"
    n_instruments: int = 1_000  # option instruments, calls + puts (even, 300..10,000)
    duration_s: float = 300.0  # simulated seconds of notifications
    seed: int = 7
    start_ns: int = DEFAULT_START_NS  # session start, ns since the epoch (UTC)
    spot0: float | None = None  # initial index, USD (None: the currency's default)
    ticker_interval_s: float = 5.0  # mean seconds between tickers of one option
    index_interval_s: float = 1.0  # seconds between price-index ticks
    dvol_interval_s: float = 1.0  # seconds between DVOL ticks
    perpetual_interval_s: float = 1.0  # seconds between perpetual tickers
    trades_rate_per_s: float = 1.0  # option trades per second (whole chain)
    feedback: bool = True  # dealer-hedging feedback on the index volatility
    scenario: str = "flip_and_wall"  # scripted drift ("call_wall": a rally through it), "none"
    # Knots (seconds from the start, funding_8h fraction): the perpetual's funding follows it.
    funding_path: tuple[tuple[float, float], ...] = ()
    # Knots (seconds from the start, DVOL points at the initial spot): option IVs follow it.
    dvol_path: tuple[tuple[float, float], ...] = ()
    feedback_interval_s: float = 2.0  # seconds between refreshes of the simulator's GEX

    def __post_init__(self) -> None:
        if self.currency not in CURRENCIES:
            raise ConfigError(f"currency must be one of {', '.join(CURRENCIES)}")
        n = self.n_instruments
        if isinstance(n, bool) or not isinstance(n, int) or not 300 <= n <= 10_000:
            raise ConfigError(f"n_instruments must be an integer in [300, 10000], got {n!r}")
        if n % 2:
            raise ConfigError(f"n_instruments must be even (calls and puts), got {n}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.start_ns, bool) or not isinstance(self.start_ns, int):
            raise ConfigError(
                f"start_ns must be an integer (ns since the epoch), got {self.start_ns!r}"
            )
        if not 946_684_800 * 10**9 <= self.start_ns <= 4_102_444_800 * 10**9:
            raise ConfigError("start_ns must lie between 2000 and 2100")
        _positive("duration_s", self.duration_s, 0.1, 7 * 86_400.0)
        if self.spot0 is not None:
            _positive("spot0", self.spot0, 1e-6, 1e9)
        _positive("ticker_interval_s", self.ticker_interval_s, 0.01, 86_400.0)
        _positive("index_interval_s", self.index_interval_s, 0.01, 86_400.0)
        _positive("dvol_interval_s", self.dvol_interval_s, 0.01, 86_400.0)
        _positive("perpetual_interval_s", self.perpetual_interval_s, 0.01, 86_400.0)
        _positive("feedback_interval_s", self.feedback_interval_s, 0.1, 3_600.0)
        rate = self.trades_rate_per_s
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ConfigError(f"trades_rate_per_s must be a number, got {rate!r}")
        if not (math.isfinite(rate) and 0.0 <= rate <= 10_000.0):
            raise ConfigError(f"trades_rate_per_s must be in [0, 10000], got {rate!r}")
        if not isinstance(self.feedback, bool):
            raise ConfigError(f"feedback must be a bool, got {self.feedback!r}")
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"scenario must be one of {', '.join(SCENARIOS)}")
        object.__setattr__(self, "funding_path", _knots("funding_path", self.funding_path, 0.05))
        object.__setattr__(self, "dvol_path", _knots("dvol_path", self.dvol_path, 500.0, 1.0))

    @property
    def initial_spot(self) -> float:
        """The index at the session start, USD."""
        return self.spot0 if self.spot0 is not None else CURRENCIES[self.currency].spot0


def _knots(
    name: str, value: object, limit: float, low: float | None = None
) -> tuple[tuple[float, float], ...]:
    """``value`` as a tuple of (seconds, value) knots, times rising; ConfigError when not."""
    low = -limit if low is None else low
    try:
        knots = tuple((t, v) for t, v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be (seconds, value) pairs, got {value!r}") from None
    for t, v in knots:
        for x in (t, v):
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise ConfigError(f"{name} must hold finite numbers, got {(t, v)!r}")
        if t < 0 or not low <= v <= limit:
            raise ConfigError(f"{name}: seconds must be >= 0 and values in [{low}, {limit}]")
    if any(b[0] < a[0] for a, b in pairwise(knots)):
        raise ConfigError(f"{name}: times must not decrease")
    return tuple((float(t), float(v)) for t, v in knots)


def path_at(knots: tuple[tuple[float, float], ...], t_s: float) -> float:
    """The piecewise-linear path through ``knots`` at ``t_s`` (flat beyond the ends)."""
    return float(np.interp(t_s, [t for t, _ in knots], [v for _, v in knots]))


def _positive(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value!r}")
