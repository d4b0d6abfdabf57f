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

from typing import TYPE_CHECKING

from engine.signals.common import Signal
from engine.signals.composite import (
    COMPONENTS,
    COMPOSITE_READS,
    DVOL_BANDS,
    FUNDING_STATES,
    GAMMA_STATES,
    CompositeRead,
    composite_read,
)
from engine.signals.funding import AGGREGATE_VENUE, FundingConfig, FundingWatch
from engine.signals.vol import VolConfig, VolWatch, atm_iv, term_structure
from schemas.records import FundingRate, VolIndexTick

if TYPE_CHECKING:
    from engine.core.book import GammaBook

__all__ = [
    "AGGREGATE_VENUE",
    "COMPOSITE_READS",
    "CRYPTO_VENUES",
    "DVOL_BANDS",
    "FUNDING_STATES",
    "GAMMA_STATES",
    "CompositeRead",
    "CryptoRegime",
    "FundingConfig",
    "Signal",
    "VolConfig",
    "atm_iv",
    "composite_read",
    "term_structure",
]

# Option venues whose underlyings are crypto: they carry the joined read from their first
# evaluation (any underlying that receives funding or volatility-index records does too).
CRYPTO_VENUES = frozenset({"deribit"})


class CryptoRegime:
    """Funding, DVOL and term-structure state of one underlying, and its joined read."""

    def __init__(self, funding: FundingConfig, vol: VolConfig) -> None:
        self.funding_config = funding
        self.vol_config = vol
        self._funding = FundingWatch(funding)
        self._vol = VolWatch(vol)
        self.gamma: str | None = None
        self._read: str | None = None

    # ------------------------------------------------------------ the joined read

    @property
    def funding(self) -> str | None:
        """Funding state of the cross-venue rate; None until one interval has closed."""
        return self._funding.state

    @property
    def dvol(self) -> str | None:
        return self._vol.band

    @property
    def term_inverted(self) -> bool | None:
        return self._vol.term_inverted

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
            out = self._funding.observe(record)
        else:
            out = self._vol.observe_index(record)
        out.extend(self._composite_signal(previous))
        return out

    def observe_book(self, book: GammaBook, gamma: str | None, ts_ns: int) -> list[Signal]:
        """Signals at an evaluation point: the term structure and the gamma regime."""
        previous = self.composite()
        out = self._vol.observe_term(book, ts_ns)
        if gamma is not None:
            self.gamma = gamma
        out.extend(self._composite_signal(previous))
        return out
