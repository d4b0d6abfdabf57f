"""Levels of a gamma book: net GEX, zero gamma (all roots), walls, regime, per bucket."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from engine.core import kernels as k
from engine.core.book import BUCKET_BITS, BUCKET_ROWS, GammaBook
from schemas.levels import BUCKETS, BucketLevels, Levels, format_asof, same_expiries

_ROOT_REL_TOL = 1e-12
_ROOT_MAX_ITER = 100
_ROOT_STATUS = ("none_in_range", "ok", "multiple")  # by the number of roots: 0, 1, more


def compute_levels(book: GammaBook) -> Levels:
    """Levels of every bucket at the book's current spot and reference time."""
    book.ensure_profile()
    cfg = book.config
    buckets: dict[str, BucketLevels] = {}
    by_expiries: dict[tuple[int, ...], BucketLevels] = {}
    for name in BUCKETS:
        # Buckets over the same expiries hold the same contracts (on an expiry day the 0DTE
        # expiry is also the front one): their levels are computed once.
        expiries = tuple(book.bucket_expiries(name))
        levels = by_expiries.get(expiries)
        if levels is None:
            levels = by_expiries[expiries] = bucket_levels(book, name, expiries)
        buckets[name] = levels
    for name, group in same_expiries(buckets).items():
        others = [b for b in group if b != name]
        if others:
            buckets[name] = replace(buckets[name], same_as=others[0])
    return Levels(
        underlying=book.underlying,
        spot=book.spot,
        asof_ns=book.ts_event_ns,
        model=cfg.model,
        preset=cfg.preset,
        gamma_source=cfg.gamma_source,
        buckets=buckets,
        wall_rule=cfg.wall_rule,
    )


def strike_gex(book: GammaBook, bucket: str) -> tuple[float, int, np.ndarray, np.ndarray]:
    """(net GEX, contracts used, per-strike call GEX, per-strike put GEX) of a bucket at spot.

    The per-strike arrays are views of the book's buffers, indexed like ``book.strike_values``,
    valid until the next call.
    """
    n_strikes = book.n_strikes
    call = book.call_by_strike[:n_strikes]
    put = book.put_by_strike[:n_strikes]
    net, used = k.strike_gex_at_spot(
        book.spot,
        book.slot_f,
        book.slot_i,
        book.n_slots,
        BUCKET_BITS[bucket],
        book.config.gamma_source == "venue",
        call,
        put,
    )
    return net, used, call, put


def bucket_levels(
    book: GammaBook, bucket: str, expiries_ns: tuple[int, ...] | None = None
) -> BucketLevels:
    """Levels of one bucket (``expiries_ns``: its expiries, when already known)."""
    cfg = book.config
    net, used, call, put = strike_gex(book, bucket)
    if expiries_ns is None:
        expiries_ns = tuple(book.bucket_expiries(bucket))
    expiries = tuple(format_asof(e) for e in expiries_ns)
    if used == 0:
        return BucketLevels(
            0.0, None, (), None, None, None, None, 0, expiries, zero_gamma_status="empty"
        )
    call_idx, put_idx, abs_idx = k.walls(call, put)
    strikes = book.strike_values[: book.n_strikes]
    reach = book.spot * cfg.wall_window  # (not spot × 1.15: 100 × 1.15 < 115 in binary)
    lo, hi = book.spot - reach, book.spot + reach
    if cfg.wall_rule == "side":
        call_idx, put_idx = k.side_walls(call, put, strikes, book.spot, lo, hi)
    call_oi, put_oi = strike_open_interest(book, bucket)
    call_oi_idx, put_oi_idx = k.side_walls(call_oi, put_oi, strikes, book.spot, lo, hi)
    crossings, zero_gamma = _zero_gamma(book, bucket)
    dex, vex, chex = k.exposures_at_spot(
        book.spot, book.slot_f, book.slot_i, book.n_slots, BUCKET_BITS[bucket]
    )
    return BucketLevels(
        net_gex=float(net),
        zero_gamma=zero_gamma,
        zero_gamma_crossings=crossings,
        call_wall=_strike(book, call_idx),
        put_wall=_strike(book, put_idx),
        abs_gamma_strike=_strike(book, abs_idx),
        regime=_regime(net, zero_gamma, book.spot, cfg.transition_band_bps),
        contracts_used=int(used),
        expiries=expiries,
        call_wall_oi=_strike(book, call_oi_idx),
        put_wall_oi=_strike(book, put_oi_idx),
        zero_gamma_status=_ROOT_STATUS[min(len(crossings), 2)],
        zero_gamma_range=(float(book.grid_spots[0]), float(book.grid_spots[-1])),
        net_dex=float(dex),
        net_vex=float(vex),
        net_chex=float(chex),
    )


