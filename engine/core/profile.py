"""What charts draw, from the book's own arrays and kernels: profile, strike GEX, heatmap.

Nothing here re-derives a number: the profile is the book's bucket row on its spot grid,
per-strike GEX comes from :func:`engine.core.levels.strike_gex` (the kernel the levels use),
and the strike × expiry heatmap sums :func:`engine.core.kernels.slot_gex_at` per slot, so
each heatmap column sums to that expiry's share of the per-strike bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.core import kernels as k
from engine.core.book import BUCKET_BITS, BUCKET_ROWS, GammaBook
from engine.core.levels import strike_gex
from schemas.levels import BUCKETS
from schemas.profile import BucketProfile, Profile


def _by_strike(book: GammaBook) -> np.ndarray:
    """Indices into the book's strike table, ordered by strike."""
    return np.argsort(book.strike_values[: book.n_strikes], kind="stable")


def bucket_profile(book: GammaBook, bucket: str) -> BucketProfile:
    """The bucket's profile row on the grid and its per-strike GEX at spot, for every strike
    with a contribution (so the strikes' GEX sums to the bucket's net GEX)."""
    book.ensure_profile()
    _, _, call, put = strike_gex(book, bucket)
    idx = _by_strike(book)
    idx = idx[(call[idx] != 0.0) | (put[idx] != 0.0)]
    return BucketProfile(
        spots=tuple(book.grid_spots.tolist()),
        profile=tuple(book.profile[BUCKET_ROWS[bucket]].tolist()),
        strikes=tuple(book.strike_values[idx].tolist()),
        call_gex=tuple(call[idx].tolist()),
        put_gex=tuple(put[idx].tolist()),
    )


def compute_profile(book: GammaBook) -> Profile:
    """Profile of every bucket at the book's current spot and reference time."""
    return Profile(
        underlying=book.underlying,
        spot=book.spot,
        asof_ns=book.ts_event_ns,
        model=book.config.model,
        buckets={name: bucket_profile(book, name) for name in BUCKETS},
    )


@dataclass(frozen=True, slots=True)
class Heatmap:
    """Net dealer GEX at spot per (strike, expiry) of one bucket: ``gex[strike, expiry]``."""

    strikes: np.ndarray  # strikes with a contribution, ascending
    expiries_ns: np.ndarray  # ascending settlement instants
    gex: np.ndarray  # shape (len(strikes), len(expiries_ns))


def strike_expiry_gex(book: GammaBook, bucket: str) -> Heatmap:
    """Strike × expiry dealer GEX at spot of one bucket."""
    book.ensure_profile()
    idx = _by_strike(book)
    row_of = np.full(book.n_strikes, -1, dtype=np.int64)
    row_of[idx] = np.arange(idx.shape[0])
    expiries = np.array(book.bucket_expiries(bucket), dtype=np.int64)
    gex = np.zeros((idx.shape[0], expiries.shape[0]))
    bit = BUCKET_BITS[bucket]
    use_venue = book.config.gamma_source == "venue"
    f, i = book.slot_f, book.slot_i
    for slot in range(book.n_slots):
        if not (i[k.I_BUCKETS, slot] & bit):
            continue
        row = row_of[i[k.I_STRIKE_IDX, slot]]
        value = k.slot_gex_at(book.spot, f, i, slot, use_venue)
        if np.isnan(value):
            continue
        col = int(np.searchsorted(expiries, book.slot_expiry_ns[slot]))
        gex[row, col] += value
    keep = gex.any(axis=1)  # strikes with a contribution, as in bucket_profile
    return Heatmap(book.strike_values[idx][keep], expiries, gex[keep])
