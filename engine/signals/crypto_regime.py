"""The crypto regime read: funding extremes, DVOL bands, term-structure inversion, and the
joined read dealer gamma × DVOL × funding of one crypto underlying.

One :class:`CryptoRegime` per underlying turns records into *signals* (the event type,
direction, level and detail of an event to publish); the engine task turns a signal into a
:class:`schemas.events.RegimeEvent` with the input position that triggered it (so a replay
gives the same ids) and stamps the joined read on every event of the underlying.

- ``funding_extreme``: the 8-hour-equivalent funding rate of one perpetual (``detail.venue``,
  ``detail.instrument``), and the cross-venue open-interest-weighted rate (``venue = "all"``),
  beyond ``±threshold_8h`` for ``intervals`` consecutive funding intervals, then its end
  (``detail.state = "ended"``) at the first interval that settles back inside
  ``exit_fraction × threshold_8h``. Intervals are the venue's own: a record's
  ``next_funding_ns`` names the interval it belongs to; a venue without one (Deribit accrues
  continuously) is cut into UTC-aligned intervals of ``continuous_interval_s`` (default its
  ``interval_hours``); the cross-venue rate into UTC-aligned ``aggregate_interval_s``. An
  interval counts once, when it has closed (the first record past its end), with the last
  rate seen in it (the rate that settles), however often the venue sent it.
- ``vol_regime``: DVOL crossing the bands ``compressed < compressed_below ≤ normal ≤
  elevated_above < elevated`` (``detail.kind = "dvol_band"``), confirmed beyond a
  ``hysteresis_points`` band around the threshold for ``dwell_s`` of event time; and the ATM
  implied vol of the front expiry above the back expiry's by ``term_margin_points``
  (``detail.kind = "term_structure"``), ended when the spread falls below
  ``term_margin_points − term_hysteresis_points``, with the same dwell.
- The joined read (:data:`COMPOSITE_READS`): gamma regime × DVOL band × funding state → a
  named read; when it changes from one read to another, a ``regime_change`` event with
  ``detail.kind = "composite"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core import kernels as k
from engine.core.config import ConfigError
from schemas.config import check_known_keys
from schemas.levels import format_asof
from schemas.records import FundingRate, VolIndexTick

if TYPE_CHECKING:
    from engine.core.book import GammaBook

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
NS_PER_YEAR = 365 * NS_PER_DAY

GAMMA_STATES = ("positive", "transition", "negative")
DVOL_BANDS = ("compressed", "normal", "elevated")
FUNDING_STATES = ("extreme_positive", "neutral", "extreme_negative")
COMPONENTS = ("gamma", "dvol", "funding")
AGGREGATE_VENUE = "all"
# Option venues whose underlyings are crypto: they carry the joined read from their first
# evaluation (any underlying that receives funding or volatility-index records does too).
CRYPTO_VENUES = frozenset({"deribit"})


@dataclass(frozen=True, slots=True)
class CompositeRead:
    """A named joined read and what it means, in one line."""

    name: str
    meaning: str


_R = CompositeRead
# (dealer gamma regime, DVOL band, funding state) → the read. The README's table is checked
# against this one by a test.
COMPOSITE_READS: dict[tuple[str, str, str], CompositeRead] = {
    ("negative", "elevated", "extreme_positive"): _R(
        "long_squeeze_risk",
        "Dealers amplify moves, vol is bid and longs are crowded: a drop can cascade "
        "through long liquidations.",
    ),
    ("negative", "elevated", "neutral"): _R(
        "volatile_trend",
        "Dealers amplify moves that options already price as large: trending, expanding ranges.",
    ),
    ("negative", "elevated", "extreme_negative"): _R(
        "short_squeeze_risk",
        "Dealers amplify moves, vol is bid and shorts are crowded: a rally can cascade "
        "through short liquidations.",
    ),
    ("negative", "normal", "extreme_positive"): _R(
        "crowded_longs_amplified",
        "Dealers amplify moves and longs are crowded: downside moves can accelerate.",
    ),
    ("negative", "normal", "neutral"): _R(
        "trend_prone",
        "Dealers amplify moves: ranges tend to expand and breakouts follow through.",
    ),
    ("negative", "normal", "extreme_negative"): _R(
        "crowded_shorts_amplified",
        "Dealers amplify moves and shorts are crowded: upside moves can accelerate.",
    ),
    ("negative", "compressed", "extreme_positive"): _R(
        "coiled_long_heavy",
        "Cheap vol, crowded longs and dealers short gamma: a shock would be amplified, "
        "most likely lower.",
    ),
    ("negative", "compressed", "neutral"): _R(
        "coiled_spring",
        "Vol is cheap while dealers amplify moves: a breakout would be underpriced and fast.",
    ),
    ("negative", "compressed", "extreme_negative"): _R(
        "coiled_short_heavy",
        "Cheap vol, crowded shorts and dealers short gamma: a shock would be amplified, "
        "most likely higher.",
    ),
    ("transition", "elevated", "extreme_positive"): _R(
        "flip_zone_stressed_longs",
        "Spot at the gamma flip with vol bid and longs crowded: a break lower turns dealers "
        "into sellers of a long liquidation.",
    ),
    ("transition", "elevated", "neutral"): _R(
        "flip_zone_volatile",
        "Spot at the gamma flip with vol bid: the next move decides whether dealers damp "
        "or amplify it.",
    ),
    ("transition", "elevated", "extreme_negative"): _R(
        "flip_zone_stressed_shorts",
        "Spot at the gamma flip with vol bid and shorts crowded: a break higher turns dealers "
        "into buyers of a short squeeze.",
    ),
    ("transition", "normal", "extreme_positive"): _R(
        "flip_zone_crowded_longs",
        "Spot at the gamma flip with longs crowded: a downside break is the fragile side.",
    ),
    ("transition", "normal", "neutral"): _R(
        "flip_zone",
        "Spot at the gamma flip: the regime is undecided.",
    ),
    ("transition", "normal", "extreme_negative"): _R(
        "flip_zone_crowded_shorts",
        "Spot at the gamma flip with shorts crowded: an upside break is the fragile side.",
    ),
    ("transition", "compressed", "extreme_positive"): _R(
        "flip_zone_quiet_longs",
        "Quiet vol at the gamma flip with longs crowded: a drift whose downside break "
        "would accelerate.",
    ),
    ("transition", "compressed", "neutral"): _R(
        "flip_zone_quiet",
        "Quiet vol at the gamma flip: small moves, but no dealer cushion once spot leaves "
        "the zone.",
    ),
    ("transition", "compressed", "extreme_negative"): _R(
        "flip_zone_quiet_shorts",
        "Quiet vol at the gamma flip with shorts crowded: a drift whose upside break "
        "would accelerate.",
    ),
    ("positive", "elevated", "extreme_positive"): _R(
        "dampened_crowded_longs",
        "Dealers damp moves though vol is bid and longs pay up: implied vol looks rich and "
        "crowded longs bleed funding.",
    ),
    ("positive", "elevated", "neutral"): _R(
        "rich_vol_range",
        "Dealers damp moves while options price large ones: implied vol looks rich, ranges hold.",
    ),
    ("positive", "elevated", "extreme_negative"): _R(
        "dampened_crowded_shorts",
        "Dealers damp moves though vol is bid and shorts pay up: implied vol looks rich and "
        "crowded shorts bleed funding.",
    ),
    ("positive", "normal", "extreme_positive"): _R(
        "pinned_crowded_longs",
        "Dealers damp moves while longs pay high funding: range-bound, carry favours shorts.",
    ),
    ("positive", "normal", "neutral"): _R(
        "mean_reverting",
        "Dealers damp moves: dips and rallies fade, ranges compress.",
    ),
    ("positive", "normal", "extreme_negative"): _R(
        "pinned_crowded_shorts",
        "Dealers damp moves while shorts pay high funding: range-bound, carry favours longs.",
    ),
    ("positive", "compressed", "extreme_positive"): _R(
        "pinned_quiet_longs",
        "Cheap vol, dealers damping and crowded longs: a tight range whose risk is a "
        "funding-driven unwind, not a dealer-driven one.",
    ),
    ("positive", "compressed", "neutral"): _R(
        "pinned_low_vol",
        "Dealers damp moves and vol is cheap: tight range, low realised vol.",
    ),
    ("positive", "compressed", "extreme_negative"): _R(
        "pinned_quiet_shorts",
        "Cheap vol, dealers damping and crowded shorts: a tight range whose risk is a "
        "funding-driven squeeze, not a dealer-driven one.",
    ),
}
del _R


def composite_read(gamma: str | None, dvol: str | None, funding: str | None) -> str | None:
    """The named read of a combination; None while a component is unknown."""
    read = COMPOSITE_READS.get((gamma, dvol, funding))  # type: ignore[arg-type]
    return None if read is None else read.name


# --------------------------------------------------------------------------- config


def _check_number(what: str, name: str, value: object, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} {name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{what} {name} must be finite and {bound}, got {value!r}")


class _FromMapping:
    __slots__ = ()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Any:
        """Build from a mapping of field names (a TOML table); unknown keys raise ValueError."""
        what = cls.WHAT  # type: ignore[attr-defined]
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"[{what}] must be a table")
        check_known_keys(cls, mapping, what)
        return cls(**mapping)


@dataclass(frozen=True, slots=True)
class FundingConfig(_FromMapping):
    """``funding_extreme`` thresholds (TOML ``[detector.funding]``); rates are fractions."""

    WHAT = "detector.funding"
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
        _check_number(what, "threshold_8h", self.threshold_8h, positive=True)
        _check_number(what, "exit_fraction", self.exit_fraction)
        if not self.exit_fraction <= 1.0:
            raise ConfigError(f"funding exit_fraction must be in [0, 1], got {self.exit_fraction}")
        n = self.intervals
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"funding intervals must be an integer >= 1, got {n!r}")
        if self.continuous_interval_s is not None:
            _check_number(what, "continuous_interval_s", self.continuous_interval_s, True)
        _check_number(what, "aggregate_interval_s", self.aggregate_interval_s, positive=True)
        _check_number(what, "stale_after_s", self.stale_after_s, positive=True)

    @property
    def exit_8h(self) -> float:
        return self.threshold_8h * self.exit_fraction


@dataclass(frozen=True, slots=True)
class VolConfig(_FromMapping):
    """``vol_regime`` thresholds (TOML ``[detector.vol]``); vols in points (55.3 = 55.3 %)."""

    WHAT = "detector.vol"
    compressed_below: float = 50.0  # DVOL below this is compressed
    elevated_above: float = 90.0  # DVOL above this is elevated
    hysteresis_points: float = 2.0  # a band is entered this far beyond its threshold
    dwell_s: float = 60.0  # a new band (or term-structure state) must hold this long
    term_margin_points: float = 2.0  # front ATM IV above back ATM IV by this: inverted
    term_hysteresis_points: float = 1.0  # ... and it ends below margin − hysteresis
    term_front_min_days: float = 1.0  # front = nearest expiry at least this far away
    term_back_min_days: float = 30.0  # back = nearest expiry at least this far away

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_number("vol", f.name, getattr(self, f.name))
        if not self.compressed_below + 2 * self.hysteresis_points < self.elevated_above:
            raise ConfigError(
                "vol bands must satisfy compressed_below + 2 × hysteresis_points < elevated_above"
            )
        if not self.term_front_min_days < self.term_back_min_days:
            raise ConfigError("vol term_front_min_days must be below term_back_min_days")

    @property
    def dwell_ns(self) -> int:
        return int(self.dwell_s * NS_PER_S)


# --------------------------------------------------------------------------- signals


@dataclass(slots=True)
class Signal:
    """An event to publish, before the engine gives it levels, ids and the joined read."""

    event_type: str  # "funding_extreme" | "vol_regime" | "regime_change"
    direction: str | None
    level: float | None
    detail: dict[str, Any]
    suffix: str  # the event id's name part: unique among one input's events


# --------------------------------------------------------------------------- funding


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


# --------------------------------------------------------------------------- vol


class _DvolBand:
    """Confirmed DVOL band with a hysteresis band around each threshold and a dwell."""

    __slots__ = ("band", "pending", "pending_since")

    def __init__(self) -> None:
        self.band: str | None = None
        self.pending: str | None = None
        self.pending_since = 0

    def observed(self, value: float, cfg: VolConfig) -> str:
        low, high, h = cfg.compressed_below, cfg.elevated_above, cfg.hysteresis_points
        rank = DVOL_BANDS.index(self.band) if self.band is not None else 1
        # Leaving the current band takes a move beyond the threshold by h; without a band
        # yet the plain thresholds apply.
        h_low = 0.0 if self.band is None else (h if rank >= 1 else -h)
        h_high = 0.0 if self.band is None else (-h if rank == 2 else h)
        if value > high + h_high:
            return "elevated"
        if value < low - h_low:
            return "compressed"
        return "normal"

    def update(self, value: float, ts: int, cfg: VolConfig) -> tuple[str, str] | None:
        """Feed one DVOL value; returns ``(from, to)`` when a new band is confirmed."""
        observed = self.observed(value, cfg)
        if self.band is None:
            self.band = observed
            return None
        if observed == self.band:
            self.pending = None
            return None
        if self.pending != observed:
            self.pending, self.pending_since = observed, ts
        if ts - self.pending_since >= cfg.dwell_ns:
            previous, self.band, self.pending = self.band, observed, None
            return previous, observed
        return None


class _Inversion:
    """Confirmed term-structure inversion (front ATM IV above back) with hysteresis and dwell."""

    __slots__ = ("inverted", "pending", "pending_since")

    def __init__(self) -> None:
        self.inverted: bool | None = None
        self.pending: bool | None = None
        self.pending_since = 0

    def update(self, spread: float, ts: int, cfg: VolConfig) -> bool | None:
        """Feed one spread (points); returns the new state when it is confirmed changed."""
        if self.inverted:
            observed = spread >= cfg.term_margin_points - cfg.term_hysteresis_points
        else:
            observed = spread > cfg.term_margin_points
        if self.inverted is None:
            self.inverted = observed
            return None
        if observed == self.inverted:
            self.pending = None
            return None
        if self.pending != observed:
            self.pending, self.pending_since = observed, ts
        if ts - self.pending_since >= cfg.dwell_ns:
            self.inverted, self.pending = observed, None
            return observed
        return None

    def reset_pending(self) -> None:
        self.pending = None


def atm_iv(book: GammaBook, expiry_ns: int) -> float | None:
    """ATM implied vol (fraction) of one expiry, interpolated at its forward; None if unknown.

    The forward is spot × the expiry's basis (mean over its quoted slots); the IV at a strike
    is the mean of its calls' and puts' IVs; between the strikes either side of the forward
    the IV is interpolated linearly in log-strike. None when the forward is outside the
    expiry's quoted strikes.
    """
    return _atm_iv(book, _quoted_slots(book), expiry_ns)


def _quoted_slots(book: GammaBook) -> np.ndarray:
    """Slots of listed contracts with a usable IV."""
    n = book.n_slots
    iv = book.slot_f[k.F_IV, :n]
    return np.flatnonzero((book.slot_i[k.I_STATE, :n] == k.SLOT_PRESENT) & (iv > 0))


def _atm_iv(book: GammaBook, quoted: np.ndarray, expiry_ns: int) -> float | None:
    slots = quoted[book.slot_expiry_ns[quoted] == expiry_ns]
    if slots.size == 0:
        return None
    f = book.slot_f
    strikes = f[k.F_STRIKE, slots]
    ivs = f[k.F_IV, slots]
    basis = f[k.F_BASIS, slots]
    basis = basis[basis > 0]  # NaN compares False
    forward = book.spot * (float(basis.mean()) if basis.size else 1.0)
    below = strikes[strikes <= forward]
    above = strikes[strikes >= forward]
    if below.size == 0 or above.size == 0:
        return None
    k_low, k_high = float(below.max()), float(above.min())
    iv_low = float(ivs[strikes == k_low].mean())
    iv_high = float(ivs[strikes == k_high].mean())
    if k_high == k_low:
        return iv_low
    w = math.log(forward / k_low) / math.log(k_high / k_low)
    return iv_low + w * (iv_high - iv_low)


def term_structure(
    book: GammaBook, ts_ns: int, cfg: VolConfig
) -> tuple[int, float, int, float] | None:
    """``(front expiry, front ATM IV, back expiry, back ATM IV)``, IVs in points, or None.

    Front is the nearest expiry at least ``term_front_min_days`` away whose ATM IV is known,
    back the nearest at least ``term_back_min_days`` away.
    """
    front_from = ts_ns + cfg.term_front_min_days * NS_PER_DAY
    back_from = ts_ns + cfg.term_back_min_days * NS_PER_DAY
    expiries = sorted(e for e in book.expiry_index if e >= front_from)
    if not expiries or expiries[-1] < back_from:
        return None
    quoted = _quoted_slots(book)
    front = back = None
    for expiry in expiries:
        if front is None or expiry >= back_from:
            iv = _atm_iv(book, quoted, expiry)
            if iv is None:
                continue
            if front is None:
                front = (expiry, iv * 100.0)
            if expiry >= back_from:
                back = (expiry, iv * 100.0)
                break
    if front is None or back is None or front[0] >= back[0]:
        return None
    return front[0], front[1], back[0], back[1]


# --------------------------------------------------------------------------- per underlying


class CryptoRegime:
    """Funding, DVOL and term-structure state of one underlying, and its joined read."""

    def __init__(self, funding: FundingConfig, vol: VolConfig) -> None:
        self.funding_config = funding
        self.vol_config = vol
        self._venues: dict[tuple[str, str], _FundingMonitor] = {}
        self._rates: dict[tuple[str, str], _VenueRate] = {}
        self._aggregate = _FundingMonitor()
        self._dvol = _DvolBand()
        self._dvol_source: tuple[str, str] | None = None
        self._term = _Inversion()
        self.gamma: str | None = None
        self._read: str | None = None

    # ------------------------------------------------------------ the joined read

    @property
    def funding(self) -> str | None:
        """Funding state of the cross-venue rate; None until one interval has closed."""
        if self._aggregate.closed_intervals == 0:
            return None
        side = self._aggregate.extreme.side
        return "extreme_positive" if side > 0 else "extreme_negative" if side < 0 else "neutral"

    @property
    def dvol(self) -> str | None:
        return self._dvol.band

    @property
    def term_inverted(self) -> bool | None:
        return self._term.inverted

    def composite(self) -> dict[str, str | None]:
        """The joined read stamped on every event: its components and the read's name."""
        gamma, dvol, funding = self.gamma, self.dvol, self.funding
        return {
            "gamma": gamma,
            "dvol": dvol,
            "funding": funding,
            "read": composite_read(gamma, dvol, funding),
        }

    def _composite_signal(self, previous: dict[str, str | None]) -> list[Signal]:
        now = self.composite()
        read = now["read"]
        if read == self._read:
            return []
        before, self._read = self._read, read
        if before is None or read is None:  # the read is first established: no change
            return []
        meaning = COMPOSITE_READS[(now["gamma"], now["dvol"], now["funding"])].meaning  # type: ignore[index]
        detail = {
            "kind": "composite",
            "from": before,
            "to": read,
            "meaning": meaning,
            "changed": [c for c in COMPONENTS if previous[c] != now[c]],
            "previous": {c: previous[c] for c in COMPONENTS},
        }
        return [Signal("regime_change", None, None, detail, "composite")]

    # ------------------------------------------------------------ inputs

    def observe(self, record: FundingRate | VolIndexTick) -> list[Signal]:
        """Signals confirmed by one funding or volatility-index record (usually none)."""
        previous = self.composite()
        if isinstance(record, FundingRate):
            out = self._observe_funding(record)
        else:
            out = self._observe_vol_index(record)
        out.extend(self._composite_signal(previous))
        return out

    def observe_book(self, book: GammaBook, gamma: str | None, ts_ns: int) -> list[Signal]:
        """Signals at an evaluation point: the term structure and the gamma regime."""
        previous = self.composite()
        out = self._observe_term(book, ts_ns)
        if gamma is not None:
            self.gamma = gamma
        out.extend(self._composite_signal(previous))
        return out

    # ------------------------------------------------------------ funding

    def _observe_funding(self, record: FundingRate) -> list[Signal]:
        cfg = self.funding_config
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
        stale = self.funding_config.stale_after_s * NS_PER_S
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
        cfg = self.funding_config
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

    # ------------------------------------------------------------ DVOL and term structure

    def _observe_vol_index(self, record: VolIndexTick) -> list[Signal]:
        source = (record.venue, record.index)
        if self._dvol_source is None:
            self._dvol_source = source
        if source != self._dvol_source or not math.isfinite(record.value):
            return []  # one volatility index per underlying: the first one seen
        cfg = self.vol_config
        change = self._dvol.update(record.value, record.ts_event_ns, cfg)
        if change is None:
            return []
        before, after = change
        up = DVOL_BANDS.index(after) > DVOL_BANDS.index(before)
        if up:
            level = cfg.elevated_above if after == "elevated" else cfg.compressed_below
        else:
            level = cfg.compressed_below if after == "compressed" else cfg.elevated_above
        detail = {
            "kind": "dvol_band",
            "from": before,
            "to": after,
            "dvol": record.value,
            "venue": record.venue,
            "index": record.index,
            "compressed_below": cfg.compressed_below,
            "elevated_above": cfg.elevated_above,
            "hysteresis_points": cfg.hysteresis_points,
            "dwell_s": cfg.dwell_s,
        }
        direction = "up" if up else "down"
        return [Signal("vol_regime", direction, level, detail, f"dvol_band/{after}")]

    def _observe_term(self, book: GammaBook, ts_ns: int) -> list[Signal]:
        cfg = self.vol_config
        term = term_structure(book, ts_ns, cfg)
        if term is None:
            self._term.reset_pending()
            return []
        front, front_iv, back, back_iv = term
        spread = front_iv - back_iv
        change = self._term.update(spread, ts_ns, cfg)
        if change is None:
            return []
        state = "started" if change else "ended"
        detail = {
            "kind": "term_structure",
            "state": state,
            "front_expiry": format_asof(front),
            "back_expiry": format_asof(back),
            "front_atm_iv": round(front_iv, 4),
            "back_atm_iv": round(back_iv, 4),
            "spread_points": round(spread, 4),
            "margin_points": cfg.term_margin_points,
            "exit_points": cfg.term_margin_points - cfg.term_hysteresis_points,
            "dwell_s": cfg.dwell_s,
        }
        return [Signal("vol_regime", None, None, detail, f"term_structure/{state}")]
