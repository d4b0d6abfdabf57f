"""``vol_regime``: DVOL bands and term-structure inversion of one underlying (see
:mod:`engine.signals.crypto_regime`); vols in points (55.3 = 55.3 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from engine.core import kernels as k
from engine.signals.common import Signal, check_number
from engine.signals.composite import DVOL_BANDS
from engine.signals.dwell import Dwell
from schemas.config import Config, ConfigError
from schemas.levels import format_asof
from schemas.records import VolIndexTick
from schemas.time import NS_PER_DAY, NS_PER_S

if TYPE_CHECKING:
    from engine.core.book import GammaBook


@dataclass(frozen=True, slots=True)
class VolConfig(Config):
    """``vol_regime`` thresholds (TOML ``[detector.vol]``); vols in points (55.3 = 55.3 %)."""

    SECTION: ClassVar[str] = "detector.vol"
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
            check_number("vol", f.name, getattr(self, f.name))
        if not self.compressed_below + 2 * self.hysteresis_points < self.elevated_above:
            raise ConfigError(
                "vol bands must satisfy compressed_below + 2 × hysteresis_points < elevated_above"
            )
        if not self.term_front_min_days < self.term_back_min_days:
            raise ConfigError("vol term_front_min_days must be below term_back_min_days")

    @property
    def dwell_ns(self) -> int:
        return int(self.dwell_s * NS_PER_S)


class _DvolBand:
    """Confirmed DVOL band: a hysteresis band around each threshold, then the dwell."""

    __slots__ = ("confirmed",)

    def __init__(self) -> None:
        self.confirmed = Dwell()

    @property
    def band(self) -> str | None:
        return self.confirmed.value

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
        previous = self.band
        if self.confirmed.update(self.observed(value, cfg), ts, cfg.dwell_ns):
            return previous, self.band  # type: ignore[return-value]
        return None


class _Inversion:
    """Confirmed term-structure inversion (front ATM IV above back): hysteresis, then dwell."""

    __slots__ = ("confirmed",)

    def __init__(self) -> None:
        self.confirmed = Dwell()

    @property
    def inverted(self) -> bool | None:
        return self.confirmed.value

    def update(self, spread: float, ts: int, cfg: VolConfig) -> bool | None:
        """Feed one spread (points); returns the new state when it is confirmed changed."""
        if self.inverted:
            observed = spread >= cfg.term_margin_points - cfg.term_hysteresis_points
        else:
            observed = spread > cfg.term_margin_points
        if self.confirmed.update(observed, ts, cfg.dwell_ns):
            return observed
        return None

    def reset_pending(self) -> None:
        self.confirmed.reset_pending()


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


class VolWatch:
    """DVOL band and term-structure state of one underlying."""

    def __init__(self, config: VolConfig) -> None:
        self.config = config
        self._dvol = _DvolBand()
        self._dvol_source: tuple[str, str] | None = None
        self._term = _Inversion()

    @property
    def band(self) -> str | None:
        """The confirmed DVOL band; None before any DVOL value."""
        return self._dvol.band

    @property
    def term_inverted(self) -> bool | None:
        """Whether the term structure is confirmed inverted; None before it is known."""
        return self._term.inverted

    def observe_index(self, record: VolIndexTick) -> list[Signal]:
        """A ``dvol_band`` signal when one volatility-index value confirms a new band."""
        source = (record.venue, record.index)
        if self._dvol_source is None:
            self._dvol_source = source
        if source != self._dvol_source or not math.isfinite(record.value):
            return []  # one volatility index per underlying: the first one seen
        cfg = self.config
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

    def observe_term(self, book: GammaBook, ts_ns: int) -> list[Signal]:
        """A ``term_structure`` signal when the book confirms a new inversion state."""
        cfg = self.config
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
