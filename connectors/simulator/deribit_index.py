"""The simulated index path: dealer-hedging feedback from the simulator's own gamma book.

:class:`IndexPath` is mixed into the session (``deribit_session._Session``). Every
``feedback_interval_s`` it loads the live chain into an :class:`engine.core.book.GammaBook`
and reads the levels; the index then walks with a volatility that positive gamma damps and
negative gamma amplifies, plus the scenario's scripted drift, and crossings of the levels
are recorded as :class:`~connectors.simulator.deribit_types.LevelCrossing`.
"""

from __future__ import annotations

import math

import numpy as np

from connectors.simulator.deribit_config import path_at
from connectors.simulator.deribit_quotes import MarketQuotes, dec
from connectors.simulator.deribit_types import STEP_MS, VENUE, LevelCrossing, Levels
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels, strike_gex
from schemas.contracts import OptionContract, OptionRight
from schemas.time import MS_PER_YEAR, NS_PER_MS

CROSSING_BAND = 0.0003  # the index must be 3 bp beyond a level to count as having crossed it


class IndexPath(MarketQuotes):
    """The index, the feedback book and the level crossings (mixed into the session)."""

    spot_min: float
    spot_max: float
    vol_noise: float
    dvol_base: float
    crossings: list[LevelCrossing]
    rng_path: np.random.Generator
    rng_vol: np.random.Generator

    def _contracts(self, indices: np.ndarray, ts_ms: int) -> list[OptionContract]:
        ch = self.chain
        index = dec(self.spot, 100.0)
        ts_ns = ts_ms * NS_PER_MS
        out = []
        for i in indices.tolist():
            tau = (self.expiry_ms[i] - ts_ms) / MS_PER_YEAR
            out.append(
                OptionContract(
                    venue=VENUE,
                    underlying=self.cur,
                    instrument=ch.names[i],
                    root=self.cur,
                    expiry_ns=self.expiry_ms[i] * NS_PER_MS,
                    strike=ch.decimal_strike[i],
                    right=OptionRight.CALL if self.is_call[i] else OptionRight.PUT,
                    multiplier=1.0,
                    open_interest=self.oi[i],
                    iv=self._iv(i) / 100.0,
                    underlying_price=self._forward(index, tau) if tau > 0 else index,
                    index_price=index,
                    ts_event_ns=ts_ns,
                    ts_recv_ns=ts_ns,
                    premium_currency=self.cur,
                )
            )
        return out

    def _init_book(self, ts_ms: int) -> None:
        self.book = GammaBook(
            self.cur,
            VENUE,
            LevelsConfig(model="long_calls_short_puts"),
            self.spot,
            ts_ms * NS_PER_MS,
            capacity=self.chain.n,
        )
        self.book.upsert(self._contracts(np.flatnonzero(self.alive), ts_ms))
        self.book_vol_factor = self.vol_factor
        self.dirty: set[int] = set()
        self.levels = self._read_levels()
        self.initial_levels = self.levels
        # GEX scale of the feedback: the largest |profile| within ±5 % of the initial spot.
        near = np.abs(self.book.grid_spots / self.spot - 1.0) <= 0.05
        self.gex_scale = float(np.abs(self.book.profile[0][near]).max()) or 1.0
        self.gex_norm = self.levels.net_gex / self.gex_scale

    def _read_levels(self) -> Levels:
        levels = compute_levels(self.book).buckets["all"]
        return Levels(levels.zero_gamma, levels.call_wall, levels.put_wall, levels.net_gex)

    def _refresh(self, ts_ms: int) -> None:
        """Bring the simulator's book to now: time decay, marks, OI; then read the levels."""
        book = self.book
        book.advance_time(ts_ms * NS_PER_MS)
        if abs(self.vol_factor / self.book_vol_factor - 1.0) > 0.01:
            update = np.flatnonzero(self.alive)
            self.book_vol_factor = self.vol_factor
        else:
            update = np.array(sorted(i for i in self.dirty if self.alive[i]), dtype=np.int64)
        self.dirty.clear()
        if update.size:
            book.upsert(self._contracts(update, ts_ms))
        book.set_spot(self.spot, ts_ms * NS_PER_MS)
        self.levels = self._read_levels()
        self.gex_norm = float(np.clip(self.levels.net_gex / self.gex_scale, -1.0, 1.0))

    # ----------------------------------------------------------------- index path

    def _scenario_target(self, frac: float) -> tuple[float, float] | None:
        """(log target, seconds to reach it) of the scripted drift, or None."""
        if self.config.scenario == "none" or frac < 0.15:
            return None
        duration = self.config.duration_s
        if self.config.scenario == "call_wall":  # a rally through the call wall, then hold
            if self.wall_target is None:
                self.scenario_wall = self._wall_beyond(self.spot * 1.01, call=True)
                self.wall_target = self.scenario_wall * (1.0 + 0.006)
            if frac >= 0.8:
                return math.log(self.wall_target), 0.1 * duration
            return math.log(self.wall_target), max((0.8 - frac) * duration, 0.03 * duration)
        lv = self.levels
        if frac < 0.45:
            if not self.flip_done:
                zero = lv.zero_gamma if lv.zero_gamma is not None else self.spot0 * 0.99
                self.flip_target = min(zero, self.spot0) * (1.0 - 0.005)
            end = 0.45
            target = self.flip_target
        else:
            if self.wall_target is None:
                self.scenario_wall = self._wall_beyond(self.spot * 0.99, call=False)
                self.wall_target = self.scenario_wall * (1.0 - 0.006)
            target = self.wall_target
            if frac >= 0.8:  # aftermath: hold below the broken wall
                return math.log(target), 0.1 * duration
            end = 0.8
        remaining = max((end - frac) * duration, 0.03 * duration)
        return math.log(target), remaining

    def _wall_beyond(self, limit: float, call: bool) -> float:
        """The strike above ``limit`` with the largest dealer call GEX at spot (``call``), or
        below it with the largest dealer put GEX (USD)."""
        _, _, calls, puts = strike_gex(self.book, "all")
        gex = calls if call else puts
        strikes = self.book.strike_values[: gex.shape[0]]
        beyond = strikes > limit if call else strikes < limit
        found = np.flatnonzero(beyond & (gex != 0.0))
        if found.size == 0:
            return limit * (1.03 if call else 0.97)
        return float(strikes[found[np.argmax(np.abs(gex[found]))]])

    def _step_path(self, step: int) -> None:
        cfg = self.config
        dt = STEP_MS / 1000.0
        frac = step * dt / cfg.duration_s
        g = self.gex_norm if cfg.feedback else 0.0
        # Dealers long gamma sell rallies and buy dips: less volatility and some mean
        # reversion; short gamma, they chase: more volatility and some momentum.
        vol_mult = min(max(math.exp(-1.2 * g), 0.5), 2.2)
        phi = min(max(-0.4 * g, -0.3), 0.25)
        sigma = 1.5 * self.spec.atm_vol / math.sqrt(365 * 86_400.0)  # per √s, intraday
        shock = sigma * vol_mult * math.sqrt(dt) * float(self.rng_path.standard_normal())
        self.noise_ret = shock + phi * self.noise_ret
        drift = 0.0
        target = self._scenario_target(frac)
        if target is not None:
            log_target, remaining = target
            drift = (log_target - math.log(self.spot)) / remaining * dt
        self.spot *= math.exp(drift + self.noise_ret)
        self.spot_min = min(self.spot_min, self.spot)
        self.spot_max = max(self.spot_max, self.spot)
        # IVs: spot down → vol up, plus a slow common wiggle.
        self.vol_noise += -0.02 * self.vol_noise * dt + 0.0015 * math.sqrt(dt) * float(
            self.rng_vol.standard_normal()
        )
        self.vol_factor = math.exp(-1.5 * math.log(self.spot / self.spot0) + self.vol_noise)
        if cfg.dvol_path:
            self.vol_factor *= path_at(cfg.dvol_path, step * dt) / self.dvol_base

    def _check_crossings(self, ts_ms: int) -> None:
        """Record the index crossing a level: beyond it by CROSSING_BAND, as the book sees it.

        A wall that moves to another strike, or a zero gamma that jumps to another root,
        starts afresh instead of counting as a crossing; except a side-rule wall that steps
        on because spot reached it (DESIGN §2.6): that wall stays the one in force until
        spot is beyond it by the band (a crossing) or back inside.
        """
        for name in ("zero_gamma", "call_wall", "put_wall"):
            level = getattr(self.levels, name)
            side, seen = self.sides.get(name, (0, None))
            if level is None:
                self.sides[name] = (0, None)
                continue
            outward = 1 if name == "call_wall" else -1
            if name != "zero_gamma" and seen is not None and level != seen and side == -outward:
                past = (self.spot / seen - 1.0) * outward
                if past > CROSSING_BAND:
                    direction = "up" if outward > 0 else "down"
                    self.crossings.append(
                        LevelCrossing(ts_ms * NS_PER_MS, name, direction, seen, self.spot)
                    )
                elif past >= -CROSSING_BAND:
                    continue  # at the wall in force: wait for the band either way
            if seen is None or abs(level / seen - 1.0) > (0.005 if name == "zero_gamma" else 0):
                side = 0  # a new level: no crossing until the spot has been on one side
            if self.spot > level * (1.0 + CROSSING_BAND):
                now = 1
            elif self.spot < level * (1.0 - CROSSING_BAND):
                now = -1
            else:
                now = side
            self.sides[name] = (now, level)
            if side in (0, now):
                continue
            direction = "up" if now > 0 else "down"
            self.crossings.append(
                LevelCrossing(ts_ms * NS_PER_MS, name, direction, level, self.spot)
            )
            if name == "zero_gamma" and direction == "down":
                self.flip_done = True