def strike_open_interest(book: GammaBook, bucket: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-strike call OI, per-strike put OI) of a bucket, indexed like ``book.strike_values``;
    fresh arrays (the OI walls are computed once per levels, off the per-tick path)."""
    call = np.zeros(book.n_strikes)
    put = np.zeros(book.n_strikes)
    k.strike_open_interest(book.slot_f, book.slot_i, book.n_slots, BUCKET_BITS[bucket], call, put)
    return call, put


def _strike(book: GammaBook, idx: int) -> float | None:
    return None if idx < 0 else float(book.strike_values[idx])


def _regime(net: float, zero_gamma: float | None, spot: float, band_bps: float) -> str:
    if zero_gamma is not None and abs(spot - zero_gamma) <= spot * band_bps * 1e-4:
        return "transition"
    if net > 0:
        return "positive"
    if net < 0:
        return "negative"
    return "transition"


def _zero_gamma(book: GammaBook, bucket: str) -> tuple[tuple[float, ...], float | None]:
    """All roots of the bucket's profile in the grid's range, and the chosen zero gamma."""
    row = book.profile[BUCKET_ROWS[bucket]]
    spots = book.grid_spots
    roots = np.empty(row.shape[0])
    brackets = np.empty((2, row.shape[0]), dtype=np.int64)
    count = k.profile_crossings(row, spots, roots, brackets)
    if count == 0:
        return (), None
    roots = roots[:count].copy()
    nearest = int(np.argmin(np.abs(roots - book.spot)))
    chosen = 0 if book.config.root_rule == "first" else nearest
    if book.config.refine_root:
        lo, hi = spots[brackets[0, chosen]], spots[brackets[1, chosen]]
        roots[chosen] = refine_root(book, BUCKET_BITS[bucket], lo, hi, roots[chosen])
    return tuple(float(r) for r in roots), float(roots[chosen])


def refine_root(book: GammaBook, bit: int, lo: float, hi: float, guess: float) -> float:
    """Refine a bracketed root of the re-priced profile (Illinois regula falsi)."""

    slots = book.slot_scratch[
        : k.live_slots_into(book.slot_i, book.n_slots, bit, book.slot_scratch)
    ]

    def gex(s: float) -> float:
        return k.total_gex_at(s, book.slot_f, slots)

    f_lo, f_hi = gex(lo), gex(hi)
    if f_lo == 0.0:
        return lo
    if f_hi == 0.0:
        return hi
    if (f_lo > 0) == (f_hi > 0):
        return guess  # the grid's sign change is below re-pricing precision: keep it
    side = 0
    x = guess
    for _ in range(_ROOT_MAX_ITER):
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        f_x = gex(x)
        if f_x == 0.0 or (hi - lo) <= _ROOT_REL_TOL * abs(x):
            break
        if (f_x > 0) == (f_hi > 0):
            hi, f_hi = x, f_x
            if side == -1:
                f_lo *= 0.5
            side = -1
        else:
            lo, f_lo = x, f_x
            if side == 1:
                f_hi *= 0.5
            side = 1
    return x if math.isfinite(x) else guess
