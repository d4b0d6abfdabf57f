"""numba kernels: the dealer gamma profile over a spot grid, GEX at spot, walls, roots.

Kernels take only numpy arrays and scalars and never allocate per call on the hot paths.
Per-contract state is a structure of arrays: ``slot_f[FIELD, slot]`` (float64) and
``slot_i[FIELD, slot]`` (int64), field indices below. The slow, obvious reference that the
tests compare every kernel against is ``tests/reference.py``. Option pricing (greeks, prices,
implied vols) is :mod:`engine.core.pricing`.

Gamma convention (DESIGN §2.1): Black-76 on the contract's forward ``F = s × basis``
(basis = forward / spot, 1 where the venue quotes spot), sticky-strike IV, r = 0. The GEX
of one slot at hypothetical spot ``s`` is

    position × multiplier × Γ_F(F) × F² × 0.01  =  weight × s × exp(-d1² / 2)

with ``d1 = (ln s + a) × inv_sd``, ``a = ln(basis / K) + σ²T/2``, ``inv_sd = 1 / (σ√T)`` and
``weight = position × multiplier × 0.01 × basis / (σ√T √(2π))``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from engine.core.pricing import INV_SQRT_2PI, bsm_charm, bsm_vanna, norm_cdf

# Beyond |d1| = 9 the Gaussian factor is below 2.6e-18 of its peak: treated as exactly zero.
D1_CUTOFF = 9.0

# slot_f rows
F_STRIKE = 0  # strike, underlying price currency
F_TAU = 1  # time to settlement, years, as of the book's reference time
F_IV = 2  # implied vol, fraction (NaN when unknown)
F_BASIS = 3  # per-expiry forward / spot (1.0 when the venue quotes spot)
F_POSITION = 4  # dealer position, contracts (signed: + dealer long)
F_MULTIPLIER = 5  # units of underlying per contract
F_VENUE_GAMMA = 6  # venue-published gamma per 1 unit of the quoted underlying (NaN if none)
F_A = 7  # derived: ln(basis / K) + σ²T/2
F_INV_SD = 8  # derived: 1 / (σ√T)
F_WEIGHT = 9  # derived: position × multiplier × 0.01 × basis / (σ√T √(2π))
F_OI = 10  # open interest, contracts (NaN when unknown)
N_SLOT_F = 11

# slot_i rows
I_STATE = 0  # SLOT_EMPTY, SLOT_PRESENT (listed, maybe expired or without IV)
I_LIVE = 1  # 1 while the slot's contribution is inside the profile
I_IS_CALL = 2
I_STRIKE_IDX = 3  # index into the book's strike table
I_EXPIRY_IDX = 4  # index into the book's expiry table
I_BUCKETS = 5  # bucket membership bits wanted now (BUCKET_ALL | BUCKET_0DTE | BUCKET_FRONT)
I_APPLIED = 6  # bucket bits the live contribution was added with
N_SLOT_I = 7

SLOT_EMPTY = 0
SLOT_PRESENT = 1

BUCKET_ALL = 1
BUCKET_0DTE = 2
BUCKET_FRONT = 4
N_BUCKETS = 3


# ---------------------------------------------------------------- slot parameters


@njit(cache=True)
def _refresh_params(slot_f, slot_i, i) -> bool:
    """Derive a, inv_sd, weight of slot ``i`` from its raw fields; True when it can be priced."""
    strike = slot_f[F_STRIKE, i]
    tau = slot_f[F_TAU, i]
    sigma = slot_f[F_IV, i]
    basis = slot_f[F_BASIS, i]
    ok = (
        slot_i[I_STATE, i] == SLOT_PRESENT
        and strike > 0.0
        and tau > 0.0
        and sigma > 0.0
        and basis > 0.0
        and math.isfinite(sigma)
        and math.isfinite(slot_f[F_POSITION, i])
    )
    if not ok:
        return False
    sd = sigma * math.sqrt(tau)
    slot_f[F_A, i] = math.log(basis / strike) + 0.5 * sd * sd
    slot_f[F_INV_SD, i] = 1.0 / sd
    slot_f[F_WEIGHT, i] = (
        slot_f[F_POSITION, i] * slot_f[F_MULTIPLIER, i] * 0.01 * basis * INV_SQRT_2PI / sd
    )
    return True


# ---------------------------------------------------------------- the gamma profile


@njit(cache=True)
def _accumulate(row, log_s, log_step, a, inv_sd, weight, sign):
    """Add ``sign × weight × s_g × exp(-d_g²/2)`` to ``row[g]`` for every grid point.

    On a log-uniform grid (``log_step > 0``) the Gaussian is walked outward from its peak by a
    two-multiply recurrence instead of one ``exp`` per point; points with |d1| beyond the
    cutoff are skipped. Otherwise (``log_step == 0``) every point is evaluated directly.
    """
    scaled = sign * weight
    if scaled == 0.0:
        return
    n = row.shape[0]
    if log_step <= 0.0:
        for g in range(n):
            d = (log_s[g] + a) * inv_sd
            row[g] += scaled * math.exp(log_s[g] - 0.5 * d * d)
        return
    delta = log_step * inv_sd
    d_first = (log_s[0] + a) * inv_sd
    lo_f = math.ceil((-D1_CUTOFF - d_first) / delta)
    hi_f = math.floor((D1_CUTOFF - d_first) / delta)
    if hi_f < 0.0 or lo_f > n - 1.0:
        return
    g_lo = max(0, int(lo_f))
    g_hi = min(n - 1, int(hi_f))
    g_peak = min(max(int(-d_first / delta + 0.5), g_lo), g_hi)  # clamped: rounding is moot
    d = d_first + g_peak * delta
    value = scaled * math.exp(log_s[g_peak] - 0.5 * d * d)
    row[g_peak] += value
    shrink = math.exp(-delta * delta)
    ratio = math.exp(log_step - d * delta - 0.5 * delta * delta)
    up = value
    for g in range(g_peak + 1, g_hi + 1):
        up *= ratio
        ratio *= shrink
        row[g] += up
    ratio = math.exp(-log_step + d * delta - 0.5 * delta * delta)
    down = value
    for g in range(g_peak - 1, g_lo - 1, -1):
        down *= ratio
        ratio *= shrink
        row[g] += down


@njit(cache=True)
def _apply_contribution(profile, log_s, log_step, slot_f, slot_i, i, buckets, sign):
    a = slot_f[F_A, i]
    inv_sd = slot_f[F_INV_SD, i]
    weight = slot_f[F_WEIGHT, i]
    for b in range(profile.shape[0]):
        if buckets & (1 << b):
            _accumulate(profile[b], log_s, log_step, a, inv_sd, weight, sign)


@njit(cache=True)
def _retract(profile, log_s, log_step, slot_f, slot_i, i) -> None:
    """Take slot ``i``'s live contribution out of the profile, with the buckets it went in with."""
    if slot_i[I_LIVE, i] == 1:
        _apply_contribution(profile, log_s, log_step, slot_f, slot_i, i, slot_i[I_APPLIED, i], -1.0)
        slot_i[I_LIVE, i] = 0
        slot_i[I_APPLIED, i] = 0


