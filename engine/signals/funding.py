"""``funding_extreme``: the funding rate of each perpetual and the cross-venue rate beyond a
threshold for N consecutive funding intervals, and its end
(see :mod:`engine.signals.crypto_regime`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.signals.common import Signal, check_number
from schemas.config import Config, ConfigError
from schemas.records import FundingRate
from schemas.time import NS_PER_S

AGGREGATE_VENUE = "all"


@dataclass(frozen=True, slots=True)
class FundingConfig(Config):
    """``funding_extreme`` thresholds (TOML ``[detector.funding]``); rates are fractions."""

    SECTION: ClassVar[str] = "detector.funding"
    threshold_8h: float = 0.0005  # |8 h-equivalent rate| beyond this is extreme (0.05 %)
    exit_fraction: float = 0.8  # an extreme ends inside exit_fraction × threshold_8h
    intervals: int = 3  # consecutive extreme funding intervals before an extreme starts
    # Interval length for venues that send no next funding time (continuous funding,
    # UTC-aligned); None: the record's interval_hours.
    continuous_interval_s: float | None = None
    aggregate_interval_s: float = 28_800.0  # the cross-venue rate's intervals (UTC-aligned)
    stale_after_s: float = 900.0  # a venue silent this long leaves the cross-venue rate

    def __post_init__(self) -> None:
        what = "funding"
        check_number(what, "threshold_8h", self.threshold_8h, positive=True)
        check_number(what, "exit_fraction", self.exit_fraction)
        if not self.exit_fraction <= 1.0:
            raise ConfigError(f"funding exit_fraction must be in [0, 1], got {self.exit_fraction}")
        n = self.intervals
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"funding intervals must be an integer >= 1, got {n!r}")
        if self.continuous_interval_s is not None:
            check_number(what, "continuous_interval_s", self.continuous_interval_s, True)
        check_number(what, "aggregate_interval_s", self.aggregate_interval_s, positive=True)
        check_number(what, "stale_after_s", self.stale_after_s, positive=True)

    @property
    def exit_8h(self) -> float:
        return self.threshold_8h * self.exit_fraction


class _IntervalClock:
    """The funding interval in progress (named by its end) and the last rate seen in it."""

    __slots__ = ("end_ns", "length_ns", "payload", "ts_ns", "value")

    def __init__(self) -> None:
        self.end_ns = -1
        self.length_ns = 0
        self.ts_ns = -1
        self.value = math.nan
        self.payload: Any = None

    def observe(
        self, end_ns: int, length_ns: int, ts_ns: int, value: float, payload: Any = None
    ) -> tuple[float, Any, int, int, bool] | None:
        """Record a rate seen at ``ts_ns`` of the interval ending at ``end_ns``.

        Returns ``(value, payload, end_ns, length_ns, followed)`` of the interval that this
        record closes (``followed``: the new interval comes right after it), else None. An
        older record (a duplicate, or out of order) changes nothing.
        """
        if end_ns < self.end_ns or (end_ns == self.end_ns and ts_ns < self.ts_ns):
            return None
        closed = None
        if end_ns > self.end_ns and self.end_ns >= 0:
            followed = end_ns - self.end_ns <= 1.5 * length_ns
            closed = (self.value, self.payload, self.end_ns, self.length_ns, followed)
        self.end_ns, self.length_ns, self.ts_ns = end_ns, length_ns, ts_ns
        self.value, self.payload = value, payload
        return closed


class _Extreme:
    """Funding beyond a threshold for N consecutive closed intervals; ends inside the exit."""

    __slots__ = ("count", "lasted", "side", "sign")

    def __init__(self) -> None:
        self.side = 0  # +1 / -1 while an extreme lasts, else 0
        self.sign = 0  # sign of the run of extreme intervals being counted
        self.count = 0
        self.lasted = 0  # intervals since the extreme started

    def close(self, rate: float, followed: bool, cfg: FundingConfig) -> list[tuple[str, int]]:
        """Feed a closed interval's rate (``followed``: no interval is missing after it);
        returns the ``(state, side)`` transitions."""
        out: list[tuple[str, int]] = []
        if self.side:
            if rate * self.side >= cfg.exit_8h:
                self.lasted += 1
                return out
            out.append(("ended", self.side))
            self.side, self.count, self.sign = 0, 0, 0
        observed = 1 if rate > cfg.threshold_8h else -1 if rate < -cfg.threshold_8h else 0
        if observed:
            self.count = self.count + 1 if observed == self.sign else 1
            self.sign = observed
            if self.count >= cfg.intervals:
                self.side, self.lasted = observed, self.count
                out.append(("started", observed))
        if not observed or (not followed and not self.side):
            self.count, self.sign = 0, 0  # a settled-normal or missing interval breaks a run
        return out


@dataclass(slots=True)
class _VenueRate:
    rate_8h: float
    open_interest_usd: float | None
    ts_ns: int


@dataclass(slots=True)
class _FundingMonitor:
    clock: _IntervalClock = field(default_factory=_IntervalClock)
    extreme: _Extreme = field(default_factory=_Extreme)
    closed_intervals: int = 0


def _grid_end(ts_ns: int, length_ns: int) -> int:
    return (ts_ns // length_ns + 1) * length_ns


class FundingWatch:
    """Funding intervals and extremes of every perpetual of one underlying and across them."""

    def __init__(self, config: FundingConfig) -> None:
        self.config = config
        self._venues: dict[tuple[str, str], _FundingMonitor] = {}
        self._rates: dict[tuple[str, str], _VenueRate] = {}
        self._aggregate = _FundingMonitor()

    @property
    def state(self) -> str | None:
        """Funding state of the cross-venue rate; None until one interval has closed."""
        if self._aggregate.closed_intervals == 0:
            return None
        side = self._aggregate.extreme.side
        return "extreme_positive" if side > 0 else "extreme_negative" if side < 0 else "neutral"

    def observe(self, record: FundingRate) -> list[Signal]:
        """Signals of the funding intervals one record closes (usually none)."""
        cfg = self.config
        rate = record.rate_8h
        if not math.isfinite(rate) or not record.interval_hours > 0:
            return []
        ts = record.ts_event_ns
        key = (record.venue, record.instrument)
        out: list[Signal] = []
        if record.next_funding_ns is not None:
            length = int(record.interval_hours * 3_600 * NS_PER_S)
            end = int(record.next_funding_ns)
        else:
            seconds = cfg.continuous_interval_s or record.interval_hours * 3_600
            length = int(seconds * NS_PER_S)
            end = _grid_end(ts, length)
        monitor = self._venues.setdefault(key, _FundingMonitor())
        closed = monitor.clock.observe(end, length, ts, rate)
        if closed is not None:
            out.extend(self._close(monitor, closed, record.venue, record.instrument))
        oi = record.open_interest_usd
        self._rates[key] = _VenueRate(rate, oi if oi is not None and oi > 0 else None, ts)
        agg_length = int(cfg.aggregate_interval_s * NS_PER_S)
        mean, breakdown = self._weighted(ts)
        closed = self._aggregate.clock.observe(
            _grid_end(ts, agg_length), agg_length, ts, mean, breakdown
        )
        if closed is not None:
            out.extend(self._close(self._aggregate, closed, AGGREGATE_VENUE, None))
        return out

    def _weighted(self, ts: int) -> tuple[float, list[dict[str, Any]]]:
        """Open-interest-weighted 8 h rate of the fresh venues; unknown OI: the mean weight."""
        stale = self.config.stale_after_s * NS_PER_S
        fresh = [(key, r) for key, r in sorted(self._rates.items()) if ts - r.ts_ns <= stale]
        known = [r.open_interest_usd for _, r in fresh if r.open_interest_usd is not None]
        default = sum(known) / len(known) if known else 1.0
        weights = [r.open_interest_usd or default for _, r in fresh]
        total = sum(weights)
        mean = sum(w * r.rate_8h for w, (_, r) in zip(weights, fresh, strict=True)) / total
        breakdown = [
            {
                "venue": venue,
                "instrument": instrument,
                "rate_8h": r.rate_8h,
                "open_interest_usd": r.open_interest_usd,
                "weight": w / total,
            }
            for w, ((venue, instrument), r) in zip(weights, fresh, strict=True)
        ]
        return mean, breakdown

    def _close(
        self,
        monitor: _FundingMonitor,
        closed: tuple[float, Any, int, int, bool],
        venue: str,
        instrument: str | None,
    ) -> list[Signal]:
        cfg = self.config
        rate, breakdown, end_ns, length_ns, followed = closed
        monitor.closed_intervals += 1
        lasted = monitor.extreme.lasted
        out = []
        for state, side in monitor.extreme.close(rate, followed, cfg):
            detail: dict[str, Any] = {
                "state": state,
                "venue": venue,
                "instrument": instrument,
                "side": "positive" if side > 0 else "negative",
                "rate_8h": rate,
                "annualized": rate * 3 * 365,
                "threshold_8h": cfg.threshold_8h,
                "exit_8h": cfg.exit_8h,
                "intervals": monitor.extreme.lasted if state == "started" else lasted,
                "interval_end_ns": end_ns,
                "interval_s": length_ns / NS_PER_S,
            }
            if breakdown is not None:
                detail["venues"] = breakdown
            name = venue if instrument is None else f"{venue}/{instrument}"
            direction = "up" if side > 0 else "down"
            out.append(Signal("funding_extreme", direction, None, detail, f"{name}/{state}"))
        return out
