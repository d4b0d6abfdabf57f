"""The regime detector: levels in, confirmed regime events out, on event time.

One :class:`RegimeDetector` per underlying keeps, for every bucket, small state machines
that turn a sequence of levels (one per evaluation point of the input) into events:

- ``flip_cross``: spot is confirmed on the other side of zero gamma (spot moved, or the
  level moved across spot: ``detail.cause``);
- ``call_wall_break`` / ``put_wall_break``: spot is confirmed beyond a wall (``up`` through
  the call wall, ``down`` through the put wall; crossing back gives the opposite direction);
- ``wall_reject``: spot tagged a wall's zone from inside the range and was pushed back by
  ``wall_reject_bps`` without a break;
- ``regime_change``: the sign of net GEX at spot is confirmed changed (``transition``, i.e.
  spot within the transition band of zero gamma, counts as neither sign);
- ``level_shift``: zero gamma or a wall is confirmed more than ``level_shift_bps`` of spot
  away from its last published value (appearing and vanishing levels count too);
- ``feed_stale``: an input feed of the underlying is older than ``stale_after_s`` on the
  underlying's event clock (``detail.state = "stale"``), and again when it is fresh
  (``"recovered"``); no level events come from stale state.

It also keeps, per bucket, the confirmed gamma regime label (``positive`` / ``negative`` /
``transition``, :meth:`RegimeDetector.gamma_regime`) that the crypto joined read uses
(:mod:`engine.signals.crypto_regime`), whose funding and volatility thresholds ride in this config
(``funding``, ``vol``; TOML ``[detector.funding]``, ``[detector.vol]``).

A crossing is confirmed when the observed side stays beyond a hysteresis band (``band_bps``
of spot around the level) for ``dwell_s`` of event time; a level shift when the new value
holds for ``dwell_s``. Time is always the venue time of the input (never the wall clock), and
event ids are made from the triggering input's position, so a replay at any speed gives the
same events with the same ids.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from engine.signals.composite import GAMMA_STATES
from engine.signals.dwell import Dwell
from engine.signals.funding import FundingConfig
from engine.signals.vol import VolConfig
from schemas.config import Config, ConfigError
from schemas.events import RegimeEvent
from schemas.levels import BUCKETS, BucketLevels, Levels, same_expiries
from schemas.time import NS_PER_S

ABOVE, BELOW, INSIDE = 1, -1, 0
LEVEL_NAMES = ("zero_gamma", "call_wall", "put_wall")


@dataclass(frozen=True, slots=True)
class DetectorConfig(Config):
    """Detector thresholds. Bands are in basis points of spot; times in event-time seconds.

    Defaults were chosen on the simulator's BTC sessions (index ticks every second, ~2-4 bp
    of noise per tick): a 10 bp band and a 3 s dwell give one event per real crossing and
    none from the noise around a level.
    """

    SECTION: ClassVar[str] = "detector"
    band_bps: float = 10.0  # hysteresis band around a level for crossings
    dwell_s: float = 3.0  # a new side or level must hold this long before it is confirmed
    level_shift_bps: float = 50.0  # zero gamma or a wall moving by more than this is a shift
    # ... per bucket where it differs: the 0DTE and front walls sit on the strikes next to
    # spot and step with it (benchmarks/signal_quality.py: 35.5 shifts/h at 50 bp, 9 at 200)
    level_shift_bps_by_bucket: tuple[tuple[str, float], ...] = (("0dte", 200.0), ("front", 200.0))
    wall_zone_bps: float = 15.0  # spot within this distance of a wall has tagged it
    wall_reject_bps: float = 50.0  # ... and moving back this far from it is a rejection
    stale_after_s: float = 30.0  # a feed older than this (event time) is stale
    buckets: tuple[str, ...] = BUCKETS
    funding: FundingConfig = field(default_factory=FundingConfig)  # funding_extreme
    vol: VolConfig = field(default_factory=VolConfig)  # vol_regime

    def __post_init__(self) -> None:
        for name in (
            "band_bps",
            "dwell_s",
            "level_shift_bps",
            "wall_zone_bps",
            "wall_reject_bps",
            "stale_after_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"detector {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"detector {name} must be finite and >= 0, got {value!r}")
        if self.stale_after_s <= 0:
            raise ConfigError("detector stale_after_s must be > 0")
        if self.wall_reject_bps <= self.wall_zone_bps:
            raise ConfigError("detector wall_reject_bps must exceed wall_zone_bps")
        for entry in self.level_shift_bps_by_bucket:
            ok = isinstance(entry, tuple) and len(entry) == 2 and entry[0] in BUCKETS
            if not ok or isinstance(entry[1], bool) or not isinstance(entry[1], int | float):
                raise ConfigError(
                    f"detector level_shift_bps_by_bucket entries are [bucket, bps], got {entry!r}"
                )
            if not (math.isfinite(entry[1]) and entry[1] >= 0):
                raise ConfigError(f"detector level_shift_bps_by_bucket {entry!r}: bps must be >= 0")
        unknown = set(self.buckets) - set(BUCKETS)
        if unknown or not self.buckets:
            raise ConfigError(f"detector buckets must be among {BUCKETS}, got {self.buckets!r}")
        if not isinstance(self.funding, FundingConfig) or not isinstance(self.vol, VolConfig):
            raise ConfigError("detector funding and vol must be FundingConfig and VolConfig")

    @property
    def dwell_ns(self) -> int:
        return int(self.dwell_s * NS_PER_S)

    def level_shift_bps_of(self, bucket: str) -> float:
        """The level-shift threshold of one bucket."""
        return dict(self.level_shift_bps_by_bucket).get(bucket, self.level_shift_bps)


@dataclass(frozen=True, slots=True)
class Trigger:
    """The input record at which an evaluation happens (its Kafka position and venue time)."""

    topic: str
    partition: int
    offset: int
    ts_event_ns: int

    def event_id(self, event_type: str, bucket: str, name: str | None = None) -> str:
        base = f"{self.topic}/{self.partition}/{self.offset}/{event_type}/{bucket}"
        return base if name is None else f"{base}/{name}"


class _Crossing:
    """Confirmed side of spot relative to a moving level: a band around it, then the dwell."""

    __slots__ = ("anchor_level", "anchor_spot", "confirmed", "last_level")

    def __init__(self) -> None:
        self.confirmed = Dwell()  # no side until spot is first seen clear of the band
        self.last_level = math.nan
        self.anchor_spot = math.nan
        self.anchor_level = math.nan

    @property
    def side(self) -> int:
        """ABOVE or BELOW once confirmed, INSIDE before."""
        side = self.confirmed.value
        return INSIDE if side is None else side

    def reset_pending(self) -> None:
        self.confirmed.reset_pending()

    def rebase(self, spot: float, level: float, band: float) -> None:
        """Take the side of spot relative to a new level as given (no crossing)."""
        self.confirmed.reset_pending()
        self.last_level = level
        if abs(spot - level) > band:
            self.confirmed.take(ABOVE if spot > level else BELOW)
            self.anchor_spot, self.anchor_level = spot, level

    def update(self, spot: float, level: float, band: float, ts: int, dwell: int) -> int:
        """Feed one observation; returns the new side when a crossing is confirmed, else 0."""
        self.last_level = level
        if spot > level + band:
            observed: int | None = ABOVE
        elif spot < level - band:
            observed = BELOW
        else:
            observed = None  # inside the band: neither side
        if observed is not None and self.side in (INSIDE, observed):
            self.anchor_spot, self.anchor_level = spot, level
        if self.confirmed.update(observed, ts, dwell):
            return self.side
        return INSIDE

    def cause(self, spot: float, level: float) -> str:
        """Whether spot or the level moved more since the last confirmed observation."""
        spot_move = abs(spot - self.anchor_spot)
        level_move = abs(level - self.anchor_level)
        return "level" if level_move > spot_move else "spot"


class _Shift:
    """Last published value of a level; confirms a move beyond a threshold after a dwell."""

    __slots__ = ("candidate", "pending_since", "reference", "seen")

    def __init__(self) -> None:
        self.seen = False
        self.reference: float | None = None
        self.candidate: float | None = None
        self.pending_since = -1

    def update(self, value: float | None, threshold: float, ts: int, dwell: int) -> bool:
        """True when ``value`` is confirmed as the new reference (the caller reads both)."""
        if not self.seen:
            self.seen, self.reference = True, value
            return False
        if _close(value, self.reference, threshold):
            self.pending_since = -1
            return False
        if self.pending_since < 0 or not _close(value, self.candidate, threshold):
            self.candidate, self.pending_since = value, ts
        if ts - self.pending_since >= dwell:
            self.pending_since = -1
            return True
        return False


def _close(a: float | None, b: float | None, threshold: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= threshold


class _WallTag:
    """A wall zone touched from inside the range, waiting for a rejection or a break."""

    __slots__ = ("armed", "extreme", "wall")

    def __init__(self) -> None:
        self.wall: float | None = None
        self.extreme = math.nan
        self.armed = True  # False after the wall relocated: spot must leave the zone first


class _BucketState:
    __slots__ = ("call", "call_tag", "flip", "gamma", "put", "put_tag", "regime", "shifts")

    def __init__(self) -> None:
        self.gamma = Dwell()  # the gamma regime label
        self.flip = _Crossing()
        self.call = _Crossing()
        self.put = _Crossing()
        self.regime = Dwell()  # the sign of net GEX: "positive" / "negative"
        self.shifts = {name: _Shift() for name in LEVEL_NAMES}
        self.call_tag = _WallTag()
        self.put_tag = _WallTag()

    def reset_pending(self) -> None:
        for crossing in (self.flip, self.call, self.put):
            crossing.reset_pending()
        self.regime.reset_pending()
        self.gamma.reset_pending()
        for shift in self.shifts.values():
            shift.pending_since = -1


_SIGNS = ("positive", "negative")


class RegimeDetector:
    """Events of one underlying from its levels at successive evaluation points."""

    def __init__(
        self,
        underlying: str,
        config: DetectorConfig | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        transition_band_bps: float | None = None,
    ) -> None:
        """``transition_band_bps`` (the levels' transition band) adds hysteresis to leaving
        the ``transition`` gamma label: spot must be ``band_bps`` beyond that band."""
        self.underlying = underlying
        self.config = config or DetectorConfig()
        self._clock_ns = clock_ns
        self._transition_band_bps = transition_band_bps
        self._buckets = {name: _BucketState() for name in self.config.buckets}
        self.stale_feeds: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_clock_ns"]  # not state: the owner gives its clock again (use_clock)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clock_ns = time.time_ns

    def use_clock(self, clock_ns: Callable[[], int]) -> None:
        """The wall clock that stamps ``ts_emit`` (after a restore from a checkpoint)."""
        self._clock_ns = clock_ns

    def gamma_regime(self, bucket: str = "all") -> str | None:
        """The bucket's confirmed gamma regime label: ``positive`` / ``negative`` /
        ``transition`` held for ``dwell_s`` (the first label seen is taken as given), or None
        before any."""
        state = self._buckets.get(bucket)
        return None if state is None else state.gamma.value

    def evaluate(
        self,
        levels: Levels,
        trigger: Trigger,
        feed_ages_s: Mapping[str, float] | None = None,
    ) -> list[RegimeEvent]:
        """Events confirmed at this evaluation point (usually none).

        ``feed_ages_s`` maps each input feed of the underlying (``"options"``, ``"index"``)
        to its age on the event clock; feeds older than ``stale_after_s`` make the state
        stale.
        """
        out: list[RegimeEvent] = []
        stale = tuple(
            sorted(
                name for name, age in (feed_ages_s or {}).items() if age > self.config.stale_after_s
            )
        )
        if stale != self.stale_feeds:
            out.extend(self._stale_events(levels, trigger, stale, feed_ages_s or {}))
            self.stale_feeds = stale
        if stale:
            for state in self._buckets.values():
                state.reset_pending()
            return out
        per_bucket: dict[str, list[RegimeEvent]] = {}
        for name, state in self._buckets.items():
            bucket = levels.buckets.get(name)
            if bucket is None or bucket.contracts_used == 0:
                if bucket is not None:
                    per_bucket[name] = self._emptied_events(levels, name, bucket, state, trigger)
                state.reset_pending()
                continue
            per_bucket[name] = self._bucket_events(levels, name, bucket, state, trigger)
        out.extend(_deduplicated(per_bucket, levels))
        return out

    def _emptied_events(
        self,
        levels: Levels,
        name: str,
        bucket: BucketLevels,
        state: _BucketState,
        trigger: Trigger,
    ) -> list[RegimeEvent]:
        """A bucket that had levels and now has no contracts (its expiry settled): each level
        it had vanishes at once (a settlement is certain, not noise: no dwell), and the
        bucket starts afresh, so the next expiry's levels appear as level shifts."""
        out = []
        fresh = _BucketState()
        for level_name in LEVEL_NAMES:
            previous = state.shifts[level_name].reference
            fresh.shifts[level_name].seen = True  # reference None: the next value is a shift
            if previous is None:
                continue
            detail = {"level_name": level_name, "from": previous, "to": None, "cause": "emptied"}
            out.append(
                self._event(
                    levels, name, bucket, trigger, "level_shift", None, None, detail, level_name
                )
            )
        if out:
            self._buckets[name] = fresh
        return out

    # ------------------------------------------------------------ per bucket

    def _bucket_events(
        self,
        levels: Levels,
        name: str,
        bucket: BucketLevels,
        state: _BucketState,
        trigger: Trigger,
    ) -> list[RegimeEvent]:
        cfg = self.config
        spot = levels.spot
        ts = trigger.ts_event_ns
        dwell = cfg.dwell_ns
        band = spot * cfg.band_bps * 1e-4
        out: list[RegimeEvent] = []

        def emit(
            event_type: str,
            direction: str | None,
            level: float | None,
            detail: dict[str, Any],
            suffix: str | None = None,
        ) -> None:
            out.append(
                self._event(
                    levels, name, bucket, trigger, event_type, direction, level, detail, suffix
                )
            )

        def emit_break(
            wall_name: str,
            event_type: str,
            side: int,
            outward: int,
            wall: float,
            crossing: _Crossing,
            extra: dict[str, Any],
        ) -> None:
            detail = {
                "wall": wall_name,
                "through": "outward" if side == outward else "inward",
                "cause": crossing.cause(spot, wall),
                "band_bps": cfg.band_bps,
                "dwell_s": cfg.dwell_s,
                **extra,
            }
            emit(event_type, "up" if side == ABOVE else "down", wall, detail)

        if bucket.zero_gamma is None:
            state.flip.reset_pending()
        else:
            side = state.flip.update(spot, bucket.zero_gamma, band, ts, dwell)
            if side:
                emit(
                    "flip_cross",
                    "up" if side == ABOVE else "down",
                    bucket.zero_gamma,
                    {
                        "cause": state.flip.cause(spot, bucket.zero_gamma),
                        "side": "above" if side == ABOVE else "below",
                        "band_bps": cfg.band_bps,
                        "dwell_s": cfg.dwell_s,
                    },
                )

        for wall_name, wall, crossing, tag, event_type, outward in (
            ("call", bucket.call_wall, state.call, state.call_tag, "call_wall_break", ABOVE),
            ("put", bucket.put_wall, state.put, state.put_tag, "put_wall_break", BELOW),
        ):
            if wall is None:
                crossing.reset_pending()
                tag.wall = None
                continue
            held = crossing.last_level
            if (
                levels.wall_rule == "side"
                and wall != held
                and crossing.side == -outward
                and (spot - held) * outward >= -band
            ):
                # A side-rule wall steps to the next strike as soon as spot reaches it: the
                # break is judged against the wall in force before the move (band and dwell).
                side = crossing.update(spot, held, band, ts, dwell)
                shift = state.shifts[f"{wall_name}_wall"]
                shift.pending_since = -1  # the wall in force is being tested: not a shift yet
                if side == outward:
                    tag.wall = None
                    detail = {"broken_wall": held, "next_wall": wall}
                    emit_break(wall_name, event_type, side, outward, held, crossing, detail)
                    crossing.rebase(spot, wall, band)
                    shift.reference = wall  # the break tells the wall moved on: no level_shift
                continue
            if wall != held and not math.isnan(held):
                # The wall moved to another strike: spot did not go through it (a moved
                # wall is a level_shift), so the side is taken afresh.
                crossing.rebase(spot, wall, band)
                tag.wall = None
                tag.armed = False  # a wall that moved onto spot was not tagged by spot
                continue
            side = crossing.update(spot, wall, band, ts, dwell)
            if side:
                tag.wall = None
                emit_break(wall_name, event_type, side, outward, wall, crossing, {})
                continue
            rejected = self._wall_reject(spot, wall, crossing, tag, outward)
            if rejected is not None:
                emit(
                    "wall_reject",
                    "down" if outward == ABOVE else "up",
                    wall,
                    {
                        "wall": wall_name,
                        "extreme": rejected,
                        "zone_bps": cfg.wall_zone_bps,
                        "reject_bps": cfg.wall_reject_bps,
                    },
                    suffix=wall_name,
                )

        if bucket.regime in GAMMA_STATES:
            state.gamma.update(self._gamma_label(spot, bucket, state.gamma.value), ts, dwell)
        sign = bucket.regime if bucket.regime in _SIGNS else None  # transition: neither
        previous = state.regime.value
        if state.regime.update(sign, ts, dwell):
            emit(
                "regime_change",
                None,
                bucket.zero_gamma,
                {
                    "from": previous,
                    "to": sign,
                    "net_gex": bucket.net_gex,
                    "kind": "gamma",
                },
            )

        threshold = spot * cfg.level_shift_bps_of(name) * 1e-4
        for level_name in LEVEL_NAMES:
            shift = state.shifts[level_name]
            value = getattr(bucket, level_name)
            if shift.update(value, threshold, ts, dwell):
                previous, shift.reference = shift.reference, value
                direction = None
                if previous is not None and value is not None:
                    direction = "up" if value > previous else "down"
                emit(
                    "level_shift",
                    direction,
                    value,
                    {"level_name": level_name, "from": previous, "to": value},
                    suffix=level_name,
                )
        return out

    def _gamma_label(self, spot: float, bucket: BucketLevels, current: str | None) -> str:
        observed = bucket.regime or ""
        band = self._transition_band_bps
        if (
            current == "transition"
            and observed != "transition"
            and band is not None
            and bucket.zero_gamma is not None
            and abs(spot - bucket.zero_gamma) <= spot * (band + self.config.band_bps) * 1e-4
        ):
            return "transition"  # hysteresis: not yet clear of the transition band
        return observed

    def _wall_reject(
        self, spot: float, wall: float, crossing: _Crossing, tag: _WallTag, outward: int
    ) -> float | None:
        """The extreme spot reached in the zone when the wall rejects spot, else None."""
        cfg = self.config
        if crossing.side != -outward:  # spot is not confirmed inside the range
            tag.wall = None
            return None
        if tag.wall is not None and tag.wall != wall:
            tag.wall = None  # the wall moved: a new wall starts a new test
        distance = (wall - spot) * outward  # > 0 inside the range
        zone = spot * cfg.wall_zone_bps * 1e-4
        if not tag.armed:
            tag.armed = distance > zone
            return None
        if tag.wall is None:
            if distance <= zone:
                tag.wall, tag.extreme = wall, spot
            return None
        tag.extreme = max(tag.extreme, spot) if outward == ABOVE else min(tag.extreme, spot)
        if distance >= spot * cfg.wall_reject_bps * 1e-4:
            extreme = tag.extreme
            tag.wall = None
            return extreme
        return None

    # ------------------------------------------------------------ events

    def _stale_events(
        self,
        levels: Levels,
        trigger: Trigger,
        stale: tuple[str, ...],
        ages: Mapping[str, float],
    ) -> list[RegimeEvent]:
        bucket = levels.buckets.get("all")
        if bucket is None:
            return []
        newly = [f for f in stale if f not in self.stale_feeds]
        fresh = [f for f in self.stale_feeds if f not in stale]
        out = []
        for feed, state in [*((f, "stale") for f in newly), *((f, "recovered") for f in fresh)]:
            out.append(
                self._event(
                    levels,
                    "all",
                    bucket,
                    trigger,
                    "feed_stale",
                    None,
                    None,
                    {
                        "state": state,
                        "feed": feed,
                        "age_s": round(float(ages.get(feed, 0.0)), 3),
                        "stale_after_s": self.config.stale_after_s,
                    },
                    suffix=f"{feed}/{state}",
                )
            )
        return out

    def event(
        self,
        levels: Levels,
        trigger: Trigger,
        event_type: str,
        direction: str | None,
        level: float | None,
        detail: dict[str, Any],
        suffix: str | None = None,
    ) -> RegimeEvent | None:
        """An event of the underlying as a whole (bucket ``all``) carrying ``levels``; None
        when the levels have no ``all`` bucket."""
        bucket = levels.buckets.get("all")
        if bucket is None:
            return None
        return self._event(
            levels, "all", bucket, trigger, event_type, direction, level, detail, suffix
        )

    def _event(
        self,
        levels: Levels,
        bucket_name: str,
        bucket: BucketLevels,
        trigger: Trigger,
        event_type: str,
        direction: str | None,
        level: float | None,
        detail: dict[str, Any],
        suffix: str | None = None,
    ) -> RegimeEvent:
        return RegimeEvent(
            id=trigger.event_id(event_type, bucket_name, suffix),
            type=event_type,
            underlying=self.underlying,
            bucket=bucket_name,
            direction=direction,
            ts_event=trigger.ts_event_ns,
            ts_emit=self._clock_ns(),
            spot=levels.spot,
            level=level,
            regime=bucket.regime,
            levels=event_levels(levels, bucket),
            model=levels.model,
            detail=detail,
        )


def _event_key(event: RegimeEvent) -> tuple[object, ...]:
    """What makes two buckets' events the same event (all but the bucket)."""
    detail = event.detail
    return (event.type, event.direction, event.level, detail.get("level_name"), detail.get("wall"))


def _deduplicated(per_bucket: dict[str, list[RegimeEvent]], levels: Levels) -> list[RegimeEvent]:
    """One event per real crossing (DESIGN §2.6): where buckets hold exactly the same
    expiries, an event that several of them emit is kept under the narrowest (0dte, front,
    all) with ``detail.buckets`` listing every bucket it stands for; an event only one of
    them emits (their histories differ) is kept as it is. Order: the buckets' order."""
    groups = same_expiries({name: levels.buckets[name] for name in per_bucket})
    merged: dict[str, list[RegimeEvent]] = {
        name: list(events) for name, events in per_bucket.items()
    }
    for name, group in groups.items():
        members = [b for b in group if b in per_bucket]
        if len(members) < 2 or members[0] != name:
            continue  # handled from the group's primary
        primary = merged[name]
        for index, event in enumerate(primary):
            key = _event_key(event)
            stands_for = [name]
            for other in members[1:]:
                twin = next((e for e in merged[other] if _event_key(e) == key), None)
                if twin is not None:
                    merged[other].remove(twin)
                    stands_for.append(other)
            if len(stands_for) > 1:
                detail = {**event.detail, "buckets": stands_for}
                primary[index] = replace(event, detail=detail)
    return [event for name in per_bucket for event in merged[name]]


def event_levels(levels: Levels, bucket: BucketLevels) -> dict[str, Any]:
    """The levels object an event carries: its bucket's levels plus spot and time."""
    out = bucket.to_dict()
    out["spot"] = levels.spot
    out["asof_ns"] = levels.asof_ns
    return out