@njit(cache=True)
def _admit(profile, log_s, log_step, slot_f, slot_i, i) -> bool:
    """Re-derive slot ``i``'s parameters and add its contribution if it can be priced."""
    if not _refresh_params(slot_f, slot_i, i):
        return False
    slot_i[I_LIVE, i] = 1
    slot_i[I_APPLIED, i] = slot_i[I_BUCKETS, i]
    _apply_contribution(profile, log_s, log_step, slot_f, slot_i, i, slot_i[I_BUCKETS, i], 1.0)
    return True


@njit(cache=True)
def rebuild_profile(profile, log_s, log_step, slot_f, slot_i, n_slots) -> int:
    """Recompute every slot's parameters and the profile of every bucket from scratch.

    Returns the number of live slots.
    """
    profile[:, :] = 0.0
    slot_i[I_LIVE, :n_slots] = 0
    slot_i[I_APPLIED, :n_slots] = 0
    live = 0
    for i in range(n_slots):
        if _admit(profile, log_s, log_step, slot_f, slot_i, i):
            live += 1
    return live


@njit(cache=True, parallel=True)
def rebuild_profile_parallel(profile, partial, live, log_s, log_step, slot_f, slot_i, n_slots):
    """:func:`rebuild_profile` with the slots split into ``partial.shape[0]`` chunks built on
    parallel threads, each into its own preallocated ``partial[c]`` profile, then summed.

    ``live`` (int64, one per chunk) receives each chunk's live count. Same result as the
    serial rebuild up to the order of floating-point additions. Returns the live slots.
    """
    chunks = partial.shape[0]
    for c in prange(chunks):
        part = partial[c]
        part[:, :] = 0.0
        count = 0
        for i in range((n_slots * c) // chunks, (n_slots * (c + 1)) // chunks):
            slot_i[I_LIVE, i] = 0
            slot_i[I_APPLIED, i] = 0
            if _admit(part, log_s, log_step, slot_f, slot_i, i):
                count += 1
        live[c] = count
    total = 0
    for b in range(profile.shape[0]):
        for g in range(profile.shape[1]):
            acc = 0.0
            for c in range(chunks):
                acc += partial[c, b, g]
            profile[b, g] = acc
    for c in range(chunks):
        total += live[c]
    return total


@njit(cache=True)
def retract_slots(profile, log_s, log_step, slot_f, slot_i, slots) -> None:
    """Take the live contribution of each listed slot out of the profile (before it changes)."""
    for j in range(slots.shape[0]):
        _retract(profile, log_s, log_step, slot_f, slot_i, slots[j])


@njit(cache=True)
def apply_quotes(
    profile, log_s, log_step, slot_f, slot_i, slots, iv, position, basis, venue_gamma
) -> None:
    """Apply a batch of quote updates: for each slot, remove old contribution, store, add new.

    ``iv``, ``position``, ``basis``, ``venue_gamma`` are per-update arrays aligned with
    ``slots``; a slot may appear several times (each update applied in order).
    """
    for j in range(slots.shape[0]):
        i = slots[j]
        _retract(profile, log_s, log_step, slot_f, slot_i, i)
        slot_f[F_IV, i] = iv[j]
        slot_f[F_POSITION, i] = position[j]
        slot_f[F_BASIS, i] = basis[j]
        slot_f[F_VENUE_GAMMA, i] = venue_gamma[j]
        _admit(profile, log_s, log_step, slot_f, slot_i, i)


# ---------------------------------------------------------------- at spot


@njit(cache=True)
def slot_gex_at(spot, slot_f, slot_i, i, use_venue_gamma) -> float:
    """GEX of slot ``i`` at ``spot`` (USD per 1 % move); NaN when it has no usable gamma."""
    if slot_i[I_STATE, i] != SLOT_PRESENT or slot_f[F_TAU, i] <= 0.0:
        return math.nan
    if use_venue_gamma:
        gamma = slot_f[F_VENUE_GAMMA, i]
        if not math.isfinite(gamma):
            return math.nan
        forward = spot * slot_f[F_BASIS, i]
        return slot_f[F_POSITION, i] * slot_f[F_MULTIPLIER, i] * gamma * forward * forward * 0.01
    if slot_i[I_LIVE, i] != 1:
        return math.nan
    d = (math.log(spot) + slot_f[F_A, i]) * slot_f[F_INV_SD, i]
    return slot_f[F_WEIGHT, i] * spot * math.exp(-0.5 * d * d)


@njit(cache=True)
def _add_at_strike(slot_i, i, value, call_values, put_values) -> None:
    """Add ``value`` to slot ``i``'s strike in the call or the put array, by its right."""
    k = slot_i[I_STRIKE_IDX, i]
    if slot_i[I_IS_CALL, i] == 1:
        call_values[k] += value
    else:
        put_values[k] += value


@njit(cache=True)
def strike_gex_at_spot(
    spot, slot_f, slot_i, n_slots, bucket_bit, use_venue_gamma, call_gex, put_gex
) -> tuple[float, int]:
    """Per-strike dealer call and put GEX at ``spot`` for one bucket, into the given arrays.

    Returns (net GEX of the bucket, number of contracts used).
    """
    call_gex[:] = 0.0
    put_gex[:] = 0.0
    net = 0.0
    used = 0
    for i in range(n_slots):
        if not (slot_i[I_BUCKETS, i] & bucket_bit):
            continue
        gex = slot_gex_at(spot, slot_f, slot_i, i, use_venue_gamma)
        if math.isnan(gex):
            continue
        _add_at_strike(slot_i, i, gex, call_gex, put_gex)
        net += gex
        used += 1
    return net, used


@njit(cache=True)
def exposures_at_spot(spot, slot_f, slot_i, n_slots, bucket_bit) -> tuple[float, float, float]:
    """(net DEX, net VEX, net CHEX) of one bucket at ``spot`` (DESIGN §2.6), re-priced from IV.

    Black-76 on the slot's forward ``F = spot × basis``, r = 0; Δ is per 1 unit of spot
    (``basis × ∂V/∂F``). Per slot, with ``w = position × multiplier``:
    DEX = w × Δ × spot (USD of underlying), VEX = w × ∂Δ/∂σ × 0.01 × spot (USD of delta per
    vol point), CHEX = w × (−∂Δ/∂τ) / 365 × spot (USD of delta per calendar day of decay).
    Slots that cannot be priced (no IV, expired) are left out, as from the profile.
    """
    dex = 0.0
    vex = 0.0
    chex = 0.0
    for i in range(n_slots):
        if slot_i[I_LIVE, i] != 1 or not (slot_i[I_BUCKETS, i] & bucket_bit):
            continue
        basis = slot_f[F_BASIS, i]
        forward = spot * basis
        strike = slot_f[F_STRIKE, i]
        tau = slot_f[F_TAU, i]
        sigma = slot_f[F_IV, i]
        is_call = slot_i[I_IS_CALL, i] == 1
        d1 = (math.log(spot) + slot_f[F_A, i]) * slot_f[F_INV_SD, i]
        delta = norm_cdf(d1) if is_call else norm_cdf(d1) - 1.0
        scale = slot_f[F_POSITION, i] * slot_f[F_MULTIPLIER, i] * basis * spot
        dex += scale * delta
        vex += scale * bsm_vanna(forward, strike, tau, sigma, 0.0, 0.0) * 0.01
        chex += scale * bsm_charm(forward, strike, tau, sigma, 0.0, 0.0, is_call) / 365.0
    return dex, vex, chex


@njit(cache=True)
def live_slots_into(slot_i, n_slots, bucket_bit, out) -> int:
    """Write the live slots whose contribution went into one bucket to ``out``, ascending;
    returns how many (``out`` holds at least ``n_slots``)."""
    count = 0
    for i in range(n_slots):
        if slot_i[I_LIVE, i] == 1 and slot_i[I_APPLIED, i] & bucket_bit:
            out[count] = i
            count += 1
    return count


@njit(cache=True)
def total_gex_at(spot, slot_f, slots) -> float:
    """Σ re-priced GEX of the given live slots at a hypothetical ``spot`` (root refinement;
    ``slots`` from :func:`live_slots_into`, so a small bucket costs only its own slots)."""
    total = 0.0
    log_spot = math.log(spot)
    for j in range(slots.shape[0]):
        i = slots[j]
        d = (log_spot + slot_f[F_A, i]) * slot_f[F_INV_SD, i]
        total += slot_f[F_WEIGHT, i] * spot * math.exp(-0.5 * d * d)
    return total


@njit(cache=True)
def walls(call_gex, put_gex) -> tuple[int, int, int]:
    """Indices of the call wall, put wall and abs-gamma strike (−1 when there is none).

    Call wall: largest |net dealer call GEX| (the largest positive under the default model,
    where every dealer call GEX is positive); put wall: largest |net dealer put GEX|;
    abs gamma strike: largest |call| + |put|.
    """
    call_idx = -1
    put_idx = -1
    abs_idx = -1
    best_call = 0.0
    best_put = 0.0
    best_abs = 0.0
    for k in range(call_gex.shape[0]):
        c = abs(call_gex[k])
        p = abs(put_gex[k])
        if c > best_call:
            best_call = c
            call_idx = k
        if p > best_put:
            best_put = p
            put_idx = k
        if c + p > best_abs:
            best_abs = c + p
            abs_idx = k
    return call_idx, put_idx, abs_idx


@njit(cache=True)
def side_walls(call_values, put_values, strikes, spot, lo, hi) -> tuple[int, int]:
    """Side-aware walls (DESIGN §2.6): indices of the largest |call value| among strikes in
    ``[spot, hi]`` and of the largest |put value| among strikes in ``[lo, spot]`` (−1 when
    none is nonzero). Used on per-strike GEX (the walls) and per-strike OI (the OI walls).
    """
    call_idx = -1
    put_idx = -1
    best_call = 0.0
    best_put = 0.0
    for k in range(call_values.shape[0]):
        strike = strikes[k]
        if strike < lo or strike > hi:
            continue
        c = abs(call_values[k])
        p = abs(put_values[k])
        if strike >= spot and c > best_call:
            best_call = c
            call_idx = k
        if strike <= spot and p > best_put:
            best_put = p
            put_idx = k
    return call_idx, put_idx


@njit(cache=True)
def strike_open_interest(slot_f, slot_i, n_slots, bucket_bit, call_oi, put_oi) -> None:
    """Per-strike call and put open interest of one bucket's contracts, into the arrays."""
    call_oi[:] = 0.0
    put_oi[:] = 0.0
    for i in range(n_slots):
        if not (slot_i[I_BUCKETS, i] & bucket_bit) or slot_i[I_STATE, i] != SLOT_PRESENT:
            continue
        oi = slot_f[F_OI, i]
        if oi > 0.0:
            _add_at_strike(slot_i, i, oi, call_oi, put_oi)


@njit(cache=True)
def profile_crossings(row, spots, roots, brackets) -> int:
    """Linear-interpolated sign changes of ``row`` over ``spots``; returns their count.

    ``roots[c]`` is crossing c; ``brackets[0, c]``, ``brackets[1, c]`` the grid indices that
    enclose it. Exact zeros are skipped over: a crossing joins the last nonzero point with the
    next nonzero point of the opposite sign.
    """
    count = 0
    last = -1
    for g in range(row.shape[0]):
        v = row[g]
        if v == 0.0:
            continue
        if last >= 0 and (v > 0.0) != (row[last] > 0.0) and count < roots.shape[0]:
            lo_v = row[last]
            roots[count] = spots[last] + (spots[g] - spots[last]) * lo_v / (lo_v - v)
            brackets[0, count] = last
            brackets[1, count] = g
            count += 1
        last = g
    return count


def warm_up() -> None:
    """Compile (or load from the cache) every kernel once, outside any hot path."""
    n = 4
    slot_f = np.zeros((N_SLOT_F, n))
    slot_i = np.zeros((N_SLOT_I, n), dtype=np.int64)
    slot_i[I_STATE, :] = SLOT_PRESENT
    slot_i[I_BUCKETS, :] = BUCKET_ALL
    slot_f[F_STRIKE] = [90.0, 100.0, 100.0, 110.0]
    slot_f[F_TAU] = 0.1
    slot_f[F_IV] = 0.5
    slot_f[F_BASIS] = 1.0
    slot_f[F_POSITION] = 1.0
    slot_f[F_MULTIPLIER] = 1.0
    slot_f[F_VENUE_GAMMA] = 0.01
    log_s = np.log(np.linspace(80.0, 120.0, 8))
    profile = np.zeros((N_BUCKETS, 8))
    rebuild_profile(profile, log_s, 0.0, slot_f, slot_i, n)
    partial = np.zeros((2, N_BUCKETS, 8))
    rebuild_profile_parallel(profile, partial, np.zeros(2, dtype=np.int64), log_s, 0.0,
                             slot_f, slot_i, n)  # fmt: skip
    slots = np.arange(n, dtype=np.int64)
    retract_slots(profile, log_s, 0.0, slot_f, slot_i, slots)
    ones = np.ones(n)
    apply_quotes(profile, log_s, 0.0, slot_f, slot_i, slots, ones * 0.4, ones, ones, ones * 0.01)
    call = np.zeros(n)
    put = np.zeros(n)
    strike_gex_at_spot(100.0, slot_f, slot_i, n, BUCKET_ALL, False, call, put)
    live = np.zeros(n, dtype=np.int64)
    total_gex_at(100.0, slot_f, live[: live_slots_into(slot_i, n, BUCKET_ALL, live)])
    walls(call, put)
    exposures_at_spot(100.0, slot_f, slot_i, n, BUCKET_ALL)
    side_walls(call, put, slot_f[F_STRIKE], 100.0, 85.0, 115.0)
    strike_open_interest(slot_f, slot_i, n, BUCKET_ALL, call, put)
    out = np.zeros(4)
    profile_crossings(profile[0], np.exp(log_s), out, np.zeros((2, 4), dtype=np.int64))
